//! The service layer: every operation of the broker, independent of HTTP.
//!
//! Each public operation takes the [`Caller`] and authorizes itself (see
//! [`caller`]); front ends only parse, call and map. Each state change runs
//! as one store write closure that checks the domain rules against freshly
//! loaded state, writes the change and appends its audit event, so both
//! commit or neither does. Calls to targets (issue, revoke) happen outside
//! those closures, before or after.
//!
//! By subject: [`tokens`] (authentication, tokens, locks), [`config`]
//! (targets, roles, flows, apply), [`secrets`] (sealed target secrets),
//! [`policies`], [`requests`] (making requests and extensions),
//! [`decisions`] (approve, deny, cancel), [`grants`] (issue, credentials,
//! ending, due work, introspection), [`listing`] (who sees which
//! requests), [`reviews`] (break-glass), [`audit`], [`events`] (the live
//! audit stream), [`slack`] (clicks on Slack's buttons). Beneath them:
//! [`access_config`] (validating and normalising targets, roles and flows),
//! [`seal`] (key material and secrets at rest) and `wire` (records and
//! documents to API types).

pub mod access_config;
pub mod audit;
pub mod caller;
pub mod config;
pub mod decisions;
pub mod due;
pub mod error;
pub mod events;
pub mod expiry;
pub mod extensions;
pub mod grants;
pub mod listing;
pub mod notifiers;
pub mod outbox;
pub mod policies;
pub mod requests;
pub mod reviews;
pub mod seal;
pub mod secrets;
pub mod slack;
pub mod sso;
mod sso_recheck;
pub mod targets;
pub mod tokens;
pub(crate) mod wire;
pub mod workload;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use hallpass_api as api;
use hallpass_core::audit::{AuditDraft, CheckpointSigner};
use hallpass_core::request::RequestRecord;
use hallpass_core::{AuditKind, Clock, RequestState};
use hallpass_notifiers::NotifierTypes;
use hallpass_policy::Evaluator;
use hallpass_providers::Registry;
use hallpass_providers::jwt::JwtSigner;
use hallpass_store::{Store, WriteTx};
use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use zeroize::Zeroizing;

pub use caller::{AUDITOR_GROUP, Caller, SYSTEM_ACTOR};
pub use error::{AppError, AppResult, ErrorKind};

use self::seal::Sealer;
use self::wire::request_to_api;
use crate::gate::PolicyCache;

/// How long a claim on due work lasts; if this server dies holding it,
/// another picks the work up this long after.
pub const CLAIM_LEASE_SECONDS: i64 = 10;

/// What an [`App`] is made of.
pub struct AppParts {
    pub store: Store,
    pub registry: Registry,
    pub signer: Arc<JwtSigner>,
    /// Signs audit checkpoints.
    pub audit_signer: Arc<CheckpointSigner>,
    pub sealer: Arc<Sealer>,
    /// Derives issued passwords and key pairs ([`seal::Keys::credential`]).
    pub credential_key: Arc<Zeroizing<Vec<u8>>>,
    /// Where policies are evaluated: worker processes with time and memory
    /// limits (the server), or in-process (tests of the service layer).
    pub evaluator: Evaluator,
    pub clock: Arc<dyn Clock>,
    pub deadlines: mpsc::UnboundedSender<(DateTime<Utc>, String)>,
    /// Failed authentications one address may make per minute.
    pub auth_failures_per_minute: u32,
    /// The OIDC issuers whose workload tokens are exchanged for API tokens.
    pub workload_issuers: Arc<workload::WorkloadIssuers>,
    /// The notifier types this server sends with.
    pub notifier_types: NotifierTypes,
    /// The server's own URL, for links in notifications.
    pub public_url: Option<String>,
    /// Single sign-on for people, when configured.
    pub sso: Option<Arc<sso::SsoProvider>>,
}

/// The broker's operations. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Registry,
    signer: Arc<JwtSigner>,
    audit_signer: Arc<CheckpointSigner>,
    sealer: Arc<Sealer>,
    credential_key: Arc<Zeroizing<Vec<u8>>>,
    evaluator: Evaluator,
    clock: Arc<dyn Clock>,
    deadlines: mpsc::UnboundedSender<(DateTime<Utc>, String)>,
    /// Names this server in claims on due work.
    replica_id: String,
    policies: PolicyCache,
    limits: tokens::Limits,
    revocation_lists: targets::RevocationListWriters,
    workload_issuers: Arc<workload::WorkloadIssuers>,
    notifier_types: NotifierTypes,
    public_url: Option<String>,
    sso: Option<Arc<sso::SsoProvider>>,
    /// Wakes the outbox worker (a delivery was put back in line).
    outbox_wake: Arc<Notify>,
    event_streams: events::StreamSlots,
}

fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn unknown_request(id: &str) -> AppError {
    AppError::not_found(format!("no request {id:?} that you may see"))
}

fn unknown_role(name: &str) -> AppError {
    AppError::not_found(format!("no role {name:?}"))
}

/// "No such …" for a piece of configuration, by its kind.
fn unknown_config(kind: api::ConfigKind, name: &str) -> AppError {
    let what = match kind {
        api::ConfigKind::Target => "target",
        api::ConfigKind::Role => return unknown_role(name),
        api::ConfigKind::ApprovalFlow => "approval flow",
        api::ConfigKind::Policy => "policy",
        api::ConfigKind::Notifier => "notifier",
    };
    AppError::not_found(format!("no {what} {name:?}"))
}

/// Loads a request inside a write closure, or says it does not exist.
fn load_request(wtx: &mut WriteTx<'_>, id: &str) -> AppResult<RequestRecord> {
    wtx.read()
        .request(id)?
        .map(|(record, _)| record)
        .ok_or_else(|| unknown_request(id))
}

/// Loads a request the caller may see inside a write closure; one they may
/// not see is reported as missing, so its existence does not leak.
fn load_visible(wtx: &mut WriteTx<'_>, caller: &Caller, id: &str) -> AppResult<RequestRecord> {
    let record = load_request(wtx, id)?;
    if caller.may_see(&record) {
        Ok(record)
    } else {
        Err(unknown_request(id))
    }
}

/// Writes a changed record with its audit event; returns the new version.
fn save_with_event(
    wtx: &mut WriteTx<'_>,
    record: &RequestRecord,
    actor: &str,
    kind: AuditKind,
    data: Value,
) -> AppResult<u64> {
    wtx.append_audit(AuditDraft::new(actor, kind, Some(record.id.clone()), data))?;
    Ok(wtx.put_request(record)?)
}

/// An approved request is activated next by this server; claiming it in the
/// same transaction keeps other servers' schedulers off it unless this one
/// dies first.
fn claim_if_approved(wtx: &mut WriteTx<'_>, record: &RequestRecord, owner: &str) -> AppResult<()> {
    if record.state == RequestState::Approved {
        wtx.claim(&record.id, owner, Duration::seconds(CLAIM_LEASE_SECONDS))?;
    }
    Ok(())
}

impl App {
    pub fn new(parts: AppParts) -> Self {
        let replica_id = format!("replica-{}", uuid::Uuid::now_v7().simple());
        let eval_slots = tokens::eval_slots_for(parts.evaluator.parallelism());
        let limits = tokens::Limits::new(eval_slots, parts.auth_failures_per_minute);
        Self {
            inner: Arc::new(Inner {
                store: parts.store,
                registry: parts.registry,
                signer: parts.signer,
                audit_signer: parts.audit_signer,
                sealer: parts.sealer,
                credential_key: parts.credential_key,
                evaluator: parts.evaluator,
                clock: parts.clock,
                deadlines: parts.deadlines,
                replica_id,
                policies: PolicyCache::default(),
                limits,
                revocation_lists: targets::RevocationListWriters::default(),
                workload_issuers: parts.workload_issuers,
                notifier_types: parts.notifier_types,
                public_url: parts.public_url,
                sso: parts.sso,
                outbox_wake: Arc::new(Notify::new()),
                event_streams: events::StreamSlots::default(),
            }),
        }
    }

    /// The JWKS of the grant-token signing key (public).
    pub fn jwks(&self) -> Value {
        self.inner.signer.jwks()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The URL people and clients reach this server at, when known.
    pub fn public_url(&self) -> Option<&str> {
        self.inner.public_url.as_deref()
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

    /// Stored deadlines after `after` (all earlier ones when `None`) up to
    /// `until`, for the scheduler's timer.
    pub(crate) async fn deadlines(
        &self,
        after: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
    ) -> AppResult<Vec<(DateTime<Utc>, String)>> {
        Ok(self.inner.store.read(move |r| r.deadlines(after, until)).await?)
    }

    /// How many grants still hold access past their deadline at `at`.
    pub(crate) async fn count_overdue_grants(&self, at: DateTime<Utc>) -> AppResult<u64> {
        Ok(self.inner.store.read(move |r| r.count_overdue_grants(at)).await?)
    }

    /// Claims due work (expiries, revoke retries) for this server, so that
    /// among several replicas each record is handled by one.
    pub(crate) async fn claim_due(&self, limit: u32) -> AppResult<Vec<String>> {
        let owner = self.inner.replica_id.clone();
        Ok(self
            .inner
            .store
            .write(move |w| w.claim_due(&owner, Duration::seconds(CLAIM_LEASE_SECONDS), limit))
            .await?)
    }

    /// Puts a record back on the timer after scheduled work failed
    /// (e.g. the store was briefly unavailable).
    pub(crate) fn retry_later(&self, id: String) {
        let _ = self.inner.deadlines.send((self.now() + Duration::seconds(5), id));
    }
}
