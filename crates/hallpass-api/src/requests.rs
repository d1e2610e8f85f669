//! Access requests, grants, extensions, reviews, credentials and token
//! introspection.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
pub use hallpass_core::request::{ExtensionState, RequestState, TerraformPlan};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{PolicyDecision, formats};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    #[schema(value_type = formats::Name)]
    pub role: String,
    /// How long access should last once active, e.g. `30m` or `1h30m`.
    /// Omitted means the role's default duration.
    #[serde(default)]
    #[schema(value_type = Option<formats::DurationText>)]
    pub duration: Option<String>,
    #[schema(value_type = formats::Reason)]
    pub reason: String,
    #[serde(default)]
    #[schema(value_type = Option<formats::Ticket>)]
    pub ticket: Option<String>,
    /// Break-glass: granted at once on roles with `emergency_access`, and
    /// reviewed afterwards.
    #[serde(default)]
    pub emergency: bool,
    /// Activate at this time instead of at approval (state `scheduled`).
    #[serde(default)]
    pub scheduled_start: Option<DateTime<Utc>>,
    /// For SSH targets: your public key (an `authorized_keys` line, e.g.
    /// `ssh-ed25519 AAAA... you@laptop`) to certify. Without one, Hallpass
    /// makes a key pair for the grant and hands out its private key with
    /// the credentials.
    #[serde(default)]
    #[schema(max_length = 16384)]
    pub ssh_public_key: Option<String>,
    /// The saved Terraform plan the access is for: its SHA-256 and the
    /// resources it changes. Approvers see it, policies read it as
    /// `input.request.plan`, and `hallpass terraform apply` applies only a
    /// file with this digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<TerraformPlan>,
}

/// What `POST /v1/requests` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// A new request (pending, approved, scheduled, active or denied).
    Created,
    /// The caller already had an open request for the role: that one,
    /// unchanged.
    ExistingRequest,
    /// The caller already holds the role for at least as long as asked:
    /// that grant, unchanged.
    ExistingGrant,
    /// The caller holds the role; an extension of it now awaits approval.
    ExtensionRequested,
    /// The caller holds the role; it was extended at once.
    Extended,
    /// The caller holds the role; the policies refused to extend it.
    ExtensionDenied,
}

/// The answer of `POST /v1/requests`: what happened, and the request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateRequestResponse {
    pub outcome: RequestOutcome,
    #[serde(flatten)]
    pub request: AccessRequest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// How much longer, e.g. `30m`.
    #[schema(value_type = formats::DurationText)]
    pub by: String,
    #[schema(value_type = formats::Reason)]
    pub reason: String,
    #[serde(default)]
    #[schema(value_type = Option<formats::Ticket>)]
    pub ticket: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewAckBody {
    /// What the reviewer checked.
    #[schema(value_type = formats::RequiredComment)]
    pub comment: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[serde(default)]
    #[schema(value_type = Option<formats::Comment>)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// Why the grant ends early, under the same rules as a request's reason.
    #[schema(value_type = formats::Reason)]
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

/// Where an approval stage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    /// An earlier stage is still open.
    Waiting,
    Open,
    Approved,
}

impl StageState {
    pub fn as_str(self) -> &'static str {
        match self {
            StageState::Waiting => "waiting",
            StageState::Open => "open",
            StageState::Approved => "approved",
        }
    }
}

impl std::fmt::Display for StageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Progress of one approval stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageProgress {
    /// 1-based.
    pub number: u32,
    pub state: StageState,
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
    pub state: ExtensionState,
    pub auto_approved: bool,
    pub approval: Option<FlowProgress>,
    pub decision: Option<DecisionRecord>,
    pub policy: Option<PolicyDecision>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Open,
    Acknowledged,
}

impl ReviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Open => "open",
            ReviewState::Acknowledged => "acknowledged",
        }
    }
}

impl std::fmt::Display for ReviewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The post-hoc review of a break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewRecord {
    pub state: ReviewState,
    pub opened_at: DateTime<Utc>,
    pub acknowledged: Option<DecisionRecord>,
}

/// An access request; once active it is also the grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AccessRequest {
    pub id: String,
    pub role: String,
    pub target: String,
    pub requester: String,
    pub state: RequestState,
    pub duration_seconds: u64,
    /// The duration asked for, when the role's maximum was lowered before
    /// the grant started and the grant got the new maximum instead.
    pub capped_from_seconds: Option<u64>,
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
    /// Who denied or cancelled the request, and why.
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
    /// The Terraform plan the request is for, when one was attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<TerraformPlan>,
    /// Monotonic change counter, for long-polling with `?wait_version=`.
    pub version: u64,
}

/// The secret credential of an active grant, for its requester only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Credential {
    pub request_id: String,
    #[serde(rename = "type")]
    pub credential_type: String,
    pub expires_at: DateTime<Utc>,
    /// The JWT itself for `jwt` targets.
    pub token: String,
    /// Environment variables a tool can consume, e.g. `HALLPASS_JWT`.
    pub env: BTreeMap<String, String>,
    /// Present when part of the credential is handed out once only (the
    /// private key Hallpass made for an SSH grant): whether this answer
    /// carries it in `env`, and when it went out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time: Option<OneTimeSecrets>,
}

/// The part of a credential its requester receives on the first fetch only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OneTimeSecrets {
    /// The names in `env` it is made of, e.g. `HALLPASS_SSH_PRIVATE_KEY`.
    pub names: Vec<String>,
    /// `true` on the first fetch, whose `env` carries them; `false` on any
    /// later fetch, which leaves them out.
    pub included: bool,
    /// When they were handed out (the first fetch).
    pub delivered_at: DateTime<Utc>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("request_id", &self.request_id)
            .field("type", &self.credential_type)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// RFC 7662 token introspection response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectBody {
    pub token: String,
    #[serde(default)]
    pub token_type_hint: Option<String>,
}
