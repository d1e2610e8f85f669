//! The access-request state machine and its approval rules.
//!
//! A request and its grant are one record: the grant is the request once it
//! is active. Every transition is a method on [`RequestRecord`] that checks the
//! rules, mutates the record, and returns the audit-event kind to record; the
//! server runs it inside a store transaction so the check and the write are
//! atomic.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::duration::format_duration;
use crate::flow::{ApprovalOutcome, ApprovalProgress, FlowRules};
use crate::subject::{Principal, Subject};

/// Longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1024;
/// Longest ticket reference accepted, in characters.
pub const MAX_TICKET_CHARS: usize = 128;
/// Longest approval or denial comment accepted, in characters.
pub const MAX_COMMENT_CHARS: usize = 1024;
/// How far ahead a request may be scheduled.
pub const MAX_SCHEDULE_AHEAD_DAYS: i64 = 90;
/// A scheduled start this far in the past is taken as "now" (clock skew
/// between the client and the server); further back it is refused.
pub const SCHEDULE_GRACE_SECONDS: i64 = 60;
/// Who is recorded as deciding when the policies deny.
pub const POLICY_ACTOR: &str = "policy";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved; credentials are being issued.
    Approved,
    /// Approved; activates at `scheduled_start`.
    Scheduled,
    /// Credentials issued; access is live until `expires_at`.
    Active,
    Denied,
    Cancelled,
    /// Still pending at the flow's pending TTL.
    TimedOut,
    /// Ended at `expires_at`.
    Expired,
    /// Ended early by an admin or approver.
    Revoked,
    /// Ended early by the requester.
    Released,
    /// Ending failed on the target; retried with backoff until it succeeds.
    RevokeFailed,
}

impl RequestState {
    pub const ALL: [RequestState; 11] = [
        RequestState::Pending,
        RequestState::Approved,
        RequestState::Scheduled,
        RequestState::Active,
        RequestState::Denied,
        RequestState::Cancelled,
        RequestState::TimedOut,
        RequestState::Expired,
        RequestState::Revoked,
        RequestState::Released,
        RequestState::RevokeFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Scheduled => "scheduled",
            RequestState::Active => "active",
            RequestState::Denied => "denied",
            RequestState::Cancelled => "cancelled",
            RequestState::TimedOut => "timed_out",
            RequestState::Expired => "expired",
            RequestState::Revoked => "revoked",
            RequestState::Released => "released",
            RequestState::RevokeFailed => "revoke_failed",
        }
    }

    /// States in which credentials may exist on the target.
    pub fn holds_access(self) -> bool {
        matches!(self, RequestState::Active | RequestState::RevokeFailed)
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "unknown state {0:?}; expected one of pending, approved, scheduled, active, denied, cancelled, timed_out, expired, revoked, released, revoke_failed"
)]
pub struct UnknownState(pub String);

impl FromStr for RequestState {
    type Err = UnknownState;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RequestState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownState(text.to_string()))
    }
}

/// How a grant ends; decides the terminal state and the audit-event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndKind {
    Expire,
    Revoke,
    Release,
}

impl EndKind {
    pub fn final_state(self) -> RequestState {
        match self {
            EndKind::Expire => RequestState::Expired,
            EndKind::Revoke => RequestState::Revoked,
            EndKind::Release => RequestState::Released,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EndKind::Expire => "expire",
            EndKind::Revoke => "revoke",
            EndKind::Release => "release",
        }
    }
}

impl FromStr for EndKind {
    type Err = UnknownState;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "expire" => Ok(EndKind::Expire),
            "revoke" => Ok(EndKind::Revoke),
            "release" => Ok(EndKind::Release),
            other => Err(UnknownState(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// Who ended a request that never became a grant (denial, cancellation), or
/// who ended a grant early, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub by: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// What the rules need to know about a role, captured when the request is made
/// so later edits of the role do not change requests already in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRules {
    pub name: String,
    pub target: String,
    pub default_duration_seconds: u64,
    pub max_duration_seconds: u64,
    pub requestable_by: Vec<Subject>,
    pub approval: RoleApproval,
    pub emergency_access: bool,
    pub extension_requires_approval: bool,
}

/// How a role's requests are approved when no policy says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleApproval {
    Auto,
    /// The role's inline `approval {}` block.
    Inline(FlowRules),
    /// A named `approval_flow`, resolved by the caller.
    Named(String),
}

/// Where a new request (or extension) goes, once the role and the policies
/// have been consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Approved without anyone's approval.
    Approve,
    /// Through this flow.
    Flow(FlowRules),
    /// Denied, with the messages to show the requester.
    Deny(Vec<String>),
}

/// The request as the caller asked for it, before any rule ran, plus what
/// the policies said about it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRequest {
    pub id: String,
    pub duration_seconds: Option<u64>,
    pub reason: String,
    pub ticket: Option<String>,
    pub emergency: bool,
    pub scheduled_start: Option<DateTime<Utc>>,
    /// The policies' duration cap, if any.
    pub policy_cap_seconds: Option<u64>,
    /// The policy decision, recorded as it was made.
    pub policy: Option<serde_json::Value>,
    /// Everyone who may approve requests for the role: they may also revoke
    /// its grants and acknowledge its break-glass reviews.
    pub role_approvers: Vec<Subject>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionState {
    Pending,
    Approved,
    Denied,
    /// The grant ended before the extension was approved.
    Lapsed,
}

impl ExtensionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExtensionState::Pending => "pending",
            ExtensionState::Approved => "approved",
            ExtensionState::Denied => "denied",
            ExtensionState::Lapsed => "lapsed",
        }
    }
}

/// A request to lengthen an active grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub number: u32,
    pub by_seconds: u64,
    pub reason: String,
    pub ticket: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub state: ExtensionState,
    pub auto_approved: bool,
    pub approval: Option<ApprovalProgress>,
    pub decision: Option<Decision>,
    pub policy: Option<serde_json::Value>,
}

/// An extension as asked for, plus what the policies said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewExtension {
    pub by_seconds: u64,
    pub reason: String,
    pub ticket: Option<String>,
    pub policy_cap_seconds: Option<u64>,
    pub policy: Option<serde_json::Value>,
}

/// The post-hoc review of a break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub opened_at: DateTime<Utc>,
    pub acknowledged: Option<Decision>,
}

/// One access request and, once active, its grant. Serialises to the store's
/// internal record form (not the wire shape, which lives in `hallpass-api`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: String,
    pub role: String,
    pub target: String,
    pub requester: Principal,
    pub state: RequestState,
    pub duration_seconds: u64,
    pub reason: String,
    pub ticket: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub auto_approved: bool,
    // New fields are left out of the stored JSON when empty: most records
    // never use them, and every write and read of a record pays for its size.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub emergency: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_expires_at: Option<DateTime<Utc>>,
    /// Progress through the approval flow; `None` when nobody had to approve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalProgress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_approvers: Vec<Subject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<serde_json::Value>,
    /// Denial, cancellation or time-out.
    pub decision: Option<Decision>,
    pub activated_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Set when the grant started to end (or the request was closed).
    pub end: Option<EndKind>,
    pub ended_by: Option<Decision>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Non-secret description of what was issued (issuer, audience, key id...).
    pub credential: Option<serde_json::Value>,
    pub revoke_error: Option<String>,
    pub revoke_attempts: u32,
    pub next_revoke_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<Extension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    #[error("requested duration {requested} is longer than role {role:?} allows ({max}); ask for {max} or less")]
    DurationAboveMax {
        role: String,
        requested: String,
        max: String,
    },
    #[error("a reason is required: say why you need this access, e.g. --reason \"INC-123: restart the stuck worker\"")]
    ReasonRequired,
    #[error("the reason is {0} characters long; keep it under {MAX_REASON_CHARS}")]
    ReasonTooLong(usize),
    #[error("the ticket is {0} characters long; keep it under {MAX_TICKET_CHARS}")]
    TicketTooLong(usize),
    #[error("the comment is {0} characters long; keep it under {MAX_COMMENT_CHARS}")]
    CommentTooLong(usize),
    #[error("a comment is required: say what you checked, e.g. --comment \"matches INC-123, no data exported\"")]
    CommentRequired,
    #[error("{principal} may not request role {role:?}: it is requestable by {allowed}")]
    NotRequestable {
        principal: String,
        role: String,
        allowed: String,
    },
    #[error("{principal} may not approve request {id}: {approvers}")]
    NotAnApprover {
        principal: String,
        id: String,
        approvers: String,
    },
    #[error("you cannot approve your own request {0}; ask another approver")]
    SelfApproval(String),
    #[error("you cannot deny your own request {0}; use `hallpass cancel {0}` instead")]
    SelfDenial(String),
    #[error("{approver} has already approved request {id}; a second approval from the same person does not count")]
    AlreadyApproved { approver: String, id: String },
    #[error("{approver} approved stage {stage} of request {id}; this flow needs a different person in every stage")]
    NotDistinct { approver: String, id: String, stage: usize },
    #[error("request {0} has no approval pending")]
    AlreadyDecided(String),
    #[error("request {id} is {state}; cannot {action} it")]
    WrongState {
        id: String,
        state: RequestState,
        action: &'static str,
    },
    #[error("only the requester ({requester}) or an admin may {action} request {id}")]
    NotRequester {
        requester: String,
        id: String,
        action: &'static str,
    },
    #[error(
        "role {0:?} does not allow emergency access; ask without --emergency, or have an admin set emergency_access = true"
    )]
    EmergencyNotAllowed(String),
    #[error("break-glass access is for now: drop --at, or drop --emergency to schedule a normal request")]
    EmergencyScheduled,
    #[error("the start time {0} is in the past; give a future time with --at, or drop --at to start on approval")]
    ScheduledInPast(String),
    #[error("the start time {0} is more than {MAX_SCHEDULE_AHEAD_DAYS} days ahead; ask closer to the time")]
    ScheduledTooFar(String),
    #[error("request {id} timed out at {at} without a decision; make a new request")]
    TimedOut { id: String, at: String },
    #[error("grant {id} expired at {at}; it can no longer be extended")]
    GrantExpired { id: String, at: String },
    #[error("grant {id} already has extension {number} pending; wait for its decision (`hallpass show {id}`)")]
    ExtensionPending { id: String, number: u32 },
    #[error("an extension must be longer than zero")]
    ExtensionEmpty,
    #[error("grant {0} has no open break-glass review")]
    NoOpenReview(String),
    #[error("{principal} may not acknowledge the review of grant {id}: that is for admins and {approvers}")]
    NotAReviewer {
        principal: String,
        id: String,
        approvers: String,
    },
    #[error("you cannot review your own break-glass grant {0}; ask an approver of the role")]
    SelfReview(String),
}

pub(crate) fn check_text(
    text: &Option<String>,
    max: usize,
    err: fn(usize) -> RuleError,
) -> Result<Option<String>, RuleError> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > max => Err(err(t.chars().count())),
        Some(t) => Ok(Some(t.to_string())),
    }
}

fn check_reason(reason: &str) -> Result<String, RuleError> {
    let reason = reason.trim().to_string();
    if reason.is_empty() {
        return Err(RuleError::ReasonRequired);
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(RuleError::ReasonTooLong(reason.chars().count()));
    }
    Ok(reason)
}

pub(crate) fn join_subjects(subjects: &[Subject]) -> String {
    if subjects.is_empty() {
        return "nobody".to_string();
    }
    subjects.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn seconds(value: u64) -> Duration {
    Duration::seconds(i64::try_from(value).unwrap_or(i64::MAX / 1000))
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The policy cap as a denial message, when `duration` is above it.
fn above_cap(duration: u64, cap: Option<u64>, what: &str) -> Option<String> {
    let cap = cap?;
    (duration > cap).then(|| {
        format!(
            "policy caps {what} at {}; ask for {} or less",
            format_duration(cap),
            format_duration(cap)
        )
    })
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
    ) -> Result<(Self, &'static str), RuleError> {
        if !requester.matches_any(&role.requestable_by) {
            return Err(RuleError::NotRequestable {
                principal: requester.name.clone(),
                role: role.name.clone(),
                allowed: join_subjects(&role.requestable_by),
            });
        }
        if input.emergency && !role.emergency_access {
            return Err(RuleError::EmergencyNotAllowed(role.name.clone()));
        }
        if input.emergency && input.scheduled_start.is_some() {
            return Err(RuleError::EmergencyScheduled);
        }
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
        let reason = check_reason(&input.reason)?;
        let ticket = check_text(&input.ticket, MAX_TICKET_CHARS, RuleError::TicketTooLong)?;
        let scheduled_start = match input.scheduled_start {
            Some(at) if at < now - Duration::seconds(SCHEDULE_GRACE_SECONDS) => {
                return Err(RuleError::ScheduledInPast(rfc3339(at)));
            }
            Some(at) if at > now + Duration::days(MAX_SCHEDULE_AHEAD_DAYS) => {
                return Err(RuleError::ScheduledTooFar(rfc3339(at)));
            }
            Some(at) if at > now => Some(at),
            _ => None,
        };
        let route = match (
            route,
            above_cap(duration_seconds, input.policy_cap_seconds, "this request"),
        ) {
            (Route::Deny(mut messages), Some(cap)) => {
                messages.push(cap);
                Route::Deny(messages)
            }
            (_, Some(cap)) => Route::Deny(vec![cap]),
            (Route::Deny(messages), None) => Route::Deny(messages),
            // Break-glass skips approval; only a denial stops it.
            (_, None) if input.emergency => Route::Approve,
            (route, None) => route,
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
            end: None,
            ended_by: None,
            ended_at: None,
            credential: None,
            revoke_error: None,
            revoke_attempts: 0,
            next_revoke_at: None,
            extensions: Vec::new(),
            review: None,
        };
        match route {
            Route::Approve => {
                record.auto_approved = true;
                record.state = record.approved_state(now);
                if record.emergency {
                    record.review = Some(Review {
                        opened_at: now,
                        acknowledged: None,
                    });
                }
                Ok((record, "request.created"))
            }
            Route::Flow(flow) => {
                record.pending_expires_at = Some(now + seconds(flow.pending_ttl_seconds));
                record.approval = Some(ApprovalProgress::start(flow, now));
                Ok((record, "request.created"))
            }
            Route::Deny(messages) => {
                record.state = RequestState::Denied;
                record.decision = Some(Decision {
                    by: POLICY_ACTOR.to_string(),
                    comment: Some(messages.join("\n")),
                    at: now,
                });
                record.ended_at = Some(now);
                Ok((record, "request.denied"))
            }
        }
    }

    /// The state an approved request takes: `scheduled` until its start.
    fn approved_state(&self, now: DateTime<Utc>) -> RequestState {
        match self.scheduled_start {
            Some(at) if at > now => RequestState::Scheduled,
            _ => RequestState::Approved,
        }
    }

    fn require_state(&self, allowed: &[RequestState], action: &'static str) -> Result<(), RuleError> {
        if allowed.contains(&self.state) {
            Ok(())
        } else {
            Err(RuleError::WrongState {
                id: self.id.clone(),
                state: self.state,
                action,
            })
        }
    }

    fn pending_extension_mut(&mut self) -> Option<&mut Extension> {
        self.extensions
            .last_mut()
            .filter(|e| e.state == ExtensionState::Pending)
    }

    pub fn pending_extension(&self) -> Option<&Extension> {
        self.extensions.last().filter(|e| e.state == ExtensionState::Pending)
    }

    fn check_not_timed_out(&self, now: DateTime<Utc>) -> Result<(), RuleError> {
        match self.pending_expires_at {
            Some(at) if self.state == RequestState::Pending && at <= now => Err(RuleError::TimedOut {
                id: self.id.clone(),
                at: rfc3339(at),
            }),
            _ => Ok(()),
        }
    }

    fn check_grant_live(&self, now: DateTime<Utc>) -> Result<(), RuleError> {
        match self.expires_at {
            Some(at) if at <= now => Err(RuleError::GrantExpired {
                id: self.id.clone(),
                at: rfc3339(at),
            }),
            _ => Ok(()),
        }
    }

    /// Records one approval: of the request while it is pending, or of the
    /// grant's pending extension while it is active. Returns the event kind.
    pub fn approve(
        &mut self,
        approver: &Principal,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<&'static str, RuleError> {
        if self.state == RequestState::Active && self.pending_extension().is_some() {
            return self.approve_extension(approver, comment, now);
        }
        self.require_state(&[RequestState::Pending], "approve")?;
        self.check_not_timed_out(now)?;
        let (id, requester) = (self.id.clone(), self.requester.name.clone());
        let progress = self
            .approval
            .as_mut()
            .ok_or_else(|| RuleError::AlreadyDecided(id.clone()))?;
        let outcome = progress.approve(approver, &requester, &id, comment, now)?;
        self.updated_at = now;
        if outcome == ApprovalOutcome::Approved {
            self.state = self.approved_state(now);
        }
        Ok("request.approved")
    }

    fn approve_extension(
        &mut self,
        approver: &Principal,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<&'static str, RuleError> {
        self.check_grant_live(now)?;
        let (id, requester) = (self.id.clone(), self.requester.name.clone());
        let Some(extension) = self.pending_extension_mut() else {
            return Err(RuleError::AlreadyDecided(id));
        };
        let progress = extension
            .approval
            .as_mut()
            .ok_or_else(|| RuleError::AlreadyDecided(id.clone()))?;
        let outcome = progress.approve(approver, &requester, &id, comment, now)?;
        self.updated_at = now;
        if outcome != ApprovalOutcome::Approved {
            return Ok("grant.extension_approval");
        }
        self.apply_pending_extension();
        Ok("grant.extended")
    }

    /// Moves `expires_at` by the pending extension and marks it approved.
    fn apply_pending_extension(&mut self) {
        let Some(extension) = self.pending_extension_mut() else {
            return;
        };
        extension.state = ExtensionState::Approved;
        let by = seconds(extension.by_seconds);
        self.expires_at = self.expires_at.map(|at| at + by);
    }

    /// How many more approvals the open request needs.
    pub fn approvals_missing(&self) -> u32 {
        self.approval.as_ref().map_or(0, ApprovalProgress::approvals_missing)
    }

    /// A denial from an approver of the open stage (or an admin) ends the
    /// request, or refuses the grant's pending extension.
    pub fn deny(
        &mut self,
        approver: &Principal,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<&'static str, RuleError> {
        if self.state == RequestState::Active && self.pending_extension().is_some() {
            if approver.name == self.requester.name {
                return Err(RuleError::SelfDenial(self.id.clone()));
            }
            let id = self.id.clone();
            let comment = check_text(&comment, MAX_COMMENT_CHARS, RuleError::CommentTooLong)?;
            let Some(extension) = self.pending_extension_mut() else {
                return Err(RuleError::AlreadyDecided(id));
            };
            if !extension.approval.as_ref().is_some_and(|p| p.may_deny(approver, now)) {
                return Err(not_a_denier(approver, &id, extension.approval.as_ref(), now));
            }
            extension.state = ExtensionState::Denied;
            extension.decision = Some(Decision {
                by: approver.name.clone(),
                comment,
                at: now,
            });
            self.updated_at = now;
            return Ok("grant.extension_denied");
        }
        self.require_state(&[RequestState::Pending], "deny")?;
        if approver.name == self.requester.name {
            return Err(RuleError::SelfDenial(self.id.clone()));
        }
        if !self.approval.as_ref().is_some_and(|p| p.may_deny(approver, now)) {
            return Err(not_a_denier(approver, &self.id, self.approval.as_ref(), now));
        }
        let comment = check_text(&comment, MAX_COMMENT_CHARS, RuleError::CommentTooLong)?;
        self.state = RequestState::Denied;
        self.decision = Some(Decision {
            by: approver.name.clone(),
            comment,
            at: now,
        });
        self.ended_at = Some(now);
        self.updated_at = now;
        Ok("request.denied")
    }

    /// The requester (or an admin) withdraws a request that is not active yet.
    pub fn cancel(&mut self, caller: &Principal, now: DateTime<Utc>) -> Result<&'static str, RuleError> {
        self.require_state(&[RequestState::Pending, RequestState::Scheduled], "cancel")?;
        if caller.name != self.requester.name && !caller.is_admin() {
            return Err(RuleError::NotRequester {
                requester: self.requester.name.clone(),
                id: self.id.clone(),
                action: "cancel",
            });
        }
        self.state = RequestState::Cancelled;
        self.decision = Some(Decision {
            by: caller.name.clone(),
            comment: None,
            at: now,
        });
        self.ended_at = Some(now);
        self.updated_at = now;
        Ok("request.cancelled")
    }

    /// Pending TTL reached without a decision.
    pub fn time_out(&mut self, by: &str, now: DateTime<Utc>) -> Result<&'static str, RuleError> {
        self.require_state(&[RequestState::Pending], "time out")?;
        let ttl = self.pending_expires_at.filter(|at| *at <= now);
        let Some(at) = ttl else {
            return Err(RuleError::WrongState {
                id: self.id.clone(),
                state: self.state,
                action: "time out (its pending TTL has not passed)",
            });
        };
        self.state = RequestState::TimedOut;
        self.decision = Some(Decision {
            by: by.to_string(),
            comment: Some(format!("no decision by {}", rfc3339(at))),
            at: now,
        });
        self.ended_at = Some(now);
        self.updated_at = now;
        Ok("request.timed_out")
    }

    /// Records that the open stage's escalation time came; returns the event
    /// kind and the stage number and the subjects who may now approve too.
    pub fn escalate(&mut self, now: DateTime<Utc>) -> Option<(&'static str, usize, Vec<Subject>)> {
        if self.state != RequestState::Pending {
            return None;
        }
        let (stage, to) = self.approval.as_mut()?.mark_escalated(now)?;
        self.updated_at = now;
        Some(("request.escalated", stage, to))
    }

    /// A scheduled request's start came: it is approved now and is issued next.
    pub fn start_scheduled(&mut self, now: DateTime<Utc>) -> Result<&'static str, RuleError> {
        self.require_state(&[RequestState::Scheduled], "start")?;
        self.state = RequestState::Approved;
        self.updated_at = now;
        Ok("request.start_reached")
    }

    /// Credentials were issued: access time starts now.
    pub fn activate(&mut self, credential: serde_json::Value, now: DateTime<Utc>) -> Result<&'static str, RuleError> {
        self.require_state(&[RequestState::Approved], "activate")?;
        self.state = RequestState::Active;
        self.activated_at = Some(now);
        self.expires_at = Some(now + seconds(self.duration_seconds));
        self.credential = Some(credential);
        self.updated_at = now;
        Ok("grant.activated")
    }

    /// Asks to lengthen an active grant. `route` says what the role and the
    /// policies decided: extend at once, go through a flow, or refuse.
    pub fn request_extension(
        &mut self,
        caller: &Principal,
        input: NewExtension,
        role_max_seconds: u64,
        route: Route,
        now: DateTime<Utc>,
    ) -> Result<&'static str, RuleError> {
        self.require_state(&[RequestState::Active], "extend")?;
        if caller.name != self.requester.name {
            return Err(RuleError::NotRequester {
                requester: self.requester.name.clone(),
                id: self.id.clone(),
                action: "extend",
            });
        }
        self.check_grant_live(now)?;
        if let Some(pending) = self.pending_extension() {
            return Err(RuleError::ExtensionPending {
                id: self.id.clone(),
                number: pending.number,
            });
        }
        if input.by_seconds == 0 {
            return Err(RuleError::ExtensionEmpty);
        }
        if input.by_seconds > role_max_seconds {
            return Err(RuleError::DurationAboveMax {
                role: self.role.clone(),
                requested: format_duration(input.by_seconds),
                max: format_duration(role_max_seconds),
            });
        }
        let reason = check_reason(&input.reason)?;
        let ticket = check_text(&input.ticket, MAX_TICKET_CHARS, RuleError::TicketTooLong)?;
        let route = match (
            route,
            above_cap(input.by_seconds, input.policy_cap_seconds, "this extension"),
        ) {
            (Route::Deny(mut messages), Some(cap)) => {
                messages.push(cap);
                Route::Deny(messages)
            }
            (_, Some(cap)) => Route::Deny(vec![cap]),
            (route, None) => route,
        };
        let number = u32::try_from(self.extensions.len() + 1).unwrap_or(u32::MAX);
        let mut extension = Extension {
            number,
            by_seconds: input.by_seconds,
            reason,
            ticket,
            requested_at: now,
            state: ExtensionState::Pending,
            auto_approved: false,
            approval: None,
            decision: None,
            policy: input.policy,
        };
        self.updated_at = now;
        let kind = match route {
            Route::Approve => {
                extension.auto_approved = true;
                "grant.extended"
            }
            Route::Flow(flow) => {
                extension.approval = Some(ApprovalProgress::start(flow, now));
                "grant.extension_requested"
            }
            Route::Deny(messages) => {
                extension.state = ExtensionState::Denied;
                extension.decision = Some(Decision {
                    by: POLICY_ACTOR.to_string(),
                    comment: Some(messages.join("\n")),
                    at: now,
                });
                "grant.extension_denied"
            }
        };
        self.extensions.push(extension);
        if kind == "grant.extended" {
            self.apply_pending_extension();
        }
        Ok(kind)
    }

    /// An approver of the role (or an admin) acknowledges a break-glass
    /// grant's review.
    pub fn acknowledge_review(
        &mut self,
        reviewer: &Principal,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<&'static str, RuleError> {
        let open = self.review.as_ref().is_some_and(|r| r.acknowledged.is_none());
        if !open {
            return Err(RuleError::NoOpenReview(self.id.clone()));
        }
        if reviewer.name == self.requester.name {
            return Err(RuleError::SelfReview(self.id.clone()));
        }
        if !reviewer.is_admin() && !reviewer.matches_any(&self.role_approvers) {
            return Err(RuleError::NotAReviewer {
                principal: reviewer.name.clone(),
                id: self.id.clone(),
                approvers: join_subjects(&self.role_approvers),
            });
        }
        let comment = comment.trim();
        if comment.is_empty() {
            return Err(RuleError::CommentRequired);
        }
        let comment = check_text(&Some(comment.to_string()), MAX_COMMENT_CHARS, RuleError::CommentTooLong)?;
        if let Some(review) = self.review.as_mut() {
            review.acknowledged = Some(Decision {
                by: reviewer.name.clone(),
                comment,
                at: now,
            });
        }
        self.updated_at = now;
        Ok("review.acknowledged")
    }

    pub fn review_open(&self) -> bool {
        self.review.as_ref().is_some_and(|r| r.acknowledged.is_none())
    }

    /// Who may end this grant early, and how: the requester releases; admins
    /// and the role's approvers revoke.
    pub fn check_may_end(&self, caller: &Principal, kind: EndKind) -> Result<(), RuleError> {
        self.require_state(&[RequestState::Active, RequestState::RevokeFailed], kind.as_str())?;
        match kind {
            EndKind::Expire => Ok(()),
            EndKind::Release if caller.name == self.requester.name => Ok(()),
            EndKind::Release => Err(RuleError::NotRequester {
                requester: self.requester.name.clone(),
                id: self.id.clone(),
                action: "release",
            }),
            EndKind::Revoke if caller.is_admin() || caller.matches_any(&self.role_approvers) => Ok(()),
            EndKind::Revoke => Err(RuleError::NotAnApprover {
                principal: caller.name.clone(),
                id: self.id.clone(),
                approvers: format!(
                    "grants of role {:?} are revoked by admins and {}",
                    self.role,
                    join_subjects(&self.role_approvers)
                ),
            }),
        }
    }

    /// The provider removed the access: the grant reaches its terminal state.
    /// If an earlier attempt failed, the original intent (expire, revoke,
    /// release) decides the state, not the retry. A pending extension lapses.
    pub fn finish_end(&mut self, kind: EndKind, by: Decision, now: DateTime<Utc>) -> Result<&'static str, RuleError> {
        self.require_state(&[RequestState::Active, RequestState::RevokeFailed], kind.as_str())?;
        let kind = self.end.unwrap_or(kind);
        if let Some(extension) = self.pending_extension_mut() {
            extension.state = ExtensionState::Lapsed;
            extension.decision = Some(Decision {
                by: by.by.clone(),
                comment: Some("the grant ended before the extension was approved".into()),
                at: now,
            });
        }
        self.state = kind.final_state();
        self.end = Some(kind);
        if self.ended_by.is_none() {
            self.ended_by = Some(by);
        }
        self.ended_at = Some(now);
        self.revoke_error = None;
        self.next_revoke_at = None;
        self.updated_at = now;
        Ok(match kind {
            EndKind::Expire => "grant.expired",
            EndKind::Revoke => "grant.revoked",
            EndKind::Release => "grant.released",
        })
    }

    /// The provider failed to remove the access; try again at `retry_at`.
    pub fn record_end_failure(
        &mut self,
        kind: EndKind,
        by: Decision,
        error: String,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<&'static str, RuleError> {
        self.require_state(&[RequestState::Active, RequestState::RevokeFailed], kind.as_str())?;
        if self.end.is_none() {
            self.end = Some(kind);
            self.ended_by = Some(by);
        }
        self.state = RequestState::RevokeFailed;
        self.revoke_error = Some(error);
        self.revoke_attempts = self.revoke_attempts.saturating_add(1);
        self.next_revoke_at = Some(retry_at);
        self.updated_at = now;
        Ok("grant.revoke_failed")
    }

    /// When the scheduler must next act on this record, if ever. An approved
    /// request is due at once: credentials must be issued; whoever approved it
    /// claims it first, so the scheduler only steps in if that server died.
    /// A pending request is due at its escalation or its pending TTL.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        match self.state {
            RequestState::Pending => {
                let escalation = self.approval.as_ref().and_then(ApprovalProgress::next_escalation);
                match (escalation, self.pending_expires_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            RequestState::Scheduled => self.scheduled_start,
            RequestState::Approved => Some(self.updated_at),
            RequestState::Active => self.expires_at,
            RequestState::RevokeFailed => self.next_revoke_at,
            _ => None,
        }
    }
}

fn not_a_denier(principal: &Principal, id: &str, progress: Option<&ApprovalProgress>, now: DateTime<Utc>) -> RuleError {
    let allowed = progress.map(|p| p.may_approve(now)).unwrap_or_default();
    RuleError::NotAnApprover {
        principal: principal.name.clone(),
        id: id.to_string(),
        approvers: format!("it may be denied by admins and {}", join_subjects(&allowed)),
    }
}

/// Backoff between revoke attempts: 1s, 2s, 4s ... capped at 5 minutes.
pub fn revoke_backoff(attempts: u32) -> Duration {
    let exponent = attempts.min(9);
    Duration::seconds((1i64 << exponent).min(300))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{DEFAULT_PENDING_TTL_SECONDS, StageRules};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn principal(name: &str, groups: &[&str]) -> Principal {
        Principal {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn subject(text: &str) -> Subject {
        text.parse().unwrap()
    }

    fn flow(required: u32) -> FlowRules {
        FlowRules::single_stage(vec![subject("group:approvers"), subject("user:carol")], required)
    }

    fn role() -> RoleRules {
        RoleRules {
            name: "prod-db".into(),
            target: "pg".into(),
            default_duration_seconds: 3600,
            max_duration_seconds: 4 * 3600,
            requestable_by: vec![subject("group:dev")],
            approval: RoleApproval::Inline(flow(1)),
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
        record.activate(serde_json::json!({}), now()).unwrap();
        if required_for_extension > 0 {
            let ext = NewExtension {
                by_seconds: 600,
                reason: "more".into(),
                ..NewExtension::default()
            };
            let alice = record.requester.clone();
            record
                .request_extension(&alice, ext, 4 * 3600, Route::Flow(flow(required_for_extension)), now())
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
        record.approve(&bob(), None, now()).unwrap();
        assert_eq!(record.state, RequestState::Pending);
        assert_eq!(record.approvals_missing(), 1);
        assert!(matches!(
            record.approve(&bob(), None, now()),
            Err(RuleError::AlreadyApproved { .. })
        ));
        record
            .approve(&principal("carol", &[]), Some("ok".into()), now())
            .unwrap();
        assert_eq!(record.state, RequestState::Approved);
    }

    #[test]
    fn requester_never_approves_own_request_even_as_approver() {
        let mut record = open(1);
        let alice = principal("alice", &["dev", "approvers"]);
        assert!(matches!(
            record.approve(&alice, None, now()),
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
            record.approve(&mallory, None, now()),
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
        record.approve(&bob(), None, now()).unwrap();
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
        let late = record.approve(&bob(), None, ttl).unwrap_err();
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
            ("request.escalated", 1, vec![subject("group:security")])
        );
        assert_eq!(record.next_deadline(), record.pending_expires_at);
        let sam = principal("sam", &["security"]);
        record.approve(&sam, None, at).unwrap();
        assert_eq!(record.state, RequestState::Pending, "stage 2 still open");
        record.approve(&principal("sue", &["security"]), None, at).unwrap();
        assert_eq!(record.state, RequestState::Approved);
    }

    #[test]
    fn denial_ends_the_request() {
        let mut record = open(2);
        record.deny(&bob(), Some("no".into()), now()).unwrap();
        assert_eq!(record.state, RequestState::Denied);
        let carol = principal("carol", &[]);
        assert!(matches!(
            record.approve(&carol, None, now()),
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
            Err(RuleError::ReasonRequired)
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
        record.approve(&bob(), None, now()).unwrap();
        assert_eq!(record.state, RequestState::Scheduled);
        assert_eq!(record.next_deadline(), Some(start));
        assert!(
            record.activate(serde_json::json!({}), now()).is_err(),
            "not before its start"
        );
        assert_eq!(record.start_scheduled(start).unwrap(), "request.start_reached");
        assert_eq!(record.next_deadline(), Some(start), "issue at once");
        let issued = start + Duration::seconds(2);
        record.activate(serde_json::json!({}), issued).unwrap();
        assert_eq!(record.expires_at, Some(issued + Duration::seconds(1800)));

        // Approved after the start: activates at approval.
        let mut late = open_with(scheduled, Route::Flow(flow(1)));
        late.approve(&bob(), None, start + Duration::minutes(5)).unwrap();
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
            Err(RuleError::ScheduledTooFar(_))
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
            Err(RuleError::CommentRequired)
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
        record.approve(&bob(), None, now()).unwrap();
        let later = now() + Duration::minutes(20);
        record.activate(serde_json::json!({}), later).unwrap();
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
            record.request_extension(&alice, again, 14400, Route::Approve, now()),
            Err(RuleError::ExtensionPending { number: 1, .. })
        ));
        assert_eq!(record.approve(&bob(), None, now()).unwrap(), "grant.extended");
        assert_eq!(record.expires_at, Some(expires + Duration::seconds(600)));
        assert_eq!(record.extensions[0].state, ExtensionState::Approved);
        assert_eq!(record.next_deadline(), record.expires_at);
    }

    #[test]
    fn extension_approved_after_expiry_is_refused_and_lapses_at_the_end() {
        let mut record = active(1);
        let expires = record.expires_at.unwrap();
        // The race: the approval arrives at the expiry instant.
        let err = record.approve(&bob(), None, expires).unwrap_err();
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
        assert!(record.approve(&bob(), None, expires).is_err());
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
            record.request_extension(&bob(), ext(60), 14400, Route::Approve, now()),
            Err(RuleError::NotRequester { .. })
        ));
        assert!(matches!(
            record.request_extension(&alice, ext(0), 14400, Route::Approve, now()),
            Err(RuleError::ExtensionEmpty)
        ));
        assert!(matches!(
            record.request_extension(&alice, ext(5 * 3600), 14400, Route::Approve, now()),
            Err(RuleError::DurationAboveMax { .. })
        ));
        let expires = record.expires_at.unwrap();
        assert_eq!(
            record
                .request_extension(&alice, ext(300), 14400, Route::Approve, now())
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
                .request_extension(&alice, capped, 14400, Route::Approve, now())
                .unwrap(),
            "grant.extension_denied"
        );
        record
            .request_extension(&alice, ext(300), 14400, Route::Flow(flow(1)), now())
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
            record.request_extension(&alice, ext(60), 14400, Route::Approve, late),
            Err(RuleError::GrantExpired { .. })
        ));
    }

    #[test]
    fn failed_end_keeps_its_intent_through_retries() {
        let mut record = open(0);
        record.activate(serde_json::json!({}), now()).unwrap();
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
        record.activate(serde_json::json!({}), now()).unwrap();
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
}
