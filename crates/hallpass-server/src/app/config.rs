//! Targets, roles and approval flows as stored configuration: reading them
//! (anyone authenticated), and changing them (admins) through `apply`, the
//! one transaction every write goes through, so a file applied twice
//! changes nothing the second time and every change has its audit event.

use std::collections::BTreeMap;

use hallpass_api::{self as api, ChangeAction, ConfigKind as ApiKind, ErrorCode};
use hallpass_core::AuditKind;
use hallpass_core::audit::AuditDraft;
use hallpass_core::documents::{Document, FlowDocument, RoleDocument, TargetDocument};
use hallpass_core::events::{ConfigChange, ConfigSubject};
use hallpass_notifiers::NotifierTypes;
use hallpass_providers::{Registry, SecretValue, TargetSecrets};
use hallpass_store::{ConfigKind, ConfigRow, SecretOwner, WriteTx};
use serde_json::json;

use super::notifiers::normalize_notifier;
use super::policies::{CheckedPolicies, record_policy_set_hash};
use super::secrets::{
    changed_names, forget_rotated_from, keep_rotated, unseal_all, unseal_all_of, write_changed, write_changed_of,
};
use super::{App, AppError, AppResult, Caller, unknown_config, unknown_role};
use crate::app::access_config::{changed_fields, check_name, normalize_flow, normalize_role, normalize_target};
use crate::app::seal::Sealer;
use crate::app::wire;
use crate::gate::POLICY_SET_HASH_KEY;

/// How often an `apply` is retried when the stored policy set changed
/// between compiling the new set and writing it.
const APPLY_ATTEMPTS: usize = 3;

pub(crate) fn store_kind(kind: ApiKind) -> ConfigKind {
    match kind {
        ApiKind::Target => ConfigKind::Target,
        ApiKind::Role => ConfigKind::Role,
        ApiKind::ApprovalFlow => ConfigKind::ApprovalFlow,
        ApiKind::Policy => ConfigKind::Policy,
        ApiKind::Notifier => ConfigKind::Notifier,
    }
}

fn subject(kind: ApiKind) -> ConfigSubject {
    match kind {
        ApiKind::Target => ConfigSubject::Target,
        ApiKind::Role => ConfigSubject::Role,
        ApiKind::ApprovalFlow => ConfigSubject::ApprovalFlow,
        ApiKind::Policy => ConfigSubject::Policy,
        ApiKind::Notifier => ConfigSubject::Notifier,
    }
}

/// Everything an `apply` will write, checked before the transaction.
struct Prepared {
    targets: Vec<(api::TargetSpec, Option<TargetSecrets>)>,
    flows: Vec<FlowDocument>,
    roles: Vec<RoleDocument>,
    policies: CheckedPolicies,
    notifiers: Vec<(api::NotifierSpec, Option<TargetSecrets>)>,
}

fn check_unique<'a>(kind: &str, names: impl Iterator<Item = &'a str>) -> AppResult<()> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(AppError::invalid(
                ErrorCode::Duplicate,
                format!("{kind} {name:?} is declared twice"),
            ));
        }
    }
    Ok(())
}

fn desired_secrets(secrets: Option<&BTreeMap<String, api::WriteOnly>>) -> Option<TargetSecrets> {
    secrets.map(|secrets| {
        secrets
            .iter()
            .map(|(name, value)| (name.clone(), SecretValue::new(value.expose())))
            .collect()
    })
}

impl App {
    pub async fn list_targets(&self, _caller: &Caller) -> AppResult<Vec<api::Target>> {
        let app = self.clone();
        self.inner
            .store
            .read(move |r| -> AppResult<Vec<api::Target>> {
                let mut targets = Vec::new();
                for row in r.configs(ConfigKind::Target)? {
                    let secrets = r.target_secrets(&row.name)?;
                    let mut target = wire::target_to_api(&row, &TargetDocument::decode(&row.document)?, &secrets);
                    target.ca_public_key = app.ca_public_key(&row);
                    targets.push(target);
                }
                Ok(targets)
            })
            .await
    }

    pub async fn get_target(&self, _caller: &Caller, name: String) -> AppResult<api::Target> {
        let app = self.clone();
        self.inner
            .store
            .read(move |r| -> AppResult<api::Target> {
                let row = r
                    .config(ConfigKind::Target, &name)?
                    .ok_or_else(|| unknown_config(ApiKind::Target, &name))?;
                let secrets = r.target_secrets(&name)?;
                let mut target = wire::target_to_api(&row, &TargetDocument::decode(&row.document)?, &secrets);
                target.ca_public_key = app.ca_public_key(&row);
                Ok(target)
            })
            .await
    }

    pub async fn list_roles(&self, _caller: &Caller) -> AppResult<Vec<api::Role>> {
        let rows = self.inner.store.read(|r| r.configs(ConfigKind::Role)).await?;
        rows.iter().map(wire::role_to_api).collect()
    }

    pub async fn get_role(&self, _caller: &Caller, name: String) -> AppResult<api::Role> {
        let lookup = name.clone();
        let row = self
            .inner
            .store
            .read(move |r| r.config(ConfigKind::Role, &lookup))
            .await?;
        wire::role_to_api(&row.ok_or_else(|| unknown_role(&name))?)
    }

    pub async fn list_flows(&self, _caller: &Caller) -> AppResult<Vec<api::ApprovalFlow>> {
        let rows = self.inner.store.read(|r| r.configs(ConfigKind::ApprovalFlow)).await?;
        rows.iter().map(wire::flow_to_api).collect()
    }

    pub async fn get_flow(&self, _caller: &Caller, name: String) -> AppResult<api::ApprovalFlow> {
        let lookup = name.clone();
        let row = self
            .inner
            .store
            .read(move |r| r.config(ConfigKind::ApprovalFlow, &lookup))
            .await?;
        wire::flow_to_api(&row.ok_or_else(|| unknown_config(ApiKind::ApprovalFlow, &name))?)
    }

    pub async fn put_target(&self, caller: &Caller, spec: api::TargetSpec) -> AppResult<api::Target> {
        let name = spec.name.clone();
        self.apply(
            caller,
            api::ApplyRequest {
                targets: vec![spec],
                ..api::ApplyRequest::default()
            },
        )
        .await?;
        self.get_target(caller, name).await
    }

    pub async fn put_role(&self, caller: &Caller, spec: api::RoleSpec) -> AppResult<api::Role> {
        let name = spec.name.clone();
        self.apply(
            caller,
            api::ApplyRequest {
                roles: vec![spec],
                ..api::ApplyRequest::default()
            },
        )
        .await?;
        self.get_role(caller, name).await
    }

    pub async fn put_flow(&self, caller: &Caller, spec: api::ApprovalFlowSpec) -> AppResult<api::ApprovalFlow> {
        let name = spec.name.clone();
        self.apply(
            caller,
            api::ApplyRequest {
                approval_flows: vec![spec],
                ..api::ApplyRequest::default()
            },
        )
        .await?;
        self.get_flow(caller, name).await
    }

    /// Creates or updates targets (with their secrets), approval flows,
    /// roles and policies in one transaction; a dry run computes the same
    /// changes and writes nothing. Admins only.
    pub async fn apply(&self, caller: &Caller, request: api::ApplyRequest) -> AppResult<api::ApplyResponse> {
        caller.require_admin()?;
        let dry_run = request.dry_run;
        let mut prepared = self.prepare(&request).await?;
        for _ in 0..APPLY_ATTEMPTS {
            let actor = caller.name().to_string();
            let (registry, sealer) = (self.inner.registry.clone(), self.inner.sealer.clone());
            let notifier_types = self.inner.notifier_types.clone();
            let job = prepared;
            let outcome = self
                .inner
                .store
                .write(move |wtx| -> AppResult<Result<Vec<api::Change>, Prepared>> {
                    let current = wtx.read().meta(POLICY_SET_HASH_KEY)?;
                    if !job.policies.is_empty() && current != job.policies.based_on {
                        return Ok(Err(job));
                    }
                    let context = ApplyContext {
                        actor: &actor,
                        dry_run,
                        registry: &registry,
                        sealer: &sealer,
                        notifier_types: &notifier_types,
                    };
                    apply_in_transaction(wtx, &context, &job).map(Ok)
                })
                .await?;
            match outcome {
                Ok(changes) => return Ok(api::ApplyResponse { dry_run, changes }),
                // Another replica changed the policies since the new set was
                // compiled: compile again against what is stored now.
                Err(stale) => {
                    prepared = stale;
                    prepared.policies = self.check_policies(request.policies.clone()).await?;
                }
            }
        }
        Err(AppError::busy(
            "the stored policies kept changing while this apply ran; try again",
        ))
    }

    /// Checks everything that can be checked outside the transaction.
    async fn prepare(&self, request: &api::ApplyRequest) -> AppResult<Prepared> {
        check_unique("target", request.targets.iter().map(|t| t.name.as_str()))?;
        check_unique("role", request.roles.iter().map(|r| r.name.as_str()))?;
        check_unique("approval flow", request.approval_flows.iter().map(|f| f.name.as_str()))?;
        let mut roles = Vec::with_capacity(request.roles.len());
        for spec in &request.roles {
            roles.push(normalize_role(spec)?.0);
        }
        let mut flows = Vec::with_capacity(request.approval_flows.len());
        for spec in &request.approval_flows {
            flows.push(normalize_flow(spec)?.0);
        }
        let targets = request
            .targets
            .iter()
            .map(|spec| {
                check_name("target", &spec.name)?;
                Ok((spec.clone(), desired_secrets(spec.secrets.as_ref())))
            })
            .collect::<AppResult<Vec<_>>>()?;
        check_unique("notifier", request.notifiers.iter().map(|n| n.name.as_str()))?;
        let notifiers = request
            .notifiers
            .iter()
            .map(|spec| {
                check_name("notifier", &spec.name)?;
                Ok((spec.clone(), desired_secrets(spec.secrets.as_ref())))
            })
            .collect::<AppResult<Vec<_>>>()?;
        let policies = self.check_policies(request.policies.clone()).await?;
        Ok(Prepared {
            targets,
            flows,
            roles,
            policies,
            notifiers,
        })
    }

    /// Deletes one configuration document, after checking in the same
    /// transaction that nothing still depends on it. Admins only.
    pub async fn delete_config(&self, caller: &Caller, kind: ApiKind, name: String) -> AppResult<()> {
        caller.require_admin()?;
        let remaining = match kind {
            ApiKind::Policy => Some(self.check_policy_removal(&name).await?),
            _ => None,
        };
        let actor = caller.name().to_string();
        let forgotten = name.clone();
        self.inner
            .store
            .write(move |wtx| -> AppResult<()> {
                check_unused(wtx, kind, &name)?;
                if let Some(remaining) = &remaining
                    && wtx.read().meta(POLICY_SET_HASH_KEY)? != remaining.based_on
                {
                    return Err(AppError::busy("the stored policies changed while this ran; try again"));
                }
                if !wtx.delete_config(store_kind(kind), &name)? {
                    return Err(unknown_config(kind, &name));
                }
                if kind == ApiKind::Target {
                    let secrets: Vec<String> = wtx
                        .read()
                        .target_secrets(&name)?
                        .into_iter()
                        .map(|row| row.name)
                        .collect();
                    forget_rotated_from(wtx, &name, &secrets)?;
                    wtx.delete_target_secrets(&name)?;
                    wtx.delete_revocations(&name)?;
                }
                if kind == ApiKind::Policy {
                    record_policy_set_hash(wtx)?;
                }
                if kind == ApiKind::Notifier {
                    wtx.delete_secrets(SecretOwner::Notifier, &name)?;
                    wtx.drop_deliveries_of(&name)?;
                }
                let event = AuditKind::config(subject(kind), ConfigChange::Deleted);
                wtx.append_audit(AuditDraft::new(actor, event, None, json!({"name": name})))?;
                Ok(())
            })
            .await?;
        if kind == ApiKind::Target {
            self.inner.registry.forget_target(&forgotten);
        }
        Ok(())
    }
}

/// Refuses to delete what is still used: a flow named by roles, a target
/// with roles or live grants.
fn check_unused(wtx: &mut WriteTx<'_>, kind: ApiKind, name: &str) -> AppResult<()> {
    let in_use = |what: String| Err(AppError::conflict(ErrorCode::InUse, what));
    match kind {
        ApiKind::ApprovalFlow => {
            let mut users = Vec::new();
            for row in wtx.read().configs(ConfigKind::Role)? {
                if RoleDocument::decode(&row.document)?.approval_flow.as_deref() == Some(name) {
                    users.push(row.name);
                }
            }
            if !users.is_empty() {
                return in_use(format!(
                    "approval flow {name:?} is used by roles {}; point them at another flow first",
                    users.join(", ")
                ));
            }
        }
        ApiKind::Target => {
            let roles = wtx.read().roles_of_target(name)?;
            if !roles.is_empty() {
                return in_use(format!(
                    "target {name:?} is used by roles {}; delete or move them first",
                    roles.join(", ")
                ));
            }
            let holding = wtx.read().grants_holding_on(name)?;
            if !holding.is_empty() {
                return in_use(format!(
                    "target {name:?} still has live grants ({}); revoke them or wait for expiry",
                    holding.join(", ")
                ));
            }
        }
        ApiKind::Role | ApiKind::Policy | ApiKind::Notifier => {}
    }
    Ok(())
}

struct ApplyContext<'a> {
    actor: &'a str,
    dry_run: bool,
    registry: &'a Registry,
    sealer: &'a Sealer,
    notifier_types: &'a NotifierTypes,
}

fn apply_in_transaction(
    wtx: &mut WriteTx<'_>,
    context: &ApplyContext<'_>,
    job: &Prepared,
) -> AppResult<Vec<api::Change>> {
    let mut changes = Vec::new();
    for (spec, secrets) in &job.targets {
        changes.push(apply_target(wtx, context, spec, secrets.as_ref())?);
    }
    for flow in &job.flows {
        changes.push(apply_document(
            wtx,
            context,
            ApiKind::ApprovalFlow,
            &flow.name,
            "",
            flow,
        )?);
    }
    for role in &job.roles {
        check_role_references(wtx, context.registry, job, role)?;
        changes.push(apply_document(
            wtx,
            context,
            ApiKind::Role,
            &role.name,
            &role.target,
            role,
        )?);
    }
    let mut policies_changed = false;
    for (policy, source_hash) in &job.policies.checked {
        let change = apply_document(wtx, context, ApiKind::Policy, &policy.name, source_hash, policy)?;
        policies_changed |= change.action != ChangeAction::Unchanged;
        changes.push(change);
    }
    if policies_changed && !context.dry_run {
        record_policy_set_hash(wtx)?;
    }
    for (spec, secrets) in &job.notifiers {
        changes.push(apply_notifier(wtx, context, spec, secrets.as_ref())?);
    }
    Ok(changes)
}

/// A role's flow and target must exist, or be declared in the same apply,
/// and its `grant` block must be one the target's type takes.
fn check_role_references(
    wtx: &mut WriteTx<'_>,
    registry: &Registry,
    job: &Prepared,
    role: &RoleDocument,
) -> AppResult<()> {
    if let Some(flow) = &role.approval_flow {
        let declared_here = job.flows.iter().any(|f| &f.name == flow);
        if !declared_here && wtx.read().config(ConfigKind::ApprovalFlow, flow)?.is_none() {
            return Err(AppError::invalid(
                ErrorCode::UnknownApprovalFlow,
                format!(
                    "role {:?} uses approval flow {flow:?}, which does not exist; define it first",
                    role.name
                ),
            ));
        }
    }
    let target_type = match job.targets.iter().find(|(t, _)| t.name == role.target) {
        Some((spec, _)) => Some(spec.target_type.clone()),
        None => wtx
            .read()
            .config(ConfigKind::Target, &role.target)?
            .map(|row| row.reference),
    };
    let Some(target_type) = target_type else {
        return Err(AppError::invalid(
            ErrorCode::UnknownTarget,
            format!(
                "role {:?} refers to target {:?}, which does not exist; define it first",
                role.name, role.target
            ),
        ));
    };
    if let Some(provider) = registry.get(&target_type) {
        provider.validate_grant(&role.grant).map_err(|e| {
            AppError::invalid(
                ErrorCode::InvalidRole,
                format!("role {:?} (target {:?}): {e}", role.name, role.target),
            )
        })?;
    }
    Ok(())
}

/// A target's document and secrets. Secrets left out keep what is stored;
/// the provider checks the settings with the secrets that will be in effect.
fn apply_target(
    wtx: &mut WriteTx<'_>,
    context: &ApplyContext<'_>,
    spec: &api::TargetSpec,
    desired: Option<&TargetSecrets>,
) -> AppResult<api::Change> {
    let stored = unseal_all(&mut wtx.read(), context.sealer, &spec.name)?;
    let mut desired = desired.cloned();
    let mut secret_changes = desired.as_ref().map(|d| changed_names(&stored, d)).unwrap_or_default();
    if let Some(desired) = desired.as_mut() {
        let kept = keep_rotated(
            &mut wtx.read(),
            context.sealer,
            &spec.name,
            &stored,
            desired,
            &secret_changes,
        )?;
        for name in &kept {
            if let Some(value) = stored.get(name) {
                desired.insert(name.clone(), value.clone());
            }
        }
        secret_changes.retain(|name| !kept.contains(name));
    }
    let in_effect = desired.as_ref().unwrap_or(&stored);
    let document = normalize_target(spec, in_effect, context.registry)?;
    let mut change = apply_document_with(
        wtx,
        context,
        ApiKind::Target,
        &spec.name,
        &document.target_type,
        &document,
        &secret_changes,
    )?;
    if !context.dry_run && !secret_changes.is_empty() {
        write_changed(wtx, context.sealer, &spec.name, in_effect, &secret_changes)?;
        forget_rotated_from(wtx, &spec.name, &secret_changes)?;
    }
    change.secrets = secret_changes;
    Ok(change)
}

/// Creates or updates a notifier and its sealed secrets; its settings are
/// checked against the secrets it will have.
fn apply_notifier(
    wtx: &mut WriteTx<'_>,
    context: &ApplyContext<'_>,
    spec: &api::NotifierSpec,
    desired: Option<&TargetSecrets>,
) -> AppResult<api::Change> {
    let stored = unseal_all_of(&mut wtx.read(), context.sealer, SecretOwner::Notifier, &spec.name)?;
    let secret_changes = desired.map(|d| changed_names(&stored, d)).unwrap_or_default();
    let in_effect = desired.unwrap_or(&stored);
    let document = normalize_notifier(spec, in_effect, context.notifier_types)?;
    let mut change = apply_document_with(
        wtx,
        context,
        ApiKind::Notifier,
        &spec.name,
        &document.notifier_type,
        &document,
        &secret_changes,
    )?;
    if !context.dry_run && !secret_changes.is_empty() {
        write_changed_of(
            wtx,
            context.sealer,
            SecretOwner::Notifier,
            &spec.name,
            in_effect,
            &secret_changes,
        )?;
    }
    change.secrets = secret_changes;
    Ok(change)
}

fn apply_document<D: Document + PartialEq>(
    wtx: &mut WriteTx<'_>,
    context: &ApplyContext<'_>,
    kind: ApiKind,
    name: &str,
    reference: &str,
    document: &D,
) -> AppResult<api::Change> {
    apply_document_with(wtx, context, kind, name, reference, document, &[])
}

/// Creates or updates one document with its audit event. Stored documents
/// are compared decoded, so a document stored by an earlier release in an
/// older version is unchanged when its content is. `secrets` are the names
/// of secrets changing with it: they make an update even when the document
/// is the same, and the event names them.
fn apply_document_with<D: Document + PartialEq>(
    wtx: &mut WriteTx<'_>,
    context: &ApplyContext<'_>,
    kind: ApiKind,
    name: &str,
    reference: &str,
    document: &D,
    secrets: &[String],
) -> AppResult<api::Change> {
    let encoded = document.encode();
    let existing = wtx.read().config(store_kind(kind), name)?;
    let (action, fields, created_at) = match &existing {
        None => (ChangeAction::Create, Vec::new(), None),
        Some(row) if D::decode(&row.document).ok().as_ref() == Some(document) => {
            let action = if secrets.is_empty() {
                ChangeAction::Unchanged
            } else {
                ChangeAction::Update
            };
            (action, Vec::new(), Some(row.created_at))
        }
        Some(row) => (
            ChangeAction::Update,
            changed_fields(&row.document, &encoded),
            Some(row.created_at),
        ),
    };
    if !context.dry_run && action != ChangeAction::Unchanged {
        let change = if action == ChangeAction::Create {
            ConfigChange::Created
        } else {
            ConfigChange::Updated
        };
        wtx.append_audit(AuditDraft::new(
            context.actor,
            AuditKind::config(subject(kind), change),
            None,
            json!({"name": name, "fields": fields, "secrets_changed": secrets, "spec": encoded}),
        ))?;
        let now = wtx.now();
        wtx.put_config(
            store_kind(kind),
            &ConfigRow {
                name: name.to_string(),
                reference: reference.to_string(),
                document: encoded,
                created_at: created_at.unwrap_or(now),
                updated_at: now,
                version: 0,
            },
        )?;
    }
    Ok(api::Change {
        kind,
        name: name.to_string(),
        action,
        fields,
        secrets: Vec::new(),
    })
}
