//! The notification outbox on the service layer, on a manual clock, with a
//! real HTTP receiver: who is told what, signed; a receiver that keeps
//! failing is retried with growing waits and dead-lettered after the
//! budget, with its audit event; an admin's retry delivers it with the
//! same id; a notifier's secret is never stored in clear.

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{Duration, TimeZone, Utc};
use hallpass_api::{self as api, DeliveryState, NotificationTopic as Topic};
use hallpass_server::app::outbox::{MAX_ATTEMPTS, backoff};
use hallpass_server::app::{App, ErrorKind};
use hallpass_server::testing::caller;
use serde_json::json;
use support::Kind;

const KEY_BYTES: [u8; 32] = [42; 32];

fn signing_secret() -> String {
    format!("whsec_{}", STANDARD.encode(KEY_BYTES))
}

/// What the receiver got: id, whether the signature checked out, body.
#[derive(Clone, Default)]
struct Received {
    calls: Arc<Mutex<Vec<(String, bool, api::Notification)>>>,
    failing: Arc<Mutex<bool>>,
}

async fn receive(State(state): State<Received>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let key = hmac::Key::new(hmac::HMAC_SHA256, &KEY_BYTES);
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&body);
    let expected = format!("v1,{}", STANDARD.encode(hmac::sign(&key, &signed).as_ref()));
    let valid = header("webhook-signature") == expected;
    let notification: api::Notification = serde_json::from_slice(&body).expect("a notification");
    state.calls.lock().unwrap().push((id, valid, notification));
    if *state.failing.lock().unwrap() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn receiver() -> (String, Received) {
    let state = Received::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

fn config(url: &str) -> api::ApplyRequest {
    serde_json::from_value(json!({
        "targets": [{"name": "svc", "type": "jwt", "config": {"audience": "svc"}}],
        "roles": [{"name": "ops", "target": "svc", "max_duration": "4h", "requestable_by": ["group:dev"],
                   "approval": {"approvers": ["group:approvers"], "required": 1}}],
        "notifiers": [{"name": "hook", "type": "webhook", "config": {"url": url, "expiry_warning": "10m"},
                       "secrets": {"signing_secret": signing_secret()}}]
    }))
    .expect("config")
}

fn admin() -> hallpass_server::app::Caller {
    caller("root", &["admins"])
}

async fn request(app: &App, who: &str) -> String {
    let body: api::CreateRequest =
        serde_json::from_value(json!({"role": "ops", "duration": "1h", "reason": "INC-7 <img src=x>"})).unwrap();
    app.create_request(&caller(who, &["dev"]), body)
        .await
        .expect("request")
        .request
        .id
}

/// Dispatches, then sends everything due now; returns how many were sent.
async fn pump(app: &App) -> usize {
    while app.dispatch_notifications(500).await.expect("dispatch") > 0 {}
    let claimed = app.claim_deliveries(100).await.expect("claim");
    let count = claimed.len();
    for row in claimed {
        app.send_delivery(row).await.expect("send");
    }
    count
}

/// An app with the notifier configured to a fresh receiver (failing from
/// the start when `failing`), and alice's pending request.
async fn with_receiver(kind: Kind, failing: bool) -> (support::TestApp, Received, String) {
    let start = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).single().unwrap();
    let held = support::app(kind, start, vec![]);
    let (url, received) = receiver().await;
    *received.failing.lock().unwrap() = failing;
    held.app.init_outbox().await.unwrap();
    held.app.apply(&admin(), config(&url)).await.expect("apply");
    let id = request(&held.app, "alice").await;
    (held, received, id)
}

async fn who_is_told_what(kind: Kind) {
    let (held, received, id) = with_receiver(kind, false).await;
    let (app, clock) = (&held.app, &held.clock);
    assert_eq!(pump(app).await, 1);
    app.approve(&caller("bob", &["approvers"]), id.clone(), None)
        .await
        .expect("approve");
    // Approved, then active: two deliveries for alice, the second only
    // once the first went out (order per request).
    assert_eq!(pump(app).await, 1);
    assert_eq!(pump(app).await, 1);
    let calls = received.calls.lock().unwrap().clone();
    let topics: Vec<Topic> = calls.iter().map(|c| c.2.topic).collect();
    assert_eq!(
        topics,
        [Topic::RequestPending, Topic::RequestApproved, Topic::GrantActive]
    );
    assert!(
        calls.iter().all(|c| c.1),
        "every call is signed with the notifier's key"
    );
    assert_eq!(calls[0].2.audience, ["group:approvers"]);
    assert_eq!(calls[1].2.audience, ["user:alice"]);
    assert_eq!(calls[0].2.request.as_ref().unwrap().reason, "INC-7 <img src=x>");
    assert_eq!(calls[0].0, calls[0].2.id, "webhook-id is the notification's id");

    // The expiry warning waits for its time, 10 minutes before the end.
    assert_eq!(pump(app).await, 0);
    clock.advance(Duration::minutes(49));
    assert_eq!(pump(app).await, 0);
    clock.advance(Duration::minutes(1) + Duration::seconds(1));
    assert_eq!(pump(app).await, 1);
    let last = received.calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.2.topic, Topic::GrantExpiring);

    // A warning for a grant released before its time is dropped, not sent.
    let second = request(app, "carol").await;
    app.approve(&caller("bob", &["approvers"]), second.clone(), None)
        .await
        .unwrap();
    while pump(app).await > 0 {}
    let before = received.calls.lock().unwrap().len();
    app.release_grant(&caller("carol", &["dev"]), second)
        .await
        .expect("release");
    clock.advance(Duration::hours(1));
    assert_eq!(pump(app).await, 1, "the warning was claimed");
    assert_eq!(received.calls.lock().unwrap().len(), before, "and dropped unsent");
}

async fn dead_letters_after_the_budget_and_a_retry_delivers(kind: Kind) {
    let (held, received, id) = with_receiver(kind, true).await;
    let (app, clock) = (&held.app, &held.clock);
    for attempt in 1..=MAX_ATTEMPTS {
        assert_eq!(pump(app).await, 1, "attempt {attempt} is due");
        if attempt < MAX_ATTEMPTS {
            // Not again before its backoff.
            let wait = backoff(attempt);
            clock.advance(wait - Duration::milliseconds(1));
            assert_eq!(pump(app).await, 0, "attempt {} came before its backoff", attempt + 1);
            clock.advance(Duration::milliseconds(1));
        }
    }
    assert_eq!(
        backoff(MAX_ATTEMPTS - 1),
        Duration::minutes(5),
        "waits grow to 5 minutes"
    );
    clock.advance(Duration::hours(1));
    assert_eq!(pump(app).await, 0, "a dead delivery is not tried again");
    let calls = received.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), MAX_ATTEMPTS as usize);
    assert!(calls.iter().all(|c| c.0 == calls[0].0), "every attempt has the same id");

    let failed = app
        .failed_notifications(&caller("audrey", &["auditors"]), None)
        .await
        .unwrap();
    let [dead] = failed.items.as_slice() else {
        panic!("{failed:?}")
    };
    assert_eq!((dead.state, dead.attempts), (DeliveryState::Dead, MAX_ATTEMPTS));
    assert_eq!(dead.request_id.as_deref(), Some(id.as_str()));
    assert!(dead.last_error.as_deref().unwrap().contains("503"), "{dead:?}");
    let events = app
        .audit_page(
            &admin(),
            hallpass_server::app::audit::AuditQuery {
                since: 0,
                request: Some(id.clone()),
                limit: 1000,
            },
        )
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.kind == "notification.dead_lettered"));

    // Only admins send it again; others are refused and nothing changes.
    let refused = app
        .retry_notification(&caller("alice", &["dev"]), dead.id.clone())
        .await;
    assert_eq!(refused.unwrap_err().kind, ErrorKind::Forbidden);
    assert!(
        app.failed_notifications(&caller("alice", &["dev"]), None)
            .await
            .is_err()
    );
    *received.failing.lock().unwrap() = false;
    let revived = app.retry_notification(&admin(), dead.id.clone()).await.expect("retry");
    assert_eq!((revived.state, revived.attempts), (DeliveryState::Pending, 0));
    assert_eq!(pump(app).await, 1);
    let last = received.calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.0, dead.id, "the retry carries the same id");
    assert!(app.failed_notifications(&admin(), None).await.unwrap().items.is_empty());
    let again = app.retry_notification(&admin(), dead.id.clone()).await.unwrap_err();
    assert_eq!(again.kind, ErrorKind::Conflict, "{again:?}");
    let unknown = app.retry_notification(&admin(), "nope".into()).await.unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::NotFound);
}

async fn secrets_are_sealed_and_bad_notifiers_change_nothing(kind: Kind) {
    let start = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).single().unwrap();
    let held = support::app(kind, start, vec![]);
    let app = &held.app;
    let applied = app
        .apply(&admin(), config("https://hooks.example.com/x"))
        .await
        .expect("apply");
    let change = applied
        .changes
        .iter()
        .find(|c| c.kind == api::ConfigKind::Notifier)
        .unwrap();
    assert_eq!(change.secrets, ["signing_secret"]);
    let shown = app.get_notifier(&admin(), "hook".into()).await.unwrap();
    assert_eq!(shown.secrets.len(), 1);
    assert!(!serde_json::to_string(&shown).unwrap().contains(&signing_secret()));
    let dump = held.dump();
    assert!(!dump.contains(&signing_secret()), "the secret is stored in clear");
    assert!(!dump.contains(&STANDARD.encode(KEY_BYTES)));

    let mut bad = config("ftp://hooks.example.com/x");
    bad.roles.clear();
    let error = app.apply(&admin(), bad).await.unwrap_err();
    assert!(error.message.contains("http:// or https://"), "{}", error.message);
    let still = app.get_notifier(&admin(), "hook".into()).await.unwrap();
    assert_eq!(still.config["url"], "https://hooks.example.com/x");
    let by_user = app
        .apply(&caller("alice", &["dev"]), config("https://x.example.com/"))
        .await;
    assert_eq!(by_user.unwrap_err().kind, ErrorKind::Forbidden);

    app.delete_config(&admin(), api::ConfigKind::Notifier, "hook".into())
        .await
        .expect("delete");
    assert_eq!(
        app.get_notifier(&admin(), "hook".into()).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
}

on_both_backends!(
    who_is_told_what,
    dead_letters_after_the_budget_and_a_retry_delivers,
    secrets_are_sealed_and_bad_notifiers_change_nothing
);
