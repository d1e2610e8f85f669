//! The access configuration: targets, roles, approval flows and policies,
//! as sent (`...Spec`) and as read back, and `apply`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::{WriteOnly, formats};

/// A system Hallpass issues credentials on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    #[schema(value_type = formats::Name)]
    pub name: String,
    #[serde(rename = "type")]
    #[schema(value_type = formats::TargetType)]
    pub target_type: String,
    /// Readable, type-specific settings. For `jwt`: `{"audience": "..."}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Write-only credentials the target type takes (e.g. a webhook's
    /// `hmac_secret`): sealed at rest, never returned. Omitted: the stored
    /// secrets stay as they are. Given: exactly these secrets are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<BTreeMap<String, WriteOnly>>,
}

/// A secret of a target, by name: values are never returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretInfo {
    pub name: String,
    pub updated_at: DateTime<Utc>,
}

/// A target as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Target {
    pub name: String,
    #[serde(rename = "type")]
    pub target_type: String,
    #[schema(value_type = Object)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The names of its secrets and when each last changed.
    pub secrets: Vec<SecretInfo>,
    /// For types whose hosts must trust a Hallpass key (ssh): the line to
    /// trust, e.g. for sshd's `TrustedUserCAKeys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_public_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What `POST /v1/targets/{name}/test` found: can the target's admin
/// credentials do what issuing and revoking need?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetTest {
    pub target: String,
    /// True when every check passed.
    pub ok: bool,
    pub checks: Vec<TargetCheck>,
}

/// One check of a target test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetCheck {
    /// What was checked, e.g. `connect` or `createrole`.
    pub name: String,
    pub ok: bool,
    /// What was found; on failure, what is missing and how to fix it.
    pub detail: String,
}

/// What `POST /v1/targets/{name}/rotate` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RotateResult {
    pub target: String,
    /// The secret replaced, e.g. `password`; its new value is known only
    /// to Hallpass.
    pub secret: String,
    pub rotated_at: DateTime<Utc>,
}

/// Approval needed for a role: `required` approvals from distinct `approvers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    /// Subjects such as `group:approvers` or `user:carol`.
    #[schema(value_type = Vec<formats::Subject>, min_items = 1)]
    pub approvers: Vec<String>,
    #[serde(default = "one", deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 100)]
    pub required: u32,
}

fn one() -> u32 {
    1
}

/// A `u32` written as a JSON integer or as a number with no fractional
/// part (`3.0`): JSON Schema's `integer` is both, and a client generated
/// from the document may send either.
fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    struct WholeNumber;

    impl Visitor<'_> for WholeNumber {
        type Value = u32;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a whole number from 0 to {}", u32::MAX)
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<u32, E> {
            u32::try_from(value).map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<u32, E> {
            u32::try_from(value).map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<u32, E> {
            let whole = value.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&value);
            if whole {
                // Exact: a whole number within u32's range.
                Ok(value as u32)
            } else {
                Err(E::invalid_value(Unexpected::Float(value), &self))
            }
        }
    }

    deserializer.deserialize_any(WholeNumber)
}

fn yes() -> bool {
    true
}

/// Most labels a role may carry: the server refuses more.
pub const MAX_ROLE_LABELS: usize = 64;

fn labels_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!("Free-form key/value strings, at most {MAX_ROLE_LABELS}.")))
        .additional_properties(Some(AdditionalProperties::RefOr(
            ObjectBuilder::new().schema_type(Type::String).into(),
        )))
        .max_properties(Some(MAX_ROLE_LABELS))
        .build()
}

/// A requestable bundle of access on one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    #[schema(value_type = formats::Name)]
    pub name: String,
    #[schema(value_type = formats::Name)]
    pub target: String,
    #[serde(default)]
    pub description: String,
    /// Duration used when a request names none, e.g. `1h`; at most
    /// `max_duration`. Defaults to one hour, or `max_duration` if that is
    /// shorter.
    #[serde(default)]
    #[schema(value_type = Option<formats::DurationText>)]
    pub default_duration: Option<String>,
    /// Longest duration a request (or one extension) may ask for, e.g. `4h`.
    #[schema(value_type = formats::DurationText)]
    pub max_duration: String,
    /// Longest a grant may last with all its extensions; at least
    /// `max_duration`. Defaults to three times `max_duration`.
    #[serde(default)]
    #[schema(value_type = Option<formats::DurationText>)]
    pub max_total_duration: Option<String>,
    /// Subjects allowed to request the role, e.g. `group:dev`. Required:
    /// a role nobody may request is refused.
    #[serde(default)]
    #[schema(value_type = Vec<formats::Subject>, min_items = 1, required = true)]
    pub requestable_by: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = labels_schema)]
    pub labels: BTreeMap<String, String>,
    /// Approval needed, as a one-stage shorthand; omit it and set
    /// `approval_flow` or `auto_approve` instead.
    #[serde(default)]
    pub approval: Option<ApprovalSpec>,
    /// Name of an approval flow (ordered stages) requests for this role go through.
    #[serde(default)]
    #[schema(value_type = Option<formats::Name>)]
    pub approval_flow: Option<String>,
    #[serde(default)]
    pub auto_approve: bool,
    /// Allows break-glass requests: granted at once unless a policy denies
    /// them, flagged, and reviewed afterwards.
    #[serde(default)]
    pub emergency_access: bool,
    /// Whether extending a grant goes through approval again (default true).
    /// When false, extensions only need the policies' consent.
    #[serde(default = "yes")]
    pub extension_requires_approval: bool,
    /// What to give on the target, by target type: `roles` (postgres),
    /// `privileges` and `on` (mysql), `acl` (redis), `principals` and
    /// `extensions` (ssh), `session_policy` (aws). Checked by the target's
    /// type; types that give nothing role-specific take none.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub grant: serde_json::Map<String, serde_json::Value>,
}

/// A role as stored, normalised, with its durations in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Role {
    pub name: String,
    pub target: String,
    pub description: String,
    pub default_duration: String,
    pub max_duration: String,
    pub max_total_duration: String,
    pub requestable_by: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub approval: Option<ApprovalSpec>,
    pub approval_flow: Option<String>,
    pub auto_approve: bool,
    pub emergency_access: bool,
    pub extension_requires_approval: bool,
    /// What the role gives on its target (see `RoleSpec::grant`).
    #[schema(value_type = Object)]
    pub grant: serde_json::Map<String, serde_json::Value>,
    pub default_duration_seconds: u64,
    pub max_duration_seconds: u64,
    pub max_total_duration_seconds: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One stage of an approval flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Subjects such as `group:dev-leads` or `user:carol`.
    #[schema(value_type = Vec<formats::Subject>, min_items = 1)]
    pub approvers: Vec<String>,
    /// Distinct approvals this stage needs.
    #[serde(default = "one", deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 100)]
    pub required: u32,
    /// After this long (e.g. `15m`) `escalate_to` may approve the stage
    /// too. Given if and only if `escalate_to` is not empty.
    #[serde(default)]
    #[schema(value_type = Option<formats::DurationText>)]
    pub timeout: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<formats::Subject>)]
    pub escalate_to: Vec<String>,
}

/// Ordered approval stages; stage N opens when stage N-1 reaches its quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalFlowSpec {
    #[schema(value_type = formats::Name)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A request still pending this long after it was made times out.
    /// Defaults to `24h`.
    #[serde(default)]
    #[schema(value_type = Option<formats::DurationText>)]
    pub pending_ttl: Option<String>,
    #[schema(min_items = 1, max_items = 10)]
    pub stages: Vec<StageSpec>,
    /// One person's approval counts in one stage only (default true).
    #[serde(default = "yes")]
    pub distinct_approvers: bool,
    /// Whether requesters may approve their own requests (default false).
    #[serde(default)]
    pub allow_self_approval: bool,
}

/// An approval flow as stored, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalFlow {
    pub name: String,
    pub description: String,
    pub pending_ttl: String,
    pub stages: Vec<StageSpec>,
    pub distinct_approvers: bool,
    pub allow_self_approval: bool,
    pub pending_ttl_seconds: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A Rego module. Rules in package `hallpass.request` decide requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    #[schema(value_type = formats::Name)]
    pub name: String,
    /// The Rego source text.
    #[schema(value_type = formats::PolicySource)]
    pub source: String,
}

/// Body of `PUT /v1/policies/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    #[schema(value_type = formats::PolicySource)]
    pub source: String,
}

/// A policy as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Policy {
    pub name: String,
    pub source: String,
    /// SHA-256 of the source, hex.
    pub source_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Body of `POST /v1/policies/eval`: a hypothetical policy input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyEvalBody {
    /// The document policies see as `input` (see docs/policies.md).
    #[schema(value_type = Object)]
    pub input: serde_json::Map<String, serde_json::Value>,
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
    #[serde(default)]
    pub notifiers: Vec<crate::NotifierSpec>,
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

/// What kind of configuration a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfigKind {
    Target,
    Role,
    ApprovalFlow,
    Policy,
    Notifier,
}

impl ConfigKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Target => "target",
            ConfigKind::Role => "role",
            ConfigKind::ApprovalFlow => "approval_flow",
            ConfigKind::Policy => "policy",
            ConfigKind::Notifier => "notifier",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub kind: ConfigKind,
    pub name: String,
    pub action: ChangeAction,
    /// Top-level fields that differ, for updates.
    pub fields: Vec<String>,
    /// Secrets (by name) that are added, changed or removed. Values are
    /// compared on the server and never returned.
    #[serde(default)]
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApplyResponse {
    pub dry_run: bool,
    pub changes: Vec<Change>,
}

impl Target {
    /// The spec that stores this target again; its secrets stay as stored.
    pub fn to_spec(&self) -> TargetSpec {
        TargetSpec {
            name: self.name.clone(),
            target_type: self.target_type.clone(),
            config: self.config.clone(),
            secrets: None,
        }
    }
}

impl Role {
    /// The spec that stores this role again, unchanged.
    pub fn to_spec(&self) -> RoleSpec {
        RoleSpec {
            name: self.name.clone(),
            target: self.target.clone(),
            description: self.description.clone(),
            default_duration: Some(self.default_duration.clone()),
            max_duration: self.max_duration.clone(),
            max_total_duration: Some(self.max_total_duration.clone()),
            requestable_by: self.requestable_by.clone(),
            labels: self.labels.clone(),
            approval: self.approval.clone(),
            approval_flow: self.approval_flow.clone(),
            auto_approve: self.auto_approve,
            emergency_access: self.emergency_access,
            extension_requires_approval: self.extension_requires_approval,
            grant: self.grant.clone(),
        }
    }
}

impl ApprovalFlow {
    /// The spec that stores this flow again, unchanged.
    pub fn to_spec(&self) -> ApprovalFlowSpec {
        ApprovalFlowSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            pending_ttl: Some(self.pending_ttl.clone()),
            stages: self.stages.clone(),
            distinct_approvers: self.distinct_approvers,
            allow_self_approval: self.allow_self_approval,
        }
    }
}
