//! Policies as stored configuration: validation on the way in (a set that
//! does not compile is refused, checked against the set stored when the
//! change commits), the compiled-set cache, and evaluation of hypothetical
//! inputs for `hallpass policy eval`.

use std::collections::BTreeMap;

use hallpass_api::formats::MAX_POLICY_BYTES;
use hallpass_api::{self as api, ErrorCode};
use hallpass_core::documents::{Document, PolicyDocument};
use hallpass_core::request::PolicyRecord;
use hallpass_policy::{PolicyError, PolicyModule, PolicySet};
use hallpass_store::{ConfigKind, ConfigRow, WriteTx};
use sha2::{Digest, Sha256};

use super::{App, AppError, AppResult, Caller, unknown_config};
use crate::app::access_config::check_name;
use crate::app::wire;
use crate::gate::{self, CompiledPolicies, POLICY_SET_HASH_KEY};

/// Policies checked for storing, and the stored set they were checked with.
pub(crate) struct CheckedPolicies {
    /// Each document with the SHA-256 of its source.
    pub checked: Vec<(PolicyDocument, String)>,
    /// The stored set's hash when the new set was compiled; the change
    /// commits only if it is still the stored one.
    pub based_on: Option<String>,
}

impl CheckedPolicies {
    pub fn is_empty(&self) -> bool {
        self.checked.is_empty()
    }
}

fn compile_error(error: PolicyError) -> AppError {
    match error {
        PolicyError::Compile { .. } => AppError::invalid(ErrorCode::PolicyCompileError, error.to_string()),
        other => AppError::invalid(ErrorCode::PolicyError, other.to_string()),
    }
}

fn source_hash(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

async fn compile(modules: Vec<PolicyModule>) -> AppResult<PolicySet> {
    // Compiling a large set takes milliseconds: keep it off the async workers.
    tokio::task::spawn_blocking(move || PolicySet::compile(&modules))
        .await
        .map_err(AppError::internal)?
        .map_err(compile_error)
}

/// Stores the hash of the whole policy set after a policy changed, in the
/// same transaction, so every replica knows to recompile.
pub(crate) fn record_policy_set_hash(wtx: &mut WriteTx<'_>) -> AppResult<()> {
    let rows = wtx.read().configs(ConfigKind::Policy)?;
    let mut modules = Vec::with_capacity(rows.len());
    for row in &rows {
        let document = policy_document(row)?;
        modules.push(PolicyModule {
            name: document.name,
            source: document.source,
        });
    }
    wtx.put_meta(POLICY_SET_HASH_KEY, &hallpass_policy::set_hash(&modules))?;
    Ok(())
}

fn check_policy(spec: &api::PolicySpec) -> AppResult<()> {
    check_name("policy", &spec.name)?;
    if spec.source.trim().is_empty() {
        return Err(AppError::invalid(
            ErrorCode::InvalidPolicy,
            format!("policy {:?} is empty; give it Rego source", spec.name),
        ));
    }
    if spec.source.len() > MAX_POLICY_BYTES {
        return Err(AppError::invalid(
            ErrorCode::InvalidPolicy,
            format!(
                "policy {:?} is {} bytes; keep each policy under {MAX_POLICY_BYTES} bytes",
                spec.name,
                spec.source.len()
            ),
        ));
    }
    Ok(())
}

impl App {
    /// The stored policies by name, and the stored set's hash.
    async fn stored_policies(&self) -> AppResult<(BTreeMap<String, String>, Option<String>)> {
        self.inner
            .store
            .read(|r| -> AppResult<_> {
                let hash = r.meta(POLICY_SET_HASH_KEY)?;
                let mut set = BTreeMap::new();
                for row in r.configs(ConfigKind::Policy)? {
                    let document = policy_document(&row)?;
                    set.insert(document.name, document.source);
                }
                Ok((set, hash))
            })
            .await
    }

    /// Validates policies about to be stored: names, sizes, and that the
    /// whole set they would make (stored policies with these replaced)
    /// compiles.
    pub(crate) async fn check_policies(&self, policies: Vec<api::PolicySpec>) -> AppResult<CheckedPolicies> {
        if policies.is_empty() {
            return Ok(CheckedPolicies {
                checked: Vec::new(),
                based_on: None,
            });
        }
        let mut names = std::collections::BTreeSet::new();
        for spec in &policies {
            check_policy(spec)?;
            if !names.insert(spec.name.as_str()) {
                return Err(AppError::invalid(
                    ErrorCode::Duplicate,
                    format!("policy {:?} is declared twice", spec.name),
                ));
            }
        }
        let (mut set, based_on) = self.stored_policies().await?;
        let mut checked = Vec::with_capacity(policies.len());
        for spec in policies {
            set.insert(spec.name.clone(), spec.source.clone());
            let hash = source_hash(&spec.source);
            checked.push((
                PolicyDocument {
                    name: spec.name,
                    source: spec.source,
                },
                hash,
            ));
        }
        compile(gate::modules(&set.into_iter().collect::<Vec<_>>())).await?;
        Ok(CheckedPolicies { checked, based_on })
    }

    /// Checks that the stored set still compiles without policy `name`.
    pub(crate) async fn check_policy_removal(&self, name: &str) -> AppResult<CheckedPolicies> {
        let (mut set, based_on) = self.stored_policies().await?;
        if set.remove(name).is_none() {
            return Err(unknown_config(api::ConfigKind::Policy, name));
        }
        compile(gate::modules(&set.into_iter().collect::<Vec<_>>()))
            .await
            .map_err(|error| {
                AppError::conflict(
                    ErrorCode::InUse,
                    format!(
                        "without policy {name:?} the other policies do not compile: {}",
                        error.message
                    ),
                )
            })?;
        Ok(CheckedPolicies {
            checked: Vec::new(),
            based_on,
        })
    }

    /// The compiled policy set whose hash the store records (`None`: no
    /// policy was ever stored), compiled once per change.
    pub(crate) async fn policy_set(&self, expected: Option<String>) -> AppResult<CompiledPolicies> {
        let expected = expected.unwrap_or_else(|| gate::empty_set_hash().to_string());
        if let Some(compiled) = self.inner.policies.get(&expected) {
            return Ok(compiled);
        }
        let (set, _) = self.stored_policies().await?;
        let sources: Vec<(String, String)> = set.into_iter().collect();
        let compiled = CompiledPolicies::new(compile(gate::modules(&sources)).await?, &sources);
        self.inner.policies.put(compiled.clone());
        Ok(compiled)
    }

    /// Evaluates `set` for `input` off the async workers, in the sandbox
    /// (time and memory limits), failing closed.
    pub(crate) async fn evaluate(&self, set: PolicySet, input: serde_json::Value) -> AppResult<PolicyRecord> {
        let evaluator = self.inner.evaluator.clone();
        let record = tokio::task::spawn_blocking(move || gate::evaluate(&evaluator, &set, &input))
            .await
            .map_err(AppError::internal)?;
        if record.error.is_some() {
            metrics::counter!("hallpass_policy_evaluation_failures_total").increment(1);
        }
        Ok(record)
    }

    /// The decision the stored policies make for a hypothetical input.
    /// Any caller may ask (to see why they were denied); it is limited per
    /// token, since evaluation costs the server time.
    pub async fn eval_policy(
        &self,
        caller: &Caller,
        input: serde_json::Map<String, serde_json::Value>,
    ) -> AppResult<PolicyRecord> {
        self.check_eval_rate(caller)?;
        let hash = self.inner.store.read(|r| r.meta(POLICY_SET_HASH_KEY)).await?;
        let compiled = self.policy_set(hash).await?;
        let _slot = self.eval_slot().await?;
        self.evaluate(compiled.set, serde_json::Value::Object(input)).await
    }

    pub async fn list_policies(&self, _caller: &Caller) -> AppResult<Vec<api::Policy>> {
        let rows = self.inner.store.read(|r| r.configs(ConfigKind::Policy)).await?;
        rows.iter().map(wire::policy_to_api).collect()
    }

    pub async fn get_policy(&self, _caller: &Caller, name: String) -> AppResult<api::Policy> {
        let lookup = name.clone();
        let row = self
            .inner
            .store
            .read(move |r| r.config(ConfigKind::Policy, &lookup))
            .await?;
        wire::policy_to_api(&row.ok_or_else(|| unknown_config(api::ConfigKind::Policy, &name))?)
    }

    pub async fn put_policy(&self, caller: &Caller, spec: api::PolicySpec) -> AppResult<api::Policy> {
        let name = spec.name.clone();
        self.apply(
            caller,
            api::ApplyRequest {
                policies: vec![spec],
                ..api::ApplyRequest::default()
            },
        )
        .await?;
        self.get_policy(caller, name).await
    }
}

/// Reads a policy document (used by the policy cache and listings).
fn policy_document(row: &ConfigRow) -> AppResult<PolicyDocument> {
    Ok(PolicyDocument::decode(&row.document)?)
}
