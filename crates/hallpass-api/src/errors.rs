//! Every error response: `{"error": {"code": "...", "message": "...",
//! "request_id": "..."}}`. `code` is stable and machine-readable; clients
//! match on [`ErrorCode`], people read `message`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// What was wrong and how to fix it.
    pub message: String,
    /// The id of the HTTP request (also in the `x-request-id` header and
    /// the server's access log), for support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident => $text:literal, )*) => {
        /// Why a call failed.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
            /// A code from a newer server.
            Other(String),
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            pub fn as_str(&self) -> &str {
                match self {
                    $( ErrorCode::$variant => $text, )*
                    ErrorCode::Other(text) => text,
                }
            }
        }

        impl FromStr for ErrorCode {
            type Err = std::convert::Infallible;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Ok(match text {
                    $( $text => ErrorCode::$variant, )*
                    other => ErrorCode::Other(other.to_string()),
                })
            }
        }
    };
}

error_codes! {
    /// No `Authorization: Bearer` header.
    MissingToken => "missing_token",
    /// The token is malformed, unknown, revoked or expired.
    InvalidToken => "invalid_token",
    /// Too many failed authentications from this address; wait and retry.
    TooManyFailures => "too_many_failures",
    Forbidden => "forbidden",
    /// The principal is locked by an admin.
    Locked => "locked",
    NotFound => "not_found",
    InvalidJson => "invalid_json",
    InvalidQuery => "invalid_query",
    InvalidForm => "invalid_form",
    UnsupportedMediaType => "unsupported_media_type",
    PayloadTooLarge => "payload_too_large",
    InvalidName => "invalid_name",
    ReservedName => "reserved_name",
    InvalidDuration => "invalid_duration",
    InvalidSubject => "invalid_subject",
    InvalidState => "invalid_state",
    InvalidCursor => "invalid_cursor",
    InvalidRole => "invalid_role",
    InvalidApprovalFlow => "invalid_approval_flow",
    InvalidTargetConfig => "invalid_target_config",
    UnsupportedTargetType => "unsupported_target_type",
    /// A notifier's type, settings or secrets that its type refuses.
    InvalidNotifierConfig => "invalid_notifier_config",
    /// A signed callback (a Slack button) whose signature, age or sender
    /// does not check out.
    InvalidSignature => "invalid_signature",
    UnknownTarget => "unknown_target",
    UnknownApprovalFlow => "unknown_approval_flow",
    Duplicate => "duplicate",
    NameMismatch => "name_mismatch",
    InvalidPolicy => "invalid_policy",
    PolicyCompileError => "policy_compile_error",
    PolicyError => "policy_error",
    InvalidInput => "invalid_input",
    /// A chosen bootstrap or dev token with too little randomness.
    WeakToken => "weak_token",
    ReasonRequired => "reason_required",
    CommentRequired => "comment_required",
    TicketRequired => "ticket_required",
    TooLong => "too_long",
    ControlCharacter => "control_character",
    DurationAboveMax => "duration_above_max",
    TotalDurationAboveMax => "total_duration_above_max",
    SelfApproval => "self_approval",
    NotDistinct => "not_distinct",
    EmergencyNotAllowed => "emergency_not_allowed",
    EmergencyScheduled => "emergency_scheduled",
    InvalidStart => "invalid_start",
    AlreadyApproved => "already_approved",
    WrongState => "wrong_state",
    TimedOut => "timed_out",
    GrantExpired => "grant_expired",
    ExtensionPending => "extension_pending",
    NoOpenReview => "no_open_review",
    /// The request could no longer take effect: its role was deleted, or
    /// its requester may no longer request it.
    NoLongerAllowed => "no_longer_allowed",
    InUse => "in_use",
    /// The caller already has an open request or grant of the role.
    AlreadyOpen => "already_open",
    TokenExists => "token_exists",
    LastAdminToken => "last_admin_token",
    NotActive => "not_active",
    NotLocked => "not_locked",
    /// The target refused or did not answer while issuing.
    IssueFailed => "issue_failed",
    /// The target refused or did not answer (a rotation, a test that
    /// could not run).
    TargetFailed => "target_failed",
    /// The target's type does not offer this operation.
    Unsupported => "unsupported",
    /// A public key to certify that the target's type refuses.
    InvalidPublicKey => "invalid_public_key",
    /// A Terraform plan attached to a request that is not well formed.
    InvalidPlan => "invalid_plan",
    /// The caller holds the role (or waits for it) for another Terraform
    /// plan, or without one: a new plan needs its own approval.
    PlanMismatch => "plan_mismatch",
    RateLimited => "rate_limited",
    /// Too much contention; the call changed nothing and may be retried.
    Busy => "busy",
    Timeout => "timeout",
    Internal => "internal",
}

impl ErrorCode {
    /// True when the same call may simply be tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ErrorCode::Busy | ErrorCode::RateLimited | ErrorCode::Timeout)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let Ok(code) = text.parse();
        Ok(code)
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let known: Vec<&str> = ErrorCode::ALL.iter().map(ErrorCode::as_str).collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "Stable error code. This release sends: {}. Newer releases may add codes.",
                known.join(", ")
            )))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}
