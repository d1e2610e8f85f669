//! The lean stored form: every record decodes to itself, nothing empty is
//! written, and the full form of earlier builds still decodes.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::flow::StageRules;
use crate::request::tests::{principal, role, subject};
use crate::request::*;

/// The state machine's tests' time, with nanoseconds: stored times keep them.
fn now() -> DateTime<Utc> {
    crate::request::tests::now() + Duration::nanoseconds(123_456_789)
}

fn later(minutes: i64) -> DateTime<Utc> {
    now() + Duration::minutes(minutes)
}

fn decision(by: &str, comment: Option<&str>, minutes: i64) -> Decision {
    Decision {
        by: by.into(),
        comment: comment.map(str::to_string),
        at: later(minutes),
    }
}

fn alice() -> Principal {
    principal("alice", &["dev"])
}

/// Two stages, the first escalating to `group:security` after 15 minutes.
fn two_stage_flow() -> FlowRules {
    FlowRules {
        name: Some("two-step".into()),
        pending_ttl_seconds: 7200,
        stages: vec![
            StageRules {
                approvers: vec![subject("group:approvers")],
                required: 1,
                timeout_seconds: Some(900),
                escalate_to: vec![subject("group:security")],
            },
            StageRules {
                approvers: vec![subject("group:security")],
                required: 1,
                timeout_seconds: None,
                escalate_to: Vec::new(),
            },
        ],
        distinct_approvers: true,
        allow_self_approval: false,
    }
}

fn policy() -> PolicyRecord {
    PolicyRecord {
        policy_hash: "ab".repeat(32),
        ..PolicyRecord::default()
    }
}

fn input(id: &str) -> NewRequest {
    NewRequest {
        id: id.into(),
        duration_seconds: Some(1800),
        reason: "INC-1: look at the logs".into(),
        role_approvers: vec![subject("group:approvers"), subject("group:security")],
        policy: Some(policy()),
        ..NewRequest::default()
    }
}

fn open(input: NewRequest, route: Route) -> RequestRecord {
    RequestRecord::open(input, &role(), route, &alice(), now()).unwrap().0
}

/// Auto-approved and issued, its credential as a JWT provider describes it.
fn active(id: &str) -> RequestRecord {
    let mut record = open(input(id), Route::Approve);
    let credential = json!({"type": "jwt", "issuer": "https://hp.example", "audience": "pg", "jti": id});
    record.activate(credential, 4 * 3600, now()).unwrap();
    record
}

fn pending_two_stage() -> RequestRecord {
    let input = NewRequest {
        ticket: Some("INC-2".into()),
        policy: Some(PolicyRecord {
            approval_flow: Some("two-step".into()),
            max_duration_seconds: Some(7200),
            ..policy()
        }),
        policy_cap_seconds: Some(7200),
        ..input("pending-two-stage")
    };
    let mut record = open(input, Route::Flow(two_stage_flow()));
    let bob = principal("bob", &["approvers"]);
    record
        .approve(&bob, Some("stage one ok".into()), Some(&role()), later(1))
        .unwrap();
    record
}

fn escalated() -> RequestRecord {
    let mut record = open(input("escalated"), Route::Flow(two_stage_flow()));
    record.escalate(later(16)).unwrap();
    record
}

fn approved_through_flow() -> RequestRecord {
    let mut record = open(
        input("approved"),
        Route::Flow(FlowRules::single_stage(vec![subject("user:carol")], 1)),
    );
    record
        .approve(&principal("carol", &[]), None, Some(&role()), later(2))
        .unwrap();
    record
}

fn scheduled() -> RequestRecord {
    let input = NewRequest {
        scheduled_start: Some(later(60)),
        ..input("scheduled")
    };
    open(input, Route::Approve)
}

fn denied_by_policy() -> RequestRecord {
    let input = NewRequest {
        policy: Some(PolicyRecord {
            deny: vec!["prod needs a ticket".into(), "not on a Friday".into()],
            ..policy()
        }),
        ..input("denied")
    };
    open(input, Route::Deny(vec!["prod needs a ticket".into()]))
}

fn policy_failed() -> RequestRecord {
    let input = NewRequest {
        policy: Some(PolicyRecord {
            error: Some("policy guardrails: time limit exceeded".into()),
            ..policy()
        }),
        ..input("policy-failed")
    };
    open(input, Route::Deny(vec!["policy evaluation failed".into()]))
}

/// Active, capped by a lowered role maximum, with an SSH key, a plan and a
/// credential holding nulls of its own, delivered once.
fn active_capped_ssh_plan() -> RequestRecord {
    let input = NewRequest {
        duration_seconds: Some(3 * 3600),
        public_key: Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK alice@laptop".into()),
        plan: Some(TerraformPlan {
            sha256: "cd".repeat(32),
            create: vec!["aws_iam_role.deploy".into()],
            update: Vec::new(),
            replace: Vec::new(),
            delete: vec!["aws_s3_bucket.old".into()],
        }),
        ..input("ssh")
    };
    let mut record = open(input, Route::Approve);
    let credential = json!({"type": "ssh", "principals": ["alice"], "krl": null, "extra": {"a": null, "b": []},
                            "serial": 0, "flags": false, "empty": {}, "list": [null]});
    record.activate(credential, 3600, now()).unwrap();
    record.deliver_one_time(later(1)).unwrap();
    record
}

/// Extended once at once, once through a flow with a comment, and asking a
/// third time (pending, with the policy's decision).
fn extended() -> RequestRecord {
    let mut record = active("extended");
    let extension = |by_seconds, ticket: Option<&str>| NewExtension {
        by_seconds,
        reason: "still migrating".into(),
        ticket: ticket.map(str::to_string),
        policy_cap_seconds: None,
        policy: Some(policy()),
    };
    let alice = alice();
    let flow = FlowRules::single_stage(vec![subject("user:carol")], 1);
    record
        .request_extension(&alice, extension(600, None), &role(), Route::Approve, later(5))
        .unwrap();
    record
        .request_extension(
            &alice,
            extension(900, Some("INC-9")),
            &role(),
            Route::Flow(flow.clone()),
            later(6),
        )
        .unwrap();
    record
        .approve(&principal("carol", &[]), Some("fine".into()), Some(&role()), later(7))
        .unwrap();
    record
        .request_extension(&alice, extension(300, None), &role(), Route::Flow(flow), later(8))
        .unwrap();
    record
}

fn revoke_failed() -> RequestRecord {
    let mut record = active("revoke-failed");
    let by = decision("admin", Some("incident closed"), 3);
    for attempt in 0..2 {
        record
            .record_end_failure(
                EndKind::Revoke,
                by.clone(),
                "target unreachable".into(),
                later(5 + attempt),
                later(4 + attempt),
            )
            .unwrap();
    }
    record
}

fn revoked_after_failures() -> RequestRecord {
    let mut record = revoke_failed();
    let by = decision(SYSTEM_ACTOR, None, 9);
    record.finish_end(EndKind::Revoke, by, later(9)).unwrap();
    record
}

fn expired_with_lapsed_extension() -> RequestRecord {
    let mut record = extended();
    let by = decision(SYSTEM_ACTOR, None, 120);
    record.finish_end(EndKind::Expire, by, later(120)).unwrap();
    record
}

fn break_glass(acknowledged: bool) -> RequestRecord {
    let input = NewRequest {
        emergency: true,
        ..input(if acknowledged { "reviewed" } else { "break-glass" })
    };
    let mut record = open(input, Route::Approve);
    record.activate(json!({"type": "jwt"}), 4 * 3600, now()).unwrap();
    if acknowledged {
        let reviewer = principal("bob", &["approvers"]);
        record
            .acknowledge_review(&reviewer, "matches INC-1", later(30))
            .unwrap();
    }
    record
}

fn cancelled() -> RequestRecord {
    let mut record = pending_two_stage();
    record.cancel(&alice(), later(2)).unwrap();
    record
}

fn timed_out() -> RequestRecord {
    let mut record = open(input("timed-out"), Route::Flow(two_stage_flow()));
    record.time_out(SYSTEM_ACTOR, later(121)).unwrap();
    record
}

/// Every member set, the flags the other way round from their defaults.
fn every_member_set() -> RequestRecord {
    let mut record = expired_with_lapsed_extension();
    record.ticket = Some("INC-3".into());
    record.emergency = true;
    record.scheduled_start = Some(later(-1));
    record.pending_expires_at = Some(later(100));
    record.approval = pending_two_stage().approval;
    record.decision = Some(decision("carol", Some("ok"), 1));
    record.capped_from_seconds = Some(7200);
    record.revoke_error = Some("last error".into());
    record.revoke_attempts = 7;
    record.next_revoke_at = Some(later(200));
    record.review = break_glass(true).review;
    record.public_key = active_capped_ssh_plan().public_key;
    record.one_time_delivered_at = Some(later(2));
    record.plan = active_capped_ssh_plan().plan;
    record.policy = Some(PolicyRecord {
        policy_hash: String::new(),
        deny: vec!["no".into()],
        auto_approve: true,
        approval_flow: Some("f".into()),
        max_duration_seconds: Some(60),
        error: Some("e".into()),
    });
    record
}

fn records() -> Vec<RequestRecord> {
    vec![
        open(
            input("pending"),
            Route::Flow(FlowRules::single_stage(vec![subject("user:carol")], 2)),
        ),
        pending_two_stage(),
        escalated(),
        approved_through_flow(),
        open(input("approved-at-once"), Route::Approve),
        scheduled(),
        denied_by_policy(),
        policy_failed(),
        active("active"),
        active_capped_ssh_plan(),
        extended(),
        revoke_failed(),
        revoked_after_failures(),
        expired_with_lapsed_extension(),
        break_glass(false),
        break_glass(true),
        cancelled(),
        timed_out(),
        every_member_set(),
    ]
}

fn encode(record: &RequestRecord) -> String {
    serde_json::to_string(record).unwrap()
}

fn decode(text: &str) -> RequestRecord {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn every_record_decodes_to_itself() {
    for record in records() {
        let text = encode(&record);
        assert_eq!(decode(&text), record, "{} through {text}", record.id);
    }
}

#[test]
fn the_credential_is_stored_as_the_provider_gave_it() {
    let record = active_capped_ssh_plan();
    let stored: serde_json::Value = serde_json::from_str(&encode(&record)).unwrap();
    assert_eq!(Some(&stored["credential"]), record.credential.as_ref());
    assert_eq!(stored["credential"]["extra"], json!({"a": null, "b": []}));
}

#[test]
fn the_policy_decision_is_lean_in_the_record_only() {
    // Audit events carry the decision in full, and their data is hashed.
    let in_events = serde_json::to_value(policy()).unwrap();
    let hash = "ab".repeat(32);
    assert_eq!(
        in_events,
        json!({"policy_hash": hash, "deny": [], "auto_approve": false, "approval_flow": null,
               "max_duration_seconds": null, "error": null})
    );
    let stored: serde_json::Value = serde_json::from_str(&encode(&active("a"))).unwrap();
    assert_eq!(stored["policy"], json!({"policy_hash": hash}));
}

/// The members a record leaves out, wherever they are (the credential aside).
fn empty_members(value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
    let Some(object) = value.as_object() else {
        for (i, item) in value.as_array().into_iter().flatten().enumerate() {
            empty_members(item, &format!("{path}[{i}]"), found);
        }
        return;
    };
    for (name, member) in object {
        let at = format!("{path}.{name}");
        let empty = member.is_null()
            || *member == json!(false)
            || *member == json!([])
            || (name == "revoke_attempts" && *member == json!(0));
        if empty {
            found.push(at);
        } else if at != ".credential" {
            empty_members(member, &at, found);
        }
    }
}

#[test]
fn nothing_empty_is_written() {
    for record in records() {
        let text = encode(&record);
        let mut found = Vec::new();
        empty_members(&serde_json::from_str(&text).unwrap(), "", &mut found);
        // A flow's settings are written either way, and a plan has the API's
        // shape (the API serialises `TerraformPlan` too).
        found.retain(|at| {
            !at.ends_with(".allow_self_approval") && !at.ends_with(".distinct_approvers") && !at.starts_with(".plan.")
        });
        assert_eq!(found, Vec::<String>::new(), "{text}");
    }
}

/// A grant as `hallpass-bench million` makes them, in the full form the
/// previous build wrote.
const FULL_ACTIVE: &str = r#"{"id":"01a23086-de56-7249-937f-04314185507f","role":"bench-expiry-0000","target":"demo","requester":{"name":"bench-0","groups":["bench"]},"state":"active","duration_seconds":7200,"reason":"hallpass-bench million","ticket":null,"created_at":"2026-12-01T07:34:34.839294440Z","updated_at":"2026-12-01T07:34:34.839296162Z","auto_approved":true,"policy":{"policy_hash":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","deny":[],"auto_approve":false,"approval_flow":null,"max_duration_seconds":null,"error":null},"decision":null,"activated_at":"2026-12-01T07:34:34.839296162Z","expires_at":"2026-12-01T09:34:34.839296162Z","end":null,"ended_by":null,"ended_at":null,"credential":{"audience":"demo","issuer":"http://127.0.0.1:38965","jti":"01a23086-de56-7249-937f-04314185507f","key_id":"4439375dc2b7cea3","type":"jwt"},"revoke_error":null,"revoke_attempts":0,"next_revoke_at":null}"#;

#[test]
fn a_full_record_of_an_earlier_build_decodes_and_is_stored_lean() {
    let record = decode(FULL_ACTIVE);
    assert_eq!(record.state, RequestState::Active);
    assert_eq!(record.revoke_attempts, 0);
    assert_eq!(
        record.credential.as_ref().map(|c| c["key_id"].clone()),
        Some(json!("4439375dc2b7cea3"))
    );
    let lean = encode(&record);
    assert_eq!(
        lean,
        r#"{"id":"01a23086-de56-7249-937f-04314185507f","role":"bench-expiry-0000","target":"demo","requester":{"name":"bench-0","groups":["bench"]},"state":"active","duration_seconds":7200,"reason":"hallpass-bench million","created_at":"2026-12-01T07:34:34.839294440Z","updated_at":"2026-12-01T07:34:34.839296162Z","auto_approved":true,"policy":{"policy_hash":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},"activated_at":"2026-12-01T07:34:34.839296162Z","expires_at":"2026-12-01T09:34:34.839296162Z","credential":{"audience":"demo","issuer":"http://127.0.0.1:38965","jti":"01a23086-de56-7249-937f-04314185507f","key_id":"4439375dc2b7cea3","type":"jwt"}}"#
    );
    assert_eq!((FULL_ACTIVE.len(), lean.len()), (893, 665));
    assert_eq!(decode(&lean), record);
}

/// Records as release 0.1 wrote them (its upgrade fixture): a pending
/// request half-way through a two-stage flow, and a grant extended once.
const RELEASE_0_1: [&str; 2] = [
    r#"{"id":"01a22a9e-c8e3-7686-a2cc-d335aa29e553","role":"demo-flow","target":"demo","requester":{"name":"alice","groups":["dev"]},"state":"pending","duration_seconds":3600,"reason":"INC-3 migrate","ticket":null,"created_at":"2026-11-30T04:02:58.915832876Z","updated_at":"2026-11-30T04:02:59.024196268Z","auto_approved":false,"pending_expires_at":"2026-11-30T06:02:58.915832876Z","approval":{"flow":{"name":"two-step","pending_ttl_seconds":7200,"stages":[{"approvers":["group:approvers"],"required":1,"timeout_seconds":900,"escalate_to":["group:security"]},{"approvers":["group:security"],"required":1,"timeout_seconds":null,"escalate_to":[]}],"distinct_approvers":true,"allow_self_approval":false},"stages":[{"approvals":[{"approver":"bob","comment":"stage one ok","at":"2026-11-30T04:02:59.024196268Z"}],"opened_at":"2026-11-30T04:02:58.915832876Z","escalated_at":null},{"approvals":[],"opened_at":"2026-11-30T04:02:59.024196268Z","escalated_at":null}],"current":1},"role_approvers":["group:approvers","group:security"],"policy":{"approval_flow":null,"auto_approve":false,"deny":[],"error":null,"max_duration_seconds":null,"policy_hash":"ee751f6410fdaed1795af1f8029eb4f5dc9230e2d582f47fc480282f13d4dabe"},"decision":null,"activated_at":null,"expires_at":null,"end":null,"ended_by":null,"ended_at":null,"credential":null,"revoke_error":null,"revoke_attempts":0,"next_revoke_at":null}"#,
    r#"{"id":"01a22a9e-c849-73db-aee5-f4248056110d","role":"demo-read","target":"demo","requester":{"name":"alice","groups":["dev"]},"state":"active","duration_seconds":1800,"reason":"INC-1 look at logs","ticket":null,"created_at":"2026-11-30T04:02:58.761617534Z","updated_at":"2026-11-30T04:02:58.880340732Z","auto_approved":true,"policy":{"approval_flow":null,"auto_approve":false,"deny":[],"error":null,"max_duration_seconds":null,"policy_hash":"ee751f6410fdaed1795af1f8029eb4f5dc9230e2d582f47fc480282f13d4dabe"},"decision":null,"activated_at":"2026-11-30T04:02:58.761617534Z","expires_at":"2026-11-30T04:42:58.761617534Z","end":null,"ended_by":null,"ended_at":null,"credential":{"audience":"demo","issuer":"http://127.0.0.1:7392","jti":"01a22a9e-c849-73db-aee5-f4248056110d","key_id":"acef357af52040d4","type":"jwt"},"revoke_error":null,"revoke_attempts":0,"next_revoke_at":null,"extensions":[{"number":1,"by_seconds":600,"reason":"need more","ticket":null,"requested_at":"2026-11-30T04:02:58.880340732Z","state":"approved","auto_approved":true,"approval":null,"decision":null,"policy":{"approval_flow":null,"auto_approve":false,"deny":[],"error":null,"max_duration_seconds":null,"policy_hash":"ee751f6410fdaed1795af1f8029eb4f5dc9230e2d582f47fc480282f13d4dabe"}}]}"#,
];

#[test]
fn records_of_release_0_1_decode_as_they_did() {
    let [pending, extended] = RELEASE_0_1.map(decode);
    let progress = pending.approval.as_ref().unwrap();
    assert_eq!(progress.flow, {
        let mut flow = two_stage_flow();
        flow.stages.iter_mut().for_each(|s| s.approvers.truncate(1));
        flow
    });
    assert_eq!(progress.current, 1);
    assert_eq!(progress.stages[0].approvals[0].comment.as_deref(), Some("stage one ok"));
    assert_eq!(progress.stages[1].approvals, []);
    assert_eq!(
        (
            pending.ticket.as_ref(),
            pending.decision.as_ref(),
            pending.revoke_attempts
        ),
        (None, None, 0)
    );
    assert!(!pending.auto_approved);
    let extension = &extended.extensions[0];
    assert!(extension.auto_approved);
    assert_eq!((extension.by_seconds, extension.state), (600, ExtensionState::Approved));
    assert_eq!(extension.policy.as_ref().map(|p| p.policy_hash.len()), Some(64));
    for record in [pending, extended] {
        assert_eq!(decode(&encode(&record)), record);
    }
}
