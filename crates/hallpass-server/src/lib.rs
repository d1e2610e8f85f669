//! The Hallpass broker.
//!
//! [`run`] is `hallpass server`: it resolves settings (flags over the HCL
//! config file over defaults), opens the store, creates the first admin
//! token or the dev playground, revokes everything that became overdue while
//! the server was down, and only then starts listening. The scheduler task
//! ends grants on time from then on. SIGTERM/SIGINT stop accepting requests,
//! let in-flight ones finish, and flush the store.

pub mod access_config;
pub mod app;
pub mod auth;
mod dev;
pub mod error;
mod gate;
pub mod listener;
pub mod routes;
pub mod scheduler;
pub mod seal;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::extract::DefaultBodyLimit;
use hallpass_config::{LogFormat, ServerConfig};
use hallpass_core::{Clock, SystemClock};
use hallpass_providers::jwt::{JwtProvider, JwtSigner};
use hallpass_providers::webhook::WebhookProvider;
use hallpass_providers::{CredentialProvider, Registry};
use hallpass_store::{Backend, Store};
use tokio::sync::{mpsc, watch};

use crate::app::App;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// How `hallpass server` was invoked; flags win over the config file.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub dev: bool,
    pub config_file: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub dev_root_token: Option<String>,
    /// `postgres://...`: use PostgreSQL instead of the embedded SQLite.
    pub database_url: Option<String>,
}

/// Settings after flags, config file and defaults are merged.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dev: bool,
    pub listen: SocketAddr,
    /// `None` in dev mode without `--data-dir`: a temp dir is used.
    pub data_dir: Option<PathBuf>,
    pub issuer: String,
    pub log_format: LogFormat,
    pub log_level: String,
    pub max_body_bytes: usize,
    pub dev_root_token: Option<String>,
    /// PostgreSQL URL; `None` means the embedded SQLite in the data dir.
    pub database_url: Option<String>,
    pub seal_key: Option<hallpass_config::SealKey>,
}

impl Settings {
    pub fn resolve(options: ServerOptions) -> anyhow::Result<Settings> {
        let config = match &options.config_file {
            Some(path) => hallpass_config::parse_server_config_file(path)
                .map_err(|errors| anyhow::anyhow!("invalid server configuration:\n{errors}"))?,
            None => ServerConfig::default(),
        };
        let listen_text = options
            .listen
            .or(config.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text
            .parse()
            .with_context(|| format!("--listen {listen_text:?} is not an address like 127.0.0.1:7070"))?;
        let data_dir = options.data_dir.or(config.data_dir);
        let database_url = options.database_url.or(match config.storage {
            Some(hallpass_config::Storage::Postgres { url }) => Some(url),
            Some(hallpass_config::Storage::Sqlite) | None => None,
        });
        if let Some(url) = &database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!("--database-url must be a PostgreSQL URL like postgres://user@host:5432/hallpass");
        }
        if !options.dev && data_dir.is_none() && database_url.is_none() {
            bail!(
                "no data directory: pass --data-dir DIR (or data_dir in the config file), or run with --dev for a throwaway playground"
            );
        }
        if options.dev_root_token.is_some() && !options.dev {
            bail!(
                "--dev-root-token only applies with --dev; outside dev mode set HALLPASS_BOOTSTRAP_TOKEN before the first start"
            );
        }
        let issuer = config.public_url.unwrap_or_else(|| format!("http://{listen}"));
        let log_format = config
            .log_format
            .unwrap_or(if options.dev { LogFormat::Text } else { LogFormat::Json });
        let max_body_bytes = config
            .max_body_bytes
            .map(|n| usize::try_from(n).unwrap_or(DEFAULT_MAX_BODY_BYTES))
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);
        Ok(Settings {
            dev: options.dev,
            listen,
            data_dir,
            issuer,
            log_format,
            log_level: config.log_level.unwrap_or_else(|| "info".to_string()),
            max_body_bytes,
            dev_root_token: options.dev_root_token,
            database_url,
            seal_key: config.seal_key,
        })
    }
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Already initialised (several servers in one test process) is fine.
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(options: ServerOptions) -> anyhow::Result<()> {
    let settings = Settings::resolve(options)?;
    init_logging(&settings);
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

/// Starts the broker with `settings` and serves until `shutdown` resolves.
/// `extra_providers` lets tests add target types.
pub async fn serve(
    settings: Settings,
    extra_providers: Vec<Arc<dyn CredentialProvider>>,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
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
        (None, Some(dir)) => Backend::Sqlite { data_dir: dir.clone() },
        (None, None) => bail!("no storage configured"),
    };
    let sqlite_dir = match &backend {
        Backend::Sqlite { data_dir } => Some(data_dir.as_path()),
        Backend::Postgres { .. } => None,
    };
    if let Some(dir) = sqlite_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let seal_key = seal::resolve_key(settings.seal_key.clone(), sqlite_dir)?;
    let sealer = seal::Sealer::new(&seal_key)?;
    // Opening connects synchronously (and runs migrations): off the runtime.
    let store = {
        let (backend, clock) = (backend.clone(), clock.clone());
        tokio::task::spawn_blocking(move || Store::open(backend, clock))
            .await
            .context("store start-up panicked")?
    }
    .with_context(|| format!("cannot open the {backend:?} store"))?;
    let signing_key = seal::unseal_signing_key(&store, &sealer).await?;
    let signer = Arc::new(
        JwtSigner::from_pkcs8(&signing_key, settings.issuer.clone()).context("cannot load the JWT signing key")?,
    );
    if sqlite_dir.is_some() {
        // One server per SQLite file: claims left by a crash are dead.
        store
            .write(|w| -> Result<u64, error::ApiError> { Ok(w.release_all_claims()?) })
            .await
            .context("cannot release stale claims")?;
    }
    let webhook = WebhookProvider::new().context("cannot set up the webhook provider")?;
    let mut registry = Registry::default()
        .with(Arc::new(JwtProvider::new(signer.clone())))
        .with(Arc::new(webhook));
    for provider in extra_providers {
        registry = registry.with(provider);
    }
    let (deadline_tx, deadline_rx) = mpsc::unbounded_channel();
    let app = App::new(store.clone(), registry, signer, clock, deadline_tx);

    if settings.dev {
        dev::seed(&app, &settings, &format!("{backend:?}")).await?;
    } else {
        dev::bootstrap_admin(&app).await?;
    }
    recover(&app).await?;

    let deadlines = store
        .read(|r| r.deadlines())
        .await
        .context("cannot load grant deadlines")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let scheduler = tokio::spawn(scheduler::run(app.clone(), deadlines, deadline_rx, stop_rx));

    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics_handle = metrics.handle();
    let _ = metrics::set_global_recorder(metrics);
    let router = routes::router(app.clone())
        .route(
            "/metrics",
            axum::routing::get(move || std::future::ready(metrics_handle.render())),
        )
        .layer(DefaultBodyLimit::max(settings.max_body_bytes));

    let listener = tokio::net::TcpListener::bind(settings.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (is another server running there? use --listen)",
            settings.listen
        )
    })?;
    let local = listener.local_addr().context("listener has no address")?;
    tracing::info!(listen = %local, storage = ?backend, "hallpass is serving");
    if settings.dev {
        dev::print_ready(local);
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .context("server error")?;
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    store.close();
    drop(temp_dir);
    Ok(())
}

/// Before serving: end every grant whose time ran out while the server was
/// down, retry failed revocations that are due, and finish activations a
/// crash interrupted (approved requests are due at once).
async fn recover(app: &App) -> anyhow::Result<()> {
    let ended = scheduler::drain_due(app).await?;
    if ended > 0 {
        tracing::info!(count = ended, "ended grants that became due while the server was down");
    }
    Ok(())
}
