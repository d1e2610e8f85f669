//! Approving, denying and cancelling requests (and pending extensions).
//! Who may do it is decided by `hallpass-core`; this loads the record,
//! calls the rule and saves the outcome with its event, in one transaction.
//! An approval that completes a request checks the role as it is now: a
//! deleted role withdraws the request, a requester no longer allowed is
//! refused. One that completes an extension fits it to the role as it is
//! now (shorter when the limits were lowered) or denies it.

use chrono::{DateTime, Utc};
use hallpass_api::{self as api, ErrorCode};
use hallpass_core::AuditKind;
use hallpass_core::RequestState;
use hallpass_core::request::{RequestRecord, RoleCheck};
use hallpass_store::WriteTx;
use serde_json::{Value, json};

use super::caller::SYSTEM_ACTOR;
use super::requests::current_role;
use super::{App, AppError, AppResult, Caller, claim_if_approved, load_visible, save_with_event};

/// Why an approved request could not take effect, if it could not.
pub(crate) fn take_effect_check(
    wtx: &mut WriteTx<'_>,
    record: &mut RequestRecord,
    now: DateTime<Utc>,
) -> AppResult<Option<String>> {
    if !matches!(record.state, RequestState::Approved | RequestState::Scheduled) {
        return Ok(None);
    }
    let role = current_role(&mut wtx.read(), &record.role)?;
    let (kind, why) = match record.check_role(role.as_ref()) {
        RoleCheck::Allowed => return Ok(None),
        RoleCheck::RoleGone => {
            let why = format!("role {:?} was deleted before the request took effect", record.role);
            (record.withdraw(SYSTEM_ACTOR, why.clone(), now)?, why)
        }
        RoleCheck::NotRequestable(why) => (record.refuse(SYSTEM_ACTOR, std::slice::from_ref(&why), now)?, why),
    };
    save_with_event(wtx, record, SYSTEM_ACTOR, kind, json!({"reason": why}))?;
    Ok(Some(why))
}

impl App {
    pub async fn approve(&self, caller: &Caller, id: String, comment: Option<String>) -> AppResult<api::AccessRequest> {
        let approver = caller.principal.clone();
        let viewer = caller.clone();
        let owner = self.inner.replica_id.clone();
        let (record, version, refused) = self
            .inner
            .store
            .write(move |wtx| -> AppResult<(RequestRecord, u64, Option<String>)> {
                let mut record = load_visible(wtx, &viewer, &id)?;
                let now = wtx.now();
                let role = current_role(&mut wtx.read(), &record.role)?;
                let kind = record.approve(&approver, comment.clone(), role.as_ref(), now)?;
                let data = approval_data(&record, comment.as_deref());
                let extension_denied = kind == AuditKind::GrantExtensionDenied;
                let version = save_with_event(wtx, &record, &approver.name, kind, data)?;
                if extension_denied {
                    let why = record
                        .extensions
                        .last()
                        .and_then(|e| e.decision.as_ref()?.comment.clone());
                    return Ok((record, version, why));
                }
                if let Some(why) = take_effect_check(wtx, &mut record, now)? {
                    let version = wtx.read().request(&record.id)?.map_or(version, |(_, v)| v);
                    return Ok((record, version, Some(why)));
                }
                claim_if_approved(wtx, &record, &owner)?;
                Ok((record, version, None))
            })
            .await?;
        if let Some(why) = refused {
            let what = match record.extensions.last() {
                Some(extension) if record.state == RequestState::Active => {
                    format!("extension {} of grant {}", extension.number, record.id)
                }
                _ => format!("request {}", record.id),
            };
            let now = match record.extensions.last() {
                Some(extension) if record.state == RequestState::Active => {
                    format!("the extension is {}", extension.state)
                }
                _ => format!("it is now {}", record.state),
            };
            return Err(AppError::conflict(
                ErrorCode::NoLongerAllowed,
                format!("your approval was recorded, but {what} cannot take effect: {why}; {now}"),
            ));
        }
        self.after_write(record, version).await
    }

    pub async fn deny(&self, caller: &Caller, id: String, comment: Option<String>) -> AppResult<api::AccessRequest> {
        let approver = caller.principal.clone();
        self.change_request(caller, id, move |record, now| {
            let kind = record.deny(&approver, comment.clone(), now)?;
            Ok((kind, json!({"comment": comment})))
        })
        .await
    }

    pub async fn cancel(&self, caller: &Caller, id: String) -> AppResult<api::AccessRequest> {
        let principal = caller.principal.clone();
        self.change_request(caller, id, move |record, now| {
            Ok((record.cancel(&principal, now)?, json!({})))
        })
        .await
    }

    /// Loads (if the caller may see it), changes and saves one request with
    /// its audit event, in one transaction.
    pub(crate) async fn change_request<F>(
        &self,
        caller: &Caller,
        id: String,
        change: F,
    ) -> AppResult<api::AccessRequest>
    where
        F: FnOnce(&mut RequestRecord, DateTime<Utc>) -> AppResult<(AuditKind, Value)> + Send + 'static,
    {
        let (viewer, actor) = (caller.clone(), caller.name().to_string());
        let (record, version) = self
            .inner
            .store
            .write(move |wtx| -> AppResult<(RequestRecord, u64)> {
                let mut record = load_visible(wtx, &viewer, &id)?;
                let now = wtx.now();
                let (kind, data) = change(&mut record, now)?;
                let version = save_with_event(wtx, &record, &actor, kind, data)?;
                Ok((record, version))
            })
            .await?;
        self.schedule(&record);
        Ok(self.to_api(&record, version))
    }
}

fn approval_data(record: &RequestRecord, comment: Option<&str>) -> Value {
    let progress = match record.pending_extension().or(record.extensions.last()) {
        Some(extension) if record.activated_at.is_some() => extension.approval.as_ref(),
        _ => record.approval.as_ref(),
    };
    json!({
        "comment": comment, "state": record.state,
        "approvals": progress.map(|p| p.all_approvals().len()),
        "required_approvals": progress.map(|p| p.flow.total_required()),
        "stage": progress.map(|p| p.current.min(p.flow.stages.len())),
        "extension": record.activated_at.and(record.extensions.last().map(|e| e.number)),
        "by_seconds": record.activated_at.and(record.extensions.last().map(|e| e.by_seconds)),
        "capped_from_seconds": record.activated_at.and(record.extensions.last().and_then(|e| e.capped_from_seconds)),
        "reason": record.activated_at.and(record.extensions.last().and_then(|e| e.decision.as_ref()?.comment.clone())),
        "expires_at": record.expires_at,
    })
}
