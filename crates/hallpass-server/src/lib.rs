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
pub mod routes;
pub mod scheduler;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::extract::DefaultBodyLimit;
use hallpass_config::{LogFormat, ServerConfig};
use hallpass_core::{Clock, SystemClock};
use hallpass_providers::jwt::{JwtProvider, JwtSigner};
use hallpass_providers::{CredentialProvider, Registry};
use hallpass_store::Store;
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
        if !options.dev && data_dir.is_none() {
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
    // In dev mode without --data-dir, everything lives in a temp dir that is
    // removed when the server stops.
    let temp_dir = match settings.data_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("hallpass-dev-")
                .tempdir()
                .context("cannot create a temp dir")?,
        ),
    };
    let data_dir = match (&settings.data_dir, &temp_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temp)) => temp.path().to_path_buf(),
        (None, None) => bail!("no data directory"),
    };
    let store = Store::open(&data_dir, clock.clone())
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let signer = Arc::new(
        JwtSigner::load_or_create(&data_dir.join("jwt-signing-key.pk8"), settings.issuer.clone())
            .context("cannot load the JWT signing key")?,
    );
    let mut registry = Registry::default().with(Arc::new(JwtProvider::new(signer.clone())));
    for provider in extra_providers {
        registry = registry.with(provider);
    }
    let (deadline_tx, deadline_rx) = mpsc::unbounded_channel();
    let app = App::new(store.clone(), registry, signer, clock, deadline_tx);

    if settings.dev {
        dev::seed(&app, &settings, &data_dir).await?;
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
    tracing::info!(listen = %local, data_dir = %data_dir.display(), "hallpass is serving");
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

/// Before serving: finish activations a crash interrupted and end every grant
/// whose time ran out while the server was down.
async fn recover(app: &App) -> anyhow::Result<()> {
    let interrupted = app.store().read(|r| r.approved_not_active()).await?;
    for record in interrupted {
        let id = record.id.clone();
        if let Err(error) = app.activate(record).await {
            tracing::error!(request_id = %id, %error, "could not finish an interrupted activation; retrying later");
            app.retry_later(id);
        }
    }
    let now = app.now();
    let overdue = app.store().read(move |r| r.due_requests(now, u32::MAX)).await?;
    if !overdue.is_empty() {
        tracing::info!(
            count = overdue.len(),
            "ending grants that expired while the server was down"
        );
        scheduler::process(app, overdue.into_iter().map(|r| r.id).collect()).await;
    }
    Ok(())
}
