//! The service layer's one error type: what went wrong, in the caller's
//! terms, with a stable [`ErrorCode`]. It knows nothing of HTTP; the edge
//! (the `http` module) picks the status from [`ErrorKind`]. Internal failures are
//! logged in full and answered with a message that reveals nothing (no
//! paths, SQL, URLs or secrets).

use hallpass_api::ErrorCode;
use hallpass_core::RuleError;
use hallpass_core::documents::DocumentError;
use hallpass_store::StoreError;

/// The class of failure; each front end maps it to its own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No usable credential.
    Unauthenticated,
    /// Authenticated, but not allowed.
    Forbidden,
    NotFound,
    /// The input is wrong; nothing changed.
    Invalid,
    /// The input is fine but the current state refuses it.
    Conflict,
    /// Too many calls; `retry_after_seconds` says when to come back.
    RateLimited,
    /// A target system refused or did not answer.
    TargetFailed,
    /// Contention: nothing changed and the same call may succeed later.
    Busy,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    pub kind: ErrorKind,
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_seconds: Option<u64>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(kind: ErrorKind, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            retry_after_seconds: None,
        }
    }

    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, ErrorCode::NotFound, message)
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    pub fn unauthenticated(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, code, message)
    }

    pub fn rate_limited(code: ErrorCode, message: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self {
            retry_after_seconds: Some(retry_after_seconds.max(1)),
            ..Self::new(ErrorKind::RateLimited, code, message)
        }
    }

    pub fn busy(message: impl Into<String>) -> Self {
        Self {
            retry_after_seconds: Some(1),
            ..Self::new(ErrorKind::Busy, ErrorCode::Busy, message)
        }
    }

    /// Logs `detail` and answers with a message that reveals nothing of it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            ErrorKind::Internal,
            ErrorCode::Internal,
            "internal server error; the server log has the details",
        )
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AppError {}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            // A unique key refused a write another caller made first: the
            // transaction's own checks normally see it coming, so this is a
            // race lost; nothing was written.
            StoreError::Conflict(_) => {
                AppError::busy("another change to the same thing happened at the same moment; try again")
            }
            other => AppError::internal(other),
        }
    }
}

impl From<DocumentError> for AppError {
    fn from(error: DocumentError) -> Self {
        AppError::internal(error)
    }
}

impl From<RuleError> for AppError {
    fn from(error: RuleError) -> Self {
        use ErrorCode as C;
        use ErrorKind as K;
        use hallpass_core::text::TextField;
        let message = error.to_string();
        let (kind, code) = match error {
            RuleError::DurationAboveMax { .. } => (K::Invalid, C::DurationAboveMax),
            RuleError::TotalDurationAboveMax { .. } => (K::Invalid, C::TotalDurationAboveMax),
            RuleError::Required(TextField::Reason) => (K::Invalid, C::ReasonRequired),
            RuleError::Required(TextField::Comment) => (K::Invalid, C::CommentRequired),
            RuleError::Required(TextField::Ticket) => (K::Invalid, C::TicketRequired),
            RuleError::TooLong { .. } => (K::Invalid, C::TooLong),
            RuleError::ControlCharacter { .. } => (K::Invalid, C::ControlCharacter),
            RuleError::NotRequestable { .. }
            | RuleError::NotAnApprover { .. }
            | RuleError::NotRequester { .. }
            | RuleError::NotAReviewer { .. } => (K::Forbidden, C::Forbidden),
            RuleError::SelfApproval(_) | RuleError::SelfDenial(_) | RuleError::SelfReview(_) => {
                (K::Forbidden, C::SelfApproval)
            }
            RuleError::NotDistinct { .. } => (K::Forbidden, C::NotDistinct),
            RuleError::EmergencyNotAllowed(_) => (K::Forbidden, C::EmergencyNotAllowed),
            RuleError::EmergencyScheduled => (K::Invalid, C::EmergencyScheduled),
            RuleError::ScheduledInPast(_) | RuleError::ScheduledTooFar { .. } => (K::Invalid, C::InvalidStart),
            RuleError::ExtensionEmpty => (K::Invalid, C::InvalidDuration),
            RuleError::AlreadyApproved { .. } => (K::Conflict, C::AlreadyApproved),
            RuleError::AlreadyDecided(_) | RuleError::WrongState { .. } => (K::Conflict, C::WrongState),
            RuleError::TimedOut { .. } => (K::Conflict, C::TimedOut),
            RuleError::GrantExpired { .. } => (K::Conflict, C::GrantExpired),
            RuleError::ExtensionPending { .. } => (K::Conflict, C::ExtensionPending),
            RuleError::NoOpenReview(_) => (K::Conflict, C::NoOpenReview),
            RuleError::InvalidPlan(_) => (K::Invalid, C::InvalidPlan),
        };
        AppError::new(kind, code, message)
    }
}
