//! Approval flows through the service layer on a controllable clock: stage
//! escalation and the pending TTL fire when (and only when) their time
//! comes, scheduled requests start at their start, and an extension still
//! pending at expiry lapses. "Ticks" stand in for the scheduler: claim what
//! is due in the store, then process it, exactly as the scheduler does.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use hallpass_api as api;
use hallpass_core::{ManualClock, Principal};
use hallpass_providers::Registry;
use hallpass_providers::jwt::{JwtProvider, JwtSigner};
use hallpass_server::app::App;
use hallpass_server::auth::Caller;
use hallpass_store::Store;
use serde_json::json;
use tokio::sync::mpsc;

struct Harness {
    app: App,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
    _deadlines: mpsc::UnboundedReceiver<(DateTime<Utc>, String)>,
}

fn caller(name: &str, groups: &[&str]) -> Caller {
    Caller {
        principal: Principal {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        },
        token_id: format!("tok_{name}"),
        token_expires_at: None,
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
        .single()
        .expect("valid time")
}

const CONFIG: &str = r#"{
  "targets": [{"name": "pg", "type": "jwt", "config": {"audience": "pg"}}],
  "approval_flows": [{
    "name": "peer-then-security", "pending_ttl": "2h",
    "stages": [
      {"approvers": ["group:dev-leads"], "required": 1, "timeout": "15m", "escalate_to": ["group:security"]},
      {"approvers": ["group:security"], "required": 1}
    ]
  }],
  "roles": [
    {"name": "prod-db", "target": "pg", "max_duration": "4h", "requestable_by": ["group:dev"],
     "approval_flow": "peer-then-security"},
    {"name": "self", "target": "pg", "max_duration": "4h", "requestable_by": ["group:dev"], "auto_approve": true}
  ]
}"#;

async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(t0()));
    let store = Store::open_sqlite(dir.path(), clock.clone()).expect("store");
    let signer = Arc::new(JwtSigner::load_or_create(&dir.path().join("key"), "test".into()).expect("signer"));
    let registry = Registry::default().with(Arc::new(JwtProvider::new(signer.clone())));
    let (tx, rx) = mpsc::unbounded_channel();
    let app = App::new(store, registry, signer, clock.clone(), tx);
    let config: api::ApplyRequest = serde_json::from_str(CONFIG).expect("config");
    app.apply(&caller("admin", &["admins"]), config).await.expect("apply");
    Harness {
        app,
        clock,
        _dir: dir,
        _deadlines: rx,
    }
}

impl Harness {
    /// Moves time on and does what the scheduler would: claim what is due,
    /// process it.
    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
        for id in self.app.claim_due(100).await.expect("claim") {
            self.app.process_due(id).await.expect("process");
        }
    }

    async fn request(&self, role: &str, scheduled_start: Option<DateTime<Utc>>) -> api::AccessRequest {
        let body = api::CreateRequest {
            role: role.into(),
            duration: Some("30m".into()),
            reason: "INC-1".into(),
            ticket: None,
            emergency: false,
            scheduled_start,
        };
        self.app
            .create_request(&caller("alice", &["dev"]), body)
            .await
            .expect("request")
            .0
    }

    async fn state(&self, id: &str) -> api::AccessRequest {
        self.app.get_request(id.to_string()).await.expect("get").0
    }

    async fn kinds(&self, id: &str) -> Vec<String> {
        let events = self.app.audit_page(0, Some(id.to_string()), 1000).await.expect("audit");
        events.into_iter().map(|e| e.kind).collect()
    }
}

#[tokio::test]
async fn escalation_and_pending_ttl_fire_at_their_time() {
    let h = harness().await;
    let request = h.request("prod-db", None).await;
    let sam = caller("sam", &["security"]);

    h.advance(Duration::minutes(14)).await;
    assert!(!h.kinds(&request.id).await.contains(&"request.escalated".to_string()));
    let early = h.app.approve(&sam, request.id.clone(), None).await.unwrap_err();
    assert_eq!(early.code, "forbidden", "{}", early.message);

    h.advance(Duration::minutes(1)).await;
    let kinds = h.kinds(&request.id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "request.escalated").count(),
        1,
        "{kinds:?}"
    );
    let escalated = h.state(&request.id).await;
    let stage = &escalated.approval.as_ref().expect("flow").stages[0];
    assert!(stage.escalated);
    assert_eq!(stage.escalates_at, Some(t0() + Duration::minutes(15)));
    assert_eq!(stage.may_approve, vec!["group:dev-leads", "group:security"]);
    let after = h
        .app
        .approve(&sam, request.id.clone(), None)
        .await
        .expect("escalated approval");
    assert_eq!(after.state, "pending", "stage 2 still needs security");

    // Nothing more happens until the pending TTL, two hours after creation.
    h.advance(Duration::minutes(100)).await;
    assert_eq!(h.state(&request.id).await.state, "pending");
    h.advance(Duration::minutes(5)).await;
    let timed_out = h.state(&request.id).await;
    assert_eq!(timed_out.state, "timed_out");
    assert_eq!(timed_out.decision.as_ref().map(|d| d.by.as_str()), Some("hallpass"));
    let late = h
        .app
        .approve(&caller("sue", &["security"]), request.id.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(late.code, "wrong_state");
}

#[tokio::test]
async fn scheduled_requests_start_at_their_time_and_count_from_activation() {
    let h = harness().await;
    let start = t0() + Duration::hours(1);
    let request = h.request("self", Some(start)).await;
    assert_eq!(request.state, "scheduled");
    h.advance(Duration::minutes(59)).await;
    assert_eq!(h.state(&request.id).await.state, "scheduled");
    h.advance(Duration::minutes(1)).await;
    let active = h.state(&request.id).await;
    assert_eq!(active.state, "active");
    assert_eq!(active.activated_at, Some(start));
    assert_eq!(active.expires_at, Some(start + Duration::minutes(30)));
    assert_eq!(
        h.kinds(&request.id).await,
        ["request.created", "request.start_reached", "grant.activated"]
    );
}

#[tokio::test]
async fn an_extension_pending_at_expiry_lapses_and_cannot_be_approved_after() {
    let h = harness().await;
    let request = h.request("prod-db", None).await;
    let lee = caller("lee", &["dev-leads"]);
    let sam = caller("sam", &["security"]);
    h.app.approve(&lee, request.id.clone(), None).await.expect("stage 1");
    let active = h.app.approve(&sam, request.id.clone(), None).await.expect("stage 2");
    assert_eq!(active.state, "active");
    let body: api::ExtendBody = serde_json::from_value(json!({"by": "30m", "reason": "more"})).expect("body");
    let asked = h
        .app
        .extend(&caller("alice", &["dev"]), request.id.clone(), body)
        .await
        .expect("extend");
    assert_eq!(asked.extensions[0].state, "pending");
    // The extension goes through the whole flow again: stage 1 first.
    h.app
        .approve(&lee, request.id.clone(), None)
        .await
        .expect("extension stage 1");

    h.advance(Duration::minutes(30)).await;
    let ended = h.state(&request.id).await;
    assert_eq!(ended.state, "expired");
    assert_eq!(ended.extensions[0].state, "lapsed");
    assert_eq!(ended.expires_at, active.expires_at, "never extended");
    let late = h.app.approve(&sam, request.id.clone(), None).await.unwrap_err();
    assert_eq!(late.code, "wrong_state");
}
