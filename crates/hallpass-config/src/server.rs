//! The server configuration file (`hallpass server --config FILE.hcl`): flat
//! top-level attributes, every one optional so command-line flags and defaults
//! can fill the gaps.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::body::Shape;
use crate::error::{ConfigErrors, Reporter, parse_body, read_file};
use crate::value::Literal;

/// Request bodies smaller than this could not even hold an apply request.
const MIN_BODY_BYTES: u64 = 1024;
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

const SERVER: Shape = Shape {
    attributes: &[
        "listen",
        "data_dir",
        "public_url",
        "log_format",
        "log_level",
        "max_body_bytes",
    ],
    blocks: &[],
};

/// Settings from the server configuration file; `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerConfig {
    /// Socket address to listen on, e.g. `127.0.0.1:7070` (validated).
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// URL clients use to reach the server, e.g. `https://hallpass.example.com`.
    pub public_url: Option<String>,
    pub log_format: Option<LogFormat>,
    /// A tracing filter such as `info` or `info,hallpass=debug`.
    pub log_level: Option<String>,
    /// Largest accepted request body, between 1 KiB and 64 MiB.
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Parses a server configuration; `file_name` is only used in messages.
pub fn parse_server_config_str(source: &str, file_name: &str) -> Result<ServerConfig, ConfigErrors> {
    let body = parse_body(source, file_name)?;
    let mut reporter = Reporter::new(source, file_name);
    let place = "in the server configuration".to_string();
    let (attrs, _) = reporter.walk(&body, &SERVER, place, 0);
    let r = &mut reporter;
    let config = ServerConfig {
        listen: attrs.optional(r, "listen", |r, literal, what| {
            r.parsed(literal, what, |text| {
                text.parse::<SocketAddr>()
                    .map(|_| text.to_string())
                    .map_err(|_| "must be an IP address and port, like \"127.0.0.1:7070\" or \"[::]:7070\"")
            })
        }),
        data_dir: attrs.optional(r, "data_dir", |r, literal, what| {
            r.parsed(literal, what, |text| {
                if text.trim().is_empty() {
                    Err("must not be empty")
                } else {
                    Ok(PathBuf::from(text))
                }
            })
        }),
        public_url: attrs.optional(r, "public_url", |r, literal, what| {
            r.parsed(literal, what, |text| {
                if text.starts_with("https://") || text.starts_with("http://") {
                    Ok(text.to_string())
                } else {
                    Err("must start with https:// or http://, like \"https://hallpass.example.com\"")
                }
            })
        }),
        log_format: attrs.optional(r, "log_format", |r, literal, what| {
            r.parsed(literal, what, |text| match text {
                "json" => Ok(LogFormat::Json),
                "text" => Ok(LogFormat::Text),
                _ => Err("must be \"json\" or \"text\""),
            })
        }),
        log_level: attrs.optional(r, "log_level", |r, literal, what| {
            r.parsed(literal, what, |text| {
                if text.trim().is_empty() {
                    Err("must not be empty; use e.g. \"info\"")
                } else {
                    Ok(text.to_string())
                }
            })
        }),
        max_body_bytes: attrs.optional(r, "max_body_bytes", |r, literal, what| {
            r.whole_number(literal, what, MIN_BODY_BYTES, MAX_BODY_BYTES)
        }),
    };
    reporter.finish(config)
}

/// Reads and parses a server configuration file.
pub fn parse_server_config_file(path: &Path) -> Result<ServerConfig, ConfigErrors> {
    let (source, file) = read_file(path)?;
    parse_server_config_str(&source, &file)
}

impl Reporter<'_> {
    /// A string checked by `check`, whose error completes "`what` ...".
    fn parsed<T>(
        &mut self,
        literal: &Literal,
        what: &str,
        check: impl FnOnce(&str) -> Result<T, &'static str>,
    ) -> Option<T> {
        let text = self.string(literal, what)?;
        match check(&text) {
            Ok(value) => Some(value),
            Err(problem) => {
                self.error(literal.at, format!("{what} {problem}, found {text:?}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(source: &str) -> Vec<String> {
        let errors = parse_server_config_str(source, "server.hcl").unwrap_err();
        errors
            .errors()
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect()
    }

    #[test]
    fn parses_every_setting() {
        let source = r#"
# Production settings.
listen         = "127.0.0.1:7070"
data_dir       = "/var/lib/hallpass"
public_url     = "https://hallpass.example.com"
log_format     = "json"
log_level      = "info"
max_body_bytes = 1048576
"#;
        let expected = ServerConfig {
            listen: Some("127.0.0.1:7070".into()),
            data_dir: Some(PathBuf::from("/var/lib/hallpass")),
            public_url: Some("https://hallpass.example.com".into()),
            log_format: Some(LogFormat::Json),
            log_level: Some("info".into()),
            max_body_bytes: Some(1_048_576),
        };
        assert_eq!(parse_server_config_str(source, "server.hcl").unwrap(), expected);
        assert_eq!(
            parse_server_config_str("", "server.hcl").unwrap(),
            ServerConfig::default()
        );
        let text = parse_server_config_str("log_format = \"text\"\n", "s.hcl").unwrap();
        assert_eq!(text.log_format, Some(LogFormat::Text));
    }

    #[test]
    fn reports_every_bad_value_at_its_position() {
        let source = "listen = \"localhost\"\nlog_format = \"yaml\"\nmax_body_bytes = 10\npublic_url = \"hallpass.example.com\"\nlog_level = 3\n";
        assert_eq!(
            messages(source),
            [
                "1:10: attribute \"listen\" in the server configuration must be an IP address and port, \
                 like \"127.0.0.1:7070\" or \"[::]:7070\", found \"localhost\"",
                "2:14: attribute \"log_format\" in the server configuration must be \"json\" or \"text\", found \"yaml\"",
                "3:18: attribute \"max_body_bytes\" in the server configuration must be at least 1024, found 10",
                "4:14: attribute \"public_url\" in the server configuration must start with https:// or http://, \
                 like \"https://hallpass.example.com\", found \"hallpass.example.com\"",
                "5:13: attribute \"log_level\" in the server configuration must be a string, found a number",
            ]
        );
        assert_eq!(
            messages("max_body_bytes = 67108865\n"),
            ["1:18: attribute \"max_body_bytes\" in the server configuration must be at most 67108864, found 67108865"]
        );
    }

    #[test]
    fn refuses_unknown_entries_interpolation_and_syntax_errors() {
        assert_eq!(
            messages("listen = \"127.0.0.1:1\"\n  lissen = \"x\"\nlimits {\n}\ndata_dir = \"${path}\"\n"),
            [
                "2:3: unknown attribute \"lissen\" in the server configuration; expected one of: listen, data_dir, \
                 public_url, log_format, log_level, max_body_bytes; did you mean \"listen\"?",
                "3:1: unexpected block \"limits\" in the server configuration; no blocks are allowed here, \
                 only the attributes: listen, data_dir, public_url, log_format, log_level, max_body_bytes",
                "5:13: only literal values are supported here, but this is a template with ${...} interpolation \
                 or %{...} directives; write a plain string, number, bool, list or object instead",
            ]
        );
        let syntax = messages("listen = \"127.0.0.1:7070\"\nlog_level = \"info\n");
        assert_eq!(syntax.len(), 1);
        assert!(
            syntax[0].starts_with("2:") && syntax[0].contains("syntax error"),
            "{syntax:?}"
        );
        let duplicate = messages("log_level = \"info\"\nlog_level = \"debug\"\n");
        assert!(duplicate[0].starts_with("2:1:"), "{duplicate:?}");
    }

    #[test]
    fn reads_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.hcl");
        std::fs::write(&path, "listen = \"[::]:7070\"\n").unwrap();
        assert_eq!(
            parse_server_config_file(&path).unwrap().listen.as_deref(),
            Some("[::]:7070")
        );
        assert!(parse_server_config_file(&dir.path().join("missing.hcl")).is_err());
    }
}
