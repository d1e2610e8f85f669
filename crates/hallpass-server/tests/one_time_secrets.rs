//! A credential's one-time part — the private key Hallpass makes for an
//! SSH grant — goes to exactly one fetch, however many ask at once, and
//! the audit log records that fetch, once. A grant on the requester's own
//! key has no such part.

#[macro_use]
mod support;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use hallpass_api::{self as api, RequestState};
use hallpass_providers::ssh::{CERTIFICATE_ENV, PRIVATE_KEY_ENV, SshProvider};
use hallpass_server::app::App;
use hallpass_server::app::audit::AuditQuery;
use hallpass_server::testing::caller;
use support::Kind;

const CONFIG: &str = r#"{
  "targets": [{"name": "web", "type": "ssh", "config": {}}],
  "roles": [{"name": "deploy", "target": "web", "max_duration": "4h", "requestable_by": ["group:dev"],
             "auto_approve": true, "grant": {"principals": ["deploy"]}}]
}"#;

const OWN_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7S1qwahl4eSf7YqVmEHm/0KgnxM32rh3xS9FFivltR bob@laptop";

/// How many fetch the credential at once.
const CALLERS: usize = 50;

async fn setup(kind: Kind) -> support::TestApp {
    let start = Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).single().expect("valid time");
    let held = support::app(kind, start, vec![Arc::new(SshProvider::new())]);
    let config: api::ApplyRequest = serde_json::from_str(CONFIG).expect("config");
    held.app
        .apply(&caller("admin", &["admins"]), config)
        .await
        .expect("apply");
    held
}

async fn active_grant(app: &App, who: &str, public_key: Option<&str>) -> String {
    let body = api::CreateRequest {
        role: "deploy".into(),
        duration: Some("1h".into()),
        reason: "deploy the fix".into(),
        ticket: None,
        emergency: false,
        scheduled_start: None,
        ssh_public_key: public_key.map(str::to_string),
        plan: None,
    };
    let created = app.create_request(&caller(who, &["dev"]), body).await.expect("request");
    assert_eq!(created.request.state, RequestState::Active, "{:?}", created.request);
    created.request.id
}

async fn delivered_events(app: &App, id: &str) -> Vec<api::AuditEvent> {
    let query = AuditQuery {
        since: 0,
        request: Some(id.to_string()),
        limit: 1000,
    };
    app.audit_page(&caller("admin", &["admins"]), query)
        .await
        .expect("audit")
        .into_iter()
        .filter(|event| event.kind == "grant.secret_delivered")
        .collect()
}

async fn the_private_key_goes_to_exactly_one_of_many_parallel_fetches(kind: Kind) {
    let held = setup(kind).await;
    let app = &held.app;
    let id = active_grant(app, "alice", None).await;

    let fetches: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (app, id) = (app.clone(), id.clone());
            tokio::spawn(async move { app.credentials(&caller("alice", &["dev"]), id).await })
        })
        .collect();
    let mut answers = Vec::new();
    for fetch in fetches {
        answers.push(fetch.await.expect("task").expect("credential"));
    }
    let (with_key, without): (Vec<_>, Vec<_>) = answers
        .into_iter()
        .partition(|credential| credential.env.contains_key(PRIVATE_KEY_ENV));
    assert_eq!(with_key.len(), 1, "the private key went to {} fetches", with_key.len());
    let first = &with_key[0];
    let one_time = first.one_time.as_ref().expect("one_time on the first fetch");
    assert!(one_time.included);
    assert_eq!(one_time.names, [PRIVATE_KEY_ENV]);
    assert!(first.env[PRIVATE_KEY_ENV].starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    for later in &without {
        let said = later.one_time.as_ref().expect("one_time on a later fetch");
        assert!(!said.included, "{said:?}");
        assert_eq!(said.delivered_at, one_time.delivered_at, "when it went out");
        // The certificate is not secret without its key: every fetch has it.
        assert_eq!(later.env[CERTIFICATE_ENV], first.env[CERTIFICATE_ENV]);
        assert_eq!(later.token, first.token);
    }

    let events = delivered_events(app, &id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].actor, "alice");
    assert_eq!(events[0].data["names"], serde_json::json!([PRIVATE_KEY_ENV]));
    let text = serde_json::to_string(&events[0]).expect("json");
    assert!(!text.contains("PRIVATE KEY-----"), "the event holds no key: {text}");

    // Later fetches, and the request itself, keep saying it went out.
    let again = app
        .credentials(&caller("alice", &["dev"]), id.clone())
        .await
        .expect("credential");
    assert!(!again.env.contains_key(PRIVATE_KEY_ENV));
    assert_eq!(delivered_events(app, &id).await.len(), 1);
    let (request, _) = app
        .get_request(&caller("alice", &["dev"]), id.clone())
        .await
        .expect("request");
    assert_eq!(request.state, RequestState::Active);
}

async fn a_grant_on_the_requesters_own_key_has_no_one_time_part(kind: Kind) {
    let held = setup(kind).await;
    let id = active_grant(&held.app, "bob", Some(OWN_KEY)).await;
    for _ in 0..2 {
        let credential = held
            .app
            .credentials(&caller("bob", &["dev"]), id.clone())
            .await
            .expect("credential");
        assert!(credential.one_time.is_none(), "{:?}", credential.one_time);
        assert!(!credential.env.contains_key(PRIVATE_KEY_ENV));
        assert!(credential.env.contains_key(CERTIFICATE_ENV));
    }
    assert!(delivered_events(&held.app, &id).await.is_empty());
}

async fn a_grant_that_ended_hands_out_nothing(kind: Kind) {
    let held = setup(kind).await;
    let app = &held.app;
    let id = active_grant(app, "carol", None).await;
    app.release_grant(&caller("carol", &["dev"]), id.clone())
        .await
        .expect("release");
    let refused = app
        .credentials(&caller("carol", &["dev"]), id.clone())
        .await
        .expect_err("an ended grant has no credential");
    assert_eq!(refused.code, api::ErrorCode::NotActive, "{}", refused.message);
    assert!(delivered_events(app, &id).await.is_empty());
}

on_both_backends!(
    the_private_key_goes_to_exactly_one_of_many_parallel_fetches,
    a_grant_on_the_requesters_own_key_has_no_one_time_part,
    a_grant_that_ended_hands_out_nothing,
);
