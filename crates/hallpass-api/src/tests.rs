//! Serialisation round trips: what one side writes, the other reads back
//! unchanged, and enums travel as their documented strings.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::*;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let text = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, value, "{text}");
}

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).single().unwrap()
}

fn request() -> AccessRequest {
    AccessRequest {
        id: "r1".into(),
        role: "db".into(),
        target: "pg".into(),
        requester: "alice".into(),
        state: RequestState::Active,
        duration_seconds: 1800,
        capped_from_seconds: Some(3600),
        reason: "INC-1".into(),
        ticket: None,
        created_at: at(),
        updated_at: at(),
        activated_at: Some(at()),
        expires_at: Some(at()),
        ended_at: None,
        auto_approved: true,
        required_approvals: 0,
        approvers: vec![],
        approvals: vec![],
        decision: None,
        ended_by: None,
        credential: Some(json!({"type": "jwt"})),
        revoke_error: None,
        revoke_attempts: 0,
        next_revoke_at: None,
        emergency: false,
        scheduled_start: None,
        pending_expires_at: None,
        approval: None,
        policy: Some(PolicyDecision::default()),
        extensions: vec![ExtensionRecord {
            number: 1,
            by_seconds: 600,
            reason: "more".into(),
            ticket: None,
            requested_at: at(),
            state: ExtensionState::Lapsed,
            auto_approved: false,
            approval: None,
            decision: None,
            policy: None,
        }],
        review: Some(ReviewRecord {
            state: ReviewState::Open,
            opened_at: at(),
            acknowledged: None,
        }),
        plan: None,
        version: 7,
    }
}

#[test]
fn requests_round_trip_with_their_states_as_strings() {
    let request = request();
    round_trip(&request);
    let value = serde_json::to_value(&request).unwrap();
    assert_eq!(value["state"], "active");
    assert_eq!(value["extensions"][0]["state"], "lapsed");
    assert_eq!(value["review"]["state"], "open");
}

#[test]
fn create_request_response_is_the_request_plus_its_outcome() {
    let response = CreateRequestResponse {
        outcome: RequestOutcome::ExistingGrant,
        request: request(),
    };
    let value = serde_json::to_value(&response).unwrap();
    assert_eq!(value["outcome"], "existing_grant");
    assert_eq!(value["id"], "r1", "the request's fields sit at the top level");
    let back: CreateRequestResponse = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(back.outcome, RequestOutcome::ExistingGrant);
    assert_eq!(back.request, request());
    // Older clients read the same body as a plain request.
    let plain: AccessRequest = serde_json::from_value(value).unwrap();
    assert_eq!(plain.id, "r1");
}

#[test]
fn error_codes_travel_as_strings_and_unknown_ones_survive() {
    let body = ErrorBody {
        error: ErrorDetail {
            code: ErrorCode::DurationAboveMax,
            message: "too long".into(),
            request_id: Some("req-1".into()),
        },
    };
    round_trip(&body);
    let value = serde_json::to_value(&body).unwrap();
    assert_eq!(value["error"]["code"], "duration_above_max");
    let newer: ErrorBody = serde_json::from_value(json!({"error": {"code": "quantum_flux", "message": "?"}})).unwrap();
    assert_eq!(newer.error.code, ErrorCode::Other("quantum_flux".into()));
    for code in ErrorCode::ALL {
        let parsed: ErrorCode = code.as_str().parse().unwrap();
        assert_eq!(&parsed, code);
    }
}

#[test]
fn target_secrets_are_write_only_and_never_debug_printed() {
    let spec = TargetSpec {
        name: "panel".into(),
        target_type: "webhook".into(),
        config: serde_json::Map::new(),
        secrets: Some(BTreeMap::from([(
            "hmac_secret".to_string(),
            WriteOnly::new("whsec_c2VjcmV0LXZhbHVlLXNlY3JldC12YWx1ZQ"),
        )])),
    };
    round_trip(&spec);
    let debug = format!("{spec:?}");
    assert!(!debug.contains("whsec_"), "{debug}");
    let omitted: TargetSpec = serde_json::from_value(json!({"name": "t", "type": "jwt"})).unwrap();
    assert_eq!(omitted.secrets, None, "omitted secrets mean: keep the stored ones");
}

#[test]
fn inputs_refuse_unknown_fields() {
    let typo = json!({"role": "db", "reason": "x", "duraton": "1h"});
    let error = serde_json::from_value::<CreateRequest>(typo).unwrap_err();
    assert!(error.to_string().contains("unknown field `duraton`"), "{error}");
    let not_object = json!({"input": [1, 2]});
    assert!(serde_json::from_value::<PolicyEvalBody>(not_object).is_err());
}

#[test]
fn apply_round_trips_with_secret_names_in_changes() {
    let response = ApplyResponse {
        dry_run: true,
        changes: vec![Change {
            kind: ConfigKind::Target,
            name: "panel".into(),
            action: ChangeAction::Update,
            fields: vec![],
            secrets: vec!["hmac_secret".into()],
        }],
    };
    round_trip(&response);
    assert_eq!(serde_json::to_value(&response).unwrap()["changes"][0]["kind"], "target");
}

#[test]
fn created_tokens_hide_their_secret_from_debug() {
    let created = CreatedToken::new(
        "hp_secret-value".into(),
        TokenInfo {
            id: "tok_1".into(),
            principal: "ci".into(),
            groups: vec![],
            created_at: at(),
            created_by: "admin".into(),
            expires_at: None,
            revoked_at: None,
        },
    );
    round_trip(&created);
    assert!(!format!("{created:?}").contains("hp_secret-value"));
    assert_eq!(created.info().id, "tok_1");
}
