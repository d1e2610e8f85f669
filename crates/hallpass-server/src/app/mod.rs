//! The broker's operations, independent of HTTP: every route handler is a thin
//! call into [`App`]. Each state change runs as one store write closure that
//! checks the domain rules against freshly loaded state, writes the change
//! and appends its audit event, so both commit or neither does. Calls to
//! targets (issue, revoke) happen outside those closures, before or after.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use hallpass_api as api;
use hallpass_core::audit::{AuditDraft, ChainVerifier};
use hallpass_core::request::{Decision, EndKind, RequestRecord, revoke_backoff};
use hallpass_core::{Clock, Principal, RequestState, parse_duration};
use hallpass_providers::jwt::JwtSigner;
use hallpass_providers::{CredentialProvider, GrantContext, Registry};
use hallpass_store::{ConfigKind, ConfigRow, RequestFilter, Store, TokenRow, WriteTx};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::access_config::{changed_fields, check_name, normalize_flow, normalize_role, normalize_target, role_rules};
use crate::auth::{Caller, generate_token, hash_token};
use crate::error::{ApiError, ApiResult};
use crate::gate::{self, PolicyCache};
use crate::wire::request_to_api;

mod changes;
mod policy_ops;
mod requests;

/// The actor recorded for what Hallpass does on its own (expiry, retries).
pub const SYSTEM_ACTOR: &str = "hallpass";
/// Members may read and verify the audit log without being admins.
pub const AUDITOR_GROUP: &str = "auditors";
/// Longest long-poll a client may ask for.
const MAX_WAIT_SECONDS: u64 = 60;
/// How long a claim on due work lasts; if this server dies holding it,
/// another picks the work up this long after.
pub const CLAIM_LEASE_SECONDS: i64 = 10;

#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Registry,
    signer: Arc<JwtSigner>,
    clock: Arc<dyn Clock>,
    deadlines: mpsc::UnboundedSender<(DateTime<Utc>, String)>,
    /// Names this server in claims on due work.
    replica_id: String,
    policies: PolicyCache,
}

fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn target_spec(row: &ConfigRow) -> ApiResult<api::TargetSpec> {
    serde_json::from_value(row.document.clone()).map_err(ApiError::internal)
}

fn role_spec(row: &ConfigRow) -> ApiResult<api::RoleSpec> {
    serde_json::from_value(row.document.clone()).map_err(ApiError::internal)
}

fn to_json<T: serde::Serialize>(value: &T) -> ApiResult<Value> {
    serde_json::to_value(value).map_err(ApiError::internal)
}

fn unknown_request(id: &str) -> ApiError {
    ApiError::not_found(format!("no request {id:?}; `hallpass requests` lists them"))
}

fn unknown_role(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no role {name:?}; `hallpass role list` shows the roles you can request"
    ))
}

fn unknown_flow(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no approval flow {name:?}; `hallpass flow list` shows the flows"
    ))
}

fn unknown_policy(name: &str) -> ApiError {
    ApiError::not_found(format!("no policy {name:?}; `hallpass policy list` shows the policies"))
}

fn unknown_target(name: &str) -> ApiError {
    ApiError::not_found(format!("no target {name:?}; `hallpass target list` shows the targets"))
}

fn token_to_api(row: &TokenRow) -> api::TokenInfo {
    api::TokenInfo {
        id: row.id.clone(),
        principal: row.principal.clone(),
        groups: row.groups.clone(),
        created_at: row.created_at,
        created_by: row.created_by.clone(),
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    }
}

/// Loads a request inside a write closure, or says it does not exist.
fn load_request(wtx: &mut WriteTx<'_>, id: &str) -> ApiResult<RequestRecord> {
    wtx.read()
        .request(id)?
        .map(|(record, _)| record)
        .ok_or_else(|| unknown_request(id))
}

/// Writes a changed record with its audit event; returns the new version.
fn save_with_event(
    wtx: &mut WriteTx<'_>,
    record: &RequestRecord,
    actor: &str,
    kind: &str,
    data: Value,
) -> ApiResult<u64> {
    wtx.append_audit(AuditDraft::new(actor, kind, Some(record.id.clone()), data))?;
    Ok(wtx.put_request(record)?)
}

/// An approved request is activated next by this server; claiming it in the
/// same transaction keeps other servers' schedulers off it unless this one
/// dies first.
fn claim_if_approved(wtx: &mut WriteTx<'_>, record: &RequestRecord, owner: &str) -> ApiResult<()> {
    if record.state == RequestState::Approved {
        wtx.claim(&record.id, owner, Duration::seconds(CLAIM_LEASE_SECONDS))?;
    }
    Ok(())
}

fn check_token_groups(groups: &[String]) -> ApiResult<()> {
    groups.iter().try_for_each(|group| check_name("group", group))
}

impl App {
    pub fn new(
        store: Store,
        registry: Registry,
        signer: Arc<JwtSigner>,
        clock: Arc<dyn Clock>,
        deadlines: mpsc::UnboundedSender<(DateTime<Utc>, String)>,
    ) -> Self {
        let replica_id = format!("replica-{}", uuid::Uuid::now_v7().simple());
        Self {
            inner: Arc::new(Inner {
                store,
                registry,
                signer,
                clock,
                deadlines,
                replica_id,
                policies: PolicyCache::default(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn signer(&self) -> &JwtSigner {
        &self.inner.signer
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    fn to_api(&self, record: &RequestRecord, version: u64) -> api::AccessRequest {
        request_to_api(record, version, self.now())
    }

    fn schedule(&self, record: &RequestRecord) {
        if let Some(deadline) = record.next_deadline() {
            // The scheduler only stops at shutdown; the store keeps the
            // deadline, and start-up rebuilds the timer from it.
            let _ = self.inner.deadlines.send((deadline, record.id.clone()));
        }
    }

    /// Claims due work (expiries, revoke retries) for this server, so that
    /// among several replicas each record is handled by one.
    pub async fn claim_due(&self, limit: u32) -> ApiResult<Vec<String>> {
        let owner = self.inner.replica_id.clone();
        Ok(self
            .inner
            .store
            .write(move |w| w.claim_due(&owner, Duration::seconds(CLAIM_LEASE_SECONDS), limit))
            .await?)
    }

    /// Puts a record back on the timer after scheduled work failed
    /// (e.g. the store was briefly unavailable).
    pub fn retry_later(&self, id: String) {
        let _ = self.inner.deadlines.send((self.now() + Duration::seconds(5), id));
    }

    // ------------------------------------------------------------ identity

    pub async fn authenticate(&self, secret: &str) -> ApiResult<Caller> {
        let hash = hash_token(secret);
        let row = self.inner.store.read(move |r| r.token_by_hash(&hash)).await?;
        let invalid = || ApiError::unauthorized("invalid_token", "the API token is unknown, revoked or expired");
        let row = row.ok_or_else(invalid)?;
        let now = self.now();
        if row.revoked_at.is_some() || row.expires_at.is_some_and(|at| at <= now) {
            return Err(invalid());
        }
        Ok(Caller {
            principal: Principal {
                name: row.principal,
                groups: row.groups,
            },
            token_id: row.id,
            token_expires_at: row.expires_at,
        })
    }

    /// Creates a token in the store; returns the secret once.
    pub async fn create_token(
        &self,
        created_by: &str,
        body: api::CreateToken,
        fixed_secret: Option<String>,
    ) -> ApiResult<api::CreatedToken> {
        check_name("principal", &body.principal)?;
        check_token_groups(&body.groups)?;
        let ttl = body
            .ttl
            .as_deref()
            .map(|ttl| parse_duration(ttl).map_err(|e| ApiError::bad_request("invalid_duration", format!("ttl: {e}"))))
            .transpose()?;
        let (generated, id) = generate_token()?;
        let secret = fixed_secret.unwrap_or(generated);
        let now = self.now();
        let row = TokenRow {
            id,
            secret_hash: hash_token(&secret),
            principal: body.principal,
            groups: body.groups,
            created_at: now,
            created_by: created_by.to_string(),
            expires_at: ttl.map(|seconds| now + Duration::seconds(seconds as i64)),
            revoked_at: None,
        };
        let stored = row.clone();
        let actor = created_by.to_string();
        self.inner
            .store
            .write(move |wtx| -> ApiResult<()> {
                if wtx.read().token_by_hash(&stored.secret_hash)?.is_some() {
                    return Err(ApiError::conflict("token_exists", "that token is already registered"));
                }
                wtx.insert_token(&stored)?;
                // The event names the token, never its secret or hash.
                wtx.append_audit(AuditDraft::new(
                    actor,
                    "token.created",
                    None,
                    json!({"token_id": stored.id, "principal": stored.principal, "groups": stored.groups,
                           "expires_at": stored.expires_at}),
                ))?;
                Ok(())
            })
            .await?;
        Ok(api::CreatedToken {
            token: secret,
            info: token_to_api(&row),
        })
    }

    pub async fn list_tokens(&self) -> ApiResult<Vec<api::TokenInfo>> {
        let rows = self.inner.store.read(|r| r.tokens()).await?;
        Ok(rows.iter().map(token_to_api).collect())
    }

    /// Admins revoke any token; everyone may revoke their own.
    pub async fn revoke_token(&self, caller: &Caller, id: String) -> ApiResult<()> {
        if !caller.principal.is_admin() && caller.token_id != id {
            return Err(ApiError::forbidden("only admins may revoke other principals' tokens"));
        }
        let actor = caller.principal.name.clone();
        self.inner
            .store
            .write(move |wtx| -> ApiResult<()> {
                let now = wtx.now();
                if !wtx.revoke_token(&id, now)? {
                    return Err(ApiError::not_found(format!(
                        "no active token {id:?}; `hallpass token list` shows them"
                    )));
                }
                wtx.append_audit(AuditDraft::new(actor, "token.revoked", None, json!({"token_id": id})))?;
                Ok(())
            })
            .await
    }

    pub async fn token_count(&self) -> ApiResult<u64> {
        Ok(self.inner.store.read(|r| r.count_tokens()).await?)
    }

    // --------------------------------------------------------- configuration

    pub async fn list_targets(&self) -> ApiResult<Vec<api::Target>> {
        let rows = self.inner.store.read(|r| r.configs(ConfigKind::Target)).await?;
        rows.iter()
            .map(|row| {
                Ok(api::Target {
                    spec: target_spec(row)?,
                    created_at: row.created_at,
                    updated_at: row.updated_at,
                })
            })
            .collect()
    }

    pub async fn get_target(&self, name: String) -> ApiResult<api::Target> {
        let lookup = name.clone();
        let row = self
            .inner
            .store
            .read(move |r| r.config(ConfigKind::Target, &lookup))
            .await?;
        let row = row.ok_or_else(|| unknown_target(&name))?;
        Ok(api::Target {
            spec: target_spec(&row)?,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    pub async fn list_roles(&self) -> ApiResult<Vec<api::Role>> {
        let rows = self.inner.store.read(|r| r.configs(ConfigKind::Role)).await?;
        rows.iter().map(role_to_api).collect()
    }

    pub async fn get_role(&self, name: String) -> ApiResult<api::Role> {
        let lookup = name.clone();
        let row = self
            .inner
            .store
            .read(move |r| r.config(ConfigKind::Role, &lookup))
            .await?;
        role_to_api(&row.ok_or_else(|| unknown_role(&name))?)
    }

    pub async fn put_target(&self, caller: &Caller, spec: api::TargetSpec) -> ApiResult<api::Target> {
        caller.require_admin()?;
        self.apply(
            caller,
            api::ApplyRequest {
                targets: vec![spec.clone()],
                ..api::ApplyRequest::default()
            },
        )
        .await?;
        self.get_target(spec.name).await
    }

    pub async fn put_role(&self, caller: &Caller, spec: api::RoleSpec) -> ApiResult<api::Role> {
        caller.require_admin()?;
        self.apply(
            caller,
            api::ApplyRequest {
                roles: vec![spec.clone()],
                ..api::ApplyRequest::default()
            },
        )
        .await?;
        self.get_role(spec.name).await
    }

    /// Creates or updates targets, approval flows, roles and policies in one
    /// transaction; a dry run computes the same changes and writes nothing.
    pub async fn apply(&self, caller: &Caller, request: api::ApplyRequest) -> ApiResult<api::ApplyResponse> {
        caller.require_admin()?;
        let dry_run = request.dry_run;
        let mut targets = Vec::with_capacity(request.targets.len());
        for spec in request.targets {
            targets.push(normalize_target(spec, &self.inner.registry)?);
        }
        let mut roles = Vec::with_capacity(request.roles.len());
        for spec in request.roles {
            roles.push(normalize_role(spec)?.0);
        }
        let mut flows = Vec::with_capacity(request.approval_flows.len());
        for spec in request.approval_flows {
            flows.push(normalize_flow(spec)?.0);
        }
        check_unique("target", targets.iter().map(|t| t.name.as_str()))?;
        check_unique("role", roles.iter().map(|r| r.name.as_str()))?;
        check_unique("approval flow", flows.iter().map(|f| f.name.as_str()))?;
        let policies = self.check_policies(request.policies).await?;
        let actor = caller.principal.name.clone();
        let changes = self
            .inner
            .store
            .write(move |wtx| -> ApiResult<Vec<api::Change>> {
                let mut changes = Vec::new();
                for spec in &targets {
                    let document = to_json(spec)?;
                    changes.push(apply_one(
                        wtx,
                        ConfigKind::Target,
                        &spec.name,
                        &spec.target_type,
                        document,
                        &actor,
                        dry_run,
                    )?);
                }
                for spec in &flows {
                    let document = to_json(spec)?;
                    changes.push(apply_one(
                        wtx,
                        ConfigKind::ApprovalFlow,
                        &spec.name,
                        "",
                        document,
                        &actor,
                        dry_run,
                    )?);
                }
                for spec in &roles {
                    if let Some(flow) = &spec.approval_flow {
                        let declared_here = flows.iter().any(|f| &f.name == flow);
                        if !declared_here && wtx.read().config(ConfigKind::ApprovalFlow, flow)?.is_none() {
                            return Err(ApiError::bad_request(
                                "unknown_approval_flow",
                                format!(
                                    "role {:?} uses approval flow {flow:?}, which does not exist; define it first",
                                    spec.name
                                ),
                            ));
                        }
                    }
                    let declared_here = targets.iter().any(|t| t.name == spec.target);
                    if !declared_here && wtx.read().config(ConfigKind::Target, &spec.target)?.is_none() {
                        return Err(ApiError::bad_request(
                            "unknown_target",
                            format!(
                                "role {:?} refers to target {:?}, which does not exist; define it first",
                                spec.name, spec.target
                            ),
                        ));
                    }
                    let document = to_json(spec)?;
                    changes.push(apply_one(
                        wtx,
                        ConfigKind::Role,
                        &spec.name,
                        &spec.target,
                        document,
                        &actor,
                        dry_run,
                    )?);
                }
                let mut policies_changed = false;
                for (spec, source_hash) in &policies {
                    let document = to_json(spec)?;
                    let change = apply_one(
                        wtx,
                        ConfigKind::Policy,
                        &spec.name,
                        source_hash,
                        document,
                        &actor,
                        dry_run,
                    )?;
                    policies_changed |= change.action != api::ChangeAction::Unchanged;
                    changes.push(change);
                }
                if policies_changed && !dry_run {
                    record_policy_set_hash(wtx)?;
                }
                Ok(changes)
            })
            .await?;
        Ok(api::ApplyResponse { dry_run, changes })
    }

    pub async fn delete_config(&self, caller: &Caller, kind: ConfigKind, name: String) -> ApiResult<()> {
        caller.require_admin()?;
        let actor = caller.principal.name.clone();
        let holding = if kind == ConfigKind::Target {
            self.grants_holding_access_on(&name).await?
        } else {
            Vec::new()
        };
        self.inner
            .store
            .write(move |wtx| -> ApiResult<()> {
                let label = config_label(kind);
                let not_found = match kind {
                    ConfigKind::Target => unknown_target(&name),
                    ConfigKind::Role => unknown_role(&name),
                    ConfigKind::ApprovalFlow => unknown_flow(&name),
                    ConfigKind::Policy => unknown_policy(&name),
                };
                if kind == ConfigKind::ApprovalFlow {
                    let mut users = Vec::new();
                    for row in wtx.read().configs(ConfigKind::Role)? {
                        if role_spec(&row)?.approval_flow.as_deref() == Some(name.as_str()) {
                            users.push(row.name);
                        }
                    }
                    if !users.is_empty() {
                        return Err(ApiError::conflict(
                            "in_use",
                            format!(
                                "approval flow {name:?} is used by roles {}; point them at another flow first",
                                users.join(", ")
                            ),
                        ));
                    }
                }
                if kind == ConfigKind::Target {
                    let roles = wtx.read().roles_of_target(&name)?;
                    if !roles.is_empty() {
                        return Err(ApiError::conflict(
                            "in_use",
                            format!(
                                "target {name:?} is used by roles {}; delete or move them first",
                                roles.join(", ")
                            ),
                        ));
                    }
                    if !holding.is_empty() {
                        return Err(ApiError::conflict(
                            "in_use",
                            format!(
                                "target {name:?} still has live grants ({}); revoke them or wait for expiry",
                                holding.join(", ")
                            ),
                        ));
                    }
                }
                if !wtx.delete_config(kind, &name)? {
                    return Err(not_found);
                }
                if kind == ConfigKind::Policy {
                    record_policy_set_hash(wtx)?;
                }
                wtx.append_audit(AuditDraft::new(
                    actor,
                    format!("{label}.deleted"),
                    None,
                    json!({"name": name}),
                ))?;
                Ok(())
            })
            .await
    }

    async fn grants_holding_access_on(&self, target: &str) -> ApiResult<Vec<String>> {
        let filter = RequestFilter {
            holding_access: true,
            limit: u32::MAX,
            ..RequestFilter::default()
        };
        let records = self.inner.store.read(move |r| r.requests(&filter)).await?;
        Ok(records
            .into_iter()
            .filter(|(r, _)| r.target == target)
            .map(|(r, _)| r.id)
            .collect())
    }

    // --------------------------------------------------------------- requests

    pub async fn deny(&self, caller: &Caller, id: String, comment: Option<String>) -> ApiResult<api::AccessRequest> {
        let approver = caller.principal.clone();
        self.change_request(id, approver.name.clone(), move |record, now| {
            let kind = record.deny(&approver, comment.clone(), now)?;
            Ok((kind, json!({"comment": comment})))
        })
        .await
    }

    pub async fn cancel(&self, caller: &Caller, id: String) -> ApiResult<api::AccessRequest> {
        let principal = caller.principal.clone();
        self.change_request(id, principal.name.clone(), move |record, now| {
            Ok((record.cancel(&principal, now)?, json!({})))
        })
        .await
    }

    /// Loads, changes and saves one request with its audit event.
    async fn change_request<F>(&self, id: String, actor: String, change: F) -> ApiResult<api::AccessRequest>
    where
        F: FnOnce(&mut RequestRecord, DateTime<Utc>) -> ApiResult<(&'static str, Value)> + Send + 'static,
    {
        let (record, version) = self.change_record(id, actor, false, change).await?;
        Ok(self.to_api(&record, version))
    }

    /// Loads, changes and saves one request with its audit event, in one
    /// transaction; with `claim`, a request that became approved is claimed
    /// for this server, which issues its credentials next.
    async fn change_record<F>(
        &self,
        id: String,
        actor: String,
        claim: bool,
        change: F,
    ) -> ApiResult<(RequestRecord, u64)>
    where
        F: FnOnce(&mut RequestRecord, DateTime<Utc>) -> ApiResult<(&'static str, Value)> + Send + 'static,
    {
        let owner = self.inner.replica_id.clone();
        self.inner
            .store
            .write(move |wtx| -> ApiResult<(RequestRecord, u64)> {
                let mut record = load_request(wtx, &id)?;
                let now = wtx.now();
                let (kind, data) = change(&mut record, now)?;
                let version = save_with_event(wtx, &record, &actor, kind, data)?;
                if claim {
                    claim_if_approved(wtx, &record, &owner)?;
                }
                Ok((record, version))
            })
            .await
    }

    pub async fn get_request(&self, id: String) -> ApiResult<(api::AccessRequest, u64)> {
        let lookup = id.clone();
        let found = self.inner.store.read(move |r| r.request(&lookup)).await?;
        let (record, version) = found.ok_or_else(|| unknown_request(&id))?;
        Ok((self.to_api(&record, version), version))
    }

    /// Returns the request once its version is newer than `after`, or at the
    /// timeout with whatever it is then (long-poll for `--wait`).
    pub async fn wait_request(&self, id: String, after: u64, timeout_seconds: u64) -> ApiResult<api::AccessRequest> {
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(timeout_seconds.min(MAX_WAIT_SECONDS));
        let mut changes = self.inner.store.changes();
        loop {
            changes.borrow_and_update();
            let (request, version) = self.get_request(id.clone()).await?;
            if version > after || tokio::time::Instant::now() >= deadline {
                return Ok(request);
            }
            if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                return Ok(self.get_request(id).await?.0);
            }
        }
    }

    pub async fn list_requests(&self, filter: RequestFilter) -> ApiResult<Vec<api::AccessRequest>> {
        let records = self.inner.store.read(move |r| r.requests(&filter)).await?;
        Ok(records
            .iter()
            .map(|(record, version)| self.to_api(record, *version))
            .collect())
    }

    // ----------------------------------------------------------------- grants

    async fn provider_for(&self, target: &str) -> ApiResult<(Arc<dyn CredentialProvider>, api::TargetSpec)> {
        let name = target.to_string();
        let row = self
            .inner
            .store
            .read(move |r| r.config(ConfigKind::Target, &name))
            .await?;
        let spec = target_spec(&row.ok_or_else(|| unknown_target(target))?)?;
        let provider = self
            .inner
            .registry
            .get(&spec.target_type)
            .cloned()
            .ok_or_else(|| ApiError::internal(format!("no provider for target type {:?}", spec.target_type)))?;
        Ok((provider, spec))
    }

    fn grant_context(record: &RequestRecord, target: &api::TargetSpec, activated_at: DateTime<Utc>) -> GrantContext {
        let seconds = i64::try_from(record.duration_seconds).unwrap_or(i64::MAX);
        GrantContext {
            grant_id: record.id.clone(),
            principal: record.requester.name.clone(),
            role: record.role.clone(),
            target: record.target.clone(),
            target_config: target.config.clone(),
            target_secrets: hallpass_providers::TargetSecrets::new(),
            activated_at,
            expires_at: record.expires_at.unwrap_or(activated_at + Duration::seconds(seconds)),
        }
    }

    /// Issues credentials for an approved request and starts its clock.
    ///
    /// The clock starts when the request became approved, which is when the
    /// first issue attempt is made. Retries (after a crash or a failed
    /// attempt) reuse that time, so every attempt sends the target the same
    /// grant window under the same idempotency key, and a retry never
    /// stretches access beyond what the first attempt asked for.
    pub async fn activate(&self, record: RequestRecord) -> ApiResult<api::AccessRequest> {
        let (provider, target) = self.provider_for(&record.target).await?;
        let activated_at = record.updated_at;
        let context = Self::grant_context(&record, &target, activated_at);
        let metadata = provider.issue(&context).await.map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "issue_failed",
                format!(
                    "could not issue credentials on target {:?}: {e}; the request stays approved and is retried",
                    record.target
                ),
            )
        })?;
        let id = record.id.clone();
        let (record, version) = self
            .inner
            .store
            .write(move |wtx| -> ApiResult<(RequestRecord, u64)> {
                let mut record = load_request(wtx, &id)?;
                let kind = record.activate(metadata.clone(), activated_at)?;
                let data = json!({"expires_at": record.expires_at, "credential": metadata,
                                  "emergency": record.emergency});
                let version = save_with_event(wtx, &record, SYSTEM_ACTOR, kind, data)?;
                Ok((record, version))
            })
            .await?;
        metrics::counter!("hallpass_grants_activated_total").increment(1);
        self.schedule(&record);
        Ok(self.to_api(&record, version))
    }

    /// The secret credential, for the requester of an active grant only.
    pub async fn credentials(&self, caller: &Caller, id: String) -> ApiResult<api::Credential> {
        let lookup = id.clone();
        let found = self.inner.store.read(move |r| r.request(&lookup)).await?;
        let (record, _) = found.ok_or_else(|| unknown_request(&id))?;
        if record.requester.name != caller.principal.name {
            return Err(ApiError::forbidden(format!(
                "credentials of request {id} are for its requester ({}) only",
                record.requester.name
            )));
        }
        let (Some(activated_at), Some(expires_at)) = (record.activated_at, record.expires_at) else {
            return Err(ApiError::conflict(
                "not_active",
                format!("request {id} is {}; it has no credentials yet", record.state),
            ));
        };
        if record.state != RequestState::Active || expires_at <= self.now() {
            return Err(ApiError::conflict(
                "not_active",
                format!("grant {id} is {}; its credentials are gone", record.state),
            ));
        }
        let (provider, target) = self.provider_for(&record.target).await?;
        let metadata = record.credential.clone().unwrap_or(Value::Null);
        let secret = provider
            .credential(&Self::grant_context(&record, &target, activated_at), &metadata)
            .map_err(ApiError::internal)?;
        Ok(api::Credential {
            request_id: id,
            credential_type: secret.credential_type,
            expires_at,
            token: secret.token,
            env: secret.env,
        })
    }

    /// Ends a grant: revoke on the target, then record the outcome. A failed
    /// revoke is recorded as `revoke_failed` and retried with backoff.
    /// `caller` is `None` when Hallpass itself acts (expiry, retries): only
    /// callers are checked against who may end the grant.
    pub async fn end_grant(
        &self,
        caller: Option<Principal>,
        id: String,
        kind: EndKind,
        reason: Option<String>,
    ) -> ApiResult<api::AccessRequest> {
        let lookup = id.clone();
        let found = self.inner.store.read(move |r| r.request(&lookup)).await?;
        let (record, version) = found.ok_or_else(|| unknown_request(&id))?;
        if kind == EndKind::Expire && !record.state.holds_access() {
            return Ok(self.to_api(&record, version));
        }
        let actor_name = match &caller {
            Some(principal) => {
                record.check_may_end(principal, kind)?;
                principal.name.clone()
            }
            None => SYSTEM_ACTOR.to_string(),
        };
        let (provider, target) = self.provider_for(&record.target).await?;
        let activated_at = record.activated_at.unwrap_or(record.created_at);
        let context = Self::grant_context(&record, &target, activated_at);
        let metadata = record.credential.clone().unwrap_or(Value::Null);
        let outcome = provider.revoke(&context, &metadata).await;
        let (record, version) = self
            .inner
            .store
            .write(move |wtx| -> ApiResult<(RequestRecord, u64)> {
                let mut record = load_request(wtx, &id)?;
                let now = wtx.now();
                let by = Decision { by: actor_name.clone(), comment: reason.clone(), at: now };
                let (event, data) = match &outcome {
                    Ok(()) => {
                        let event = record.finish_end(kind, by, now)?;
                        let lag = record.expires_at.map(|at| (now - at).num_milliseconds().max(0));
                        (event, json!({"reason": reason, "attempts": record.revoke_attempts + 1, "lag_ms": lag}))
                    }
                    Err(error) => {
                        let retry_at = now + revoke_backoff(record.revoke_attempts);
                        let message = error.to_string();
                        let event = record.record_end_failure(kind, by, message.clone(), retry_at, now)?;
                        (event, json!({"reason": reason, "error": message, "attempts": record.revoke_attempts, "retry_at": retry_at}))
                    }
                };
                let version = save_with_event(wtx, &record, &actor_name, event, data)?;
                Ok((record, version))
            })
            .await?;
        if let Some(lag) = record
            .ended_at
            .zip(record.expires_at)
            .filter(|_| kind == EndKind::Expire)
        {
            metrics::histogram!("hallpass_expiry_lag_seconds")
                .record((lag.0 - lag.1).num_milliseconds().max(0) as f64 / 1000.0);
        }
        if record.state == RequestState::RevokeFailed {
            metrics::counter!("hallpass_revoke_failures_total").increment(1);
            tracing::error!(
                request_id = %record.id, target = %record.target, error = ?record.revoke_error,
                attempts = record.revoke_attempts, "ALERT: revoking a grant failed; retrying with backoff"
            );
            self.schedule(&record);
        }
        Ok(self.to_api(&record, version))
    }

    /// Acts on whatever is due for one record: expiry, a revoke retry, an
    /// activation that a crash interrupted, a scheduled start, a pending
    /// request's escalation or time-out.
    pub async fn process_due(&self, id: String) -> ApiResult<()> {
        let lookup = id.clone();
        let Some((record, _)) = self.inner.store.read(move |r| r.request(&lookup)).await? else {
            return Ok(());
        };
        match record.state {
            RequestState::Approved => {
                self.activate(record).await?;
            }
            RequestState::Pending => match record.next_deadline() {
                Some(deadline) if deadline <= self.now() => self.process_pending(id).await?,
                Some(_) => self.schedule(&record),
                None => {}
            },
            RequestState::Scheduled => match record.scheduled_start {
                Some(start) if start <= self.now() => self.process_scheduled(id, start).await?,
                Some(_) => self.schedule(&record),
                None => {}
            },
            RequestState::Active | RequestState::RevokeFailed => match record.next_deadline() {
                Some(deadline) if deadline <= self.now() => {
                    let kind = record.end.unwrap_or(EndKind::Expire);
                    self.end_grant(None, id, kind, None).await?;
                }
                Some(_) => self.schedule(&record),
                None => {}
            },
            _ => {}
        }
        Ok(())
    }

    // ---------------------------------------------------------- introspection

    /// RFC 7662: active only while the token verifies and its grant is live.
    pub async fn introspect(&self, token: &str) -> ApiResult<api::Introspection> {
        let Ok(claims) = self.inner.signer.verify(token) else {
            return Ok(api::Introspection::default());
        };
        let id = claims.jti.clone();
        let found = self.inner.store.read(move |r| r.request(&id)).await?;
        let live = found.is_some_and(|(record, _)| {
            record.state == RequestState::Active
                && record.expires_at.is_some_and(|at| at > self.now())
                && record.requester.name == claims.sub
        });
        if !live {
            return Ok(api::Introspection::default());
        }
        Ok(api::Introspection {
            active: true,
            sub: Some(claims.sub),
            aud: Some(claims.aud),
            iss: Some(claims.iss),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            nbf: Some(claims.nbf),
            jti: Some(claims.jti),
            role: Some(claims.role),
            token_type: Some("Bearer".into()),
        })
    }

    // ------------------------------------------------------------------ audit

    pub fn require_auditor(caller: &Caller) -> ApiResult<()> {
        if caller.principal.is_admin() || caller.principal.in_group(AUDITOR_GROUP) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the audit log is for groups `admins` and `{AUDITOR_GROUP}`"
            )))
        }
    }

    pub async fn audit_page(
        &self,
        since: u64,
        request_id: Option<String>,
        limit: u32,
    ) -> ApiResult<Vec<api::AuditEvent>> {
        let events = self
            .inner
            .store
            .read(move |r| r.audit(since, request_id.as_deref(), limit))
            .await?;
        Ok(events)
    }

    /// Verifies the whole live chain, and that it ends at the writer's head.
    pub async fn audit_verify(&self) -> ApiResult<api::VerifyReport> {
        let head = self.inner.store.read(|r| r.audit_head_seq()).await?;
        let mut verifier = ChainVerifier::from_genesis();
        let mut since = 0;
        loop {
            let page = self.inner.store.read(move |r| r.audit(since, None, 5000)).await?;
            let Some(last) = page.last() else { break };
            since = last.seq;
            page.iter().for_each(|event| verifier.push(event));
            if verifier.failed() {
                break;
            }
        }
        let mut report = verifier.finish();
        if report.ok && report.last_seq.unwrap_or(0) < head {
            let missing = report.last_seq.unwrap_or(0) + 1;
            report.ok = false;
            report.first_bad_seq = Some(missing);
            report.problem = Some(format!(
                "the log ends at {} but {head} events were written; event {missing} is missing",
                missing - 1
            ));
        }
        Ok(report)
    }
}

fn role_to_api(row: &ConfigRow) -> ApiResult<api::Role> {
    let spec = role_spec(row)?;
    let rules = role_rules(&spec)?;
    Ok(api::Role {
        spec,
        default_duration_seconds: rules.default_duration_seconds,
        max_duration_seconds: rules.max_duration_seconds,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn check_unique<'a>(kind: &str, names: impl Iterator<Item = &'a str>) -> ApiResult<()> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(ApiError::bad_request(
                "duplicate",
                format!("{kind} {name:?} is declared twice"),
            ));
        }
    }
    Ok(())
}

fn config_label(kind: ConfigKind) -> &'static str {
    match kind {
        ConfigKind::Target => "target",
        ConfigKind::Role => "role",
        ConfigKind::ApprovalFlow => "approval_flow",
        ConfigKind::Policy => "policy",
    }
}

/// Stores the hash of the whole policy set after a policy changed, in the
/// same transaction, so every replica knows to recompile.
fn record_policy_set_hash(wtx: &mut WriteTx<'_>) -> ApiResult<()> {
    let rows = wtx.read().configs(ConfigKind::Policy)?;
    let mut modules = Vec::with_capacity(rows.len());
    for row in &rows {
        let spec: api::PolicySpec = serde_json::from_value(row.document.clone()).map_err(ApiError::internal)?;
        modules.push(hallpass_policy::PolicyModule {
            name: spec.name,
            source: spec.source,
        });
    }
    wtx.put_meta(gate::POLICY_SET_HASH_KEY, &hallpass_policy::set_hash(&modules))?;
    Ok(())
}

/// Creates or updates one configuration document, with its audit event.
fn apply_one(
    wtx: &mut WriteTx<'_>,
    kind: ConfigKind,
    name: &str,
    reference: &str,
    document: Value,
    actor: &str,
    dry_run: bool,
) -> Result<api::Change, ApiError> {
    let label = config_label(kind);
    let existing = wtx.read().config(kind, name)?;
    let (action, fields, created_at) = match &existing {
        None => (api::ChangeAction::Create, Vec::new(), None),
        Some(row) if row.document == document => (api::ChangeAction::Unchanged, Vec::new(), Some(row.created_at)),
        Some(row) => (
            api::ChangeAction::Update,
            changed_fields(&row.document, &document),
            Some(row.created_at),
        ),
    };
    if !dry_run && action != api::ChangeAction::Unchanged {
        let now = wtx.now();
        let row = ConfigRow {
            name: name.to_string(),
            reference: reference.to_string(),
            document: document.clone(),
            created_at: created_at.unwrap_or(now),
            updated_at: now,
        };
        wtx.put_config(kind, &row)?;
        let verb = if action == api::ChangeAction::Create {
            "created"
        } else {
            "updated"
        };
        wtx.append_audit(AuditDraft::new(
            actor,
            format!("{label}.{verb}"),
            None,
            json!({"name": name, "fields": fields, "spec": document}),
        ))?;
    }
    Ok(api::Change {
        kind: label.to_string(),
        name: name.to_string(),
        action,
        fields,
    })
}
