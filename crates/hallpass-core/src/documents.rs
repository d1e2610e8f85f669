//! The access configuration as it is stored: targets, roles, approval flows
//! and policies, each a versioned JSON document.
//!
//! These are not the API's types. The API may rename or reshape its JSON;
//! what is on disk changes only here, with a new version number and a
//! conversion from the old one, and every release reads every earlier
//! version (`tests/fixtures` hold documents written by earlier releases).
//! Version 1 is the first release's shape, which carried no `v` field.
//! Target secrets are never part of a document: the store keeps them
//! sealed, apart.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// The version this release writes.
pub const CURRENT_VERSION: u64 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DocumentError {
    #[error(
        "{kind} document is version {version}, newer than this release reads ({CURRENT_VERSION}); upgrade hallpass"
    )]
    TooNew { kind: &'static str, version: u64 },
    #[error("{kind} document does not decode: {message}")]
    Invalid { kind: &'static str, message: String },
}

/// A stored configuration document.
pub trait Document: Serialize + DeserializeOwned {
    /// For messages: `target`, `role`, ...
    const KIND: &'static str;

    /// Reads a stored document of any version this release knows.
    fn decode(value: &Value) -> Result<Self, DocumentError> {
        let version = value.get("v").and_then(Value::as_u64).unwrap_or(1);
        if version > CURRENT_VERSION {
            return Err(DocumentError::TooNew {
                kind: Self::KIND,
                version,
            });
        }
        // Versions 1 and 2 share their fields (2 only adds optional ones),
        // so both decode directly; a later version converts here.
        let mut body = value.clone();
        if let Some(object) = body.as_object_mut() {
            object.remove("v");
        }
        serde_json::from_value(body).map_err(|e| DocumentError::Invalid {
            kind: Self::KIND,
            message: e.to_string(),
        })
    }

    /// The stored form, tagged with [`CURRENT_VERSION`].
    fn encode(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(object) = value.as_object_mut() {
            object.insert("v".into(), Value::from(CURRENT_VERSION));
        }
        value
    }
}

/// A system Hallpass issues credentials on. Only readable settings; its
/// secrets live sealed beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDocument {
    pub name: String,
    #[serde(rename = "type")]
    pub target_type: String,
    #[serde(default)]
    pub config: Map<String, Value>,
}

impl Document for TargetDocument {
    const KIND: &'static str = "target";
}

/// Where people are told about requests and decisions; its secrets are
/// sealed apart, like a target's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierDocument {
    pub name: String,
    #[serde(rename = "type")]
    pub notifier_type: String,
    #[serde(default)]
    pub config: Map<String, Value>,
}

impl Document for NotifierDocument {
    const KIND: &'static str = "notifier";
}

/// A role's one-stage approval block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDocument {
    pub approvers: Vec<String>,
    pub required: u32,
}

/// A requestable bundle of access on one target, normalised (durations in
/// their shortest form, subjects sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDocument {
    pub name: String,
    pub target: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub default_duration: Option<String>,
    pub max_duration: String,
    /// Since version 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_duration: Option<String>,
    #[serde(default)]
    pub requestable_by: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub approval: Option<ApprovalDocument>,
    #[serde(default)]
    pub approval_flow: Option<String>,
    #[serde(default)]
    pub auto_approve: bool,
    #[serde(default)]
    pub emergency_access: bool,
    #[serde(default = "yes")]
    pub extension_requires_approval: bool,
    /// What to give on the target (database roles, privileges, ACL rules,
    /// SSH principals...), checked by the target type's provider. Since
    /// release 0.2; empty for types that take none.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub grant: Map<String, Value>,
}

impl Document for RoleDocument {
    const KIND: &'static str = "role";
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageDocument {
    pub approvers: Vec<String>,
    #[serde(default = "one")]
    pub required: u32,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub escalate_to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowDocument {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub pending_ttl: Option<String>,
    pub stages: Vec<StageDocument>,
    #[serde(default = "yes")]
    pub distinct_approvers: bool,
    #[serde(default)]
    pub allow_self_approval: bool,
}

impl Document for FlowDocument {
    const KIND: &'static str = "approval flow";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    pub name: String,
    pub source: String,
}

impl Document for PolicyDocument {
    const KIND: &'static str = "policy";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Documents exactly as the first release stored them (copied from a
    /// database it wrote; see tests/fixtures in hallpass-cli).
    const V1_TARGET: &str =
        r#"{"config":{"timeout_seconds":5,"url":"https://127.0.0.1:9/hallpass"},"name":"panel","type":"webhook"}"#;
    const V1_ROLE: &str = r#"{"approval":null,"approval_flow":"two-step","auto_approve":false,"default_duration":"1h","description":"","emergency_access":false,"extension_requires_approval":true,"labels":{},"max_duration":"4h","name":"demo-flow","requestable_by":["group:dev"],"target":"demo"}"#;
    const V1_FLOW: &str = r#"{"allow_self_approval":false,"description":"","distinct_approvers":true,"name":"two-step","pending_ttl":"2h","stages":[{"approvers":["group:approvers"],"escalate_to":["group:security"],"required":1,"timeout":"15m"},{"approvers":["group:security"],"escalate_to":[],"required":1,"timeout":null}]}"#;
    const V1_POLICY: &str = r#"{"name":"guardrails","source":"package hallpass.request\n"}"#;

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn first_release_documents_decode() {
        let target = TargetDocument::decode(&json(V1_TARGET)).unwrap();
        assert_eq!(
            (target.name.as_str(), target.target_type.as_str()),
            ("panel", "webhook")
        );
        let role = RoleDocument::decode(&json(V1_ROLE)).unwrap();
        assert_eq!(role.approval_flow.as_deref(), Some("two-step"));
        assert_eq!(role.max_total_duration, None);
        let flow = FlowDocument::decode(&json(V1_FLOW)).unwrap();
        assert_eq!(flow.stages[0].timeout.as_deref(), Some("15m"));
        assert_eq!(PolicyDocument::decode(&json(V1_POLICY)).unwrap().name, "guardrails");
    }

    #[test]
    fn documents_round_trip_with_their_version() {
        let role = RoleDocument::decode(&json(V1_ROLE)).unwrap();
        let stored = role.encode();
        assert_eq!(stored["v"], CURRENT_VERSION);
        assert_eq!(RoleDocument::decode(&stored).unwrap(), role);
    }

    #[test]
    fn newer_and_broken_documents_are_errors_not_silence() {
        let mut newer = json(V1_POLICY);
        newer["v"] = Value::from(CURRENT_VERSION + 1);
        assert!(matches!(
            PolicyDocument::decode(&newer),
            Err(DocumentError::TooNew { .. })
        ));
        let broken = json(r#"{"name":"p"}"#);
        let error = PolicyDocument::decode(&broken).unwrap_err();
        assert!(error.to_string().contains("missing field `source`"), "{error}");
    }
}
