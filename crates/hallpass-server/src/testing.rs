//! An [`App`] without a listener, for tests of the service layer: over
//! SQLite in a directory the test owns (or a PostgreSQL database the test
//! made), on the test's clock, with the JWT provider and any extra
//! providers. Not used by the server itself.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hallpass_core::Clock;
use hallpass_core::audit::CheckpointSigner;
use hallpass_providers::jwt::{JwtProvider, JwtSigner};
use hallpass_providers::{CredentialProvider, Registry};
use hallpass_store::{Backend, Store};
use tokio::sync::mpsc;

use crate::app::seal::Sealer;
use crate::app::{App, AppParts, Caller};

/// Where the app sends the deadlines the scheduler should wake for.
pub type DeadlineInbox = mpsc::UnboundedReceiver<(DateTime<Utc>, String)>;

/// The app, and the scheduler's inbox of deadlines (keep it alive; a test
/// may feed it to [`crate::scheduler::run`] or just hold it).
pub fn app_in(
    dir: &Path,
    clock: Arc<dyn Clock>,
    extra_providers: Vec<Arc<dyn CredentialProvider>>,
) -> anyhow::Result<(App, DeadlineInbox)> {
    let data_dir = dir.join("data");
    app_on(Backend::Sqlite { data_dir }, dir, clock, extra_providers)
}

/// Like [`app_in`], on `backend`; the keys (seal, JWT) live in `dir`.
pub fn app_on(
    backend: Backend,
    dir: &Path,
    clock: Arc<dyn Clock>,
    extra_providers: Vec<Arc<dyn CredentialProvider>>,
) -> anyhow::Result<(App, DeadlineInbox)> {
    // The PostgreSQL client connects synchronously and refuses to on a
    // thread that drives a Tokio runtime, as a test's thread does.
    let store = std::thread::scope(|scope| {
        let clock = clock.clone();
        scope.spawn(move || Store::open(backend, clock)).join()
    })
    .map_err(|_| anyhow::anyhow!("opening the store panicked"))??;
    let seal_key = crate::app::seal::resolve_key(None, Some(dir))?;
    let signer = Arc::new(JwtSigner::load_or_create(&dir.join("jwt.key"), "test".into())?);
    let mut registry = Registry::default()
        .with(Arc::new(JwtProvider::new(signer.clone())))
        .with(Arc::new(crate::hallpass_target::HallpassProvider::new(store.clone())));
    for provider in extra_providers {
        registry = registry.with(provider);
    }
    let (deadlines, inbox) = mpsc::unbounded_channel();
    let audit_key = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("cannot make an audit key"))?;
    let app = App::new(AppParts {
        store,
        registry,
        signer,
        audit_signer: Arc::new(CheckpointSigner::from_pkcs8(audit_key.as_ref())?),
        sealer: Arc::new(Sealer::new(&seal_key)?),
        credential_key: Arc::new(zeroize::Zeroizing::new(vec![7; 32])),
        // No worker binary in a test process: evaluate in-process.
        evaluator: hallpass_policy::Evaluator::default(),
        clock,
        deadlines,
        auth_failures_per_minute: crate::app::tokens::DEFAULT_AUTH_FAILURES_PER_MINUTE,
        workload_issuers: Default::default(),
        notifier_types: crate::notify::notifier_types()?,
        public_url: None,
        sso: None,
    });
    Ok((app, inbox))
}

/// A caller with `name` and `groups`, as if authenticated.
pub fn caller(name: &str, groups: &[&str]) -> Caller {
    Caller {
        principal: hallpass_core::Principal {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        },
        token_id: format!("tok_{name}"),
        token_expires_at: None,
    }
}

/// A signing key of a made-up OIDC issuer, for tests of workload identity:
/// signs JWTs as a CI system would, and gives its public JWK.
pub struct TestIssuerKey {
    kid: String,
    key: IssuerKey,
}

enum IssuerKey {
    Es256(aws_lc_rs::signature::EcdsaKeyPair),
    Rs256(aws_lc_rs::rsa::KeyPair),
}

impl TestIssuerKey {
    /// A new P-256 key (ES256).
    pub fn es256(kid: &str) -> TestIssuerKey {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pair = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .and_then(|pkcs8| {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                    .map_err(|_| aws_lc_rs::error::Unspecified)
            })
            .expect("a P-256 key");
        TestIssuerKey {
            kid: kid.into(),
            key: IssuerKey::Es256(pair),
        }
    }

    /// A new 2048-bit RSA key (RS256).
    pub fn rs256(kid: &str) -> TestIssuerKey {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("an RSA key");
        TestIssuerKey {
            kid: kid.into(),
            key: IssuerKey::Rs256(pair),
        }
    }

    pub fn alg(&self) -> &'static str {
        match self.key {
            IssuerKey::Es256(_) => "ES256",
            IssuerKey::Rs256(_) => "RS256",
        }
    }

    /// The public key as a JWK, as an issuer's JWKS lists it.
    pub fn jwk(&self) -> serde_json::Value {
        use aws_lc_rs::signature::KeyPair as _;
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        match &self.key {
            IssuerKey::Es256(pair) => {
                let point = pair.public_key().as_ref();
                serde_json::json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
            }
            IssuerKey::Rs256(pair) => {
                let public = pair.public_key();
                serde_json::json!({"kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig",
                    "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero())})
            }
        }
    }

    /// A JWT of `claims` with the usual header (`alg`, `kid`, `typ`).
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": self.alg(), "kid": self.kid, "typ": "JWT"});
        self.sign_with_header(&header, claims)
    }

    /// A JWT of `claims` under any header, signed with this key.
    pub fn sign_with_header(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match &self.key {
            IssuerKey::Es256(pair) => pair.sign(&rng, signed.as_bytes()).expect("sign").as_ref().to_vec(),
            IssuerKey::Rs256(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &rng,
                    signed.as_bytes(),
                    &mut signature,
                )
                .expect("sign");
                signature
            }
        };
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// A JWT of `claims` with `alg: none` and no signature.
    pub fn unsigned(claims: &serde_json::Value) -> String {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }
}
