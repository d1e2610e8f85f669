//! The Hallpass broker.
//!
//! [`run`] is `hallpass server`: it resolves settings (flags over the HCL
//! config file over defaults), opens the store, upgrades what an earlier
//! release stored, creates the first admin token or the dev playground,
//! revokes everything that became overdue while the server was down, and
//! only then starts listening. The scheduler task ends grants on time from
//! then on, and the audit sinks copy the log to their receivers.
//! SIGTERM/SIGINT stop accepting requests, let in-flight ones finish, sign
//! a last checkpoint, let the sinks send it, and flush the store.
//!
//! `app` is the service layer (every operation, authorized, HTTP-agnostic);
//! `http` is the only module that knows HTTP.

pub mod app;
mod audit_sinks;
mod dev;
mod gate;
pub mod hallpass_target;
pub mod http;
pub mod notify;
pub mod scheduler;
pub mod settings;
pub mod telemetry;
pub mod testing;

use std::sync::Arc;

use anyhow::{Context, bail};
use hallpass_core::audit::CheckpointSigner;
use hallpass_core::{Clock, SystemClock};
use hallpass_policy::{Evaluator, PolicySandbox, SandboxConfig};
use hallpass_providers::aws::AwsProvider;
use hallpass_providers::jwt::{JwtProvider, JwtSigner};
use hallpass_providers::mysql::MysqlProvider;
use hallpass_providers::postgres::PostgresProvider;
use hallpass_providers::redis::RedisProvider;
use hallpass_providers::ssh::SshProvider;
use hallpass_providers::webhook::WebhookProvider;
use hallpass_providers::{CredentialProvider, Registry};
use hallpass_store::{Backend, Store};
use tokio::sync::{mpsc, watch};

use crate::app::{App, AppError, AppParts};
use crate::hallpass_target::HallpassProvider;
pub use settings::{DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, ServerOptions, Settings};

/// How long the audit sinks get at shutdown to send the rest of the log.
/// They drain after the closing checkpoint, so their copies end signed.
const SINK_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(options: ServerOptions) -> anyhow::Result<()> {
    let settings = Settings::resolve(options)?;
    telemetry::init_logging(&settings);
    let shutdown = async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down: finishing in-flight requests");
    };
    serve(settings, Vec::new(), Arc::new(SystemClock), shutdown).await
}

/// Opens the store for `settings` (in a temp dir for a throwaway dev
/// server); returns it with the temp dir to keep alive.
async fn open_store(
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Store, Backend, Option<tempfile::TempDir>)> {
    // SQLite in dev mode without --data-dir lives in a temp dir that is
    // removed when the server stops.
    let temp_dir = match (&settings.database_url, &settings.data_dir) {
        (None, None) => Some(
            tempfile::Builder::new()
                .prefix("hallpass-dev-")
                .tempdir()
                .context("cannot create a temp dir")?,
        ),
        _ => None,
    };
    let data_dir = settings
        .data_dir
        .clone()
        .or_else(|| temp_dir.as_ref().map(|t| t.path().to_path_buf()));
    let backend = match (&settings.database_url, &data_dir) {
        (Some(url), _) => Backend::Postgres { url: url.clone() },
        (None, Some(dir)) => {
            hallpass_store::prepare_data_dir(dir)?;
            Backend::Sqlite { data_dir: dir.clone() }
        }
        (None, None) => bail!("no storage configured"),
    };
    // Opening connects synchronously (and runs migrations): off the runtime.
    let store = {
        let (backend, clock) = (backend.clone(), clock.clone());
        tokio::task::spawn_blocking(move || Store::open(backend, clock))
            .await
            .context("store start-up panicked")?
    }
    .with_context(|| format!("cannot open the {backend:?} store"))?;
    Ok((store, backend, temp_dir))
}

/// Every target type, plus the ones tests add.
fn providers(
    signer: &Arc<JwtSigner>,
    store: &Store,
    extra_providers: Vec<Arc<dyn CredentialProvider>>,
) -> anyhow::Result<Registry> {
    let webhook = WebhookProvider::new().context("cannot set up the webhook provider")?;
    let aws = AwsProvider::new().context("cannot set up the aws provider")?;
    let registry = Registry::default()
        .with(Arc::new(JwtProvider::new(signer.clone())))
        .with(Arc::new(webhook))
        .with(Arc::new(PostgresProvider::new()))
        .with(Arc::new(MysqlProvider::new()))
        .with(Arc::new(RedisProvider::new()))
        .with(Arc::new(SshProvider::new()))
        .with(Arc::new(aws))
        .with(Arc::new(HallpassProvider::new(store.clone())));
    Ok(extra_providers
        .into_iter()
        .fold(registry, |registry, provider| registry.with(provider)))
}

/// Starts the broker with `settings` and serves until `shutdown` resolves.
/// `extra_providers` lets tests add target types.
pub async fn serve(
    settings: Settings,
    extra_providers: Vec<Arc<dyn CredentialProvider>>,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Before the store: a sink the server cannot use changes nothing.
    let sinks = audit_sinks::AuditSinks::prepare(&settings.audit_sinks)?;
    let (store, backend, temp_dir) = open_store(&settings, clock.clone()).await?;
    let sqlite_dir = match &backend {
        Backend::Sqlite { data_dir } => Some(data_dir.clone()),
        Backend::Postgres { .. } => None,
    };
    let seal_key = app::seal::resolve_key(settings.seal_key.clone(), sqlite_dir.as_deref())?;
    let sealer = Arc::new(app::seal::Sealer::new(&seal_key)?);
    let keys = app::seal::unseal_keys(&store, &sealer).await?;
    let signer =
        Arc::new(JwtSigner::from_pkcs8(&keys.jwt, settings.issuer.clone()).context("cannot load the JWT signing key")?);
    let audit_signer =
        Arc::new(CheckpointSigner::from_pkcs8(&keys.audit).context("cannot load the audit signing key")?);
    let evaluator = policy_sandbox()?;
    if sqlite_dir.is_some() {
        // One server per SQLite file: claims left by a crash are dead.
        store
            .write(|w| -> Result<u64, AppError> { Ok(w.release_all_claims()?) })
            .await
            .context("cannot release stale claims")?;
    }
    let registry = providers(&signer, &store, extra_providers)?;
    let (workload_issuers, sso) = identity_providers(&settings)?;
    let (deadline_tx, deadline_rx) = mpsc::unbounded_channel();
    let app = App::new(AppParts {
        store: store.clone(),
        registry,
        signer,
        audit_signer,
        sealer,
        credential_key: Arc::new(keys.credential),
        evaluator,
        clock,
        deadlines: deadline_tx,
        auth_failures_per_minute: settings.auth_failures_per_minute,
        workload_issuers,
        notifier_types: notify::notifier_types()?,
        public_url: Some(settings.issuer.clone()),
        sso,
    });
    start_up(&app, &settings, &format!("{backend:?}")).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let scheduler = tokio::spawn(scheduler::run(app.clone(), deadline_rx, stop_rx.clone()));
    let checkpoints = tokio::spawn(scheduler::checkpoints(app.clone(), stop_rx.clone()));
    let notifications = notify::spawn(&app, stop_rx);
    let sinks = audit_sinks::AuditSinks::start(sinks, &store).await?;
    let router = http::router(
        app.clone(),
        http::HttpSettings {
            max_body_bytes: settings.max_body_bytes,
            request_timeout: settings.request_timeout,
            metrics: telemetry::install_metrics(),
        },
    );
    listen(&settings, router, &backend, shutdown).await?;
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    let _ = checkpoints.await;
    notifications.stop().await;
    // The log ends signed, so an export of a stopped server proves itself.
    if let Err(error) = app.write_checkpoint().await {
        tracing::error!(%error, "cannot write the closing audit checkpoint");
    }
    sinks.drain(SINK_DRAIN_TIME).await;
    store.close();
    drop(temp_dir);
    Ok(())
}

/// Who the server trusts to say who someone is: the CI systems of
/// `workload_identity` blocks, and the `sso` block's provider for people.
type IdentityProviders = (Arc<app::workload::WorkloadIssuers>, Option<Arc<app::sso::SsoProvider>>);

fn identity_providers(settings: &Settings) -> anyhow::Result<IdentityProviders> {
    let workload = Arc::new(app::workload::WorkloadIssuers::new(
        settings.workload_identities.clone(),
    )?);
    let sso = settings
        .single_sign_on
        .clone()
        .map(|config| app::sso::SsoProvider::new(config, &settings.issuer))
        .transpose()?;
    Ok((workload, sso))
}

/// Policies are evaluated in worker processes of this very binary (its
/// hidden `__policy-worker` command), under a time and a memory limit, so no
/// policy or input can stall or exhaust the server. `/proc/self/exe` stays
/// this binary even if the file is replaced during an upgrade.
fn policy_sandbox() -> anyhow::Result<Evaluator> {
    let program = std::path::Path::new("/proc/self/exe");
    let program = if program.exists() {
        program.to_path_buf()
    } else {
        std::env::current_exe().context("cannot find this binary to start policy workers")?
    };
    let sandbox = PolicySandbox::new(SandboxConfig::new(program)).context("cannot start the policy workers")?;
    Ok(Evaluator::Sandbox(sandbox))
}

/// What runs before the API serves: upgrades of stored data, the first
/// admin token or the dev playground, and every overdue grant ended.
async fn start_up(app: &App, settings: &Settings, storage: &str) -> anyhow::Result<()> {
    let upgraded = app.upgrade_legacy_targets().await?;
    if upgraded > 0 {
        tracing::warn!(
            count = upgraded,
            "upgraded targets that kept credentials in their configuration"
        );
    }
    if settings.dev {
        dev::seed(app, settings, storage).await?;
    } else {
        dev::bootstrap_admin(app).await?;
    }
    app.init_outbox()
        .await
        .context("cannot start the notification outbox")?;
    let ended = scheduler::drain_due(app).await?;
    if ended > 0 {
        tracing::info!(count = ended, "ended grants that became due while the server was down");
    }
    // Before the API serves, so the log's first event after start-up is
    // never raced by this one.
    app.write_checkpoint()
        .await
        .context("cannot write the start-up audit checkpoint")?;
    Ok(())
}

async fn listen(
    settings: &Settings,
    router: axum::Router,
    backend: &Backend,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = http::listener::bind(settings.listen).with_context(|| {
        format!(
            "cannot listen on {} (is another server running there? use --listen)",
            settings.listen
        )
    })?;
    let local = listener.local_addr().context("listener has no address")?;
    let tls = match &settings.tls {
        Some((cert, key)) => Some(http::listener::TlsConfig::from_pem_files(cert, key)?),
        None => None,
    };
    let fd_limit = http::listener::raise_fd_limit().context("cannot read the open-file limit")?;
    let options = http::listener::ListenerOptions {
        tls,
        ..http::listener::ListenerOptions::default()
    }
    .capped_by_fd_limit(fd_limit);
    if !local.ip().is_loopback() && settings.tls.is_none() {
        tracing::warn!(
            listen = %local,
            "serving plain HTTP on a non-loopback address: tokens and credentials cross the network in clear \
             unless a TLS-terminating proxy is in front; use --tls-cert/--tls-key or a proxy"
        );
    }
    tracing::info!(
        listen = %local, storage = ?backend, tls = settings.tls.is_some(),
        max_connections = options.max_connections, "hallpass is serving"
    );
    if settings.dev {
        dev::print_ready(local);
    }
    http::listener::serve(listener, router, options, shutdown)
        .await
        .context("server error")
}
