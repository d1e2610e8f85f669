//! Policies and approval flows as stored configuration: validation on the
//! way in (a policy set that does not compile is refused), the compiled-set
//! cache, and evaluation of hypothetical inputs.

use std::collections::BTreeMap;

use hallpass_api as api;
use hallpass_policy::{PolicyError, PolicyModule, PolicySet};
use hallpass_store::{ConfigKind, ConfigRow};
use sha2::{Digest, Sha256};

use super::{App, check_unique, unknown_flow, unknown_policy};
use crate::access_config::{check_name, normalize_flow};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::gate;

/// Largest policy source accepted, in bytes.
const MAX_POLICY_BYTES: usize = 256 * 1024;

fn compile_error(error: PolicyError) -> ApiError {
    match error {
        PolicyError::Compile { .. } => ApiError::bad_request("policy_compile_error", error.to_string()),
        other => ApiError::bad_request("policy_error", other.to_string()),
    }
}

fn policy_spec(row: &ConfigRow) -> ApiResult<api::PolicySpec> {
    serde_json::from_value(row.document.clone()).map_err(ApiError::internal)
}

fn policy_to_api(row: &ConfigRow) -> ApiResult<api::Policy> {
    Ok(api::Policy {
        spec: policy_spec(row)?,
        source_hash: row.reference.clone(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn flow_to_api(row: &ConfigRow) -> ApiResult<api::ApprovalFlow> {
    let spec: api::ApprovalFlowSpec = serde_json::from_value(row.document.clone()).map_err(ApiError::internal)?;
    let (spec, rules) = normalize_flow(spec)?;
    Ok(api::ApprovalFlow {
        spec,
        pending_ttl_seconds: rules.pending_ttl_seconds,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn source_hash(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

async fn compile(modules: Vec<PolicyModule>) -> ApiResult<PolicySet> {
    // Compiling a large set takes milliseconds: keep it off the async workers.
    tokio::task::spawn_blocking(move || PolicySet::compile(&modules))
        .await
        .map_err(ApiError::internal)?
        .map_err(compile_error)
}

impl App {
    /// Validates policies about to be stored: names, sizes, and that the
    /// whole set they would make (stored policies with these replaced)
    /// compiles. Returns them with their source hashes.
    pub(super) async fn check_policies(
        &self,
        policies: Vec<api::PolicySpec>,
    ) -> ApiResult<Vec<(api::PolicySpec, String)>> {
        if policies.is_empty() {
            return Ok(Vec::new());
        }
        check_unique("policy", policies.iter().map(|p| p.name.as_str()))?;
        let mut set: BTreeMap<String, String> = BTreeMap::new();
        for row in self.inner.store.read(|r| r.configs(ConfigKind::Policy)).await? {
            let spec = policy_spec(&row)?;
            set.insert(spec.name, spec.source);
        }
        let mut checked = Vec::with_capacity(policies.len());
        for spec in policies {
            check_name("policy", &spec.name)?;
            if spec.source.trim().is_empty() {
                return Err(ApiError::bad_request(
                    "invalid_policy",
                    format!("policy {:?} is empty; give it Rego source", spec.name),
                ));
            }
            if spec.source.len() > MAX_POLICY_BYTES {
                return Err(ApiError::bad_request(
                    "invalid_policy",
                    format!(
                        "policy {:?} is {} bytes; keep each policy under {MAX_POLICY_BYTES} bytes",
                        spec.name,
                        spec.source.len()
                    ),
                ));
            }
            set.insert(spec.name.clone(), spec.source.clone());
            let hash = source_hash(&spec.source);
            checked.push((spec, hash));
        }
        let modules = gate::modules(&set.into_iter().collect::<Vec<_>>());
        compile(modules).await?;
        Ok(checked)
    }

    /// The compiled policy set whose hash the store records (`None`: no
    /// policy was ever stored), compiled once per change.
    pub(super) async fn policy_set(&self, expected: Option<String>) -> ApiResult<PolicySet> {
        let expected = expected.unwrap_or_else(|| gate::empty_set_hash().to_string());
        if let Some(set) = self.inner.policies.get(&expected) {
            return Ok(set);
        }
        let rows = self.inner.store.read(|r| r.configs(ConfigKind::Policy)).await?;
        let mut sources = Vec::with_capacity(rows.len());
        for row in &rows {
            let spec = policy_spec(row)?;
            sources.push((spec.name, spec.source));
        }
        let set = compile(gate::modules(&sources)).await?;
        self.inner.policies.put(set.clone());
        Ok(set)
    }

    async fn current_policy_set(&self) -> ApiResult<PolicySet> {
        let hash = self.inner.store.read(|r| r.meta(gate::POLICY_SET_HASH_KEY)).await?;
        self.policy_set(hash).await
    }

    /// The decision the stored policies make for a hypothetical input.
    pub async fn eval_policy(&self, input: serde_json::Value) -> ApiResult<api::PolicyDecision> {
        if !input.is_object() {
            return Err(ApiError::bad_request(
                "invalid_input",
                "input must be a JSON object with principal, role, request and context; see docs/policies.md",
            ));
        }
        let set = self.current_policy_set().await?;
        Ok(gate::evaluate(&set, &input))
    }

    pub async fn list_policies(&self) -> ApiResult<Vec<api::Policy>> {
        let rows = self.inner.store.read(|r| r.configs(ConfigKind::Policy)).await?;
        rows.iter().map(policy_to_api).collect()
    }

    pub async fn get_policy(&self, name: String) -> ApiResult<api::Policy> {
        let lookup = name.clone();
        let row = self
            .inner
            .store
            .read(move |r| r.config(ConfigKind::Policy, &lookup))
            .await?;
        policy_to_api(&row.ok_or_else(|| unknown_policy(&name))?)
    }

    pub async fn put_policy(&self, caller: &Caller, spec: api::PolicySpec) -> ApiResult<api::Policy> {
        caller.require_admin()?;
        let name = spec.name.clone();
        self.apply(
            caller,
            api::ApplyRequest {
                policies: vec![spec],
                ..api::ApplyRequest::default()
            },
        )
        .await?;
        self.get_policy(name).await
    }

    pub async fn list_flows(&self) -> ApiResult<Vec<api::ApprovalFlow>> {
        let rows = self.inner.store.read(|r| r.configs(ConfigKind::ApprovalFlow)).await?;
        rows.iter().map(flow_to_api).collect()
    }

    pub async fn get_flow(&self, name: String) -> ApiResult<api::ApprovalFlow> {
        let lookup = name.clone();
        let row = self
            .inner
            .store
            .read(move |r| r.config(ConfigKind::ApprovalFlow, &lookup))
            .await?;
        flow_to_api(&row.ok_or_else(|| unknown_flow(&name))?)
    }

    pub async fn put_flow(&self, caller: &Caller, spec: api::ApprovalFlowSpec) -> ApiResult<api::ApprovalFlow> {
        caller.require_admin()?;
        let name = spec.name.clone();
        self.apply(
            caller,
            api::ApplyRequest {
                approval_flows: vec![spec],
                ..api::ApplyRequest::default()
            },
        )
        .await?;
        self.get_flow(name).await
    }
}
