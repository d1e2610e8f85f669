//! `audit_sink "NAME" { type = "..." ... }` blocks of the server
//! configuration: outside copies of the audit log (a signed webhook, a
//! syslog server, an append-only file) that make a quiet rewrite of the
//! database detectable.
//!
//! ```hcl
//! audit_sink "siem" {
//!   type        = "webhook"
//!   url         = "https://siem.internal/hallpass"
//!   hmac_secret = env("HALLPASS_SIEM_HMAC_SECRET")
//! }
//! audit_sink "syslog" {
//!   type     = "syslog"
//!   address  = "logs.internal:6514"
//!   tls      = true
//!   facility = "authpriv"
//! }
//! audit_sink "local" {
//!   type = "file"
//!   path = "/var/log/hallpass/audit.jsonl"
//! }
//! ```
//!
//! The signing secret may be `env("VARIABLE")` or `file("PATH")` like a
//! target's secrets; it is redacted in `Debug` and never in a message.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hallpass_api::WriteOnly;
use hcl_edit::structure::{Block, Structure};

use crate::body::{Attrs, Shape};
use crate::error::{Reporter, start_of};
use crate::value::Literal;

/// Events per batch when `batch_max_events` is not set.
pub const DEFAULT_BATCH_MAX_EVENTS: u32 = 500;
/// How long a batch waits to fill when `batch_max_wait` is not set.
pub const DEFAULT_BATCH_MAX_WAIT: Duration = Duration::from_secs(1);
/// How long one delivery may take when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BATCH_EVENTS: u64 = 10_000;
const MAX_WAIT_SECONDS: u64 = 60;
const MAX_TIMEOUT_SECONDS: u64 = 300;

/// Syslog facilities by name (RFC 5424 section 6.2.1).
pub const SYSLOG_FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];
/// `authpriv`: security messages that may name people and reasons, which
/// syslog daemons keep in a file only root reads.
pub const DEFAULT_SYSLOG_FACILITY: u8 = 10;

const TYPES: [&str; 3] = ["webhook", "syslog", "file"];
/// Every attribute of any type; each type's own are checked after.
const SINK: Shape = Shape {
    attributes: &[
        "type",
        "batch_max_events",
        "batch_max_wait",
        "url",
        "hmac_secret",
        "address",
        "tls",
        "facility",
        "path",
        "timeout",
        "ca_file",
    ],
    blocks: &[],
    verbatim: &["hmac_secret"],
};
const COMMON: [&str; 3] = ["type", "batch_max_events", "batch_max_wait"];
const WEBHOOK: [&str; 4] = ["url", "hmac_secret", "timeout", "ca_file"];
const SYSLOG: [&str; 5] = ["address", "tls", "ca_file", "facility", "timeout"];
const FILE: [&str; 1] = ["path"];

/// One outside copy of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSink {
    /// The block's label: in logs, metrics and the cursor's key.
    pub name: String,
    /// Most events sent at once.
    pub batch_max_events: u32,
    /// Longest a batch waits to fill before it is sent anyway.
    pub batch_max_wait: Duration,
    pub destination: SinkDestination,
}

/// Where a sink sends the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkDestination {
    Webhook(WebhookSink),
    Syslog(SyslogSink),
    File(FileSink),
}

/// `type = "webhook"`: signed POSTs of JSON Lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSink {
    /// An http(s) URL without user info.
    pub url: String,
    /// `whsec_...`, checked when the server starts.
    pub hmac_secret: WriteOnly,
    pub timeout: Duration,
    /// PEM CA certificates to trust instead of the public roots.
    pub ca_file: Option<PathBuf>,
}

/// `type = "syslog"`: RFC 5424 over TCP, or TLS (RFC 5425).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogSink {
    /// The host (a name or an address, without brackets) and the port.
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// PEM CA certificates to trust instead of the public roots (TLS only).
    pub ca_file: Option<PathBuf>,
    /// The facility's number, 0 to 23.
    pub facility: u8,
    pub timeout: Duration,
}

/// `type = "file"`: an append-only JSON Lines file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSink {
    pub path: PathBuf,
}

impl Reporter<'_> {
    /// Every `audit_sink` block, each name once and each file once.
    pub(crate) fn audit_sinks(&mut self, blocks: &[&Block], base_dir: &Path) -> Vec<AuditSink> {
        let mut names: Vec<(String, usize)> = Vec::new();
        let mut sinks: Vec<AuditSink> = Vec::new();
        for block in blocks {
            let Some((name, at)) = self.block_name(block) else {
                continue;
            };
            if let Some((_, first)) = names.iter().find(|(known, _)| *known == name) {
                let message = format!(
                    "audit_sink \"{name}\" is defined twice (first at {}); keep one",
                    self.describe_position(*first)
                );
                self.error(at, message);
                continue;
            }
            names.push((name.clone(), at));
            let Some(sink) = self.audit_sink(block, name, base_dir) else {
                continue;
            };
            if let SinkDestination::File(file) = &sink.destination
                && let Some(other) = sinks
                    .iter()
                    .find(|known| matches!(&known.destination, SinkDestination::File(f) if f.path == file.path))
            {
                let message = format!(
                    "audit_sink \"{}\" writes to the same file as audit_sink \"{}\"; two writers would interleave \
                     their lines, so give each its own path",
                    sink.name, other.name
                );
                self.error(at, message);
                continue;
            }
            sinks.push(sink);
        }
        sinks
    }

    fn audit_sink(&mut self, block: &Block, name: String, base_dir: &Path) -> Option<AuditSink> {
        let at = start_of(&block.ident);
        let place = format!("in audit_sink \"{name}\"");
        let (attrs, _) = self.walk(&block.body, &SINK, place.clone(), at);
        let sink_type = attrs.required(self, "type", "type = \"webhook\" (or syslog, file)", Self::sink_type);
        let batch_max_events = attrs
            .optional(self, "batch_max_events", |r, literal, what| {
                let n = r.whole_number(literal, what, 1, MAX_BATCH_EVENTS)?;
                u32::try_from(n).ok()
            })
            .unwrap_or(DEFAULT_BATCH_MAX_EVENTS);
        let batch_max_wait = attrs
            .optional(self, "batch_max_wait", |r, literal, what| {
                r.seconds(literal, what, 0, MAX_WAIT_SECONDS)
            })
            .unwrap_or(DEFAULT_BATCH_MAX_WAIT);
        let sink_type = sink_type?;
        let own: &[&str] = match sink_type {
            "webhook" => &WEBHOOK,
            "syslog" => &SYSLOG,
            _ => &FILE,
        };
        let mut foreign = false;
        for attribute in SINK.attributes {
            if let Some(literal) = attrs.get(attribute)
                && !COMMON.contains(attribute)
                && !own.contains(attribute)
            {
                let message = format!(
                    "{} does not apply to type \"{sink_type}\"; {sink_type} sinks take {}",
                    attrs.what(attribute),
                    own.join(", ")
                );
                self.error(literal.at, message);
                foreign = true;
            }
        }
        let destination = match sink_type {
            "webhook" => SinkDestination::Webhook(self.webhook_sink(block, &attrs, &place, base_dir)?),
            "syslog" => SinkDestination::Syslog(self.syslog_sink(&attrs)?),
            _ => SinkDestination::File(FileSink {
                path: attrs.required(self, "path", "path = \"/var/log/hallpass/audit.jsonl\"", Self::path)?,
            }),
        };
        (!foreign).then_some(AuditSink {
            name,
            batch_max_events,
            batch_max_wait,
            destination,
        })
    }

    /// The `type` attribute: one of [`TYPES`].
    fn sink_type(&mut self, literal: &Literal, what: &str) -> Option<&'static str> {
        let text = self.string(literal, what)?;
        let found = TYPES.iter().find(|known| **known == text).copied();
        if found.is_none() {
            let message = format!("{what} must be one of {}, found {text:?}", TYPES.join(", "));
            self.error(literal.at, message);
        }
        found
    }

    fn webhook_sink(&mut self, block: &Block, attrs: &Attrs, place: &str, base_dir: &Path) -> Option<WebhookSink> {
        let url = attrs.required(self, "url", "url = \"https://siem.internal/hallpass\"", Self::sink_url);
        let hmac_secret = match attrs.get("hmac_secret") {
            None => {
                let message = format!(
                    "missing required attribute \"hmac_secret\" {place}; add it, e.g. hmac_secret = env(\"HALLPASS_SINK_HMAC_SECRET\") \
                     holding `whsec_` and the base64 of 32 random bytes"
                );
                self.error(start_of(&block.ident), message);
                None
            }
            Some(_) => {
                let expr = block.body.iter().find_map(|structure| match structure {
                    Structure::Attribute(attribute) if attribute.key.as_str() == "hmac_secret" => {
                        Some(&attribute.value)
                    }
                    _ => None,
                })?;
                let what = format!("attribute \"hmac_secret\" {place}");
                let hint = "set it in the server's environment";
                self.secret_value(expr, &what, base_dir, hint).map(WriteOnly::new)
            }
        };
        let timeout = attrs
            .optional(self, "timeout", Self::sink_timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
        let ca_file = attrs.optional(self, "ca_file", Self::path);
        let url = url?;
        if ca_file.is_some() && !url.starts_with("https://") {
            let literal = attrs.get("ca_file")?;
            let message = format!("{} is only used with an https:// url", attrs.what("ca_file"));
            self.error(literal.at, message);
            return None;
        }
        Some(WebhookSink {
            url,
            hmac_secret: hmac_secret?,
            timeout,
            ca_file,
        })
    }

    fn syslog_sink(&mut self, attrs: &Attrs) -> Option<SyslogSink> {
        let address = attrs.required(self, "address", "address = \"logs.internal:6514\"", Self::host_port);
        let tls = attrs.optional(self, "tls", Self::boolean).unwrap_or(false);
        let ca_file = attrs.optional(self, "ca_file", Self::path);
        let facility = attrs
            .optional(self, "facility", Self::facility)
            .unwrap_or(DEFAULT_SYSLOG_FACILITY);
        let timeout = attrs
            .optional(self, "timeout", Self::sink_timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
        if ca_file.is_some() && !tls {
            let literal = attrs.get("ca_file")?;
            let message = format!("{} is only used with tls = true", attrs.what("ca_file"));
            self.error(literal.at, message);
            return None;
        }
        let (host, port) = address?;
        Some(SyslogSink {
            host,
            port,
            tls,
            ca_file,
            facility,
            timeout,
        })
    }

    /// An http(s) URL that carries no credentials: it shows in logs.
    fn sink_url(&mut self, literal: &Literal, what: &str) -> Option<String> {
        let text = self.string(literal, what)?;
        let Some(rest) = ["https://", "http://"]
            .iter()
            .find_map(|scheme| text.strip_prefix(scheme))
        else {
            self.error(literal.at, format!("{what} must start with https:// or http://"));
            return None;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let problem = if authority.contains('@') {
            Some("must not hold credentials (user:password@): it shows in logs; the hmac_secret signs every call")
        } else if authority.is_empty() {
            Some("must name a host, like \"https://siem.internal/hallpass\"")
        } else {
            None
        };
        match problem {
            // The URL is not repeated: it may hold a password.
            Some(problem) => {
                self.error(literal.at, format!("{what} {problem}"));
                None
            }
            None => Some(text),
        }
    }

    /// `host:port`, `[v6]:port` or `v4:port`.
    fn host_port(&mut self, literal: &Literal, what: &str) -> Option<(String, u16)> {
        let text = self.string(literal, what)?;
        if let Ok(address) = text.parse::<SocketAddr>()
            && address.port() != 0
        {
            return Some((address.ip().to_string(), address.port()));
        }
        let parsed = text.rsplit_once(':').and_then(|(host, port)| {
            let port = port.parse::<u16>().ok().filter(|port| *port != 0)?;
            let valid = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
            valid.then(|| (host.to_string(), port))
        });
        if parsed.is_none() {
            let message = format!("{what} must be a host and port, like \"logs.internal:6514\", found {text:?}");
            self.error(literal.at, message);
        }
        parsed
    }

    fn facility(&mut self, literal: &Literal, what: &str) -> Option<u8> {
        let text = self.string(literal, what)?;
        let found = SYSLOG_FACILITIES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, code)| *code);
        if found.is_none() {
            let names: Vec<&str> = SYSLOG_FACILITIES.iter().map(|(name, _)| *name).collect();
            let message = format!("{what} must be one of {}, found {text:?}", names.join(", "));
            self.error(literal.at, message);
        }
        found
    }

    fn sink_timeout(&mut self, literal: &Literal, what: &str) -> Option<Duration> {
        self.seconds(literal, what, 1, MAX_TIMEOUT_SECONDS)
    }

    /// A duration like `"10s"` from `min` to `max` seconds.
    fn seconds(&mut self, literal: &Literal, what: &str, min: u64, max: u64) -> Option<Duration> {
        let text = self.string(literal, what)?;
        // Durations are never zero elsewhere; here "0s" means "do not wait".
        if min == 0 && matches!(text.trim(), "0" | "0s") {
            return Some(Duration::ZERO);
        }
        let message = match hallpass_core::parse_duration(&text) {
            Ok(seconds) if (min..=max).contains(&seconds) => return Some(Duration::from_secs(seconds)),
            Ok(_) => format!("{what} must be from {min}s to {max}s, found {text:?}"),
            Err(error) => format!("{what}: {error}"),
        };
        self.error(literal.at, message);
        None
    }

    fn path(&mut self, literal: &Literal, what: &str) -> Option<PathBuf> {
        let text = self.string(literal, what)?;
        if text.trim().is_empty() {
            self.error(literal.at, format!("{what} must not be empty"));
            return None;
        }
        Some(PathBuf::from(text))
    }
}

#[cfg(test)]
mod tests {
    use crate::server::tests::messages;
    use crate::{ServerConfig, parse_server_config_str};

    use super::*;

    fn parse(source: &str) -> ServerConfig {
        parse_server_config_str(source, "server.hcl").unwrap()
    }

    #[test]
    fn every_type_is_read_with_its_defaults() {
        // SAFETY (test only): no other test reads this variable.
        unsafe { std::env::set_var("HALLPASS_TEST_SINK_SECRET_1", "whsec_from-the-env") };
        let config = parse(
            r#"
audit_sink "siem" {
  type        = "webhook"
  url         = "https://siem.internal/hallpass"
  hmac_secret = env("HALLPASS_TEST_SINK_SECRET_1")
  ca_file     = "/etc/hallpass/siem-ca.pem"
  timeout     = "30s"
}
audit_sink "syslog" {
  type             = "syslog"
  address          = "logs.internal:6514"
  tls              = true
  facility         = "local3"
  batch_max_events = 100
  batch_max_wait   = "0s"
}
audit_sink "plain" {
  type    = "syslog"
  address = "[::1]:514"
}
audit_sink "local" {
  type = "file"
  path = "/var/log/hallpass/audit.jsonl"
}
"#,
        );
        let [siem, syslog, plain, local] = config.audit_sinks.as_slice() else {
            panic!("{:?}", config.audit_sinks)
        };
        assert_eq!(siem.name, "siem");
        assert_eq!(siem.batch_max_events, DEFAULT_BATCH_MAX_EVENTS);
        assert_eq!(siem.batch_max_wait, DEFAULT_BATCH_MAX_WAIT);
        let SinkDestination::Webhook(webhook) = &siem.destination else {
            panic!("{siem:?}")
        };
        assert_eq!(webhook.hmac_secret.expose(), "whsec_from-the-env");
        assert_eq!(webhook.timeout, Duration::from_secs(30));
        assert_eq!(webhook.ca_file.as_deref(), Some(Path::new("/etc/hallpass/siem-ca.pem")));
        assert!(!format!("{config:?}").contains("from-the-env"), "{config:?}");
        assert_eq!((syslog.batch_max_events, syslog.batch_max_wait), (100, Duration::ZERO));
        assert_eq!(
            syslog.destination,
            SinkDestination::Syslog(SyslogSink {
                host: "logs.internal".into(),
                port: 6514,
                tls: true,
                ca_file: None,
                facility: 19,
                timeout: DEFAULT_TIMEOUT,
            })
        );
        let SinkDestination::Syslog(plain) = &plain.destination else {
            panic!("{plain:?}")
        };
        assert_eq!((plain.host.as_str(), plain.port, plain.tls), ("::1", 514, false));
        assert_eq!(plain.facility, DEFAULT_SYSLOG_FACILITY);
        assert_eq!(
            local.destination,
            SinkDestination::File(FileSink {
                path: "/var/log/hallpass/audit.jsonl".into()
            })
        );
    }

    #[test]
    fn the_documented_example_is_read() {
        // SAFETY (test only): no other test reads this variable.
        unsafe { std::env::set_var("HALLPASS_SIEM_HMAC_SECRET", "whsec_documented") };
        let source = hallpass_doc_examples::example("access-config.md", "## Audit sinks", "hcl");
        let config = parse(&source);
        let names: Vec<&str> = config.audit_sinks.iter().map(|sink| sink.name.as_str()).collect();
        assert_eq!(names, ["siem", "syslog", "local"]);
        let SinkDestination::Syslog(syslog) = &config.audit_sinks[1].destination else {
            panic!("{config:?}")
        };
        assert_eq!(
            (syslog.port, syslog.tls, syslog.facility),
            (6514, true, DEFAULT_SYSLOG_FACILITY)
        );
    }

    #[test]
    fn the_secret_may_come_from_a_file_next_to_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sink.key"), "whsec_from-a-file\n").unwrap();
        let file = dir.path().join("server.hcl");
        let source = "audit_sink \"s\" {\n  type = \"webhook\"\n  url = \"http://127.0.0.1:9/\"\n  hmac_secret = file(\"sink.key\")\n}\n";
        let config = parse_server_config_str(source, &file.to_string_lossy()).unwrap();
        let SinkDestination::Webhook(webhook) = &config.audit_sinks[0].destination else {
            panic!("{config:?}")
        };
        assert_eq!(webhook.hmac_secret.expose(), "whsec_from-a-file");
    }

    #[test]
    fn mistakes_are_reported_where_they_are() {
        let errors = messages(
            r#"audit_sink "a" {
  type = "kafka"
  topic = "x"
}
audit_sink "b" {
  url = "https://x"
}
audit_sink "c" {
  type        = "webhook"
  url         = "https://user:s3cret@siem.internal/"
  hmac_secret = "whsec_x"
  timout      = "5s"
}
audit_sink "d" {
  type     = "syslog"
  address  = "logs.internal"
  facility = "security"
  ca_file  = "/ca.pem"
}
audit_sink "e" {
  type = "file"
  path = "/a.jsonl"
  batch_max_events = 0
  batch_max_wait   = "2m"
}
audit_sink "f" {
  type = "file"
  path = "/b.jsonl"
}
audit_sink "g" {
  type = "file"
  path = "/b.jsonl"
}
audit_sink "f" {
  type = "file"
  path = "/c.jsonl"
}
audit_sink "h" {
  type = "webhook"
  url  = "http://siem.internal/"
  hmac_secret = env("HALLPASS_TEST_SURELY_UNSET_SINK")
  ca_file = "/ca.pem"
}
audit_sink i {
  type = "file"
}
audit_sink "j" {
  type = "webhook"
  url  = "https://siem.internal/"
  path = "/x"
}
"#,
        );
        let expected = [
            "2:10: attribute \"type\" in audit_sink \"a\" must be one of webhook, syslog, file, found \"kafka\"",
            "3:3: unknown attribute \"topic\" in audit_sink \"a\"; expected one of: type, batch_max_events, \
             batch_max_wait, url, hmac_secret, address, tls, facility, path, timeout, ca_file",
            "5:1: missing required attribute \"type\" in audit_sink \"b\"; add it, e.g. type = \"webhook\" (or syslog, file)",
            "10:17: attribute \"url\" in audit_sink \"c\" must not hold credentials (user:password@): it shows in logs; \
             the hmac_secret signs every call",
            "12:3: unknown attribute \"timout\" in audit_sink \"c\"; expected one of: type, batch_max_events, \
             batch_max_wait, url, hmac_secret, address, tls, facility, path, timeout, ca_file; did you mean \"timeout\"?",
            "16:14: attribute \"address\" in audit_sink \"d\" must be a host and port, like \"logs.internal:6514\", \
             found \"logs.internal\"",
            "17:14: attribute \"facility\" in audit_sink \"d\" must be one of kern, user, mail, daemon, auth, syslog, \
             lpr, news, uucp, cron, authpriv, ftp, local0, local1, local2, local3, local4, local5, local6, local7, \
             found \"security\"",
            "18:14: attribute \"ca_file\" in audit_sink \"d\" is only used with tls = true",
            "23:22: attribute \"batch_max_events\" in audit_sink \"e\" must be at least 1, found 0",
            "24:22: attribute \"batch_max_wait\" in audit_sink \"e\" must be from 0s to 60s, found \"2m\"",
            "30:12: audit_sink \"g\" writes to the same file as audit_sink \"f\"; two writers would interleave their \
             lines, so give each its own path",
            "34:12: audit_sink \"f\" is defined twice (first at line 26, column 12); keep one",
            "41:17: attribute \"hmac_secret\" in audit_sink \"h\": environment variable HALLPASS_TEST_SURELY_UNSET_SINK \
             is not set (or empty); set it in the server's environment",
            "42:13: attribute \"ca_file\" in audit_sink \"h\" is only used with an https:// url",
            "44:12: the audit_sink name must be quoted; write it as audit_sink \"NAME\" { ... }",
            "47:1: missing required attribute \"hmac_secret\" in audit_sink \"j\"; add it, e.g. hmac_secret = \
             env(\"HALLPASS_SINK_HMAC_SECRET\") holding `whsec_` and the base64 of 32 random bytes",
            "50:10: attribute \"path\" in audit_sink \"j\" does not apply to type \"webhook\"; webhook sinks take url, \
             hmac_secret, timeout, ca_file",
        ];
        assert_eq!(errors, expected);
    }
}
