//! `workload_identity "NAME" { ... }` blocks of the server configuration:
//! the OIDC issuers of CI systems (GitHub Actions, GitLab CI, ...) whose
//! tokens Hallpass exchanges for short-lived API tokens, and the rules
//! that say which token becomes which principal.
//!
//! ```hcl
//! workload_identity "github" {
//!   issuer    = "https://token.actions.githubusercontent.com"
//!   audience  = "https://hallpass.example.com"
//!   jwks_url  = "https://token.actions.githubusercontent.com/.well-known/jwks"
//!   token_ttl = "30m"
//!   rule {
//!     claims    = { repository = "acme/infra", ref = "refs/heads/main" }
//!     principal = "ci-infra"
//!     groups    = ["deploy"]
//!   }
//! }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use hallpass_core::subject::is_valid_name;
use hcl_edit::structure::{Block, BlockLabel};

use crate::body::{Attrs, Shape};
use crate::error::{Reporter, start_of};
use crate::value::Literal;

/// Default lifetime of an exchanged token.
pub const DEFAULT_TOKEN_TTL_SECONDS: u64 = 15 * 60;
/// Bounds of `token_ttl`: a minute to a working day.
const MIN_TOKEN_TTL_SECONDS: u64 = 60;
const MAX_TOKEN_TTL_SECONDS: u64 = 12 * 3600;
/// Longest claim value pattern and most claims per rule.
const MAX_CLAIM_CHARS: usize = 1024;
const MAX_CLAIMS: usize = 32;

const IDENTITY: Shape = Shape {
    attributes: &["issuer", "audience", "jwks_url", "jwks_file", "jwks", "token_ttl"],
    blocks: &["rule"],
    verbatim: &[],
};
const RULE: Shape = Shape {
    attributes: &["claims", "principal", "groups"],
    blocks: &[],
    verbatim: &[],
};
const USAGE: &str = "write it as workload_identity \"NAME\" { issuer = \"https://...\" ... }";

/// A trusted OIDC issuer of workloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIdentity {
    /// The block's label, e.g. `github`: named in audit events.
    pub name: String,
    /// The tokens' `iss`, exactly.
    pub issuer: String,
    /// The `aud` a token must carry (one of its audiences).
    pub audience: String,
    pub jwks: JwksSource,
    pub token_ttl_seconds: u64,
    /// Tried in order; the first whose claims all match decides.
    pub rules: Vec<ClaimRule>,
}

/// Where the issuer's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Fetched over HTTP(S), and again when a token names a key not seen yet.
    Url(String),
    /// A JWKS document on disk, read at start-up.
    File(PathBuf),
    /// A JWKS document written in the configuration (`jwks = <<-EOT ... EOT`).
    Inline(String),
}

/// Which tokens become which principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRule {
    /// Claim name → value it must have; a value ending in `*` matches any
    /// value starting with what comes before.
    pub claims: BTreeMap<String, String>,
    pub principal: String,
    pub groups: Vec<String>,
}

impl Reporter<'_> {
    /// A `workload_identity "NAME" { ... }` block.
    pub(crate) fn workload_identity(&mut self, block: &Block) -> Option<WorkloadIdentity> {
        let name = match block.labels.as_slice() {
            [BlockLabel::String(label)] => label.value().to_string(),
            [] => {
                let message = format!("workload_identity block does not name the issuer; {USAGE}");
                self.error(start_of(&block.ident), message);
                return None;
            }
            [label, ..] => {
                let message = format!("workload_identity takes one quoted name; {USAGE}");
                self.error(start_of(label), message);
                return None;
            }
        };
        let at = start_of(&block.ident);
        let place = format!("in workload_identity \"{name}\"");
        let (attrs, rules) = self.walk(&block.body, &IDENTITY, place.clone(), at);
        let issuer = attrs.required(
            self,
            "issuer",
            "issuer = \"https://token.actions.githubusercontent.com\"",
            Self::http_url,
        );
        let audience = attrs.required(
            self,
            "audience",
            "audience = \"https://hallpass.example.com\"",
            |r, l, w| r.string(l, w).filter(|text| !text.trim().is_empty()),
        );
        let jwks = self.jwks_source(&attrs, &place, at);
        let token_ttl_seconds = attrs
            .optional(self, "token_ttl", Self::token_ttl)
            .unwrap_or(DEFAULT_TOKEN_TTL_SECONDS);
        if rules.is_empty() {
            let message = format!(
                "{place} has no rule, so no token could be exchanged; add rule {{ claims = {{ ... }} principal = \"...\" }}"
            );
            self.error(at, message);
        }
        let rules: Vec<Option<ClaimRule>> = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                self.claim_rule(rule, &format!("in rule {} of workload_identity \"{name}\"", index + 1))
            })
            .collect();
        Some(WorkloadIdentity {
            name,
            issuer: issuer?,
            audience: audience?,
            jwks: jwks?,
            token_ttl_seconds,
            rules: rules.into_iter().collect::<Option<Vec<_>>>()?,
        })
    }

    /// `jwks_url`, `jwks_file` or `jwks`, exactly one.
    fn jwks_source(&mut self, attrs: &Attrs, place: &str, at: usize) -> Option<JwksSource> {
        let url = attrs.optional(self, "jwks_url", Self::http_url).map(JwksSource::Url);
        let file = attrs
            .optional(self, "jwks_file", |r, l, w| r.string(l, w).map(PathBuf::from))
            .map(JwksSource::File);
        let inline = attrs
            .optional(self, "jwks", Self::jwks_document)
            .map(JwksSource::Inline);
        let given = ["jwks_url", "jwks_file", "jwks"]
            .into_iter()
            .filter(|name| attrs.get(name).is_some())
            .count();
        match given {
            0 => {
                let message = format!(
                    "{place} says nowhere to find the issuer's keys; add jwks_url = \"https://.../jwks\" (or jwks_file, \
                     or the document itself as jwks)"
                );
                self.error(at, message);
                None
            }
            1 => url.or(file).or(inline),
            _ => {
                self.error(
                    at,
                    format!("{place} sets more than one of jwks_url, jwks_file and jwks; keep one"),
                );
                None
            }
        }
    }

    /// `jwks`: a JWKS document, `{"keys": [...]}`.
    fn jwks_document(&mut self, literal: &Literal, what: &str) -> Option<String> {
        let text = self.string(literal, what)?;
        let keys = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|document| document.get("keys").map(serde_json::Value::is_array));
        if keys == Some(true) {
            Some(text)
        } else {
            let message = format!("{what} must be a JWKS document, {{\"keys\": [...]}} (e.g. in a heredoc)");
            self.error(literal.at, message);
            None
        }
    }

    /// An http(s) URL.
    fn http_url(&mut self, literal: &Literal, what: &str) -> Option<String> {
        let text = self.string(literal, what)?;
        if text.starts_with("https://") || text.starts_with("http://") {
            Some(text)
        } else {
            self.error(literal.at, format!("{what} must be an http(s) URL, found {text:?}"));
            None
        }
    }

    /// `token_ttl`: a duration from a minute to twelve hours.
    fn token_ttl(&mut self, literal: &Literal, what: &str) -> Option<u64> {
        let text = self.string(literal, what)?;
        match hallpass_core::parse_duration(&text) {
            Ok(seconds) if (MIN_TOKEN_TTL_SECONDS..=MAX_TOKEN_TTL_SECONDS).contains(&seconds) => Some(seconds),
            Ok(_) => {
                self.error(literal.at, format!("{what} must be from 1m to 12h, found {text:?}"));
                None
            }
            Err(e) => {
                self.error(literal.at, format!("{what}: {e}"));
                None
            }
        }
    }

    fn claim_rule(&mut self, block: &Block, place: &str) -> Option<ClaimRule> {
        let at = start_of(&block.ident);
        if let Some(label) = block.labels.first() {
            self.error(start_of(label), format!("a rule takes no name ({place})"));
        }
        let (attrs, _) = self.walk(&block.body, &RULE, place.to_string(), at);
        let claims = attrs.required(
            self,
            "claims",
            "claims = { repository = \"acme/infra\" }",
            |r, literal, what| {
                let claims = r.string_map(literal, what)?;
                let problem = if claims.is_empty() {
                    Some(
                        "must name at least one claim: a rule matching every token of the issuer lets anyone it \
                     issues tokens for in"
                            .to_string(),
                    )
                } else if claims.len() > MAX_CLAIMS {
                    Some(format!("holds {} claims; at most {MAX_CLAIMS}", claims.len()))
                } else {
                    claims
                        .iter()
                        .find(|(_, value)| {
                            value.is_empty() || value.chars().count() > MAX_CLAIM_CHARS || value.as_str() == "*"
                        })
                        .map(|(key, _)| {
                            format!(
                                "key \"{key}\" must be a value (1-{MAX_CLAIM_CHARS} characters, not just `*`) to match"
                            )
                        })
                };
                match problem {
                    Some(problem) => {
                        r.error(literal.at, format!("{what} {problem}"));
                        None
                    }
                    None => Some(claims),
                }
            },
        );
        let principal = attrs.required(self, "principal", "principal = \"ci-infra\"", |r, literal, what| {
            let text = r.string(literal, what)?;
            if is_valid_name(&text) {
                Some(text)
            } else {
                let message = format!(
                    "{what} must be 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit, found {text:?}"
                );
                r.error(literal.at, message);
                None
            }
        });
        let groups = attrs
            .optional(self, "groups", |r, literal, what| {
                let groups = r.string_list(literal, what)?;
                let mut valid = Vec::new();
                for (group, at) in groups {
                    if is_valid_name(&group) {
                        valid.push(group);
                    } else {
                        r.error(at, format!("group {group:?} {place} is not a valid name"));
                        return None;
                    }
                }
                Some(valid)
            })
            .unwrap_or_default();
        Some(ClaimRule {
            claims: claims?,
            principal: principal?,
            groups,
        })
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
    fn issuers_and_their_rules_are_read() {
        let config = parse(
            r#"
workload_identity "github" {
  issuer    = "https://token.actions.githubusercontent.com"
  audience  = "https://hallpass.example.com"
  jwks_url  = "https://token.actions.githubusercontent.com/.well-known/jwks"
  token_ttl = "30m"
  rule {
    claims    = { repository = "acme/infra", ref = "refs/heads/*" }
    principal = "ci-infra"
    groups    = ["deploy", "terraform"]
  }
}
workload_identity "gitlab" {
  issuer    = "https://gitlab.example.com"
  audience  = "hallpass"
  jwks_file = "/etc/hallpass/gitlab-jwks.json"
  rule {
    claims    = { project_path = "acme/infra" }
    principal = "ci-gitlab"
  }
}
workload_identity "local" {
  issuer   = "https://ci.internal"
  audience = "hallpass"
  jwks     = <<-EOT
    {"keys": []}
  EOT
  rule {
    claims    = { sub = "build" }
    principal = "ci-local"
  }
}
"#,
        );
        let [github, gitlab, local] = config.workload_identities.as_slice() else {
            panic!("{:?}", config.workload_identities)
        };
        assert_eq!(github.name, "github");
        assert_eq!(github.token_ttl_seconds, 1800);
        assert_eq!(
            github.jwks,
            JwksSource::Url("https://token.actions.githubusercontent.com/.well-known/jwks".into())
        );
        assert_eq!(github.rules[0].claims["ref"], "refs/heads/*");
        assert_eq!(github.rules[0].groups, ["deploy", "terraform"]);
        assert_eq!(gitlab.token_ttl_seconds, DEFAULT_TOKEN_TTL_SECONDS);
        assert_eq!(gitlab.jwks, JwksSource::File("/etc/hallpass/gitlab-jwks.json".into()));
        assert!(gitlab.rules[0].groups.is_empty());
        assert_eq!(local.jwks, JwksSource::Inline("{\"keys\": []}\n".into()));
    }

    #[test]
    fn the_documented_example_is_read() {
        let source = hallpass_doc_examples::example("access-config.md", "## Workload identity", "hcl");
        let config = parse(&source);
        let [github] = config.workload_identities.as_slice() else {
            panic!("{:?}", config.workload_identities)
        };
        assert_eq!(github.issuer, "https://token.actions.githubusercontent.com");
        assert_eq!(github.token_ttl_seconds, 1800);
        assert_eq!(github.rules.len(), 2);
        assert_eq!(github.rules[1].claims["ref"], "refs/heads/release-*");
    }

    #[test]
    fn mistakes_are_reported_where_they_are() {
        let errors = messages(
            r#"
workload_identity "ci" {
  issuer    = "token.example.com"
  audience  = "hallpass"
  jwks_url  = "https://a/jwks"
  jwks_file = "/b"
  token_ttl = "2d"
  rule {
    claims    = {}
    principal = "has space"
    groups    = ["ok", "no/slash"]
  }
  rule {
    claims = { sub = "*" }
    principal = "x"
  }
}
workload_identity "empty" {
  issuer   = "https://e"
  audience = "a"
}
workload_identity "inline" {
  issuer   = "https://i"
  audience = "a"
  jwks     = "{\"not\": \"keys\"}"
  rule {
    claims    = { sub = "x" }
    principal = "x"
  }
}
"#,
        );
        let text = errors.join("\n");
        for expected in [
            "3:15: attribute \"issuer\" in workload_identity \"ci\" must be an http(s) URL",
            "sets more than one of jwks_url, jwks_file and jwks",
            "7:15: attribute \"token_ttl\" in workload_identity \"ci\" must be from 1m to 12h",
            "9:17: attribute \"claims\" in rule 1 of workload_identity \"ci\" must name at least one claim",
            "10:17: attribute \"principal\" in rule 1 of workload_identity \"ci\" must be 1-64 letters",
            "group \"no/slash\" in rule 1 of workload_identity \"ci\" is not a valid name",
            "key \"sub\" must be a value",
            "workload_identity \"empty\" says nowhere to find the issuer's keys",
            "workload_identity \"empty\" has no rule",
            "attribute \"jwks\" in workload_identity \"inline\" must be a JWKS document",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }
}
