//! Operations on a target itself rather than on a grant: testing that its
//! admin credentials can do what its provider needs, rotating its admin
//! password to one only Hallpass knows, the key its hosts must trust, and
//! its revocation list (an OpenSSH KRL) built from the grants ended early.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hallpass_api::{self as api, ErrorCode};
use hallpass_core::AuditKind;
use hallpass_core::audit::AuditDraft;
use hallpass_core::documents::TargetDocument;
use hallpass_core::events::{ConfigChange, ConfigSubject};
use hallpass_providers::{CredentialProvider, ProviderError, RevokedGrant, SecretValue, TargetSecrets};
use hallpass_store::{ConfigKind, ConfigRow, RevocationRow};
use serde_json::json;

use super::secrets::{record_rotated_from, write_changed};
use super::tokens::random_bytes;
use super::{App, AppError, AppResult, Caller, ErrorKind, unknown_config};

/// One writer at a time per target's revocation list (in this server): a
/// revoke lists its grant, reads the whole list and writes it out while it
/// holds its target's writer, so no list written lacks a grant listed
/// before it. Replicas write their own copies (each reads the store).
#[derive(Default)]
pub(crate) struct RevocationListWriters(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl RevocationListWriters {
    pub(crate) async fn writer(&self, target: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut writers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(writers.entry(target.to_string()).or_default())
        };
        lock.lock_owned().await
    }
}

/// A stored target and when it was created (which its key material
/// depends on).
pub(crate) struct StoredTarget {
    pub document: TargetDocument,
    pub created_at: DateTime<Utc>,
}

/// Key in the meta table of a rotated secret not yet stored: written
/// (sealed) before the target is asked to change it, so a crash between
/// the two loses nothing; the next rotation adopts it first.
fn staged_key(target: &str, secret: &str) -> String {
    format!("rotation:{target}:{secret}")
}

fn target_failed(target: &str, what: &str, error: &ProviderError) -> AppError {
    let (kind, code) = match error {
        ProviderError::Unsupported(_) => (ErrorKind::Conflict, ErrorCode::Unsupported),
        ProviderError::InvalidConfig { .. } => (ErrorKind::Invalid, ErrorCode::InvalidTargetConfig),
        _ => (ErrorKind::TargetFailed, ErrorCode::TargetFailed),
    };
    AppError::new(kind, code, format!("target {target:?}: {what} failed: {error}"))
}

impl App {
    async fn target_row(&self, name: &str) -> AppResult<ConfigRow> {
        let lookup = name.to_string();
        self.inner
            .store
            .read(move |r| r.config(ConfigKind::Target, &lookup))
            .await?
            .ok_or_else(|| unknown_config(api::ConfigKind::Target, name))
    }

    /// The key a target's hosts must trust (an SSH CA's public key line),
    /// for types that have one.
    pub(crate) fn ca_public_key(&self, row: &ConfigRow) -> Option<String> {
        let (provider, target) = self.with_provider(row).ok()?;
        let anchor = provider.trust_anchor(&self.public_target_context(&target))?;
        anchor
            .inspect_err(|error| tracing::error!(target = %row.name, %error, "cannot derive the target's CA key"))
            .ok()
    }

    /// Runs the provider's checks of the target's admin credentials.
    /// Admins only: the answer describes the target's privileges.
    pub async fn test_target(&self, caller: &Caller, name: String) -> AppResult<api::TargetTest> {
        caller.require_admin()?;
        let row = self.target_row(&name).await?;
        let (provider, target) = self.with_provider(&row)?;
        let context = self.target_context(&target).await?;
        let checks = provider
            .test(&context)
            .await
            .map_err(|error| target_failed(&name, "the test", &error))?;
        let checks: Vec<api::TargetCheck> = checks
            .into_iter()
            .map(|check| api::TargetCheck {
                name: check.name,
                ok: check.ok,
                detail: check.detail,
            })
            .collect();
        Ok(api::TargetTest {
            ok: checks.iter().all(|check| check.ok),
            target: name,
            checks,
        })
    }

    /// Replaces the target's admin password with a random one only Hallpass
    /// knows: the new value is staged (sealed) first, the target is changed,
    /// then the new value is stored with its audit event. Admins only.
    pub async fn rotate_target(&self, caller: &Caller, name: String) -> AppResult<api::RotateResult> {
        caller.require_admin()?;
        let row = self.target_row(&name).await?;
        let (provider, target) = self.with_provider(&row)?;
        let secret = provider.rotatable_secret().ok_or_else(|| {
            AppError::conflict(
                ErrorCode::Unsupported,
                format!(
                    "{} targets have no admin password Hallpass can rotate",
                    target.document.target_type
                ),
            )
        })?;
        let mut context = self.target_context(&target).await?;
        self.adopt_staged(provider.as_ref(), &mut context, secret).await?;
        let previous = context.secrets.get(secret).cloned();
        let new = SecretValue::new(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?));
        self.stage(&name, secret, &new).await?;
        provider
            .rotate(&context, &new)
            .await
            .map_err(|error| target_failed(&name, "rotating its admin password", &error))?;
        context.secrets.insert(secret, new);
        let rotated_at = self
            .store_rotated(caller.name(), &name, secret, context.secrets, previous)
            .await?;
        Ok(api::RotateResult {
            target: name,
            secret: secret.to_string(),
            rotated_at,
        })
    }

    /// A rotation that changed the target but was not stored (a crash):
    /// if the target accepts the staged value, store it now.
    async fn adopt_staged(
        &self,
        provider: &dyn CredentialProvider,
        context: &mut hallpass_providers::TargetContext,
        secret: &'static str,
    ) -> AppResult<()> {
        let key = staged_key(&context.name, secret);
        let lookup = key.clone();
        let Some(sealed) = self.inner.store.read(move |r| r.meta(&lookup)).await? else {
            return Ok(());
        };
        let Some(value) = self
            .inner
            .sealer
            .open(&key, &sealed)
            .and_then(|bytes| String::from_utf8(bytes).ok())
        else {
            return Ok(());
        };
        let mut trial = context.clone();
        trial.secrets.insert(secret, SecretValue::new(value));
        let accepted = provider
            .test(&trial)
            .await
            .is_ok_and(|checks| checks.first().is_some_and(|check| check.ok));
        if accepted {
            tracing::warn!(target = %context.name, secret, "adopting a rotated secret an interrupted rotation left staged");
            let previous = context.secrets.get(secret).cloned();
            self.store_rotated("hallpass", &context.name, secret, trial.secrets.clone(), previous)
                .await?;
            *context = trial;
        }
        Ok(())
    }

    async fn stage(&self, target: &str, secret: &str, value: &SecretValue) -> AppResult<()> {
        let key = staged_key(target, secret);
        let sealed = self
            .inner
            .sealer
            .seal(&key, value.expose().as_bytes())
            .map_err(AppError::internal)?;
        self.inner
            .store
            .write(move |wtx| -> AppResult<()> { Ok(wtx.put_meta(&key, &sealed)?) })
            .await
    }

    /// Stores the rotated secret with its audit event, records (sealed)
    /// the value it replaced, and clears the stage.
    async fn store_rotated(
        &self,
        actor: &str,
        target: &str,
        secret: &'static str,
        secrets: TargetSecrets,
        previous: Option<SecretValue>,
    ) -> AppResult<DateTime<Utc>> {
        let (sealer, target, actor) = (self.inner.sealer.clone(), target.to_string(), actor.to_string());
        self.inner
            .store
            .write(move |wtx| {
                let now = wtx.now();
                write_changed(wtx, &sealer, &target, &secrets, &[secret.to_string()])?;
                record_rotated_from(wtx, &sealer, &target, secret, previous.as_ref())?;
                wtx.put_meta(&staged_key(&target, secret), "")?;
                wtx.append_audit(AuditDraft::new(
                    actor,
                    AuditKind::config(ConfigSubject::Target, ConfigChange::Updated),
                    None,
                    json!({"name": target, "fields": [], "secrets_changed": [secret], "rotated": true}),
                ))?;
                Ok(now)
            })
            .await
    }

    /// The target's revocation list, for hosts that check one themselves
    /// (`GET /v1/targets/{name}/krl`). Public, like the JWKS: it names
    /// certificate serials, nothing secret.
    pub async fn revocation_list(&self, name: String) -> AppResult<Vec<u8>> {
        let row = self.target_row(&name).await?;
        let (provider, target) = self.with_provider(&row)?;
        let revoked = self.revoked_grants(&name).await?;
        let context = self.public_target_context(&target);
        match provider.revocation_list(&context, &revoked) {
            Some(list) => list.map_err(|error| target_failed(&name, "building the revocation list", &error)),
            None => Err(AppError::not_found(format!(
                "target {name:?} is of type {}, which has no revocation list",
                target.document.target_type
            ))),
        }
    }

    /// The target's grants ended before their expiry and not yet expired.
    pub(crate) async fn revoked_grants(&self, target: &str) -> AppResult<Vec<RevokedGrant>> {
        let (target, now) = (target.to_string(), self.now());
        let rows = self.inner.store.read(move |r| r.revocations(&target, now)).await?;
        Ok(rows
            .into_iter()
            .map(|row| RevokedGrant {
                grant_id: row.grant_id,
                metadata: row.metadata,
                expires_at: row.expires_at,
            })
            .collect())
    }

    /// Lists a grant ending early on its target's revocation list before
    /// the revoke is attempted, and returns the whole list.
    pub(crate) async fn list_revoked(&self, target: &StoredTarget, row: RevocationRow) -> AppResult<Vec<RevokedGrant>> {
        self.inner
            .store
            .write(move |wtx| -> AppResult<()> {
                let now = wtx.now();
                Ok(wtx.put_revocation(&row, now)?)
            })
            .await?;
        self.revoked_grants(&target.document.name).await
    }
}
