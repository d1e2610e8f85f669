//! Making requests and extensions: load what the decision needs, ask the
//! policies, pick the route, and record the outcome with its audit event.
//! A second request for a role the requester already holds becomes an
//! extension of that grant.

use chrono::{DateTime, Duration, Utc};
use hallpass_api as api;
use hallpass_core::flow::FlowRules;
use hallpass_core::request::{NewExtension, NewRequest, RequestRecord, RoleApproval, RoleRules, Route};
use hallpass_core::{Principal, RequestState, parse_duration};
use hallpass_providers::GrantContext;
use hallpass_store::{ConfigKind, ReadTx};
use serde_json::{Value, json};

use super::{
    App, SYSTEM_ACTOR, claim_if_approved, load_request, new_request_id, role_spec, save_with_event, target_spec,
    to_json, unknown_request, unknown_role, unknown_target,
};
use crate::access_config::{normalize_flow, role_rules};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::gate::{self, Asked, FlowLookup};

/// Everything a decision about one role needs, read in one go.
pub(super) struct RoleContext {
    pub role: api::RoleSpec,
    pub rules: RoleRules,
    pub target: api::TargetSpec,
    /// The role's own flow: inline, or named and looked up.
    pub role_flow: FlowLookup,
    pub policy_hash: Option<String>,
    /// The requester's active grant of this role, with its version.
    pub held: Option<(RequestRecord, u64)>,
    /// How many grants of the requester hold access now.
    pub holding: u64,
}

fn lookup_flow(r: &mut ReadTx<'_>, name: &str) -> ApiResult<FlowLookup> {
    match r.config(ConfigKind::ApprovalFlow, name)? {
        Some(row) => {
            let spec: api::ApprovalFlowSpec = serde_json::from_value(row.document).map_err(ApiError::internal)?;
            Ok(FlowLookup::Found(normalize_flow(spec)?.1))
        }
        None => Ok(FlowLookup::Missing(name.to_string())),
    }
}

fn parse_request_duration(text: &Option<String>, field: &str) -> ApiResult<Option<u64>> {
    text.as_deref()
        .map(|text| {
            parse_duration(text).map_err(|e| ApiError::bad_request("invalid_duration", format!("{field}: {e}")))
        })
        .transpose()
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
    fn role_approvers(&self) -> Vec<hallpass_core::Subject> {
        self.flow_rules().map(FlowRules::all_approvers).unwrap_or_default()
    }
}

impl App {
    pub(super) async fn role_context(&self, role: &str, requester: &str) -> ApiResult<RoleContext> {
        let (role_name, requester) = (role.to_string(), requester.to_string());
        self.inner
            .store
            .read(move |r| -> ApiResult<RoleContext> {
                let row = r
                    .config(ConfigKind::Role, &role_name)?
                    .ok_or_else(|| unknown_role(&role_name))?;
                let role = role_spec(&row)?;
                let rules = role_rules(&role)?;
                let target = r
                    .config(ConfigKind::Target, &role.target)?
                    .ok_or_else(|| unknown_target(&role.target))?;
                let role_flow = match &rules.approval {
                    RoleApproval::Auto => FlowLookup::None,
                    RoleApproval::Inline(flow) => FlowLookup::Found(flow.clone()),
                    RoleApproval::Named(name) => lookup_flow(r, name)?,
                };
                let policy_hash = r.meta(gate::POLICY_SET_HASH_KEY)?;
                // Only policies read the count; without any, skip the query.
                let no_policies = policy_hash.as_ref().is_none_or(|h| h == gate::empty_set_hash());
                Ok(RoleContext {
                    target: target_spec(&target)?,
                    role_flow,
                    policy_hash,
                    held: r.active_grant(&requester, &rules.name)?,
                    holding: if no_policies { 0 } else { r.count_holding(&requester)? },
                    rules,
                    role,
                })
            })
            .await
    }

    /// Asks the policies and returns their decision and the route it implies.
    async fn decide(
        &self,
        context: &RoleContext,
        principal: &Principal,
        asked: &Asked,
        self_service: bool,
    ) -> ApiResult<(api::PolicyDecision, Route)> {
        let decision = match self.policy_set(context.policy_hash.clone()).await {
            // No policies: the default decision, without building an input.
            Ok(set) if set.is_empty() => api::PolicyDecision {
                policy_hash: set.hash().to_string(),
                ..api::PolicyDecision::default()
            },
            Ok(set) => {
                let input = gate::policy_input(
                    principal,
                    &context.role,
                    context.rules.max_duration_seconds,
                    &context.target.target_type,
                    asked,
                    self.now(),
                    usize::try_from(context.holding).unwrap_or(usize::MAX),
                );
                gate::evaluate(&set, &input)
            }
            // A stored set that no longer compiles (e.g. after an upgrade of
            // the Rego engine) must not open the doors: fail closed.
            Err(error) if error.code == "policy_compile_error" => api::PolicyDecision {
                policy_hash: context.policy_hash.clone().unwrap_or_default(),
                error: Some(error.message),
                ..api::PolicyDecision::default()
            },
            Err(error) => return Err(error),
        };
        let chosen = match &decision.approval_flow {
            Some(name) => {
                let name = name.clone();
                self.inner.store.read(move |r| lookup_flow(r, &name)).await?
            }
            None => FlowLookup::None,
        };
        let route = gate::route(&decision, chosen, context.role_flow.clone(), self_service);
        Ok((decision, route))
    }

    /// Makes a request; returns it and whether it is new (`false`: the
    /// caller already held the role, and the answer is that grant, extended
    /// or not).
    pub async fn create_request(
        &self,
        caller: &Caller,
        body: api::CreateRequest,
    ) -> ApiResult<(api::AccessRequest, bool)> {
        let duration_seconds = parse_request_duration(&body.duration, "duration")?;
        let principal = caller.principal.clone();
        let context = self.role_context(&body.role, &principal.name).await?;
        let now = self.now();
        // A request for later is a new grant, whatever is held now.
        if let Some((grant, version)) = context.held.as_ref().filter(|_| body.scheduled_start.is_none()) {
            let wanted = duration_seconds.unwrap_or(context.rules.default_duration_seconds);
            let grant = self
                .extend_held_grant(caller, grant, *version, wanted, body.reason, body.ticket, &context)
                .await?;
            return Ok((grant, false));
        }
        let asked = Asked {
            duration_seconds: duration_seconds.unwrap_or(context.rules.default_duration_seconds),
            reason: body.reason.clone(),
            ticket: body.ticket.clone(),
            emergency: body.emergency,
            extension: false,
            scheduled_start: body.scheduled_start,
        };
        let (decision, route) = self.decide(&context, &principal, &asked, false).await?;
        let input = NewRequest {
            id: new_request_id(),
            duration_seconds,
            reason: body.reason,
            ticket: body.ticket,
            emergency: body.emergency,
            scheduled_start: body.scheduled_start,
            policy_cap_seconds: decision.max_duration_seconds,
            policy: Some(to_json(&decision)?),
            role_approvers: context.role_approvers(),
        };
        // Check the rules before touching the target: bad input changes nothing.
        let (preview, _) = RequestRecord::open(input.clone(), &context.rules, route.clone(), &principal, now)?;
        let local_issue = if preview.state == RequestState::Approved {
            self.issue_locally(&context.target, &preview).await?
        } else {
            None
        };
        let owner = self.inner.replica_id.clone();
        let rules = context.rules;
        let (record, version) = self
            .inner
            .store
            .write(move |wtx| -> ApiResult<(RequestRecord, u64)> {
                let now = wtx.now();
                let (mut record, kind) = RequestRecord::open(input, &rules, route, &principal, now)?;
                let data = json!({
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
                });
                wtx.append_audit(hallpass_core::audit::AuditDraft::new(
                    &principal.name,
                    kind,
                    Some(record.id.clone()),
                    data,
                ))?;
                match local_issue {
                    Some(metadata) if record.state == RequestState::Approved => {
                        let kind = record.activate(metadata.clone(), now)?;
                        let data = json!({"expires_at": record.expires_at, "credential": metadata,
                                          "emergency": record.emergency});
                        let version = save_with_event(wtx, &record, SYSTEM_ACTOR, kind, data)?;
                        Ok((record, version))
                    }
                    _ => {
                        let version = wtx.put_request(&record)?;
                        claim_if_approved(wtx, &record, &owner)?;
                        Ok((record, version))
                    }
                }
            })
            .await?;
        let outcome = match record.state {
            RequestState::Denied => "denied",
            _ if record.emergency => "emergency",
            _ if record.auto_approved => "auto_approved",
            _ => "pending",
        };
        metrics::counter!("hallpass_requests_total", "outcome" => outcome).increment(1);
        Ok((self.after_write(record, version).await?, true))
    }

    /// After a request changed: issue credentials when it became approved,
    /// or put its next deadline on the timer.
    async fn after_write(&self, record: RequestRecord, version: u64) -> ApiResult<api::AccessRequest> {
        match record.state {
            RequestState::Approved => self.activate(record).await,
            RequestState::Active if record.activated_at == Some(record.updated_at) => {
                metrics::counter!("hallpass_grants_activated_total").increment(1);
                self.schedule(&record);
                Ok(self.to_api(&record, version))
            }
            _ => {
                self.schedule(&record);
                Ok(self.to_api(&record, version))
            }
        }
    }

    /// For an approved request whose provider mints credentials locally
    /// (nothing is created outside Hallpass, as for JWTs), issues up front so
    /// the request and its activation commit together: one durable commit
    /// instead of two. `None` when the normal path (record, then issue, then
    /// activate) applies.
    async fn issue_locally(&self, target: &api::TargetSpec, record: &RequestRecord) -> ApiResult<Option<Value>> {
        let Some(provider) = self
            .inner
            .registry
            .get(&target.target_type)
            .filter(|p| p.issues_locally())
        else {
            return Ok(None);
        };
        let now = self.now();
        let context = GrantContext {
            grant_id: record.id.clone(),
            principal: record.requester.name.clone(),
            role: record.role.clone(),
            target: target.name.clone(),
            target_config: target.config.clone(),
            target_secrets: hallpass_providers::TargetSecrets::new(),
            activated_at: now,
            expires_at: now,
        };
        Ok(Some(provider.issue(&context).await.map_err(ApiError::internal)?))
    }

    pub async fn approve(&self, caller: &Caller, id: String, comment: Option<String>) -> ApiResult<api::AccessRequest> {
        let approver = caller.principal.clone();
        let actor = approver.name.clone();
        let (record, version) = self
            .change_record(id, actor, true, move |record, now| {
                let kind = record.approve(&approver, comment.clone(), now)?;
                let progress = match record.pending_extension().or(record.extensions.last()) {
                    Some(extension) if record.activated_at.is_some() => extension.approval.as_ref(),
                    _ => record.approval.as_ref(),
                };
                let data = json!({
                    "comment": comment, "state": record.state,
                    "approvals": progress.map(|p| p.all_approvals().len()),
                    "required_approvals": progress.map(|p| p.flow.total_required()),
                    "stage": progress.map(|p| p.current.min(p.flow.stages.len())),
                    "extension": record.activated_at.and(record.extensions.last().map(|e| e.number)),
                    "expires_at": record.expires_at,
                });
                Ok((kind, data))
            })
            .await?;
        self.after_write(record, version).await
    }

    pub async fn extend(&self, caller: &Caller, id: String, body: api::ExtendBody) -> ApiResult<api::AccessRequest> {
        let by_seconds = parse_request_duration(&Some(body.by), "by")?.unwrap_or(0);
        let lookup = id.clone();
        let found = self.inner.store.read(move |r| r.request(&lookup)).await?;
        let (grant, _) = found.ok_or_else(|| unknown_request(&id))?;
        let context = self.role_context(&grant.role, &caller.principal.name).await?;
        self.request_extension(caller, &grant, by_seconds, body.reason, body.ticket, &context)
            .await
    }

    /// A request for a role already held: extend the grant so it lasts the
    /// asked duration from now, or return it unchanged if it already does.
    #[allow(clippy::too_many_arguments)]
    async fn extend_held_grant(
        &self,
        caller: &Caller,
        grant: &RequestRecord,
        version: u64,
        wanted_seconds: u64,
        reason: String,
        ticket: Option<String>,
        context: &RoleContext,
    ) -> ApiResult<api::AccessRequest> {
        let wanted_until = self.now() + Duration::seconds(i64::try_from(wanted_seconds).unwrap_or(i64::MAX / 1000));
        let expires = grant.expires_at.unwrap_or(wanted_until);
        if wanted_until <= expires || grant.pending_extension().is_some() {
            return Ok(self.to_api(grant, version));
        }
        // Asking twice in a row must not start an approval for a few
        // seconds: under a minute short counts as covered, and the rest is
        // rounded up to whole minutes.
        let missing = (wanted_until - expires).num_seconds();
        if missing < 60 {
            return Ok(self.to_api(grant, version));
        }
        let by_seconds = u64::try_from(missing).unwrap_or(u64::MAX).div_ceil(60) * 60;
        self.request_extension(caller, grant, by_seconds, reason, ticket, context)
            .await
    }

    async fn request_extension(
        &self,
        caller: &Caller,
        grant: &RequestRecord,
        by_seconds: u64,
        reason: String,
        ticket: Option<String>,
        context: &RoleContext,
    ) -> ApiResult<api::AccessRequest> {
        let asked = Asked {
            duration_seconds: by_seconds,
            reason: reason.clone(),
            ticket: ticket.clone(),
            emergency: grant.emergency,
            extension: true,
            scheduled_start: None,
        };
        let self_service = !context.rules.extension_requires_approval;
        let (decision, route) = self.decide(context, &caller.principal, &asked, self_service).await?;
        let extension = NewExtension {
            by_seconds,
            reason,
            ticket,
            policy_cap_seconds: decision.max_duration_seconds,
            policy: Some(to_json(&decision)?),
        };
        let principal = caller.principal.clone();
        let role_max = context.rules.max_duration_seconds;
        let actor = principal.name.clone();
        let (record, version) = self
            .change_record(grant.id.clone(), actor, false, move |record, now| {
                let kind = record.request_extension(&principal, extension, role_max, route, now)?;
                let data = match record.extensions.last() {
                    Some(ext) => json!({
                        "extension": ext.number, "by_seconds": ext.by_seconds, "reason": ext.reason,
                        "ticket": ext.ticket, "state": ext.state.as_str(), "expires_at": record.expires_at,
                        "flow": ext.approval.as_ref().map(|p| p.flow.name.clone()),
                        "denied": ext.decision.as_ref().and_then(|d| d.comment.clone()),
                        "policy": ext.policy,
                    }),
                    None => json!({}),
                };
                Ok((kind, data))
            })
            .await?;
        self.schedule(&record);
        Ok(self.to_api(&record, version))
    }

    /// A pending request's deadline came: time it out at its pending TTL, or
    /// record its escalation.
    pub(super) async fn process_pending(&self, id: String) -> ApiResult<()> {
        let written = self
            .inner
            .store
            .write(move |wtx| -> ApiResult<Option<RequestRecord>> {
                let mut record = load_request(wtx, &id)?;
                let now = wtx.now();
                if record.state != RequestState::Pending {
                    return Ok(None);
                }
                if record.pending_expires_at.is_some_and(|at| at <= now) {
                    let kind = record.time_out(SYSTEM_ACTOR, now)?;
                    let data = json!({"pending_expires_at": record.pending_expires_at});
                    save_with_event(wtx, &record, SYSTEM_ACTOR, kind, data)?;
                    return Ok(Some(record));
                }
                match record.escalate(now) {
                    Some((kind, stage, escalate_to)) => {
                        let to: Vec<String> = escalate_to.iter().map(ToString::to_string).collect();
                        let data = json!({"stage": stage, "escalate_to": to});
                        save_with_event(wtx, &record, SYSTEM_ACTOR, kind, data)?;
                        Ok(Some(record))
                    }
                    None => Ok(Some(record)),
                }
            })
            .await?;
        if let Some(record) = written {
            if record.state == RequestState::TimedOut {
                metrics::counter!("hallpass_requests_timed_out_total").increment(1);
            }
            self.schedule(&record);
        }
        Ok(())
    }

    /// A scheduled request's start came: approve it now and issue.
    pub(super) async fn process_scheduled(&self, id: String, start: DateTime<Utc>) -> ApiResult<()> {
        if start > self.now() {
            return Ok(());
        }
        let owner = self.inner.replica_id.clone();
        let record = self
            .inner
            .store
            .write(move |wtx| -> ApiResult<Option<RequestRecord>> {
                let mut record = load_request(wtx, &id)?;
                if record.state != RequestState::Scheduled {
                    return Ok(None);
                }
                let kind = record.start_scheduled(wtx.now())?;
                let data = json!({"scheduled_start": record.scheduled_start});
                save_with_event(wtx, &record, SYSTEM_ACTOR, kind, data)?;
                claim_if_approved(wtx, &record, &owner)?;
                Ok(Some(record))
            })
            .await?;
        if let Some(record) = record {
            self.activate(record).await?;
        }
        Ok(())
    }
}
