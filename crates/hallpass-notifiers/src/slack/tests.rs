//! The slack notifier: its settings, the message it builds (escaping,
//! buttons, mentions, limits), the signature of clicks, and what it sends
//! to a local server speaking Slack's wire format.

use std::sync::{Arc, Mutex};

use hallpass_api::{Notification, NotificationTopic};
use hallpass_providers::{SecretValue, TargetSecrets};
use serde_json::{Map, Value, json};

use super::interaction::{Interaction, parse_timestamp, sign, signature_matches};
use super::message::{self, Decision, MAX_HEADER_CHARS, MAX_SECTION_CHARS};
use super::*;
use crate::{NotifierContext, NotifierType, NotifierTypes, NotifyError, Routing};

const BOT: &str = "xoxb-1234-5678-SECRETBOTTOKEN";
const SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn config(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn secrets(pairs: &[(&str, &str)]) -> TargetSecrets {
    let mut secrets = TargetSecrets::new();
    for (name, value) in pairs {
        secrets.insert(*name, SecretValue::new(*value));
    }
    secrets
}

fn types() -> NotifierTypes {
    NotifierTypes::default().with(Arc::new(SlackNotifier::new().unwrap()))
}

fn refusal(value: Value, secrets: &TargetSecrets) -> String {
    match types().validate("slack", &config(value), secrets) {
        Err(NotifyError::InvalidConfig { message, .. }) => message,
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_bot_token_with_a_channel_or_an_incoming_webhook_is_accepted() {
    let recipients = json!({"user:bob": "U0BOB", "user:eve": "W0EVE", "group:sre": "S0SRE"});
    types()
        .validate(
            "slack",
            &config(json!({"channel": "C0OPS", "recipients": recipients})),
            &secrets(&[(BOT_TOKEN, BOT), (SIGNING_SECRET, SIGNING)]),
        )
        .unwrap();
    types()
        .validate(
            "slack",
            &config(json!({"recipients": recipients, "timeout_seconds": 5})),
            &secrets(&[(WEBHOOK_URL, "https://hooks.slack.com/services/T0/B0/XYZ")]),
        )
        .unwrap();
    // A local API (tests, a tunnel) may be plain http.
    types()
        .validate(
            "slack",
            &config(json!({"channel": "C0OPS", "api_url": "http://127.0.0.1:9/api"})),
            &secrets(&[(BOT_TOKEN, BOT)]),
        )
        .unwrap();
}

#[test]
fn bad_settings_are_refused_with_what_to_fix_and_no_secret() {
    let none = TargetSecrets::new();
    let bot = secrets(&[(BOT_TOKEN, BOT)]);
    let hook = secrets(&[(WEBHOOK_URL, "https://hooks.slack.com/services/T0/B0/SECRETHOOK")]);
    let both = secrets(&[
        (BOT_TOKEN, BOT),
        (WEBHOOK_URL, "https://hooks.slack.com/services/T0/B0/SECRETHOOK"),
    ]);
    let cases: Vec<(Value, &TargetSecrets, &str)> = vec![
        (json!({"channel": "C0OPS"}), &none, "set the secret `bot_token`"),
        (json!({"channel": "C0OPS"}), &both, "not both"),
        (json!({}), &bot, "`channel` is required with a bot token"),
        (json!({"channel": "C0OPS"}), &hook, "remove `channel`"),
        (json!({"channel": "ops room"}), &bot, "without spaces"),
        (
            json!({"channel": "C0OPS", "api_url": "http://slack.example.com/api"}),
            &bot,
            "https://",
        ),
        (
            json!({"channel": "C0OPS", "api_url": "https://u:p@slack.example.com/api"}),
            &bot,
            "user name",
        ),
        (json!({"channel": "C0OPS", "timeout_seconds": 0}), &bot, "1 to 60"),
        (
            json!({"channel": "C0OPS", "colour": "red"}),
            &bot,
            "unknown setting `colour`",
        ),
        (
            json!({"channel": "C0OPS", "recipients": {"user:bob": "bob@example.com"}}),
            &bot,
            "Slack user id",
        ),
        (
            json!({"channel": "C0OPS", "recipients": {"user:bob": "S0GROUP"}}),
            &bot,
            "Slack user id",
        ),
        (
            json!({"channel": "C0OPS", "recipients": {"group:sre": "U0BOB"}}),
            &bot,
            "user group id",
        ),
    ];
    for (value, secrets, expected) in cases {
        let message = refusal(value.clone(), secrets);
        assert!(message.contains(expected), "{value}: {message}");
        assert!(!message.contains("SECRET"), "{value}: a secret in {message}");
    }
    let user_token = secrets(&[(BOT_TOKEN, "xoxp-SECRETUSERTOKEN")]);
    let message = refusal(json!({"channel": "C0OPS"}), &user_token);
    assert!(message.contains("xoxb-") && !message.contains("SECRET"), "{message}");
    let plain_hook = secrets(&[(WEBHOOK_URL, "http://hooks.example.com/services/SECRETHOOK")]);
    let message = refusal(json!({}), &plain_hook);
    assert!(message.contains("https://") && !message.contains("SECRET"), "{message}");
    let short = secrets(&[(BOT_TOKEN, BOT), (SIGNING_SECRET, "SECRETshort")]);
    let message = refusal(json!({"channel": "C0OPS"}), &short);
    assert!(
        message.contains("16 characters") && !message.contains("SECRET"),
        "{message}"
    );
}

fn request(reason: &str) -> Value {
    json!({
        "id": "0190a0b0-0000-7000-8000-000000000001", "role": "prod-db", "target": "pg-main",
        "requester": "alice", "state": "pending", "duration_seconds": 5400, "capped_from_seconds": null,
        "reason": reason, "ticket": "INC-7 <!here>", "created_at": "2026-01-01T10:00:00Z",
        "updated_at": "2026-01-01T10:00:00Z", "auto_approved": false, "required_approvals": 1,
        "approvers": ["group:sre"], "approvals": [], "revoke_attempts": 0, "emergency": true,
        "extensions": [], "version": 7,
        "approval": {"flow": "two-step", "distinct_approvers": true, "allow_self_approval": false, "stages": [
            {"number": 1, "state": "open", "approvers": ["group:sre"], "required": 1, "approvals": [],
             "escalate_to": ["group:leads"], "opened_at": "2026-01-01T10:00:00Z",
             "escalates_at": "2026-01-01T10:30:00Z", "escalated": false, "may_approve": ["group:sre"]},
            {"number": 2, "state": "waiting", "approvers": ["user:carol"], "required": 1, "approvals": [],
             "escalate_to": [], "opened_at": null, "escalates_at": null, "escalated": false, "may_approve": []}]},
        "plan": {"sha256": "ab".repeat(32), "create": ["aws_iam_role.deploy"], "update": [],
                 "replace": [], "delete": ["aws_s3_bucket.<old>"]}
    })
}

fn notification(topic: &str, reason: &str) -> Notification {
    serde_json::from_value(json!({
        "id": "0190a0b0-0000-7000-8000-00000000d001", "type": topic, "time": "2026-01-01T10:00:00Z",
        "event_seq": 12, "actor": "bob", "audience": ["group:sre", "user:carol", "user:nobody"],
        "request": request(reason),
        "links": {"request": "https://hallpass.example.com/v1/requests/0190a0b0-0000-7000-8000-000000000001"}
    }))
    .unwrap()
}

fn routing() -> Routing {
    Routing::parse(
        "slack",
        &config(json!({"recipients": {"group:sre": "S0SRE", "user:carol": "U0CAROL", "user:bob": "U0BOB"}})),
    )
    .unwrap()
}

/// Every mrkdwn and plain text of a message.
fn texts(message: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(text)) = map.get("text") {
                    out.push(text.clone());
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(message, &mut out);
    out
}

fn buttons(message: &Value) -> Vec<(String, String)> {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .map(|e| {
            (
                e["action_id"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn user_text_cannot_ping_or_link() {
    let reason = "deploy <!channel> now, see <https://evil.example|click here> & <@U0BOSS>";
    let message = message::notification_message(&notification("request.pending", reason), &routing(), true);
    let all = texts(&message).join("\n");
    assert!(all.contains("&lt;!channel&gt;"), "{all}");
    assert!(all.contains("&lt;https://evil.example|click here&gt;"), "{all}");
    assert!(all.contains("&amp; &lt;@U0BOSS&gt;"), "{all}");
    assert!(all.contains("INC-7 &lt;!here&gt;"), "{all}");
    assert!(all.contains("aws_s3_bucket.&lt;old&gt;"), "{all}");
    for token in ["<!channel>", "<!here>", "<https://evil", "<@U0BOSS>"] {
        assert!(!all.contains(token), "{token} survived: {all}");
    }
    // Every mrkdwn text object is verbatim: no auto-links of bare names.
    let verbatim = message.to_string().matches("\"verbatim\":true").count();
    assert_eq!(verbatim, message.to_string().matches("\"type\":\"mrkdwn\"").count());
}

#[test]
fn the_audience_is_mentioned_through_recipients() {
    let message = message::notification_message(&notification("request.pending", "r"), &routing(), true);
    let lead = message["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(
        lead.starts_with("<!subteam^S0SRE> <@U0CAROL> *alice* asks for *prod-db*"),
        "{lead}"
    );
    assert!(!lead.contains("U0BOB"), "bob is not in the audience: {lead}");
    assert_eq!(
        message["blocks"][0]["text"]["text"],
        "Access request waiting for approval"
    );
    let all = texts(&message).join("\n");
    assert!(
        all.contains("*Stage*\n1 of 2: 0 of 1 approvals from group:sre; escalates to group:leads <!date^"),
        "{all}"
    );
    assert!(all.contains("*Break-glass*"), "{all}");
    assert!(
        all.contains("*Terraform plan* `abababababab`: 1 to create, 0 to change, 0 to replace, 1 to destroy"),
        "{all}"
    );
    assert!(
        all.contains("<https://hallpass.example.com/v1/requests/0190a0b0-0000-7000-8000-000000000001|Request"),
        "{all}"
    );
    assert!(all.contains("1h30m"), "{all}");
}

#[test]
fn buttons_only_when_a_decision_is_asked_and_clicks_can_be_checked() {
    let id = "0190a0b0-0000-7000-8000-000000000001".to_string();
    let pending = message::notification_message(&notification("request.pending", "r"), &routing(), true);
    assert_eq!(
        buttons(&pending),
        vec![
            ("hallpass.approve".to_string(), id.clone()),
            ("hallpass.deny".to_string(), id.clone())
        ]
    );
    let escalated = message::notification_message(&notification("request.escalated", "r"), &routing(), true);
    assert_eq!(buttons(&escalated).len(), 2);
    let unsigned = message::notification_message(&notification("request.pending", "r"), &routing(), false);
    assert!(buttons(&unsigned).is_empty(), "no signing secret, no buttons");
    for topic in NotificationTopic::ALL.iter().filter(|t| !t.asks_for_decision()) {
        let message = message::notification_message(&notification(topic.as_str(), "r"), &routing(), true);
        assert!(buttons(&message).is_empty(), "{topic:?} has buttons");
        assert_eq!(message["blocks"][0]["text"]["text"], message::headline(*topic));
    }
}

#[test]
fn texts_stay_within_slacks_limits() {
    let long = "<".repeat(1024);
    let message = message::notification_message(&notification("request.pending", &long), &routing(), true);
    for block in message["blocks"].as_array().unwrap() {
        if let Some(text) = block["text"]["text"].as_str() {
            let limit = if block["type"] == "header" {
                MAX_HEADER_CHARS
            } else {
                MAX_SECTION_CHARS
            };
            assert!(text.chars().count() <= limit, "{}", text.chars().count());
        }
    }
    let reason = texts(&message).into_iter().find(|t| t.starts_with("*Reason*")).unwrap();
    assert!(
        reason.ends_with("&lt;…"),
        "cut after a whole escape: {}",
        &reason[reason.len() - 20..]
    );
    assert!(reason.chars().count() <= 1500 + 10);
    assert_eq!(message::cut("ab&amp;cd".into(), 5), "ab…");
    assert_eq!(message::cut("ab<@U1>cd".into(), 6), "ab…");
    assert_eq!(message::cut("abcdef".into(), 6), "abcdef");
}

#[test]
fn outcomes_replace_the_message_and_refusals_go_to_the_clicker_only() {
    let request: hallpass_api::AccessRequest = serde_json::from_value(request("r <!channel>")).unwrap();
    let still = message::decided_message(&request, "bob", Decision::Approve, true);
    assert_eq!(still["replace_original"], true);
    assert_eq!(
        buttons(&still).len(),
        2,
        "still pending: the buttons stay for the others"
    );
    let mut approved = request.clone();
    approved.state = hallpass_api::RequestState::Active;
    let done = message::decided_message(&approved, "b<o>b", Decision::Approve, true);
    assert!(buttons(&done).is_empty());
    let all = texts(&done).join("\n");
    assert!(all.contains("Approved by *b&lt;o&gt;b* in Slack"), "{all}");
    assert!(!all.contains("<!channel>"), "{all}");
    let refused = message::refusal_message("alice may not approve <!everyone>");
    assert_eq!(refused["response_type"], "ephemeral");
    assert_eq!(refused["replace_original"], false);
    assert!(refused["text"].as_str().unwrap().contains("&lt;!everyone&gt;"));
}

#[test]
fn signatures_are_checked_over_the_timestamp_and_the_raw_body() {
    let secret = SecretValue::new(SIGNING);
    let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
    let signature = sign(&secret, "1700000000", body);
    assert!(signature.starts_with("v0=") && signature.len() == 67, "{signature}");
    assert!(signature_matches(&secret, "1700000000", body, &signature));
    assert!(
        !signature_matches(&secret, "1700000001", body, &signature),
        "another time"
    );
    assert!(
        !signature_matches(&secret, "1700000000", b"payload=x", &signature),
        "another body"
    );
    assert!(!signature_matches(
        &SecretValue::new("another-secret-0123456789"),
        "1700000000",
        body,
        &signature
    ));
    assert!(!signature_matches(
        &secret,
        "1700000000",
        body,
        &signature.replace("v0=", "v1=")
    ));
    assert!(!signature_matches(&secret, "1700000000", body, "v0=zz"));
    assert!(!signature_matches(&secret, "1700000000", body, ""));
    assert_eq!(parse_timestamp(" 1700000000 "), Some(1_700_000_000));
    for bad in ["", "-1", "1e9", "17000000000000000", "12a"] {
        assert_eq!(parse_timestamp(bad), None, "{bad}");
    }
}

/// The documented example of Slack's signature (its "verifying requests"
/// page): the same secret, time and body give the same signature.
#[test]
fn the_signature_is_slacks_v0_scheme() {
    let secret = SecretValue::new("8f742231b10e8888abcd99yyyzzz85a5");
    let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    assert_eq!(
        sign(&secret, "1531420618", body),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
}

fn interaction(action: &str, value: &str, response_url: &str) -> Interaction {
    let payload = json!({
        "type": "block_actions", "user": {"id": "U0BOB", "username": "bob"}, "team": {"id": "T0"},
        "actions": [{"action_id": action, "block_id": "hallpass.decision", "value": value, "type": "button"}],
        "response_url": response_url, "message": {"ts": "1700000000.000100"}, "channel": {"id": "C0OPS"}
    });
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    Interaction::from_form(body.as_bytes()).unwrap()
}

#[test]
fn a_click_names_its_decision_and_only_slacks_response_urls_are_called() {
    let click = interaction("hallpass.approve", "req-1", "https://hooks.slack.com/actions/T0/1/abc");
    assert_eq!(click.decision(), Some((Decision::Approve, "req-1")));
    assert_eq!(click.user.id, "U0BOB");
    assert_eq!(click.channel.as_ref().map(|c| c.id.as_str()), Some("C0OPS"));
    assert!(click.response_url(&[]).unwrap().is_some());
    let deny = interaction("hallpass.deny", "req-2", "https://hooks.slack.com/actions/T0/1/abc");
    assert_eq!(deny.decision(), Some((Decision::Deny, "req-2")));
    assert_eq!(
        interaction("other.app", "x", "https://hooks.slack.com/a").decision(),
        None
    );
    assert_eq!(
        interaction("hallpass.approve", " ", "https://hooks.slack.com/a").decision(),
        None
    );
    let api = Url::parse("http://127.0.0.1:8123/api").unwrap();
    let local = interaction("hallpass.approve", "r", "http://127.0.0.1:8123/respond/1");
    assert!(local.response_url(std::slice::from_ref(&api)).unwrap().is_some());
    for odd in [
        "http://hooks.slack.com/actions/x",
        "https://hooks.slack.com.evil.example/actions/x",
        "https://hooks.slack.com:8443/actions/x",
        "https://169.254.169.254/latest",
        "http://127.0.0.1:9999/respond/1",
        "not a url",
    ] {
        let click = interaction("hallpass.approve", "r", odd);
        assert!(
            click.response_url(std::slice::from_ref(&api)).is_err(),
            "{odd} was allowed"
        );
    }
    assert!(
        Interaction::from_form(b"payload=%7Bnot-json")
            .unwrap_err()
            .contains("`payload`")
    );
    assert!(
        Interaction::from_form(b"token=abc")
            .unwrap_err()
            .contains("form with a `payload`")
    );
}

/// One call the local Slack received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    authorization: Option<String>,
    body: Value,
}

/// A local server answering like Slack: `chat.postMessage` with Slack's
/// JSON (`{"ok": false, ...}` for the channel `C0GONE`), webhooks with `ok`.
async fn fake_slack() -> (String, Arc<Mutex<Vec<Received>>>) {
    use axum::extract::{Request, State};
    use axum::http::StatusCode;
    use axum::routing::post;
    let calls: Arc<Mutex<Vec<Received>>> = Arc::default();
    async fn record(State(calls): State<Arc<Mutex<Vec<Received>>>>, request: Request) -> (StatusCode, String) {
        let path = request.uri().path().to_string();
        let authorization = request
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let gone = body["channel"] == "C0GONE";
        calls.lock().unwrap().push(Received {
            path: path.clone(),
            authorization,
            body,
        });
        match path.as_str() {
            "/api/chat.postMessage" if gone => (StatusCode::OK, r#"{"ok":false,"error":"channel_not_found"}"#.into()),
            "/api/chat.postMessage" => (
                StatusCode::OK,
                r#"{"ok":true,"channel":"C0OPS","ts":"1700000000.000100"}"#.into(),
            ),
            "/services/broken" => (StatusCode::NOT_FOUND, "no_service".into()),
            _ => (StatusCode::OK, "ok".into()),
        }
    }
    let app = axum::Router::new()
        .route("/{*path}", post(record))
        .with_state(Arc::clone(&calls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app.into_make_service()).await });
    (format!("http://{addr}"), calls)
}

fn context(value: Value, secrets: TargetSecrets) -> NotifierContext {
    let config = config(value);
    NotifierContext {
        name: "slack-ops".into(),
        routing: Routing::parse("slack", &config).unwrap(),
        config,
        secrets,
    }
}

#[tokio::test]
async fn sends_with_a_bot_token_and_reports_slacks_refusals_without_the_token() {
    let (base, calls) = fake_slack().await;
    let notifier = SlackNotifier::new().unwrap();
    let api = format!("{base}/api");
    let ops = context(
        json!({"channel": "C0OPS", "api_url": api, "recipients": {"group:sre": "S0SRE"}}),
        secrets(&[(BOT_TOKEN, BOT), (SIGNING_SECRET, SIGNING)]),
    );
    notifier
        .send(&ops, &notification("request.pending", "r"))
        .await
        .unwrap();
    let call = calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(call.path, "/api/chat.postMessage");
    assert_eq!(call.authorization.as_deref(), Some(format!("Bearer {BOT}").as_str()));
    assert_eq!(call.body["channel"], "C0OPS");
    assert_eq!(buttons(&call.body).len(), 2);
    let gone = context(
        json!({"channel": "C0GONE", "api_url": api}),
        secrets(&[(BOT_TOKEN, BOT)]),
    );
    let error = notifier
        .send(&gone, &notification("request.pending", "r"))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("channel_not_found") && !text.contains("SECRETBOTTOKEN"),
        "{text}"
    );
    assert!(matches!(error, NotifyError::Failed(_)));
}

#[tokio::test]
async fn sends_to_an_incoming_webhook_whose_url_stays_secret() {
    let (base, calls) = fake_slack().await;
    let notifier = SlackNotifier::new().unwrap();
    let hook = context(
        json!({}),
        secrets(&[(WEBHOOK_URL, &format!("{base}/services/T0/B0/SECRETPATH"))]),
    );
    notifier
        .send(&hook, &notification("request.approved", "r"))
        .await
        .unwrap();
    let call = calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(call.path, "/services/T0/B0/SECRETPATH");
    assert_eq!(call.authorization, None);
    assert_eq!(call.body["blocks"][0]["text"]["text"], "Access request approved");
    let broken = context(json!({}), secrets(&[(WEBHOOK_URL, &format!("{base}/services/broken"))]));
    let text = notifier
        .send(&broken, &notification("request.approved", "r"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("404") && text.contains("no_service") && !text.contains("broken"),
        "{text}"
    );
}
