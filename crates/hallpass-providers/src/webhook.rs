//! The `webhook` target: Hallpass tells an HTTP endpoint of yours when to add
//! and when to remove access, for systems it has no built-in provider for
//! (an internal admin panel, a ticketing system, a group directory...).
//!
//! ```hcl
//! target "panel" {
//!   type   = "webhook"
//!   config = { url = "https://panel.internal/hallpass", timeout_seconds = 5 }
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
//! **The webhook's own system delivers access to the user** — it adds them to a
//! group, enables their account, mails them a link. Hallpass only says when to
//! add and when to remove. If the endpoint answers with a secret (for example
//! `{"credential": "<one-time login link>"}`), Hallpass does not read it: the
//! issue metadata is stored and audited, so it must never hold a secret, and
//! this first version has nowhere else to keep it. The requester's credential
//! is therefore empty apart from `HALLPASS_GRANT_ID`.
//!
//! The URL may carry credentials (`https://user:password@host/...`, sent as
//! HTTP basic auth, or a token in the query string); they are never written
//! into metadata or error messages, which show at most
//! `scheme://host:port/path`. Redirects are not followed: a redirect could
//! send grants to another host. The target configuration (with its URL) is
//! not part of the request body.

use std::fmt;
use std::time::Duration;

use chrono::SecondsFormat;
use futures::future::{BoxFuture, FutureExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, StatusCode, Url, redirect};
use serde_json::{Map, Value, json};

use crate::{CredentialProvider, GrantContext, ProviderError, SecretCredential, TargetSecrets};

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

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidConfig {
        target_type: TARGET_TYPE.into(),
        message: message.into(),
    }
}

/// A webhook target's validated settings.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where to POST; may hold credentials, so never print it whole: use
    /// [`WebhookConfig::redacted_url`].
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
                "unknown setting `{unknown}`; webhook targets take only `url` (required) and `timeout_seconds`"
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
            Some(value) => Duration::from_secs(parse_timeout(value)?),
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
    Ok(url)
}

fn parse_timeout(value: &Value) -> Result<u64, ProviderError> {
    let seconds = match value {
        Value::Number(number) => number.as_u64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }),
        _ => None,
    };
    match seconds {
        Some(seconds) if TIMEOUT_RANGE_SECONDS.contains(&seconds) => Ok(seconds),
        _ => Err(invalid(format!(
            "`timeout_seconds` must be a whole number from {} to {}, found {value}",
            TIMEOUT_RANGE_SECONDS.start(),
            TIMEOUT_RANGE_SECONDS.end()
        ))),
    }
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
            "target": grant.target,
            "activated_at": grant.activated_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            "expires_at": grant.expires_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        })
    }

    /// The `Idempotency-Key` header for `grant`.
    pub fn idempotency_key(self, grant: &GrantContext) -> String {
        format!("{}-{}", grant.grant_id, self.as_str())
    }
}

/// Calls the target's webhook to issue and revoke grants.
#[derive(Debug, Clone)]
pub struct WebhookProvider {
    client: Client,
}

impl WebhookProvider {
    /// Builds the shared HTTP client (rustls, no redirects, a connect timeout).
    pub fn new() -> Result<Self, ProviderError> {
        let client = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(redirect::Policy::none())
            .user_agent(concat!("hallpass/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Credential(format!("cannot build the webhook HTTP client: {e}")))?;
        Ok(Self { client })
    }

    /// POSTs `event` for `grant`; returns the (successful) status. 404 and 410
    /// count as success for a revoke.
    async fn call(
        &self,
        event: WebhookEvent,
        grant: &GrantContext,
        config: &WebhookConfig,
    ) -> Result<StatusCode, ProviderError> {
        let failed = |message: String| ProviderError::Target {
            target: grant.target.clone(),
            message: format!("{message} ({} POST {})", event.as_str(), config.redacted_url()),
        };
        let key = HeaderValue::from_str(&event.idempotency_key(grant))
            .map_err(|_| failed("grant id cannot be sent in an Idempotency-Key header".into()))?;
        let response = self
            .client
            .post(config.url.clone())
            .timeout(config.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header("Idempotency-Key", key)
            .json(&event.body(grant))
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

fn describe_status(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Why a request got no answer, without the URL (reqwest's own message
/// includes it, credentials and query string included).
fn describe_send_error(error: &reqwest::Error, timeout: Duration) -> String {
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

    fn validate_config(&self, config: &Map<String, Value>, _secrets: &TargetSecrets) -> Result<(), ProviderError> {
        WebhookConfig::parse(config).map(|_| ())
    }

    fn issue<'a>(&'a self, grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
        async move {
            let config = WebhookConfig::parse(&grant.target_config)?;
            let status = self.call(WebhookEvent::Issue, grant, &config).await?;
            Ok(json!({
                "type": TARGET_TYPE,
                "url_host": config.host(),
                "status": status.as_u16(),
            }))
        }
        .boxed()
    }

    fn credential(&self, grant: &GrantContext, _metadata: &Value) -> Result<SecretCredential, ProviderError> {
        // The webhook's system gives the user access itself; there is no
        // secret for Hallpass to hand out.
        let env = [("HALLPASS_GRANT_ID".to_string(), grant.grant_id.clone())]
            .into_iter()
            .collect();
        Ok(SecretCredential {
            credential_type: TARGET_TYPE.into(),
            token: String::new(),
            env,
        })
    }

    fn revoke<'a>(&'a self, grant: &'a GrantContext, _metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>> {
        async move {
            let config = WebhookConfig::parse(&grant.target_config)?;
            self.call(WebhookEvent::Revoke, grant, &config).await.map(|_| ())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration as ChronoDuration, TimeZone, Utc};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[derive(Debug, Clone)]
    struct Recorded {
        request_line: String,
        /// Header names lower-cased.
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Recorded {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }

        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    /// A one-route HTTP/1.1 server that records requests and answers every
    /// one with `status` and `body`; `status == 0` means never answer.
    struct TestServer {
        addr: std::net::SocketAddr,
        requests: Arc<Mutex<Vec<Recorded>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl TestServer {
        async fn start(status: u16, extra_headers: &'static str, body: &'static str) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let recorded = requests.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let recorded = recorded.clone();
                    tokio::spawn(async move {
                        let _ = answer(stream, recorded, status, extra_headers, body).await;
                    });
                }
            });
            Self { addr, requests, task }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn requests(&self) -> Vec<Recorded> {
            self.requests.lock().unwrap().clone()
        }
    }

    async fn answer(
        mut stream: TcpStream,
        recorded: Arc<Mutex<Vec<Recorded>>>,
        status: u16,
        extra_headers: &str,
        body: &str,
    ) -> std::io::Result<()> {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0);
        let mut body_bytes = buffer[head_end + 4..].to_vec();
        while body_bytes.len() < length {
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                break;
            }
            body_bytes.extend_from_slice(&chunk[..read]);
        }
        recorded.lock().unwrap().push(Recorded {
            request_line,
            headers,
            body: body_bytes,
        });
        if status == 0 {
            // Hold the connection open without ever answering.
            std::future::pending::<()>().await;
        }
        let response = format!(
            "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n{extra_headers}\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    }

    fn config(url: &str) -> Map<String, Value> {
        let mut config = Map::new();
        config.insert("url".into(), json!(url));
        config.insert("timeout_seconds".into(), json!(5));
        config
    }

    fn grant(url: &str) -> GrantContext {
        let activated_at = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap();
        GrantContext {
            grant_id: "g-123".into(),
            principal: "alice".into(),
            role: "panel-admin".into(),
            target: "panel".into(),
            target_config: config(url),
            target_secrets: TargetSecrets::new(),
            activated_at,
            expires_at: activated_at + ChronoDuration::hours(1),
        }
    }

    fn target_message(error: ProviderError) -> String {
        match error {
            ProviderError::Target { target, message } => {
                assert_eq!(target, "panel");
                message
            }
            other => panic!("expected a target error, got {other:?}"),
        }
    }

    fn config_message(result: Result<(), ProviderError>) -> String {
        match result {
            Err(ProviderError::InvalidConfig { target_type, message }) => {
                assert_eq!(target_type, "webhook");
                message
            }
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn issue_posts_the_grant_and_keeps_the_secret_out_of_metadata() {
        let server = TestServer::start(201, "", r#"{"credential": "https://panel/login?otp=s3cret"}"#).await;
        let provider = WebhookProvider::new().unwrap();
        let grant = grant(&server.url("/hallpass?api_key=k3y"));

        let metadata = provider.issue(&grant).await.unwrap();
        assert_eq!(
            metadata,
            json!({"type": "webhook", "url_host": "127.0.0.1", "status": 201})
        );
        let stored = metadata.to_string();
        assert!(!stored.contains("s3cret") && !stored.contains("k3y"), "{stored}");

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.request_line, "POST /hallpass?api_key=k3y HTTP/1.1");
        assert_eq!(request.header("idempotency-key"), Some("g-123-issue"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            request.json(),
            json!({
                "event": "issue",
                "grant_id": "g-123",
                "principal": "alice",
                "role": "panel-admin",
                "target": "panel",
                "activated_at": "2030-01-02T03:04:05Z",
                "expires_at": "2030-01-02T04:04:05Z",
            })
        );

        let credential = provider.credential(&grant, &metadata).unwrap();
        assert_eq!(credential.credential_type, "webhook");
        assert_eq!(credential.token, "");
        assert_eq!(
            credential.env.into_iter().collect::<Vec<_>>(),
            vec![("HALLPASS_GRANT_ID".to_string(), "g-123".to_string())]
        );
    }

    #[tokio::test]
    async fn url_user_info_becomes_basic_auth_and_stays_out_of_metadata() {
        let server = TestServer::start(200, "", "").await;
        let provider = WebhookProvider::new().unwrap();
        let url = server.url("/x").replace("http://", "http://hook:pa55@");
        let metadata = provider.issue(&grant(&url)).await.unwrap();
        assert_eq!(metadata["url_host"], "127.0.0.1");
        assert!(!metadata.to_string().contains("pa55"));
        let requests = server.requests();
        // base64("hook:pa55")
        assert_eq!(requests[0].header("authorization"), Some("Basic aG9vazpwYTU1"));
    }

    #[tokio::test]
    async fn revoke_succeeds_on_2xx() {
        let server = TestServer::start(204, "", "").await;
        let provider = WebhookProvider::new().unwrap();
        let grant = grant(&server.url("/hallpass"));
        provider.revoke(&grant, &json!({})).await.unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].header("idempotency-key"), Some("g-123-revoke"));
        let body = requests[0].json();
        assert_eq!(body["event"], "revoke");
        assert_eq!(body["grant_id"], "g-123");
        assert_eq!(body["principal"], "alice");
        assert_eq!(body["expires_at"], "2030-01-02T04:04:05Z");
    }

    #[tokio::test]
    async fn revoke_of_something_already_gone_succeeds() {
        for status in [404, 410] {
            let server = TestServer::start(status, "", "").await;
            let provider = WebhookProvider::new().unwrap();
            provider.revoke(&grant(&server.url("/h")), &json!({})).await.unwrap();
            assert_eq!(server.requests().len(), 1);
        }
    }

    #[tokio::test]
    async fn issue_404_is_an_error() {
        let server = TestServer::start(404, "", "").await;
        let provider = WebhookProvider::new().unwrap();
        let error = provider.issue(&grant(&server.url("/h"))).await.unwrap_err();
        assert!(target_message(error).contains("webhook answered 404 Not Found"));
    }

    #[tokio::test]
    async fn revoke_500_is_an_error_naming_the_status() {
        let server = TestServer::start(500, "", r#"{"credential": "s3cret"}"#).await;
        let provider = WebhookProvider::new().unwrap();
        let error = provider
            .revoke(&grant(&server.url("/h?token=abc")), &json!({}))
            .await
            .unwrap_err();
        let message = target_message(error);
        assert!(
            message.contains("webhook answered 500 Internal Server Error"),
            "{message}"
        );
        assert!(message.contains(&server.url("/h")), "{message}");
        assert!(
            !message.contains("token=abc") && !message.contains("s3cret"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let target = TestServer::start(200, "", "").await;
        let location: &'static str = format!("Location: {}\r\n", target.url("/elsewhere")).leak();
        let server = TestServer::start(307, location, "").await;
        let provider = WebhookProvider::new().unwrap();
        let error = provider.issue(&grant(&server.url("/h"))).await.unwrap_err();
        assert!(target_message(error).contains("webhook answered 307 Temporary Redirect"));
        assert!(target.requests().is_empty(), "the redirect was followed");
    }

    #[tokio::test]
    async fn unreachable_url_is_an_error_that_redacts_the_url() {
        let provider = WebhookProvider::new().unwrap();
        let grant = grant("http://user:pw@127.0.0.1:1/x?token=abc");
        for error in [
            provider.issue(&grant).await.unwrap_err(),
            provider.revoke(&grant, &json!({})).await.unwrap_err(),
        ] {
            let rendered = error.to_string();
            let message = target_message(error);
            assert!(message.contains("webhook unreachable: connection refused"), "{message}");
            assert!(message.contains("http://127.0.0.1:1/x"), "{message}");
            for secret in ["user", "pw", "token", "abc", "?", "@"] {
                assert!(!rendered.contains(secret), "{secret:?} leaked: {rendered}");
            }
        }
    }

    #[tokio::test]
    async fn a_silent_endpoint_times_out() {
        let server = TestServer::start(0, "", "").await;
        let provider = WebhookProvider::new().unwrap();
        let mut grant = grant(&server.url("/h"));
        grant.target_config.insert("timeout_seconds".into(), json!(1));
        let started = std::time::Instant::now();
        let error = provider.issue(&grant).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let message = target_message(error);
        assert!(message.contains("webhook timed out after 1s"), "{message}");
    }

    #[test]
    fn config_is_validated() {
        let provider = WebhookProvider::new().unwrap();
        let check = |pairs: &[(&str, Value)]| {
            provider.validate_config(
                &pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
                &TargetSecrets::new(),
            )
        };

        assert!(check(&[("url", json!("http://127.0.0.1:9000/hallpass"))]).is_ok());
        assert!(
            check(&[
                ("url", json!("https://panel.internal/h")),
                ("timeout_seconds", json!(60))
            ])
            .is_ok()
        );
        assert!(
            check(&[
                ("url", json!("https://panel.internal/h")),
                ("timeout_seconds", json!(1.0))
            ])
            .is_ok()
        );

        assert!(config_message(check(&[])).contains("`url` is required"));
        assert!(config_message(check(&[("url", json!(5))])).contains("`url` must be a string"));
        let bad = config_message(check(&[("url", json!("not a url pw=s3cret"))]));
        assert!(bad.contains("not a valid URL") && !bad.contains("s3cret"), "{bad}");
        assert!(config_message(check(&[("url", json!("ftp://host/x"))])).contains("http or https"));
        assert!(config_message(check(&[("url", json!("http://"))])).contains("`url`"));
        assert!(config_message(check(&[("url", json!("unix:/run/hook.sock"))])).contains("http or https"));

        let unknown = config_message(check(&[("url", json!("http://h/")), ("timeout", json!(5))]));
        assert!(unknown.contains("`timeout`"), "{unknown}");
        assert!(
            unknown.contains("`url`") && unknown.contains("`timeout_seconds`"),
            "{unknown}"
        );

        for timeout in [json!(0), json!(61), json!(-1), json!(2.5), json!("5"), json!(null)] {
            let message = config_message(check(&[
                ("url", json!("http://h/")),
                ("timeout_seconds", timeout.clone()),
            ]));
            assert!(message.contains("`timeout_seconds` must be"), "{timeout}: {message}");
        }
    }

    #[test]
    fn parsed_config_has_defaults_and_redacts() {
        let mut config = Map::new();
        config.insert("url".into(), json!("https://u:p@panel.internal:8443/hook?sig=abc#frag"));
        let parsed = WebhookConfig::parse(&config).unwrap();
        assert_eq!(parsed.timeout, DEFAULT_TIMEOUT);
        assert_eq!(parsed.host(), "panel.internal");
        assert_eq!(parsed.redacted_url(), "https://panel.internal:8443/hook");
        let debug = format!("{parsed:?}");
        assert!(!debug.contains("sig=abc") && !debug.contains("u:p"), "{debug}");
    }

    #[test]
    fn provider_fits_the_registry() {
        let registry = crate::Registry::default().with(Arc::new(WebhookProvider::new().unwrap()));
        assert_eq!(registry.types(), vec!["webhook"]);
    }
}
