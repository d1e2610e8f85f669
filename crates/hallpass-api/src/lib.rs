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
    /// Approval needed, as a one-stage shorthand; omit it and set
    /// `approval_flow` or `auto_approve` instead.
    #[serde(default)]
    pub approval: Option<ApprovalSpec>,
    /// Name of an approval flow (ordered stages) requests for this role go through.
    #[serde(default)]
    pub approval_flow: Option<String>,
    #[serde(default)]
    pub auto_approve: bool,
    /// Allows break-glass requests (`--emergency`): granted at once unless a
    /// policy denies them, flagged, and reviewed afterwards.
    #[serde(default)]
    pub emergency_access: bool,
    /// Whether extending a grant goes through approval again (default true).
    /// When false, extensions only need the policies' consent.
    #[serde(default = "yes")]
    pub extension_requires_approval: bool,
}

fn yes() -> bool {
    true
}

/// One stage of an approval flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Subjects such as `group:dev-leads` or `user:carol`.
    pub approvers: Vec<String>,
    /// Distinct approvals this stage needs.
    #[serde(default = "one")]
    pub required: u32,
    /// After this long (e.g. `15m`) `escalate_to` may approve the stage too.
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub escalate_to: Vec<String>,
}

/// Ordered approval stages; stage N opens when stage N-1 reaches its quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalFlowSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A request still pending this long after it was made times out.
    /// Defaults to `24h`.
    #[serde(default)]
    pub pending_ttl: Option<String>,
    pub stages: Vec<StageSpec>,
    /// One person's approval counts in one stage only (default true).
    #[serde(default = "yes")]
    pub distinct_approvers: bool,
    /// Whether requesters may approve their own requests (default false).
    #[serde(default)]
    pub allow_self_approval: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApprovalFlow {
    #[serde(flatten)]
    pub spec: ApprovalFlowSpec,
    pub pending_ttl_seconds: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A Rego module. Rules in package `hallpass.request` decide requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub name: String,
    /// The Rego source text.
    pub source: String,
}

/// Body of `PUT /v1/policies/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Policy {
    #[serde(flatten)]
    pub spec: PolicySpec,
    /// SHA-256 of the source, hex.
    pub source_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Body of `POST /v1/policies/eval`: a hypothetical policy input.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyEvalBody {
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
}

/// What the policies decided for one request or extension.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyDecision {
    /// SHA-256 over the policy set that decided (names and sources).
    pub policy_hash: String,
    /// Messages from `deny` rules, shown to the requester verbatim.
    pub deny: Vec<String>,
    pub auto_approve: bool,
    pub approval_flow: Option<String>,
    pub max_duration_seconds: Option<u64>,
    /// Set when evaluation failed; the request is then denied (fail closed).
    pub error: Option<String>,
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
    #[serde(default)]
    pub approval_flows: Vec<ApprovalFlowSpec>,
    #[serde(default)]
    pub policies: Vec<PolicySpec>,
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
    /// `target`, `role`, `approval_flow` or `policy`.
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
    /// Break-glass: granted at once on roles with `emergency_access`, and
    /// reviewed afterwards.
    #[serde(default)]
    pub emergency: bool,
    /// Activate at this time instead of at approval (state `scheduled`).
    #[serde(default)]
    pub scheduled_start: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// How much longer, e.g. `30m`.
    pub by: String,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewAckBody {
    pub comment: String,
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

/// Progress of one approval stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageProgress {
    /// 1-based.
    pub number: u32,
    /// `waiting` (an earlier stage is open), `open`, or `approved`.
    pub state: String,
    pub approvers: Vec<String>,
    pub required: u32,
    pub approvals: Vec<ApprovalRecord>,
    pub escalate_to: Vec<String>,
    pub opened_at: Option<DateTime<Utc>>,
    /// When `escalate_to` may approve too (set once the stage is open).
    pub escalates_at: Option<DateTime<Utc>>,
    pub escalated: bool,
    /// Subjects who may still approve this stage now (empty unless open).
    pub may_approve: Vec<String>,
}

/// Where a request (or an extension) stands in its approval flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlowProgress {
    /// The flow's name; absent for a role's inline `approval` block.
    pub flow: Option<String>,
    pub stages: Vec<StageProgress>,
    pub distinct_approvers: bool,
    pub allow_self_approval: bool,
}

/// A request to lengthen an active grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExtensionRecord {
    /// 1-based, per grant.
    pub number: u32,
    pub by_seconds: u64,
    pub reason: String,
    pub ticket: Option<String>,
    pub requested_at: DateTime<Utc>,
    /// `pending`, `approved`, `denied`, `lapsed` (the grant ended first).
    pub state: String,
    pub auto_approved: bool,
    pub approval: Option<FlowProgress>,
    pub decision: Option<DecisionRecord>,
    pub policy: Option<PolicyDecision>,
}

/// The post-hoc review of a break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewRecord {
    /// `open` or `acknowledged`.
    pub state: String,
    pub opened_at: DateTime<Utc>,
    pub acknowledged: Option<DecisionRecord>,
}

/// An access request; once active it is also the grant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessRequest {
    pub id: String,
    pub role: String,
    pub target: String,
    pub requester: String,
    /// `pending`, `approved`, `scheduled`, `active`, `denied`, `cancelled`,
    /// `timed_out`, `expired`, `revoked`, `released` or `revoke_failed`.
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
    /// Break-glass request.
    pub emergency: bool,
    pub scheduled_start: Option<DateTime<Utc>>,
    /// A request still pending then times out.
    pub pending_expires_at: Option<DateTime<Utc>>,
    /// Stage-by-stage approval progress; absent for auto-approved requests.
    pub approval: Option<FlowProgress>,
    /// The policy decision made when the request was created.
    pub policy: Option<PolicyDecision>,
    /// Extensions asked for, oldest first; at most the last one is pending.
    pub extensions: Vec<ExtensionRecord>,
    pub review: Option<ReviewRecord>,
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

pub use hallpass_core::audit::{AuditEvent, VerifyReport};
