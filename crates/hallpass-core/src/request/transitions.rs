//! The request state machine in one table: every action, the states it may
//! be taken from, and the states it may lead to. Each transition method
//! starts with [`RequestRecord::require`], which reads this table, so the
//! table is not documentation beside the code but the rule itself; a test
//! checks that every method lands in one of the states listed.
//!
//! ```text
//! request:  pending ──approve(s)──> approved ──activate──> active ──> expired | revoked | released
//!              │  │                     │  ▲                   └──> revoke_failed ──> (retried) ──> ...
//!              │  └─> scheduled ──start─┘  │
//!              └──> denied | cancelled | timed_out
//! ```

use super::{RequestRecord, RequestState};
use crate::error::RuleError;

use RequestState::{
    Active, Approved, Cancelled, Denied, Expired, Pending, Released, RevokeFailed, Revoked, Scheduled, TimedOut,
};

/// Everything that can happen to an existing request or grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// An approval of the request (or of the grant's pending extension).
    Approve,
    /// A denial of the request (or of the grant's pending extension).
    Deny,
    /// The requester (or an admin) withdraws it.
    Cancel,
    /// Hallpass withdraws it because what it depended on is gone (its role
    /// was deleted, its requester was locked).
    Withdraw,
    /// Hallpass refuses it when it was to take effect: the requester may no
    /// longer request the role, or the policies now deny it.
    Refuse,
    TimeOut,
    Escalate,
    StartScheduled,
    Activate,
    Extend,
    /// Ending the grant: release, revoke or expiry, when the target confirmed.
    End,
    /// Ending the grant failed on the target.
    EndFailed,
    AcknowledgeReview,
}

impl Action {
    /// The verb for messages ("cannot approve it").
    pub fn verb(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Deny => "deny",
            Action::Cancel => "cancel",
            Action::Withdraw => "withdraw",
            Action::Refuse => "refuse",
            Action::TimeOut => "time out",
            Action::Escalate => "escalate",
            Action::StartScheduled => "start",
            Action::Activate => "activate",
            Action::Extend => "extend",
            Action::End => "end",
            Action::EndFailed => "end",
            Action::AcknowledgeReview => "review",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Transition {
    pub action: Action,
    pub from: &'static [RequestState],
    pub to: &'static [RequestState],
}

/// The state machine. Approving and denying an active grant act on its
/// pending extension; the grant stays active.
pub const TRANSITIONS: &[Transition] = &[
    Transition {
        action: Action::Approve,
        from: &[Pending, Active],
        to: &[Pending, Approved, Scheduled, Active],
    },
    Transition {
        action: Action::Deny,
        from: &[Pending, Active],
        to: &[Denied, Active],
    },
    Transition {
        action: Action::Cancel,
        from: &[Pending, Scheduled],
        to: &[Cancelled],
    },
    Transition {
        action: Action::Withdraw,
        from: &[Pending, Approved, Scheduled],
        to: &[Cancelled],
    },
    Transition {
        action: Action::Refuse,
        from: &[Pending, Approved, Scheduled],
        to: &[Denied],
    },
    Transition {
        action: Action::TimeOut,
        from: &[Pending],
        to: &[TimedOut],
    },
    Transition {
        action: Action::Escalate,
        from: &[Pending],
        to: &[Pending],
    },
    Transition {
        action: Action::StartScheduled,
        from: &[Scheduled],
        to: &[Approved],
    },
    Transition {
        action: Action::Activate,
        from: &[Approved],
        to: &[Active],
    },
    Transition {
        action: Action::Extend,
        from: &[Active],
        to: &[Active],
    },
    Transition {
        action: Action::End,
        from: &[Active, RevokeFailed],
        to: &[Expired, Revoked, Released],
    },
    Transition {
        action: Action::EndFailed,
        from: &[Active, RevokeFailed],
        to: &[RevokeFailed],
    },
    Transition {
        action: Action::AcknowledgeReview,
        from: &[Approved, Active, RevokeFailed, Expired, Revoked, Released],
        to: &[Approved, Active, RevokeFailed, Expired, Revoked, Released],
    },
];

/// The row for `action`.
pub fn transition(action: Action) -> &'static Transition {
    // Every action has exactly one row (checked by a test); the fallback is
    // unreachable but keeps this total without a panic.
    TRANSITIONS
        .iter()
        .find(|t| t.action == action)
        .unwrap_or(&TRANSITIONS[0])
}

impl RequestRecord {
    /// Refuses `action` unless the table allows it from the current state.
    pub(crate) fn require(&self, action: Action) -> Result<(), RuleError> {
        if transition(action).from.contains(&self.state) {
            Ok(())
        } else {
            Err(self.wrong_state(action))
        }
    }

    pub(crate) fn wrong_state(&self, action: Action) -> RuleError {
        RuleError::WrongState {
            id: self.id.clone(),
            state: self.state,
            action: action.verb(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_one_row() {
        let actions = [
            Action::Approve,
            Action::Deny,
            Action::Cancel,
            Action::Withdraw,
            Action::Refuse,
            Action::TimeOut,
            Action::Escalate,
            Action::StartScheduled,
            Action::Activate,
            Action::Extend,
            Action::End,
            Action::EndFailed,
            Action::AcknowledgeReview,
        ];
        for action in actions {
            let rows = TRANSITIONS.iter().filter(|t| t.action == action).count();
            assert_eq!(rows, 1, "{action:?}");
        }
        assert_eq!(TRANSITIONS.len(), actions.len());
    }

    #[test]
    fn final_states_allow_nothing_but_reviews() {
        for state in [Denied, Cancelled, TimedOut, Expired, Revoked, Released] {
            for row in TRANSITIONS.iter().filter(|t| t.from.contains(&state)) {
                assert_eq!(row.action, Action::AcknowledgeReview, "{state} allows {:?}", row.action);
            }
        }
    }
}
