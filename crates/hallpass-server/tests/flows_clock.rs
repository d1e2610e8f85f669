//! Approval flows through the service layer on a controllable clock: stage
//! escalation and the pending TTL fire when (and only when) their time
//! comes, scheduled requests start at their start, an extension still
//! pending at expiry lapses, and a request keeps the flow it was made with
//! whatever happens to the flow or the role after. "Ticks" stand in for the
//! scheduler: claim what is due in the store, then process it, exactly as
//! the scheduler does. Every test runs on SQLite and on PostgreSQL.

#[macro_use]
mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use hallpass_api::{self as api, AuditKind, ConfigKind, ErrorCode, ExtensionState, RequestState};
use hallpass_core::ManualClock;
use hallpass_server::app::App;
use hallpass_server::app::audit::AuditQuery;
use hallpass_server::testing::caller;
use serde_json::json;
use support::Kind;

struct Harness {
    app: App,
    clock: Arc<ManualClock>,
    _held: support::TestApp,
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

async fn harness(kind: Kind) -> Harness {
    let held = support::app(kind, t0(), Vec::new());
    let config: api::ApplyRequest = serde_json::from_str(CONFIG).expect("config");
    held.app
        .apply(&caller("admin", &["admins"]), config)
        .await
        .expect("apply");
    Harness {
        app: held.app.clone(),
        clock: held.clock.clone(),
        _held: held,
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
        self.request_as("alice", role, scheduled_start).await
    }

    /// A request by `requester`, a member of group `dev`.
    async fn request_as(
        &self,
        requester: &str,
        role: &str,
        scheduled_start: Option<DateTime<Utc>>,
    ) -> api::AccessRequest {
        let body = api::CreateRequest {
            role: role.into(),
            duration: Some("30m".into()),
            reason: "INC-1".into(),
            ticket: None,
            emergency: false,
            scheduled_start,
            ssh_public_key: None,
            plan: None,
        };
        self.app
            .create_request(&caller(requester, &["dev"]), body)
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

async fn escalation_and_pending_ttl_fire_at_their_time(kind: Kind) {
    let h = harness(kind).await;
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

async fn scheduled_requests_start_at_their_time_and_count_from_activation(kind: Kind) {
    let h = harness(kind).await;
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

async fn an_extension_pending_at_expiry_lapses_and_cannot_be_approved_after(kind: Kind) {
    let h = harness(kind).await;
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

/// Each stage's approvers and quorum, as the request holds them.
fn stages(request: &api::AccessRequest) -> Vec<(Vec<String>, u32)> {
    let flow = request.approval.as_ref().expect("an approval flow");
    flow.stages
        .iter()
        .map(|stage| (stage.approvers.clone(), stage.required))
        .collect()
}

fn subjects(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// The stages of `peer-then-security` as it is in [`CONFIG`].
fn peer_then_security() -> Vec<(Vec<String>, u32)> {
    vec![(subjects(&["group:dev-leads"]), 1), (subjects(&["group:security"]), 1)]
}

/// Approves `id` as `lee` of dev-leads, then as `sam` of security: the two
/// stages of [`peer_then_security`]. The request is active after.
async fn approve_both_stages(h: &Harness, id: &str) {
    let lee = caller("lee", &["dev-leads"]);
    let after_one = h.app.approve(&lee, id.into(), None).await.expect("stage 1");
    assert_eq!(after_one.state, RequestState::Pending, "the second stage is still open");
    let sam = caller("sam", &["security"]);
    let after_two = h.app.approve(&sam, id.into(), None).await.expect("stage 2");
    assert_eq!(after_two.state, RequestState::Active);
}

async fn a_pending_request_keeps_the_flow_it_was_made_with(kind: Kind) {
    let h = harness(kind).await;
    let old = h.request("prod-db", None).await;
    assert_eq!(stages(&old), peer_then_security());
    // One stage of two SREs instead, with a shorter pending TTL and no
    // escalation.
    let spec: api::ApprovalFlowSpec = serde_json::from_value(json!({
        "name": "peer-then-security", "pending_ttl": "30m",
        "stages": [{"approvers": ["group:sre"], "required": 2}]
    }))
    .expect("flow");
    h.app
        .put_flow(&caller("admin", &["admins"]), spec)
        .await
        .expect("change the flow");

    let new = h.request_as("bob", "prod-db", None).await;
    assert_eq!(
        stages(&new),
        [(subjects(&["group:sre"]), 2)],
        "a new request gets the new flow"
    );
    assert_eq!(new.pending_expires_at, Some(t0() + Duration::minutes(30)));
    // Not an approver of a request, not one who may see it: not found.
    let lee = caller("lee", &["dev-leads"]);
    let refused = h.app.approve(&lee, new.id.clone(), None).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::NotFound, "{}", refused.message);

    let kept = h.state(&old.id).await;
    assert_eq!(stages(&kept), peer_then_security());
    assert_eq!(kept.pending_expires_at, Some(t0() + Duration::hours(2)));
    let sid = caller("sid", &["sre"]);
    let refused = h.app.approve(&sid, old.id.clone(), None).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::NotFound, "{}", refused.message);

    // Past the new TTL: the new request times out; the old one escalated
    // at its own stage timeout and waits for its own TTL.
    h.advance(Duration::minutes(31)).await;
    assert_eq!(h.state(&new.id).await.state, RequestState::TimedOut);
    assert_eq!(h.state(&old.id).await.state, RequestState::Pending);
    assert!(h.kinds(&old.id).await.contains(&AuditKind::RequestEscalated));
    approve_both_stages(&h, &old.id).await;
}

async fn a_pending_request_keeps_its_flow_when_the_role_moves_and_the_flow_is_deleted(kind: Kind) {
    let h = harness(kind).await;
    let admin = caller("admin", &["admins"]);
    let old = h.request("prod-db", None).await;
    let mut role = h.app.get_role(&admin, "prod-db".into()).await.expect("role").to_spec();
    role.approval_flow = None;
    role.approval = Some(api::ApprovalSpec {
        approvers: subjects(&["group:sre"]),
        required: 2,
    });
    h.app.put_role(&admin, role).await.expect("move the role");
    h.app
        .delete_config(&admin, ConfigKind::ApprovalFlow, "peer-then-security".into())
        .await
        .expect("delete the flow");

    let new = h.request_as("bob", "prod-db", None).await;
    assert_eq!(stages(&new), [(subjects(&["group:sre"]), 2)]);
    assert_eq!(stages(&h.state(&old.id).await), peer_then_security());
    approve_both_stages(&h, &old.id).await;
}

on_both_backends!(
    escalation_and_pending_ttl_fire_at_their_time,
    scheduled_requests_start_at_their_time_and_count_from_activation,
    an_extension_pending_at_expiry_lapses_and_cannot_be_approved_after,
    a_pending_request_keeps_the_flow_it_was_made_with,
    a_pending_request_keeps_its_flow_when_the_role_moves_and_the_flow_is_deleted,
);
