//! Admin connections to a mysql target: the pool of each target, one
//! connection taken from it with a time limit on every statement, what the
//! server is (MariaDB or MySQL, which changes privilege names), server
//! errors turned into messages that say where and how to fix without a
//! password in them, and the rotation of the admin's own password.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts};
use tokio::sync::OnceCell;

use super::grant::quote_string;
use super::{Config, Tls};
use crate::admin::{scrub, within};
use crate::{ProviderError, SecretValue};

/// At most this many admin connections per target.
const POOL_MAX: usize = 4;
/// ER_ACCESS_DENIED_ERROR and ER_ACCESS_DENIED_NO_PASSWORD_ERROR: wrong
/// user name or password (MariaDB answers the second for unknown users).
const ACCESS_DENIED: [u16; 2] = [1045, 1698];

/// A target's admin pool and what its server is, learnt on first use.
pub(super) struct Admin {
    pool: Pool,
    config: Config,
    /// The admin password, only to keep it out of messages.
    password: Option<SecretValue>,
    server: OnceCell<Server>,
}

/// What the admin connection talks to.
#[derive(Debug, Clone)]
pub(super) struct Server {
    pub(super) mariadb: bool,
    /// e.g. `10.11.19-MariaDB`.
    pub(super) version: String,
    /// The admin account as `'user'@'host'`, for the fixes we suggest.
    pub(super) admin: String,
    /// Whether `_` and `%` in database-level grants are patterns (they are
    /// literal on MySQL with `partial_revokes`).
    pub(super) escape_wildcards: bool,
}

/// Connection options for `config`, with `password` (none: empty).
fn options(config: &Config, password: Option<&SecretValue>) -> OptsBuilder {
    let tls = match config.tls {
        Tls::Disabled => None,
        Tls::Required => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        Tls::VerifyCa | Tls::VerifyFull => {
            let mut ssl = SslOpts::default().with_danger_skip_domain_validation(config.tls == Tls::VerifyCa);
            if let Some(ca) = &config.ca_file {
                // Only the named CA, not the built-in web roots.
                ssl = ssl
                    .with_root_certs(vec![PathBuf::from(ca).into()])
                    .with_disable_built_in_roots(true);
            }
            Some(ssl)
        }
    };
    OptsBuilder::default()
        .ip_or_hostname(config.host.clone())
        .tcp_port(config.port)
        .user(Some(config.username.clone()))
        .pass(password.map(|p| p.expose().to_string()))
        .prefer_socket(false)
        .ssl_opts(tls)
        .stmt_cache_size(0)
}

impl Admin {
    pub(super) fn new(config: Config, password: Option<&SecretValue>) -> Result<Self, ProviderError> {
        let constraints = PoolConstraints::new(0, POOL_MAX).unwrap_or_default();
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(Duration::from_secs(60))
            .with_ttl_check_interval(Duration::from_secs(30));
        let opts = options(&config, password).pool_opts(pool_opts);
        Ok(Self {
            pool: Pool::new(opts),
            config,
            password: password.cloned(),
            server: OnceCell::new(),
        })
    }
}

/// Why a statement failed.
#[derive(Debug)]
pub(super) enum Failure {
    Server { code: u16, message: String },
    Timeout,
    Other(String),
}

impl Failure {
    pub(super) fn code(&self) -> Option<u16> {
        match self {
            Self::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn from_driver(error: mysql_async::Error) -> Self {
        match error {
            mysql_async::Error::Server(error) => Self::Server {
                code: error.code,
                message: error.message,
            },
            other => Self::Other(other.to_string()),
        }
    }
}

/// One admin connection of a target.
pub(super) struct Session {
    conn: Conn,
    admin: Arc<Admin>,
    target: String,
    /// Secrets that must not appear in a message: the admin's password and
    /// the grant's.
    hidden: Vec<SecretValue>,
}

impl Session {
    pub(super) async fn open(admin: Arc<Admin>, target: &str) -> Result<Self, ProviderError> {
        let config = &admin.config;
        let conn = match within(config.timeouts.connect, admin.pool.get_conn()).await {
            Some(Ok(conn)) => conn,
            Some(Err(error)) => return Err(connect_error(target, config, &error, admin.password.as_ref())),
            None => return Err(timeout_error(target, config)),
        };
        let hidden = admin.password.iter().cloned().collect();
        let mut session = Self {
            conn,
            admin,
            target: target.to_string(),
            hidden,
        };
        let admin = session.admin.clone();
        admin.server.get_or_try_init(|| session.learn_server()).await?;
        Ok(session)
    }

    pub(super) fn server(&self) -> &Server {
        // Set by `open` before any session is handed out.
        self.admin.server.get().unwrap_or(&UNKNOWN_SERVER)
    }

    pub(super) fn hide(&mut self, secret: &SecretValue) {
        self.hidden.push(secret.clone());
    }

    async fn learn_server(&mut self) -> Result<Server, ProviderError> {
        let query = "SELECT VERSION(), CURRENT_USER()";
        let row: Option<(String, String)> = self.first(query).await.map_err(|f| self.error(query, f, ""))?;
        let (version, current) = row.unwrap_or_default();
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        let partial_revokes = if mariadb {
            false
        } else {
            // Absent before MySQL 8.0.16: wildcards are patterns there.
            let flag: Option<u64> = self.first("SELECT @@global.partial_revokes").await.unwrap_or(None);
            flag == Some(1)
        };
        let (user, host) = current.rsplit_once('@').unwrap_or((current.as_str(), "%"));
        Ok(Server {
            mariadb,
            version,
            admin: format!("{}@{}", quote_string(user), quote_string(host)),
            escape_wildcards: !partial_revokes,
        })
    }

    /// Runs `sql` (text protocol), within the statement time limit.
    pub(super) async fn run(&mut self, sql: &str) -> Result<(), Failure> {
        match within(self.admin.config.timeouts.command, self.conn.query_drop(sql)).await {
            Some(result) => result.map_err(Failure::from_driver),
            None => Err(Failure::Timeout),
        }
    }

    pub(super) async fn rows<T: FromRow + Send + 'static>(&mut self, sql: &str) -> Result<Vec<T>, Failure> {
        match within(self.admin.config.timeouts.command, self.conn.query(sql)).await {
            Some(result) => result.map_err(Failure::from_driver),
            None => Err(Failure::Timeout),
        }
    }

    async fn first<T: FromRow + Send + 'static>(&mut self, sql: &str) -> Result<Option<T>, Failure> {
        Ok(self.rows(sql).await?.into_iter().next())
    }

    /// The ids of the connections logged in as `user`.
    pub(super) async fn connections_of(&mut self, user: &str) -> Result<Vec<u64>, Failure> {
        let sql = "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?";
        match within(self.admin.config.timeouts.command, self.conn.exec(sql, (user,))).await {
            Some(result) => result.map_err(Failure::from_driver),
            None => Err(Failure::Timeout),
        }
    }

    /// "target T: `what` failed on HOST:PORT: <server's words>; <hint>",
    /// with every hidden secret taken out.
    pub(super) fn error(&self, what: &str, failure: Failure, hint: &str) -> ProviderError {
        let config = &self.admin.config;
        let detail = match failure {
            Failure::Server { code, message } => format!("server error {code}: {message}"),
            Failure::Timeout => format!(
                "no answer within {} s (statement_timeout_seconds)",
                config.timeouts.command.as_secs()
            ),
            Failure::Other(message) => message,
        };
        let hint = if hint.is_empty() {
            String::new()
        } else {
            format!("; {hint}")
        };
        let message = format!("{what} failed on {}:{}: {detail}{hint}", config.host, config.port);
        let hidden: Vec<&str> = self.hidden.iter().map(SecretValue::expose).collect();
        ProviderError::Target {
            target: self.target.clone(),
            message: scrub(&message, &hidden),
        }
    }
}

static UNKNOWN_SERVER: Server = Server {
    mariadb: false,
    version: String::new(),
    admin: String::new(),
    escape_wildcards: true,
};

fn timeout_error(target: &str, config: &Config) -> ProviderError {
    ProviderError::Target {
        target: target.to_string(),
        message: format!(
            "no connection to {}:{} within {} s (connect_timeout_seconds); check `host` and `port` and that the server is reachable",
            config.host,
            config.port,
            config.timeouts.connect.as_secs()
        ),
    }
}

fn connect_error(
    target: &str,
    config: &Config,
    error: &mysql_async::Error,
    password: Option<&SecretValue>,
) -> ProviderError {
    let hint = match error {
        mysql_async::Error::Server(server) if ACCESS_DENIED.contains(&server.code) => {
            "the server refused the admin login: check `username` and the `password` secret"
        }
        mysql_async::Error::Io(mysql_async::IoError::Tls(_)) => {
            "check `tls` and `ca_file` against the server's certificate"
        }
        mysql_async::Error::Io(_) => "check `host` and `port`, that the server is running, and `tls`",
        _ => "check the target's settings",
    };
    // mysql_async says "Input/output error: " twice over an I/O error.
    let detail = match error {
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io.to_string(),
        other => other.to_string(),
    };
    let message = format!(
        "cannot connect to {}:{} as {}: {detail}; {hint}",
        config.host, config.port, config.username
    );
    ProviderError::Target {
        target: target.to_string(),
        message: scrub(&message, &[password.map_or("", SecretValue::expose)]),
    }
}

/// One connection outside the pool (rotation must know which password
/// works): `Ok(None)` when the server refused the password.
async fn connect_once(
    config: &Config,
    target: &str,
    password: Option<&SecretValue>,
) -> Result<Option<Conn>, ProviderError> {
    match within(config.timeouts.connect, Conn::new(options(config, password))).await {
        Some(Ok(conn)) => Ok(Some(conn)),
        Some(Err(mysql_async::Error::Server(error))) if ACCESS_DENIED.contains(&error.code) => Ok(None),
        Some(Err(error)) => Err(connect_error(target, config, &error, password)),
        None => Err(timeout_error(target, config)),
    }
}

/// Changes the admin's password to `new`. Idempotent: when the current
/// password is refused but `new` is accepted, the change was made before.
pub(super) async fn rotate(
    config: &Config,
    target: &str,
    current: Option<&SecretValue>,
    new: &SecretValue,
) -> Result<(), ProviderError> {
    let failed = |message: String| ProviderError::Target {
        target: target.to_string(),
        message: scrub(&message, &[new.expose(), current.map_or("", SecretValue::expose)]),
    };
    if new.expose().is_empty() || new.expose().contains('\\') {
        return Err(failed(
            "the new admin password must be non-empty and contain no backslash".into(),
        ));
    }
    let Some(mut conn) = connect_once(config, target, current).await? else {
        return match connect_once(config, target, Some(new)).await? {
            Some(conn) => {
                let _ = conn.disconnect().await;
                Ok(())
            }
            None => Err(failed(format!(
                "the server refused both the current and the new password of {}; set the `password` secret to the one that works",
                config.username
            ))),
        };
    };
    let result = within(config.timeouts.command, alter_own_password(&mut conn, new)).await;
    let _ = conn.disconnect().await;
    match result {
        Some(Ok(())) => Ok(()),
        Some(Err(error)) => Err(failed(format!(
            "ALTER USER … IDENTIFIED BY … (the admin's own account) failed on {}:{}: {error}; on MariaDB the admin needs the CREATE USER privilege",
            config.host, config.port
        ))),
        None => Err(failed(format!(
            "ALTER USER … IDENTIFIED BY … got no answer within {} s; check whether the new password works",
            config.timeouts.command.as_secs()
        ))),
    }
}

/// `ALTER USER 'user'@'host' IDENTIFIED BY …` for the account the
/// connection is logged in as. Named, not `CURRENT_USER()`: MariaDB 10.11
/// accepts `ALTER USER CURRENT_USER() IDENTIFIED BY …` and leaves the
/// password as it was.
async fn alter_own_password(conn: &mut Conn, new: &SecretValue) -> Result<(), mysql_async::Error> {
    let current: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
    let current = current.unwrap_or_default();
    let (user, host) = current.rsplit_once('@').unwrap_or((current.as_str(), "%"));
    let sql = format!(
        "ALTER USER {}@{} IDENTIFIED BY {}",
        quote_string(user),
        quote_string(host),
        quote_string(new.expose())
    );
    conn.query_drop(sql).await
}
