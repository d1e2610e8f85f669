//! The states of a request and the ways a grant ends, with their stable
//! names (stored, sent over the API and matched on by clients).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

    /// The states that keep a request or grant open; the store allows one
    /// open record per requester and role.
    pub const OPEN: [RequestState; 5] = [
        RequestState::Pending,
        RequestState::Approved,
        RequestState::Scheduled,
        RequestState::Active,
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

    /// See [`RequestState::OPEN`].
    pub fn is_open(self) -> bool {
        RequestState::OPEN.contains(&self)
    }

    /// The states counted as a requester's grants for policies
    /// (`input.context.active_grants`): holding access, or approved and
    /// about to.
    pub fn counts_as_grant(self) -> bool {
        matches!(
            self,
            RequestState::Approved | RequestState::Active | RequestState::RevokeFailed
        )
    }

    /// No further change can happen.
    pub fn is_final(self) -> bool {
        !self.is_open()
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
