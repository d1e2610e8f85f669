//! Making a request: the role's rules, the duration, the start time, and the
//! route the role and the policies chose.

use chrono::{DateTime, Duration, Utc};

use super::{
    AuditKind, Decision, NewRequest, POLICY_ACTOR, RequestRecord, RequestState, Review, Route, SCHEDULE_GRACE_SECONDS,
    rfc3339, seconds,
};
use crate::duration::format_duration;
use crate::error::RuleError;
use crate::flow::ApprovalProgress;
use crate::role::RoleRules;
use crate::subject::{Principal, join_subjects};
use crate::text::{self, TextField};

/// The policy cap as a denial message, when `duration` is above it.
pub(crate) fn above_cap(duration: u64, cap: Option<u64>, what: &str) -> Option<String> {
    let cap = cap?;
    (duration > cap).then(|| {
        format!(
            "policy caps {what} at {}; ask for {} or less",
            format_duration(cap),
            format_duration(cap)
        )
    })
}

/// A route with the policy cap applied: a request above it is denied, with
/// the cap's message added to any other denial.
pub(crate) fn with_cap(route: Route, cap_denial: Option<String>) -> Route {
    match (route, cap_denial) {
        (Route::Deny(mut messages), Some(cap)) => {
            messages.push(cap);
            Route::Deny(messages)
        }
        (_, Some(cap)) => Route::Deny(vec![cap]),
        (route, None) => route,
    }
}

fn check_requester(role: &RoleRules, requester: &Principal) -> Result<(), RuleError> {
    if requester.matches_any(&role.requestable_by) {
        Ok(())
    } else {
        Err(RuleError::NotRequestable {
            principal: requester.name.clone(),
            role: role.name.clone(),
            allowed: join_subjects(&role.requestable_by),
        })
    }
}

/// The duration the request gets: what was asked, or the role's default
/// (shortened to the policy cap), never above the role's maximum.
fn duration(input: &NewRequest, role: &RoleRules) -> Result<u64, RuleError> {
    let duration_seconds = match (input.duration_seconds, input.policy_cap_seconds) {
        (Some(asked), _) => asked,
        (None, Some(cap)) => role.default_duration_seconds.min(cap),
        (None, None) => role.default_duration_seconds,
    };
    if duration_seconds > role.max_duration_seconds {
        return Err(RuleError::DurationAboveMax {
            role: role.name.clone(),
            requested: format_duration(duration_seconds),
            max: format_duration(role.max_duration_seconds),
        });
    }
    Ok(duration_seconds)
}

/// The start time: `None` to start on approval. Slightly in the past counts
/// as now (clock skew); further back, or too far ahead, is refused.
fn scheduled_start(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, RuleError> {
    match at {
        Some(at) if at < now - Duration::seconds(SCHEDULE_GRACE_SECONDS) => {
            Err(RuleError::ScheduledInPast(rfc3339(at)))
        }
        Some(at) if at > now + Duration::days(super::MAX_SCHEDULE_AHEAD_DAYS) => Err(RuleError::ScheduledTooFar {
            at: rfc3339(at),
            max_days: super::MAX_SCHEDULE_AHEAD_DAYS,
        }),
        Some(at) if at > now => Ok(Some(at)),
        _ => Ok(None),
    }
}

impl RequestRecord {
    /// Checks a new request against its role and builds the record:
    /// `pending` when it goes through a flow, `approved` (or `scheduled`)
    /// when nobody has to approve it, or `denied` when the policies say no.
    /// Returns the audit-event kind.
    pub fn open(
        input: NewRequest,
        role: &RoleRules,
        route: Route,
        requester: &Principal,
        now: DateTime<Utc>,
    ) -> Result<(Self, AuditKind), RuleError> {
        check_requester(role, requester)?;
        if input.emergency && !role.emergency_access {
            return Err(RuleError::EmergencyNotAllowed(role.name.clone()));
        }
        if input.emergency && input.scheduled_start.is_some() {
            return Err(RuleError::EmergencyScheduled);
        }
        let duration_seconds = duration(&input, role)?;
        let reason = text::required(TextField::Reason, &input.reason)?;
        let ticket = text::optional(TextField::Ticket, &input.ticket)?;
        let scheduled_start = scheduled_start(input.scheduled_start, now)?;
        if let Some(plan) = &input.plan {
            plan.check()?;
        }
        let route = match with_cap(
            route,
            above_cap(duration_seconds, input.policy_cap_seconds, "this request"),
        ) {
            Route::Deny(messages) => Route::Deny(messages),
            // Break-glass skips approval; only a denial stops it.
            _ if input.emergency => Route::Approve,
            route => route,
        };
        let mut record = RequestRecord {
            id: input.id,
            role: role.name.clone(),
            target: role.target.clone(),
            requester: requester.clone(),
            state: RequestState::Pending,
            duration_seconds,
            reason,
            ticket,
            created_at: now,
            updated_at: now,
            auto_approved: false,
            emergency: input.emergency,
            scheduled_start,
            pending_expires_at: None,
            approval: None,
            role_approvers: input.role_approvers,
            policy: input.policy,
            decision: None,
            activated_at: None,
            expires_at: None,
            capped_from_seconds: None,
            end: None,
            ended_by: None,
            ended_at: None,
            credential: None,
            revoke_error: None,
            revoke_attempts: 0,
            next_revoke_at: None,
            extensions: Vec::new(),
            review: None,
            public_key: input.public_key,
            one_time_delivered_at: None,
            plan: input.plan,
        };
        let kind = record.take_route(route, now);
        Ok((record, kind))
    }

    fn take_route(&mut self, route: Route, now: DateTime<Utc>) -> AuditKind {
        match route {
            Route::Approve => {
                self.auto_approved = true;
                self.state = self.approved_state(now);
                if self.emergency {
                    self.review = Some(Review {
                        opened_at: now,
                        acknowledged: None,
                    });
                }
                AuditKind::RequestCreated
            }
            Route::Flow(flow) => {
                self.pending_expires_at = Some(now + seconds(flow.pending_ttl_seconds));
                self.approval = Some(ApprovalProgress::start(flow, now));
                AuditKind::RequestCreated
            }
            Route::Deny(messages) => {
                self.state = RequestState::Denied;
                self.decision = Some(Decision {
                    by: POLICY_ACTOR.to_string(),
                    comment: Some(messages.join("\n")),
                    at: now,
                });
                self.ended_at = Some(now);
                AuditKind::RequestDenied
            }
        }
    }

    /// The state an approved request takes: `scheduled` until its start.
    pub(crate) fn approved_state(&self, now: DateTime<Utc>) -> RequestState {
        match self.scheduled_start {
            Some(at) if at > now => RequestState::Scheduled,
            _ => RequestState::Approved,
        }
    }
}
