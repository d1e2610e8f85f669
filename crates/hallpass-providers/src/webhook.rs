//! The `webhook` target: Hallpass tells an HTTP endpoint of yours when to add
//! and when to remove access, for systems it has no built-in provider for
//! (an internal admin panel, a ticketing system, a group directory...).
//!
//! ```hcl
//! target "panel" {
//!   type    = "webhook"
//!   config  = { url = "https://panel.internal/hallpass", timeout_seconds = 5 }
//!   secrets = { hmac_secret = env("PANEL_HMAC_SECRET") }
//! }
//! ```
//!
//! On issue Hallpass POSTs `{"event": "issue", "grant_id", "principal", "role",
//! "target", "activated_at", "expires_at"}` (RFC 3339 times) with the header
//! `Idempotency-Key: <grant_id>-issue`; on revoke the same body with
//! `"event": "revoke"` and `Idempotency-Key: <grant_id>-revoke`. Both calls are
//! retried after failures and crashes, so the endpoint must treat a repeated
//! key as the same operation. Any 2xx answer is success; to a revoke, 404 and
//! 410 also are (the access is already gone).
//!
//! Every call is signed the Standard Webhooks way, so the endpoint can tell
//! it comes from Hallpass and is fresh: `webhook-id` (the idempotency key,
//! the same on every retry), `webhook-timestamp` (Unix seconds, new on each
//! attempt) and `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the target's
//! `hmac_secret` (see [`SigningKey`]). The body is serialized once, and those
//! exact bytes are both signed and sent.
//!
//! **The webhook's own system delivers access to the user** — it adds them to a
//! group, enables their account, mails them a link. Hallpass only says when to
//! add and when to remove. If the endpoint answers with a secret (for example
//! `{"credential": "<one-time login link>"}`), Hallpass does not read it: the
//! issue metadata is stored and audited, so it must never hold a secret, and
//! this first version has nowhere else to keep it. The requester's credential
//! is therefore empty apart from `HALLPASS_GRANT_ID`.
//!
//! `config` is readable by anyone who can read targets, so it holds no
//! credentials: a `url` with user-info (`user:password@`) or with a query
//! parameter that looks like a credential (`?token=...`) is refused. What the
//! endpoint needs to let Hallpass in goes in the write-only `secrets`:
//! `bearer_token` (sent as `Authorization: Bearer`), or — for targets that an
//! earlier release stored with credentials inside the URL, which
//! [`CredentialProvider::upgrade_legacy_config`] moves out at start-up —
//! `basic_auth` and `url_query`. Metadata and error messages show at most
//! `scheme://host:port/path`. Redirects are not followed: a redirect could
//! send grants to another host. The target configuration (with its URL) is
//! not part of the request body.

mod signing;
mod url_credentials;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{SecondsFormat, Utc};
use futures::future::{BoxFuture, FutureExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, StatusCode, Url, redirect};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::{
    CredentialProvider, GrantContext, LegacyUpgrade, ProviderError, SecretCredential, SecretSpec, SecretValue,
    TargetSecrets, check_secret_names, whole_number,
};
use url_credentials::UrlCredentials;

pub use signing::SigningKey;
pub use url_credentials::looks_like_credential;

/// The target `type` served by [`WebhookProvider`].
pub const TARGET_TYPE: &str = "webhook";
/// The settings a webhook target accepts.
pub const SETTINGS: [&str; 2] = ["url", "timeout_seconds"];
/// Request timeout when `timeout_seconds` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time spent establishing a connection (TCP and TLS), whatever the
/// request timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Allowed values of `timeout_seconds`.
pub const TIMEOUT_RANGE_SECONDS: std::ops::RangeInclusive<u64> = 1..=60;

/// The secret that signs every call (`whsec_...`).
pub const HMAC_SECRET: &str = "hmac_secret";
/// The secret sent as `Authorization: Bearer <token>`.
pub const BEARER_TOKEN: &str = "bearer_token";
/// The secret sent as HTTP basic auth (`user:password`).
pub const BASIC_AUTH: &str = "basic_auth";
/// The secret appended to the URL's query string at call time.
pub const URL_QUERY: &str = "url_query";

/// The secrets a webhook target takes.
pub const SECRETS: &[SecretSpec] = &[
    SecretSpec {
        name: HMAC_SECRET,
        required: true,
        description: "the key that signs every call, `whsec_` and base64 of 24 to 64 random bytes",
    },
    SecretSpec {
        name: BEARER_TOKEN,
        required: false,
        description: "sent as `Authorization: Bearer <token>`",
    },
    SecretSpec {
        name: BASIC_AUTH,
        required: false,
        description: "`user:password`, sent as HTTP basic auth",
    },
    SecretSpec {
        name: URL_QUERY,
        required: false,
        description: "a query string appended to `url` on every call",
    },
];

/// Header with the call's id, its idempotency key (Standard Webhooks).
pub const ID_HEADER: &str = "webhook-id";
/// Header with the Unix time, in seconds, the call was signed at.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header with the signature, `v1,<base64>`.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_config(TARGET_TYPE, message)
}

/// A webhook target's validated settings.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where to POST; it holds no credentials (they are refused), but print
    /// it with [`WebhookConfig::redacted_url`] all the same.
    pub url: Url,
    pub timeout: Duration,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.redacted_url())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl WebhookConfig {
    /// Reads and checks a target's `config` object.
    pub fn parse(config: &Map<String, Value>) -> Result<Self, ProviderError> {
        if let Some(unknown) = config.keys().find(|key| !SETTINGS.contains(&key.as_str())) {
            return Err(invalid(format!(
                "unknown setting `{unknown}`; webhook targets take only `url` (required) and `timeout_seconds` \
                 in `config`, and credentials in `secrets`"
            )));
        }
        let url = match config.get("url") {
            Some(Value::String(url)) => parse_url(url)?,
            Some(_) => return Err(invalid("`url` must be a string")),
            None => {
                return Err(invalid(
                    "`url` is required, e.g. config = { url = \"https://panel.internal/hallpass\" }",
                ));
            }
        };
        let timeout = match config.get("timeout_seconds") {
            None => DEFAULT_TIMEOUT,
            Some(value) => {
                Duration::from_secs(whole_number(value, "timeout_seconds", &TIMEOUT_RANGE_SECONDS).map_err(invalid)?)
            }
        };
        Ok(Self { url, timeout })
    }

    /// The host alone (no scheme, port, path, credentials or query).
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// `scheme://host[:port]/path`: the URL without user info, query or
    /// fragment, safe for messages and logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

fn parse_url(text: &str) -> Result<Url, ProviderError> {
    // The parse error never repeats the input, which may hold credentials.
    let url = Url::parse(text.trim()).map_err(|e| invalid(format!("`url` is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("`url` must use http or https, not `{}`", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("`url` must name a host, e.g. https://panel.internal/hallpass"));
    }
    if let Some(refusal) = UrlCredentials::find(&url).refusal() {
        return Err(invalid(refusal));
    }
    Ok(url)
}

/// `scheme://host[:port]/path` of `url`.
pub fn redact(url: &Url) -> String {
    let mut clean = url.clone();
    // Both only fail for URLs that cannot have user info, which then have none.
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.set_query(None);
    clean.set_fragment(None);
    clean.to_string()
}

/// A webhook target's secrets, checked and ready to send. Never prints a
/// value.
struct WebhookSecrets {
    signing_key: SigningKey,
    /// `Bearer ...` or `Basic ...`, marked sensitive.
    authorization: Option<HeaderValue>,
    url_query: Option<Zeroizing<String>>,
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("signing_key", &self.signing_key)
            .field("authorization", &self.authorization.as_ref().map(|_| "[redacted]"))
            .field("url_query", &self.url_query.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl WebhookSecrets {
    fn parse(secrets: &TargetSecrets) -> Result<Self, ProviderError> {
        check_secret_names(TARGET_TYPE, SECRETS, secrets)?;
        let signing_key = secrets
            .get(HMAC_SECRET)
            .ok_or_else(|| invalid(format!("secret `{HMAC_SECRET}` is required")))
            .and_then(SigningKey::parse)?;
        let authorization = match (secrets.get(BEARER_TOKEN), secrets.get(BASIC_AUTH)) {
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "set `{BEARER_TOKEN}` or `{BASIC_AUTH}`, not both: each is sent as the Authorization header"
                )));
            }
            (Some(token), None) => Some(bearer_header(token)?),
            (None, Some(basic)) => Some(basic_header(basic)?),
            (None, None) => None,
        };
        let url_query = secrets.get(URL_QUERY).map(parse_url_query).transpose()?;
        Ok(Self {
            signing_key,
            authorization,
            url_query,
        })
    }

    /// `url` with `url_query` appended after any query it has.
    fn endpoint(&self, url: &Url) -> Url {
        let mut endpoint = url.clone();
        if let Some(extra) = &self.url_query {
            let merged = match url.query() {
                Some(query) if !query.is_empty() => Zeroizing::new(format!("{query}&{}", extra.as_str())),
                _ => extra.clone(),
            };
            endpoint.set_query(Some(&merged));
        }
        endpoint
    }
}

fn sensitive_header(value: &str) -> Option<HeaderValue> {
    let mut header = HeaderValue::from_str(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

fn bearer_header(token: &SecretValue) -> Result<HeaderValue, ProviderError> {
    let token = token.expose().trim();
    let refuse = || {
        invalid(format!(
            "secret `{BEARER_TOKEN}` must be a non-empty token of visible ASCII characters without spaces"
        ))
    };
    if token.is_empty() || !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(refuse());
    }
    sensitive_header(&Zeroizing::new(format!("Bearer {token}"))).ok_or_else(refuse)
}

fn basic_header(basic: &SecretValue) -> Result<HeaderValue, ProviderError> {
    // Only a file's final line break is dropped: a password may hold spaces.
    let basic = basic.expose().trim_end_matches(['\r', '\n']);
    let refuse = || invalid(format!("secret `{BASIC_AUTH}` must be \"user:password\""));
    if !basic.contains(':') {
        return Err(refuse());
    }
    let encoded = Zeroizing::new(STANDARD.encode(basic));
    sensitive_header(&Zeroizing::new(format!("Basic {}", encoded.as_str()))).ok_or_else(refuse)
}

fn parse_url_query(query: &SecretValue) -> Result<Zeroizing<String>, ProviderError> {
    let query = query.expose().trim();
    let query = query.strip_prefix('?').unwrap_or(query);
    if query.is_empty() || query.contains('#') {
        return Err(invalid(format!(
            "secret `{URL_QUERY}` must be a non-empty query string without `#`, e.g. \"token=...&team=ops\""
        )));
    }
    Ok(Zeroizing::new(query.to_owned()))
}

/// What Hallpass tells the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookEvent {
    Issue,
    Revoke,
}

impl WebhookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Issue => "issue",
            WebhookEvent::Revoke => "revoke",
        }
    }

    /// The JSON body sent for `grant`.
    pub fn body(self, grant: &GrantContext) -> Value {
        json!({
            "event": self.as_str(),
            "grant_id": grant.grant_id,
            "principal": grant.principal,
            "role": grant.role,
            "target": grant.target.name,
            "activated_at": grant.activated_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            "expires_at": grant.expires_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        })
    }

    /// The `Idempotency-Key` and `webhook-id` headers for `grant`: the same
    /// on every retry of this event.
    pub fn idempotency_key(self, grant: &GrantContext) -> String {
        format!("{}-{}", grant.grant_id, self.as_str())
    }
}

/// Unix seconds now; a field so tests can sign at other times.
type UnixClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Makes aws-lc-rs, the project's one crypto backend, the process's rustls
/// provider unless the program already chose one: reqwest is built without a
/// provider of its own and takes the process default. Idempotent.
pub fn install_tls_crypto_provider() {
    // An error only means a provider is installed already, which is the goal.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Calls the target's webhook to issue and revoke grants.
#[derive(Clone)]
pub struct WebhookProvider {
    client: Client,
    unix_now: UnixClock,
}

impl fmt::Debug for WebhookProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookProvider").finish_non_exhaustive()
    }
}

/// The HTTP client every outgoing webhook call uses (targets and
/// notifiers): rustls with the one crypto provider, no redirects (one
/// could send a call to another host), a connect timeout. The error is a
/// message.
pub fn webhook_client() -> Result<Client, String> {
    install_tls_crypto_provider();
    Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(redirect::Policy::none())
        .user_agent(concat!("hallpass/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))
}

impl WebhookProvider {
    /// Builds the shared HTTP client (rustls, no redirects, a connect timeout).
    pub fn new() -> Result<Self, ProviderError> {
        let client = webhook_client().map_err(ProviderError::Credential)?;
        Ok(Self {
            client,
            unix_now: Arc::new(|| Utc::now().timestamp()),
        })
    }

    /// POSTs `event` for `grant`, signed; returns the (successful) status.
    /// 404 and 410 count as success for a revoke.
    async fn call(
        &self,
        event: WebhookEvent,
        grant: &GrantContext,
        config: &WebhookConfig,
    ) -> Result<StatusCode, ProviderError> {
        let secrets = WebhookSecrets::parse(&grant.target.secrets)?;
        let failed = |message: String| ProviderError::Target {
            target: grant.target.name.clone(),
            message: format!("{message} ({} POST {})", event.as_str(), config.redacted_url()),
        };
        let webhook_id = event.idempotency_key(grant);
        let id_header = HeaderValue::from_str(&webhook_id)
            .map_err(|_| failed("grant id cannot be sent in an Idempotency-Key header".into()))?;
        let body = serde_json::to_vec(&event.body(grant))
            .map_err(|e| failed(format!("cannot encode the request body: {e}")))?;
        let timestamp = (self.unix_now)();
        let signature = secrets.signing_key.sign(&webhook_id, timestamp, &body);
        let mut request = self
            .client
            .post(secrets.endpoint(&config.url))
            .timeout(config.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header("Idempotency-Key", id_header.clone())
            .header(ID_HEADER, id_header)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature);
        if let Some(authorization) = &secrets.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| failed(describe_send_error(&e, config.timeout)))?;
        // The body is deliberately not read: it may hold a secret (see the
        // module documentation), and nothing in it changes the outcome.
        let status = response.status();
        let gone = event == WebhookEvent::Revoke && matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE);
        if status.is_success() || gone {
            Ok(status)
        } else {
            Err(failed(format!("webhook answered {}", describe_status(status))))
        }
    }
}

pub fn describe_status(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Why a request got no answer, without the URL (reqwest's own message
/// includes it, credentials and query string included).
pub fn describe_send_error(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        let limit = if error.is_connect() {
            CONNECT_TIMEOUT.min(timeout)
        } else {
            timeout
        };
        return format!("webhook timed out after {}s", limit.as_secs());
    }
    let mut cause = None;
    let mut io_kind = None;
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        cause = Some(inner.to_string());
        source = inner.source();
    }
    // io::ErrorKind reads best ("connection refused") when it is specific.
    let cause = match (io_kind.filter(|kind| is_network_kind(*kind)), cause) {
        (Some(kind), _) => kind.to_string(),
        (_, Some(cause)) => cause,
        (_, None) => "no answer".into(),
    };
    if error.is_connect() {
        format!("webhook unreachable: {cause}")
    } else {
        format!("webhook request failed: {cause}")
    }
}

fn is_network_kind(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        kind,
        K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::TimedOut
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::AddrNotAvailable
    )
}

impl CredentialProvider for WebhookProvider {
    fn target_type(&self) -> &'static str {
        TARGET_TYPE
    }

    fn secrets(&self) -> &'static [SecretSpec] {
        SECRETS
    }

    fn validate_config(&self, config: &Map<String, Value>, secrets: &TargetSecrets) -> Result<(), ProviderError> {
        WebhookConfig::parse(config)?;
        WebhookSecrets::parse(secrets).map(|_| ())
    }

    /// Moves user-info into `basic_auth` and a query with credentials into
    /// `url_query` (both sent exactly as the earlier release sent them), and
    /// adds a new random `hmac_secret`, which earlier targets lacked.
    fn upgrade_legacy_config(&self, config: &Map<String, Value>) -> Option<LegacyUpgrade> {
        url_credentials::upgrade(config)
    }

    fn issue<'a>(&'a self, grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
        async move {
            let config = WebhookConfig::parse(&grant.target.config)?;
            let status = self.call(WebhookEvent::Issue, grant, &config).await?;
            Ok(json!({
                "type": TARGET_TYPE,
                "url_host": config.host(),
                "status": status.as_u16(),
            }))
        }
        .boxed()
    }

    fn credential<'a>(
        &'a self,
        grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>> {
        async move {
            // The webhook's system gives the user access itself; there is no
            // secret for Hallpass to hand out.
            let env = [("HALLPASS_GRANT_ID".to_string(), grant.grant_id.clone())]
                .into_iter()
                .collect();
            Ok(SecretCredential::new(TARGET_TYPE, String::new(), env))
        }
        .boxed()
    }

    fn revoke<'a>(&'a self, grant: &'a GrantContext, _metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>> {
        async move {
            let config = WebhookConfig::parse(&grant.target.config)?;
            self.call(WebhookEvent::Revoke, grant, &config).await.map(|_| ())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
