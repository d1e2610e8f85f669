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
use crate::subject::{Principal, Subject};

/// Longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1024;
/// Longest ticket reference accepted, in characters.
pub const MAX_TICKET_CHARS: usize = 128;
/// Longest approval or denial comment accepted, in characters.
pub const MAX_COMMENT_CHARS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved; credentials are being issued.
    Approved,
    /// Credentials issued; access is live until `expires_at`.
    Active,
    Denied,
    Cancelled,
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
    pub const ALL: [RequestState; 9] = [
        RequestState::Pending,
        RequestState::Approved,
        RequestState::Active,
        RequestState::Denied,
        RequestState::Cancelled,
        RequestState::Expired,
        RequestState::Revoked,
        RequestState::Released,
        RequestState::RevokeFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Active => "active",
            RequestState::Denied => "denied",
            RequestState::Cancelled => "cancelled",
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
    "unknown state {0:?}; expected one of pending, approved, active, denied, cancelled, expired, revoked, released, revoke_failed"
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
    pub approval: ApprovalRule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalRule {
    Auto,
    Required { approvers: Vec<Subject>, required: u32 },
}

/// The request as the caller asked for it, before any rule ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub id: String,
    pub duration_seconds: Option<u64>,
    pub reason: String,
    pub ticket: Option<String>,
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
    pub required_approvals: u32,
    pub approvers: Vec<Subject>,
    pub approvals: Vec<Approval>,
    /// Denial or cancellation.
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
    #[error("{principal} may not request role {role:?}: it is requestable by {allowed}")]
    NotRequestable {
        principal: String,
        role: String,
        allowed: String,
    },
    #[error("{principal} is not an approver of request {id}; its approvers are {approvers}")]
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
}

fn check_text(text: &Option<String>, max: usize, err: fn(usize) -> RuleError) -> Result<Option<String>, RuleError> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > max => Err(err(t.chars().count())),
        Some(t) => Ok(Some(t.to_string())),
    }
}

fn join_subjects(subjects: &[Subject]) -> String {
    if subjects.is_empty() {
        return "nobody".to_string();
    }
    subjects.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

impl RequestRecord {
    /// Checks a new request against its role and builds the record: `pending`,
    /// or `approved` when the role approves automatically.
    pub fn open(
        input: NewRequest,
        role: &RoleRules,
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
        let duration_seconds = input.duration_seconds.unwrap_or(role.default_duration_seconds);
        if duration_seconds > role.max_duration_seconds {
            return Err(RuleError::DurationAboveMax {
                role: role.name.clone(),
                requested: format_duration(duration_seconds),
                max: format_duration(role.max_duration_seconds),
            });
        }
        let reason = input.reason.trim().to_string();
        if reason.is_empty() {
            return Err(RuleError::ReasonRequired);
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(RuleError::ReasonTooLong(reason.chars().count()));
        }
        let ticket = check_text(&input.ticket, MAX_TICKET_CHARS, RuleError::TicketTooLong)?;
        let (state, approvers, required_approvals, auto_approved) = match &role.approval {
            ApprovalRule::Auto => (RequestState::Approved, Vec::new(), 0, true),
            ApprovalRule::Required { approvers, required } => {
                (RequestState::Pending, approvers.clone(), *required, false)
            }
        };
        let record = RequestRecord {
            id: input.id,
            role: role.name.clone(),
            target: role.target.clone(),
            requester: requester.clone(),
            state,
            duration_seconds,
            reason,
            ticket,
            created_at: now,
            updated_at: now,
            auto_approved,
            required_approvals,
            approvers,
            approvals: Vec::new(),
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
        };
        Ok((record, "request.created"))
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

    fn require_approver(&self, approver: &Principal) -> Result<(), RuleError> {
        if approver.matches_any(&self.approvers) {
            Ok(())
        } else {
            Err(RuleError::NotAnApprover {
                principal: approver.name.clone(),
                id: self.id.clone(),
                approvers: join_subjects(&self.approvers),
            })
        }
    }

    /// Records one approval; the request becomes `approved` at quorum.
    pub fn approve(
        &mut self,
        approver: &Principal,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<&'static str, RuleError> {
        self.require_state(&[RequestState::Pending], "approve")?;
        if approver.name == self.requester.name {
            return Err(RuleError::SelfApproval(self.id.clone()));
        }
        self.require_approver(approver)?;
        if self.approvals.iter().any(|a| a.approver == approver.name) {
            return Err(RuleError::AlreadyApproved {
                approver: approver.name.clone(),
                id: self.id.clone(),
            });
        }
        let comment = check_text(&comment, MAX_COMMENT_CHARS, RuleError::CommentTooLong)?;
        self.approvals.push(Approval {
            approver: approver.name.clone(),
            comment,
            at: now,
        });
        self.updated_at = now;
        if self.approvals.len() as u64 >= u64::from(self.required_approvals) {
            self.state = RequestState::Approved;
        }
        Ok("request.approved")
    }

    /// How many more approvals the request needs.
    pub fn approvals_missing(&self) -> u32 {
        let have = u32::try_from(self.approvals.len()).unwrap_or(u32::MAX);
        self.required_approvals.saturating_sub(have)
    }

    /// A denial from any approver ends the request.
    pub fn deny(
        &mut self,
        approver: &Principal,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<&'static str, RuleError> {
        self.require_state(&[RequestState::Pending], "deny")?;
        if approver.name == self.requester.name {
            return Err(RuleError::SelfDenial(self.id.clone()));
        }
        if !approver.is_admin() {
            self.require_approver(approver)?;
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
        self.require_state(&[RequestState::Pending], "cancel")?;
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

    /// Credentials were issued: access time starts now.
    pub fn activate(&mut self, credential: serde_json::Value, now: DateTime<Utc>) -> Result<&'static str, RuleError> {
        self.require_state(&[RequestState::Approved], "activate")?;
        let seconds = i64::try_from(self.duration_seconds).unwrap_or(i64::MAX);
        self.state = RequestState::Active;
        self.activated_at = Some(now);
        self.expires_at = Some(now + Duration::seconds(seconds));
        self.credential = Some(credential);
        self.updated_at = now;
        Ok("grant.activated")
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
            EndKind::Revoke if caller.is_admin() => Ok(()),
            EndKind::Revoke => self.require_approver(caller),
        }
    }

    /// The provider removed the access: the grant reaches its terminal state.
    /// If an earlier attempt failed, the original intent (expire, revoke,
    /// release) decides the state, not the retry.
    pub fn finish_end(&mut self, kind: EndKind, by: Decision, now: DateTime<Utc>) -> Result<&'static str, RuleError> {
        self.require_state(&[RequestState::Active, RequestState::RevokeFailed], kind.as_str())?;
        let kind = self.end.unwrap_or(kind);
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
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        match self.state {
            RequestState::Approved => Some(self.updated_at),
            RequestState::Active => self.expires_at,
            RequestState::RevokeFailed => self.next_revoke_at,
            _ => None,
        }
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

    fn role(required: u32) -> RoleRules {
        RoleRules {
            name: "prod-db".into(),
            target: "pg".into(),
            default_duration_seconds: 3600,
            max_duration_seconds: 4 * 3600,
            requestable_by: vec!["group:dev".parse().unwrap()],
            approval: if required == 0 {
                ApprovalRule::Auto
            } else {
                ApprovalRule::Required {
                    approvers: vec!["group:approvers".parse().unwrap(), "user:carol".parse().unwrap()],
                    required,
                }
            },
        }
    }

    fn open(required: u32) -> RequestRecord {
        let input = NewRequest {
            id: "r1".into(),
            duration_seconds: Some(1800),
            reason: "INC-1".into(),
            ticket: None,
        };
        RequestRecord::open(
            input,
            &role(required),
            &principal("alice", &["dev", "approvers"]),
            now(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn auto_approved_roles_skip_pending() {
        let record = open(0);
        assert_eq!(record.state, RequestState::Approved);
        assert!(record.auto_approved);
    }

    #[test]
    fn quorum_of_distinct_approvers_approves() {
        let mut record = open(2);
        let bob = principal("bob", &["approvers"]);
        record.approve(&bob, None, now()).unwrap();
        assert_eq!(record.state, RequestState::Pending);
        assert_eq!(record.approvals_missing(), 1);
        assert!(matches!(
            record.approve(&bob, None, now()),
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
        assert!(record.approvals.is_empty());
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
    }

    #[test]
    fn approved_requests_are_due_at_once_and_pending_ones_never() {
        let mut record = open(1);
        assert_eq!(record.next_deadline(), None, "nothing to do while pending");
        record.approve(&principal("bob", &["approvers"]), None, now()).unwrap();
        assert_eq!(record.next_deadline(), Some(now()), "credentials must be issued now");
        record.deny(&principal("bob", &["approvers"]), None, now()).unwrap_err();
    }

    #[test]
    fn denial_ends_the_request() {
        let mut record = open(2);
        record
            .deny(&principal("bob", &["approvers"]), Some("no".into()), now())
            .unwrap();
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
            id: "r".into(),
            duration_seconds: Some(5 * 3600),
            reason: "x".into(),
            ticket: None,
        };
        assert!(matches!(
            RequestRecord::open(long, &role(1), &alice, now()),
            Err(RuleError::DurationAboveMax { .. })
        ));
        let blank = NewRequest {
            id: "r".into(),
            duration_seconds: None,
            reason: "  ".into(),
            ticket: None,
        };
        assert!(matches!(
            RequestRecord::open(blank, &role(1), &alice, now()),
            Err(RuleError::ReasonRequired)
        ));
        let ok = NewRequest {
            id: "r".into(),
            duration_seconds: None,
            reason: "x".into(),
            ticket: None,
        };
        let outsider = principal("eve", &["sales"]);
        assert!(matches!(
            RequestRecord::open(ok.clone(), &role(1), &outsider, now()),
            Err(RuleError::NotRequestable { .. })
        ));
        let (record, _) = RequestRecord::open(ok, &role(1), &alice, now()).unwrap();
        assert_eq!(record.duration_seconds, 3600, "default duration applies");
    }

    #[test]
    fn access_time_counts_from_activation() {
        let mut record = open(1);
        record.approve(&principal("bob", &["approvers"]), None, now()).unwrap();
        let later = now() + Duration::minutes(20);
        record.activate(serde_json::json!({}), later).unwrap();
        assert_eq!(record.expires_at, Some(later + Duration::seconds(1800)));
        assert_eq!(record.next_deadline(), record.expires_at);
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
        record.approvers = vec!["group:approvers".parse().unwrap()];
        record.activate(serde_json::json!({}), now()).unwrap();
        let bob = principal("bob", &["approvers"]);
        let alice = principal("alice", &["dev"]);
        assert!(record.check_may_end(&bob, EndKind::Release).is_err());
        assert!(record.check_may_end(&alice, EndKind::Release).is_ok());
        assert!(record.check_may_end(&bob, EndKind::Revoke).is_ok());
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
