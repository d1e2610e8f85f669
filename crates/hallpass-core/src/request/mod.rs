//! Access requests and their grants: one record from request to the end of
//! access.
//!
//! The record's types live here; what may happen to it lives in
//! [`transitions`] (the table of actions and states) and in one module per
//! concern: [`open`](RequestRecord::open) (making a request), `decisions`
//! (approval, denial, cancellation, time-out, scheduled start, activation),
//! `extension`, `ending` (release, revoke, expiry, failed revocations),
//! `review` (break-glass reviews). Every transition checks the rules,
//! mutates the record and returns the [`AuditKind`] to record; the server
//! runs it inside a store transaction, so check and write are atomic.

mod decisions;
mod ending;
mod extension;
mod open;
mod plan;
mod review;
mod stored;
pub mod transitions;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub use crate::error::RuleError;
pub use crate::events::AuditKind;
pub use crate::flow::{Approval, ApprovalProgress, FlowRules};
pub use crate::role::{RoleApproval, RoleRules};
pub use crate::state::{EndKind, RequestState, UnknownState};
use crate::subject::{Principal, Subject};
pub use crate::text::{MAX_COMMENT_CHARS, MAX_REASON_CHARS, MAX_TICKET_CHARS};
pub use decisions::RoleCheck;
pub use ending::revoke_backoff;
pub use plan::{MAX_ADDRESS_CHARS, MAX_PLAN_ADDRESSES, TerraformPlan};
pub use transitions::Action;

/// How far ahead a request may be scheduled.
pub const MAX_SCHEDULE_AHEAD_DAYS: i64 = 90;
/// A scheduled start this far in the past is taken as "now" (clock skew
/// between the client and the server); further back it is refused.
pub const SCHEDULE_GRACE_SECONDS: i64 = 60;
/// Who is recorded as deciding when the policies deny.
pub const POLICY_ACTOR: &str = "policy";
/// Who is recorded when Hallpass itself acts: timeouts, expiry, a decision
/// that can no longer take effect.
pub const SYSTEM_ACTOR: &str = "hallpass";

/// Who ended a request that never became a grant (denial, cancellation), or
/// who ended a grant early, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
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

/// What the policies decided for a request or extension, as recorded with
/// it. A stored document: its fields only ever gain defaults, so records
/// written by earlier releases keep decoding (and a record that does not
/// decode is an error, never silently dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// SHA-256 over the policy set that decided (names and sources).
    #[serde(default)]
    pub policy_hash: String,
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub auto_approve: bool,
    #[serde(default)]
    pub approval_flow: Option<String>,
    #[serde(default)]
    pub max_duration_seconds: Option<u64>,
    /// Set when evaluation failed; the request was then denied.
    #[serde(default)]
    pub error: Option<String>,
}

impl PolicyRecord {
    /// What this decision amounts to.
    pub fn outcome(&self) -> PolicyOutcome<'_> {
        PolicyOutcome::of(
            self.error.is_some(),
            !self.deny.is_empty(),
            self.auto_approve,
            self.approval_flow.as_deref(),
        )
    }
}

/// What a policy decision amounts to, in the order the server applies its
/// parts: the one place that order is written, for the server's routing and
/// for every front end that shows a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOutcome<'a> {
    /// Evaluation failed (policies fail closed) or a `deny` rule fired.
    Denied,
    AutoApproved,
    /// The policies chose this approval flow.
    Flow(&'a str),
    /// The policies said nothing about routing: the role's own approval
    /// settings apply.
    RoleDefault,
}

impl<'a> PolicyOutcome<'a> {
    /// From a decision's parts (the stored record and the API's decision
    /// carry the same ones).
    pub fn of(failed: bool, denied: bool, auto_approve: bool, approval_flow: Option<&'a str>) -> Self {
        match (failed || denied, auto_approve, approval_flow) {
            (true, _, _) => Self::Denied,
            (false, true, _) => Self::AutoApproved,
            (false, false, Some(flow)) => Self::Flow(flow),
            (false, false, None) => Self::RoleDefault,
        }
    }
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
    pub policy: Option<PolicyRecord>,
    /// Everyone who may approve requests for the role: they may also revoke
    /// its grants and acknowledge its break-glass reviews.
    pub role_approvers: Vec<Subject>,
    /// A public key to certify (SSH targets), as an `authorized_keys` line,
    /// already checked by the target's provider.
    pub public_key: Option<String>,
    /// The Terraform plan the grant is for, already checked.
    pub plan: Option<TerraformPlan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

impl std::fmt::Display for ExtensionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to lengthen an active grant. Stored inside its record, in the
/// record's lean form (see `stored`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub number: u32,
    pub by_seconds: u64,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub state: ExtensionState,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "stored::lean_policy"
    )]
    pub policy: Option<PolicyRecord>,
    /// What was asked, when the role as it was at approval allowed less
    /// (`by_seconds` is then what was granted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capped_from_seconds: Option<u64>,
}

impl Extension {
    /// True when this extension was approved, taking effect, at `at`.
    pub fn extended_at(&self, at: DateTime<Utc>) -> bool {
        self.state == ExtensionState::Approved && self.decision.as_ref().is_some_and(|d| d.at == at)
    }
}

/// An extension as asked for, plus what the policies said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewExtension {
    pub by_seconds: u64,
    pub reason: String,
    pub ticket: Option<String>,
    pub policy_cap_seconds: Option<u64>,
    pub policy: Option<PolicyRecord>,
}

/// The post-hoc review of a break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub opened_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Decision>,
}

/// One access request and, once active, its grant. Serialises to the store's
/// record form (not the wire shape, which lives in `hallpass-api`), the lean
/// form of `stored`: a member holding what its absence decodes to is left
/// out, and records of earlier releases, written in full, decode the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: String,
    pub role: String,
    pub target: String,
    pub requester: Principal,
    pub state: RequestState,
    pub duration_seconds: u64,
    pub reason: String,
    // Members that are empty are left out of the stored JSON: most records
    // never use most of them, and every write and read of a record (and
    // every page of the table) pays for its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_approved: bool,
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
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "stored::lean_policy"
    )]
    pub policy: Option<PolicyRecord>,
    /// Denial, cancellation or time-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The duration asked for, when the role's maximum had been lowered by
    /// the time the grant started and `duration_seconds` was cut to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capped_from_seconds: Option<u64>,
    /// Set when the grant started to end (or the request was closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<EndKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<Decision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Non-secret description of what was issued (issuer, audience, key
    /// id...), stored as the provider gave it: its own nulls are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_error: Option<String>,
    #[serde(default, skip_serializing_if = "stored::is_zero")]
    pub revoke_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_revoke_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<Extension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// The requester's public key the grant certifies (SSH); public, so
    /// stored as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// When the one-time part of the credential (the private key Hallpass
    /// made for an SSH grant) went to the requester; it is never handed
    /// out again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_delivered_at: Option<DateTime<Utc>>,
    /// The Terraform plan the request is bound to: approvals are for
    /// applying this file, known by its digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<TerraformPlan>,
}

pub(crate) fn seconds(value: u64) -> Duration {
    Duration::seconds(i64::try_from(value).unwrap_or(i64::MAX / 1000))
}

pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl RequestRecord {
    /// True while the request or its grant is open: waiting, about to be
    /// issued, or holding access. At most one such record exists per
    /// requester and role.
    pub fn is_open(&self) -> bool {
        self.state.is_open()
    }

    pub fn pending_extension(&self) -> Option<&Extension> {
        self.extensions.last().filter(|e| e.state == ExtensionState::Pending)
    }

    pub(crate) fn pending_extension_mut(&mut self) -> Option<&mut Extension> {
        self.extensions
            .last_mut()
            .filter(|e| e.state == ExtensionState::Pending)
    }

    /// How many more approvals the open request needs.
    pub fn approvals_missing(&self) -> u32 {
        self.approval.as_ref().map_or(0, ApprovalProgress::approvals_missing)
    }

    pub fn review_open(&self) -> bool {
        self.review.as_ref().is_some_and(|r| r.acknowledged.is_none())
    }

    /// The access this grant has been given so far: its duration and every
    /// approved extension.
    pub fn total_granted_seconds(&self) -> u64 {
        self.extensions
            .iter()
            .filter(|e| e.state == ExtensionState::Approved)
            .fold(self.duration_seconds, |sum, e| sum.saturating_add(e.by_seconds))
    }

    /// Everyone who may see this request besides its requester, admins and
    /// auditors: the approvers of its role and of its flow's stages
    /// (escalation included).
    pub fn is_approver(&self, principal: &Principal) -> bool {
        if principal.matches_any(&self.role_approvers) {
            return true;
        }
        let flows = self
            .approval
            .iter()
            .chain(self.extensions.iter().filter_map(|e| e.approval.as_ref()));
        flows
            .into_iter()
            .any(|progress| principal.matches_any(&progress.flow.all_approvers()))
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
