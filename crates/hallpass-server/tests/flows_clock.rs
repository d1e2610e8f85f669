//! Approval flows through the service layer on a controllable clock: stage
//! escalation and the pending TTL fire when (and only when) their time
//! comes, scheduled requests start at their start, and an extension still
//! pending at expiry lapses. "Ticks" stand in for the scheduler: claim what
//! is due in the store, then process it, exactly as the scheduler does.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use hallpass_api::{self as api, AuditKind, ErrorCode, ExtensionState, RequestState};
use hallpass_core::ManualClock;
use hallpass_server::app::App;
use hallpass_server::app::audit::AuditQuery;
use hallpass_server::testing::caller;
use serde_json::json;
use tokio::sync::mpsc;

struct Harness {
    app: App,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
    _deadlines: mpsc::UnboundedReceiver<(DateTime<Utc>, String)>,
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
    let (app, rx) = hallpass_server::testing::app_in(dir.path(), clock.clone(), Vec::new()).expect("app");
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
        hallpass_server::scheduler::drain_due(&self.app)
            .await
            .expect("due work");
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
            .request
    }

    async fn state(&self, id: &str) -> api::AccessRequest {
        self.app
            .get_request(&caller("admin", &["admins"]), id.to_string())
            .await
            .expect("get")
            .0
    }

    async fn kinds(&self, id: &str) -> Vec<AuditKind> {
        let query = AuditQuery {
            since: 0,
            request: Some(id.to_string()),
            limit: 1000,
        };
        let events = self
            .app
            .audit_page(&caller("admin", &["admins"]), query)
            .await
            .expect("audit");
        events
            .into_iter()
            .map(|e| e.kind.parse().unwrap_or(AuditKind::Other(e.kind)))
            .collect()
    }
}

#[tokio::test]
async fn escalation_and_pending_ttl_fire_at_their_time() {
    let h = harness().await;
    let request = h.request("prod-db", None).await;
    let sam = caller("sam", &["security"]);

    h.advance(Duration::minutes(14)).await;
    assert!(!h.kinds(&request.id).await.contains(&AuditKind::RequestEscalated));
    let early = h.app.approve(&sam, request.id.clone(), None).await.unwrap_err();
    assert_eq!(early.code, ErrorCode::Forbidden, "{}", early.message);

    h.advance(Duration::minutes(1)).await;
    let kinds = h.kinds(&request.id).await;
    assert_eq!(
        kinds.iter().filter(|k| **k == AuditKind::RequestEscalated).count(),
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
    assert_eq!(after.state, RequestState::Pending, "stage 2 still needs security");

    // Nothing more happens until the pending TTL, two hours after creation.
    h.advance(Duration::minutes(100)).await;
    assert_eq!(h.state(&request.id).await.state, RequestState::Pending);
    h.advance(Duration::minutes(5)).await;
    let timed_out = h.state(&request.id).await;
    assert_eq!(timed_out.state, RequestState::TimedOut);
    assert_eq!(timed_out.decision.as_ref().map(|d| d.by.as_str()), Some("hallpass"));
    let late = h
        .app
        .approve(&caller("sue", &["security"]), request.id.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(late.code, ErrorCode::WrongState);
}

#[tokio::test]
async fn scheduled_requests_start_at_their_time_and_count_from_activation() {
    let h = harness().await;
    let start = t0() + Duration::hours(1);
    let request = h.request("self", Some(start)).await;
    assert_eq!(request.state, RequestState::Scheduled);
    h.advance(Duration::minutes(59)).await;
    assert_eq!(h.state(&request.id).await.state, RequestState::Scheduled);
    h.advance(Duration::minutes(1)).await;
    let active = h.state(&request.id).await;
    assert_eq!(active.state, RequestState::Active);
    assert_eq!(active.activated_at, Some(start));
    assert_eq!(active.expires_at, Some(start + Duration::minutes(30)));
    assert_eq!(
        h.kinds(&request.id).await,
        [
            AuditKind::RequestCreated,
            AuditKind::RequestStartReached,
            AuditKind::GrantActivated
        ]
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
    assert_eq!(active.state, RequestState::Active);
    let body: api::ExtendBody = serde_json::from_value(json!({"by": "30m", "reason": "more"})).expect("body");
    let asked = h
        .app
        .extend(&caller("alice", &["dev"]), request.id.clone(), body)
        .await
        .expect("extend");
    assert_eq!(asked.extensions[0].state, ExtensionState::Pending);
    // The extension goes through the whole flow again: stage 1 first.
    h.app
        .approve(&lee, request.id.clone(), None)
        .await
        .expect("extension stage 1");

    h.advance(Duration::minutes(30)).await;
    let ended = h.state(&request.id).await;
    assert_eq!(ended.state, RequestState::Expired);
    assert_eq!(ended.extensions[0].state, ExtensionState::Lapsed);
    assert_eq!(ended.expires_at, active.expires_at, "never extended");
    let late = h.app.approve(&sam, request.id.clone(), None).await.unwrap_err();
    assert_eq!(late.code, ErrorCode::WrongState);
}
