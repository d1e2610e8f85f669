//! Target secrets: sealed at rest with the seal key, each bound to its
//! target and name (so a sealed value cannot be moved to another target),
//! unsealed only for the provider call that needs them, compared in
//! constant time when `apply` decides whether they changed, and never
//! returned, logged or audited (events name the secrets that changed).
//!
//! A secret Hallpass rotated keeps, sealed, the value it replaced: an
//! `apply` of the file it came from (which still holds that value) then
//! keeps the rotated one instead of putting back a password that no longer
//! works; a file with any other value replaces it, as an admin means.
//!
//! Also the start-up upgrade that moves credentials an earlier release kept
//! inside a target's configuration (a webhook URL's `user:password@`) into
//! sealed secrets.

use hallpass_core::AuditKind;
use hallpass_core::audit::AuditDraft;
use hallpass_core::documents::{Document, TargetDocument};
use hallpass_providers::{SecretValue, TargetSecrets};
use hallpass_store::{ConfigKind, ConfigRow, ReadTx, SecretOwner, SecretRow, WriteTx};
use serde_json::json;

use super::caller::SYSTEM_ACTOR;
use super::{App, AppError, AppResult};
use crate::app::seal::Sealer;

/// The associated data a secret is sealed with: its owner's kind and name
/// and its own name, so a sealed value cannot be moved to another owner.
fn seal_label(owner: SecretOwner, target: &str, name: &str) -> String {
    match owner {
        SecretOwner::Target => format!("target-secret:{target}:{name}"),
        SecretOwner::Notifier => format!("notifier-secret:{target}:{name}"),
    }
}

fn owner_word(owner: SecretOwner) -> &'static str {
    match owner {
        SecretOwner::Target => "target",
        SecretOwner::Notifier => "notifier",
    }
}

/// Meta key of the value a rotation of `secret` replaced (sealed; an empty
/// meta value: none recorded).
fn rotated_from_key(target: &str, secret: &str) -> String {
    format!("rotated-from:{target}:{secret}")
}

/// Records, sealed, what a rotation of `secret` replaced (`None`: it had
/// no value), so that [`keep_rotated`] knows a stale file when it sees one.
/// After several rotations it is the value an admin last set, the one
/// their file holds.
pub(crate) fn record_rotated_from(
    wtx: &mut WriteTx<'_>,
    sealer: &Sealer,
    target: &str,
    secret: &str,
    previous: Option<&SecretValue>,
) -> AppResult<()> {
    let key = rotated_from_key(target, secret);
    if wtx.read().meta(&key)?.is_some_and(|sealed| !sealed.is_empty()) {
        return Ok(());
    }
    // A leading byte tells "had no value" from an empty value.
    let plain = match previous {
        Some(value) => format!("v{}", value.expose()),
        None => "-".to_string(),
    };
    let sealed = sealer.seal(&key, plain.as_bytes()).map_err(AppError::internal)?;
    Ok(wtx.put_meta(&key, &sealed)?)
}

/// Forgets what rotations of `target`'s secrets replaced (the target is
/// deleted, or an admin set a secret anew).
pub(crate) fn forget_rotated_from(wtx: &mut WriteTx<'_>, target: &str, secrets: &[String]) -> AppResult<()> {
    for name in secrets {
        wtx.put_meta(&rotated_from_key(target, name), "")?;
    }
    Ok(())
}

/// The secrets `desired` (a file being applied) would change that Hallpass
/// rotated away from exactly the value the file holds: kept as stored.
pub(crate) fn keep_rotated(
    r: &mut ReadTx<'_>,
    sealer: &Sealer,
    target: &str,
    stored: &TargetSecrets,
    desired: &TargetSecrets,
    changed: &[String],
) -> AppResult<Vec<String>> {
    let mut kept = Vec::new();
    for name in changed.iter().filter(|name| stored.get(name).is_some()) {
        let key = rotated_from_key(target, name);
        let Some(sealed) = r.meta(&key)?.filter(|sealed| !sealed.is_empty()) else {
            continue;
        };
        let Some(plain) = sealer
            .open(&key, &sealed)
            .and_then(|bytes| String::from_utf8(bytes).ok())
        else {
            continue;
        };
        let stale = match (plain.strip_prefix('v'), desired.get(name)) {
            (Some(previous), Some(value)) => value.matches(&SecretValue::new(previous)),
            (None, None) => plain == "-",
            _ => false,
        };
        if stale {
            kept.push(name.clone());
        }
    }
    Ok(kept)
}

/// Unseals every secret of `target`.
pub(crate) fn unseal_all(r: &mut ReadTx<'_>, sealer: &Sealer, target: &str) -> AppResult<TargetSecrets> {
    unseal_all_of(r, sealer, SecretOwner::Target, target)
}

/// Unseals every secret of a target or notifier.
pub(crate) fn unseal_all_of(
    r: &mut ReadTx<'_>,
    sealer: &Sealer,
    owner: SecretOwner,
    target: &str,
) -> AppResult<TargetSecrets> {
    let rows = r.secrets(owner, target)?;
    unseal_rows(sealer, owner, target, rows)
}

/// Unseals secret rows of a target or notifier already read.
pub(crate) fn unseal_rows(
    sealer: &Sealer,
    owner: SecretOwner,
    target: &str,
    rows: Vec<SecretRow>,
) -> AppResult<TargetSecrets> {
    let mut secrets = TargetSecrets::new();
    let word = owner_word(owner);
    for row in rows {
        let plain = sealer
            .open(&seal_label(owner, target, &row.name), &row.sealed)
            .ok_or_else(|| {
                AppError::internal(format!(
                    "secret {:?} of {word} {target:?} cannot be unsealed with this seal key",
                    row.name
                ))
            })?;
        let text = String::from_utf8(plain)
            .map_err(|_| AppError::internal(format!("secret {:?} of {word} {target:?} is not text", row.name)))?;
        secrets.insert(row.name, SecretValue::new(text));
    }
    Ok(secrets)
}

/// Names of secrets added, changed or removed going from `stored` to
/// `desired`, sorted. Values are compared in constant time.
pub(crate) fn changed_names(stored: &TargetSecrets, desired: &TargetSecrets) -> Vec<String> {
    let mut changed: Vec<String> = desired
        .iter()
        .filter(|(name, value)| stored.get(name).is_none_or(|old| !old.matches(value)))
        .map(|(name, _)| name.to_string())
        .chain(
            stored
                .names()
                .filter(|name| desired.get(name).is_none())
                .map(str::to_string),
        )
        .collect();
    changed.sort();
    changed
}

/// Writes the `changed` secrets of `target` as they are in `desired`
/// (sealing new values, deleting removed ones).
pub(crate) fn write_changed(
    wtx: &mut WriteTx<'_>,
    sealer: &Sealer,
    target: &str,
    desired: &TargetSecrets,
    changed: &[String],
) -> AppResult<()> {
    write_changed_of(wtx, sealer, SecretOwner::Target, target, desired, changed)
}

/// [`write_changed`] for a target's or a notifier's secrets.
pub(crate) fn write_changed_of(
    wtx: &mut WriteTx<'_>,
    sealer: &Sealer,
    owner: SecretOwner,
    target: &str,
    desired: &TargetSecrets,
    changed: &[String],
) -> AppResult<()> {
    let now = wtx.now();
    for name in changed {
        match desired.get(name) {
            Some(value) => {
                let sealed = sealer
                    .seal(&seal_label(owner, target, name), value.expose().as_bytes())
                    .map_err(AppError::internal)?;
                wtx.put_secret(
                    owner,
                    &SecretRow {
                        target: target.to_string(),
                        name: name.clone(),
                        sealed,
                        updated_at: now,
                    },
                )?;
            }
            None => {
                wtx.delete_secret(owner, target, name)?;
            }
        }
    }
    Ok(())
}

impl App {
    /// The unsealed secrets of `target`, for one provider call.
    pub(crate) async fn target_secrets(&self, target: &str) -> AppResult<TargetSecrets> {
        let (sealer, target) = (self.inner.sealer.clone(), target.to_string());
        self.inner.store.read(move |r| unseal_all(r, &sealer, &target)).await
    }

    /// At start-up: for every stored target whose configuration still holds
    /// credentials (written by an earlier release), moves them into sealed
    /// secrets, one transaction per target with its audit event. Says so in
    /// the log; the old audit events keep the old values, so the operator
    /// must rotate those credentials (docs/operations.md).
    pub(crate) async fn upgrade_legacy_targets(&self) -> AppResult<usize> {
        let rows = self.inner.store.read(|r| r.configs(ConfigKind::Target)).await?;
        let mut upgraded = 0;
        for row in rows {
            let document = TargetDocument::decode(&row.document)?;
            let Some(provider) = self.inner.registry.get(&document.target_type) else {
                continue;
            };
            let Some(upgrade) = provider.upgrade_legacy_config(&document.config) else {
                continue;
            };
            let moved = upgrade.moved.clone();
            let (sealer, name) = (self.inner.sealer.clone(), document.name.clone());
            let written = self
                .inner
                .store
                .write(move |wtx| upgrade_one(wtx, &sealer, row, document, upgrade))
                .await?;
            if written {
                upgraded += 1;
                tracing::warn!(
                    target_name = %name, moved = ?moved,
                    "moved credentials out of the target's configuration into sealed secrets; \
                     rotate them: earlier audit events still hold the old values (see docs/operations.md)"
                );
            }
        }
        Ok(upgraded)
    }
}

/// Rewrites one legacy target, unless another replica already did.
fn upgrade_one(
    wtx: &mut WriteTx<'_>,
    sealer: &Sealer,
    row: ConfigRow,
    document: TargetDocument,
    upgrade: hallpass_providers::LegacyUpgrade,
) -> AppResult<bool> {
    let current = wtx.read().config(ConfigKind::Target, &row.name)?;
    if current.as_ref().map(|c| &c.document) != Some(&row.document) {
        return Ok(false);
    }
    let mut secrets = unseal_all(&mut wtx.read(), sealer, &row.name)?;
    for (name, value) in upgrade.secrets.iter() {
        secrets.insert(name, value.clone());
    }
    let changed: Vec<String> = upgrade.secrets.names().map(str::to_string).collect();
    write_changed(wtx, sealer, &row.name, &secrets, &changed)?;
    let upgraded = TargetDocument {
        config: upgrade.config,
        ..document
    };
    wtx.append_audit(AuditDraft::new(
        SYSTEM_ACTOR,
        AuditKind::TargetSecretsUpgraded,
        None,
        json!({"name": row.name, "secrets": changed, "moved": upgrade.moved}),
    ))?;
    let now = wtx.now();
    wtx.put_config(
        ConfigKind::Target,
        &ConfigRow {
            document: upgraded.encode(),
            updated_at: now,
            ..row
        },
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> TargetSecrets {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretValue::new(*v)))
            .collect()
    }

    #[test]
    fn changes_are_named_not_valued() {
        let stored = secrets(&[("a", "1"), ("b", "2"), ("gone", "x")]);
        let desired = secrets(&[("a", "1"), ("b", "3"), ("new", "y")]);
        assert_eq!(changed_names(&stored, &desired), ["b", "gone", "new"]);
        assert!(changed_names(&stored, &stored).is_empty());
    }
}
