//! The `sso { ... }` block of the server configuration: single sign-on for
//! people through an OpenID Connect provider (Okta, Entra ID, Google,
//! Keycloak, Dex, ...). It names the issuer, the client Hallpass is
//! registered as, and how the ID token's claims become a principal and its
//! groups.
//!
//! ```hcl
//! sso {
//!   issuer          = "https://login.example.com"
//!   client_id       = "hallpass"
//!   client_secret   = env("HALLPASS_SSO_CLIENT_SECRET")
//!   scopes          = ["email", "groups"]
//!   principal_claim = "email"
//!   groups_claim    = "groups"
//!   group_names     = { "okta-platform-leads" = "approvers" }
//!   session_ttl     = "8h"
//!   recheck_every   = "1m"
//! }
//! ```
//!
//! The client secret may be `env("VARIABLE")` or `file("PATH")` like a
//! target's secrets; it is redacted in `Debug` and never in a message.

use std::collections::BTreeMap;
use std::path::Path;

use hallpass_api::WriteOnly;
use hallpass_core::subject::is_valid_name;
use hcl_edit::structure::{Block, Structure};

use crate::body::Shape;
use crate::error::{Reporter, start_of};
use crate::value::Literal;

/// Default lifetime of a browser session.
pub const DEFAULT_SESSION_TTL_SECONDS: u64 = 8 * 3600;
/// Default lifetime of a token `hallpass login` gets.
pub const DEFAULT_CLI_TOKEN_TTL_SECONDS: u64 = 12 * 3600;
/// Sessions and CLI tokens last from five minutes to a day: long enough for
/// a working day, short enough that a lost laptop's cookie dies overnight.
const MIN_TTL_SECONDS: u64 = 5 * 60;
const MAX_TTL_SECONDS: u64 = 24 * 3600;
const MAX_SCOPES: usize = 32;
/// A session's groups are read again from the provider this often by
/// default: changes there reach Hallpass within a minute.
pub const DEFAULT_RECHECK_SECONDS: u64 = 60;
const MAX_RECHECK_SECONDS: u64 = 3600;

const SSO: Shape = Shape {
    attributes: &[
        "issuer",
        "client_id",
        "client_secret",
        "scopes",
        "principal_claim",
        "groups_claim",
        "group_names",
        "session_ttl",
        "cli_token_ttl",
        "recheck_every",
    ],
    blocks: &[],
    verbatim: &["client_secret"],
};

/// Single sign-on through one OpenID Connect provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleSignOn {
    /// The provider's issuer URL, exactly as its discovery document and ID
    /// tokens give it.
    pub issuer: String,
    pub client_id: String,
    /// `None` for a public client (PKCE only).
    pub client_secret: Option<WriteOnly>,
    /// Asked for besides `openid`, which is always asked for.
    pub scopes: Vec<String>,
    /// The ID token claim that names the principal (`email` by default).
    pub principal_claim: String,
    /// The ID token claim that lists the groups (`groups` by default).
    pub groups_claim: String,
    /// The provider's group name → Hallpass group name; others keep their name.
    pub group_names: BTreeMap<String, String>,
    pub session_ttl_seconds: u64,
    pub cli_token_ttl_seconds: u64,
    /// How often a session's claims are read again from the provider (with
    /// its refresh token); 0 means on every request.
    pub recheck_every_seconds: u64,
}

impl Reporter<'_> {
    /// The one `sso` block, if any.
    pub(crate) fn single_sign_on(&mut self, blocks: &[&Block], base_dir: &Path) -> Option<SingleSignOn> {
        let [first, extras @ ..] = blocks else {
            return None;
        };
        for extra in extras {
            let message = format!(
                "sso is configured twice in the server configuration (first at {}); keep one sso block",
                self.describe_position(start_of(&first.ident))
            );
            self.error(start_of(&extra.ident), message);
        }
        self.sso_block(first, base_dir)
    }

    fn sso_block(&mut self, block: &Block, base_dir: &Path) -> Option<SingleSignOn> {
        let at = start_of(&block.ident);
        if let Some(label) = block.labels.first() {
            self.error(
                start_of(label),
                "sso takes no name; write it as sso { issuer = \"https://...\" ... }",
            );
        }
        let place = "in sso".to_string();
        let (attrs, _) = self.walk(&block.body, &SSO, place.clone(), at);
        let issuer = attrs.required(
            self,
            "issuer",
            "issuer = \"https://login.example.com\"",
            Self::issuer_url,
        );
        let client_id = attrs.required(self, "client_id", "client_id = \"hallpass\"", |r, l, w| {
            r.non_empty(l, w)
        });
        let client_secret = block.body.iter().find_map(|structure| match structure {
            Structure::Attribute(attribute) if attribute.key.as_str() == "client_secret" => Some(&attribute.value),
            _ => None,
        });
        let client_secret = match client_secret {
            None => Some(None),
            Some(expr) => {
                let what = format!("attribute \"client_secret\" {place}");
                self.secret_value(expr, &what, base_dir, "set it in the server's environment")
                    .map(|secret| Some(WriteOnly::new(secret)))
            }
        };
        let scopes = attrs
            .optional(self, "scopes", Self::scopes)
            .unwrap_or_else(|| vec!["email".to_string(), "profile".to_string()]);
        let principal_claim = attrs
            .optional(self, "principal_claim", |r, l, w| r.non_empty(l, w))
            .unwrap_or_else(|| "email".to_string());
        let groups_claim = attrs
            .optional(self, "groups_claim", |r, l, w| r.non_empty(l, w))
            .unwrap_or_else(|| "groups".to_string());
        let group_names = attrs
            .optional(self, "group_names", Self::group_names)
            .unwrap_or_default();
        let session_ttl_seconds = attrs
            .optional(self, "session_ttl", Self::session_ttl)
            .unwrap_or(DEFAULT_SESSION_TTL_SECONDS);
        let cli_token_ttl_seconds = attrs
            .optional(self, "cli_token_ttl", Self::session_ttl)
            .unwrap_or(DEFAULT_CLI_TOKEN_TTL_SECONDS);
        let recheck_every_seconds = attrs
            .optional(self, "recheck_every", Self::recheck_every)
            .unwrap_or(DEFAULT_RECHECK_SECONDS);
        Some(SingleSignOn {
            issuer: issuer?,
            client_id: client_id?,
            client_secret: client_secret?,
            scopes,
            principal_claim,
            groups_claim,
            group_names,
            session_ttl_seconds,
            cli_token_ttl_seconds,
            recheck_every_seconds,
        })
    }

    fn non_empty(&mut self, literal: &Literal, what: &str) -> Option<String> {
        let text = self.string(literal, what)?;
        if text.trim().is_empty() {
            self.error(literal.at, format!("{what} must not be empty"));
            return None;
        }
        Some(text)
    }

    /// An https URL, or http to a loopback address (a provider on the same
    /// machine): anything else would let the network rewrite who signs in.
    fn issuer_url(&mut self, literal: &Literal, what: &str) -> Option<String> {
        let text = self.string(literal, what)?;
        if text.starts_with("https://") || is_loopback_http(&text) {
            Some(text)
        } else {
            let message = format!(
                "{what} must be an https:// URL (http:// only for 127.0.0.1, [::1] or localhost), found {text:?}"
            );
            self.error(literal.at, message);
            None
        }
    }

    fn scopes(&mut self, literal: &Literal, what: &str) -> Option<Vec<String>> {
        let scopes = self.string_list(literal, what)?;
        if scopes.len() > MAX_SCOPES {
            self.error(
                literal.at,
                format!("{what} holds {} scopes; at most {MAX_SCOPES}", scopes.len()),
            );
            return None;
        }
        let mut valid = Vec::new();
        for (scope, at) in scopes {
            // RFC 6749 section 3.3: printable ASCII but space, '"' and '\'.
            let printable = !scope.is_empty() && scope.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
            if !printable {
                self.error(at, format!("scope {scope:?} in {what} is not a valid OAuth scope"));
                return None;
            }
            if scope != "openid" && !valid.contains(&scope) {
                valid.push(scope);
            }
        }
        Some(valid)
    }

    fn group_names(&mut self, literal: &Literal, what: &str) -> Option<BTreeMap<String, String>> {
        let names = self.string_map(literal, what)?;
        if let Some((from, to)) = names.iter().find(|(_, to)| !is_valid_name(to)) {
            let message = format!(
                "{what}: \"{from}\" is renamed to {to:?}, which is not a valid group name (1-64 letters, digits, \
                 '.', '_', '-' or '@')"
            );
            self.error(literal.at, message);
            return None;
        }
        Some(names)
    }

    fn recheck_every(&mut self, literal: &Literal, what: &str) -> Option<u64> {
        let text = self.string(literal, what)?;
        // "0s" (which durations elsewhere refuse) means every request.
        if text.trim() == "0s" {
            return Some(0);
        }
        match hallpass_core::parse_duration(&text) {
            Ok(seconds) if seconds <= MAX_RECHECK_SECONDS => Some(seconds),
            Ok(_) => {
                self.error(
                    literal.at,
                    format!("{what} must be from 0s (every request) to 1h, found {text:?}"),
                );
                None
            }
            Err(e) => {
                self.error(literal.at, format!("{what}: {e}"));
                None
            }
        }
    }

    fn session_ttl(&mut self, literal: &Literal, what: &str) -> Option<u64> {
        let text = self.string(literal, what)?;
        match hallpass_core::parse_duration(&text) {
            Ok(seconds) if (MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&seconds) => Some(seconds),
            Ok(_) => {
                self.error(literal.at, format!("{what} must be from 5m to 24h, found {text:?}"));
                None
            }
            Err(e) => {
                self.error(literal.at, format!("{what}: {e}"));
                None
            }
        }
    }
}

/// `http://` to 127.0.0.1, [::1] or localhost, with or without a port.
pub fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    matches!(host, "127.0.0.1" | "::1" | "localhost")
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
    fn the_block_is_read_with_its_defaults() {
        let config = parse(
            r#"
sso {
  issuer      = "https://login.example.com"
  client_id   = "hallpass"
  client_secret = "s3cret-value"
  scopes      = ["openid", "email", "groups", "email"]
  group_names = { "okta-leads" = "approvers" }
}
"#,
        );
        let sso = config.single_sign_on.unwrap();
        assert_eq!(sso.issuer, "https://login.example.com");
        assert_eq!(
            sso.client_secret.as_ref().map(|s| s.expose().to_string()),
            Some("s3cret-value".into())
        );
        assert_eq!(sso.scopes, ["email", "groups"]);
        assert_eq!(sso.principal_claim, "email");
        assert_eq!(sso.groups_claim, "groups");
        assert_eq!(sso.group_names.get("okta-leads").map(String::as_str), Some("approvers"));
        assert_eq!(sso.session_ttl_seconds, DEFAULT_SESSION_TTL_SECONDS);
        assert_eq!(sso.recheck_every_seconds, DEFAULT_RECHECK_SECONDS);
        assert!(!format!("{sso:?}").contains("s3cret-value"));
        let every = parse("sso {\n issuer = \"https://a.example\"\n client_id = \"x\"\n recheck_every = \"0s\"\n}\n");
        assert_eq!(every.single_sign_on.map(|s| s.recheck_every_seconds), Some(0));
    }

    #[test]
    fn mistakes_are_reported_with_their_place() {
        let errors = messages(
            r#"
sso {
  issuer      = "http://login.example.com"
  scopes      = ["email", "has space"]
  group_names = { "x" = "not a name" }
  session_ttl = "2d"
  recheck_every = "2h"
  color       = "blue"
}
"#,
        );
        let all = errors.join("\n");
        assert!(all.contains("must be an https:// URL"), "{all}");
        assert!(all.contains("missing required attribute \"client_id\" in sso"), "{all}");
        assert!(all.contains("scope \"has space\""), "{all}");
        assert!(all.contains("not a valid group name"), "{all}");
        assert!(all.contains("must be from 5m to 24h"), "{all}");
        assert!(all.contains("must be from 0s (every request) to 1h"), "{all}");
        assert!(all.contains("color"), "{all}");
    }

    #[test]
    fn the_documented_example_is_read() {
        let source = hallpass_doc_examples::example("access-config.md", "## Single sign-on", "hcl");
        // SAFETY: tests of this module set no other environment variable.
        unsafe { std::env::set_var("HALLPASS_SSO_CLIENT_SECRET", "documented-secret") };
        let config = parse(&source);
        let sso = config.single_sign_on.expect("the sso block");
        assert_eq!(sso.issuer, "https://login.example.com");
        assert_eq!(
            sso.client_secret.map(|s| s.expose().to_string()),
            Some("documented-secret".into())
        );
        assert_eq!(sso.group_names["okta-security"], "auditors");
        assert_eq!(
            (sso.session_ttl_seconds, sso.cli_token_ttl_seconds),
            (8 * 3600, 12 * 3600)
        );
    }

    #[test]
    fn loopback_http_is_recognised() {
        assert!(is_loopback_http("http://127.0.0.1:9000"));
        assert!(is_loopback_http("http://[::1]:9000/realms/x"));
        assert!(is_loopback_http("http://localhost"));
        assert!(!is_loopback_http("http://127.0.0.1.example.com"));
        assert!(!is_loopback_http("https://127.0.0.1"));
    }
}
