//! Notifiers as configuration (read by anyone authenticated, changed by
//! admins through `apply`, with write-only sealed secrets like targets'),
//! and the outbox as an admin sees it: dead-lettered deliveries and
//! sending one again.

use hallpass_api::{self as api, ConfigKind as ApiKind, DeliveryState, ErrorCode};
use hallpass_core::AuditKind;
use hallpass_core::audit::AuditDraft;
use hallpass_core::documents::{Document, NotifierDocument};
use hallpass_notifiers::{NotifierTypes, NotifyError};
use hallpass_providers::TargetSecrets;
use hallpass_store::{ConfigKind, ConfigRow, DeliveryRow, SecretOwner, SecretRow};
use serde_json::json;

use super::access_config::check_name;
use super::secrets::unseal_all_of;
use super::{App, AppError, AppResult, Caller, unknown_config};

/// The most dead-lettered deliveries one call lists.
pub const MAX_FAILED_PAGE: u32 = 1000;

/// Checks a notifier against its type and returns its stored form.
pub(crate) fn normalize_notifier(
    spec: &api::NotifierSpec,
    secrets: &TargetSecrets,
    types: &NotifierTypes,
) -> AppResult<NotifierDocument> {
    check_name("notifier", &spec.name)?;
    let notifier_type = spec.notifier_type.trim().to_string();
    types
        .validate(&notifier_type, &spec.config, secrets)
        .map_err(|error| notifier_error(&spec.name, error))?;
    Ok(NotifierDocument {
        name: spec.name.clone(),
        notifier_type,
        config: spec.config.clone(),
    })
}

fn notifier_error(name: &str, error: NotifyError) -> AppError {
    AppError::invalid(ErrorCode::InvalidNotifierConfig, format!("notifier {name:?}: {error}"))
}

fn notifier_to_api(row: &ConfigRow, secrets: &[SecretRow]) -> AppResult<api::Notifier> {
    let document = NotifierDocument::decode(&row.document)?;
    Ok(api::Notifier {
        name: document.name,
        notifier_type: document.notifier_type,
        config: document.config,
        secrets: secrets
            .iter()
            .map(|s| api::SecretInfo {
                name: s.name.clone(),
                updated_at: s.updated_at,
            })
            .collect(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// A stored delivery as the API shows it. Its payload (which may carry a
/// request's reason) is not shown here: the request itself is one call away.
pub(crate) fn delivery_to_api(row: &DeliveryRow) -> AppResult<api::Delivery> {
    let corrupt = |what: &str| AppError::internal(format!("delivery {} has an unknown {what}", row.id));
    Ok(api::Delivery {
        id: row.id.clone(),
        notifier: row.notifier.clone(),
        topic: api::NotificationTopic::parse(&row.topic).ok_or_else(|| corrupt("topic"))?,
        request_id: row.request_id.clone(),
        event_seq: row.event_seq,
        state: DeliveryState::parse(&row.state).ok_or_else(|| corrupt("state"))?,
        attempts: row.attempts,
        created_at: row.created_at,
        next_attempt_at: row.next_attempt_at,
        delivered_at: row.delivered_at,
        last_error: row.last_error.clone(),
    })
}

impl App {
    pub async fn list_notifiers(&self, _caller: &Caller) -> AppResult<Vec<api::Notifier>> {
        self.inner
            .store
            .read(|r| -> AppResult<Vec<api::Notifier>> {
                let mut notifiers = Vec::new();
                for row in r.configs(ConfigKind::Notifier)? {
                    let secrets = r.secrets(SecretOwner::Notifier, &row.name)?;
                    notifiers.push(notifier_to_api(&row, &secrets)?);
                }
                Ok(notifiers)
            })
            .await
    }

    pub async fn get_notifier(&self, _caller: &Caller, name: String) -> AppResult<api::Notifier> {
        self.inner
            .store
            .read(move |r| -> AppResult<api::Notifier> {
                let row = r
                    .config(ConfigKind::Notifier, &name)?
                    .ok_or_else(|| unknown_config(ApiKind::Notifier, &name))?;
                notifier_to_api(&row, &r.secrets(SecretOwner::Notifier, &name)?)
            })
            .await
    }

    pub async fn put_notifier(&self, caller: &Caller, spec: api::NotifierSpec) -> AppResult<api::Notifier> {
        let name = spec.name.clone();
        self.apply(
            caller,
            api::ApplyRequest {
                notifiers: vec![spec],
                ..api::ApplyRequest::default()
            },
        )
        .await?;
        self.get_notifier(caller, name).await
    }

    /// A notifier with its secrets unsealed, for one send; `None` when it
    /// was deleted.
    pub(crate) async fn notifier_for_send(&self, name: &str) -> AppResult<Option<(NotifierDocument, TargetSecrets)>> {
        let (sealer, name) = (self.inner.sealer.clone(), name.to_string());
        self.inner
            .store
            .read(move |r| -> AppResult<Option<(NotifierDocument, TargetSecrets)>> {
                let Some(row) = r.config(ConfigKind::Notifier, &name)? else {
                    return Ok(None);
                };
                let secrets = unseal_all_of(r, &sealer, SecretOwner::Notifier, &name)?;
                Ok(Some((NotifierDocument::decode(&row.document)?, secrets)))
            })
            .await
    }

    /// Dead-lettered deliveries, oldest first. Admins and auditors.
    pub async fn failed_notifications(&self, caller: &Caller, limit: Option<u32>) -> AppResult<api::DeliveryList> {
        caller.require_auditor()?;
        let limit = limit.unwrap_or(MAX_FAILED_PAGE).clamp(1, MAX_FAILED_PAGE);
        let rows = self
            .inner
            .store
            .read(move |r| r.deliveries(DeliveryState::Dead.as_str(), None, limit))
            .await?;
        Ok(api::DeliveryList {
            items: rows.iter().map(delivery_to_api).collect::<AppResult<_>>()?,
        })
    }

    /// Sends a dead-lettered delivery again, from now, with a fresh retry
    /// budget. Admins only.
    pub async fn retry_notification(&self, caller: &Caller, id: String) -> AppResult<api::Delivery> {
        caller.require_admin()?;
        let actor = caller.name().to_string();
        let row = self
            .inner
            .store
            .write(move |wtx| -> AppResult<DeliveryRow> {
                let Some(row) = wtx.revive_delivery(&id)? else {
                    return Err(match wtx.read().delivery(&id)? {
                        Some(row) => AppError::conflict(
                            ErrorCode::WrongState,
                            format!(
                                "delivery {id:?} is {}, not dead-lettered; only a dead-lettered delivery is sent again",
                                row.state
                            ),
                        ),
                        None => AppError::not_found(format!("no delivery {id:?}")),
                    });
                };
                wtx.append_audit(AuditDraft::new(
                    actor,
                    AuditKind::NotificationRetried,
                    row.request_id.clone(),
                    json!({"delivery": row.id, "notifier": row.notifier, "type": row.topic}),
                ))?;
                Ok(row)
            })
            .await?;
        self.inner.outbox_wake.notify_one();
        delivery_to_api(&row)
    }
}
