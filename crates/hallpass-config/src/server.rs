//! The server configuration file (`hallpass server --config FILE.hcl`): flat
//! top-level attributes, an optional `storage` block, `workload_identity`
//! and `audit_sink` blocks and an optional `sso` block, every one optional so command-line flags and
//! defaults can fill the gaps.
//!
//! Some settings are secrets (the storage URL's password, the seal key, an
//! audit sink's `hmac_secret`): their `Debug` output is redacted and no
//! error message echoes them.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hcl_edit::structure::{Block, BlockLabel};

use crate::audit_sink::AuditSink;
use crate::body::Shape;
use crate::error::{ConfigErrors, Reporter, parse_body, read_file, start_of};
use crate::sso::SingleSignOn;
use crate::value::Literal;
use crate::workload::WorkloadIdentity;

/// Request bodies smaller than this could not even hold an apply request.
const MIN_BODY_BYTES: u64 = 1024;
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Bounds of `auth_failures_per_minute`: at least a few typos, at most a
/// number that still means something.
const MIN_AUTH_FAILURES: u64 = 3;
const MAX_AUTH_FAILURES: u64 = 1_000_000;

const SERVER: Shape = Shape {
    attributes: &[
        "listen",
        "data_dir",
        "public_url",
        "log_format",
        "log_level",
        "max_body_bytes",
        "auth_failures_per_minute",
        "seal_key",
    ],
    blocks: &["storage", "workload_identity", "audit_sink", "sso"],
    verbatim: &[],
};
const SQLITE: Shape = Shape {
    attributes: &[],
    blocks: &[],
    verbatim: &[],
};
const POSTGRES: Shape = Shape {
    attributes: &["url"],
    blocks: &[],
    verbatim: &[],
};
const STORAGE_USAGE: &str = "write it as storage \"sqlite\" {} or storage \"postgres\" { url = \"postgres://...\" }";

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
    /// Failed authentications one address may make in a minute before it
    /// is refused for the rest of it, between 3 and 1,000,000.
    pub auth_failures_per_minute: Option<u32>,
    /// The `storage "..." { }` block; `None` means the default (SQLite).
    pub storage: Option<Storage>,
    /// Key-encryption key for secrets at rest.
    pub seal_key: Option<SealKey>,
    /// OIDC issuers whose workload tokens are exchanged for API tokens.
    pub workload_identities: Vec<WorkloadIdentity>,
    /// Outside copies of the audit log.
    pub audit_sinks: Vec<AuditSink>,
    /// Single sign-on for people (the web interface and `hallpass login`).
    pub single_sign_on: Option<SingleSignOn>,
}

/// Where the server keeps its state.
#[derive(Clone, PartialEq, Eq)]
pub enum Storage {
    /// `hallpass.db` in the data directory.
    Sqlite,
    /// A PostgreSQL database; `url` starts with `postgres://` or
    /// `postgresql://` and may contain a password, which `Debug` hides.
    Postgres { url: String },
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Sqlite => f.write_str("Sqlite"),
            Storage::Postgres { url } => f.debug_struct("Postgres").field("url", &redact_url(url)).finish(),
        }
    }
}

/// `url` with the password of `scheme://user:password@host...` (and the value
/// of any `password=` query parameter) replaced by `***`. When in doubt it
/// hides too much rather than too little.
fn redact_url(url: &str) -> String {
    let mut redacted = match url.split_once('?') {
        Some((base, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{base}?{}", pairs.join("&"))
        }
        None => url.to_string(),
    };
    let Some(scheme_end) = redacted.find("://").map(|at| at + 3) else {
        return redacted;
    };
    // The userinfo ends at the last '@' before any query or fragment, so a
    // password with an unescaped '@' or '/' is still hidden whole.
    let end = redacted[scheme_end..]
        .find(['?', '#'])
        .map_or(redacted.len(), |at| scheme_end + at);
    if let Some(at) = redacted[scheme_end..end].rfind('@').map(|at| scheme_end + at)
        && let Some(colon) = redacted[scheme_end..at].find(':').map(|colon| scheme_end + colon)
    {
        redacted.replace_range(colon + 1..at, "***");
    }
    redacted
}

/// The 32-byte key-encryption key for secrets at rest. `Debug` prints
/// `SealKey(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey([u8; 32]);

impl SealKey {
    /// Parses standard base64 (padding optional, surrounding whitespace
    /// ignored) of exactly 32 bytes, as in the `seal_key` setting or the
    /// `HALLPASS_SEAL_KEY` environment variable. The error never contains the
    /// text.
    pub fn parse(text: &str) -> Result<SealKey, String> {
        const USAGE: &str = "seal key must be base64 of 32 bytes (e.g. `openssl rand -base64 32`)";
        const BASE64: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        // The decode error is left out: it quotes the offending character.
        let bytes = BASE64.decode(text.trim()).map_err(|_| {
            format!("{USAGE}; it is not valid standard base64 (letters, digits, '+', '/' and optional '=')")
        })?;
        let length = bytes.len();
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("{USAGE}; got {length} byte{}", if length == 1 { "" } else { "s" }))?;
        Ok(SealKey(key))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Parses a server configuration; `file_name` is used in messages, and its
/// directory is where `file("PATH")` secrets are read from.
pub fn parse_server_config_str(source: &str, file_name: &str) -> Result<ServerConfig, ConfigErrors> {
    let base_dir = Path::new(file_name).parent().unwrap_or(Path::new(""));
    let body = parse_body(source, file_name)?;
    let mut reporter = Reporter::new(source, file_name);
    let place = "in the server configuration".to_string();
    let (attrs, blocks) = reporter.walk(&body, &SERVER, place, 0);
    let (identity_blocks, blocks): (Vec<_>, Vec<_>) = blocks
        .into_iter()
        .partition(|block| block.ident.as_str() == "workload_identity");
    let workload_identities = reporter.workload_identities(&identity_blocks);
    let (sink_blocks, blocks): (Vec<_>, Vec<_>) = blocks
        .into_iter()
        .partition(|block| block.ident.as_str() == "audit_sink");
    let audit_sinks = reporter.audit_sinks(&sink_blocks, base_dir);
    let (sso_blocks, blocks): (Vec<_>, Vec<_>) = blocks.into_iter().partition(|block| block.ident.as_str() == "sso");
    let single_sign_on = reporter.single_sign_on(&sso_blocks, base_dir);
    let storage = reporter.storage_blocks(&blocks);
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
        auth_failures_per_minute: attrs.optional(r, "auth_failures_per_minute", |r, literal, what| {
            let n = r.whole_number(literal, what, MIN_AUTH_FAILURES, MAX_AUTH_FAILURES)?;
            u32::try_from(n).ok()
        }),
        storage,
        seal_key: attrs.optional(r, "seal_key", |r, literal, what| {
            r.secret(literal, what, SealKey::parse)
        }),
        workload_identities,
        audit_sinks,
        single_sign_on,
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

impl Reporter<'_> {
    /// The one `storage` block, if any.
    fn storage_blocks(&mut self, blocks: &[&Block]) -> Option<Storage> {
        let [first, extras @ ..] = blocks else {
            return None;
        };
        // Check the extra blocks too, so every mistake is reported at once.
        for extra in extras {
            let message = format!(
                "storage is configured twice in the server configuration (first at {}); keep one storage block",
                self.describe_position(start_of(&first.ident))
            );
            self.error(start_of(&extra.ident), message);
            self.storage(extra);
        }
        self.storage(first)
    }

    /// Every `workload_identity` block, each name once.
    fn workload_identities(&mut self, blocks: &[&Block]) -> Vec<WorkloadIdentity> {
        let mut identities: Vec<WorkloadIdentity> = Vec::new();
        for block in blocks {
            let Some(identity) = self.workload_identity(block) else {
                continue;
            };
            if identities.iter().any(|known| known.name == identity.name) {
                let message = format!("workload_identity \"{}\" is defined twice; keep one", identity.name);
                self.error(start_of(&block.ident), message);
                continue;
            }
            identities.push(identity);
        }
        identities
    }

    /// A string holding a secret, checked by `check`; unlike
    /// [`parsed`](Self::parsed), errors do not show the value.
    fn secret<T>(&mut self, literal: &Literal, what: &str, check: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let text = self.string(literal, what)?;
        match check(&text) {
            Ok(value) => Some(value),
            Err(problem) => {
                self.error(literal.at, format!("{what}: {problem}"));
                None
            }
        }
    }

    /// A `storage "BACKEND" { ... }` block.
    fn storage(&mut self, block: &Block) -> Option<Storage> {
        let backend = match block.labels.as_slice() {
            [BlockLabel::String(label)] => label,
            [BlockLabel::Ident(label)] => {
                let message = format!("the storage backend must be quoted; {STORAGE_USAGE}");
                self.error(start_of(label), message);
                return None;
            }
            [] => {
                let message = format!("storage block does not name its backend; {STORAGE_USAGE}");
                self.error(start_of(&block.ident), message);
                return None;
            }
            [_, extra, ..] => {
                let message = format!("storage block has more than one label; {STORAGE_USAGE}");
                self.error(start_of(extra), message);
                return None;
            }
        };
        let at = start_of(&block.ident);
        let place = format!("in storage \"{}\"", backend.value());
        match backend.value().as_str() {
            "sqlite" => {
                self.walk(&block.body, &SQLITE, place, at);
                Some(Storage::Sqlite)
            }
            "postgres" => {
                let (attrs, _) = self.walk(&block.body, &POSTGRES, place, at);
                let example = "url = \"postgres://hallpass@db.internal:5432/hallpass\"";
                let url = attrs.required(self, "url", example, |r, literal, what| {
                    r.secret(literal, what, |text| {
                        let rest = ["postgres://", "postgresql://"]
                            .iter()
                            .find_map(|scheme| text.strip_prefix(scheme));
                        match rest {
                            Some(rest) if !rest.trim().is_empty() => Ok(text.to_string()),
                            Some(_) => Err("the URL has nothing after the scheme; add the host and database, \
                                            like \"postgres://hallpass@db.internal:5432/hallpass\""
                                .to_string()),
                            None => Err("the URL must start with postgres:// or postgresql://, \
                                         like \"postgres://hallpass@db.internal:5432/hallpass\""
                                .to_string()),
                        }
                    })
                })?;
                Some(Storage::Postgres { url })
            }
            other => {
                let message = format!("unknown storage backend {other:?}; expected one of: sqlite, postgres");
                self.error(start_of(backend), message);
                None
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The errors of a server configuration, as `LINE:COLUMN: message`.
    pub(crate) fn messages(source: &str) -> Vec<String> {
        let errors = parse_server_config_str(source, "server.hcl").unwrap_err();
        errors
            .errors()
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
            .collect()
    }

    #[test]
    fn parses_every_setting() {
        // The documented file, with a real key where it shows a placeholder.
        let source = hallpass_doc_examples::example("access-config.md", "## Server configuration file", "hcl").replace(
            r#"seal_key       = "...""#,
            r#"seal_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=""#,
        );
        let expected = ServerConfig {
            listen: Some("127.0.0.1:7070".into()),
            data_dir: Some(PathBuf::from("/var/lib/hallpass")),
            public_url: Some("https://hallpass.example.com".into()),
            log_format: Some(LogFormat::Json),
            log_level: Some("info".into()),
            max_body_bytes: Some(1_048_576),
            auth_failures_per_minute: Some(20),
            storage: Some(Storage::Postgres {
                url: "postgres://hallpass@db.internal:5432/hallpass".into(),
            }),
            seal_key: Some(SealKey(std::array::from_fn(|i| i as u8))),
            workload_identities: Vec::new(),
            audit_sinks: Vec::new(),
            single_sign_on: None,
        };
        assert_eq!(parse_server_config_str(&source, "server.hcl").unwrap(), expected);
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
        assert_eq!(
            messages("auth_failures_per_minute = 2\n"),
            ["1:28: attribute \"auth_failures_per_minute\" in the server configuration must be at least 3, found 2"]
        );
        assert_eq!(
            messages("auth_failures_per_minute = 1000001\n"),
            [
                "1:28: attribute \"auth_failures_per_minute\" in the server configuration must be at most 1000000, \
              found 1000001"
            ]
        );
    }

    #[test]
    fn refuses_unknown_entries_interpolation_and_syntax_errors() {
        assert_eq!(
            messages("listen = \"127.0.0.1:1\"\n  lissen = \"x\"\nlimits {\n}\ndata_dir = \"${path}\"\n"),
            [
                "2:3: unknown attribute \"lissen\" in the server configuration; expected one of: listen, data_dir, \
                 public_url, log_format, log_level, max_body_bytes, auth_failures_per_minute, seal_key; \
                 did you mean \"listen\"?",
                "3:1: unknown block \"limits\" in the server configuration; expected one of: storage, workload_identity, \
                 audit_sink, sso",
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

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn parses_storage_backends() {
        let storage = |source: &str| parse_server_config_str(source, "server.hcl").unwrap().storage;
        assert_eq!(storage("storage \"sqlite\" {}\n"), Some(Storage::Sqlite));
        assert_eq!(
            storage("storage \"postgres\" {\n  url = \"postgresql://h/db?sslmode=require\"\n}\n"),
            Some(Storage::Postgres {
                url: "postgresql://h/db?sslmode=require".into()
            })
        );
        assert_eq!(storage("listen = \"[::]:7070\"\n"), None);
    }

    #[test]
    fn reports_storage_mistakes_at_their_position() {
        assert_eq!(
            messages("storage \"mysql\" {\n}\n"),
            ["1:9: unknown storage backend \"mysql\"; expected one of: sqlite, postgres"]
        );
        assert_eq!(
            messages("storage \"postgres\" {\n}\n"),
            [
                "1:1: missing required attribute \"url\" in storage \"postgres\"; add it, \
              e.g. url = \"postgres://hallpass@db.internal:5432/hallpass\""
            ]
        );
        assert_eq!(
            messages("storage \"sqlite\" {\n  path = \"x.db\"\n}\n"),
            [
                "2:3: unexpected attribute \"path\" in storage \"sqlite\"; nothing is allowed here, leave the block empty"
            ]
        );
        assert_eq!(
            messages("storage \"postgres\" {\n  url = \"postgres://h/db\"\n  pool = 5\n}\n"),
            ["3:3: unknown attribute \"pool\" in storage \"postgres\"; expected one of: url"]
        );
        assert_eq!(
            messages("storage \"postgres\" {\n  url = \"mysql://u:pw@h/db\"\n}\n"),
            [
                "2:9: attribute \"url\" in storage \"postgres\": the URL must start with postgres:// or postgresql://, \
              like \"postgres://hallpass@db.internal:5432/hallpass\""
            ]
        );
        assert_eq!(
            messages("storage \"postgres\" {\n  url = \"postgres://\"\n}\n"),
            [
                "2:9: attribute \"url\" in storage \"postgres\": the URL has nothing after the scheme; \
              add the host and database, like \"postgres://hallpass@db.internal:5432/hallpass\""
            ]
        );
        let usage = "write it as storage \"sqlite\" {} or storage \"postgres\" { url = \"postgres://...\" }";
        assert_eq!(
            messages("storage {\n}\nstorage sqlite {\n}\n"),
            [
                format!("1:1: storage block does not name its backend; {usage}"),
                "3:1: storage is configured twice in the server configuration (first at line 1, column 1); \
                         keep one storage block"
                    .to_string(),
                format!("3:9: the storage backend must be quoted; {usage}"),
            ]
        );
        assert_eq!(
            messages("storage \"sqlite\" \"extra\" {\n}\n"),
            [format!("1:18: storage block has more than one label; {usage}")]
        );
        assert_eq!(
            messages("storage = \"sqlite\"\n"),
            [
                "1:1: \"storage\" in the server configuration is a block, not an attribute; \
              write storage { ... } without \"=\""
            ]
        );
    }

    #[test]
    fn parses_seal_keys() {
        let expected: [u8; 32] = std::array::from_fn(|i| i as u8);
        let unpadded = KEY.trim_end_matches('=');
        for text in [KEY, unpadded, &format!(" {KEY}\n")] {
            assert_eq!(SealKey::parse(text).unwrap().bytes(), &expected, "{text:?}");
        }
        assert_eq!(
            SealKey::parse("AAECAwQFBgcICQoL").unwrap_err(),
            "seal key must be base64 of 32 bytes (e.g. `openssl rand -base64 32`); got 12 bytes"
        );
        assert_eq!(
            SealKey::parse("").unwrap_err(),
            "seal key must be base64 of 32 bytes (e.g. `openssl rand -base64 32`); got 0 bytes"
        );
        // URL-safe base64 is not the standard alphabet; the error must not
        // quote the offending character.
        let url_safe = "-_-_AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
        let error = SealKey::parse(url_safe).unwrap_err();
        assert!(
            error.contains("not valid standard base64") && !error.contains('_') && !error.contains("offset"),
            "{error}"
        );
        assert_eq!(format!("{:?}", SealKey::parse(KEY).unwrap()), "SealKey(***)");
    }

    #[test]
    fn reports_seal_key_mistakes_without_the_value() {
        assert_eq!(
            messages("seal_key = \"AAECAwQFBgcICQoL\"\n"),
            [
                "1:12: attribute \"seal_key\" in the server configuration: seal key must be base64 of 32 bytes \
              (e.g. `openssl rand -base64 32`); got 12 bytes"
            ]
        );
        let invalid = messages("\nseal_key = \"not a key!\"\n");
        assert!(
            invalid[0].starts_with("2:12: ") && !invalid[0].contains("not a key"),
            "{invalid:?}"
        );
        assert_eq!(
            messages("seal_key = 32\n"),
            ["1:12: attribute \"seal_key\" in the server configuration must be a string, found a number"]
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output_and_errors() {
        let source =
            format!("seal_key = \"{KEY}\"\nstorage \"postgres\" {{\n  url = \"postgres://u:s3cret@h/db\"\n}}\n");
        let config = parse_server_config_str(&source, "server.hcl").unwrap();
        let debug = format!("{config:?}");
        assert!(
            debug.contains("postgres://u:***@h/db") && debug.contains("SealKey(***)"),
            "{debug}"
        );
        for secret in ["s3cret", KEY, KEY.trim_end_matches('=')] {
            assert!(!debug.contains(secret), "{debug}");
            assert!(!format!("{config:#?}").contains(secret));
        }

        // Every error about these settings, rendered in full.
        let short_key = "c2hvcnQtc2VjcmV0LWtleQ==";
        let bad = [
            format!("seal_key = \"{short_key}\"\n"),
            format!("seal_key = \"{KEY}!\"\n"),
            "storage \"postgres\" {\n  url = \"mysql://u:s3cret@h/db\"\n}\n".to_string(),
            "storage \"postgres\" {\n  url = \"u:s3cret@h/db\"\n}\n".to_string(),
            format!("storage \"sqlite\" {{\n  url = \"postgres://u:s3cret@h/db\"\n  seal_key = \"{KEY}\"\n}}\n"),
        ];
        for source in &bad {
            let errors = parse_server_config_str(source, "server.hcl").unwrap_err();
            let text = format!("{errors} {errors:?}");
            for secret in ["s3cret", short_key, KEY, KEY.trim_end_matches('=')] {
                assert!(!text.contains(secret), "{source:?} leaked into {text}");
            }
        }
    }

    #[test]
    fn redacts_every_form_of_password() {
        let cases = [
            ("postgres://u:s3cret@h:5432/db", "postgres://u:***@h:5432/db"),
            (
                "postgresql://u:p@ss/w@rd@h/db?sslmode=require",
                "postgresql://u:***@h/db?sslmode=require",
            ),
            (
                "postgres://h/db?user=u&password=s3cret&x=1",
                "postgres://h/db?user=u&password=***&x=1",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h:5432/db", "postgres://h:5432/db"),
            ("not a url", "not a url"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected);
        }
        let debug = format!(
            "{:?}",
            Storage::Postgres {
                url: "postgres://u:s3cret@h/db".into()
            }
        );
        assert_eq!(debug, "Postgres { url: \"postgres://u:***@h/db\" }");
        assert_eq!(format!("{:?}", Storage::Sqlite), "Sqlite");
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
