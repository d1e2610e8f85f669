//! The JSON shape of the Hallpass HTTP API, shared by the server and every
//! client. Nothing else in the workspace defines wire types; the server maps
//! domain records onto these, and the OpenAPI document is generated from them.
//!
//! Inputs reject unknown fields so typos surface as errors instead of being
//! silently ignored.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_duration`, `not_found`.
    pub code: String,
    /// What was wrong and how to fix it.
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

// ---------------------------------------------------------------- identity

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub principal: String,
    pub groups: Vec<String>,
    pub token_id: String,
    pub admin: bool,
    pub token_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub principal: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Lifetime such as `30d` or `12h`; omitted means the token never expires.
    #[serde(default)]
    pub ttl: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub principal: String,
    pub groups: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Returned once, at creation: the only time the secret is visible.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The secret bearer token (`hp_...`). Hallpass keeps only its hash.
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

// ---------------------------------------------------------- configuration

/// A system Hallpass issues credentials on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub name: String,
    /// Target type; this build supports `jwt`.
    #[serde(rename = "type")]
    pub target_type: String,
    /// Type-specific settings. For `jwt`: `{"audience": "..."}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Target {
    #[serde(flatten)]
    pub spec: TargetSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Approval needed for a role: `required` approvals from distinct `approvers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    /// Subjects such as `group:approvers` or `user:carol`.
    pub approvers: Vec<String>,
    #[serde(default = "one")]
    pub required: u32,
}

fn one() -> u32 {
    1
}

/// A requestable bundle of access on one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    pub name: String,
    pub target: String,
    #[serde(default)]
    pub description: String,
    /// Duration used when a request names none, e.g. `1h`. Defaults to `max_duration`.
    #[serde(default)]
    pub default_duration: Option<String>,
    /// Longest duration a request may ask for, e.g. `4h`.
    pub max_duration: String,
    /// Subjects allowed to request the role, e.g. `group:dev`.
    #[serde(default)]
    pub requestable_by: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Approval needed; omit it and set `auto_approve` for self-service roles.
    #[serde(default)]
    pub approval: Option<ApprovalSpec>,
    #[serde(default)]
    pub auto_approve: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Role {
    #[serde(flatten)]
    pub spec: RoleSpec,
    pub default_duration_seconds: u64,
    pub max_duration_seconds: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The desired access configuration, as written in an HCL file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
    /// Compute and return the changes without making them.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Create,
    Update,
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// `target` or `role`.
    pub kind: String,
    pub name: String,
    pub action: ChangeAction,
    /// Top-level fields that differ, for updates.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApplyResponse {
    pub dry_run: bool,
    pub changes: Vec<Change>,
}

// --------------------------------------------------------------- requests

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub role: String,
    /// How long access should last once active, e.g. `30m` or `1h30m`.
    /// Omitted means the role's default duration.
    #[serde(default)]
    pub duration: Option<String>,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalRecord {
    pub approver: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecisionRecord {
    pub by: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// An access request; once active it is also the grant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessRequest {
    pub id: String,
    pub role: String,
    pub target: String,
    pub requester: String,
    /// `pending`, `approved`, `active`, `denied`, `cancelled`, `expired`,
    /// `revoked`, `released` or `revoke_failed`.
    pub state: String,
    pub duration_seconds: u64,
    pub reason: String,
    pub ticket: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub auto_approved: bool,
    pub required_approvals: u32,
    /// Subjects who may approve.
    pub approvers: Vec<String>,
    pub approvals: Vec<ApprovalRecord>,
    /// Who denied or cancelled the request.
    pub decision: Option<DecisionRecord>,
    /// Who ended the grant early, and why.
    pub ended_by: Option<DecisionRecord>,
    /// Non-secret description of the issued credential.
    #[schema(value_type = Option<Object>)]
    pub credential: Option<serde_json::Value>,
    /// Last error from the target while ending the grant.
    pub revoke_error: Option<String>,
    pub revoke_attempts: u32,
    pub next_revoke_at: Option<DateTime<Utc>>,
    /// Monotonic change counter, for long-polling with `?wait_version=`.
    pub version: u64,
}

/// The secret credential of an active grant, for its requester only.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Credential {
    pub request_id: String,
    #[serde(rename = "type")]
    pub credential_type: String,
    pub expires_at: DateTime<Utc>,
    /// The JWT itself for `jwt` targets.
    pub token: String,
    /// Environment variables a tool can consume, e.g. `HALLPASS_JWT`.
    pub env: BTreeMap<String, String>,
}

// ------------------------------------------------------------ introspection

/// RFC 7662 token introspection response.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IntrospectBody {
    pub token: String,
    #[serde(default)]
    pub token_type_hint: Option<String>,
}

// ------------------------------------------------------------------- audit

/// One hash-chained audit event, exactly as exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    pub seq: u64,
    /// RFC 3339 time, as hashed.
    pub time: String,
    pub actor: String,
    pub kind: String,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub events_checked: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub head_hash: Option<String>,
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
}
