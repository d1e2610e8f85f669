//! The email notifier's checks of its settings, the message it builds,
//! who it goes to, and what a failed send says.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use hallpass_api::{AccessRequest, Notification, NotificationLinks, NotificationTopic, RequestState};
use hallpass_providers::{SecretValue, TargetSecrets};
use serde_json::{Map, Value, json};

use super::message::{content, html_body, text_body};
use super::*;
use crate::{NotifierTypes, Routing};

fn config(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn types() -> NotifierTypes {
    NotifierTypes::default().with(Arc::new(EmailNotifier::new()))
}

fn secrets(pairs: &[(&str, &str)]) -> TargetSecrets {
    let mut secrets = TargetSecrets::new();
    for (name, value) in pairs {
        secrets.insert(*name, SecretValue::new(*value));
    }
    secrets
}

fn refusal_with(value: Value, secrets: &TargetSecrets) -> String {
    match types().validate(NOTIFIER_TYPE, &config(value), secrets) {
        Err(NotifyError::InvalidConfig { message, .. }) => message,
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

fn refusal(value: Value) -> String {
    refusal_with(value, &TargetSecrets::new())
}

/// `host` and `from` set; `extra` added over them.
fn with(extra: Value) -> Value {
    let mut base = json!({"host": "smtp.example.com", "from": "Hallpass <hallpass@example.com>"});
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        base[key] = value;
    }
    base
}

fn ca_pem() -> String {
    rcgen::generate_simple_self_signed(vec!["smtp.example.com".to_string()])
        .unwrap()
        .cert
        .pem()
}

#[test]
fn each_bad_setting_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "just text\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let cases = [
        (json!({"from": "a@example.com"}), "`host` is required"),
        (
            with(json!({"host": "smtp://smtp.example.com"})),
            "`host` \"smtp://smtp.example.com\"",
        ),
        (with(json!({"host": "smtp.example.com:25"})), "without a scheme or port"),
        (with(json!({"tls": "ssl"})), "`tls` \"ssl\" must be"),
        (with(json!({"tls": "none"})), "allowed only to this machine"),
        (with(json!({"tls": "none", "host": "10.0.0.1"})), "not to \"10.0.0.1\""),
        (with(json!({"port": 0})), "`port` must be"),
        (with(json!({"port": 70000})), "`port` must be"),
        (with(json!({"port": "25"})), "`port` must be"),
        (json!({"host": "smtp.example.com"}), "`from` is required"),
        (
            with(json!({"from": "not an address"})),
            "`from` \"not an address\" is not an email address",
        ),
        (
            with(json!({"from": "a@example.com\r\nBcc: x@evil.test"})),
            "`from` holds a line break",
        ),
        (with(json!({"to": "security@example.com"})), "`to` must be a list"),
        (with(json!({"to": ["ok@example.com", "nope"]})), "`to[1]` \"nope\""),
        (with(json!({"to": ["ok@example.com", 7]})), "`to[1]` must be an address"),
        (
            with(json!({"to": ["x@example.com\nBcc: y@evil.test"]})),
            "`to[0]` holds a line break",
        ),
        (
            with(json!({"recipients": {"user:carol": "carol"}})),
            "`recipients` entry \"user:carol\" \"carol\" is not an email address",
        ),
        (with(json!({"ca_file": "ca.pem"})), "must be an absolute path"),
        (
            with(json!({"ca_file": missing.to_str().unwrap()})),
            "cannot read `ca_file`",
        ),
        (
            with(json!({"ca_file": not_pem.to_str().unwrap()})),
            "holds no certificate",
        ),
        (
            with(json!({"tls": "none", "host": "127.0.0.1", "ca_file": "/etc/ca.pem"})),
            "`ca_file` is used only with TLS",
        ),
        (with(json!({"timeout_seconds": 0})), "`timeout_seconds` must be"),
        (with(json!({"timeout_seconds": 61})), "`timeout_seconds` must be"),
        (with(json!({"smtp_host": "x"})), "unknown setting `smtp_host`"),
    ];
    for (value, expected) in cases {
        let message = refusal(value.clone());
        assert!(message.contains(expected), "{value}: {message:?} lacks {expected:?}");
    }
}

#[test]
fn a_login_needs_both_secrets_and_no_others() {
    let only_user = refusal_with(with(json!({})), &secrets(&[("username", "u")]));
    assert!(
        only_user.contains("`username` is set without `password`"),
        "{only_user}"
    );
    let only_password = refusal_with(with(json!({})), &secrets(&[("password", "p")]));
    assert!(
        only_password.contains("`password` is set without `username`"),
        "{only_password}"
    );
    let unknown = refusal_with(with(json!({})), &secrets(&[("token", "t")]));
    assert!(unknown.contains("token"), "{unknown}");
    types()
        .validate(
            NOTIFIER_TYPE,
            &config(with(json!({}))),
            &secrets(&[("username", "u"), ("password", "p")]),
        )
        .unwrap();
}

#[test]
fn valid_settings_take_their_defaults() {
    let minimal = Settings::parse(&config(with(json!({})))).unwrap();
    assert_eq!((minimal.security, minimal.port), (Security::StartTls, 587));
    assert_eq!(minimal.from.email.to_string(), "hallpass@example.com");
    assert_eq!(minimal.timeout, DEFAULT_TIMEOUT);
    assert!(minimal.to.is_empty() && minimal.ca_file.is_none());

    let implicit = Settings::parse(&config(with(json!({"tls": "tls", "timeout_seconds": 3})))).unwrap();
    assert_eq!((implicit.security, implicit.port), (Security::Tls, 465));
    assert_eq!(implicit.timeout, Duration::from_secs(3));

    for host in ["127.0.0.1", "localhost", "::1", "127.0.0.53"] {
        let plain = Settings::parse(&config(with(json!({"tls": "none", "host": host})))).unwrap();
        assert_eq!((plain.security, plain.port), (Security::None, 25), "{host}");
    }

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem()).unwrap();
    let private = Settings::parse(&config(with(json!({
        "port": 2525,
        "ca_file": ca.to_str().unwrap(),
        "to": ["Security <security@example.com>"],
        "recipients": {"user:carol": "Carol <carol@example.com>"}
    }))))
    .unwrap();
    assert_eq!(private.port, 2525);
    assert_eq!(private.ca_file.as_deref(), Some(ca.as_path()));
    assert_eq!(private.to[0].email.to_string(), "security@example.com");
    assert!(private.tls().is_ok());
}

const REASON: &str = "<img src=x onerror=alert(1)> & \"fix\" INC-42";
const LINK: &str = "https://hallpass.example.com/v1/requests/req-1";
const ID: &str = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b";

/// A request pending on stage 1 of 2 (carol's), with a Terraform plan;
/// read from its JSON as the API gives it (absent options are `None`).
fn request() -> AccessRequest {
    let stage = |number: u32, state: &str, approvers: &[&str]| {
        json!({
            "number": number, "state": state, "approvers": approvers, "required": 1, "approvals": [],
            "escalate_to": [], "opened_at": "2026-11-30T12:00:00Z", "escalated": false, "may_approve": approvers
        })
    };
    serde_json::from_value(json!({
        "id": "req-1", "role": "prod-db-write", "target": "prod-pg", "requester": "alice",
        "state": "pending", "duration_seconds": 3600, "reason": REASON, "ticket": "INC-42",
        "created_at": "2026-11-30T12:00:00Z", "updated_at": "2026-11-30T12:00:00Z",
        "auto_approved": false, "required_approvals": 1, "approvers": ["user:carol"], "approvals": [],
        "revoke_attempts": 0, "emergency": false, "extensions": [], "version": 3,
        "approval": {
            "flow": "db-change",
            "stages": [stage(1, "open", &["user:carol"]), stage(2, "waiting", &["group:dba"])],
            "distinct_approvers": true, "allow_self_approval": false
        },
        "plan": {
            "sha256": "ab".repeat(32),
            "create": ["aws_iam_role.deploy", "aws_s3_bucket.<b>"],
            "delete": ["aws_instance.old"]
        }
    }))
    .unwrap()
}

fn notification(topic: NotificationTopic, request: Option<AccessRequest>) -> Notification {
    Notification {
        id: ID.into(),
        topic,
        time: Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 1).unwrap(),
        event_seq: 7,
        actor: "alice".into(),
        audience: vec!["user:carol".into()],
        request,
        detail: None,
        links: NotificationLinks {
            request: Some(LINK.into()),
        },
    }
}

fn mailbox(text: &str) -> Mailbox {
    text.parse().unwrap()
}

/// The header block of a formatted message, one (unfolded) header per item.
fn headers_of(formatted: &str) -> Vec<String> {
    let head = formatted.split("\r\n\r\n").next().unwrap();
    let mut headers: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            headers.last_mut().unwrap().push_str(line);
        } else {
            headers.push(line.to_string());
        }
    }
    headers
}

#[test]
fn a_pending_request_reads_the_same_in_both_parts_with_the_reason_escaped_in_html() {
    let n = notification(NotificationTopic::RequestPending, Some(request()));
    assert_eq!(subject(&n), "[Hallpass] alice asks for prod-db-write");
    let content = content(&n);
    let (text, html) = (text_body(&content), html_body(&content));
    for needed in [
        "alice asks for prod-db-write for 1h",
        "prod-pg",
        "INC-42",
        "1 of 2 of flow db-change: 0 of 1 approvals",
        "user:carol",
        "2 to create, 1 to delete",
        "aws_iam_role.deploy",
        LINK,
    ] {
        assert!(text.contains(needed), "text lacks {needed:?}:\n{text}");
        assert!(html.contains(needed), "html lacks {needed:?}:\n{html}");
    }
    assert!(text.contains(REASON), "{text}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;fix&quot; INC-42"),
        "{html}"
    );
    assert!(html.contains("aws_s3_bucket.&lt;b&gt;"), "{html}");
    assert!(!html.contains("<img") && !html.contains("<b>"), "{html}");
    assert!(html.contains(&format!("<a href=\"{LINK}\">")), "{html}");
    assert!(!text.contains("BREAK-GLASS") && !html.contains("BREAK-GLASS"));
}

#[test]
fn the_message_is_multipart_alternative_with_its_id_in_two_headers() {
    let n = notification(NotificationTopic::RequestPending, Some(request()));
    let to = [mailbox("Carol <carol@example.com>"), mailbox("security@example.com")];
    let message = build_message(&mailbox("Hallpass <hallpass@example.com>"), &to, &n).unwrap();
    let formatted = String::from_utf8(message.formatted()).unwrap();
    let headers = headers_of(&formatted);
    let has = |wanted: &str| headers.iter().any(|h| h == wanted);
    assert!(has(&format!("Message-ID: <{ID}@hallpass>")), "{headers:#?}");
    assert!(has(&format!("X-Hallpass-Notification-Id: {ID}")), "{headers:#?}");
    assert!(has("Subject: [Hallpass] alice asks for prod-db-write"), "{headers:#?}");
    assert!(has("Auto-Submitted: auto-generated"), "{headers:#?}");
    assert!(
        has("To: Carol <carol@example.com>, security@example.com"),
        "{headers:#?}"
    );
    assert!(
        headers
            .iter()
            .any(|h| h.starts_with("Content-Type: multipart/alternative")),
        "{headers:#?}"
    );
    assert!(
        formatted.contains("Content-Type: text/plain; charset=utf-8"),
        "{formatted}"
    );
    assert!(
        formatted.contains("Content-Type: text/html; charset=utf-8"),
        "{formatted}"
    );
    let recipients: Vec<String> = message.envelope().to().iter().map(ToString::to_string).collect();
    assert_eq!(recipients, ["carol@example.com", "security@example.com"]);
}

#[test]
fn line_breaks_in_names_never_make_a_header() {
    let mut evil = request();
    evil.requester = "mallory\r\nBcc: everyone@example.com".into();
    evil.role = "db\nX-Injected: yes".into();
    let n = notification(NotificationTopic::RequestPending, Some(evil));
    assert!(!subject(&n).contains(['\r', '\n']), "{:?}", subject(&n));
    let message = build_message(&mailbox("hallpass@example.com"), &[mailbox("carol@example.com")], &n).unwrap();
    let formatted = String::from_utf8(message.formatted()).unwrap();
    for header in headers_of(&formatted) {
        let name = header.split(':').next().unwrap();
        assert!(
            !["Bcc", "X-Injected"].contains(&name),
            "an injected header: {header:?}\n{formatted}"
        );
    }
    assert_eq!(message.envelope().to().len(), 1);

    let mut long = request();
    long.requester = "a".repeat(500);
    let cut = subject(&notification(NotificationTopic::RequestPending, Some(long)));
    assert_eq!(cut.chars().count(), 200);
    assert!(cut.ends_with('…'));
}

#[test]
fn an_id_that_cannot_be_a_message_id_is_refused() {
    let mut n = notification(NotificationTopic::RequestPending, Some(request()));
    n.id = "x>\r\nBcc: y@evil.test".into();
    let error = build_message(&mailbox("a@example.com"), &[mailbox("b@example.com")], &n).unwrap_err();
    assert!(
        matches!(error, NotifyError::Failed(ref m) if m.contains("Message-ID")),
        "{error}"
    );
}

#[test]
fn subjects_and_markers_follow_the_topic() {
    let mut active = request();
    active.state = RequestState::Active;
    active.emergency = true;
    active.expires_at = Some(Utc.with_ymd_and_hms(2026, 11, 30, 13, 0, 0).unwrap());
    let glass = notification(NotificationTopic::SecurityBreakGlass, Some(active.clone()));
    assert_eq!(subject(&glass), "[Hallpass] BREAK-GLASS: alice took prod-db-write");
    let shown = content(&glass);
    assert!(text_body(&shown).contains("*** BREAK-GLASS"));
    assert!(html_body(&shown).contains("BREAK-GLASS: access taken without approval"));

    let mut denied = notification(NotificationTopic::RequestDenied, Some(request()));
    denied.actor = "carol".into();
    denied.detail = Some("not during the freeze <b>".into());
    assert_eq!(subject(&denied), "[Hallpass] Denied: prod-db-write for alice");
    let text = text_body(&content(&denied));
    assert!(
        text.contains("was denied by carol") && text.contains("not during the freeze <b>"),
        "{text}"
    );
    assert!(html_body(&content(&denied)).contains("not during the freeze &lt;b&gt;"));

    let expiring = notification(NotificationTopic::GrantExpiring, Some(active));
    assert_eq!(subject(&expiring), "[Hallpass] Ending soon: prod-db-write for alice");
    assert!(text_body(&content(&expiring)).contains("ends at 2026-11-30 13:00 UTC"));

    let mut locked = notification(NotificationTopic::SecurityLocked, None);
    locked.detail = Some("mallory was locked by admin: stolen laptop".into());
    locked.links = NotificationLinks::default();
    assert_eq!(
        subject(&locked),
        "[Hallpass] mallory was locked by admin: stolen laptop"
    );
    let text = text_body(&content(&locked));
    assert!(text.starts_with("mallory was locked by admin: stolen laptop"), "{text}");
    assert!(!text.contains("The request:"), "{text}");
}

fn context(value: Value) -> (Settings, NotifierContext) {
    let config = config(value);
    let routing = Routing::parse(NOTIFIER_TYPE, &config).unwrap();
    let settings = Settings::parse(&config).unwrap();
    let context = NotifierContext {
        name: "mail".into(),
        config,
        secrets: TargetSecrets::new(),
        routing,
    };
    (settings, context)
}

#[test]
fn recipients_are_the_mapped_audience_and_to_each_once() {
    let (settings, notifier) = context(with(json!({
        "to": ["security@example.com", "Carol <CAROL@example.com>"],
        "recipients": {"user:carol": "carol@example.com", "group:dba": "dba@example.com"}
    })));
    let mut n = notification(NotificationTopic::RequestPending, Some(request()));
    n.audience = vec!["group:dba".into(), "user:carol".into(), "user:bob".into()];
    let to: Vec<String> = recipients(&settings, &notifier, &n)
        .unwrap()
        .iter()
        .map(|m| m.email.to_string())
        .collect();
    assert_eq!(to, ["dba@example.com", "carol@example.com", "security@example.com"]);

    let (settings, notifier) = context(with(json!({"recipients": {"user:carol": "carol@example.com"}})));
    n.audience = vec!["user:bob".into()];
    match recipients(&settings, &notifier, &n) {
        Err(NotifyError::NothingToSend(reason)) => assert!(reason.contains("user:bob"), "{reason}"),
        other => panic!("expected nothing to send, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_is_not_there_fails_the_attempt_saying_so() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (_, notifier) = context(with(json!({
        "host": "127.0.0.1", "port": port, "tls": "none", "timeout_seconds": 5,
        "recipients": {"user:carol": "carol@example.com"}
    })));
    let n = notification(NotificationTopic::RequestPending, Some(request()));
    let error = EmailNotifier::new().send(&notifier, &n).await.unwrap_err();
    match error {
        NotifyError::Failed(message) => {
            assert!(message.contains(&format!("SMTP 127.0.0.1:{port}")), "{message}");
            assert!(message.contains("nothing listens there"), "{message}");
        }
        other => panic!("expected a failed attempt, got {other:?}"),
    }
}
