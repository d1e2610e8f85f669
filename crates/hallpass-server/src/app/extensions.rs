//! Extensions of active grants: asked for directly, or by requesting a role
//! already held. Decided like requests (policies, then the role's flow
//! unless the role lets extensions skip approval), optimistically, and
//! bounded by the role's total duration.

use chrono::Duration;
use hallpass_api::{self as api, RequestOutcome};
use hallpass_core::AuditKind;
use hallpass_core::request::{NewExtension, RequestRecord};
use serde_json::json;

use super::requests::{DECISION_ATTEMPTS, RoleContext, parse_request_duration};
use super::{App, AppError, AppResult, Caller, load_request, save_with_event, unknown_request, unknown_role};
use crate::gate::Asked;

/// What an extension asked for.
struct ExtensionAsk {
    by_seconds: u64,
    reason: String,
    ticket: Option<String>,
}

impl App {
    /// `POST /v1/requests/{id}/extend`: more time on the caller's grant.
    pub async fn extend(&self, caller: &Caller, id: String, body: api::ExtendBody) -> AppResult<api::AccessRequest> {
        let by_seconds = parse_request_duration(Some(&body.by), "by")?.unwrap_or(0);
        let ask = ExtensionAsk {
            by_seconds,
            reason: body.reason,
            ticket: body.ticket,
        };
        for _ in 0..DECISION_ATTEMPTS {
            let lookup = id.clone();
            let found = self.inner.store.read(move |r| r.request(&lookup)).await?;
            let (grant, version) = found
                .filter(|(record, _)| caller.may_see(record))
                .ok_or_else(|| unknown_request(&id))?;
            let context = self
                .role_context(&grant.role, &grant.requester.name)
                .await?
                .ok_or_else(|| unknown_role(&grant.role))?;
            if let Some((record, version, _)) = self.try_extension(caller, &grant, version, &ask, &context).await? {
                return Ok(self.to_api(&record, version));
            }
        }
        Err(AppError::busy(
            "this grant kept changing while the extension was decided; try again",
        ))
    }

    /// A request for a role already held: extend the grant so it lasts the
    /// asked duration from now, or return it unchanged if it already does.
    /// `None` when what the decision read changed (decide again).
    pub(crate) async fn extend_held_grant(
        &self,
        caller: &Caller,
        grant: &RequestRecord,
        version: u64,
        wanted_seconds: u64,
        body: &api::CreateRequest,
        context: &RoleContext,
    ) -> AppResult<Option<(RequestOutcome, api::AccessRequest)>> {
        let unchanged = || Ok(Some((RequestOutcome::ExistingGrant, self.to_api(grant, version))));
        let wanted_until = self.now() + Duration::seconds(i64::try_from(wanted_seconds).unwrap_or(i64::MAX / 1000));
        let expires = grant.expires_at.unwrap_or(wanted_until);
        if wanted_until <= expires || grant.pending_extension().is_some() {
            return unchanged();
        }
        // Asking twice in a row must not start an approval for a few
        // seconds: under a minute short counts as covered, and the rest is
        // rounded up to whole minutes.
        let missing = (wanted_until - expires).num_seconds();
        if missing < 60 {
            return unchanged();
        }
        let ask = ExtensionAsk {
            by_seconds: u64::try_from(missing).unwrap_or(u64::MAX).div_ceil(60) * 60,
            reason: body.reason.clone(),
            ticket: body.ticket.clone(),
        };
        let Some((record, version, kind)) = self.try_extension(caller, grant, version, &ask, context).await? else {
            return Ok(None);
        };
        let outcome = match kind {
            AuditKind::GrantExtended => RequestOutcome::Extended,
            AuditKind::GrantExtensionDenied => RequestOutcome::ExtensionDenied,
            _ => RequestOutcome::ExtensionRequested,
        };
        Ok(Some((outcome, self.to_api(&record, version))))
    }

    /// One attempt at an extension; `None` when the grant or anything the
    /// decision read changed before it could be written.
    async fn try_extension(
        &self,
        caller: &Caller,
        grant: &RequestRecord,
        version: u64,
        ask: &ExtensionAsk,
        context: &RoleContext,
    ) -> AppResult<Option<(RequestRecord, u64, AuditKind)>> {
        let asked = Asked {
            duration_seconds: ask.by_seconds,
            reason: ask.reason.clone(),
            ticket: ask.ticket.clone(),
            emergency: grant.emergency,
            extension: true,
            scheduled_start: None,
            plan: grant.plan.clone(),
        };
        let self_service = !context.rules.extension_requires_approval;
        let decided = self.decide(context, &caller.principal, &asked, self_service).await?;
        let extension = NewExtension {
            by_seconds: ask.by_seconds,
            reason: ask.reason.clone(),
            ticket: ask.ticket.clone(),
            policy_cap_seconds: decided.policy.max_duration_seconds,
            policy: Some(decided.policy),
        };
        let (principal, rules, route, snapshot) = (
            caller.principal.clone(),
            context.rules.clone(),
            decided.route,
            decided.snapshot,
        );
        let (id, seen) = (grant.id.clone(), version);
        let written = self
            .inner
            .store
            .write(move |wtx| -> AppResult<Option<(RequestRecord, u64, AuditKind)>> {
                let current = wtx.read().request(&id)?.map(|(_, version)| version);
                if current != Some(seen) || !snapshot.holds(&mut wtx.read())? {
                    return Ok(None);
                }
                let mut record = load_request(wtx, &id)?;
                let now = wtx.now();
                let kind = record.request_extension(&principal, extension, &rules, route, now)?;
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
                let version = save_with_event(wtx, &record, &principal.name, kind.clone(), data)?;
                Ok(Some((record, version, kind)))
            })
            .await?;
        if let Some((record, _, kind)) = &written {
            self.schedule(record);
            if *kind == AuditKind::GrantExtended {
                self.extend_on_target(record).await;
            }
        }
        Ok(written)
    }
}
