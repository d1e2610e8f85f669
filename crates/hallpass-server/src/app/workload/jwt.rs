//! Checking a workload's OIDC token (a JWT in compact form) against its
//! issuer's keys: the signature (RS256 or ES256 only — `none`, HMAC and
//! everything else are refused), then `iss`, `aud`, `exp`, `nbf` and `iat`
//! with a minute of leeway for clocks. Pure: the keys and the time are
//! given, so every refusal is tested without a network or a clock.

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Largest token taken, in bytes: CI tokens are a few KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How far clocks may disagree, in seconds.
pub const LEEWAY_SECONDS: i64 = 60;

/// Why a token was refused; the message is shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refused(message: impl Into<String>) -> Refused {
    Refused(message.into())
}

/// One key of a JWKS document (RFC 7517), the fields Hallpass uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
}

/// A JWKS document: `{"keys": [...]}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    pub fn parse(text: &[u8]) -> Result<Jwks, String> {
        serde_json::from_slice(text).map_err(|e| format!("not a JWKS document ({{\"keys\": [...]}}): {e}"))
    }

    /// Whether a key with this id is here (to know when to fetch again).
    pub fn has(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }
}

/// A token split and decoded, its signature not yet checked.
pub struct Unverified {
    pub alg: String,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    signed: String,
    signature: Vec<u8>,
}

impl Unverified {
    /// Splits and decodes `token`; refuses what is not a signed JWT.
    pub fn parse(token: &str) -> Result<Unverified, Refused> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refused(format!("the token is longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = parts.as_slice() else {
            return Err(refused(
                "the token is not a signed JWT (three base64url parts separated by dots)",
            ));
        };
        let decode = |part: &str, what: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| refused(format!("the token's {what} is not base64url")))
        };
        let header: Map<String, Value> = serde_json::from_slice(&decode(header, "header")?)
            .map_err(|_| refused("the token's header is not a JSON object"))?;
        let claims: Map<String, Value> = serde_json::from_slice(&decode(payload, "payload")?)
            .map_err(|_| refused("the token's payload is not a JSON object"))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("").to_string();
        if !matches!(alg.as_str(), "RS256" | "ES256") {
            return Err(refused(format!(
                "the token's algorithm {alg:?} is not accepted; Hallpass takes RS256 and ES256 signatures only"
            )));
        }
        let signature = decode(signature, "signature")?;
        let kid = header.get("kid").and_then(Value::as_str).map(str::to_string);
        let signed_len = parts[0].len() + 1 + parts[1].len();
        Ok(Unverified {
            alg,
            kid,
            claims,
            signed: token[..signed_len].to_string(),
            signature,
        })
    }

    /// The `iss` claim, to find the issuer before anything is trusted.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// Checks the signature with a key of `jwks` (the one named by `kid`,
    /// or any of the right type when the token names none).
    pub fn verify_signature(&self, jwks: &Jwks) -> Result<(), Refused> {
        let candidates: Vec<&Jwk> = jwks
            .keys
            .iter()
            .filter(|key| self.kid.is_none() || key.kid == self.kid)
            .filter(|key| key.alg.as_deref().is_none_or(|alg| alg == self.alg))
            .collect();
        if candidates.is_empty() {
            return Err(refused(match &self.kid {
                Some(kid) => format!("the issuer has no key {kid:?} for {}", self.alg),
                None => format!("the issuer has no {} key", self.alg),
            }));
        }
        let message = self.signed.as_bytes();
        let verified = candidates
            .iter()
            .any(|key| verify_with(key, &self.alg, message, &self.signature));
        if verified {
            Ok(())
        } else {
            Err(refused("the token's signature does not verify with the issuer's keys"))
        }
    }

    /// Checks `iss`, `aud` and the times at `now` (Unix seconds).
    pub fn check_claims(&self, issuer: &str, audience: &str, now: i64) -> Result<(), Refused> {
        if self.issuer() != Some(issuer) {
            return Err(refused(format!(
                "the token's issuer {:?} is not {issuer:?}",
                self.issuer().unwrap_or("")
            )));
        }
        let audiences: Vec<&str> = match self.claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !audiences.contains(&audience) {
            return Err(refused(format!(
                "the token is for audience {audiences:?}, not {audience:?}; ask the CI system for a token with \
                 this audience"
            )));
        }
        let time = |name: &str| self.claims.get(name).and_then(Value::as_i64);
        let Some(exp) = time("exp") else {
            return Err(refused("the token has no expiry (`exp`)"));
        };
        if now >= exp + LEEWAY_SECONDS {
            return Err(refused(format!("the token expired {} s ago", now - exp)));
        }
        if let Some(nbf) = time("nbf")
            && now + LEEWAY_SECONDS < nbf
        {
            return Err(refused(format!(
                "the token is not valid yet (for another {} s)",
                nbf - now
            )));
        }
        if let Some(iat) = time("iat")
            && now + LEEWAY_SECONDS < iat
        {
            return Err(refused("the token was issued in the future; check the clocks"));
        }
        Ok(())
    }
}

fn verify_with(key: &Jwk, alg: &str, message: &[u8], signature: &[u8]) -> bool {
    let decode = |field: &Option<String>| field.as_deref().and_then(|text| URL_SAFE_NO_PAD.decode(text).ok());
    match (alg, key.kty.as_str()) {
        ("RS256", "RSA") => {
            let (Some(n), Some(e)) = (decode(&key.n), decode(&key.e)) else {
                return false;
            };
            RsaPublicKeyComponents { n: &n, e: &e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok()
        }
        ("ES256", "EC") if key.crv.as_deref() == Some("P-256") => {
            let (Some(x), Some(y)) = (decode(&key.x), decode(&key.y)) else {
                return false;
            };
            if x.len() != 32 || y.len() != 32 {
                return false;
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestIssuerKey;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn claims() -> Value {
        json!({"iss": "https://ci.example", "aud": ["hallpass", "other"], "sub": "repo:acme/infra",
               "exp": NOW + 300, "nbf": NOW - 10, "iat": NOW - 10})
    }

    fn jwks(keys: &[&TestIssuerKey]) -> Jwks {
        Jwks::parse(
            json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    fn check(key: &TestIssuerKey, token: &str) -> Result<(), Refused> {
        let parsed = Unverified::parse(token)?;
        parsed.verify_signature(&jwks(&[key]))?;
        parsed.check_claims("https://ci.example", "hallpass", NOW)
    }

    #[test]
    fn well_signed_tokens_for_us_are_accepted_es256_and_rs256() {
        for key in [TestIssuerKey::es256("k1"), TestIssuerKey::rs256("k1")] {
            check(&key, &key.sign(&claims())).unwrap();
            // Without a kid, any key of the right type is tried.
            let header = json!({"alg": key.alg()});
            check(&key, &key.sign_with_header(&header, &claims())).unwrap();
        }
        // An RS256 token does not verify with an EC key of the same id.
        let (ec, rsa) = (TestIssuerKey::es256("k1"), TestIssuerKey::rs256("k1"));
        let parsed = Unverified::parse(&rsa.sign(&claims())).unwrap();
        assert!(parsed.verify_signature(&jwks(&[&ec])).is_err());
        parsed.verify_signature(&jwks(&[&ec, &rsa])).unwrap();
    }

    #[test]
    fn every_kind_of_bad_token_is_refused_with_its_reason() {
        let key = TestIssuerKey::es256("k1");
        let other = TestIssuerKey::es256("k1");
        let with = |changes: Value| {
            let mut claims = claims();
            for (name, value) in changes.as_object().unwrap() {
                claims[name] = value.clone();
            }
            key.sign(&claims)
        };
        let cases = [
            (with(json!({"exp": NOW - 61})), "the token expired 61 s ago"),
            (with(json!({"nbf": NOW + 120})), "not valid yet"),
            (with(json!({"iat": NOW + 3600})), "issued in the future"),
            (with(json!({"aud": "someone-else"})), "not \"hallpass\""),
            (
                with(json!({"iss": "https://evil.example"})),
                "issuer \"https://evil.example\" is not",
            ),
            (with(json!({"exp": null})), "has no expiry"),
            (TestIssuerKey::unsigned(&claims()), "algorithm \"none\" is not accepted"),
            (
                key.sign_with_header(&json!({"alg": "HS256"}), &claims()),
                "algorithm \"HS256\" is not accepted",
            ),
            (other.sign(&claims()), "signature does not verify"),
            (
                key.sign_with_header(&json!({"alg": "ES256", "kid": "k9"}), &claims()),
                "no key \"k9\"",
            ),
            ("not.a-jwt".to_string(), "not a signed JWT"),
            ("a.b.c".to_string(), "not base64url"),
            ("x".repeat(MAX_TOKEN_BYTES + 1), "longer than"),
        ];
        for (token, expected) in cases {
            let error = check(&key, &token).unwrap_err().0;
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        }
        // Within the leeway a just-expired or almost-valid token passes.
        check(&key, &with(json!({"exp": NOW - 59}))).unwrap();
        check(&key, &with(json!({"nbf": NOW + 59}))).unwrap();
    }

    #[test]
    fn a_signature_from_one_token_does_not_carry_to_another() {
        let key = TestIssuerKey::es256("k1");
        let good = key.sign(&claims());
        let mut forged_claims = claims();
        forged_claims["sub"] = json!("repo:evil/repo");
        let forged = key.sign(&forged_claims);
        let parts: Vec<&str> = good.split('.').collect();
        let forged_parts: Vec<&str> = forged.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
        assert!(
            check(&key, &spliced)
                .unwrap_err()
                .0
                .contains("signature does not verify")
        );
    }
}
