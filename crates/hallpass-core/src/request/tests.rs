//! Unit tests of the state machine on explicit times.

use super::*;
use crate::flow::{DEFAULT_PENDING_TTL_SECONDS, StageRules};
use crate::role::DEFAULT_TOTAL_DURATION_FACTOR;
use crate::text::TextField;
use chrono::{DateTime, Duration, TimeZone, Utc};

pub(super) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0)
        .single()
        .unwrap_or_default()
}

pub(super) fn principal(name: &str, groups: &[&str]) -> Principal {
    Principal {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

pub(super) fn subject(text: &str) -> Subject {
    text.parse().unwrap()
}

fn flow(required: u32) -> FlowRules {
    FlowRules::single_stage(vec![subject("group:approvers"), subject("user:carol")], required)
}

pub(super) fn role() -> RoleRules {
    RoleRules {
        name: "prod-db".into(),
        target: "pg".into(),
        default_duration_seconds: 3600,
        max_duration_seconds: 4 * 3600,
        requestable_by: vec![subject("group:dev")],
        approval: RoleApproval::Inline(flow(1)),
        max_total_duration_seconds: 4 * 3600 * DEFAULT_TOTAL_DURATION_FACTOR,
        emergency_access: true,
        extension_requires_approval: true,
    }
}

fn input() -> NewRequest {
    NewRequest {
        id: "r1".into(),
        duration_seconds: Some(1800),
        reason: "INC-1".into(),
        role_approvers: flow(1).all_approvers(),
        ..NewRequest::default()
    }
}

fn open_with(input: NewRequest, route: Route) -> RequestRecord {
    RequestRecord::open(input, &role(), route, &principal("alice", &["dev", "approvers"]), now())
        .unwrap()
        .0
}

fn open(required: u32) -> RequestRecord {
    let route = if required == 0 {
        Route::Approve
    } else {
        Route::Flow(flow(required))
    };
    open_with(input(), route)
}

fn bob() -> Principal {
    principal("bob", &["approvers"])
}

fn active(required_for_extension: u32) -> RequestRecord {
    let mut record = open(0);
    record.activate(serde_json::json!({}), 4 * 3600, now()).unwrap();
    if required_for_extension > 0 {
        let ext = NewExtension {
            by_seconds: 600,
            reason: "more".into(),
            ..NewExtension::default()
        };
        let alice = record.requester.clone();
        record
            .request_extension(&alice, ext, &role(), Route::Flow(flow(required_for_extension)), now())
            .unwrap();
    }
    record
}

#[test]
fn auto_approved_roles_skip_pending() {
    let record = open(0);
    assert_eq!(record.state, RequestState::Approved);
    assert!(record.auto_approved);
    assert_eq!(record.approval, None);
}

#[test]
fn quorum_of_distinct_approvers_approves() {
    let mut record = open(2);
    record.approve(&bob(), None, Some(&role()), now()).unwrap();
    assert_eq!(record.state, RequestState::Pending);
    assert_eq!(record.approvals_missing(), 1);
    assert!(matches!(
        record.approve(&bob(), None, Some(&role()), now()),
        Err(RuleError::AlreadyApproved { .. })
    ));
    record
        .approve(&principal("carol", &[]), Some("ok".into()), Some(&role()), now())
        .unwrap();
    assert_eq!(record.state, RequestState::Approved);
}

#[test]
fn requester_never_approves_own_request_even_as_approver() {
    let mut record = open(1);
    let alice = principal("alice", &["dev", "approvers"]);
    assert!(matches!(
        record.approve(&alice, None, Some(&role()), now()),
        Err(RuleError::SelfApproval(_))
    ));
    assert_eq!(record.state, RequestState::Pending);
    assert_eq!(record.approvals_missing(), 1);
}

#[test]
fn outsiders_cannot_approve_or_deny() {
    let mut record = open(1);
    let mallory = principal("mallory", &["dev"]);
    assert!(matches!(
        record.approve(&mallory, None, Some(&role()), now()),
        Err(RuleError::NotAnApprover { .. })
    ));
    assert!(matches!(
        record.deny(&mallory, None, now()),
        Err(RuleError::NotAnApprover { .. })
    ));
    assert_eq!(record.state, RequestState::Pending);
    // Admins may deny anything pending.
    record.deny(&principal("root", &["admins"]), None, now()).unwrap();
    assert_eq!(record.state, RequestState::Denied);
}

#[test]
fn pending_requests_are_due_at_their_ttl_and_approved_ones_at_once() {
    let mut record = open(1);
    let ttl = now() + Duration::seconds(DEFAULT_PENDING_TTL_SECONDS as i64);
    assert_eq!(record.pending_expires_at, Some(ttl));
    assert_eq!(record.next_deadline(), Some(ttl), "the pending TTL is a deadline");
    record.approve(&bob(), None, Some(&role()), now()).unwrap();
    assert_eq!(record.next_deadline(), Some(now()), "credentials must be issued now");
    record.deny(&bob(), None, now()).unwrap_err();
}

#[test]
fn pending_ttl_times_the_request_out_and_stops_late_approvals() {
    let mut record = open(1);
    let ttl = record.pending_expires_at.unwrap();
    assert!(
        record.time_out("hallpass", ttl - Duration::seconds(1)).is_err(),
        "not before the TTL"
    );
    // An approval that arrives after the TTL but before the scheduler ran
    // is refused, not counted.
    let late = record.approve(&bob(), None, Some(&role()), ttl).unwrap_err();
    assert!(matches!(late, RuleError::TimedOut { .. }), "{late}");
    assert_eq!(record.time_out("hallpass", ttl).unwrap(), "request.timed_out");
    assert_eq!(record.state, RequestState::TimedOut);
    assert_eq!(record.next_deadline(), None);
    assert!(record.cancel(&record.requester.clone(), ttl).is_err());
}

#[test]
fn escalation_is_a_deadline_recorded_once() {
    let mut two_stage = flow(1);
    two_stage.stages[0].timeout_seconds = Some(900);
    two_stage.stages[0].escalate_to = vec![subject("group:security")];
    two_stage.stages.push(StageRules {
        approvers: vec![subject("group:security")],
        required: 1,
        timeout_seconds: None,
        escalate_to: vec![],
    });
    let mut record = open_with(input(), Route::Flow(two_stage));
    let at = now() + Duration::minutes(15);
    assert_eq!(record.next_deadline(), Some(at), "escalation comes before the TTL");
    assert_eq!(record.escalate(at - Duration::seconds(1)), None);
    let (kind, stage, to) = record.escalate(at).unwrap();
    assert_eq!(
        (kind, stage, to),
        (AuditKind::RequestEscalated, 1, vec![subject("group:security")])
    );
    assert_eq!(record.next_deadline(), record.pending_expires_at);
    let sam = principal("sam", &["security"]);
    record.approve(&sam, None, Some(&role()), at).unwrap();
    assert_eq!(record.state, RequestState::Pending, "stage 2 still open");
    record
        .approve(&principal("sue", &["security"]), None, Some(&role()), at)
        .unwrap();
    assert_eq!(record.state, RequestState::Approved);
}

#[test]
fn denial_ends_the_request() {
    let mut record = open(2);
    record.deny(&bob(), Some("no".into()), now()).unwrap();
    assert_eq!(record.state, RequestState::Denied);
    let carol = principal("carol", &[]);
    assert!(matches!(
        record.approve(&carol, None, Some(&role()), now()),
        Err(RuleError::WrongState { .. })
    ));
}

#[test]
fn request_rules_are_checked() {
    let alice = principal("alice", &["dev"]);
    let long = NewRequest {
        duration_seconds: Some(5 * 3600),
        ..input()
    };
    assert!(matches!(
        RequestRecord::open(long, &role(), Route::Approve, &alice, now()),
        Err(RuleError::DurationAboveMax { .. })
    ));
    let blank = NewRequest {
        reason: "  ".into(),
        ..input()
    };
    assert!(matches!(
        RequestRecord::open(blank, &role(), Route::Approve, &alice, now()),
        Err(RuleError::Required(TextField::Reason))
    ));
    let outsider = principal("eve", &["sales"]);
    // Not even an auto-approving policy widens who may request a role.
    assert!(matches!(
        RequestRecord::open(input(), &role(), Route::Approve, &outsider, now()),
        Err(RuleError::NotRequestable { .. })
    ));
    let default = NewRequest {
        duration_seconds: None,
        ..input()
    };
    let (record, _) = RequestRecord::open(default, &role(), Route::Approve, &alice, now()).unwrap();
    assert_eq!(record.duration_seconds, 3600, "default duration applies");
}

#[test]
fn policy_denial_is_recorded_with_its_messages() {
    let (record, kind) = RequestRecord::open(
        input(),
        &role(),
        Route::Deny(vec!["prod write roles need a ticket".into()]),
        &principal("alice", &["dev"]),
        now(),
    )
    .unwrap();
    assert_eq!(kind, "request.denied");
    assert_eq!(record.state, RequestState::Denied);
    let decision = record.decision.unwrap();
    assert_eq!(decision.by, POLICY_ACTOR);
    assert_eq!(decision.comment.as_deref(), Some("prod write roles need a ticket"));
}

#[test]
fn policy_cap_shortens_defaults_and_denies_longer_asks() {
    let capped = NewRequest {
        duration_seconds: None,
        policy_cap_seconds: Some(1200),
        ..input()
    };
    let record = open_with(capped, Route::Approve);
    assert_eq!(record.duration_seconds, 1200, "no --for: min(role default, cap)");
    let over = NewRequest {
        duration_seconds: Some(3600),
        policy_cap_seconds: Some(1200),
        ..input()
    };
    let record = open_with(over, Route::Approve);
    assert_eq!(record.state, RequestState::Denied);
    let message = record.decision.unwrap().comment.unwrap();
    assert_eq!(message, "policy caps this request at 20m; ask for 20m or less");
}

#[test]
fn scheduled_requests_wait_for_their_start_and_count_from_activation() {
    let start = now() + Duration::hours(3);
    let scheduled = NewRequest {
        scheduled_start: Some(start),
        ..input()
    };
    let mut record = open_with(scheduled.clone(), Route::Flow(flow(1)));
    record.approve(&bob(), None, Some(&role()), now()).unwrap();
    assert_eq!(record.state, RequestState::Scheduled);
    assert_eq!(record.next_deadline(), Some(start));
    assert!(
        record.activate(serde_json::json!({}), 4 * 3600, now()).is_err(),
        "not before its start"
    );
    assert_eq!(record.start_scheduled(start).unwrap(), "request.start_reached");
    assert_eq!(record.next_deadline(), Some(start), "issue at once");
    let issued = start + Duration::seconds(2);
    record.activate(serde_json::json!({}), 4 * 3600, issued).unwrap();
    assert_eq!(record.expires_at, Some(issued + Duration::seconds(1800)));

    // Approved after the start: activates at approval.
    let mut late = open_with(scheduled, Route::Flow(flow(1)));
    late.approve(&bob(), None, Some(&role()), start + Duration::minutes(5))
        .unwrap();
    assert_eq!(late.state, RequestState::Approved);

    // Cancel while scheduled.
    let mut auto = open_with(
        NewRequest {
            scheduled_start: Some(start),
            ..input()
        },
        Route::Approve,
    );
    assert_eq!(auto.state, RequestState::Scheduled);
    auto.cancel(&principal("alice", &["dev"]), now()).unwrap();
    assert_eq!(auto.next_deadline(), None);
}

#[test]
fn schedule_times_are_checked() {
    let alice = principal("alice", &["dev"]);
    let open_at = |at: DateTime<Utc>| {
        let asked = NewRequest {
            scheduled_start: Some(at),
            ..input()
        };
        RequestRecord::open(asked, &role(), Route::Approve, &alice, now())
    };
    assert!(matches!(
        open_at(now() - Duration::hours(1)),
        Err(RuleError::ScheduledInPast(_))
    ));
    assert!(matches!(
        open_at(now() + Duration::days(91)),
        Err(RuleError::ScheduledTooFar { .. })
    ));
    let (skewed, _) = open_at(now() - Duration::seconds(30)).unwrap();
    assert_eq!(skewed.state, RequestState::Approved, "a few seconds late means now");
    assert_eq!(skewed.scheduled_start, None);
    let emergency = NewRequest {
        emergency: true,
        scheduled_start: Some(now() + Duration::hours(1)),
        ..input()
    };
    assert!(matches!(
        RequestRecord::open(emergency, &role(), Route::Approve, &alice, now()),
        Err(RuleError::EmergencyScheduled)
    ));
}

#[test]
fn break_glass_skips_the_flow_and_opens_a_review() {
    let emergency = NewRequest {
        emergency: true,
        ..input()
    };
    let mut record = open_with(emergency.clone(), Route::Flow(flow(2)));
    assert_eq!(record.state, RequestState::Approved);
    assert!(record.emergency && record.review_open());
    // Policy denial still stops it.
    let denied = open_with(emergency.clone(), Route::Deny(vec!["sre only".into()]));
    assert_eq!(denied.state, RequestState::Denied);
    // Roles must allow it.
    let mut closed = role();
    closed.emergency_access = false;
    assert!(matches!(
        RequestRecord::open(emergency, &closed, Route::Approve, &principal("alice", &["dev"]), now()),
        Err(RuleError::EmergencyNotAllowed(_))
    ));
    // Review: not by the requester, not by outsiders; by an approver, with a comment.
    let alice = record.requester.clone();
    assert!(matches!(
        record.acknowledge_review(&alice, "fine", now()),
        Err(RuleError::SelfReview(_))
    ));
    assert!(matches!(
        record.acknowledge_review(&principal("eve", &[]), "fine", now()),
        Err(RuleError::NotAReviewer { .. })
    ));
    assert!(matches!(
        record.acknowledge_review(&bob(), "  ", now()),
        Err(RuleError::Required(TextField::Comment))
    ));
    assert_eq!(
        record.acknowledge_review(&bob(), "matches INC-9", now()).unwrap(),
        "review.acknowledged"
    );
    assert!(!record.review_open());
    assert!(matches!(
        record.acknowledge_review(&bob(), "again", now()),
        Err(RuleError::NoOpenReview(_))
    ));
}

#[test]
fn access_time_counts_from_activation() {
    let mut record = open(1);
    record.approve(&bob(), None, Some(&role()), now()).unwrap();
    let later = now() + Duration::minutes(20);
    record.activate(serde_json::json!({}), 4 * 3600, later).unwrap();
    assert_eq!(record.expires_at, Some(later + Duration::seconds(1800)));
    assert_eq!(record.next_deadline(), record.expires_at);
}

#[test]
fn extension_through_approval_moves_the_expiry() {
    let mut record = active(1);
    let expires = record.expires_at.unwrap();
    assert_eq!(record.pending_extension().map(|e| e.number), Some(1));
    assert_eq!(record.expires_at, Some(expires), "nothing moves before approval");
    let alice = record.requester.clone();
    let again = NewExtension {
        by_seconds: 60,
        reason: "x".into(),
        ..NewExtension::default()
    };
    assert!(matches!(
        record.request_extension(&alice, again, &role(), Route::Approve, now()),
        Err(RuleError::ExtensionPending { number: 1, .. })
    ));
    assert_eq!(
        record.approve(&bob(), None, Some(&role()), now()).unwrap(),
        "grant.extended"
    );
    assert_eq!(record.expires_at, Some(expires + Duration::seconds(600)));
    assert_eq!(record.extensions[0].state, ExtensionState::Approved);
    assert_eq!(record.next_deadline(), record.expires_at);
}

#[test]
fn extension_approved_after_expiry_is_refused_and_lapses_at_the_end() {
    let mut record = active(1);
    let expires = record.expires_at.unwrap();
    // The race: the approval arrives at the expiry instant.
    let err = record.approve(&bob(), None, Some(&role()), expires).unwrap_err();
    assert!(matches!(err, RuleError::GrantExpired { .. }), "{err}");
    assert_eq!(record.expires_at, Some(expires));
    let by = Decision {
        by: "hallpass".into(),
        comment: None,
        at: expires,
    };
    assert_eq!(
        record.finish_end(EndKind::Expire, by, expires).unwrap(),
        "grant.expired"
    );
    assert_eq!(record.extensions[0].state, ExtensionState::Lapsed);
    assert!(record.approve(&bob(), None, Some(&role()), expires).is_err());
}

#[test]
fn extensions_are_checked_and_may_be_denied() {
    let mut record = active(0);
    let alice = record.requester.clone();
    let ext = |by_seconds| NewExtension {
        by_seconds,
        reason: "more".into(),
        ..NewExtension::default()
    };
    assert!(matches!(
        record.request_extension(&bob(), ext(60), &role(), Route::Approve, now()),
        Err(RuleError::NotRequester { .. })
    ));
    assert!(matches!(
        record.request_extension(&alice, ext(0), &role(), Route::Approve, now()),
        Err(RuleError::ExtensionEmpty)
    ));
    assert!(matches!(
        record.request_extension(&alice, ext(5 * 3600), &role(), Route::Approve, now()),
        Err(RuleError::DurationAboveMax { .. })
    ));
    let expires = record.expires_at.unwrap();
    assert_eq!(
        record
            .request_extension(&alice, ext(300), &role(), Route::Approve, now())
            .unwrap(),
        "grant.extended"
    );
    assert_eq!(record.expires_at, Some(expires + Duration::seconds(300)));
    let capped = NewExtension {
        policy_cap_seconds: Some(60),
        ..ext(300)
    };
    assert_eq!(
        record
            .request_extension(&alice, capped, &role(), Route::Approve, now())
            .unwrap(),
        "grant.extension_denied"
    );
    record
        .request_extension(&alice, ext(300), &role(), Route::Flow(flow(1)), now())
        .unwrap();
    assert!(matches!(
        record.deny(&alice, None, now()),
        Err(RuleError::SelfDenial(_))
    ));
    assert_eq!(
        record.deny(&bob(), Some("enough".into()), now()).unwrap(),
        "grant.extension_denied"
    );
    assert_eq!(
        record.state,
        RequestState::Active,
        "a refused extension leaves the grant alone"
    );
    assert_eq!(record.expires_at, Some(expires + Duration::seconds(300)));
    let late = record.expires_at.unwrap();
    assert!(matches!(
        record.request_extension(&alice, ext(60), &role(), Route::Approve, late),
        Err(RuleError::GrantExpired { .. })
    ));
}

#[test]
fn failed_end_keeps_its_intent_through_retries() {
    let mut record = open(0);
    record.activate(serde_json::json!({}), 4 * 3600, now()).unwrap();
    let by = Decision {
        by: "hallpass".into(),
        comment: None,
        at: now(),
    };
    record
        .record_end_failure(EndKind::Expire, by.clone(), "boom".into(), now(), now())
        .unwrap();
    assert_eq!(record.state, RequestState::RevokeFailed);
    assert!(record.state.holds_access());
    let kind = record.finish_end(EndKind::Revoke, by, now()).unwrap();
    assert_eq!(kind, "grant.expired");
    assert_eq!(record.state, RequestState::Expired);
    assert_eq!(record.revoke_error, None);
}

#[test]
fn release_is_for_the_requester_and_revoke_for_approvers() {
    let mut record = open(0);
    record.activate(serde_json::json!({}), 4 * 3600, now()).unwrap();
    let alice = principal("alice", &["dev"]);
    assert!(record.check_may_end(&bob(), EndKind::Release).is_err());
    assert!(record.check_may_end(&alice, EndKind::Release).is_ok());
    assert!(record.check_may_end(&bob(), EndKind::Revoke).is_ok());
    assert!(record.check_may_end(&principal("eve", &[]), EndKind::Revoke).is_err());
    assert!(
        record
            .check_may_end(&principal("root", &["admins"]), EndKind::Revoke)
            .is_ok()
    );
}

#[test]
fn backoff_grows_and_caps() {
    assert_eq!(revoke_backoff(0), Duration::seconds(1));
    assert_eq!(revoke_backoff(3), Duration::seconds(8));
    assert_eq!(revoke_backoff(50), Duration::seconds(300));
}

#[test]
fn extensions_cannot_exceed_the_roles_total_duration() {
    // 30m granted; max 4h per extension; total capped at 5h.
    let mut role = role();
    role.max_total_duration_seconds = 5 * 3600;
    let mut record = active(0);
    let alice = record.requester.clone();
    let ext = |by: u64| NewExtension {
        by_seconds: by,
        reason: "more".into(),
        ..NewExtension::default()
    };
    record
        .request_extension(&alice, ext(4 * 3600), &role, Route::Approve, now())
        .unwrap();
    assert_eq!(record.total_granted_seconds(), 30 * 60 + 4 * 3600);
    let error = record
        .request_extension(&alice, ext(3600), &role, Route::Approve, now())
        .unwrap_err();
    let RuleError::TotalDurationAboveMax { ref left, ref max, .. } = error else {
        panic!("expected the total cap, got {error:?}");
    };
    assert_eq!((left.as_str(), max.as_str()), ("30m", "5h"));
    assert!(error.to_string().contains("ask for 30m or less"), "{error}");
    // Self-service or approved, every extension counts.
    record
        .request_extension(&alice, ext(1800), &role, Route::Flow(flow(1)), now())
        .unwrap();
    record.approve(&bob(), None, Some(&role), now()).unwrap();
    assert_eq!(record.total_granted_seconds(), 5 * 3600);
    assert!(matches!(
        record.request_extension(&alice, ext(60), &role, Route::Approve, now()),
        Err(RuleError::TotalDurationAboveMax { .. })
    ));
}

#[test]
fn an_approved_extension_is_fitted_to_the_role_as_it_is_then() {
    let mut record = active(0);
    let alice = record.requester.clone();
    let ask = |record: &mut RequestRecord, by: u64| {
        let ext = NewExtension {
            by_seconds: by,
            reason: "more".into(),
            ..NewExtension::default()
        };
        record
            .request_extension(&alice, ext, &role(), Route::Flow(flow(1)), now())
            .unwrap();
    };
    let expires = record.expires_at;
    ask(&mut record, 3 * 3600);
    let mut lowered = role();
    lowered.max_duration_seconds = 3600;
    assert_eq!(
        record.approve(&bob(), None, Some(&lowered), now()).unwrap(),
        "grant.extended"
    );
    assert_eq!(record.extensions[0].by_seconds, 3600);
    assert_eq!(record.extensions[0].capped_from_seconds, Some(3 * 3600));
    assert_eq!(record.expires_at, expires.map(|at| at + Duration::hours(1)));

    let expires = record.expires_at;
    ask(&mut record, 1800);
    assert_eq!(
        record.approve(&bob(), None, None, now()).unwrap(),
        "grant.extension_denied"
    );
    assert_eq!(record.extensions[1].state, ExtensionState::Denied);
    let why = record.extensions[1].decision.as_ref().and_then(|d| d.comment.clone());
    assert!(why.unwrap_or_default().contains("was deleted"));
    assert_eq!(record.expires_at, expires, "a denied extension adds nothing");

    ask(&mut record, 1800);
    let mut used_up = role();
    used_up.max_total_duration_seconds = record.total_granted_seconds();
    assert_eq!(
        record.approve(&bob(), None, Some(&used_up), now()).unwrap(),
        "grant.extension_denied"
    );
    assert_eq!(record.expires_at, expires);
}

#[test]
fn a_lowered_role_maximum_caps_the_grant_at_activation() {
    let mut record = open(0);
    assert_eq!(record.duration_seconds, 1800);
    record.activate(serde_json::json!({}), 600, now()).unwrap();
    assert_eq!(record.duration_seconds, 600);
    assert_eq!(record.capped_from_seconds, Some(1800));
    assert_eq!(record.expires_at, Some(now() + Duration::seconds(600)));
}

#[test]
fn requests_are_checked_against_the_role_as_it_is_now() {
    let record = open(1);
    assert_eq!(record.check_role(Some(&role())), RoleCheck::Allowed);
    assert_eq!(record.check_role(None), RoleCheck::RoleGone);
    let mut closed = role();
    closed.requestable_by = vec![subject("group:sre")];
    let RoleCheck::NotRequestable(why) = record.check_role(Some(&closed)) else {
        panic!("alice left group dev's role");
    };
    assert!(why.contains("may no longer request role \"prod-db\""), "{why}");
}

#[test]
fn hallpass_withdraws_and_refuses_requests_that_cannot_take_effect() {
    let mut pending = open(1);
    assert_eq!(
        pending
            .withdraw("hallpass", "role prod-db was deleted".into(), now())
            .unwrap(),
        AuditKind::RequestCancelled
    );
    assert_eq!(pending.state, RequestState::Cancelled);
    assert_eq!(
        pending.decision.as_ref().and_then(|d| d.comment.as_deref()),
        Some("role prod-db was deleted")
    );
    let mut approved = open(0);
    assert_eq!(
        approved.refuse("policy", &["no weekends".into()], now()).unwrap(),
        AuditKind::RequestDenied
    );
    assert_eq!(approved.state, RequestState::Denied);
    let mut active = active(0);
    assert!(matches!(
        active.withdraw("hallpass", "x".into(), now()),
        Err(RuleError::WrongState { .. })
    ));
}

/// Every transition lands in one of the states its table row lists.
#[test]
fn transitions_land_where_the_table_says() {
    use transitions::{Action, transition};
    let lands = |action: Action, record: &RequestRecord| {
        assert!(
            transition(action).to.contains(&record.state),
            "{action:?} led to {}",
            record.state
        );
    };
    let mut r = open(2);
    r.approve(&bob(), None, Some(&role()), now()).unwrap();
    lands(Action::Approve, &r);
    r.approve(&principal("carol", &[]), None, Some(&role()), now()).unwrap();
    lands(Action::Approve, &r);
    r.activate(serde_json::json!({}), 4 * 3600, now()).unwrap();
    lands(Action::Activate, &r);
    let by = Decision {
        by: "hallpass".into(),
        comment: None,
        at: now(),
    };
    r.record_end_failure(EndKind::Expire, by.clone(), "down".into(), now(), now())
        .unwrap();
    lands(Action::EndFailed, &r);
    r.finish_end(EndKind::Expire, by, now()).unwrap();
    lands(Action::End, &r);
    let mut d = open(1);
    d.deny(&bob(), None, now()).unwrap();
    lands(Action::Deny, &d);
    let mut c = open(1);
    c.cancel(&principal("alice", &[]), now()).unwrap();
    lands(Action::Cancel, &c);
}

#[test]
fn a_policy_decision_reads_deny_then_auto_approval_then_flow_then_role() {
    use super::PolicyOutcome;
    let decision = |error: Option<&str>, deny: &[&str], auto_approve: bool, flow: Option<&str>| PolicyRecord {
        error: error.map(str::to_string),
        deny: deny.iter().map(|m| m.to_string()).collect(),
        auto_approve,
        approval_flow: flow.map(str::to_string),
        ..PolicyRecord::default()
    };
    let cases = [
        (decision(Some("boom"), &[], true, Some("f")), PolicyOutcome::Denied),
        (decision(None, &["frozen"], true, Some("f")), PolicyOutcome::Denied),
        (decision(None, &[], true, Some("f")), PolicyOutcome::AutoApproved),
        (decision(None, &[], false, Some("f")), PolicyOutcome::Flow("f")),
        (decision(None, &[], false, None), PolicyOutcome::RoleDefault),
    ];
    for (record, expected) in &cases {
        assert_eq!(record.outcome(), *expected, "{record:?}");
    }
}
