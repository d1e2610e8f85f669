//! Signed checkpoints of the audit chain and the Ed25519 key that signs them.
//!
//! A checkpoint is an ordinary audit line (`kind: audit.checkpoint`) whose
//! `data` carries an Ed25519 signature over the sequence number and hash of
//! the line before it and over its own time, so every field of the
//! checkpoint line is either signed or fixed: an export's last line, whose
//! hash nothing later covers, cannot be edited and rehashed either. The hash chain alone cannot tell a complete export
//! from one cut short or rewritten from scratch; a signature the server's
//! audit key made can. The server holds the private key (sealed); anyone
//! verifying holds the public key, as PEM or as a JWK.

use std::fmt;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::AuditDraft;

/// `kind` of a checkpoint line.
pub const CHECKPOINT_KIND: &str = "audit.checkpoint";

/// `actor` of the checkpoint lines the server writes: the server itself.
pub const CHECKPOINT_ACTOR: &str = "hallpass";

/// First line of every signed message; names the format so a signature
/// made for anything else can never pass for a checkpoint.
const MESSAGE_PREFIX: &str = "hallpass-audit-checkpoint/v1";

/// DER of an Ed25519 SubjectPublicKeyInfo up to the 32 key bytes: SEQUENCE,
/// AlgorithmIdentifier { 1.3.101.112 } without parameters, BIT STRING.
/// DER allows exactly one encoding of this structure, so a prefix match is
/// a complete parse.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

const KEY_LEN: usize = 32;

/// What a checkpoint line's `data` holds. Exactly these members: anything
/// else would look signed without being so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointData {
    /// Sequence number of the line right before the checkpoint.
    pub covers_seq: u64,
    /// That line's `hash` (the checkpoint's own `prev_hash`).
    pub covers_hash: String,
    /// [`AuditPublicKey::key_id`] of the signing key.
    pub key_id: String,
    /// Ed25519 signature of [`signed_message`], base64url without padding.
    pub signature: String,
}

/// The exact bytes a checkpoint signs (specified in docs/audit.md): five
/// lines joined by `\n`, no trailing newline; `time` is the checkpoint
/// line's own `time`, exactly as written.
pub fn signed_message(covers_seq: u64, covers_hash: &str, key_id: &str, time: &str) -> Vec<u8> {
    format!("{MESSAGE_PREFIX}\n{covers_seq}\n{covers_hash}\n{key_id}\n{time}").into_bytes()
}

/// Why a key could not be read. Never quotes the key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditKeyError {
    #[error(
        "the key is empty: expected an Ed25519 public key as PEM (-----BEGIN PUBLIC KEY-----) or as a JWK JSON object"
    )]
    Empty,
    #[error("the key is neither PEM (-----BEGIN PUBLIC KEY-----) nor a JWK JSON object")]
    UnknownFormat,
    #[error("this is a private key ({0}): give the server's public audit key instead, from GET /v1/audit/public-key")]
    PrivateKey(&'static str),
    #[error("the PEM block is `{0}`, expected `PUBLIC KEY`")]
    PemLabel(String),
    #[error("the PEM block has no `-----END PUBLIC KEY-----` line")]
    PemUnterminated,
    #[error("the PEM body is not valid base64: {0}")]
    PemBase64(String),
    #[error(
        "the PEM public key is not an Ed25519 key: expected the 44-byte SubjectPublicKeyInfo of algorithm 1.3.101.112, found {0} bytes of something else"
    )]
    NotEd25519(usize),
    #[error("the JWK is not valid JSON: {0}")]
    JwkJson(String),
    #[error("the JWK member `{member}` {problem}")]
    JwkMember { member: &'static str, problem: String },
    #[error("the audit signing key is not an Ed25519 PKCS#8 document: {0}")]
    Pkcs8(&'static str),
}

/// The public half of the server's audit key: what verifies checkpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditPublicKey {
    bytes: [u8; KEY_LEN],
}

impl fmt::Debug for AuditPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditPublicKey")
            .field("key_id", &self.key_id())
            .finish()
    }
}

impl AuditPublicKey {
    /// Reads a key file's text, PEM or JWK, told apart by its content.
    pub fn parse(text: &str) -> Result<Self, AuditKeyError> {
        // JSON's own white space, so that "starts with `{`" means the same
        // to every reader (docs/audit.md).
        let text = text.trim_matches([' ', '\t', '\n', '\r']);
        if text.is_empty() {
            Err(AuditKeyError::Empty)
        } else if text.starts_with('{') {
            let value: Value = serde_json::from_str(text).map_err(|e| AuditKeyError::JwkJson(e.to_string()))?;
            Self::from_jwk(&value)
        } else if text.contains("-----BEGIN ") {
            Self::from_pem(text)
        } else {
            Err(AuditKeyError::UnknownFormat)
        }
    }

    /// The first PEM block, which must be `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn from_pem(text: &str) -> Result<Self, AuditKeyError> {
        let start = text.find("-----BEGIN ").ok_or(AuditKeyError::UnknownFormat)?;
        let after_begin = &text[start + "-----BEGIN ".len()..];
        let label_end = after_begin.find("-----").ok_or(AuditKeyError::UnknownFormat)?;
        let label = &after_begin[..label_end];
        if label.ends_with("PRIVATE KEY") {
            return Err(AuditKeyError::PrivateKey("a PEM private key block"));
        }
        if label != "PUBLIC KEY" {
            return Err(AuditKeyError::PemLabel(label.to_string()));
        }
        let body_and_rest = &after_begin[label_end + "-----".len()..];
        let body_end = body_and_rest
            .find("-----END PUBLIC KEY-----")
            .ok_or(AuditKeyError::PemUnterminated)?;
        let body: String = body_and_rest[..body_end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = STANDARD
            .decode(body)
            .map_err(|e| AuditKeyError::PemBase64(e.to_string()))?;
        Self::from_spki_der(&der)
    }

    /// The DER SubjectPublicKeyInfo of an Ed25519 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, AuditKeyError> {
        der.strip_prefix(&SPKI_PREFIX[..])
            .and_then(|raw| <[u8; KEY_LEN]>::try_from(raw).ok())
            .map(|bytes| Self { bytes })
            .ok_or(AuditKeyError::NotEd25519(der.len()))
    }

    /// A JWK (RFC 8037: `kty` `OKP`, `crv` `Ed25519`, `x`), or a JSON object
    /// carrying one under `jwk`, as the server's key document does.
    pub fn from_jwk(value: &Value) -> Result<Self, AuditKeyError> {
        let Some(object) = value.as_object() else {
            return Err(AuditKeyError::JwkJson("expected a JSON object".into()));
        };
        if let Some(inner) = object.get("jwk").filter(|_| !object.contains_key("kty")) {
            return Self::from_jwk(inner);
        }
        if object.contains_key("d") {
            return Err(AuditKeyError::PrivateKey("a JWK with the private member `d`"));
        }
        let member = |name: &'static str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| AuditKeyError::JwkMember {
                    member: name,
                    problem: "is missing or not a string".into(),
                })
        };
        let expect = |name: &'static str, wanted: &str| -> Result<(), AuditKeyError> {
            let found = member(name)?;
            if found == wanted {
                Ok(())
            } else {
                Err(AuditKeyError::JwkMember {
                    member: name,
                    problem: format!("is {found:?}, expected {wanted:?} (an Ed25519 key)"),
                })
            }
        };
        expect("kty", "OKP")?;
        expect("crv", "Ed25519")?;
        if let Some(alg) = object.get("alg").filter(|alg| *alg != "EdDSA") {
            return Err(AuditKeyError::JwkMember {
                member: "alg",
                problem: format!("is {alg}, expected \"EdDSA\""),
            });
        }
        let x = URL_SAFE_NO_PAD
            .decode(member("x")?)
            .map_err(|e| AuditKeyError::JwkMember {
                member: "x",
                problem: format!("is not base64url without padding: {e}"),
            })?;
        let len = x.len();
        let bytes = <[u8; KEY_LEN]>::try_from(x).map_err(|_| AuditKeyError::JwkMember {
            member: "x",
            problem: format!("holds {len} bytes, an Ed25519 public key has 32"),
        })?;
        Ok(Self { bytes })
    }

    /// RFC 7638 thumbprint: base64url (no padding) SHA-256 of
    /// `{"crv":"Ed25519","kty":"OKP","x":"<x>"}`.
    pub fn key_id(&self) -> String {
        let members = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, self.x());
        URL_SAFE_NO_PAD.encode(Sha256::digest(members.as_bytes()))
    }

    /// The public JWK, with its thumbprint as `kid`.
    pub fn to_jwk(&self) -> Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.x(),
            "kid": self.key_id(),
            "alg": "EdDSA",
            "use": "sig",
        })
    }

    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo), newline-terminated.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.bytes);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }

    /// Whether `signature` (base64url, no padding) signs `message` with this key.
    pub(crate) fn verifies(&self, message: &[u8], signature: &str) -> bool {
        URL_SAFE_NO_PAD.decode(signature).is_ok_and(|signature| {
            UnparsedPublicKey::new(&ED25519, &self.bytes)
                .verify(message, &signature)
                .is_ok()
        })
    }

    fn x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.bytes)
    }
}

/// The server's side: signs checkpoints with the private audit key.
pub struct CheckpointSigner {
    pair: Ed25519KeyPair,
    public_key: AuditPublicKey,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.public_key.key_id())
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// From an Ed25519 PKCS#8 document (v1 or v2), as
    /// `Ed25519KeyPair::generate_pkcs8` makes and the server seals.
    pub fn from_pkcs8(document: &[u8]) -> Result<Self, AuditKeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(document).map_err(|e| AuditKeyError::Pkcs8(e.description_()))?;
        let bytes = <[u8; KEY_LEN]>::try_from(pair.public_key().as_ref())
            .map_err(|_| AuditKeyError::Pkcs8("the public key is not 32 bytes"))?;
        Ok(Self {
            pair,
            public_key: AuditPublicKey { bytes },
        })
    }

    pub fn public_key(&self) -> &AuditPublicKey {
        &self.public_key
    }

    /// `data` of a checkpoint vouching for the line `covers_seq` whose hash is
    /// `covers_hash`. The checkpoint must be the very next line: sealed as
    /// seq `covers_seq + 1` with `prev_hash` `covers_hash` and time `time`.
    pub fn checkpoint_data(&self, covers_seq: u64, covers_hash: &str, time: &str) -> Value {
        let key_id = self.public_key.key_id();
        // aws-lc fails to sign with Ed25519 only when it cannot allocate.
        let signature = self.pair.sign(&signed_message(covers_seq, covers_hash, &key_id, time));
        serde_json::json!({
            "covers_seq": covers_seq,
            "covers_hash": covers_hash,
            "key_id": key_id,
            "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()),
        })
    }

    /// The whole checkpoint line before sealing: actor `hallpass`, no
    /// request, [`Self::checkpoint_data`].
    pub fn checkpoint_draft(&self, covers_seq: u64, covers_hash: &str, time: &str) -> AuditDraft {
        AuditDraft::new(
            CHECKPOINT_ACTOR,
            CHECKPOINT_KIND,
            None,
            self.checkpoint_data(covers_seq, covers_hash, time),
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The secret key of RFC 8032's first Ed25519 test vector, as an
    /// unencrypted PKCS#8 v1 document: a published key, fit only for tests.
    pub(crate) fn rfc8032_signer() -> CheckpointSigner {
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
        let mut document = hex::decode("302e020100300506032b657004220420").unwrap();
        document.extend_from_slice(&seed);
        CheckpointSigner::from_pkcs8(&document).unwrap()
    }

    /// A fresh key nobody else has.
    pub(crate) fn random_signer() -> CheckpointSigner {
        let document = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        CheckpointSigner::from_pkcs8(document.as_ref()).unwrap()
    }

    /// The RFC 8032 test public key as OpenSSL 3 writes it (`openssl pkey -pubout`).
    const OPENSSL_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";

    #[test]
    fn the_key_id_is_the_rfc_7638_thumbprint() {
        // RFC 8037 gives this thumbprint for the RFC 8032 test key.
        let key = rfc8032_signer().public_key().clone();
        assert_eq!(key.key_id(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(key.to_jwk()["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    }

    #[test]
    fn pem_and_jwk_read_back_as_the_same_key() {
        let key = rfc8032_signer().public_key().clone();
        assert_eq!(key.to_pem(), OPENSSL_PEM);
        assert_eq!(AuditPublicKey::parse(OPENSSL_PEM).unwrap(), key);
        assert_eq!(AuditPublicKey::parse(&OPENSSL_PEM.replace('\n', "\r\n")).unwrap(), key);
        let spaced = OPENSSL_PEM.replace("MCowBQYDK2VwAyEA", "  MCow BQYD\tK2VwAyEA ");
        assert_eq!(
            AuditPublicKey::parse(&format!("the key:\n{spaced}thanks\n")).unwrap(),
            key
        );
        assert_eq!(AuditPublicKey::parse(&key.to_jwk().to_string()).unwrap(), key);
        let minimal = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        assert_eq!(AuditPublicKey::parse(minimal).unwrap(), key);
        let document = serde_json::json!({"key_id": key.key_id(), "jwk": key.to_jwk(), "pem": key.to_pem()});
        assert_eq!(AuditPublicKey::parse(&document.to_string()).unwrap(), key);
    }

    #[test]
    fn a_signature_made_by_openssl_verifies() {
        // `openssl pkeyutl -sign -rawin` with the RFC 8032 key over
        // signed_message(4, HASH, <key id>, TIME).
        const HASH: &str = "5decd05c631c2080eb7dfec26c52f2d4689a9e02a6cb4fbd8077f9b4e9c7be03";
        const TIME: &str = "2026-11-21T10:00:05.000000Z";
        let key = AuditPublicKey::parse(OPENSSL_PEM).unwrap();
        let signature = OPENSSL_SIGNATURE;
        assert!(key.verifies(&signed_message(4, HASH, &key.key_id(), TIME), signature));
        let data = rfc8032_signer().checkpoint_data(4, HASH, TIME);
        assert_eq!(data["signature"], signature, "Ed25519 is deterministic");
        assert!(!key.verifies(&signed_message(5, HASH, &key.key_id(), TIME), signature));
        let later = "2026-11-21T10:00:06.000000Z";
        assert!(
            !key.verifies(&signed_message(4, HASH, &key.key_id(), later), signature),
            "the checkpoint's own time is signed"
        );
    }

    const OPENSSL_SIGNATURE: &str =
        "jaj6ibbnCRkMNPpUp-iwV5e4G0Pin7WmdPLRFMGyN6pzns2YwVVyND-5OP1fasF2dzSx44xXiqwWHm9JMyP4AA";

    #[test]
    fn unusable_keys_are_refused_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "the key is empty"),
            ("hello", "neither PEM"),
            (
                "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v\n-----END PRIVATE KEY-----",
                "private key",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                "`CERTIFICATE`, expected `PUBLIC KEY`",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA",
                "no `-----END PUBLIC KEY-----`",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----",
                "not valid base64",
            ),
            // A P-256 key's SubjectPublicKeyInfo.
            (
                "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n-----END PUBLIC KEY-----",
                "not an Ed25519 key",
            ),
            ("{\"kty\":", "not valid JSON"),
            (r#"{"kty":"EC","crv":"P-256","x":"AA"}"#, "`kty` is \"EC\""),
            (r#"{"kty":"OKP","crv":"X25519","x":"AA"}"#, "`crv` is \"X25519\""),
            (r#"{"kty":"OKP","crv":"Ed25519"}"#, "`x` is missing"),
            (r#"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#, "holds 3 bytes"),
            (r#"{"kty":"OKP","crv":"Ed25519","x":"A+/="}"#, "not base64url"),
            (
                r#"{"kty":"OKP","crv":"Ed25519","x":"AA","d":"secret-d"}"#,
                "private member `d`",
            ),
            (
                r#"{"kty":"OKP","crv":"Ed25519","alg":null,"x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
                "`alg` is null",
            ),
            // Only JSON's white space may come before the `{`.
            (
                "\u{a0}{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
                "neither PEM",
            ),
            // Strict base64: the last symbol leaves a bit set.
            (
                "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURp=\n-----END PUBLIC KEY-----",
                "not valid base64",
            ),
        ];
        for (text, expected) in cases {
            let error = AuditPublicKey::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains("secret-d"));
        }
    }

    #[test]
    fn key_material_stays_out_of_debug_output() {
        let signer = rfc8032_signer();
        let debug = format!("{signer:?} {:?}", signer.public_key());
        assert!(debug.contains("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"), "{debug}");
        assert!(!debug.contains("9d61b1") && !debug.contains("11qYAY"), "{debug}");
    }

    #[test]
    fn a_pkcs8_document_of_another_kind_is_refused() {
        let error = CheckpointSigner::from_pkcs8(b"not a key").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("the audit signing key is not an Ed25519 PKCS#8 document")
        );
    }
}
