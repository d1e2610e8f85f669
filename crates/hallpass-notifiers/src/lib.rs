//! Notifier types: how a notification reaches people. Each type (signed
//! webhook, Slack, email) implements [`NotifierType`], a contract as small
//! as the credential providers': check a notifier's settings, and send one
//! notification. Sending may be repeated (the server retries after
//! failures and crashes), so a type passes the notification's id on for
//! the receiver to de-duplicate.
//!
//! What every type shares — which roles and topics a notifier hears, how
//! `user:`/`group:` subjects map to its addresses — is [`Routing`], read
//! from the same `config`.

pub mod email;
pub mod routing;
pub mod slack;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use hallpass_api::Notification;
use hallpass_providers::{SecretSpec, TargetSecrets};
use serde_json::{Map, Value};
use thiserror::Error;

pub use routing::{COMMON_SETTINGS, Routing};

#[derive(Debug, Error)]
pub enum NotifyError {
    /// The notifier's settings or secrets are wrong; says which and how to
    /// fix them.
    #[error("invalid {notifier_type} notifier: {message}")]
    InvalidConfig { notifier_type: String, message: String },
    /// One attempt failed (retried by the server). Never holds a secret.
    #[error("{0}")]
    Failed(String),
    /// Nothing to send: nobody this notifier knows is in the audience.
    #[error("{0}")]
    NothingToSend(String),
}

impl NotifyError {
    pub fn invalid(notifier_type: &str, message: impl Into<String>) -> Self {
        NotifyError::InvalidConfig {
            notifier_type: notifier_type.to_string(),
            message: message.into(),
        }
    }
}

/// A notifier as a send needs it: its settings, its unsealed secrets, and
/// the addresses its `recipients` give for the notification's audience.
pub struct NotifierContext {
    pub name: String,
    pub config: Map<String, Value>,
    pub secrets: TargetSecrets,
    pub routing: Routing,
}

/// One notifier type.
pub trait NotifierType: Send + Sync {
    /// The `type` it serves.
    fn notifier_type(&self) -> &'static str;

    /// The secrets it takes.
    fn secrets(&self) -> &'static [SecretSpec];

    /// The keys of `config` it reads, besides [`COMMON_SETTINGS`].
    fn settings(&self) -> &'static [&'static str];

    /// Checks the type's own settings and its secrets (the common ones are
    /// checked by [`Routing::parse`]).
    fn validate_config(&self, config: &Map<String, Value>, secrets: &TargetSecrets) -> Result<(), NotifyError>;

    /// Sends one notification. Succeeds only when the receiver took it.
    fn send<'a>(
        &'a self,
        notifier: &'a NotifierContext,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// The notifier types a server knows, by `type`.
#[derive(Clone, Default)]
pub struct NotifierTypes(BTreeMap<&'static str, Arc<dyn NotifierType>>);

impl NotifierTypes {
    pub fn with(mut self, notifier_type: Arc<dyn NotifierType>) -> Self {
        self.0.insert(notifier_type.notifier_type(), notifier_type);
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn NotifierType>> {
        self.0.get(name).cloned()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.keys().copied().collect()
    }

    /// Checks a notifier's whole `config` and `secrets`: a known type, the
    /// common routing settings, no key neither reads, and the type's own
    /// checks.
    pub fn validate(
        &self,
        notifier_type: &str,
        config: &Map<String, Value>,
        secrets: &TargetSecrets,
    ) -> Result<Routing, NotifyError> {
        let Some(kind) = self.get(notifier_type) else {
            return Err(NotifyError::invalid(
                notifier_type,
                format!("unknown notifier type; known types: {}", self.names().join(", ")),
            ));
        };
        let own = kind.settings();
        if let Some(unknown) = config
            .keys()
            .find(|key| !own.contains(&key.as_str()) && !COMMON_SETTINGS.contains(&key.as_str()))
        {
            let mut known: Vec<&str> = own.to_vec();
            known.extend(COMMON_SETTINGS);
            return Err(NotifyError::invalid(
                notifier_type,
                format!("unknown setting `{unknown}`; it takes: {}", known.join(", ")),
            ));
        }
        hallpass_providers::check_secret_names_of("notifier", notifier_type, kind.secrets(), secrets)
            .map_err(|message| NotifyError::invalid(notifier_type, message))?;
        let routing = Routing::parse(notifier_type, config)?;
        kind.validate_config(config, secrets)?;
        Ok(routing)
    }
}

/// Reads an optional string setting.
pub fn optional_str<'a>(
    notifier_type: &str,
    config: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, NotifyError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(Some(text)),
        Some(_) => Err(NotifyError::invalid(
            notifier_type,
            format!("`{key}` must be a non-empty string"),
        )),
    }
}

/// Reads `timeout_seconds`: a whole number from 1 to 60; `default` when
/// absent or null.
pub fn timeout_setting(
    notifier_type: &str,
    config: &Map<String, Value>,
    default: Duration,
) -> Result<Duration, NotifyError> {
    let value = match config.get("timeout_seconds") {
        None | Some(Value::Null) => return Ok(default),
        Some(value) => value,
    };
    value
        .as_u64()
        .filter(|seconds| (1..=60).contains(seconds))
        .map(Duration::from_secs)
        .ok_or_else(|| NotifyError::invalid(notifier_type, "`timeout_seconds` must be a whole number from 1 to 60"))
}

/// Reads a required string setting.
pub fn required_str<'a>(
    notifier_type: &str,
    config: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a str, NotifyError> {
    optional_str(notifier_type, config, key)?
        .ok_or_else(|| NotifyError::invalid(notifier_type, format!("`{key}` is required")))
}

#[cfg(test)]
mod tests;
