//! Decisions are checked again when they take effect, through the service
//! layer on a controllable clock: a scheduled request is decided again by
//! the policies and the role as they are at its start; approval and
//! activation check the role as it is then (deleted: withdrawn; requester
//! no longer allowed: refused; maximum lowered: the grant is capped); an
//! extension's approval fits it to the role as it is then; a grant's
//! extensions stay within the role's total duration; and locks stop a
//! principal at once. Every test runs on SQLite and on PostgreSQL.

#[macro_use]
mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use hallpass_api::{self as api, AuditKind, ConfigKind, ErrorCode, RequestOutcome, RequestState};
use hallpass_core::ManualClock;
use hallpass_server::app::audit::AuditQuery;
use hallpass_server::app::{App, AppResult, Caller};
use hallpass_server::testing::caller;
use serde_json::json;
use support::Kind;

struct Harness {
    app: App,
    clock: Arc<ManualClock>,
    admin: Caller,
    _held: support::TestApp,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0)
        .single()
        .expect("valid time")
}

const CONFIG: &str = r#"{
  "targets": [{"name": "pg", "type": "jwt", "config": {"audience": "pg"}}],
  "roles": [
    {"name": "db", "target": "pg", "max_duration": "4h", "max_total_duration": "5h",
     "requestable_by": ["group:dev"], "approval": {"approvers": ["group:leads"]},
     "extension_requires_approval": false},
    {"name": "self", "target": "pg", "max_duration": "4h", "requestable_by": ["group:dev"], "auto_approve": true}
  ]
}"#;

async fn harness(kind: Kind) -> Harness {
    let held = support::app(kind, t0(), Vec::new());
    let admin = caller("admin", &["admins"]);
    let config: api::ApplyRequest = serde_json::from_str(CONFIG).expect("config");
    held.app.apply(&admin, config).await.expect("apply");
    Harness {
        app: held.app.clone(),
        clock: held.clock.clone(),
        admin,
        _held: held,
    }
}

fn alice() -> Caller {
    caller("alice", &["dev"])
}

fn ask(role: &str, duration: &str, start: Option<DateTime<Utc>>) -> api::CreateRequest {
    api::CreateRequest {
        role: role.into(),
        duration: Some(duration.into()),
        reason: "INC-7".into(),
        ticket: None,
        emergency: false,
        scheduled_start: start,
        ssh_public_key: None,
        plan: None,
    }
}

impl Harness {
    /// A token the admin makes for `principal` in `groups`.
    async fn token(&self, principal: &str, groups: &[&str]) -> AppResult<api::CreatedToken> {
        let body = api::CreateToken {
            principal: principal.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ttl: None,
        };
        self.app.create_token(&self.admin, body).await
    }

    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
        hallpass_server::scheduler::drain_due(&self.app)
            .await
            .expect("due work");
    }

    /// Alice's new request, as recorded.
    async fn alice_asks(&self, body: api::CreateRequest) -> api::AccessRequest {
        self.app.create_request(&alice(), body).await.expect("request").request
    }

    async fn get(&self, id: &str) -> api::AccessRequest {
        self.app.get_request(&self.admin, id.to_string()).await.expect("get").0
    }

    async fn events(&self, id: &str) -> Vec<hallpass_api::AuditEvent> {
        let query = AuditQuery {
            since: 0,
            request: Some(id.to_string()),
            limit: 1000,
        };
        self.app.audit_page(&self.admin, query).await.expect("audit")
    }

    async fn role(&self, name: &str, edit: impl FnOnce(&mut api::RoleSpec)) {
        let mut spec = self
            .app
            .get_role(&self.admin, name.into())
            .await
            .expect("role")
            .to_spec();
        edit(&mut spec);
        self.app.put_role(&self.admin, spec).await.expect("put role");
    }

    async fn policy(&self, source: &str) {
        let spec = api::PolicySpec {
            name: "guard".into(),
            source: source.into(),
        };
        self.app.put_policy(&self.admin, spec).await.expect("policy");
    }
}

async fn a_scheduled_request_is_decided_again_by_the_policies_at_its_start(kind: Kind) {
    let h = harness(kind).await;
    let start = t0() + Duration::hours(2);
    let scheduled = h.alice_asks(ask("self", "30m", Some(start))).await;
    assert_eq!(scheduled.state, RequestState::Scheduled);
    // Policies that arrive before the start decide it then.
    h.policy("package hallpass.request\nimport rego.v1\ndeny contains \"change freeze from 10:00\" if input.context.hour >= 10\n")
        .await;
    h.advance(Duration::hours(2)).await;
    let ended = h.get(&scheduled.id).await;
    assert_eq!(ended.state, RequestState::Denied);
    let decision = ended.decision.expect("decision");
    assert_eq!(decision.by, "policy");
    assert_eq!(decision.comment.as_deref(), Some("change freeze from 10:00"));
    assert_eq!(ended.activated_at, None, "nothing was issued");
    let kinds: Vec<String> = h.events(&scheduled.id).await.into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["request.created", "request.denied"]);
}

async fn a_scheduled_request_the_policies_still_allow_starts_on_time(kind: Kind) {
    let h = harness(kind).await;
    h.policy("package hallpass.request\nimport rego.v1\ndeny contains \"weekends only\" if input.context.weekday == \"Sun\"\n")
        .await;
    let start = t0() + Duration::hours(1);
    let scheduled = h.alice_asks(ask("self", "30m", Some(start))).await;
    h.advance(Duration::hours(1)).await;
    let active = h.get(&scheduled.id).await;
    assert_eq!(active.state, RequestState::Active);
    assert_eq!(active.activated_at, Some(start));
}

/// Alice's self-service request for `duration`, starting two hours from now.
async fn scheduled_self_request(h: &Harness, duration: &str) -> api::AccessRequest {
    let scheduled = h
        .alice_asks(ask("self", duration, Some(t0() + Duration::hours(2))))
        .await;
    assert_eq!(scheduled.state, RequestState::Scheduled);
    scheduled
}

/// Checks that request `id` was ended by Hallpass at its start, in `state`
/// with the audit event `kind`, and nothing was issued; returns the reason
/// (the decision and the event record the same) and the event.
async fn ended_at_start(
    h: &Harness,
    id: &str,
    state: RequestState,
    kind: AuditKind,
) -> (String, hallpass_api::AuditEvent) {
    let ended = h.get(id).await;
    assert_eq!(ended.state, state);
    assert_eq!(
        (ended.activated_at, ended.credential),
        (None, None),
        "nothing was issued"
    );
    let decision = ended.decision.expect("a decision");
    assert_eq!(decision.by, "hallpass");
    let reason = decision.comment.unwrap_or_default();
    let mut events = h.events(id).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["request.created", kind.as_str()]);
    let event = events.pop().expect("the ending event");
    assert_eq!(event.data["reason"], json!(reason), "the event records why");
    (reason, event)
}

async fn a_scheduled_request_whose_role_was_deleted_is_withdrawn_at_its_start(kind: Kind) {
    let h = harness(kind).await;
    let scheduled = scheduled_self_request(&h, "30m").await;
    h.app
        .delete_config(&h.admin, ConfigKind::Role, "self".into())
        .await
        .expect("delete role");
    h.advance(Duration::hours(2)).await;
    let (reason, _) = ended_at_start(&h, &scheduled.id, RequestState::Cancelled, AuditKind::RequestCancelled).await;
    assert!(reason.contains("was deleted before the start"), "{reason}");
}

async fn a_requester_removed_from_the_role_is_refused_at_the_start(kind: Kind) {
    let h = harness(kind).await;
    let scheduled = scheduled_self_request(&h, "30m").await;
    h.role("self", |role| role.requestable_by = vec!["group:sre".into()])
        .await;
    h.advance(Duration::hours(2)).await;
    let (reason, event) = ended_at_start(&h, &scheduled.id, RequestState::Denied, AuditKind::RequestDenied).await;
    assert!(reason.contains("alice may no longer request role \"self\""), "{reason}");
    assert_eq!(event.data["at_start"], json!(true));
}

async fn a_lowered_maximum_caps_a_scheduled_grant_at_its_start(kind: Kind) {
    let h = harness(kind).await;
    let scheduled = scheduled_self_request(&h, "3h").await;
    h.role("self", |role| {
        role.max_duration = "1h".into();
        role.default_duration = Some("1h".into());
    })
    .await;
    h.advance(Duration::hours(2)).await;
    let active = h.get(&scheduled.id).await;
    assert_eq!(active.activated_at, Some(t0() + Duration::hours(2)));
    capped_from_3h_to_1h(&h, &active).await;
}

async fn approving_a_request_whose_role_was_deleted_withdraws_it(kind: Kind) {
    let h = harness(kind).await;
    let pending = h.alice_asks(ask("db", "1h", None)).await;
    h.app
        .delete_config(&h.admin, ConfigKind::Role, "db".into())
        .await
        .expect("delete role");
    let error = h
        .app
        .approve(&caller("lee", &["leads"]), pending.id.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::NoLongerAllowed, "{}", error.message);
    assert!(error.message.contains("was deleted"), "{}", error.message);
    let after = h.get(&pending.id).await;
    assert_eq!(after.state, RequestState::Cancelled);
    assert!(
        after
            .decision
            .and_then(|d| d.comment)
            .unwrap_or_default()
            .contains("deleted")
    );
    assert_eq!(after.activated_at, None);
}

async fn a_requester_removed_from_the_role_is_refused_at_approval(kind: Kind) {
    let h = harness(kind).await;
    let pending = h.alice_asks(ask("db", "1h", None)).await;
    h.role("db", |role| role.requestable_by = vec!["group:sre".into()])
        .await;
    let error = h
        .app
        .approve(&caller("lee", &["leads"]), pending.id.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::NoLongerAllowed);
    let after = h.get(&pending.id).await;
    assert_eq!(after.state, RequestState::Denied);
    assert!(
        after
            .decision
            .and_then(|d| d.comment)
            .unwrap_or_default()
            .contains("may no longer request"),
        "the reason is recorded"
    );
}

async fn a_lowered_maximum_caps_the_grant_when_it_starts(kind: Kind) {
    let h = harness(kind).await;
    let pending = h.alice_asks(ask("db", "3h", None)).await;
    h.role("db", |role| {
        role.max_duration = "1h".into();
        role.default_duration = Some("1h".into());
    })
    .await;
    let active = h
        .app
        .approve(&caller("lee", &["leads"]), pending.id.clone(), None)
        .await
        .expect("approve");
    capped_from_3h_to_1h(&h, &active).await;
}

/// Checks that `grant`, asked for 3h, was activated for the 1h the role now
/// allows, and that its activation event records the cap.
async fn capped_from_3h_to_1h(h: &Harness, grant: &api::AccessRequest) {
    assert_eq!(grant.state, RequestState::Active);
    assert_eq!(grant.duration_seconds, 3600);
    assert_eq!(grant.capped_from_seconds, Some(3 * 3600));
    assert_eq!(grant.expires_at, grant.activated_at.map(|at| at + Duration::hours(1)));
    let activated = h
        .events(&grant.id)
        .await
        .into_iter()
        .find(|e| e.kind == AuditKind::GrantActivated.as_str())
        .expect("activation event");
    assert_eq!(activated.data["duration_seconds"], json!(3600));
    assert_eq!(
        activated.data["capped_from_seconds"],
        json!(3 * 3600),
        "the cap is recorded"
    );
}

async fn extensions_stay_within_the_roles_total_duration(kind: Kind) {
    let h = harness(kind).await;
    let pending = h.alice_asks(ask("db", "4h", None)).await;
    h.app
        .approve(&caller("lee", &["leads"]), pending.id.clone(), None)
        .await
        .expect("approve");
    let more = |by: &str| api::ExtendBody {
        by: by.into(),
        reason: "still on it".into(),
        ticket: None,
    };
    // 4h granted, total 5h: one more hour, not two, self-service or not.
    let error = h
        .app
        .extend(&alice(), pending.id.clone(), more("2h"))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::TotalDurationAboveMax);
    assert!(error.message.contains("ask for 1h or less"), "{}", error.message);
    let extended = h
        .app
        .extend(&alice(), pending.id.clone(), more("1h"))
        .await
        .expect("extend");
    assert_eq!(
        extended.expires_at,
        extended.activated_at.map(|at| at + Duration::hours(5))
    );
    let error = h
        .app
        .extend(&alice(), pending.id.clone(), more("1m"))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::TotalDurationAboveMax);
    // Asking for the role again while holding it is an extension too: two
    // hours in, four more hours would end past the total.
    h.advance(Duration::hours(2)).await;
    let again = h.app.create_request(&alice(), ask("db", "4h", None)).await.unwrap_err();
    assert_eq!(again.code, ErrorCode::TotalDurationAboveMax);
    let held = h.get(&pending.id).await;
    assert_eq!(held.extensions.len(), 1, "refused extensions change nothing");
}

async fn an_extension_is_fitted_to_the_role_as_it_is_when_approved(kind: Kind) {
    let h = harness(kind).await;
    h.role("db", |role| role.extension_requires_approval = true).await;
    let lee = caller("lee", &["leads"]);
    let id = h.alice_asks(ask("db", "1h", None)).await.id;
    h.app.approve(&lee, id.clone(), None).await.expect("approve");
    let more = |by: &str| api::ExtendBody {
        by: by.into(),
        reason: "still on it".into(),
        ticket: None,
    };

    // The maximum was lowered while the extension waited: it is shortened.
    h.app
        .extend(&alice(), id.clone(), more("2h"))
        .await
        .expect("ask for 2h more");
    h.role("db", |role| {
        role.max_duration = "30m".into();
        role.default_duration = Some("30m".into());
    })
    .await;
    let extended = h.app.approve(&lee, id.clone(), None).await.expect("approve it");
    assert_eq!(
        extended.expires_at,
        extended.activated_at.map(|at| at + Duration::minutes(90))
    );
    let event = h
        .events(&id)
        .await
        .into_iter()
        .rfind(|e| e.kind == AuditKind::GrantExtended.as_str())
        .expect("grant.extended");
    assert_eq!(event.data["by_seconds"], json!(1800));
    assert_eq!(event.data["capped_from_seconds"], json!(7200), "the cap is recorded");

    // The requester left the role's groups: the extension is denied.
    h.app
        .extend(&alice(), id.clone(), more("30m"))
        .await
        .expect("ask again");
    h.role("db", |role| role.requestable_by = vec!["group:sre".into()])
        .await;
    let error = h.app.approve(&lee, id.clone(), None).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::NoLongerAllowed, "{}", error.message);
    assert!(
        error.message.contains("extension 2 of grant") && error.message.contains("may no longer request"),
        "{}",
        error.message
    );
    let after = h.get(&id).await;
    assert_eq!(after.extensions[1].state, api::ExtensionState::Denied);
    assert_eq!(after.expires_at, extended.expires_at, "nothing was added");

    // The total was lowered to what the grant already had.
    h.role("db", |role| role.requestable_by = vec!["group:dev".into()])
        .await;
    h.app
        .extend(&alice(), id.clone(), more("30m"))
        .await
        .expect("ask a third time");
    h.role("db", |role| role.max_total_duration = Some("90m".into())).await;
    let error = h.app.approve(&lee, id.clone(), None).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::NoLongerAllowed);
    assert!(error.message.contains("max_total_duration"), "{}", error.message);
    let after = h.get(&id).await;
    assert_eq!(after.expires_at, extended.expires_at);
    let denied = h
        .events(&id)
        .await
        .into_iter()
        .rfind(|e| e.kind == AuditKind::GrantExtensionDenied.as_str())
        .expect("grant.extension_denied");
    assert!(
        denied.data["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("max_total_duration")
    );
}

async fn policies_get_the_real_grant_count_however_they_read_it(kind: Kind) {
    let h = harness(kind).await;
    // Names the field without writing `active_grants`: the server cannot
    // tell from the text that the count is read, and must still pass it.
    h.policy(
        "package hallpass.request\n\ndeny contains \"one grant at a time\" if {\n  object.get(input.context, concat(\"_\", [\"active\", \"grants\"]), 0) >= 1\n}\n",
    )
    .await;
    let first = h
        .app
        .create_request(&alice(), ask("self", "30m", None))
        .await
        .expect("first");
    assert_eq!(first.request.state, RequestState::Active);
    h.role("db", |role| {
        role.approval = None;
        role.auto_approve = true;
    })
    .await;
    let second = h
        .app
        .create_request(&alice(), ask("db", "30m", None))
        .await
        .expect("second");
    assert_eq!(
        second.request.state,
        RequestState::Denied,
        "the policy saw the grant alice holds"
    );
}

async fn asking_again_returns_the_open_request_instead_of_a_second(kind: Kind) {
    let h = harness(kind).await;
    let first = h
        .app
        .create_request(&alice(), ask("db", "1h", None))
        .await
        .expect("first");
    assert_eq!(first.outcome, RequestOutcome::Created);
    let second = h
        .app
        .create_request(&alice(), ask("db", "2h", None))
        .await
        .expect("second");
    assert_eq!(second.outcome, RequestOutcome::ExistingRequest);
    assert_eq!(second.request.id, first.request.id);
    assert_eq!(second.request.duration_seconds, 3600, "the open request is unchanged");
    let later = h
        .app
        .create_request(&alice(), ask("db", "1h", Some(t0() + Duration::hours(3))))
        .await
        .unwrap_err();
    assert_eq!(later.code, ErrorCode::AlreadyOpen);
    assert!(later.message.contains(&first.request.id), "{}", later.message);
}

async fn a_lock_stops_a_principal_at_once_and_until_unlocked(kind: Kind) {
    let h = harness(kind).await;
    let token = h.token("alice", &["dev"]).await.expect("token");
    let alice = h.app.authenticate(&token.token, None).await.expect("alice works");
    let pending = h
        .app
        .create_request(&alice, ask("db", "1h", None))
        .await
        .expect("pending")
        .request;
    let active = h
        .app
        .create_request(&alice, ask("self", "1h", None))
        .await
        .expect("grant")
        .request;
    assert_eq!(active.state, RequestState::Active);

    let locked = h
        .app
        .lock_principal(&h.admin, "alice".into(), "laptop stolen".into())
        .await
        .expect("lock");
    assert_eq!(locked.tokens_revoked, std::slice::from_ref(&token.id));
    assert!(locked.requests_ended.contains(&pending.id) && locked.requests_ended.contains(&active.id));
    assert!(locked.revoke_failed.is_empty());
    let refused = h.app.authenticate(&token.token, None).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::InvalidToken);
    assert_eq!(h.get(&pending.id).await.state, RequestState::Cancelled);
    let revoked = h.get(&active.id).await;
    assert_eq!(revoked.state, RequestState::Revoked);
    assert_eq!(revoked.ended_by.map(|d| d.by).as_deref(), Some("admin"));
    // No new tokens while locked; a request slipping in is refused too.
    let no_token = h.token("alice", &[]).await.unwrap_err();
    assert_eq!(no_token.code, ErrorCode::Locked);
    let slipped = h.app.create_request(&alice, ask("self", "1h", None)).await.unwrap_err();
    assert_eq!(slipped.code, ErrorCode::Locked);

    h.app.unlock_principal(&h.admin, "alice".into()).await.expect("unlock");
    let kinds: Vec<String> = h
        .app
        .audit_page(
            &h.admin,
            AuditQuery {
                since: 0,
                request: None,
                limit: 1000,
            },
        )
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&"principal.locked".to_string()) && kinds.contains(&"principal.unlocked".to_string()));
    h.token("alice", &["dev"]).await.expect("tokens again after unlock");
}

async fn the_last_admin_token_cannot_be_revoked_or_locked_away(kind: Kind) {
    let h = harness(kind).await;
    let root = h.token("root", &["admins"]).await.expect("admin token");
    let root_caller = h.app.authenticate(&root.token, None).await.expect("root");
    let error = h.app.revoke_token(&root_caller, root.id.clone()).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::LastAdminToken);
    let error = h
        .app
        .lock_principal(&root_caller, "root".into(), "oops".into())
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::LastAdminToken);
    let second = h
        .app
        .create_token(
            &root_caller,
            api::CreateToken {
                principal: "ops".into(),
                groups: vec!["admins".into()],
                ttl: None,
            },
        )
        .await
        .expect("second admin");
    h.app
        .revoke_token(&root_caller, root.id.clone())
        .await
        .expect("not the last any more");
    let ops = h.app.authenticate(&second.token, None).await.expect("ops");
    assert!(ops.is_admin());
}

on_both_backends!(
    a_scheduled_request_is_decided_again_by_the_policies_at_its_start,
    a_scheduled_request_the_policies_still_allow_starts_on_time,
    a_scheduled_request_whose_role_was_deleted_is_withdrawn_at_its_start,
    a_requester_removed_from_the_role_is_refused_at_the_start,
    a_lowered_maximum_caps_a_scheduled_grant_at_its_start,
    approving_a_request_whose_role_was_deleted_withdraws_it,
    a_requester_removed_from_the_role_is_refused_at_approval,
    a_lowered_maximum_caps_the_grant_when_it_starts,
    extensions_stay_within_the_roles_total_duration,
    an_extension_is_fitted_to_the_role_as_it_is_when_approved,
    policies_get_the_real_grant_count_however_they_read_it,
    asking_again_returns_the_open_request_instead_of_a_second,
    a_lock_stops_a_principal_at_once_and_until_unlocked,
    the_last_admin_token_cannot_be_revoked_or_locked_away,
);
