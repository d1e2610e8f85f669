//! Errors of a postgres target turned into messages that say what failed,
//! where, and how to fix it. They are built from the server's own error
//! fields (which never carry a password) and then scrubbed of the secrets
//! in play all the same, in case a server echoes a statement back.

use std::error::Error as _;

use tokio_postgres::error::SqlState;

use super::settings::{PASSWORD, Settings};
use crate::ProviderError;

/// Secrets shorter than this are not scrubbed: replacing every `a` of a
/// message would make it unreadable, and no message holds such a secret.
const MIN_SCRUBBED: usize = 6;

/// Builds [`ProviderError::Target`] messages for one target, scrubbing the
/// secrets it was given.
pub(super) struct Failures<'a> {
    target: &'a str,
    secrets: Vec<&'a str>,
}

impl<'a> Failures<'a> {
    pub(super) fn new(target: &'a str) -> Self {
        Self {
            target,
            secrets: Vec::new(),
        }
    }

    /// Adds a secret that must never appear in a message.
    pub(super) fn hide(mut self, secret: &'a str) -> Self {
        if secret.len() >= MIN_SCRUBBED {
            self.secrets.push(secret);
        }
        self
    }

    pub(super) fn error(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Target {
            target: self.target.to_string(),
            message: self.scrub(message.into()),
        }
    }

    /// `message` with every secret replaced by `[redacted]`.
    pub(super) fn scrub(&self, mut message: String) -> String {
        for secret in &self.secrets {
            message = message.replace(secret, "[redacted]");
        }
        message
    }
}

/// The server's error (message, detail, hint) or the client's, with the
/// chain of causes: e.g. `error connecting to server: Connection refused`.
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = db.message().to_string();
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" (hint: {hint})"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    text
}

/// Why the admin could not log in to `settings`' server, and what to change.
pub(super) fn connect_failure(settings: &Settings, error: &tokio_postgres::Error) -> String {
    let at = format!(
        "cannot log in to {} (database {:?}) as {:?}",
        settings.address(),
        settings.database,
        settings.username
    );
    let text = describe(error);
    let fix = match error.code() {
        Some(code) if *code == SqlState::INVALID_PASSWORD => {
            format!("the secret `{PASSWORD}` is not this user's password on the server; set the right one")
        }
        Some(code) if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
            "check `username` and the server's pg_hba.conf (which hosts, users and methods it allows)".into()
        }
        Some(code) if *code == SqlState::INVALID_CATALOG_NAME => "check `database`".into(),
        Some(code) if *code == SqlState::TOO_MANY_CONNECTIONS => {
            "the server has no free connection; raise max_connections or the user's CONNECTION LIMIT".into()
        }
        Some(_) => String::new(),
        None => client_side_fix(&text, settings),
    };
    if fix.is_empty() {
        format!("{at}: {text}")
    } else {
        format!("{at}: {text}; {fix}")
    }
}

/// A hint for failures the client saw itself (network, TLS, missing
/// password), from the text of tokio-postgres' and rustls' errors.
fn client_side_fix(text: &str, settings: &Settings) -> String {
    let lower = text.to_lowercase();
    if lower.contains("password missing") {
        format!("the server asks for a password: set the secret `{PASSWORD}`")
    } else if lower.contains("server does not support tls") {
        "the server has TLS off: turn `ssl` on in its postgresql.conf, or set sslmode = \"disable\" if the \
         network between Hallpass and the server is private"
            .into()
    } else if lower.contains("certificate") {
        let roots = match &settings.ca_file {
            Some(path) => format!("`ca_file` {}", path.display()),
            None => "the public web roots (no `ca_file` set)".into(),
        };
        format!(
            "the server's TLS certificate was not accepted under sslmode \"{}\" with {roots}: set `ca_file` to \
             the CA that signed it, and with verify-full make `host` a name the certificate holds",
            settings.sslmode.as_str()
        )
    } else if lower.contains("refused") {
        "nothing listens there: check `host` and `port`, and that the server is running".into()
    } else if lower.contains("timed out") || lower.contains("timeout") {
        "check `host`, `port` and firewalls".into()
    } else if lower.contains("lookup") || lower.contains("resolve") || lower.contains("name or service") {
        "check `host`: the name does not resolve".into()
    } else {
        String::new()
    }
}

/// True when the server refused the login itself (not the network).
pub(super) fn is_auth_failure(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_and_short_ones_left() {
        let failures = Failures::new("db").hide("hunter2-secret").hide("abc");
        let error = failures.error("near \"hunter2-secret\": abc");
        assert_eq!(error.to_string(), "target db: near \"[redacted]\": abc");
    }
}
