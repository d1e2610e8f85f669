//! The slack notifier and Slack's interactive endpoint, end to end: a
//! local Slack (an HTTP server in this test speaking Slack's wire format:
//! `chat.postMessage` answers `{"ok": true, "ts": ...}`, `response_url`s
//! answer `ok`) receives the messages the outbox sends, and clicks on their
//! buttons are posted as Slack posts them, signed here with the app's
//! signing secret.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::harness::{Server, http_client};

const SIGNING_SECRET: &str = "e2e0slack0signing0secret0abcdef12";
const BOT_TOKEN: &str = "xoxb-e2e-4242-SECRETBOTTOKEN";
const INTERACTIONS: &str = "/v1/integrations/slack/interactions";
const HOSTILE_REASON: &str = "deploy <!channel> now: <https://evil.example|click here>";

/// One call the local Slack received.
#[derive(Debug, Clone)]
struct SlackCall {
    path: String,
    authorization: Option<String>,
    /// The body as received (what a test looks for escapes in).
    raw: String,
    body: Value,
}

/// A local Slack: records every call, answers like Slack.
struct FakeSlack {
    url: String,
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<SlackCall>>>,
    stop: Arc<AtomicBool>,
}

impl FakeSlack {
    fn start() -> FakeSlack {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the local Slack");
        let addr = listener.local_addr().expect("local addr");
        let calls: Arc<Mutex<Vec<SlackCall>>> = Arc::default();
        let stop = Arc::<AtomicBool>::default();
        let (recorded, stopped) = (Arc::clone(&calls), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let recorded = Arc::clone(&recorded);
                std::thread::spawn(move || {
                    let _ = Self::serve(stream, &recorded);
                });
            }
        });
        FakeSlack {
            url: format!("http://{addr}"),
            addr,
            calls,
            stop,
        }
    }

    fn serve(stream: TcpStream, calls: &Mutex<Vec<SlackCall>>) -> std::io::Result<()> {
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line)? == 0 {
                return Ok(());
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
            let (mut length, mut authorization) = (0usize, None);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    match name.trim().to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        "authorization" => authorization = Some(value.trim().to_string()),
                        _ => {}
                    }
                }
            }
            let mut raw = vec![0; length];
            reader.read_exact(&mut raw)?;
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
            let answer = if path == "/api/chat.postMessage" {
                r#"{"ok":true,"channel":"C0OPS","ts":"1700000000.000100"}"#
            } else {
                "ok"
            };
            calls.lock().unwrap().push(SlackCall {
                path,
                authorization,
                raw,
                body,
            });
            write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            )?;
        }
    }

    fn calls(&self) -> Vec<SlackCall> {
        self.calls.lock().unwrap().clone()
    }

    /// The first call that `matches`, waiting up to 20 s for it.
    fn wait_for(&self, what: &str, matches: impl Fn(&SlackCall) -> bool) -> SlackCall {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(call) = self.calls().into_iter().find(|c| matches(c)) {
                return call;
            }
            assert!(
                Instant::now() < deadline,
                "Slack never received {what}; it got: {:#?}",
                self.calls()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The message posted about request `id` whose text has `needle`.
    fn message_about(&self, id: &str, needle: &str) -> SlackCall {
        self.wait_for(&format!("a message about {id} with {needle:?}"), |c| {
            c.path == "/api/chat.postMessage" && c.raw.contains(id) && c.raw.contains(needle)
        })
    }

    /// What Hallpass posted to the `response_url` named `label`.
    fn response(&self, label: &str) -> Value {
        let path = format!("/respond/{label}");
        self.wait_for(&format!("an answer on {path}"), |c| c.path == path).body
    }

    fn response_url(&self, label: &str) -> String {
        format!("{}/respond/{label}", self.url)
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// A dev server with a slack notifier posting to `slack`, a one-stage role,
/// a two-stage role (group approvers, then carol) and a token for carol.
fn world(slack: &FakeSlack) -> (Server, tempfile::TempDir) {
    let server = Server::dev();
    let dir = tempfile::tempdir().expect("temp dir");
    server.apply(
        dir.path(),
        &format!(
            r#"
approval_flow "slack-two-step" {{
  stage {{
    approvers = ["group:approvers"]
  }}
  stage {{
    approvers = ["user:carol"]
  }}
}}

role "slack-one" {{
  target         = "demo"
  max_duration   = "1h"
  requestable_by = ["group:dev"]
  approval {{
    approvers = ["group:approvers"]
    required  = 1
  }}
}}

role "slack-two" {{
  target         = "demo"
  max_duration   = "1h"
  requestable_by = ["group:dev"]
  approval_flow  = "slack-two-step"
}}

notifier "slack-ops" {{
  type = "slack"
  config = {{
    channel    = "C0OPS"
    api_url    = "{}/api"
    recipients = {{
      "user:alice" = "U0ALICE", "user:bob" = "U0BOB", "user:carol" = "U0CAROL",
      "user:dave" = "U0DAVE", "group:approvers" = "S0APPROVERS"
    }}
  }}
  secrets = {{ bot_token = "{BOT_TOKEN}", signing_secret = "{SIGNING_SECRET}" }}
}}
"#,
            slack.url
        ),
    );
    (server, dir)
}

/// alice's request for `role`; returns its id.
fn alice_requests(server: &Server, role: &str, reason: &str) -> String {
    let request = server.json(&server.alice, &["request", role, "--for", "30m", "--reason", reason]);
    assert_eq!(request["state"], "pending", "{request}");
    request["id"].as_str().expect("id").to_string()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// `application/x-www-form-urlencoded`, every byte but the unreserved ones
/// percent-encoded.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The form Slack posts when `slack_user` clicks `action` on request `id`.
fn click(slack_user: &str, action: &str, id: &str, response_url: &str) -> Vec<u8> {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": slack_user, "username": slack_user.to_lowercase(), "team_id": "T0E2E"},
        "team": {"id": "T0E2E", "domain": "e2e"},
        "api_app_id": "A0E2E",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0OPS"},
        "channel": {"id": "C0OPS", "name": "ops"},
        "message": {"type": "message", "ts": "1700000000.000100", "text": "Access request waiting for approval"},
        "response_url": response_url,
        "trigger_id": "1.2.3",
        "actions": [{"action_id": action, "block_id": "hallpass.decision", "value": id, "type": "button",
                     "action_ts": "1700000001.000200"}]
    });
    format!("payload={}", form_encode(&payload.to_string())).into_bytes()
}

/// Slack's signature of `body` at `timestamp` with `secret`.
fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("v0:{timestamp}:").into_bytes();
    signed.extend_from_slice(body);
    format!("v0={}", hex::encode(hmac::sign(&key, &signed).as_ref()))
}

/// POSTs `body` to the interactive endpoint with the given headers;
/// returns the status and the body as JSON (Null when empty).
fn post_signed(server: &Server, body: &[u8], timestamp: Option<i64>, signature: Option<&str>) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut request = http_client()
            .post(format!("{}{INTERACTIONS}", server.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_vec());
        if let Some(timestamp) = timestamp {
            request = request.header("x-slack-request-timestamp", timestamp.to_string());
        }
        if let Some(signature) = signature {
            request = request.header("x-slack-signature", signature);
        }
        let response = request.send().await.expect("http request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    })
}

/// A click signed as Slack signs it, now.
fn post_click(server: &Server, body: &[u8]) -> (u16, Value) {
    let at = now();
    post_signed(server, body, Some(at), Some(&signature(SIGNING_SECRET, at, body)))
}

/// The buttons of a message: (action_id, value).
fn buttons(message: &Value) -> Vec<(String, String)> {
    message["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["action_id"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// What a refused or rejected call must leave as it was: the request's
/// version and state, and the length of the audit log.
fn snapshot(server: &Server, id: &str) -> (Value, Value, usize) {
    let request = server.json(&server.admin, &["show", id]);
    (request["version"].clone(), request["state"].clone(), server.audit_len())
}

fn counter(server: &Server, outcome: &str) -> u64 {
    let metrics = server.text("/metrics");
    let prefix = format!("hallpass_slack_interactions_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{metrics}"))
}

#[test]
fn a_pending_request_reaches_slack_and_its_buttons_decide_as_the_mapped_approver() {
    let slack = FakeSlack::start();
    let (server, _dir) = world(&slack);
    assert_eq!(counter(&server, "approved"), 0, "registered at 0 before any click");
    server.token("carol", "dev");

    // The message: to the channel, with the bot token, the approvers'
    // group mentioned, the buttons, and the reason shown as text.
    let one = alice_requests(&server, "slack-one", HOSTILE_REASON);
    let message = slack.message_about(&one, "waiting for approval");
    assert_eq!(
        message.authorization.as_deref(),
        Some(format!("Bearer {BOT_TOKEN}").as_str())
    );
    assert_eq!(message.body["channel"], "C0OPS");
    assert!(message.raw.contains("<!subteam^S0APPROVERS>"), "{}", message.raw);
    assert_eq!(
        buttons(&message.body),
        vec![
            ("hallpass.approve".into(), one.clone()),
            ("hallpass.deny".into(), one.clone())
        ]
    );
    assert!(message.raw.contains("&lt;!channel&gt;"), "{}", message.raw);
    assert!(
        message.raw.contains("&lt;https://evil.example|click here&gt;"),
        "{}",
        message.raw
    );
    assert!(!message.raw.contains("<!channel>") && !message.raw.contains("<https://evil"));

    // bob approves in Slack: the request is approved as by the CLI, and the
    // message is replaced by the outcome.
    let (status, body) = post_click(
        &server,
        &click("U0BOB", "hallpass.approve", &one, &slack.response_url("one")),
    );
    assert_eq!(status, 200, "{body}");
    let outcome = slack.response("one");
    assert_eq!(outcome["replace_original"], true, "{outcome}");
    assert!(outcome.to_string().contains("Approved by *bob* in Slack"), "{outcome}");
    assert!(
        buttons(&outcome).is_empty(),
        "a decided request keeps no buttons: {outcome}"
    );
    let shown = server.wait_state(&server.alice, &one, "active", Duration::from_secs(10));
    assert_eq!(shown["approvals"][0]["approver"], "bob", "{shown}");

    // Two stages: bob's approval keeps the buttons for the next stage,
    // whose approver (carol) is told and approves in Slack too.
    let two = alice_requests(&server, "slack-two", "two stages");
    slack.message_about(&two, "S0APPROVERS");
    post_click(
        &server,
        &click("U0BOB", "hallpass.approve", &two, &slack.response_url("two-bob")),
    );
    let partial = slack.response("two-bob");
    assert!(partial.to_string().contains("more approvals are needed"), "{partial}");
    assert_eq!(buttons(&partial).len(), 2, "{partial}");
    slack.message_about(&two, "<@U0CAROL>");
    post_click(
        &server,
        &click("U0CAROL", "hallpass.approve", &two, &slack.response_url("two-carol")),
    );
    assert!(slack.response("two-carol").to_string().contains("Approved by *carol*"));
    server.wait_state(&server.alice, &two, "active", Duration::from_secs(10));

    // A denial works the same way.
    let three = alice_requests(&server, "demo-admin", "to be denied");
    slack.message_about(&three, "waiting for approval");
    post_click(
        &server,
        &click("U0BOB", "hallpass.deny", &three, &slack.response_url("three")),
    );
    assert!(slack.response("three").to_string().contains("Denied by *bob* in Slack"));
    let denied = server.wait_state(&server.alice, &three, "denied", Duration::from_secs(10));
    assert_eq!(denied["decision"]["by"], "bob", "{denied}");
    // alice hears of the decisions in Slack too.
    slack.message_about(&three, "<@U0ALICE>");

    assert_eq!(counter(&server, "approved"), 3);
    assert_eq!(counter(&server, "denied"), 1);
    assert!(
        !server.dump_storage().contains("SECRETBOTTOKEN"),
        "the bot token is sealed at rest"
    );
}

#[test]
fn slack_clicks_that_do_not_check_out_change_nothing() {
    let slack = FakeSlack::start();
    let (server, _dir) = world(&slack);
    server.token("carol", "dev");
    let id = alice_requests(&server, "slack-two", "nothing may change");
    slack.message_about(&id, "waiting for approval");
    let before = snapshot(&server, &id);

    // Not signed by Slack: missing headers, another secret, a stale or
    // future time, a body changed after signing.
    let body = click("U0BOB", "hallpass.approve", &id, &slack.response_url("never"));
    let at = now();
    let wrong = signature("another-apps-signing-secret-0000", at, &body);
    let mut altered = body.clone();
    altered.extend_from_slice(b"&x=1");
    for (what, sent, timestamp, signed) in [
        ("no headers", &body, None, None),
        ("no timestamp", &body, None, Some(signature(SIGNING_SECRET, at, &body))),
        ("another secret", &body, Some(at), Some(wrong)),
        (
            "stale",
            &body,
            Some(at - 600),
            Some(signature(SIGNING_SECRET, at - 600, &body)),
        ),
        (
            "from the future",
            &body,
            Some(at + 600),
            Some(signature(SIGNING_SECRET, at + 600, &body)),
        ),
        (
            "altered body",
            &altered,
            Some(at),
            Some(signature(SIGNING_SECRET, at, &body)),
        ),
    ] {
        let (status, answer) = post_signed(&server, sent, timestamp, signed.as_deref());
        assert_eq!(status, 401, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_signature", "{what}: {answer}");
    }
    assert_eq!(
        snapshot(&server, &id),
        before,
        "a call not signed by Slack changed something"
    );

    // Signed, but the Slack user is nobody Hallpass knows, or has no token.
    let (status, answer) = post_click(
        &server,
        &click("U0NOBODY", "hallpass.approve", &id, &slack.response_url("nobody")),
    );
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("not mapped"),
        "{answer}"
    );
    let told = slack.response("nobody");
    assert_eq!(told["response_type"], "ephemeral", "{told}");
    assert!(
        told["text"].as_str().unwrap().contains("U0NOBODY is not mapped"),
        "{told}"
    );
    let (status, answer) = post_click(
        &server,
        &click("U0DAVE", "hallpass.approve", &id, &slack.response_url("dave")),
    );
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no live API token"),
        "{answer}"
    );

    // Mapped principals the approval rules refuse: carol approves stage 2,
    // not the open stage 1; alice may not approve her own request.
    for (user, label, why) in [
        ("U0CAROL", "carol", "carol may not approve request"),
        ("U0ALICE", "alice", "cannot approve your own request"),
    ] {
        let (status, answer) = post_click(
            &server,
            &click(user, "hallpass.approve", &id, &slack.response_url(label)),
        );
        assert_eq!(status, 200, "{answer}");
        let told = slack.response(label);
        assert_eq!(told["response_type"], "ephemeral", "{told}");
        assert_eq!(
            told["replace_original"], false,
            "the approvers keep their buttons: {told}"
        );
        assert!(told["text"].as_str().unwrap().contains(why), "{told}");
    }

    // A locked principal decides nothing, even with a signed click.
    server.json(&server.admin, &["lock", "carol", "--reason", "slack e2e"]);
    let (status, answer) = post_click(
        &server,
        &click("U0CAROL", "hallpass.approve", &id, &slack.response_url("locked")),
    );
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "locked", "{answer}");
    let before = snapshot(&server, &id);

    // A signed click whose response_url points elsewhere is refused.
    let (status, answer) = post_click(
        &server,
        &click("U0BOB", "hallpass.approve", &id, "https://evil.example/respond"),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_input", "{answer}");
    // Signed, but not a click: refused as a form of the wrong shape; a
    // click on some other app's button is taken and ignored.
    let (status, answer) = post_click(&server, b"payload=%7Bnot-json");
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("invalid_form")),
        "{answer}"
    );
    let (status, answer) = post_click(&server, &click("U0BOB", "other.app", &id, &slack.response_url("other")));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(snapshot(&server, &id), before);

    // A valid click works once; the same signed call again is a replay.
    let deny = click("U0BOB", "hallpass.deny", &id, &slack.response_url("deny"));
    let at = now();
    let signed = signature(SIGNING_SECRET, at, &deny);
    assert_eq!(post_signed(&server, &deny, Some(at), Some(&signed)).0, 200);
    slack.response("deny");
    server.wait_state(&server.admin, &id, "denied", Duration::from_secs(10));
    let after_deny = snapshot(&server, &id);
    let (status, answer) = post_signed(&server, &deny, Some(at), Some(&signed));
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("replay"),
        "{answer}"
    );
    assert_eq!(snapshot(&server, &id), after_deny, "a replay changed something");

    assert!(
        counter(&server, "rejected") >= 7,
        "every unsigned call and the replay are counted"
    );
    assert!(counter(&server, "refused") >= 5);
    assert_eq!((counter(&server, "invalid"), counter(&server, "ignored")), (2, 1));
    assert_eq!(counter(&server, "approved"), 0);
    assert!(
        !server.logs().contains(SIGNING_SECRET),
        "the signing secret is never logged"
    );
}

/// One signed click sent by 50 callers at once (a replay raced against the
/// original) decides once: one answer accepts it, every other is refused,
/// and the audit log holds one approval.
#[test]
fn a_click_raced_by_fifty_replays_decides_once() {
    let slack = FakeSlack::start();
    let (server, _dir) = world(&slack);
    let id = alice_requests(&server, "slack-one", "INC-50");
    let approve = click("U0BOB", "hallpass.approve", &id, &slack.response_url("race"));
    let at = now();
    let signed = signature(SIGNING_SECRET, at, &approve);
    // Each caller from an address of its own in 127/8: refused signatures
    // count against their address, and 49 from one would lock it out.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..50u8)
            .map(|i| {
                let (approve, signed, addr) = (&approve, &signed, &server.addr);
                scope.spawn(move || post_from(i + 10, addr, approve, at, signed))
            })
            .collect();
        callers.into_iter().map(|c| c.join().expect("caller")).collect()
    });
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(accepted, 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 49, "{statuses:?}");
    server.wait_state(&server.admin, &id, "active", Duration::from_secs(10));
    let events = server.json(&server.admin, &["audit", "list", "--request", &id]);
    let approvals = events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "request.approved")
        .count();
    assert_eq!(approvals, 1);
}

/// POSTs a signed click from 127.0.0.`octet`; returns the status.
fn post_from(octet: u8, addr: &str, body: &[u8], at: i64, signature: &str) -> u16 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        hallpass_client::install_tls_crypto_provider();
        let client = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, octet]))
            .build()
            .expect("client");
        let response = client
            .post(format!("{addr}{INTERACTIONS}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", at.to_string())
            .header("x-slack-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .expect("http request");
        response.status().as_u16()
    })
}
