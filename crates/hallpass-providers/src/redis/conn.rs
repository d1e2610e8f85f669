//! The admin connection of a redis target: one multiplexed connection per
//! target (commands share it without waiting for each other), made again
//! after it broke, with a connect and a response time limit; server errors
//! turned into messages that say where and how to fix, without a secret.

use std::sync::Arc;

use ::redis::aio::MultiplexedConnection;
use ::redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisConnectionInfo, RedisError,
    TlsCertificates, Value,
};

use super::Config;
use crate::admin::scrub;
use crate::{ProviderError, SecretValue};

/// A target's admin client and its shared connection.
pub(super) struct Admin {
    client: Client,
    config: Config,
    password: Option<SecretValue>,
    /// Locked only while this target connects: other targets never wait.
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

/// A client for `config` that logs in with `password`.
fn client(config: &Config, password: Option<&SecretValue>) -> Result<Client, String> {
    let addr = if config.tls {
        ConnectionAddr::TcpTls {
            host: config.host.clone(),
            port: config.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(config.host.clone(), config.port)
    };
    let mut login = RedisConnectionInfo::default()
        .set_username(&config.username)
        .set_skip_set_lib_name();
    if let Some(password) = password {
        login = login.set_password(password.expose());
    }
    let info = addr
        .into_connection_info()
        .map_err(|e| e.to_string())?
        .set_redis_settings(login);
    match &config.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read ca_file {path}: {e}"))?;
            let certificates = TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            Client::build_with_tls(info, certificates).map_err(|e| format!("ca_file {path}: {e}"))
        }
        None => Client::open(info).map_err(|e| e.to_string()),
    }
}

/// "target T: `what` failed on HOST:PORT: DETAIL; HINT", secrets removed.
pub(super) fn failed(
    target: &str,
    config: &Config,
    what: &str,
    detail: &str,
    hint: &str,
    hidden: &[&str],
) -> ProviderError {
    let hint = if hint.is_empty() {
        String::new()
    } else {
        format!("; {hint}")
    };
    ProviderError::Target {
        target: target.to_string(),
        message: scrub(
            &format!("{what} failed on {}:{}: {detail}{hint}", config.host, config.port),
            hidden,
        ),
    }
}

/// Whether the server refused the user name or password.
pub(super) fn is_auth_failure(error: &RedisError) -> bool {
    error.kind() == ErrorKind::AuthenticationFailed || matches!(error.code(), Some("WRONGPASS" | "NOAUTH"))
}

/// What a connection error means for the person setting the target up.
fn connect_hint(error: &RedisError) -> &'static str {
    if is_auth_failure(error) {
        "the server refused the admin login: check `username` and the `password` secret"
    } else if error.is_timeout() {
        "check `host` and `port`, that the server is reachable, and connect_timeout_seconds"
    } else {
        "check `host`, `port` and `tls`, and that the server is running"
    }
}

/// One connection with its own time limits, outside any pool.
pub(super) async fn connect(
    config: &Config,
    target: &str,
    password: Option<&SecretValue>,
) -> Result<MultiplexedConnection, (Option<RedisError>, ProviderError)> {
    let hidden = [password.map_or("", SecretValue::expose)];
    let what = format!("connecting as {}", config.username);
    let client = client(config, password).map_err(|e| (None, failed(target, config, &what, &e, "", &hidden)))?;
    let limits = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.timeouts.connect))
        .set_response_timeout(Some(config.timeouts.command));
    client
        .get_multiplexed_async_connection_with_config(&limits)
        .await
        .map_err(|e| {
            let error = failed(target, config, &what, &e.to_string(), connect_hint(&e), &hidden);
            (Some(e), error)
        })
}

impl Admin {
    pub(super) fn new(config: Config, target: &str, password: Option<&SecretValue>) -> Result<Self, ProviderError> {
        let hidden = [password.map_or("", SecretValue::expose)];
        let client = client(&config, password).map_err(|e| {
            failed(
                target,
                &config,
                "setting up the connection",
                &e,
                "check `ca_file`",
                &hidden,
            )
        })?;
        Ok(Self {
            client,
            config,
            password: password.cloned(),
            conn: tokio::sync::Mutex::new(None),
        })
    }

    async fn connection(&self, target: &str) -> Result<MultiplexedConnection, ProviderError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let limits = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.timeouts.connect))
            .set_response_timeout(Some(self.config.timeouts.command));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&limits)
            .await
            .map_err(|e| {
                let what = format!("connecting as {}", self.config.username);
                failed(
                    target,
                    &self.config,
                    &what,
                    &e.to_string(),
                    connect_hint(&e),
                    &self.hidden(),
                )
            })?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn hidden(&self) -> [&str; 1] {
        [self.password.as_ref().map_or("", SecretValue::expose)]
    }
}

/// Sends `args` as one command; each is one bulk string, so nothing in
/// them needs escaping.
pub(super) async fn call(conn: &mut MultiplexedConnection, args: &[&str]) -> Result<Value, RedisError> {
    let mut command = ::redis::cmd(args.first().copied().unwrap_or("PING"));
    for arg in args.iter().skip(1) {
        command.arg(*arg);
    }
    command.query_async::<Value>(conn).await
}

/// The admin connection of one target, for one operation.
pub(super) struct Link {
    conn: MultiplexedConnection,
    admin: Arc<Admin>,
    target: String,
}

impl Link {
    pub(super) async fn open(admin: Arc<Admin>, target: &str) -> Result<Self, ProviderError> {
        let conn = admin.connection(target).await?;
        Ok(Self {
            conn,
            admin,
            target: target.to_string(),
        })
    }

    pub(super) fn config(&self) -> &Config {
        &self.admin.config
    }

    /// Sends one command. A broken or silent connection is dropped, so the
    /// next operation connects again.
    pub(super) async fn call(&mut self, args: &[&str]) -> Result<Value, RedisError> {
        let result = call(&mut self.conn, args).await;
        if let Err(error) = &result
            && (error.is_io_error() || error.is_timeout() || error.is_connection_dropped())
        {
            *self.admin.conn.lock().await = None;
        }
        result
    }

    /// A message for a failed `what`, with `extra` secrets kept out.
    pub(super) fn error(&self, what: &str, error: &RedisError, hint: &str, extra: &[&str]) -> ProviderError {
        let mut hidden = self.admin.hidden().to_vec();
        hidden.extend_from_slice(extra);
        failed(
            &self.target,
            &self.admin.config,
            what,
            &error.to_string(),
            hint,
            &hidden,
        )
    }
}
