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
