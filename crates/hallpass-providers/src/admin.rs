//! What the providers that hold admin connections to a server (mysql,
//! redis) share: reading a target's settings with messages that say how to
//! fix them, admin pools kept per target and replaced when its settings or
//! secrets change, time limits, credential URIs, and keeping secrets out of
//! error messages.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::{ProviderError, SecretCredential, TargetContext, whole_number};

/// Reads one target's `config`, naming the type in every message.
#[derive(Clone, Copy)]
pub(crate) struct Settings<'a> {
    target_type: &'static str,
    config: &'a Map<String, Value>,
}

impl<'a> Settings<'a> {
    pub(crate) fn new(target_type: &'static str, config: &'a Map<String, Value>) -> Self {
        Self { target_type, config }
    }

    pub(crate) fn invalid(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::InvalidConfig {
            target_type: self.target_type.to_string(),
            message: message.into(),
        }
    }

    /// Refuses settings not in `allowed` (a typo would otherwise be ignored).
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), ProviderError> {
        match self.config.keys().find(|key| !allowed.contains(&key.as_str())) {
            None => Ok(()),
            Some(unknown) => Err(self.invalid(format!(
                "unknown setting `{unknown}`; {} targets take: {}",
                self.target_type,
                allowed.join(", ")
            ))),
        }
    }

    /// A non-empty string setting, if present.
    pub(crate) fn string(&self, key: &str) -> Result<Option<&'a str>, ProviderError> {
        match self.config.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if !text.trim().is_empty() => Ok(Some(text)),
            Some(_) => Err(self.invalid(format!("`{key}` must be a non-empty string"))),
        }
    }

    pub(crate) fn required(&self, key: &str, example: &str) -> Result<&'a str, ProviderError> {
        self.string(key)?
            .ok_or_else(|| self.invalid(format!("`{key}` is required, e.g. {key} = {example}")))
    }

    /// The server's host name or IP address: letters, digits and `.-_:`
    /// only, so it can be put in a URI and a message as it is.
    pub(crate) fn host(&self) -> Result<&'a str, ProviderError> {
        let host = self.required("host", "\"db.internal\"")?;
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
        if host.len() > 253 || !host.chars().all(plain) {
            return Err(self.invalid(
                "`host` must be a host name or an IP address (letters, digits, `.`, `-`, `_`, `:`), without scheme, port or path",
            ));
        }
        Ok(host)
    }

    pub(crate) fn port(&self, key: &str, default: u16) -> Result<u16, ProviderError> {
        match self.config.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(value) => value
                .as_u64()
                .and_then(|port| u16::try_from(port).ok())
                .filter(|port| *port > 0)
                .ok_or_else(|| self.invalid(format!("`{key}` must be a port number from 1 to 65535"))),
        }
    }

    pub(crate) fn flag(&self, key: &str, default: bool) -> Result<bool, ProviderError> {
        match self.config.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(_) => Err(self.invalid(format!("`{key}` must be true or false"))),
        }
    }

    /// A whole number of seconds from 1 to `max`.
    pub(crate) fn seconds(&self, key: &str, default: u64, max: u64) -> Result<Duration, ProviderError> {
        match self.config.get(key) {
            None | Some(Value::Null) => Ok(Duration::from_secs(default)),
            Some(value) => whole_number(value, key, &(1..=max))
                .map(Duration::from_secs)
                .map_err(|message| self.invalid(message)),
        }
    }
}

/// How long to wait for a connection and for each command or statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) command: Duration,
}

impl Timeouts {
    /// `connect_timeout_seconds` (default 5) and `command_key` (default 30).
    pub(crate) fn read(settings: &Settings<'_>, command_key: &str) -> Result<Self, ProviderError> {
        Ok(Self {
            connect: settings.seconds("connect_timeout_seconds", 5, 300)?,
            command: settings.seconds(command_key, 30, 3600)?,
        })
    }
}

/// `operation` or `None` when it took longer than `limit`.
pub(crate) async fn within<T>(limit: Duration, operation: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, operation).await.ok()
}

/// One admin pool per target, replaced when the target's
/// [fingerprint](TargetContext::fingerprint) changes (new settings or
/// secrets): the old one is dropped, which closes its idle connections.
/// The lock is held only to look up or swap an entry, never across I/O, so
/// a slow target holds up no other.
pub(crate) struct Pools<T> {
    entries: Mutex<HashMap<String, Entry<T>>>,
}

/// A target's pool and the fingerprint of the settings it was made for.
type Entry<T> = ([u8; 32], Arc<T>);

/// Shows how many targets have a pool, nothing of their settings.
impl<T> fmt::Debug for Pools<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} target pool(s)", self.len())
    }
}

impl<T> Default for Pools<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Pools<T> {
    /// The pool of `target`, made by `make` when there is none for its
    /// current settings.
    pub(crate) fn get(
        &self,
        target: &TargetContext,
        make: impl FnOnce() -> Result<T, ProviderError>,
    ) -> Result<Arc<T>, ProviderError> {
        let fingerprint = target.fingerprint();
        if let Some(pool) = self.current(&target.name, &fingerprint) {
            return Ok(pool);
        }
        // Made outside the lock: making may read a CA file.
        let made = Arc::new(make()?);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(&target.name) {
            Some((current, pool)) if *current == fingerprint => Ok(pool.clone()),
            _ => {
                // Replacing drops the previous pool once its last user ends.
                entries.insert(target.name.clone(), (fingerprint, made.clone()));
                Ok(made)
            }
        }
    }

    fn current(&self, name: &str, fingerprint: &[u8; 32]) -> Option<Arc<T>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(name)
            .filter(|(current, _)| current == fingerprint)
            .map(|(_, pool)| pool.clone())
    }

    /// Drops `target`'s pool (the target was deleted).
    pub(crate) fn forget(&self, target: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(target);
    }

    /// How many targets have a pool.
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// `text` with every non-empty secret in `secrets` replaced by
/// `[redacted]`: server messages may quote the statement that failed.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .fold(text.to_string(), |text, secret| text.replace(secret, "[redacted]"))
}

/// The credential handed to a requester: its type, token and environment.
pub(crate) fn secret_credential(
    credential_type: &str,
    token: String,
    env: impl IntoIterator<Item = (&'static str, String)>,
) -> SecretCredential {
    SecretCredential::new(
        credential_type.to_string(),
        token,
        env.into_iter().map(|(name, value)| (name.to_string(), value)).collect(),
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for
/// the user and password parts of a URI.
fn encode_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `scheme://user:password@host:port`, user and password percent-encoded
/// and an IPv6 address in brackets.
pub(crate) fn credential_uri(scheme: &str, user: &str, password: &str, host: &str, port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!(
        "{scheme}://{}:{}@{host}:{port}",
        encode_userinfo(user),
        encode_userinfo(password)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn settings_explain_what_is_wrong() {
        let map = config(json!({"host": "db.internal", "port": 70000, "tls": "yes", "t": 0}));
        let settings = Settings::new("mysql", &map);
        assert_eq!(settings.host().unwrap(), "db.internal");
        assert!(settings.port("port", 1).unwrap_err().to_string().contains("1 to 65535"));
        assert!(
            settings
                .flag("tls", false)
                .unwrap_err()
                .to_string()
                .contains("true or false")
        );
        assert!(
            settings
                .seconds("t", 5, 10)
                .unwrap_err()
                .to_string()
                .contains("1 to 10")
        );
        assert_eq!(settings.seconds("absent", 5, 10).unwrap(), Duration::from_secs(5));
        let unknown = settings.only(&["host", "port"]).unwrap_err().to_string();
        assert!(
            unknown.contains("unknown setting `t`") && unknown.contains("host, port"),
            "{unknown}"
        );
        let hostile = config(json!({"host": "db'; DROP USER x; --"}));
        assert!(Settings::new("mysql", &hostile).host().is_err());
        let missing = Settings::new("mysql", &Map::new()).host().unwrap_err().to_string();
        assert!(missing.contains("`host` is required"), "{missing}");
    }

    #[test]
    fn a_pool_is_replaced_when_its_target_changes_and_dropped_when_it_is_deleted() {
        let pools: Pools<u32> = Pools::default();
        let mut target = TargetContext {
            name: "cache".into(),
            config: config(json!({"host": "a"})),
            secrets: Default::default(),
            seed: crate::Seed::for_grant(b"key", "cache", "-"),
        };
        let first = pools.get(&target, || Ok(1)).unwrap();
        assert_eq!(*pools.get(&target, || Ok(2)).unwrap(), 1, "reused while unchanged");
        target.config = config(json!({"host": "b"}));
        assert_eq!(*pools.get(&target, || Ok(3)).unwrap(), 3, "replaced when changed");
        assert_eq!(
            (pools.len(), Arc::strong_count(&first)),
            (1, 1),
            "the old one is let go"
        );
        pools.forget("cache");
        assert_eq!(pools.len(), 0);
    }

    #[test]
    fn uris_encode_and_bracket() {
        assert_eq!(
            credential_uri("redis", "hp_a", "p@ss:/w d%", "::1", 6379),
            "redis://hp_a:p%40ss%3A%2Fw%20d%25@[::1]:6379"
        );
        assert_eq!(credential_uri("mysql", "u", "é", "h", 1), "mysql://u:%C3%A9@h:1");
    }

    #[test]
    fn scrub_removes_every_secret() {
        assert_eq!(
            scrub("near 'abc' and abc", &["abc", ""]),
            "near '[redacted]' and [redacted]"
        );
    }

    #[test]
    fn pools_follow_the_fingerprint() {
        let pools: Pools<u32> = Pools::default();
        let mut target = TargetContext {
            name: "t".into(),
            config: Map::new(),
            secrets: crate::TargetSecrets::new(),
            seed: crate::Seed::for_grant(b"k", "t", "-"),
        };
        let first = pools.get(&target, || Ok(1)).unwrap();
        assert_eq!(*pools.get(&target, || Ok(2)).unwrap(), 1, "same settings, same pool");
        target.config.insert("port".into(), json!(1));
        assert_eq!(*pools.get(&target, || Ok(3)).unwrap(), 3, "new settings, new pool");
        assert_eq!(Arc::strong_count(&first), 1, "the old pool is no longer kept");
        assert_eq!(pools.len(), 1);
        assert_eq!(format!("{pools:?}"), "1 target pool(s)");
    }
}
