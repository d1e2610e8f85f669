//! The `jwt` target: Ed25519-signed JWTs for services that trust Hallpass.
//!
//! A JWT cannot be recalled once handed out, so revocation works through its
//! short `exp` plus `POST /v1/introspect`, which answers `active: false` as
//! soon as the grant ends. Ed25519 signatures are deterministic, so the token
//! is re-derived from the grant's stored fields whenever the requester asks
//! for it: the token itself is never stored.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::{BoxFuture, FutureExt};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::{CredentialProvider, GrantContext, ProviderError, SecretCredential, TargetSecrets};

/// The claims Hallpass puts in every grant token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub role: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

/// The signing key: Ed25519, created on first start.
pub struct JwtSigner {
    issuer: String,
    key_id: String,
    public_x: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("issuer", &self.issuer)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn key_error(message: impl std::fmt::Display) -> ProviderError {
    ProviderError::Credential(format!("JWT signing key: {message}"))
}

impl JwtSigner {
    /// Loads the PKCS#8 key at `path`, or creates it (mode 0600, never
    /// overwriting an existing file) when absent.
    pub fn load_or_create(path: &Path, issuer: String) -> Result<Self, ProviderError> {
        let pkcs8 = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(key_error)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| key_error(format!("cannot create {}: {e}", path.display())))?;
                file.write_all(document.as_ref())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| key_error(format!("cannot write {}: {e}", path.display())))?;
                document.as_ref().to_vec()
            }
            Err(error) => return Err(key_error(format!("cannot read {}: {error}", path.display()))),
        };
        Self::from_pkcs8(&pkcs8, issuer)
    }

    pub fn from_pkcs8(pkcs8: &[u8], issuer: String) -> Result<Self, ProviderError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(key_error)?;
        let public = pair.public_key().as_ref().to_vec();
        let public_x = URL_SAFE_NO_PAD.encode(&public);
        // RFC 7638-style thumbprint, shortened: stable across restarts.
        let key_id = hex::encode(&Sha256::digest(&public)[..8]);
        let decoding = DecodingKey::from_ed_components(&public_x).map_err(key_error)?;
        Ok(Self {
            issuer,
            key_id,
            public_x,
            encoding: EncodingKey::from_ed_der(pkcs8),
            decoding,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The JSON Web Key Set with the public key.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.key_id,
            "x": self.public_x,
        }]})
    }

    pub fn sign(&self, claims: &GrantClaims) -> Result<String, ProviderError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(key_error)
    }

    /// Checks signature, issuer and time window; returns the claims. Audience
    /// is not checked here: introspection reports it instead.
    pub fn verify(&self, token: &str) -> Result<GrantClaims, ProviderError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub", "aud", "jti"]);
        jsonwebtoken::decode::<GrantClaims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| ProviderError::Credential(format!("token rejected: {e}")))
    }
}

/// Issues JWTs signed by a [`JwtSigner`].
pub struct JwtProvider {
    signer: std::sync::Arc<JwtSigner>,
}

impl JwtProvider {
    pub fn new(signer: std::sync::Arc<JwtSigner>) -> Self {
        Self { signer }
    }

    fn audience(config: &Map<String, Value>) -> Result<&str, ProviderError> {
        match config.get("audience") {
            Some(Value::String(audience)) if !audience.trim().is_empty() => Ok(audience),
            Some(_) => Err(invalid("`audience` must be a non-empty string")),
            None => Err(invalid(
                "`audience` is required, e.g. config = { audience = \"my-service\" }",
            )),
        }
    }

    /// The claims of a grant; the same grant always gives the same claims.
    pub fn claims(&self, grant: &GrantContext) -> Result<GrantClaims, ProviderError> {
        Ok(GrantClaims {
            iss: self.signer.issuer().to_string(),
            sub: grant.principal.clone(),
            aud: Self::audience(&grant.target.config)?.to_string(),
            role: grant.role.clone(),
            jti: grant.grant_id.clone(),
            iat: grant.activated_at.timestamp(),
            nbf: grant.activated_at.timestamp(),
            exp: grant.expires_at.timestamp(),
        })
    }
}

fn invalid(message: &str) -> ProviderError {
    ProviderError::invalid_config("jwt", message)
}

impl CredentialProvider for JwtProvider {
    fn target_type(&self) -> &'static str {
        "jwt"
    }

    fn issues_locally(&self) -> bool {
        true
    }

    fn validate_config(&self, config: &Map<String, Value>, _secrets: &TargetSecrets) -> Result<(), ProviderError> {
        if let Some(unknown) = config.keys().find(|key| key.as_str() != "audience") {
            return Err(invalid(&format!(
                "unknown setting `{unknown}`; jwt targets take only `audience`"
            )));
        }
        Self::audience(config).map(|_| ())
    }

    fn issue<'a>(&'a self, grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
        async move {
            let claims = self.claims(grant)?;
            Ok(json!({
                "type": "jwt",
                "issuer": claims.iss,
                "audience": claims.aud,
                "key_id": self.signer.key_id(),
                "jti": claims.jti,
            }))
        }
        .boxed()
    }

    fn credential<'a>(
        &'a self,
        grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>> {
        async move {
            let token = self.signer.sign(&self.claims(grant)?)?;
            let env = [("HALLPASS_JWT".to_string(), token.clone())].into_iter().collect();
            Ok(SecretCredential::new("jwt", token, env))
        }
        .boxed()
    }

    fn revoke<'a>(
        &'a self,
        _grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        // Nothing lives on the target: introspection reads the grant's state,
        // and the token's own `exp` is the grant's expiry.
        async { Ok(()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    fn grant() -> GrantContext {
        let now = Utc::now();
        let mut config = Map::new();
        config.insert("audience".into(), json!("demo"));
        let target = crate::TargetContext {
            name: "demo".into(),
            config,
            secrets: TargetSecrets::new(),
            seed: crate::Seed::for_grant(b"test", "demo", "-"),
        };
        let seed = crate::Seed::for_grant(b"test", "demo", "r1");
        GrantContext::new(
            "r1",
            "alice",
            "demo-read",
            target,
            seed,
            now,
            now + Duration::minutes(5),
        )
    }

    #[test]
    fn key_is_created_private_and_reloaded_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt.key");
        let first = JwtSigner::load_or_create(&path, "hallpass".into()).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let second = JwtSigner::load_or_create(&path, "hallpass".into()).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.jwks(), second.jwks());
    }

    #[test]
    fn tokens_are_deterministic_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let signer = std::sync::Arc::new(JwtSigner::load_or_create(&dir.path().join("k"), "hallpass".into()).unwrap());
        let provider = JwtProvider::new(signer.clone());
        let grant = grant();
        let a = futures::executor::block_on(provider.credential(&grant, &json!({}))).unwrap();
        let b = futures::executor::block_on(provider.credential(&grant, &json!({}))).unwrap();
        assert_eq!(a.token, b.token, "re-derived token must be identical");
        let claims = signer.verify(&a.token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.aud, "demo");
        assert_eq!(claims.exp, grant.expires_at.timestamp());
    }

    #[test]
    fn forged_and_foreign_tokens_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let ours = JwtSigner::load_or_create(&dir.path().join("a"), "hallpass".into()).unwrap();
        let theirs = JwtSigner::load_or_create(&dir.path().join("b"), "hallpass".into()).unwrap();
        let claims = JwtProvider::new(std::sync::Arc::new(theirs)).claims(&grant()).unwrap();
        let foreign = JwtSigner::load_or_create(&dir.path().join("b"), "hallpass".into())
            .unwrap()
            .sign(&claims)
            .unwrap();
        assert!(ours.verify(&foreign).is_err());
        assert!(ours.verify("not.a.jwt").is_err());
    }

    #[test]
    fn config_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let provider = JwtProvider::new(std::sync::Arc::new(
            JwtSigner::load_or_create(&dir.path().join("k"), "h".into()).unwrap(),
        ));
        assert!(provider.validate_config(&Map::new(), &TargetSecrets::new()).is_err());
        let mut config = Map::new();
        config.insert("audience".into(), json!("x"));
        assert!(provider.validate_config(&config, &TargetSecrets::new()).is_ok());
        config.insert("audiance".into(), json!("x"));
        assert!(provider.validate_config(&config, &TargetSecrets::new()).is_err());
    }
}
