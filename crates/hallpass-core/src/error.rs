//! Why a rule refused a change. Messages say what was wrong and what to do,
//! in the words of the domain: they never name CLI flags or commands, since
//! the same rule answers the CLI, the HTTP API, the Terraform provider and
//! the web interface (each adds its own hints).

use thiserror::Error;

use crate::state::RequestState;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// A Terraform plan attached to a request that is not well formed.
    #[error("{0}")]
    InvalidPlan(String),
    #[error("requested duration {requested} is longer than role {role:?} allows ({max}); ask for {max} or less")]
    DurationAboveMax {
        role: String,
        requested: String,
        max: String,
    },
    #[error(
        "this extension would make grant {id} last {total} in all, more than role {role:?} allows ({max}); \
         ask for {left} or less, or make a new request when it ends"
    )]
    TotalDurationAboveMax {
        id: String,
        role: String,
        total: String,
        max: String,
        left: String,
    },
    #[error("{} is required: {}", .0.as_str(), required_hint(*.0))]
    Required(TextField),
    #[error("the {} is {chars} characters long; keep it under {max}", field.as_str())]
    TooLong { field: TextField, chars: usize, max: usize },
    #[error(
        "the {} holds a control or direction-changing character ({found}); \
         write it as plain text on one line",
        field.as_str()
    )]
    ControlCharacter { field: TextField, found: String },
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
    #[error("you cannot deny your own request {0}; cancel it instead")]
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
        "role {0:?} does not allow emergency access; ask for normal access, or have an admin set emergency_access = true"
    )]
    EmergencyNotAllowed(String),
    #[error("break-glass access starts at once and cannot be scheduled; drop the start time, or ask for normal access")]
    EmergencyScheduled,
    #[error("the start time {0} is in the past; give a future start time, or none to start on approval")]
    ScheduledInPast(String),
    #[error("the start time {at} is more than {max_days} days ahead; ask closer to the time")]
    ScheduledTooFar { at: String, max_days: i64 },
    #[error("request {id} timed out at {at} without a decision; make a new request")]
    TimedOut { id: String, at: String },
    #[error("grant {id} expired at {at}; it can no longer be extended")]
    GrantExpired { id: String, at: String },
    #[error("grant {id} already has extension {number} pending; wait for its decision")]
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

/// Which text a check is about, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    Reason,
    Ticket,
    Comment,
}

impl TextField {
    pub fn as_str(self) -> &'static str {
        match self {
            TextField::Reason => "reason",
            TextField::Ticket => "ticket",
            TextField::Comment => "comment",
        }
    }
}

fn required_hint(field: TextField) -> &'static str {
    match field {
        TextField::Reason => "say why you need this access, e.g. \"INC-123: restart the stuck worker\"",
        TextField::Comment => "say what you checked, e.g. \"matches INC-123, no data exported\"",
        TextField::Ticket => "give the ticket or incident reference",
    }
}
