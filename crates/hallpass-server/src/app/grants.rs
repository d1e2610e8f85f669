//! Grants: issuing credentials when a request is approved, handing the
//! secret to its requester, ending grants (release, revoke, expiry) through
//! their provider, and token introspection for services.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use hallpass_api::{self as api, ErrorCode};
use hallpass_core::AuditKind;
use hallpass_core::RequestState;
use hallpass_core::documents::{Document, RoleDocument, TargetDocument};
use hallpass_core::request::{Decision, EndKind, RequestRecord, revoke_backoff};
use hallpass_core::text::{self, TextField};
use hallpass_providers::{CredentialProvider, GrantContext, Seed, TargetContext, TargetSecrets, Verification};
use hallpass_store::{ConfigKind, ConfigRow, ReadTx, RevocationRow, SecretOwner, WriteTx};
use serde_json::{Value, json};

use super::caller::SYSTEM_ACTOR;
use super::decisions::take_effect_check;
use super::requests::{activation_data, current_role, role_document};
use super::seal::Sealer;
use super::secrets::{unseal_all, unseal_rows};
use super::targets::StoredTarget;
use super::{App, AppError, AppResult, Caller, ErrorKind, load_request, save_with_event, unknown_request};

/// How often, and how far apart, a revoke is verified before what remains
/// counts as a failure: a terminated session can take a moment to go.
const VERIFY_ATTEMPTS: u32 = 5;
const VERIFY_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// Revokes, then checks nothing is left. `Ok(Some(true))`: verified gone;
/// `Ok(None)`: the type cannot observe its target; `Err`: what failed or
/// remains (no secret in it), and the grant stays `revoke_failed`.
async fn revoke_and_verify(
    provider: &dyn CredentialProvider,
    context: &GrantContext,
    metadata: &Value,
) -> Result<Option<bool>, String> {
    provider.revoke(context, metadata).await.map_err(|e| e.to_string())?;
    let mut attempt = 1;
    loop {
        match provider.verify(context, metadata).await {
            Ok(Verification::Gone) => return Ok(Some(true)),
            Ok(Verification::NotObservable) => return Ok(None),
            Ok(Verification::Remaining(what)) if attempt >= VERIFY_ATTEMPTS => {
                return Err(format!("revoked, but access remains: {what}"));
            }
            Err(error) if attempt >= VERIFY_ATTEMPTS => {
                return Err(format!("revoked, but could not verify that access is gone: {error}"));
            }
            Ok(Verification::Remaining(_)) | Err(_) => {
                attempt += 1;
                tokio::time::sleep(VERIFY_PAUSE).await;
            }
        }
    }
}

/// A grant about to end, as [`App::read_ending`] found it.
pub(super) struct Ending {
    pub(super) record: RequestRecord,
    version: u64,
    target: Option<EndingTarget>,
}

/// The target's row, the role, and the target's secrets.
type EndingTarget = (ConfigRow, Option<RoleDocument>, TargetSecrets);

/// When a grant ends: its recorded expiry, or its duration from `activated_at`.
fn grant_end(record: &RequestRecord, activated_at: DateTime<Utc>) -> DateTime<Utc> {
    let seconds = i64::try_from(record.duration_seconds).unwrap_or(i64::MAX / 1000);
    record.expires_at.unwrap_or(activated_at + Duration::seconds(seconds))
}

/// A grant whose revoke is about to run: what was read, and what the
/// provider needs.
pub(super) struct Revoking {
    record: RequestRecord,
    version: u64,
    kind: EndKind,
    provider: Arc<dyn CredentialProvider>,
    target: StoredTarget,
    context: GrantContext,
}

/// A grant after its revoke ran: the outcome, still to be recorded.
pub(super) struct Revoked {
    record: RequestRecord,
    version: u64,
    pub(super) kind: EndKind,
    outcome: Result<Option<bool>, String>,
}

impl Revoked {
    pub(super) fn id(&self) -> &str {
        &self.record.id
    }
}

/// Who ends a grant, and why.
pub(super) struct EndBy {
    pub(super) actor: String,
    pub(super) reason: Option<String>,
}

/// Records a revoke's outcome on its grant: ended, or `revoke_failed` with
/// its retry.
pub(super) fn record_end(wtx: &mut WriteTx<'_>, by: &EndBy, revoked: Revoked) -> AppResult<(RequestRecord, u64)> {
    let current = wtx.read().request_version(revoked.id())?;
    let (record, event, data) = decide_end(wtx, by, revoked, current)??;
    let version = save_with_event(wtx, &record, &by.actor, event, data)?;
    Ok((record, version))
}

/// What ending a grant writes: the record, its event and the event's data.
pub(super) type EndWrite = (RequestRecord, AuditKind, Value);

/// What [`record_end`] writes, decided without writing anything. The
/// record read before the revoke is used as it was unless it changed since
/// (its `current_version` in the store is another: an extension or another
/// end meanwhile): then it is read again and the
/// state rules decide. The outer error is the store's (the transaction may
/// be unusable); the inner one is the state rules' refusal, after which the
/// transaction goes on.
pub(super) fn decide_end(
    wtx: &mut WriteTx<'_>,
    by: &EndBy,
    revoked: Revoked,
    current_version: Option<u64>,
) -> AppResult<AppResult<EndWrite>> {
    let Revoked {
        record,
        version,
        kind,
        outcome,
    } = revoked;
    let mut record = if current_version == Some(version) {
        record
    } else {
        load_request(wtx, &record.id)?
    };
    let now = wtx.now();
    let decision = Decision {
        by: by.actor.clone(),
        comment: by.reason.clone(),
        at: now,
    };
    let reason = &by.reason;
    let (event, data) = match outcome {
        Ok(verified) => {
            let event = match record.finish_end(kind, decision, now) {
                Ok(event) => event,
                Err(refused) => return Ok(Err(refused.into())),
            };
            let lag = record.expires_at.map(|at| (now - at).num_milliseconds().max(0));
            (
                event,
                json!({"reason": reason, "attempts": record.revoke_attempts + 1, "lag_ms": lag,
                           "verified": verified}),
            )
        }
        Err(message) => {
            let retry_at = now + revoke_backoff(record.revoke_attempts);
            let event = match record.record_end_failure(kind, decision, message.clone(), retry_at, now) {
                Ok(event) => event,
                Err(refused) => return Ok(Err(refused.into())),
            };
            (
                event,
                json!({"reason": reason, "error": message, "attempts": record.revoke_attempts,
                           "retry_at": retry_at, "verified": false}),
            )
        }
    };
    Ok(Ok((record, event, data)))
}

/// What [`ending_in`] reads per target and per role, kept across the
/// records of one read: a batch of expiries mostly shares a few of each.
#[derive(Default)]
pub(super) struct EndingCache {
    targets: HashMap<String, Option<(ConfigRow, TargetSecrets)>>,
    roles: HashMap<String, Option<RoleDocument>>,
}

/// Reads what ending grant `id` needs (see [`App::read_ending`]).
pub(super) fn ending_in(
    r: &mut ReadTx<'_>,
    sealer: &Sealer,
    cache: &mut EndingCache,
    id: &str,
) -> AppResult<Option<Ending>> {
    let Some(found) = r.request_with_role(id)? else {
        return Ok(None);
    };
    let record = found.record;
    if record.state.holds_access() {
        // Read in the same statement: the role, and its target when it is
        // still the grant's (a role moved to another target since leaves
        // the grant's own to `ending_of`).
        let role = found.role.map(|row| RoleDocument::decode(&row.document)).transpose()?;
        cache.roles.insert(record.role.clone(), role);
        if let Some(target) = found.target.filter(|target| target.name == record.target) {
            let secrets = unseal_rows(sealer, SecretOwner::Target, &target.name, found.target_secrets)?;
            cache.targets.insert(record.target.clone(), Some((target, secrets)));
        }
    }
    ending_of(r, sealer, cache, record, found.version).map(Some)
}

/// [`ending_in`] for a record already read.
pub(super) fn ending_of(
    r: &mut ReadTx<'_>,
    sealer: &Sealer,
    cache: &mut EndingCache,
    record: RequestRecord,
    version: u64,
) -> AppResult<Ending> {
    let mut target = None;
    if record.state.holds_access() {
        if !cache.targets.contains_key(&record.target) {
            let found = match r.config(ConfigKind::Target, &record.target)? {
                Some(row) => Some((row, unseal_all(r, sealer, &record.target)?)),
                None => None,
            };
            cache.targets.insert(record.target.clone(), found);
        }
        if !cache.roles.contains_key(&record.role) {
            cache.roles.insert(record.role.clone(), role_document(r, &record.role)?);
        }
        if let Some(Some((row, secrets))) = cache.targets.get(&record.target) {
            let role = cache.roles.get(&record.role).cloned().flatten();
            target = Some((row.clone(), role, secrets.clone()));
        }
    }
    Ok(Ending {
        record,
        version,
        target,
    })
}

impl App {
    async fn provider_for(&self, target: &str) -> AppResult<(Arc<dyn CredentialProvider>, StoredTarget)> {
        let name = target.to_string();
        let row = self
            .inner
            .store
            .read(move |r| r.config(ConfigKind::Target, &name))
            .await?;
        let row = row.ok_or_else(|| AppError::internal(format!("grant on missing target {target:?}")))?;
        self.with_provider(&row)
    }

    /// A stored target and the provider of its type.
    pub(crate) fn with_provider(&self, row: &ConfigRow) -> AppResult<(Arc<dyn CredentialProvider>, StoredTarget)> {
        let document = TargetDocument::decode(&row.document)?;
        let provider = self
            .inner
            .registry
            .get(&document.target_type)
            .cloned()
            .ok_or_else(|| AppError::internal(format!("no provider for target type {:?}", document.target_type)))?;
        Ok((
            provider,
            StoredTarget {
                document,
                created_at: row.created_at,
            },
        ))
    }

    /// The target as its provider sees it, secrets unsealed.
    pub(crate) async fn target_context(&self, target: &StoredTarget) -> AppResult<TargetContext> {
        let mut context = self.public_target_context(target);
        context.secrets = self.target_secrets(&target.document.name).await?;
        Ok(context)
    }

    /// The target as its provider sees it, without its secrets (for what
    /// only needs its settings and key material, like a CA public key).
    pub(crate) fn public_target_context(&self, target: &StoredTarget) -> TargetContext {
        TargetContext {
            name: target.document.name.clone(),
            config: target.document.config.clone(),
            secrets: Default::default(),
            seed: Seed::for_target(&self.inner.credential_key, &target.document.name, target.created_at),
        }
    }

    /// What the provider is told about `record`'s grant: `role` is the role
    /// as it is now (its `grant` block), `None` when it was deleted.
    pub(crate) async fn grant_context(
        &self,
        record: &RequestRecord,
        target: &StoredTarget,
        role: Option<&RoleDocument>,
        activated_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> AppResult<GrantContext> {
        let secrets = self.target_secrets(&target.document.name).await?;
        Ok(self.grant_context_with(record, target, role, secrets, (activated_at, expires_at)))
    }

    /// [`App::grant_context`] with the target's secrets already unsealed;
    /// `window` is when the grant starts and ends.
    pub(crate) fn grant_context_with(
        &self,
        record: &RequestRecord,
        target: &StoredTarget,
        role: Option<&RoleDocument>,
        secrets: TargetSecrets,
        (activated_at, expires_at): (DateTime<Utc>, DateTime<Utc>),
    ) -> GrantContext {
        let seed = Seed::for_grant(&self.inner.credential_key, &record.target, &record.id);
        let mut target_context = self.public_target_context(target);
        target_context.secrets = secrets;
        let mut context = GrantContext::new(
            record.id.clone(),
            record.requester.name.clone(),
            record.role.clone(),
            target_context,
            seed,
            activated_at,
            expires_at,
        );
        context.grant = role.map(|role| role.grant.clone()).unwrap_or_default();
        context.public_key = record.public_key.clone();
        context
    }

    /// [`App::grant_context`] for a record already in the store, with its
    /// role read as it is now.
    async fn stored_grant_context(
        &self,
        record: &RequestRecord,
        target: &StoredTarget,
        activated_at: DateTime<Utc>,
    ) -> AppResult<GrantContext> {
        let expires_at = grant_end(record, activated_at);
        let name = record.role.clone();
        let role = self.inner.store.read(move |r| role_document(r, &name)).await?;
        self.grant_context(record, target, role.as_ref(), activated_at, expires_at)
            .await
    }

    /// A grant that still holds access, with its target, role and secrets;
    /// or what to answer for one that no longer does (an expiry finds it
    /// done; anything else is refused).
    fn still_holding(
        &self,
        ending: Ending,
        kind: EndKind,
    ) -> AppResult<Result<(RequestRecord, EndingTarget), api::AccessRequest>> {
        let (record, version) = (ending.record, ending.version);
        if !record.state.holds_access() {
            if kind == EndKind::Expire {
                return Ok(Err(self.to_api(&record, version)));
            }
            return Err(hallpass_core::RuleError::WrongState {
                id: record.id.clone(),
                state: record.state,
                action: kind.as_str(),
            }
            .into());
        }
        match ending.target {
            Some(target) => Ok(Ok((record, target))),
            None => Err(AppError::internal(format!(
                "grant on missing target {:?}",
                record.target
            ))),
        }
    }

    /// What ending a grant needs, in one read: the record and, while it
    /// holds access, its target (with secrets) and its role as they are
    /// now. `None` when there is no such request.
    async fn read_ending(&self, id: &str) -> AppResult<Option<Ending>> {
        let (id, sealer) = (id.to_string(), self.inner.sealer.clone());
        self.inner
            .store
            .read(move |r| ending_in(r, &sealer, &mut EndingCache::default(), &id))
            .await
    }

    /// Issues credentials for an approved request and starts its clock.
    ///
    /// The role is checked as it is now first: a deleted role withdraws the
    /// request and a requester no longer allowed is refused, with nothing
    /// issued; a lowered maximum shortens the grant. The clock starts when
    /// the request became approved, which is when the first issue attempt
    /// is made. Retries (after a crash or a failed attempt) reuse that time,
    /// so every attempt sends the target the same grant window under the
    /// same idempotency key.
    pub(crate) async fn activate(&self, record: RequestRecord) -> AppResult<api::AccessRequest> {
        let id = record.id.clone();
        let checked = self
            .inner
            .store
            .write(move |wtx| -> AppResult<(RequestRecord, u64, bool)> {
                let mut record = load_request(wtx, &id)?;
                let now = wtx.now();
                let stopped = take_effect_check(wtx, &mut record, now)?.is_some();
                let version = wtx.read().request(&id)?.map_or(0, |(_, v)| v);
                Ok((record, version, stopped))
            })
            .await?;
        let (record, version, stopped) = checked;
        if stopped || record.state != RequestState::Approved {
            return Ok(self.to_api(&record, version));
        }
        let (provider, target) = self.provider_for(&record.target).await?;
        let activated_at = record.updated_at;
        let context = self.stored_grant_context(&record, &target, activated_at).await?;
        let metadata = provider.issue(&context).await.map_err(|e| {
            AppError::new(
                ErrorKind::TargetFailed,
                ErrorCode::IssueFailed,
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
            .write(move |wtx| -> AppResult<(RequestRecord, u64)> {
                let mut record = load_request(wtx, &id)?;
                let role_max = current_role(&mut wtx.read(), &record.role)?
                    .map_or(record.duration_seconds, |role| role.max_duration_seconds);
                let kind = record.activate(metadata.clone(), role_max, activated_at)?;
                let data = activation_data(&record, &metadata);
                let version = save_with_event(wtx, &record, SYSTEM_ACTOR, kind, data)?;
                Ok((record, version))
            })
            .await?;
        metrics::counter!("hallpass_grants_activated_total").increment(1);
        self.schedule(&record);
        Ok(self.to_api(&record, version))
    }

    /// After an extension took effect: issues again with the new expiry so
    /// the target's own limit moves too (a PostgreSQL `VALID UNTIL`, a
    /// certificate's `valid_before`). Issuing is idempotent, so this only
    /// updates. On failure the grant stays extended in Hallpass but the
    /// credential keeps its earlier end on the target; that is logged as an
    /// alert, since the holder loses access early (never late).
    pub(crate) async fn extend_on_target(&self, record: &RequestRecord) {
        let outcome = async {
            let (provider, target) = self.provider_for(&record.target).await?;
            if provider.issues_locally() {
                return Ok(());
            }
            let activated_at = record.activated_at.unwrap_or(record.created_at);
            let context = self.stored_grant_context(record, &target, activated_at).await?;
            provider
                .issue(&context)
                .await
                .map(|_| ())
                .map_err(|e| AppError::new(ErrorKind::TargetFailed, ErrorCode::IssueFailed, e.to_string()))
        }
        .await;
        if let Err(error) = outcome {
            tracing::error!(
                request_id = %record.id, target = %record.target, error = %error.message,
                "ALERT: the grant was extended, but its credential on the target keeps its earlier expiry"
            );
        }
    }

    /// The secret credential, for the requester of an active grant only.
    pub async fn credentials(&self, caller: &Caller, id: String) -> AppResult<api::Credential> {
        // The record with its target, role and secrets, in one store read.
        let ending = self
            .read_ending(&id)
            .await?
            .filter(|ending| caller.may_see(&ending.record))
            .ok_or_else(|| unknown_request(&id))?;
        let (record, target) = (ending.record, ending.target);
        if record.requester.name != caller.name() {
            return Err(AppError::forbidden(format!(
                "credentials of request {id} are for its requester ({}) only",
                record.requester.name
            )));
        }
        let (Some(activated_at), Some(expires_at)) = (record.activated_at, record.expires_at) else {
            return Err(AppError::conflict(
                ErrorCode::NotActive,
                format!("request {id} is {}; it has no credentials yet", record.state),
            ));
        };
        if record.state != RequestState::Active || expires_at <= self.now() {
            return Err(AppError::conflict(
                ErrorCode::NotActive,
                format!("grant {id} is {}; its credentials are gone", record.state),
            ));
        }
        let (target_row, role, secrets) =
            target.ok_or_else(|| AppError::internal(format!("grant on missing target {:?}", record.target)))?;
        let (provider, target) = self.with_provider(&target_row)?;
        let metadata = record.credential.clone().unwrap_or(Value::Null);
        let window = (activated_at, grant_end(&record, activated_at));
        let context = self.grant_context_with(&record, &target, role.as_ref(), secrets, window);
        let secret = provider.credential(&context, &metadata).await.map_err(|e| {
            AppError::new(
                ErrorKind::TargetFailed,
                ErrorCode::IssueFailed,
                format!(
                    "could not get the credentials of grant {id} from target {:?}: {e}",
                    record.target
                ),
            )
        })?;
        let mut env = secret.env;
        let one_time = if secret.once.is_empty() {
            None
        } else {
            let names: Vec<String> = secret.once.keys().cloned().collect();
            let (included, delivered_at) = self.deliver_one_time(caller, &id, &names).await?;
            if included {
                env.extend(secret.once);
            }
            Some(api::OneTimeSecrets {
                names,
                included,
                delivered_at,
            })
        };
        Ok(api::Credential {
            request_id: id,
            credential_type: secret.credential_type,
            expires_at,
            token: secret.token,
            env,
            one_time,
        })
    }

    /// Records that the one-time part of grant `id`'s credential goes to
    /// its requester now, with its audit event, unless it went out before.
    /// Returns whether this fetch carries it, and when it was handed out.
    /// One write transaction decides, so of any number of simultaneous
    /// fetches exactly one gets it.
    async fn deliver_one_time(&self, caller: &Caller, id: &str, names: &[String]) -> AppResult<(bool, DateTime<Utc>)> {
        let (id, actor) = (id.to_string(), caller.name().to_string());
        let data = json!({ "names": names });
        self.inner
            .store
            .write(move |wtx| -> AppResult<(bool, DateTime<Utc>)> {
                let mut record = load_request(wtx, &id)?;
                let now = wtx.now();
                match record.deliver_one_time(now)? {
                    Some(earlier) => Ok((false, earlier)),
                    None => {
                        save_with_event(wtx, &record, &actor, AuditKind::GrantSecretDelivered, data)?;
                        Ok((true, now))
                    }
                }
            })
            .await
    }

    /// Ends a grant early: admins and the role's approvers revoke, with a
    /// reason.
    pub async fn revoke_grant(&self, caller: &Caller, id: String, reason: String) -> AppResult<api::AccessRequest> {
        // The same limits as a request's reason (length, no disguising
        // characters): approvers and auditors read it the same way.
        let reason = text::optional(TextField::Reason, &Some(reason))?.ok_or_else(|| {
            AppError::invalid(
                ErrorCode::ReasonRequired,
                "a reason is required: say why the grant is revoked, e.g. \"left the incident\"",
            )
        })?;
        self.end_grant_by(caller, id, EndKind::Revoke, Some(reason)).await
    }

    /// The requester gives up their access before it expires.
    pub async fn release_grant(&self, caller: &Caller, id: String) -> AppResult<api::AccessRequest> {
        self.end_grant_by(caller, id, EndKind::Release, None).await
    }

    async fn end_grant_by(
        &self,
        caller: &Caller,
        id: String,
        kind: EndKind,
        reason: Option<String>,
    ) -> AppResult<api::AccessRequest> {
        let lookup = id.clone();
        let found = self.inner.store.read(move |r| r.request(&lookup)).await?;
        let (record, _) = found
            .filter(|(record, _)| caller.may_see(record))
            .ok_or_else(|| unknown_request(&id))?;
        record.check_may_end(&caller.principal, kind)?;
        self.end_grant_as(caller.name(), id, kind, reason).await
    }

    /// Ends a grant as `actor` (already authorized, or Hallpass itself):
    /// revoke on the target, then record the outcome. A failed revoke is
    /// recorded as `revoke_failed` and retried with backoff.
    pub(crate) async fn end_grant_as(
        &self,
        actor: &str,
        id: String,
        kind: EndKind,
        reason: Option<String>,
    ) -> AppResult<api::AccessRequest> {
        let Some(ending) = self.read_ending(&id).await? else {
            return Err(unknown_request(&id));
        };
        let revoking = match self.prepare_end(ending, kind)? {
            Ok(revoking) => revoking,
            Err(already_ended) => return Ok(already_ended),
        };
        let revoked = self.revoke_on_target(revoking).await?;
        let by = EndBy {
            actor: actor.to_string(),
            reason,
        };
        let (record, version) = self.inner.store.write(move |wtx| record_end(wtx, &by, revoked)).await?;
        self.after_end(&record, kind);
        Ok(self.to_api(&record, version))
    }

    /// The provider and the context a grant's revoke needs; or what to
    /// answer when it no longer holds access (see [`App::still_holding`]).
    pub(super) fn prepare_end(&self, ending: Ending, kind: EndKind) -> AppResult<Result<Revoking, api::AccessRequest>> {
        let version = ending.version;
        let (record, (target_row, role, secrets)) = match self.still_holding(ending, kind)? {
            Ok(holding) => holding,
            Err(already_ended) => return Ok(Err(already_ended)),
        };
        let (provider, target) = self.with_provider(&target_row)?;
        let activated_at = record.activated_at.unwrap_or(record.created_at);
        let window = (activated_at, grant_end(&record, activated_at));
        let context = self.grant_context_with(&record, &target, role.as_ref(), secrets, window);
        Ok(Ok(Revoking {
            record,
            version,
            kind,
            provider,
            target,
            context,
        }))
    }

    /// Revokes on the target and verifies; the outcome (a failure too) is
    /// what gets recorded. Errs only when the revocation list could not
    /// be written, with nothing revoked.
    pub(super) async fn revoke_on_target(&self, revoking: Revoking) -> AppResult<Revoked> {
        let Revoking {
            record,
            version,
            kind,
            provider,
            target,
            mut context,
        } = revoking;
        let metadata = record.credential.clone().unwrap_or(Value::Null);
        let early = record.expires_at.is_none_or(|at| self.now() < at);
        // Held until the list is written and verified, so that a revoke
        // racing this one cannot write a list read before this grant was on it.
        let mut list_writer = None;
        if provider.uses_revocation_list() && (kind != EndKind::Expire || early) {
            list_writer = Some(self.inner.revocation_lists.writer(&record.target).await);
            let row = RevocationRow {
                target: record.target.clone(),
                grant_id: record.id.clone(),
                expires_at: context.expires_at,
                metadata: metadata.clone(),
            };
            context.revoked = self.list_revoked(&target, row).await?;
        }
        let outcome = revoke_and_verify(provider.as_ref(), &context, &metadata).await;
        drop(list_writer);
        Ok(Revoked {
            record,
            version,
            kind,
            outcome,
        })
    }

    pub(super) fn after_end(&self, record: &RequestRecord, kind: EndKind) {
        if let Some((ended, expired)) = record
            .ended_at
            .zip(record.expires_at)
            .filter(|_| kind == EndKind::Expire)
        {
            metrics::histogram!("hallpass_expiry_lag_seconds")
                .record((ended - expired).num_milliseconds().max(0) as f64 / 1000.0);
        }
        if record.state == RequestState::RevokeFailed {
            metrics::counter!("hallpass_revoke_failures_total").increment(1);
            tracing::error!(
                request_id = %record.id, target = %record.target, error = ?record.revoke_error,
                attempts = record.revoke_attempts, "ALERT: revoking a grant failed; retrying with backoff"
            );
            self.schedule(record);
        }
    }

    /// RFC 7662: active only while the token verifies and its grant is live.
    /// Any authenticated caller may ask: services hold a token to check the
    /// grant tokens presented to them.
    pub async fn introspect(&self, _caller: &Caller, token: &str) -> AppResult<api::Introspection> {
        let Ok(claims) = self.inner.signer.verify(token) else {
            return Ok(api::Introspection::default());
        };
        let id = claims.jti.clone();
        let found = self.inner.store.read(move |r| r.request(&id)).await?;
        let now = self.now();
        let live = found.is_some_and(|(record, _)| {
            record.state == RequestState::Active
                && record.expires_at.is_some_and(|at| at > now)
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
}
