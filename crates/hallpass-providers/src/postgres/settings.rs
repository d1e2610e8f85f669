//! The postgres target's `config` and a role's `grant` block, parsed and
//! checked: every message names the setting, what is wrong and what would
//! be right, and never a secret value.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Map, Value};

use crate::{ProviderError, SecretSpec, TargetSecrets, whole_number};

/// The target `type` served by [`super::PostgresProvider`].
pub const TARGET_TYPE: &str = "postgres";
/// The settings a postgres target accepts in `config`.
pub const SETTINGS: [&str; 8] = [
    "host",
    "port",
    "database",
    "username",
    "sslmode",
    "ca_file",
    "connect_timeout_seconds",
    "statement_timeout_seconds",
];
/// The admin user's password, the one secret a postgres target takes.
pub const PASSWORD: &str = "password";
/// The secrets a postgres target takes.
pub const SECRETS: &[SecretSpec] = &[SecretSpec {
    name: PASSWORD,
    required: false,
    description: "the admin user's password; leave it out only where the server trusts the admin without one",
}];
pub const DEFAULT_PORT: u16 = 5432;
pub const DEFAULT_CONNECT_TIMEOUT_SECONDS: u64 = 5;
pub const CONNECT_TIMEOUT_RANGE_SECONDS: RangeInclusive<u64> = 1..=60;
pub const DEFAULT_STATEMENT_TIMEOUT_SECONDS: u64 = 15;
pub const STATEMENT_TIMEOUT_RANGE_SECONDS: RangeInclusive<u64> = 1..=300;
/// The settings a role's `grant` block accepts.
pub const GRANT_SETTINGS: [&str; 2] = ["roles", "connection_limit"];
/// Most roles one grant may give.
pub const MAX_GRANT_ROLES: usize = 32;
pub const CONNECTION_LIMIT_RANGE: RangeInclusive<u64> = 1..=1000;
/// PostgreSQL cuts longer names (NAMEDATALEN - 1), which could make a
/// name mean another role: longer ones are refused instead.
pub const MAX_NAME_BYTES: usize = 63;

/// How the admin connection (and the requester's, through `PGSSLMODE`)
/// uses TLS; the names and meanings of libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP: for a server on the same host or a private network only.
    Disable,
    /// TLS, the server's certificate not checked (protects against
    /// eavesdropping, not against someone posing as the server).
    Require,
    /// TLS, the certificate must chain to `ca_file` (or a public root);
    /// the host name is not checked.
    VerifyCa,
    /// TLS, the certificate must chain to a trusted root and name `host`.
    VerifyFull,
}

impl SslMode {
    /// The safe choice when `sslmode` is not set.
    pub const DEFAULT: SslMode = SslMode::VerifyFull;
    const ALL: [SslMode; 4] = [
        SslMode::Disable,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.as_str() == value)
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// A postgres target's `config`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A host name or IP address, or the directory of a Unix socket.
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    pub sslmode: SslMode,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
}

pub(super) fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_config(TARGET_TYPE, message)
}

impl Settings {
    pub fn parse(config: &Map<String, Value>) -> Result<Self, ProviderError> {
        if let Some(unknown) = config.keys().find(|key| !SETTINGS.contains(&key.as_str())) {
            return Err(invalid(format!(
                "unknown setting `{unknown}`; postgres targets take {} in `config`, and the admin password \
                 as the secret `{PASSWORD}`",
                SETTINGS.map(|s| format!("`{s}`")).join(", ")
            )));
        }
        let host = required_string(config, "host", "config = { host = \"db.internal\", ... }")?;
        check_host(&host)?;
        let database = required_string(config, "database", "database = \"app\"")?;
        check_name("`database`", &database).map_err(invalid)?;
        let username = required_string(config, "username", "username = \"hallpass_admin\"")?;
        check_name("`username`", &username).map_err(invalid)?;
        let sslmode = match config.get("sslmode") {
            None => SslMode::DEFAULT,
            Some(Value::String(mode)) => SslMode::parse(mode).ok_or_else(|| bad_sslmode(mode))?,
            Some(other) => return Err(bad_sslmode(&other.to_string())),
        };
        let settings = Self {
            port: match config.get("port") {
                None => DEFAULT_PORT,
                Some(value) => whole_number(value, "port", &(1..=65535)).map_err(invalid)? as u16,
            },
            ca_file: ca_file(config, sslmode)?,
            connect_timeout: seconds(
                config,
                "connect_timeout_seconds",
                DEFAULT_CONNECT_TIMEOUT_SECONDS,
                &CONNECT_TIMEOUT_RANGE_SECONDS,
            )?,
            statement_timeout: seconds(
                config,
                "statement_timeout_seconds",
                DEFAULT_STATEMENT_TIMEOUT_SECONDS,
                &STATEMENT_TIMEOUT_RANGE_SECONDS,
            )?,
            host,
            database,
            username,
            sslmode,
        };
        if settings.is_unix_socket() && sslmode != SslMode::Disable {
            return Err(invalid(format!(
                "`host` {} is a Unix socket directory, where TLS does not apply: set sslmode = \"disable\"",
                settings.host
            )));
        }
        Ok(settings)
    }

    /// True when `host` is the directory of the server's Unix socket.
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// `host:port` (or the socket directory and port), for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The certificates of `ca_file`, or `None` when none is set.
    pub fn ca_certificates(&self) -> Result<Option<Vec<CertificateDer<'static>>>, ProviderError> {
        self.ca_file.as_ref().map(|path| read_certificates(path)).transpose()
    }
}

/// Checks the `secrets` of a target whose names were already checked.
pub fn check_secrets(secrets: &TargetSecrets) -> Result<(), ProviderError> {
    match secrets.get(PASSWORD) {
        Some(password) if password.expose().is_empty() => Err(invalid(format!(
            "secret `{PASSWORD}` is empty; set the admin user's password, or leave the secret out"
        ))),
        Some(password) if password.expose().contains('\0') => Err(invalid(format!(
            "secret `{PASSWORD}` contains a NUL character, which PostgreSQL passwords cannot"
        ))),
        _ => Ok(()),
    }
}

fn required_string(config: &Map<String, Value>, key: &str, example: &str) -> Result<String, ProviderError> {
    match config.get(key) {
        Some(Value::String(value)) if !value.trim().is_empty() => Ok(value.clone()),
        Some(_) => Err(invalid(format!("`{key}` must be a non-empty string, e.g. {example}"))),
        None => Err(invalid(format!("`{key}` is required, e.g. {example}"))),
    }
}

fn check_host(host: &str) -> Result<(), ProviderError> {
    if host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',') {
        return Err(invalid(format!(
            "`host` {host:?} is not a host name, an IP address or a socket directory (one host, no spaces or commas)"
        )));
    }
    Ok(())
}

fn bad_sslmode(found: &str) -> ProviderError {
    invalid(format!(
        "`sslmode` must be one of {}, found {found:?}; the default is \"{}\"",
        SslMode::ALL.map(|mode| format!("\"{}\"", mode.as_str())).join(", "),
        SslMode::DEFAULT.as_str()
    ))
}

/// Checks a PostgreSQL name (user, database, role): `what` says which.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err(format!("{what} is empty"))
    } else if name.len() > MAX_NAME_BYTES {
        Err(format!(
            "{what} is {} bytes long; PostgreSQL names have at most {MAX_NAME_BYTES} bytes",
            name.len()
        ))
    } else if name.chars().any(char::is_control) {
        Err(format!("{what} {name:?} contains a control character"))
    } else {
        Ok(())
    }
}

fn seconds(
    config: &Map<String, Value>,
    key: &str,
    default: u64,
    range: &RangeInclusive<u64>,
) -> Result<Duration, ProviderError> {
    let seconds = match config.get(key) {
        None => default,
        Some(value) => whole_number(value, key, range).map_err(invalid)?,
    };
    Ok(Duration::from_secs(seconds))
}

fn ca_file(config: &Map<String, Value>, sslmode: SslMode) -> Result<Option<PathBuf>, ProviderError> {
    let path = match config.get("ca_file") {
        None => return Ok(None),
        Some(Value::String(path)) if path.starts_with('/') => PathBuf::from(path),
        Some(other) => {
            return Err(invalid(format!(
                "`ca_file` must be the absolute path of a PEM file of CA certificates, found {other}"
            )));
        }
    };
    if !sslmode.verifies() {
        return Err(invalid(format!(
            "`ca_file` is used only with sslmode \"verify-ca\" or \"verify-full\", and sslmode is \"{}\": \
             set one of those, or remove `ca_file`",
            sslmode.as_str()
        )));
    }
    read_certificates(&path)?;
    Ok(Some(path))
}

fn read_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ProviderError> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| invalid(format!("cannot read `ca_file` {shown}: {e}")))?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("`ca_file` {shown} is not a valid PEM file: {e}")))?;
    if certificates.is_empty() {
        return Err(invalid(format!(
            "`ca_file` {shown} holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)"
        )));
    }
    Ok(certificates)
}

/// A role's `grant` block on a postgres target, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Existing PostgreSQL roles the login becomes a member of.
    pub roles: Vec<String>,
    /// Most sessions the login may have at once; unlimited when `None`.
    pub connection_limit: Option<u32>,
}

pub(super) fn invalid_grant(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_grant(TARGET_TYPE, message)
}

impl Grant {
    pub fn parse(grant: &Map<String, Value>) -> Result<Self, ProviderError> {
        if let Some(unknown) = grant.keys().find(|key| !GRANT_SETTINGS.contains(&key.as_str())) {
            return Err(invalid_grant(format!(
                "unknown setting `{unknown}`; a postgres role's grant takes `roles` (required) and `connection_limit`"
            )));
        }
        let roles = match grant.get("roles") {
            Some(Value::Array(roles)) if !roles.is_empty() => roles,
            Some(Value::Array(_)) | None => {
                return Err(invalid_grant(
                    "`roles` is required: the PostgreSQL roles to grant, e.g. grant = { roles = [\"app_read\"] }",
                ));
            }
            Some(other) => {
                return Err(invalid_grant(format!(
                    "`roles` must be a list of role names, found {other}"
                )));
            }
        };
        if roles.len() > MAX_GRANT_ROLES {
            return Err(invalid_grant(format!(
                "`roles` lists {} roles; at most {MAX_GRANT_ROLES} are allowed",
                roles.len()
            )));
        }
        let mut names = Vec::with_capacity(roles.len());
        for role in roles {
            names.push(grant_role(role, &names)?);
        }
        let connection_limit = match grant.get("connection_limit") {
            None => None,
            Some(value) => {
                Some(whole_number(value, "connection_limit", &CONNECTION_LIMIT_RANGE).map_err(invalid_grant)? as u32)
            }
        };
        Ok(Self {
            roles: names,
            connection_limit,
        })
    }
}

fn grant_role(role: &Value, earlier: &[String]) -> Result<String, ProviderError> {
    let Value::String(name) = role else {
        return Err(invalid_grant(format!(
            "`roles` must list role names (strings), found {role}"
        )));
    };
    check_name(&format!("role name {name:?} in `roles`"), name).map_err(invalid_grant)?;
    if name.starts_with(crate::naming::LOGIN_PREFIX) {
        return Err(invalid_grant(format!(
            "role {name:?} in `roles` looks like a login Hallpass created (`{}` prefix); grant the roles it was \
             given instead",
            crate::naming::LOGIN_PREFIX
        )));
    }
    if earlier.contains(name) {
        return Err(invalid_grant(format!("role {name:?} is listed twice in `roles`")));
    }
    Ok(name.clone())
}

#[cfg(test)]
mod tests;
