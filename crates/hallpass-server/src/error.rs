//! The server's one error type: an HTTP status, a stable code and a message
//! written for the person who sent the request. Internal failures are logged
//! in full and answered with a generic message, so nothing internal (paths,
//! SQL, secrets) leaks to callers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hallpass_api::{ErrorBody, ErrorDetail};
use hallpass_core::RuleError;
use hallpass_store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// Logs `detail` and answers with a message that reveals nothing of it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error; the server log has the details",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError::internal(error)
    }
}

impl From<RuleError> for ApiError {
    fn from(error: RuleError) -> Self {
        let message = error.to_string();
        let (status, code) = match error {
            RuleError::DurationAboveMax { .. } => (StatusCode::BAD_REQUEST, "duration_above_max"),
            RuleError::ReasonRequired => (StatusCode::BAD_REQUEST, "reason_required"),
            RuleError::ReasonTooLong(_) | RuleError::TicketTooLong(_) | RuleError::CommentTooLong(_) => {
                (StatusCode::BAD_REQUEST, "too_long")
            }
            RuleError::CommentRequired => (StatusCode::BAD_REQUEST, "comment_required"),
            RuleError::NotRequestable { .. }
            | RuleError::NotAnApprover { .. }
            | RuleError::NotRequester { .. }
            | RuleError::NotAReviewer { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            RuleError::SelfApproval(_) | RuleError::SelfDenial(_) | RuleError::SelfReview(_) => {
                (StatusCode::FORBIDDEN, "self_approval")
            }
            RuleError::NotDistinct { .. } => (StatusCode::FORBIDDEN, "not_distinct"),
            RuleError::EmergencyNotAllowed(_) => (StatusCode::FORBIDDEN, "emergency_not_allowed"),
            RuleError::EmergencyScheduled => (StatusCode::BAD_REQUEST, "emergency_scheduled"),
            RuleError::ScheduledInPast(_) | RuleError::ScheduledTooFar(_) => (StatusCode::BAD_REQUEST, "invalid_start"),
            RuleError::ExtensionEmpty => (StatusCode::BAD_REQUEST, "invalid_duration"),
            RuleError::AlreadyApproved { .. } => (StatusCode::CONFLICT, "already_approved"),
            RuleError::AlreadyDecided(_) | RuleError::WrongState { .. } => (StatusCode::CONFLICT, "wrong_state"),
            RuleError::TimedOut { .. } => (StatusCode::CONFLICT, "timed_out"),
            RuleError::GrantExpired { .. } => (StatusCode::CONFLICT, "grant_expired"),
            RuleError::ExtensionPending { .. } => (StatusCode::CONFLICT, "extension_pending"),
            RuleError::NoOpenReview(_) => (StatusCode::CONFLICT, "no_open_review"),
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}
