//! Tests of the webhook provider against a local HTTP/1.1 server that
//! records every request byte for byte.

mod receiver_doc;

use super::*;
use crate::{Seed, TargetContext};
use aws_lc_rs::hmac;
use chrono::{Duration as ChronoDuration, TimeZone};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
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

/// The raw key bytes of the tests' `hmac_secret`.
const KEY_BYTES: [u8; 32] = [7; 32];

fn test_key() -> String {
    format!("whsec_{}", STANDARD.encode(KEY_BYTES))
}

fn config(url: &str) -> Map<String, Value> {
    let mut config = Map::new();
    config.insert("url".into(), json!(url));
    config.insert("timeout_seconds".into(), json!(5));
    config
}

fn secrets(pairs: &[(&str, &str)]) -> TargetSecrets {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), SecretValue::new(*value)))
        .collect()
}

/// A grant on a target at `url` with the test key and `extra` secrets.
fn grant_with(url: &str, extra: &[(&str, &str)]) -> GrantContext {
    let activated_at = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap();
    let mut target_secrets = secrets(extra);
    target_secrets.insert(HMAC_SECRET, SecretValue::new(test_key()));
    let target = TargetContext {
        name: "panel".into(),
        config: config(url),
        secrets: target_secrets,
        seed: Seed::for_grant(b"test", "panel", "-"),
    };
    GrantContext::new(
        "g-123",
        "alice",
        "panel-admin",
        target,
        Seed::for_grant(b"test", "panel", "g-123"),
        activated_at,
        activated_at + ChronoDuration::hours(1),
    )
}

fn grant(url: &str) -> GrantContext {
    grant_with(url, &[])
}

/// A provider whose calls are signed at the times `clock` gives.
fn provider_at(clock: impl Fn() -> i64 + Send + Sync + 'static) -> WebhookProvider {
    WebhookProvider {
        unix_now: Arc::new(clock),
        ..WebhookProvider::new().unwrap()
    }
}

/// The `webhook-signature` a receiver expects, computed here from the
/// Standard Webhooks definition rather than with the provider's code.
fn expected_signature(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), &signed);
    format!("v1,{}", STANDARD.encode(tag.as_ref()))
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

fn assert_hidden(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} leaked: {text}");
    }
}

#[tokio::test]
async fn issue_posts_the_grant_and_keeps_the_secret_out_of_metadata() {
    let server = TestServer::start(201, "", r#"{"credential": "https://panel/login?otp=s3cret"}"#).await;
    let provider = WebhookProvider::new().unwrap();
    let grant = grant_with(
        &server.url("/hallpass"),
        &[(URL_QUERY, "api_key=k3y"), (BEARER_TOKEN, "b34rer")],
    );

    let metadata = provider.issue(&grant).await.unwrap();
    assert_eq!(
        metadata,
        json!({"type": "webhook", "url_host": "127.0.0.1", "status": 201})
    );
    assert_hidden(&metadata.to_string(), &["s3cret", "k3y", "b34rer", "whsec_"]);

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

    let credential = provider.credential(&grant, &metadata).await.unwrap();
    assert_eq!(credential.credential_type, "webhook");
    assert_eq!(credential.token, "");
    assert_eq!(
        credential.env.into_iter().collect::<Vec<_>>(),
        vec![("HALLPASS_GRANT_ID".to_string(), "g-123".to_string())]
    );
}

#[tokio::test]
async fn every_call_is_signed_over_the_exact_body_sent() {
    let server = TestServer::start(200, "", "").await;
    let provider = WebhookProvider::new().unwrap();
    let grant = grant(&server.url("/hallpass"));
    provider.issue(&grant).await.unwrap();
    provider.revoke(&grant, &json!({})).await.unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for (request, id) in requests.iter().zip(["g-123-issue", "g-123-revoke"]) {
        assert_eq!(request.header("webhook-id"), Some(id));
        assert_eq!(request.header("idempotency-key"), Some(id));
        let timestamp = request.header("webhook-timestamp").expect("webhook-timestamp");
        let sent_at: i64 = timestamp.parse().unwrap();
        assert!(
            (Utc::now().timestamp() - sent_at).abs() <= 5,
            "stale timestamp {sent_at}"
        );
        assert_eq!(
            request.header("webhook-signature"),
            Some(expected_signature(&KEY_BYTES, id, timestamp, &request.body).as_str())
        );
        // A receiver holding another key computes another signature.
        assert_ne!(
            request.header("webhook-signature"),
            Some(expected_signature(&[8; 32], id, timestamp, &request.body).as_str())
        );
    }
}

#[tokio::test]
async fn a_retry_keeps_the_id_and_signs_a_fresh_timestamp() {
    let server = TestServer::start(503, "", "").await;
    let ticks = Arc::new(AtomicI64::new(1_900_000_000));
    let clock = ticks.clone();
    let provider = provider_at(move || clock.fetch_add(7, Ordering::SeqCst));
    let grant = grant(&server.url("/h"));
    for _ in 0..2 {
        let error = provider.issue(&grant).await.unwrap_err();
        assert!(target_message(error).contains("503"));
    }

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let ids: Vec<_> = requests.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids, vec![Some("g-123-issue"); 2]);
    let timestamps: Vec<_> = requests.iter().map(|r| r.header("webhook-timestamp")).collect();
    assert_eq!(timestamps, vec![Some("1900000000"), Some("1900000007")]);
    for request in &requests {
        let timestamp = request.header("webhook-timestamp").unwrap();
        assert_eq!(
            request.header("webhook-signature"),
            Some(expected_signature(&KEY_BYTES, "g-123-issue", timestamp, &request.body).as_str())
        );
    }
    assert_ne!(
        requests[0].header("webhook-signature"),
        requests[1].header("webhook-signature")
    );
}

/// The request line and `Authorization` header of an issue to `path` on
/// `server` with `extra` secrets.
async fn sent_with(server: &TestServer, path: &str, extra: &[(&str, &str)]) -> (String, Option<String>) {
    let provider = WebhookProvider::new().unwrap();
    provider.issue(&grant_with(&server.url(path), extra)).await.unwrap();
    let request = server.requests().pop().unwrap();
    let authorization = request.header("authorization").map(str::to_string);
    (request.request_line, authorization)
}

#[tokio::test]
async fn endpoint_credentials_are_sent_as_configured() {
    let server = TestServer::start(200, "", "").await;
    let line = |text: &str| format!("POST {text} HTTP/1.1");
    assert_eq!(sent_with(&server, "/h", &[]).await, (line("/h"), None));
    assert_eq!(
        sent_with(&server, "/h", &[(BEARER_TOKEN, "tok-3n\n")]).await,
        (line("/h"), Some("Bearer tok-3n".into()))
    );
    // base64("hook:pa55")
    assert_eq!(
        sent_with(&server, "/h", &[(BASIC_AUTH, "hook:pa55")]).await,
        (line("/h"), Some("Basic aG9vazpwYTU1".into()))
    );
    assert_eq!(
        sent_with(&server, "/h?team=ops", &[(URL_QUERY, "token=a%2Bb")]).await,
        (line("/h?team=ops&token=a%2Bb"), None)
    );
    assert_eq!(
        sent_with(&server, "/h", &[(URL_QUERY, "?token=abc")]).await,
        (line("/h?token=abc"), None)
    );
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
async fn revoke_500_is_an_error_naming_the_status_and_no_secret() {
    let server = TestServer::start(500, "", r#"{"credential": "s3cret"}"#).await;
    let provider = WebhookProvider::new().unwrap();
    let grant = grant_with(
        &server.url("/h?team=ops"),
        &[(URL_QUERY, "token=abc"), (BEARER_TOKEN, "b34rer")],
    );
    let error = provider.revoke(&grant, &json!({})).await.unwrap_err();
    let message = target_message(error);
    assert!(
        message.contains("webhook answered 500 Internal Server Error"),
        "{message}"
    );
    assert!(message.contains(&server.url("/h")), "{message}");
    assert_hidden(&message, &["token=abc", "team=ops", "s3cret", "b34rer", "whsec_"]);
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
async fn unreachable_url_is_an_error_that_shows_no_secret() {
    let provider = WebhookProvider::new().unwrap();
    let grant = grant_with(
        "http://127.0.0.1:1/x",
        &[(BASIC_AUTH, "user:pw"), (URL_QUERY, "token=abc")],
    );
    for error in [
        provider.issue(&grant).await.unwrap_err(),
        provider.revoke(&grant, &json!({})).await.unwrap_err(),
    ] {
        let rendered = format!("{error} {error:?}");
        let message = target_message(error);
        assert!(message.contains("webhook unreachable: connection refused"), "{message}");
        assert!(message.contains("http://127.0.0.1:1/x"), "{message}");
        assert_hidden(&rendered, &["user", "pw", "token", "abc", "?", "@", "whsec_"]);
    }
}

/// An HTTPS endpoint whose certificate no public root vouches for: the
/// webhook client, on aws-lc-rs and the webpki roots, must refuse it.
#[tokio::test]
async fn an_https_endpoint_with_an_untrusted_certificate_is_refused() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshake = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        acceptor.accept(stream).await.map(|_| ())
    });

    let webhook = WebhookProvider::new().unwrap();
    let error = webhook.issue(&grant(&format!("https://{addr}/h"))).await.unwrap_err();
    let message = target_message(error);
    assert!(message.contains("webhook unreachable"), "{message}");
    assert!(message.contains("certificate"), "{message}");
    // The client got as far as the server's certificate and rejected it.
    assert!(handshake.await.unwrap().is_err());
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    let server = TestServer::start(0, "", "").await;
    let provider = WebhookProvider::new().unwrap();
    let mut grant = grant(&server.url("/h"));
    grant.target.config.insert("timeout_seconds".into(), json!(1));
    let started = std::time::Instant::now();
    let error = provider.issue(&grant).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let message = target_message(error);
    assert!(message.contains("webhook timed out after 1s"), "{message}");
}

#[tokio::test]
async fn a_target_without_a_valid_signing_key_sends_nothing() {
    let server = TestServer::start(200, "", "").await;
    let provider = WebhookProvider::new().unwrap();
    let mut grant = grant(&server.url("/h"));
    grant.target.secrets = secrets(&[(HMAC_SECRET, "not-a-key")]);
    assert!(matches!(
        provider.issue(&grant).await,
        Err(ProviderError::InvalidConfig { .. })
    ));
    grant.target.secrets = TargetSecrets::new();
    assert!(matches!(
        provider.revoke(&grant, &json!({})).await,
        Err(ProviderError::InvalidConfig { .. })
    ));
    assert!(server.requests().is_empty());
}

/// `validate_config` with the test key plus `extra` secrets.
fn check_config(pairs: &[(&str, Value)]) -> Result<(), ProviderError> {
    let config = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let mut secrets = TargetSecrets::new();
    secrets.insert(HMAC_SECRET, SecretValue::new(test_key()));
    WebhookProvider::new().unwrap().validate_config(&config, &secrets)
}

fn check_url(url: &str) -> Result<(), ProviderError> {
    check_config(&[("url", json!(url))])
}

fn check_secrets(pairs: &[(&str, &str)]) -> Result<(), ProviderError> {
    let config = config("https://panel.internal/h");
    WebhookProvider::new()
        .unwrap()
        .validate_config(&config, &secrets(pairs))
}

#[test]
fn config_is_validated() {
    assert!(check_url("http://127.0.0.1:9000/hallpass").is_ok());
    assert!(
        check_config(&[
            ("url", json!("https://panel.internal/h")),
            ("timeout_seconds", json!(60))
        ])
        .is_ok()
    );
    assert!(
        check_config(&[
            ("url", json!("https://panel.internal/h")),
            ("timeout_seconds", json!(1.0))
        ])
        .is_ok()
    );

    assert!(config_message(check_config(&[])).contains("`url` is required"));
    assert!(config_message(check_config(&[("url", json!(5))])).contains("`url` must be a string"));
    let bad = config_message(check_url("not a url pw=s3cret"));
    assert!(bad.contains("not a valid URL") && !bad.contains("s3cret"), "{bad}");
    assert!(config_message(check_url("ftp://host/x")).contains("http or https"));
    assert!(config_message(check_url("http://")).contains("`url`"));
    assert!(config_message(check_url("unix:/run/hook.sock")).contains("http or https"));

    let unknown = config_message(check_config(&[("url", json!("http://h/")), ("timeout", json!(5))]));
    assert!(unknown.contains("`timeout`"), "{unknown}");
    assert!(
        unknown.contains("`url`") && unknown.contains("`timeout_seconds`"),
        "{unknown}"
    );

    for timeout in [json!(0), json!(61), json!(-1), json!(2.5), json!("5"), json!(null)] {
        let message = config_message(check_config(&[
            ("url", json!("http://h/")),
            ("timeout_seconds", timeout.clone()),
        ]));
        assert!(message.contains("`timeout_seconds` must be"), "{timeout}: {message}");
    }
}

#[test]
fn urls_with_credentials_are_refused_naming_the_part_and_the_secret() {
    let user_info = config_message(check_url("https://hook:pa55word@panel.internal/h"));
    assert!(
        user_info.contains("user-info") && user_info.contains("`basic_auth`"),
        "{user_info}"
    );
    assert!(
        user_info.contains("secrets") && user_info.contains("hmac_secret = env("),
        "{user_info}"
    );
    assert_hidden(&user_info, &["pa55word", "hook"]);
    let user_only = config_message(check_url("https://hook@panel.internal/h"));
    assert!(user_only.contains("user-info"), "{user_only}");
    assert_hidden(&user_only, &["hook"]);

    for (query, name) in [
        ("team=ops&token=t0psecret", "token"),
        ("Access_Token=t0psecret", "Access_Token"),
        ("api-key=t0psecret", "api-key"),
        ("X-Api-Key=t0psecret", "X-Api-Key"),
        ("client_secret=t0psecret", "client_secret"),
        ("refresh_token=t0psecret", "refresh_token"),
        ("sig=t0psecret", "sig"),
        ("KEY=t0psecret", "KEY"),
        ("jwt=t0psecret", "jwt"),
        ("session=t0psecret", "session"),
        ("pwd=t0psecret", "pwd"),
        ("x-amz-credential=t0psecret", "x-amz-credential"),
        ("%74oken=t0psecret", "token"),
    ] {
        let message = config_message(check_url(&format!("https://panel.internal/h?{query}")));
        assert!(
            message.contains(&format!("query parameter `{name}`")),
            "{query}: {message}"
        );
        assert!(
            message.contains("`url_query`") && message.contains("`bearer_token`"),
            "{message}"
        );
        assert_hidden(&message, &["t0psecret", "team", "ops"]);
    }

    let both = config_message(check_url("https://u:pw@panel.internal/h?token=t0psecret&sig=s1g"));
    assert!(
        both.contains("user-info") && both.contains("parameters `token`, `sig`"),
        "{both}"
    );
    assert_hidden(&both, &["t0psecret", "s1g", "u:pw"]);

    // A parameter with no value may be the credential itself, so it is not named.
    let bare = config_message(check_url("https://panel.internal/h?mysecretABC123"));
    assert!(bare.contains("one without a value"), "{bare}");
    assert_hidden(&bare, &["ABC123"]);

    for harmless in [
        "?team=ops",
        "?team=ops&env=prod",
        "?monkey=1&keyboard=us",
        "?page=2",
        "#token",
    ] {
        let url = format!("https://panel.internal/h{harmless}");
        assert!(check_url(&url).is_ok(), "{url} was refused");
    }
}

#[test]
fn the_signing_key_is_required_and_must_be_well_formed() {
    let missing = config_message(check_secrets(&[]));
    assert!(missing.contains("secret `hmac_secret` is required"), "{missing}");

    let key_of = |bytes: usize| format!("whsec_{}", STANDARD.encode(vec![9u8; bytes]));
    let unpadded = format!("whsec_{}", STANDARD.encode([9u8; 32]).trim_end_matches('='));
    for (value, problem) in [
        ("s3cr3t-n0t-a-key".to_string(), "does not start with `whsec_`"),
        ("whsec_!!s3cr3t!!".to_string(), "is not valid base64"),
        (unpadded, "is not valid base64"),
        (key_of(16), "holds 16 bytes"),
        (key_of(65), "holds 65 bytes"),
    ] {
        let message = config_message(check_secrets(&[(HMAC_SECRET, &value)]));
        assert!(message.contains(problem), "{message}");
        assert!(
            message.contains(r#"echo "whsec_$(openssl rand -base64 32)""#),
            "{message}"
        );
        assert_hidden(&message, &[&value, "s3cr3t", "CQkJ"]);
    }
    for value in [key_of(24), key_of(64), format!("{}\n", key_of(32))] {
        assert!(check_secrets(&[(HMAC_SECRET, &value)]).is_ok(), "{value}");
    }
    let generated = SigningKey::generate().unwrap();
    assert!(generated.expose().starts_with("whsec_"));
    assert!(SigningKey::parse(&generated).is_ok());
    assert!(!generated.matches(&SigningKey::generate().unwrap()));
}

#[test]
fn endpoint_secrets_are_checked_without_showing_them() {
    let key = test_key();
    let with_key = |name: &'static str, value: &'static str| check_secrets(&[(HMAC_SECRET, &key), (name, value)]);
    for (result, expected, value) in [
        (with_key(BEARER_TOKEN, " "), "`bearer_token` must be", " "),
        (with_key(BEARER_TOKEN, "ab c9d"), "`bearer_token` must be", "ab c9d"),
        (
            with_key(BASIC_AUTH, "n0c0l0n"),
            "`basic_auth` must be \"user:password\"",
            "n0c0l0n",
        ),
        (with_key(URL_QUERY, "?"), "`url_query` must be", "?"),
        (with_key(URL_QUERY, "t=1#fr4g"), "`url_query` must be", "fr4g"),
        (with_key("api_key", "k3y"), "unknown secret `api_key`", "k3y"),
    ] {
        let message = config_message(result);
        assert!(message.contains(expected), "{message}");
        if value.trim().len() > 1 {
            assert_hidden(&message, &[value]);
        }
    }
    let both = config_message(check_secrets(&[
        (HMAC_SECRET, &key),
        (BEARER_TOKEN, "t"),
        (BASIC_AUTH, "u:p"),
    ]));
    assert!(both.contains("not both"), "{both}");
    assert!(check_secrets(&[(HMAC_SECRET, &key), (BEARER_TOKEN, "t0k"), (URL_QUERY, "a=1")]).is_ok());
}

#[test]
fn debug_output_shows_no_secret() {
    let parsed = WebhookSecrets::parse(&secrets(&[
        (HMAC_SECRET, &test_key()),
        (BASIC_AUTH, "hook:pa55"),
        (URL_QUERY, "token=abc"),
    ]))
    .unwrap();
    let grant = grant_with("https://panel.internal/h", &[(BEARER_TOKEN, "b34rer")]);
    let provider = WebhookProvider::new().unwrap();
    let rendered = format!("{parsed:?} {grant:?} {provider:?} {:?}", parsed.signing_key);
    assert_hidden(&rendered, &["pa55", "aG9vazpwYTU1", "abc", "b34rer", "whsec_", "BwcH"]);
    assert!(rendered.contains("[redacted]"), "{rendered}");
}

#[test]
fn parsed_config_has_defaults_and_redacts() {
    let mut config = Map::new();
    config.insert("url".into(), json!("https://panel.internal:8443/hook?team=ops#frag"));
    let parsed = WebhookConfig::parse(&config).unwrap();
    assert_eq!(parsed.timeout, DEFAULT_TIMEOUT);
    assert_eq!(parsed.host(), "panel.internal");
    assert_eq!(parsed.redacted_url(), "https://panel.internal:8443/hook");
    let debug = format!("{parsed:?}");
    assert!(!debug.contains("team=ops") && !debug.contains("frag"), "{debug}");
}

#[test]
fn provider_fits_the_registry() {
    let registry = crate::Registry::default().with(Arc::new(WebhookProvider::new().unwrap()));
    assert_eq!(registry.types(), vec!["webhook"]);
    let provider = registry.get("webhook").unwrap();
    let names: Vec<_> = provider.secrets().iter().map(|s| (s.name, s.required)).collect();
    assert_eq!(
        names,
        vec![
            ("hmac_secret", true),
            ("bearer_token", false),
            ("basic_auth", false),
            ("url_query", false)
        ]
    );
}

fn upgrade(url: &str) -> Option<LegacyUpgrade> {
    WebhookProvider::new().unwrap().upgrade_legacy_config(&config(url))
}

fn secret_names(upgrade: &LegacyUpgrade) -> Vec<&str> {
    upgrade.secrets.names().collect()
}

fn secret<'a>(upgrade: &'a LegacyUpgrade, name: &str) -> &'a str {
    upgrade.secrets.get(name).unwrap().expose()
}

/// What every upgrade must give: a config and secrets that validate, the
/// timeout kept, a fresh signing key, and words that name no value.
fn assert_sound_upgrade(upgraded: &LegacyUpgrade, values: &[&str]) {
    let provider = WebhookProvider::new().unwrap();
    provider.validate_config(&upgraded.config, &upgraded.secrets).unwrap();
    assert_eq!(upgraded.config["timeout_seconds"], json!(5));
    assert!(SigningKey::parse(upgraded.secrets.get(HMAC_SECRET).unwrap()).is_ok());
    let words = format!("{:?} {upgraded:?}", upgraded.moved.join(" "));
    assert!(words.contains("hmac_secret"), "{words}");
    assert_hidden(&words, values);
    assert_hidden(&words, &["whsec_"]);
}

#[test]
fn legacy_user_info_moves_into_basic_auth() {
    let upgraded = upgrade("https://hook:p%40ss@panel.internal:8443/h?team=ops").unwrap();
    assert_eq!(upgraded.config["url"], json!("https://panel.internal:8443/h?team=ops"));
    assert_eq!(secret_names(&upgraded), vec!["basic_auth", "hmac_secret"]);
    assert_eq!(secret(&upgraded, BASIC_AUTH), "hook:p@ss");
    assert!(
        upgraded
            .moved
            .iter()
            .any(|m| m.contains("user-info") && m.contains("`basic_auth`"))
    );
    assert_sound_upgrade(&upgraded, &["hook", "p@ss", "p%40ss"]);

    let user_only = upgrade("https://hook@panel.internal/h").unwrap();
    assert_eq!(secret(&user_only, BASIC_AUTH), "hook:");
    assert_eq!(user_only.config["url"], json!("https://panel.internal/h"));
}

#[test]
fn a_legacy_query_with_a_credential_moves_whole_into_url_query() {
    let upgraded = upgrade("https://panel.internal/h?team=ops&token=t0k%2B1").unwrap();
    assert_eq!(upgraded.config["url"], json!("https://panel.internal/h"));
    assert_eq!(secret_names(&upgraded), vec!["hmac_secret", "url_query"]);
    assert_eq!(secret(&upgraded, URL_QUERY), "team=ops&token=t0k%2B1");
    assert!(
        upgraded
            .moved
            .iter()
            .any(|m| m.contains("`token`") && m.contains("`url_query`")),
        "{:?}",
        upgraded.moved
    );
    assert_sound_upgrade(&upgraded, &["t0k", "ops"]);
}

#[test]
fn legacy_user_info_and_query_both_move() {
    let upgraded = upgrade("https://u:pw@panel.internal/h?access_token=t0k").unwrap();
    assert_eq!(upgraded.config["url"], json!("https://panel.internal/h"));
    assert_eq!(secret_names(&upgraded), vec!["basic_auth", "hmac_secret", "url_query"]);
    assert_eq!(secret(&upgraded, BASIC_AUTH), "u:pw");
    assert_eq!(secret(&upgraded, URL_QUERY), "access_token=t0k");
    assert_sound_upgrade(&upgraded, &["u:pw", "t0k"]);

    // Each upgraded target gets its own key.
    let again = upgrade("https://u:pw@panel.internal/h?access_token=t0k").unwrap();
    assert!(
        !again
            .secrets
            .get(HMAC_SECRET)
            .unwrap()
            .matches(upgraded.secrets.get(HMAC_SECRET).unwrap())
    );
}

#[test]
fn clean_legacy_configs_need_no_upgrade() {
    for url in [
        "https://panel.internal/h",
        "https://panel.internal/h?team=ops",
        "not a url",
    ] {
        assert!(upgrade(url).is_none(), "{url}");
    }
    let provider = WebhookProvider::new().unwrap();
    assert!(provider.upgrade_legacy_config(&Map::new()).is_none());
}

#[tokio::test]
async fn an_upgraded_target_authenticates_as_the_legacy_one_did() {
    let server = TestServer::start(200, "", "").await;
    let provider = WebhookProvider::new().unwrap();
    // What the earlier release did with such a URL: hand it to the HTTP
    // client, which sends user-info as basic auth and the query as it is.
    super::install_tls_crypto_provider();
    let legacy_client = Client::builder().redirect(redirect::Policy::none()).build().unwrap();
    for legacy_url in [
        server.url("/h?team=ops").replace("http://", "http://hook:p%40ss@"),
        server.url("/h?team=ops&token=a%2Bb&x=%20y"),
        server.url("/h?access_token=xyz&x=1").replace("http://", "http://u:pw@"),
        server.url("/h").replace("http://", "http://onlyuser@"),
    ] {
        legacy_client.post(&legacy_url).json(&json!({})).send().await.unwrap();
        let upgraded = provider.upgrade_legacy_config(&config(&legacy_url)).unwrap();
        let mut grant = grant(&legacy_url);
        grant.target.config = upgraded.config;
        grant.target.secrets = upgraded.secrets;
        provider.issue(&grant).await.unwrap();

        let requests = server.requests();
        let [.., before, after] = requests.as_slice() else {
            panic!("expected two calls")
        };
        assert_eq!(after.request_line, before.request_line, "{legacy_url}");
        assert_eq!(
            after.header("authorization"),
            before.header("authorization"),
            "{legacy_url}"
        );
        assert!(after.header("webhook-signature").is_some());
    }
}
