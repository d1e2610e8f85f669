//! Log lines on stderr in the JSON form go-plugin understands.
//!
//! Terraform reads a provider's stderr into its own log (`TF_LOG`). A line
//! that is a JSON object with `@level`, `@message` and `@timestamp` keeps
//! its level there; any other line counts as debug. Extra keys show as
//! key-value pairs. Stdout is never used: it carries the handshake line
//! only.

use std::io::Write;

/// How important a line is, as Terraform's log levels name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One log line as JSON text (without the newline).
pub fn line(level: Level, message: &str, fields: &[(&str, &str)]) -> String {
    let mut object = serde_json::Map::new();
    object.insert("@level".into(), level.as_str().into());
    object.insert("@message".into(), message.into());
    // go-plugin's own timestamp layout: RFC 3339 with microseconds.
    let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    object.insert("@timestamp".into(), timestamp.into());
    for (key, value) in fields {
        object.insert((*key).into(), (*value).into());
    }
    serde_json::Value::Object(object).to_string()
}

/// Writes one line to stderr. A failed write is dropped: there is nowhere
/// else to report it, and the provider's work does not depend on its log.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let mut text = line(level, message, fields);
    text.push('\n');
    // One write of the whole line, so that concurrent lines do not mix.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

pub fn debug(message: &str, fields: &[(&str, &str)]) {
    log(Level::Debug, message, fields);
}

pub fn info(message: &str, fields: &[(&str, &str)]) {
    log(Level::Info, message, fields);
}

pub fn warn(message: &str, fields: &[(&str, &str)]) {
    log(Level::Warn, message, fields);
}

pub fn error(message: &str, fields: &[(&str, &str)]) {
    log(Level::Error, message, fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_keys_go_plugin_reads() {
        let text = line(Level::Warn, "TLS handshake failed", &[("peer", "127.0.0.1:5")]);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["@level"], "warn");
        assert_eq!(value["@message"], "TLS handshake failed");
        assert_eq!(value["peer"], "127.0.0.1:5");
        let timestamp = value["@timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(), "{timestamp}");
        assert!(!text.contains('\n'));
    }
}
