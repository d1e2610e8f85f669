//! `hallpass server`'s settings: flags over the HCL config file over
//! defaults, resolved once at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use hallpass_config::{LogFormat, ServerConfig};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest a request may take before it is answered 408: above the longest
/// long-poll (60 s), so `--wait` is never cut.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(75);

/// How `hallpass server` was invoked; flags win over the config file.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub dev: bool,
    pub config_file: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub dev_root_token: Option<String>,
    /// A file holding the dev root token, so it need not show in `ps`.
    pub dev_root_token_file: Option<PathBuf>,
    /// `postgres://...`: use PostgreSQL instead of the embedded SQLite.
    pub database_url: Option<String>,
    /// Serve HTTPS with this certificate chain and key (PEM).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
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
    pub request_timeout: Duration,
    /// Failed authentications one address may make per minute.
    pub auth_failures_per_minute: u32,
    pub dev_root_token: Option<String>,
    /// PostgreSQL URL; `None` means the embedded SQLite in the data dir.
    pub database_url: Option<String>,
    pub seal_key: Option<hallpass_config::SealKey>,
    /// Certificate chain and key files for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// OIDC issuers whose workload tokens are exchanged for API tokens.
    pub workload_identities: Vec<hallpass_config::WorkloadIdentity>,
    /// Outside copies of the audit log.
    pub audit_sinks: Vec<hallpass_config::AuditSink>,
    /// Single sign-on for people (the web interface, `hallpass login`).
    pub single_sign_on: Option<hallpass_config::SingleSignOn>,
}

fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the dev root token file {}", path.display()))?;
    Ok(text.trim().to_string())
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
        let dev_root_token = match (options.dev_root_token, &options.dev_root_token_file) {
            (Some(_), Some(_)) => bail!("give --dev-root-token or --dev-root-token-file, not both"),
            (Some(token), None) => Some(token),
            (None, Some(path)) => Some(read_token_file(path)?),
            (None, None) => None,
        };
        if dev_root_token.is_some() && !options.dev {
            bail!(
                "--dev-root-token only applies with --dev; outside dev mode set HALLPASS_BOOTSTRAP_TOKEN before the first start"
            );
        }
        let tls = match (options.tls_cert, options.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together: give both (PEM files) or neither"),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let issuer = config.public_url.unwrap_or_else(|| format!("{scheme}://{listen}"));
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
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            auth_failures_per_minute: config
                .auth_failures_per_minute
                .unwrap_or(crate::app::tokens::DEFAULT_AUTH_FAILURES_PER_MINUTE),
            dev_root_token,
            database_url,
            seal_key: config.seal_key,
            tls,
            workload_identities: config.workload_identities,
            audit_sinks: config.audit_sinks,
            single_sign_on: config.single_sign_on,
        })
    }
}
