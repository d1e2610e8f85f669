//! Making requests: load what the decision needs, ask the policies, pick
//! the route, and record the outcome with its audit event.
//!
//! Decisions are optimistic. What a decision read (the requester's open
//! request or grant of the role, their grant count when policies read it,
//! the policy set, the role and flow versions) is captured in a
//! [`Snapshot`]; the write transaction checks the snapshot still holds and
//! otherwise writes nothing, and the decision is made again (bounded). So
//! one requester has at most one open request or grant per role (also
//! backed by a unique key in the store), and no decision is written on
//! stale inputs, however many callers race.

use hallpass_api::{self as api, ErrorCode, RequestOutcome};
use hallpass_core::audit::AuditDraft;
use hallpass_core::documents::{Document, FlowDocument, RoleDocument, TargetDocument};
use hallpass_core::flow::FlowRules;
use hallpass_core::request::{NewRequest, PolicyRecord, RequestRecord, RoleApproval, RoleRules, Route, TerraformPlan};
use hallpass_core::{AuditKind, Principal, RequestState, parse_duration};
use hallpass_providers::TargetSecrets;
use hallpass_store::{ConfigKind, ReadTx, SecretOwner, SecretRow, WriteTx};
use serde_json::{Value, json};

use super::caller::SYSTEM_ACTOR;
use super::secrets::unseal_rows;
use super::targets::StoredTarget;
use super::{App, AppError, AppResult, Caller, ErrorKind, claim_if_approved, new_request_id, unknown_role};
use crate::app::access_config::{flow_rules, role_rules};
use crate::gate::{self, Asked, FlowLookup, POLICY_SET_HASH_KEY, RoleFacts};

/// How many times a decision is made again when what it read changed
/// before it could be written.
pub(crate) const DECISION_ATTEMPTS: usize = 20;

/// What a decision read, checked again in the write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub requester: String,
    pub role: String,
    pub role_version: u64,
    /// The open request or grant of (requester, role): id and version.
    pub open: Option<(String, u64)>,
    /// The requester's grant count, when the policies read it.
    pub grants: Option<u64>,
    pub policy_hash: Option<String>,
    /// Flows the decision used, with their versions (`None`: missing).
    pub flows: Vec<(String, Option<u64>)>,
}

impl Snapshot {
    /// True when everything the decision read is still as it was. A locked
    /// requester never holds: their requests are refused.
    pub fn holds(&self, r: &mut ReadTx<'_>) -> AppResult<bool> {
        let facts = r.decision_facts(&self.requester, &self.role, POLICY_SET_HASH_KEY)?;
        if let Some(reason) = facts.lock_reason {
            return Err(AppError::conflict(
                ErrorCode::Locked,
                format!("{} is locked: {reason}", self.requester),
            ));
        }
        if facts.role_version != Some(self.role_version) || facts.open != self.open {
            return Ok(false);
        }
        if let Some(grants) = self.grants
            && r.count_grants(&self.requester)? != grants
        {
            return Ok(false);
        }
        if facts.meta_value != self.policy_hash {
            return Ok(false);
        }
        for (flow, version) in &self.flows {
            if r.config(ConfigKind::ApprovalFlow, flow)?.map(|row| row.version) != *version {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Everything a decision about one role needs, read in one go.
pub(crate) struct RoleContext {
    pub role: RoleDocument,
    pub rules: RoleRules,
    pub target: StoredTarget,
    /// The role's own flow: inline, or named and looked up.
    pub role_flow: FlowLookup,
    /// The requester's open request or grant of this role, with its version.
    pub open: Option<(RequestRecord, u64)>,
    pub snapshot: Snapshot,
    /// The target's secrets, read along when its provider issues locally
    /// (a grant is then issued before the write, with no read between).
    pub local_secrets: Option<TargetSecrets>,
}

/// A decision: what the policies said, the route, and what it read.
pub(crate) struct Decided {
    pub policy: PolicyRecord,
    pub route: Route,
    pub snapshot: Snapshot,
}

fn lookup_flow(r: &mut ReadTx<'_>, name: &str) -> AppResult<(FlowLookup, Option<u64>)> {
    match r.config(ConfigKind::ApprovalFlow, name)? {
        Some(row) => {
            let rules = flow_rules(&FlowDocument::decode(&row.document)?)?;
            Ok((FlowLookup::Found(rules), Some(row.version)))
        }
        None => Ok((FlowLookup::Missing(name.to_string()), None)),
    }
}

pub(crate) fn parse_request_duration(text: Option<&str>, field: &str) -> AppResult<Option<u64>> {
    text.map(|text| {
        parse_duration(text).map_err(|e| AppError::invalid(ErrorCode::InvalidDuration, format!("{field}: {e}")))
    })
    .transpose()
}

/// The role's rules as stored now (`None`: deleted), read in a transaction.
pub(crate) fn current_role(r: &mut ReadTx<'_>, name: &str) -> AppResult<Option<RoleRules>> {
    role_document(r, name)?.map(|role| role_rules(&role)).transpose()
}

/// The role named `name` as stored now.
pub(crate) fn role_document(r: &mut ReadTx<'_>, name: &str) -> AppResult<Option<RoleDocument>> {
    match r.config(ConfigKind::Role, name)? {
        Some(row) => Ok(Some(RoleDocument::decode(&row.document)?)),
        None => Ok(None),
    }
}

/// What [`App::role_context`] reads, in one statement in the usual case;
/// with the target's sealed secrets.
fn read_context(
    r: &mut ReadTx<'_>,
    role_name: &str,
    requester: &str,
) -> AppResult<Option<(RoleContext, Vec<SecretRow>)>> {
    let Some(found) = r.role_with_context(role_name, requester, POLICY_SET_HASH_KEY)? else {
        return Ok(None);
    };
    let role = RoleDocument::decode(&found.role.document)?;
    let rules = role_rules(&role)?;
    // The role's document names its target; `reference` is kept equal to
    // it, but the document is what counts.
    let (target, target_secrets) = match found.target {
        Some(target) if target.name == role.target => (Some(target), found.target_secrets),
        _ => (
            r.config(ConfigKind::Target, &role.target)?,
            r.target_secrets(&role.target)?,
        ),
    };
    let target = target
        .ok_or_else(|| AppError::internal(format!("role {role_name:?} names a missing target {:?}", role.target)))?;
    let (role_flow, flows) = match &rules.approval {
        RoleApproval::Auto => (FlowLookup::None, Vec::new()),
        RoleApproval::Inline(flow) => (FlowLookup::Found(flow.clone()), Vec::new()),
        RoleApproval::Named(name) => {
            let (lookup, version) = lookup_flow(r, name)?;
            (lookup, vec![(name.clone(), version)])
        }
    };
    let open = found.open;
    let snapshot = Snapshot {
        requester: requester.to_string(),
        role: role_name.to_string(),
        role_version: found.role.version,
        open: open.as_ref().map(|(record, version)| (record.id.clone(), *version)),
        grants: None,
        policy_hash: found.meta_value,
        flows,
    };
    let context = RoleContext {
        target: StoredTarget {
            document: TargetDocument::decode(&target.document)?,
            created_at: target.created_at,
        },
        role_flow,
        open,
        rules,
        role,
        snapshot,
        local_secrets: None,
    };
    Ok(Some((context, target_secrets)))
}

impl RoleContext {
    fn flow_rules(&self) -> Option<&FlowRules> {
        match &self.role_flow {
            FlowLookup::Found(flow) => Some(flow),
            _ => None,
        }
    }

    /// Who may approve this role's requests (and so revoke its grants and
    /// review its break-glass use).
    pub fn role_approvers(&self) -> Vec<hallpass_core::Subject> {
        self.flow_rules().map(FlowRules::all_approvers).unwrap_or_default()
    }
}

impl App {
    /// What a decision about `role` for `requester` needs; `None` when the
    /// role does not exist.
    pub(crate) async fn role_context(&self, role: &str, requester: &str) -> AppResult<Option<RoleContext>> {
        let (role, requester, app) = (role.to_string(), requester.to_string(), self.clone());
        self.inner
            .store
            .read(move |r| {
                let Some((mut context, sealed)) = read_context(r, &role, &requester)? else {
                    return Ok(None);
                };
                let target = &context.target.document;
                let provider = app.inner.registry.get(&target.target_type);
                if provider.is_some_and(|provider| provider.issues_locally()) {
                    let secrets = unseal_rows(&app.inner.sealer, SecretOwner::Target, &target.name, sealed)?;
                    context.local_secrets = Some(secrets);
                }
                Ok(Some(context))
            })
            .await
    }

    /// Asks the policies and returns their decision and the route it
    /// implies, with everything it read.
    pub(crate) async fn decide(
        &self,
        context: &RoleContext,
        principal: &Principal,
        asked: &Asked,
        self_service: bool,
    ) -> AppResult<Decided> {
        let mut snapshot = context.snapshot.clone();
        let policy = match self.policy_set(context.snapshot.policy_hash.clone()).await {
            // No policies: the default decision, without building an input.
            Ok(compiled) if compiled.set.is_empty() => PolicyRecord {
                policy_hash: compiled.set.hash().to_string(),
                ..PolicyRecord::default()
            },
            Ok(compiled) => {
                // Always the real count; re-checked at commit only when a
                // policy reads it (see `CompiledPolicies`).
                let name = principal.name.clone();
                let grants = self.inner.store.read(move |r| r.count_grants(&name)).await?;
                if compiled.reads_grant_count {
                    snapshot.grants = Some(grants);
                }
                let facts = RoleFacts {
                    role: &context.role,
                    max_duration_seconds: context.rules.max_duration_seconds,
                    target_type: &context.target.document.target_type,
                };
                let input = gate::policy_input(principal, facts, asked, self.now(), grants);
                self.evaluate(compiled.set, input).await?
            }
            // A stored set that no longer compiles (e.g. after an upgrade of
            // the Rego engine) must not open the doors: fail closed.
            Err(error) if error.code == ErrorCode::PolicyCompileError => PolicyRecord {
                policy_hash: context.snapshot.policy_hash.clone().unwrap_or_default(),
                error: Some(error.message),
                ..PolicyRecord::default()
            },
            Err(error) => return Err(error),
        };
        let chosen = match &policy.approval_flow {
            Some(name) => {
                let lookup = name.clone();
                let (flow, version) = self.inner.store.read(move |r| lookup_flow(r, &lookup)).await?;
                snapshot.flows.push((name.clone(), version));
                flow
            }
            None => FlowLookup::None,
        };
        let route = gate::route(&policy, chosen, context.role_flow.clone(), self_service);
        Ok(Decided {
            policy,
            route,
            snapshot,
        })
    }

    /// Makes a request. When the caller already has an open request for the
    /// role, the answer is that request; when they hold the role, that
    /// grant, extended if they asked for longer than it lasts.
    pub async fn create_request(
        &self,
        caller: &Caller,
        body: api::CreateRequest,
    ) -> AppResult<api::CreateRequestResponse> {
        let duration_seconds = parse_request_duration(body.duration.as_deref(), "duration")?;
        if let Some(plan) = &body.plan {
            plan.check()?;
        }
        for _ in 0..DECISION_ATTEMPTS {
            let context = self
                .role_context(&body.role, caller.name())
                .await?
                .ok_or_else(|| unknown_role(&body.role))?;
            if let Some((open, version)) = &context.open {
                if body.scheduled_start.is_some() {
                    return Err(AppError::conflict(
                        ErrorCode::AlreadyOpen,
                        format!(
                            "you already have {} request {} for role {}; a request for later would be a second one: \
                             wait until it ends, or extend it",
                            open.state, open.id, open.role
                        ),
                    ));
                }
                check_same_plan(open, body.plan.as_ref())?;
                let answer = match open.state {
                    RequestState::Active => {
                        let wanted = duration_seconds.unwrap_or(context.rules.default_duration_seconds);
                        self.extend_held_grant(caller, open, *version, wanted, &body, &context)
                            .await?
                    }
                    _ => Some((RequestOutcome::ExistingRequest, self.to_api(open, *version))),
                };
                match answer {
                    Some((outcome, request)) => return Ok(api::CreateRequestResponse { outcome, request }),
                    None => continue,
                }
            }
            if let Some(request) = self.try_new_request(caller, &body, duration_seconds, context).await? {
                return Ok(api::CreateRequestResponse {
                    outcome: RequestOutcome::Created,
                    request,
                });
            }
        }
        Err(AppError::busy(
            "too many changes to this role's requests at once; nothing was done, try again",
        ))
    }

    /// One attempt at a new request; `None` when what it read changed.
    async fn try_new_request(
        &self,
        caller: &Caller,
        body: &api::CreateRequest,
        duration_seconds: Option<u64>,
        mut context: RoleContext,
    ) -> AppResult<Option<api::AccessRequest>> {
        if let Some(key) = &body.ssh_public_key {
            self.check_public_key(&context.target, key)?;
        }
        let principal = caller.principal.clone();
        let asked = Asked {
            duration_seconds: duration_seconds.unwrap_or(context.rules.default_duration_seconds),
            reason: body.reason.clone(),
            ticket: body.ticket.clone(),
            emergency: body.emergency,
            extension: false,
            scheduled_start: body.scheduled_start,
            plan: body.plan.clone(),
        };
        let decided = self.decide(&context, &principal, &asked, false).await?;
        let input = NewRequest {
            id: new_request_id(),
            duration_seconds,
            reason: body.reason.clone(),
            ticket: body.ticket.clone(),
            emergency: body.emergency,
            scheduled_start: body.scheduled_start,
            policy_cap_seconds: decided.policy.max_duration_seconds,
            policy: Some(decided.policy.clone()),
            role_approvers: context.role_approvers(),
            public_key: body.ssh_public_key.clone(),
            plan: body.plan.clone(),
        };
        // Check the rules before touching the target: bad input changes nothing.
        let (preview, _) = RequestRecord::open(
            input.clone(),
            &context.rules,
            decided.route.clone(),
            &principal,
            self.now(),
        )?;
        let local_issue = if preview.state == RequestState::Approved {
            let secrets = context.local_secrets.take();
            self.issue_locally(&context.target, &context.role, &preview, &context.rules, secrets)
                .await?
        } else {
            None
        };
        let owner = self.inner.replica_id.clone();
        let rules = context.rules;
        let Decided { route, snapshot, .. } = decided;
        let written = self
            .inner
            .store
            .write(move |wtx| -> AppResult<Option<(RequestRecord, u64)>> {
                if !snapshot.holds(&mut wtx.read())? {
                    return Ok(None);
                }
                let now = wtx.now();
                let (record, kind) = RequestRecord::open(input, &rules, route, &principal, now)?;
                write_new_request(wtx, record, kind, &principal, local_issue, &rules, &owner).map(Some)
            })
            .await?;
        let Some((record, version)) = written else {
            return Ok(None);
        };
        let outcome = match record.state {
            RequestState::Denied => "denied",
            _ if record.emergency => "emergency",
            _ if record.auto_approved => "auto_approved",
            _ => "pending",
        };
        metrics::counter!("hallpass_requests_total", "outcome" => outcome).increment(1);
        Ok(Some(self.after_write(record, version).await?))
    }

    /// After a request changed: issue credentials when it became approved,
    /// or put its next deadline on the timer.
    pub(crate) async fn after_write(&self, record: RequestRecord, version: u64) -> AppResult<api::AccessRequest> {
        match record.state {
            RequestState::Approved => self.activate(record).await,
            RequestState::Active if record.activated_at == Some(record.updated_at) => {
                metrics::counter!("hallpass_grants_activated_total").increment(1);
                self.schedule(&record);
                Ok(self.to_api(&record, version))
            }
            RequestState::Active
                if record
                    .extensions
                    .last()
                    .is_some_and(|e| e.extended_at(record.updated_at)) =>
            {
                self.schedule(&record);
                self.extend_on_target(&record).await;
                Ok(self.to_api(&record, version))
            }
            _ => {
                self.schedule(&record);
                Ok(self.to_api(&record, version))
            }
        }
    }

    /// A public key sent to be certified must suit the role's target type.
    fn check_public_key(&self, target: &StoredTarget, key: &str) -> AppResult<()> {
        let invalid =
            |message: String| AppError::invalid(ErrorCode::InvalidPublicKey, format!("ssh_public_key: {message}"));
        let provider = self.inner.registry.get(&target.document.target_type).ok_or_else(|| {
            invalid(format!(
                "target type {:?} takes no public key",
                target.document.target_type
            ))
        })?;
        provider
            .validate_public_key(key)
            .map_err(|error| invalid(error.to_string()))
    }

    /// For an approved request whose provider mints credentials locally
    /// (nothing is created outside Hallpass, as for JWTs), issues up front so
    /// the request and its activation commit together: one durable commit
    /// instead of two. `None` when the normal path (record, then issue, then
    /// activate) applies.
    async fn issue_locally(
        &self,
        target: &StoredTarget,
        role: &RoleDocument,
        record: &RequestRecord,
        rules: &RoleRules,
        secrets: Option<TargetSecrets>,
    ) -> AppResult<Option<Value>> {
        let Some(provider) = self
            .inner
            .registry
            .get(&target.document.target_type)
            .filter(|p| p.issues_locally())
        else {
            return Ok(None);
        };
        // The window the activation below gives the grant (it starts a few
        // milliseconds later, so what is issued never outlasts the grant).
        let now = self.now();
        let seconds = record.duration_seconds.min(rules.max_duration_seconds);
        let expires_at = now + chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 1000));
        let context = match secrets {
            Some(secrets) => self.grant_context_with(record, target, Some(role), secrets, (now, expires_at)),
            None => self.grant_context(record, target, Some(role), now, expires_at).await?,
        };
        let metadata = provider.issue(&context).await.map_err(|error| {
            AppError::new(
                ErrorKind::TargetFailed,
                ErrorCode::IssueFailed,
                format!("could not issue credentials on target {:?}: {error}", record.target),
            )
        })?;
        Ok(Some(metadata))
    }
}

/// A request for a Terraform plan reuses an open request or grant of the
/// role only when that one is for the same plan: an approval covers one
/// plan file, so any other needs its own.
fn check_same_plan(open: &RequestRecord, plan: Option<&TerraformPlan>) -> AppResult<()> {
    let Some(plan) = plan else {
        return Ok(());
    };
    if open.plan.as_ref().is_some_and(|held| held.sha256 == plan.sha256) {
        return Ok(());
    }
    let held = match &open.plan {
        Some(held) => format!("for plan {}", held.sha256),
        None => "without a plan".to_string(),
    };
    Err(AppError::conflict(
        ErrorCode::PlanMismatch,
        format!(
            "you already have {} request {} for role {} {held}; plan {} needs an approval of its own: \
             end that one first (release the grant, or cancel the request)",
            open.state, open.id, open.role, plan.sha256
        ),
    ))
}

/// The new request's audit data.
fn created_data(record: &RequestRecord, principal: &Principal) -> Value {
    json!({
        "role": record.role, "target": record.target, "groups": principal.groups,
        "duration_seconds": record.duration_seconds, "reason": record.reason, "ticket": record.ticket,
        "state": record.state, "auto_approved": record.auto_approved, "emergency": record.emergency,
        "review": record.review.is_some(), "scheduled_start": record.scheduled_start,
        "flow": record.approval.as_ref().map(|p| json!({
            "name": p.flow.name, "stages": p.flow.stages.len(), "required_approvals": p.flow.total_required(),
        })),
        "pending_expires_at": record.pending_expires_at,
        "denied": record.decision.as_ref().and_then(|d| d.comment.clone()),
        "policy": record.policy,
        "plan": record.plan.as_ref().map(TerraformPlan::audit_data),
    })
}

/// Writes a new request with its event, activated at once when its
/// credential was minted locally.
fn write_new_request(
    wtx: &mut WriteTx<'_>,
    mut record: RequestRecord,
    kind: AuditKind,
    principal: &Principal,
    local_issue: Option<Value>,
    rules: &RoleRules,
    owner: &str,
) -> AppResult<(RequestRecord, u64)> {
    let now = wtx.now();
    let created = AuditDraft::new(
        &principal.name,
        kind,
        Some(record.id.clone()),
        created_data(&record, principal),
    );
    match local_issue {
        Some(metadata) if record.state == RequestState::Approved => {
            let kind = record.activate(metadata.clone(), rules.max_duration_seconds, now)?;
            let data = activation_data(&record, &metadata);
            let activated = AuditDraft::new(SYSTEM_ACTOR, kind, Some(record.id.clone()), data);
            // Both events in one statement: one round trip on PostgreSQL.
            wtx.append_audits(vec![created, activated])?;
            let version = wtx.put_request(&record)?;
            Ok((record, version))
        }
        _ => {
            wtx.append_audit(created)?;
            let version = wtx.put_request(&record)?;
            claim_if_approved(wtx, &record, owner)?;
            Ok((record, version))
        }
    }
}

/// The `grant.activated` event's data.
pub(crate) fn activation_data(record: &RequestRecord, metadata: &Value) -> Value {
    json!({"expires_at": record.expires_at, "credential": metadata, "emergency": record.emergency,
           "duration_seconds": record.duration_seconds, "capped_from_seconds": record.capped_from_seconds,
           "plan_sha256": record.plan.as_ref().map(|plan| &plan.sha256)})
}
