//! Which audit events tell whom what: one audit event (with its request as
//! it is now) becomes zero or more notifications, each to every notifier
//! that hears its topic for the request's role. Pure: the outbox reads and
//! writes around it.
//!
//! - a request waits (made, or a stage approved and the next one opened)
//!   → the open stage's approvers; an escalation → `escalate_to`;
//! - decisions and activation → the requester (not when they caused it);
//! - activation and extension → a warning `expiry_warning` before the end,
//!   to the holder;
//! - break-glass, a failed revoke (its first failure, then every tenth),
//!   a lock → security notifiers.

use chrono::{DateTime, Duration, Utc};
use hallpass_api::{self as api, NotificationTopic as Topic};
use hallpass_core::AuditKind;
use hallpass_core::audit::AuditEvent;
use hallpass_core::request::RequestRecord;
use serde_json::Value;

/// A failed revoke is told on its first attempt and then every this many.
const REVOKE_FAILED_EVERY: u64 = 10;

/// One notification to make, before it is addressed to notifiers.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub topic: Topic,
    pub audience: Vec<String>,
    pub detail: Option<String>,
    /// Not sent before this (expiry warnings); `None`: at once.
    pub not_before: Option<DateTime<Utc>>,
    /// Deliveries with the same key go out in order; warnings get their
    /// own key so a warning due later holds nothing else back.
    pub order_suffix: Option<String>,
}

fn planned(topic: Topic, audience: Vec<String>, detail: Option<String>) -> Planned {
    Planned {
        topic,
        audience,
        detail,
        not_before: None,
        order_suffix: None,
    }
}

fn text(data: &Value, key: &str) -> Option<String> {
    data.get(key).and_then(Value::as_str).map(str::to_string)
}

fn requester_of(record: &RequestRecord) -> Vec<String> {
    vec![format!("user:{}", record.requester.name)]
}

/// The approvers of stage `index` of the request's flow.
fn stage_approvers(record: &RequestRecord, index: usize) -> Vec<String> {
    match &record.approval {
        Some(progress) => progress
            .flow
            .stages
            .get(index)
            .map(|stage| stage.approvers.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        None => record.role_approvers.iter().map(ToString::to_string).collect(),
    }
}

/// After an approval that left the request pending: the approvers of the
/// stage it opened, if it opened one (no approval of that stage had been
/// made by the time of the event).
fn opened_stage(record: &RequestRecord, data: &Value, at: DateTime<Utc>) -> Option<Planned> {
    let index = usize::try_from(data.get("stage")?.as_u64()?).ok()?;
    let progress = record.approval.as_ref()?;
    let stage = progress.stages.get(index)?;
    if index == 0 || stage.approvals.iter().any(|a| a.at <= at) {
        return None;
    }
    Some(planned(Topic::RequestPending, stage_approvers(record, index), None))
}

/// The expiry warning for a grant that now ends at `expires_at`, unless it
/// would be due at once.
fn expiry_warning(record: &RequestRecord, at: DateTime<Utc>, warning_seconds: u64) -> Option<Planned> {
    let expires_at = record.expires_at?;
    let due = expires_at - Duration::seconds(i64::try_from(warning_seconds).ok()?);
    if due <= at {
        return None;
    }
    Some(Planned {
        topic: Topic::GrantExpiring,
        audience: requester_of(record),
        detail: None,
        not_before: Some(due),
        order_suffix: Some(format!("expiring:{}", expires_at.timestamp())),
    })
}

/// What a request event tells (warnings excepted: see [`warnings`]).
fn request_notifications(event: &AuditEvent, kind: &AuditKind, record: &RequestRecord) -> Vec<Planned> {
    let data = &event.data;
    let at = parse_time(&event.time);
    let by_requester = event.actor == record.requester.name;
    let state = text(data, "state");
    let mut out = Vec::new();
    match kind {
        AuditKind::RequestCreated if state.as_deref() == Some("pending") => {
            out.push(planned(Topic::RequestPending, stage_approvers(record, 0), None));
        }
        AuditKind::RequestApproved => match state.as_deref() {
            Some("pending") => out.extend(opened_stage(record, data, at)),
            Some("approved" | "active" | "scheduled") if data.get("extension").is_none_or(Value::is_null) => {
                out.push(planned(
                    Topic::RequestApproved,
                    requester_of(record),
                    text(data, "comment"),
                ));
            }
            _ => {}
        },
        AuditKind::RequestEscalated => {
            let to = data
                .get("escalate_to")
                .and_then(Value::as_array)
                .map(|subjects| subjects.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            out.push(planned(Topic::RequestEscalated, to, None));
        }
        AuditKind::RequestDenied if !by_requester => {
            let why = text(data, "comment").or_else(|| text(data, "reason"));
            out.push(planned(Topic::RequestDenied, requester_of(record), why));
        }
        AuditKind::RequestTimedOut => out.push(planned(Topic::RequestTimedOut, requester_of(record), None)),
        AuditKind::GrantActivated => {
            out.push(planned(Topic::GrantActive, requester_of(record), None));
            if record.emergency {
                out.push(planned(
                    Topic::SecurityBreakGlass,
                    Vec::new(),
                    Some(record.reason.clone()),
                ));
            }
        }
        AuditKind::GrantRevoked if !by_requester => {
            out.push(planned(Topic::GrantRevoked, requester_of(record), text(data, "reason")));
        }
        AuditKind::GrantRevokeFailed => {
            let attempts = data.get("attempts").and_then(Value::as_u64).unwrap_or(1);
            if attempts <= 1 || attempts.is_multiple_of(REVOKE_FAILED_EVERY) {
                out.push(planned(Topic::SecurityRevokeFailed, Vec::new(), text(data, "error")));
            }
        }
        _ => {}
    }
    out
}

/// Expiry warnings after an activation or an extension, one per warning
/// time the notifiers ask for.
pub fn warnings(event: &AuditEvent, record: &RequestRecord, warning_seconds: u64) -> Option<Planned> {
    match event.kind.parse::<AuditKind>() {
        Ok(AuditKind::GrantActivated | AuditKind::GrantExtended) => {
            expiry_warning(record, parse_time(&event.time), warning_seconds)
        }
        _ => None,
    }
}

/// What `event` tells, besides expiry warnings. `record` is the event's
/// request as stored now (`None` for events about no request).
pub fn notifications(event: &AuditEvent, record: Option<&RequestRecord>) -> Vec<Planned> {
    let Ok(kind) = event.kind.parse::<AuditKind>();
    match (record, &kind) {
        (Some(record), _) => request_notifications(event, &kind, record),
        (None, AuditKind::PrincipalLocked) => {
            let principal = text(&event.data, "principal").unwrap_or_default();
            let reason = text(&event.data, "reason").unwrap_or_default();
            vec![planned(
                Topic::SecurityLocked,
                Vec::new(),
                Some(format!("{principal} was locked by {}: {reason}", event.actor)),
            )]
        }
        _ => Vec::new(),
    }
}

/// The links of a notification: where the request is.
pub fn links(public_url: Option<&str>, request_id: Option<&str>) -> api::NotificationLinks {
    api::NotificationLinks {
        request: public_url
            .zip(request_id)
            .map(|(base, id)| format!("{}/v1/requests/{id}", base.trim_end_matches('/'))),
    }
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
