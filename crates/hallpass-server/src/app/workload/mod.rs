//! Workload identity: a CI job trades the OIDC token its CI system issued
//! (GitHub Actions, GitLab CI, ...) for a short-lived Hallpass API token,
//! so the pipeline stores no Hallpass secret. The issuers are trusted in
//! the server configuration (`workload_identity` blocks); the first rule
//! whose claims all match names the principal and groups. The token is an
//! ordinary token row, made with its `token.created` event (actor
//! `oidc:NAME`, the CI token's subject in the data).
//!
//! Keys come from the issuer's JWKS: a file read at start-up, the document
//! written in the configuration, or a URL
//! fetched on first use, again every [`JWKS_MAX_AGE`], and again (at most
//! every [`JWKS_REFETCH_GAP`]) when a token names a key not seen yet, as
//! issuers rotate keys.

pub mod jwt;

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration as StdDuration, Instant};

use hallpass_api::{self as api, ErrorCode};
use hallpass_config::{ClaimRule, JwksSource, WorkloadIdentity};
use serde_json::{Value, json};

use super::tokens::{TokenWhen, hash_token};
use super::{App, AppError, AppResult, ErrorKind};
use jwt::{Jwks, Refused, Unverified};

/// How long fetched keys are used before they are fetched again.
pub const JWKS_MAX_AGE: StdDuration = StdDuration::from_secs(600);
/// Least time between two fetches prompted by an unknown key id.
pub const JWKS_REFETCH_GAP: StdDuration = StdDuration::from_secs(30);
const FETCH_TIMEOUT: StdDuration = StdDuration::from_secs(5);
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// One trusted issuer and its keys.
struct Issuer {
    config: WorkloadIdentity,
    keys: Keys,
}

enum Keys {
    Fixed(Jwks),
    Fetched {
        url: String,
        cache: Mutex<Option<(Instant, Jwks)>>,
    },
}

/// The issuers of the server configuration.
#[derive(Default)]
pub struct WorkloadIssuers {
    issuers: Vec<Issuer>,
    client: Option<reqwest::Client>,
}

impl WorkloadIssuers {
    /// Reads the JWKS files now, so a missing or broken one stops the
    /// server at start-up rather than failing every exchange.
    pub fn new(configs: Vec<WorkloadIdentity>) -> anyhow::Result<Self> {
        let mut issuers = Vec::new();
        let mut needs_client = false;
        for config in configs {
            let keys = match &config.jwks {
                JwksSource::File(path) => {
                    let text = std::fs::read(path).map_err(|e| {
                        anyhow::anyhow!(
                            "workload_identity {:?}: cannot read jwks_file {}: {e}",
                            config.name,
                            path.display()
                        )
                    })?;
                    let jwks = Jwks::parse(&text).map_err(|e| {
                        anyhow::anyhow!("workload_identity {:?}: jwks_file {}: {e}", config.name, path.display())
                    })?;
                    Keys::Fixed(jwks)
                }
                JwksSource::Inline(text) => Keys::Fixed(
                    Jwks::parse(text.as_bytes())
                        .map_err(|e| anyhow::anyhow!("workload_identity {:?}: jwks: {e}", config.name))?,
                ),
                JwksSource::Url(url) => {
                    needs_client = true;
                    Keys::Fetched {
                        url: url.clone(),
                        cache: Mutex::new(None),
                    }
                }
            };
            issuers.push(Issuer { config, keys });
        }
        let client = if needs_client {
            hallpass_providers::webhook::install_tls_crypto_provider();
            Some(
                reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::limited(3))
                    .user_agent(concat!("hallpass/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| anyhow::anyhow!("cannot build the HTTP client for JWKS URLs: {e}"))?,
            )
        } else {
            None
        };
        Ok(Self { issuers, client })
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// The issuer's keys, fetched when stale or when `kid` is unknown.
    async fn keys(&self, issuer: &Issuer, kid: Option<&str>) -> AppResult<Jwks> {
        let (url, cache) = match &issuer.keys {
            Keys::Fixed(jwks) => return Ok(jwks.clone()),
            Keys::Fetched { url, cache } => (url, cache),
        };
        let cached = cache.lock().ok().and_then(|cached| cached.clone());
        if let Some((at, jwks)) = &cached {
            let fresh = at.elapsed() < JWKS_MAX_AGE;
            let known = kid.is_none_or(|kid| jwks.has(kid));
            if fresh && (known || at.elapsed() < JWKS_REFETCH_GAP) {
                return Ok(jwks.clone());
            }
        }
        let jwks = self.fetch(&issuer.config.name, url).await?;
        if let Ok(mut slot) = cache.lock() {
            *slot = Some((Instant::now(), jwks.clone()));
        }
        Ok(jwks)
    }

    async fn fetch(&self, name: &str, url: &str) -> AppResult<Jwks> {
        let failed = |detail: String| {
            AppError::new(
                ErrorKind::TargetFailed,
                ErrorCode::TargetFailed,
                format!("cannot get the signing keys of workload issuer {name:?} from {url}: {detail}; try again"),
            )
        };
        let client = self.client.as_ref().ok_or_else(|| failed("no HTTP client".into()))?;
        let response = client.get(url).send().await.map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(failed(format!("the document is larger than {MAX_JWKS_BYTES} bytes")));
        }
        Jwks::parse(&body).map_err(failed)
    }
}

/// Whether `value` (a claim) matches `pattern`: equal, or with a trailing
/// `*`, starting with what precedes it.
fn claim_matches(pattern: &str, value: &Value) -> bool {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        _ => return false,
    };
    match pattern.strip_suffix('*') {
        Some(prefix) => text.starts_with(prefix),
        None => text == pattern,
    }
}

/// The first rule whose claims all match the token's.
fn matching_rule<'a>(
    rules: &'a [ClaimRule],
    claims: &serde_json::Map<String, Value>,
) -> Option<(usize, &'a ClaimRule)> {
    rules.iter().enumerate().find(|(_, rule)| {
        rule.claims
            .iter()
            .all(|(name, pattern)| claims.get(name).is_some_and(|value| claim_matches(pattern, value)))
    })
}

impl App {
    /// Exchanges a workload's OIDC token for a short-lived API token.
    /// Refusals say why (expired, wrong audience, bad signature, no rule)
    /// and count as failed authentications of the caller's address.
    pub async fn exchange_workload_token(&self, token: &str, remote: Option<IpAddr>) -> AppResult<api::CreatedToken> {
        self.check_auth_failures(remote)?;
        let issuers = &self.inner.workload_issuers;
        if issuers.is_empty() {
            return Err(AppError::not_found(
                "this server trusts no workload identity issuer: add a workload_identity block to its configuration",
            ));
        }
        let (issuer, rule_index, rule, subject) = match self.check_workload_token(token).await {
            Ok(found) => found,
            Err(Checked::Refused(reason)) => return Err(self.refused_workload_token(token, remote, &reason.0)),
            Err(Checked::Failed(error)) => return Err(error),
        };
        let body = api::CreateToken {
            principal: rule.principal.clone(),
            groups: rule.groups.clone(),
            ttl: Some(format!("{}s", issuer.config.token_ttl_seconds)),
        };
        let origin = json!({"issuer": issuer.config.name, "subject": subject, "rule": rule_index + 1});
        let created_by = format!("oidc:{}", issuer.config.name);
        let made = self
            .make_token(&created_by, body, None, TokenWhen::Always, Some(origin))
            .await?;
        made.ok_or_else(|| AppError::internal("a token made unconditionally was not made"))
    }

    async fn check_workload_token(&self, token: &str) -> Result<(&Issuer, usize, &ClaimRule, Value), Checked> {
        let parsed = Unverified::parse(token).map_err(Checked::Refused)?;
        let issuers = &self.inner.workload_issuers;
        let claimed = parsed.issuer().unwrap_or("");
        let Some(issuer) = issuers.issuers.iter().find(|i| i.config.issuer == claimed) else {
            return Err(Checked::Refused(Refused(format!(
                "the token's issuer {claimed:?} is not trusted by this server"
            ))));
        };
        let keys = issuers
            .keys(issuer, parsed.kid.as_deref())
            .await
            .map_err(Checked::Failed)?;
        parsed.verify_signature(&keys).map_err(Checked::Refused)?;
        parsed
            .check_claims(&issuer.config.issuer, &issuer.config.audience, self.now().timestamp())
            .map_err(Checked::Refused)?;
        let Some((index, rule)) = matching_rule(&issuer.config.rules, &parsed.claims) else {
            let shown: Vec<String> = issuer
                .config
                .rules
                .iter()
                .flat_map(|rule| rule.claims.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|name| {
                    format!(
                        "{name}={}",
                        parsed.claims.get(name).map_or("-".into(), Value::to_string)
                    )
                })
                .collect();
            return Err(Checked::Refused(Refused(format!(
                "no rule of workload_identity {:?} matches the token ({})",
                issuer.config.name,
                shown.join(", ")
            ))));
        };
        let subject = parsed.claims.get("sub").cloned().unwrap_or(Value::Null);
        Ok((issuer, index, rule, subject))
    }

    /// Logs and counts a refused exchange; the answer says why.
    fn refused_workload_token(&self, token: &str, remote: Option<IpAddr>, reason: &str) -> AppError {
        let hash = hash_token(token);
        let fingerprint = hash.get(..12).unwrap_or(&hash);
        tracing::warn!(fingerprint, remote = ?remote, reason, "workload token refused");
        self.count_auth_failure(remote);
        AppError::unauthenticated(
            ErrorCode::InvalidToken,
            format!("the workload token was refused: {reason}"),
        )
    }
}

/// Why a check did not give a rule: the token's fault, or the server's.
enum Checked {
    Refused(Refused),
    Failed(AppError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(claims: &[(&str, &str)], principal: &str) -> ClaimRule {
        ClaimRule {
            claims: claims.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            principal: principal.into(),
            groups: vec![],
        }
    }

    #[test]
    fn the_first_rule_whose_claims_all_match_decides() {
        let rules = [
            rule(&[("repository", "acme/infra"), ("ref", "refs/heads/main")], "main"),
            rule(
                &[("repository", "acme/infra"), ("ref", "refs/heads/release-*")],
                "release",
            ),
            rule(&[("repository", "acme/*")], "any-acme"),
        ];
        let claims = |repo: &str, git_ref: &str| {
            json!({"repository": repo, "ref": git_ref})
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        let decide = |repo, git_ref| matching_rule(&rules, &claims(repo, git_ref)).map(|(_, r)| r.principal.as_str());
        assert_eq!(decide("acme/infra", "refs/heads/main"), Some("main"));
        assert_eq!(decide("acme/infra", "refs/heads/release-4.2"), Some("release"));
        assert_eq!(decide("acme/web", "refs/heads/main"), Some("any-acme"));
        assert_eq!(decide("evil/infra", "refs/heads/main"), None);
        // A missing claim never matches, and a prefix is not a match.
        assert_eq!(decide("acme/infrastructure-x", "refs/heads/mainline"), Some("any-acme"));
        assert!(matching_rule(&rules[..2], &claims("acme/infra", "refs/heads/mainline")).is_none());
        assert!(!claim_matches("x", &Value::Null));
        assert!(claim_matches("true", &json!(true)));
    }

    #[test]
    fn a_missing_or_broken_jwks_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let identity = |file: &str| WorkloadIdentity {
            name: "ci".into(),
            issuer: "https://ci.example".into(),
            audience: "hallpass".into(),
            jwks: JwksSource::File(dir.path().join(file)),
            token_ttl_seconds: 900,
            rules: vec![rule(&[("sub", "x")], "ci")],
        };
        let missing = WorkloadIssuers::new(vec![identity("missing.json")])
            .err()
            .unwrap()
            .to_string();
        assert!(missing.contains("cannot read jwks_file"), "{missing}");
        std::fs::write(dir.path().join("broken.json"), "{\"keys\": 3}").unwrap();
        let broken = WorkloadIssuers::new(vec![identity("broken.json")])
            .err()
            .unwrap()
            .to_string();
        assert!(broken.contains("not a JWKS document"), "{broken}");
        std::fs::write(dir.path().join("ok.json"), "{\"keys\": []}").unwrap();
        assert!(!WorkloadIssuers::new(vec![identity("ok.json")]).unwrap().is_empty());
    }
}
