//! Identity: API tokens (made, listed, revoked), authentication with its
//! failure limit, and principal locks (an admin's emergency stop).
//!
//! Tokens are `hp_` plus 256 random bits. Only their SHA-256 is stored: the
//! secret has full entropy, so a fast hash is enough and lookups stay an
//! index probe. Revocation, expiry and locks are checked against the store
//! on every call, so a revoked token stops working at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration as StdDuration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hallpass_api::{self as api, ErrorCode};
use hallpass_core::audit::AuditDraft;
use hallpass_core::request::{EndKind, RequestState};
use hallpass_core::{AuditKind, Principal, parse_duration};
use hallpass_store::{LockRow, TokenRow, WriteTx};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::caller::RESERVED_PRINCIPALS;
use super::{App, AppError, AppResult, Caller, save_with_event};
use crate::app::access_config::check_name;

pub const TOKEN_PREFIX: &str = "hp_";
/// Least randomness a token chosen by an operator must carry.
pub const MIN_TOKEN_BITS: f64 = 128.0;
/// Failed authentications one address may make per window before it is
/// refused for the rest of the window, unless the server configuration's
/// `auth_failures_per_minute` says otherwise.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 20;
const AUTH_FAILURE_WINDOW: StdDuration = StdDuration::from_secs(60);
/// Addresses remembered at most (oldest windows are dropped first).
const AUTH_FAILURE_ADDRESSES: usize = 100_000;
/// Policy evaluations (`POST /v1/policies/eval`) per token: a burst, then
/// this many per second.
const EVALS_PER_SECOND: u32 = 5;
const EVAL_BURST: u32 = 20;

pub fn random_bytes<const N: usize>() -> AppResult<[u8; N]> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| AppError::internal("system random generator failed"))?;
    Ok(bytes)
}

/// A new secret token and its id.
pub fn generate_token() -> AppResult<(String, String)> {
    let secret = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()?));
    let id = format!("tok_{}", hex::encode(random_bytes::<8>()?));
    Ok((secret, id))
}

pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// An estimate of the randomness in a chosen token: its length times the
/// Shannon entropy of its characters. A random 43-character base64url
/// token scores about 210 bits; `hp_0000...` scores 0.
pub fn token_strength_bits(secret: &str) -> f64 {
    let body = secret.strip_prefix(TOKEN_PREFIX).unwrap_or(secret);
    let length = body.chars().count();
    if length == 0 {
        return 0.0;
    }
    let mut counts: HashMap<char, usize> = HashMap::new();
    for c in body.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let per_char: f64 = counts
        .values()
        .map(|&n| {
            let p = n as f64 / length as f64;
            -p * p.log2()
        })
        .sum();
    per_char * length as f64
}

/// Checks a token an operator chose (bootstrap, dev root): the prefix, no
/// whitespace, and at least [`MIN_TOKEN_BITS`] of randomness.
pub fn check_chosen_token(source: &str, token: &str) -> AppResult<()> {
    if !token.starts_with(TOKEN_PREFIX) || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AppError::invalid(
            ErrorCode::WeakToken,
            format!("{source} must start with `{TOKEN_PREFIX}` and hold no spaces or control characters"),
        ));
    }
    let bits = token_strength_bits(token);
    if bits < MIN_TOKEN_BITS {
        return Err(AppError::invalid(
            ErrorCode::WeakToken,
            format!(
                "{source} carries about {bits:.0} bits of randomness; at least {MIN_TOKEN_BITS:.0} are needed. \
                 Generate one, e.g. echo \"hp_$(openssl rand -hex 32)\""
            ),
        ));
    }
    Ok(())
}

fn check_principal_name(name: &str) -> AppResult<()> {
    check_name("principal", name)?;
    if RESERVED_PRINCIPALS.contains(&name) {
        return Err(AppError::invalid(
            ErrorCode::ReservedName,
            format!(
                "principal name {name:?} is reserved for Hallpass's own entries in the audit log; choose another name"
            ),
        ));
    }
    Ok(())
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

fn lock_to_api(row: &LockRow) -> api::LockInfo {
    api::LockInfo {
        principal: row.principal.clone(),
        reason: row.reason.clone(),
        locked_by: row.locked_by.clone(),
        locked_at: row.locked_at,
        tokens_revoked: Vec::new(),
        requests_ended: Vec::new(),
        revoke_failed: Vec::new(),
    }
}

/// Tokens that still work and carry group `admins`, of unlocked principals.
fn live_admin_tokens(wtx: &mut WriteTx<'_>, now: DateTime<Utc>) -> AppResult<Vec<TokenRow>> {
    let locked: Vec<String> = wtx.read().locks()?.into_iter().map(|l| l.principal).collect();
    Ok(wtx
        .read()
        .tokens()?
        .into_iter()
        .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|at| at > now))
        .filter(|t| t.groups.iter().any(|g| g == hallpass_core::subject::ADMIN_GROUP))
        .filter(|t| !locked.contains(&t.principal))
        .collect())
}

/// Per-address count of failed authentications in fixed windows.
struct FailureWindows {
    /// Failures allowed per window.
    limit: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureWindows {
    /// Seconds until `address` may try again, if it is over its limit.
    fn blocked(&self, address: IpAddr) -> Option<u64> {
        let windows = self.windows.lock().ok()?;
        let (start, count) = windows.get(&address)?;
        let left = AUTH_FAILURE_WINDOW.checked_sub(start.elapsed())?;
        (*count >= self.limit).then(|| left.as_secs().max(1))
    }

    fn record(&self, address: IpAddr) {
        let Ok(mut windows) = self.windows.lock() else { return };
        if windows.len() >= AUTH_FAILURE_ADDRESSES {
            windows.retain(|_, (start, _)| start.elapsed() < AUTH_FAILURE_WINDOW);
        }
        let entry = windows.entry(address).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= AUTH_FAILURE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// The server's rate limits, in memory (per replica).
pub(crate) struct Limits {
    auth_failures: FailureWindows,
    evals: DefaultKeyedRateLimiter<String>,
    /// Evaluations `POST /v1/policies/eval` may run at once, whoever asks:
    /// one fewer than the policy workers, so however many tokens flood the
    /// route, requests always find a worker (see [`eval_slots_for`]).
    eval_slots: Semaphore,
}

/// How long an evaluation on `POST /v1/policies/eval` waits for a slot
/// before it is refused as busy (the sandbox itself waits as long for a
/// worker).
const EVAL_SLOT_WAIT: StdDuration = StdDuration::from_secs(1);

/// Slots for `POST /v1/policies/eval` beside `parallelism` evaluations at
/// once: all but one, and at least one.
pub(crate) fn eval_slots_for(parallelism: Option<usize>) -> usize {
    parallelism.map_or(Semaphore::MAX_PERMITS, |workers| workers.saturating_sub(1).max(1))
}

impl Limits {
    pub(crate) fn new(eval_slots: usize, auth_failures_per_minute: u32) -> Self {
        let per_second = NonZeroU32::new(EVALS_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(EVAL_BURST).unwrap_or(NonZeroU32::MIN);
        Self {
            auth_failures: FailureWindows {
                limit: auth_failures_per_minute.max(1),
                windows: Mutex::default(),
            },
            evals: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            eval_slots: Semaphore::new(eval_slots),
        }
    }
}

/// Whether a token is made whatever the store holds, or only as its first.
/// `created_by` of the tokens single sign-on makes: `sso:PRINCIPAL`.
pub(crate) const SSO_CREATOR_PREFIX: &str = "sso:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenWhen {
    Always,
    FirstOnly,
}

impl App {
    /// The caller a bearer secret belongs to. Failures are logged (a
    /// fingerprint of what was presented and the address, never the
    /// secret) and limited per address.
    pub async fn authenticate(&self, secret: &str, remote: Option<IpAddr>) -> AppResult<Caller> {
        self.check_auth_failures(remote)?;
        let hash = hash_token(secret);
        if !secret.starts_with(TOKEN_PREFIX) {
            return Err(self.failed_authentication(None, &hash, remote, "malformed token"));
        }
        let found = self.inner.store.token_for_auth(&hash).await?;
        let now = self.now();
        let failure = match &found {
            None => Some("unknown token"),
            Some((row, _)) if row.revoked_at.is_some() => Some("revoked token"),
            Some((row, _)) if row.expires_at.is_some_and(|at| at <= now) => Some("expired token"),
            Some((_, true)) => Some("locked principal"),
            Some(_) => None,
        };
        let Some((row, _)) = found.as_ref().filter(|_| failure.is_none()).cloned() else {
            let token_id = found.as_ref().map(|(row, _)| row.id.as_str());
            let why = failure.unwrap_or("unknown token");
            return Err(self.failed_authentication(token_id, &hash, remote, why));
        };
        let signed_in = row.created_by.starts_with(SSO_CREATOR_PREFIX);
        let caller = Caller {
            principal: Principal {
                name: row.principal,
                groups: row.groups,
            },
            token_id: row.id,
            token_expires_at: row.expires_at,
        };
        if signed_in {
            // A single sign-on session follows the identity provider.
            return self.recheck_session(caller).await;
        }
        Ok(caller)
    }

    /// Refuses an address that failed to authenticate too often lately.
    pub(super) fn check_auth_failures(&self, remote: Option<IpAddr>) -> AppResult<()> {
        match remote.and_then(|ip| self.inner.limits.auth_failures.blocked(ip)) {
            Some(retry_after) => Err(AppError::rate_limited(
                ErrorCode::TooManyFailures,
                "too many failed authentications from this address; wait and try again",
                retry_after,
            )),
            None => Ok(()),
        }
    }

    /// Counts one failed authentication, and holds it against the address.
    pub(super) fn count_auth_failure(&self, remote: Option<IpAddr>) {
        if let Some(ip) = remote {
            self.inner.limits.auth_failures.record(ip);
        }
        metrics::counter!("hallpass_auth_failures_total").increment(1);
    }

    /// Logs, counts and holds against the address one failed authentication.
    /// A known token is named by its id; anything else by the start of the
    /// SHA-256 of what was presented, which tells repeated guesses apart
    /// without revealing anything about the secret.
    fn failed_authentication(
        &self,
        token_id: Option<&str>,
        hash: &str,
        remote: Option<IpAddr>,
        why: &'static str,
    ) -> AppError {
        let fingerprint = hash.get(..12).unwrap_or(hash);
        tracing::warn!(token_id, fingerprint, remote = ?remote, why, "authentication failed");
        self.count_auth_failure(remote);
        let message = if why == "malformed token" {
            "the API token is malformed: Hallpass tokens start with `hp_`"
        } else {
            "the API token is unknown, revoked or expired, or its principal is locked"
        };
        AppError::unauthenticated(ErrorCode::InvalidToken, message)
    }

    pub fn whoami(&self, caller: &Caller) -> api::WhoAmI {
        api::WhoAmI {
            admin: caller.is_admin(),
            principal: caller.principal.name.clone(),
            groups: caller.principal.groups.clone(),
            token_id: caller.token_id.clone(),
            token_expires_at: caller.token_expires_at,
        }
    }

    /// Admins make tokens; the secret is returned once.
    pub async fn create_token(&self, caller: &Caller, body: api::CreateToken) -> AppResult<api::CreatedToken> {
        caller.require_admin()?;
        let created = self
            .make_token(caller.name(), body, None, TokenWhen::Always, None)
            .await?;
        created.ok_or_else(|| AppError::internal("a token made unconditionally was not made"))
    }

    /// The store's first token, made without a caller (the bootstrap admin
    /// token, the dev playground's admin), or `None` when the store already
    /// has tokens. Checked and made in one write transaction, which every
    /// replica's writes are serialised with: of several replicas starting
    /// together on an empty database exactly one makes it. `fixed_secret`
    /// must have passed [`check_chosen_token`].
    pub(crate) async fn create_first_token(
        &self,
        created_by: &str,
        body: api::CreateToken,
        fixed_secret: Option<String>,
    ) -> AppResult<Option<api::CreatedToken>> {
        self.make_token(created_by, body, fixed_secret, TokenWhen::FirstOnly, None)
            .await
    }

    /// Makes a token with its `token.created` event; `origin` adds to the
    /// event's data where the token came from (a workload's issuer).
    pub(crate) async fn make_token(
        &self,
        created_by: &str,
        body: api::CreateToken,
        fixed_secret: Option<String>,
        when: TokenWhen,
        origin: Option<serde_json::Value>,
    ) -> AppResult<Option<api::CreatedToken>> {
        check_principal_name(&body.principal)?;
        for group in &body.groups {
            check_name("group", group)?;
        }
        let ttl = body
            .ttl
            .as_deref()
            .map(|ttl| {
                parse_duration(ttl).map_err(|e| AppError::invalid(ErrorCode::InvalidDuration, format!("ttl: {e}")))
            })
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
            expires_at: ttl.map(|seconds| now + Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 1000))),
            revoked_at: None,
        };
        let stored = row.clone();
        let actor = created_by.to_string();
        let made = self
            .inner
            .store
            .write(move |wtx| -> AppResult<bool> {
                if when == TokenWhen::FirstOnly && wtx.read().count_tokens()? > 0 {
                    return Ok(false);
                }
                if let Some(lock) = wtx.read().lock(&stored.principal)? {
                    return Err(AppError::conflict(
                        ErrorCode::Locked,
                        format!(
                            "{} is locked ({}); unlock the principal before making tokens for it",
                            lock.principal, lock.reason
                        ),
                    ));
                }
                if wtx.read().token_by_hash(&stored.secret_hash)?.is_some() {
                    return Err(AppError::conflict(
                        ErrorCode::TokenExists,
                        "that token is already registered",
                    ));
                }
                wtx.insert_token(&stored)?;
                // The event names the token, never its secret or hash.
                wtx.append_audit(AuditDraft::new(
                    actor,
                    AuditKind::TokenCreated,
                    None,
                    json!({"token_id": stored.id, "principal": stored.principal, "groups": stored.groups,
                           "expires_at": stored.expires_at, "origin": origin}),
                ))?;
                Ok(true)
            })
            .await?;
        Ok(made.then(|| api::CreatedToken::new(secret, token_to_api(&row))))
    }

    pub async fn list_tokens(&self, caller: &Caller) -> AppResult<Vec<api::TokenInfo>> {
        caller.require_admin()?;
        let rows = self.inner.store.read(|r| r.tokens()).await?;
        Ok(rows.iter().map(token_to_api).collect())
    }

    /// Admins revoke any token; everyone may revoke their own. The last
    /// working admin token cannot be revoked: nobody could administer
    /// Hallpass (or make a new admin token) afterwards.
    pub async fn revoke_token(&self, caller: &Caller, id: String) -> AppResult<()> {
        if !caller.is_admin() && caller.token_id != id {
            return Err(AppError::forbidden("only admins may revoke other principals' tokens"));
        }
        let actor = caller.name().to_string();
        self.inner
            .store
            .write(move |wtx| -> AppResult<()> {
                let now = wtx.now();
                let admins = live_admin_tokens(wtx, now)?;
                if admins.len() == 1 && admins[0].id == id {
                    return Err(AppError::conflict(
                        ErrorCode::LastAdminToken,
                        format!("{id} is the last working admin token; create another admin token first"),
                    ));
                }
                if !wtx.revoke_token(&id, now)? {
                    return Err(AppError::not_found(format!("no active token {id:?}")));
                }
                wtx.append_audit(AuditDraft::new(
                    actor,
                    AuditKind::TokenRevoked,
                    None,
                    json!({"token_id": id}),
                ))?;
                Ok(())
            })
            .await
    }

    /// Locks a principal: its tokens are revoked and its requests withdrawn
    /// in one transaction, then its live grants are ended through their
    /// providers. New requests and tokens are refused until unlocked.
    pub async fn lock_principal(&self, caller: &Caller, principal: String, reason: String) -> AppResult<api::LockInfo> {
        caller.require_admin()?;
        check_name("principal", &principal)?;
        let reason = hallpass_core::text::required(hallpass_core::text::TextField::Reason, &reason)?;
        let actor = caller.name().to_string();
        let locked = {
            let (principal, reason, actor) = (principal.clone(), reason.clone(), actor.clone());
            self.inner
                .store
                .write(move |wtx| lock_in_transaction(wtx, &principal, &reason, &actor))
                .await?
        };
        let mut info = lock_to_api(&locked.lock);
        info.tokens_revoked = locked.tokens_revoked;
        info.requests_ended = locked.withdrawn;
        let live = locked.live;
        let why = format!("{principal} was locked: {reason}");
        for id in live {
            let ended = self
                .end_grant_as(&actor, id.clone(), EndKind::Revoke, Some(why.clone()))
                .await;
            match ended {
                Ok(grant) if grant.state == RequestState::RevokeFailed => info.revoke_failed.push(id),
                Ok(_) => info.requests_ended.push(id),
                Err(error) => {
                    tracing::error!(request_id = %id, %error, "ALERT: ending a locked principal's grant failed");
                    info.revoke_failed.push(id);
                }
            }
        }
        Ok(info)
    }

    pub async fn unlock_principal(&self, caller: &Caller, principal: String) -> AppResult<()> {
        caller.require_admin()?;
        let actor = caller.name().to_string();
        self.inner
            .store
            .write(move |wtx| -> AppResult<()> {
                if !wtx.delete_lock(&principal)? {
                    return Err(AppError::conflict(
                        ErrorCode::NotLocked,
                        format!("{principal} is not locked"),
                    ));
                }
                wtx.append_audit(AuditDraft::new(
                    actor,
                    AuditKind::PrincipalUnlocked,
                    None,
                    json!({"principal": principal}),
                ))?;
                Ok(())
            })
            .await
    }

    pub async fn list_locks(&self, caller: &Caller) -> AppResult<Vec<api::LockInfo>> {
        caller.require_admin()?;
        let rows = self.inner.store.read(|r| r.locks()).await?;
        Ok(rows.iter().map(lock_to_api).collect())
    }

    /// Counts one policy evaluation against the caller's token.
    /// A slot to evaluate in for `POST /v1/policies/eval`, waiting at most
    /// [`EVAL_SLOT_WAIT`].
    pub(crate) async fn eval_slot(&self) -> AppResult<SemaphorePermit<'_>> {
        match tokio::time::timeout(EVAL_SLOT_WAIT, self.inner.limits.eval_slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(AppError::rate_limited(
                ErrorCode::RateLimited,
                "the policy evaluator is busy with other evaluations on this route, which may not take the \
                 workers access requests need; try again in a moment",
                1,
            )),
        }
    }

    pub(crate) fn check_eval_rate(&self, caller: &Caller) -> AppResult<()> {
        match self.inner.limits.evals.check_key(&caller.token_id) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait =
                    not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
                Err(AppError::rate_limited(
                    ErrorCode::RateLimited,
                    format!("at most {EVALS_PER_SECOND} policy evaluations per second per token; slow down"),
                    wait.as_secs().max(1),
                ))
            }
        }
    }
}

/// What a lock's transaction did, and what is left to do.
struct Locked {
    lock: LockRow,
    tokens_revoked: Vec<String>,
    withdrawn: Vec<String>,
    /// Grants holding access: ended next, through their providers.
    live: Vec<String>,
}

/// The lock's writes: the lock itself, revoked tokens, withdrawn requests,
/// with their audit events.
fn lock_in_transaction(wtx: &mut WriteTx<'_>, principal: &str, reason: &str, actor: &str) -> AppResult<Locked> {
    let now = wtx.now();
    let admins = live_admin_tokens(wtx, now)?;
    if !admins.is_empty() && admins.iter().all(|t| t.principal == principal) {
        return Err(AppError::conflict(
            ErrorCode::LastAdminToken,
            format!("{principal} holds every working admin token; create an admin token for someone else first"),
        ));
    }
    let lock = LockRow {
        principal: principal.to_string(),
        reason: reason.to_string(),
        locked_by: actor.to_string(),
        locked_at: now,
    };
    wtx.put_lock(&lock)?;
    let revoked = wtx.revoke_tokens_of(principal, now)?;
    wtx.append_audit(AuditDraft::new(
        actor,
        AuditKind::PrincipalLocked,
        None,
        json!({"principal": principal, "reason": reason, "tokens_revoked": revoked}),
    ))?;
    let mut withdrawn = Vec::new();
    let mut live = Vec::new();
    for (mut record, _) in wtx.read().open_requests_of(principal)? {
        if record.state.holds_access() {
            live.push(record.id);
            continue;
        }
        let why = format!("{principal} was locked by {actor}: {reason}");
        let kind = record.withdraw(actor, why.clone(), now)?;
        save_with_event(wtx, &record, actor, kind, json!({"reason": why}))?;
        withdrawn.push(record.id);
    }
    Ok(Locked {
        lock,
        tokens_revoked: revoked,
        withdrawn,
        live,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_eval_route_leaves_one_worker_to_requests() {
        assert_eq!(super::eval_slots_for(Some(2)), 1);
        assert_eq!(super::eval_slots_for(Some(8)), 7);
        assert_eq!(super::eval_slots_for(Some(1)), 1, "one worker: the route still works");
        assert_eq!(super::eval_slots_for(None), tokio::sync::Semaphore::MAX_PERMITS);
    }

    use super::*;

    #[test]
    fn chosen_tokens_need_128_bits() {
        let (random, _) = generate_token().unwrap();
        assert!(token_strength_bits(&random) > 180.0, "{}", token_strength_bits(&random));
        assert!(check_chosen_token("t", &random).is_ok());
        let hex = format!("hp_{}", "0123456789abcdef".repeat(4));
        assert!(check_chosen_token("t", &hex).is_ok(), "64 hex digits pass");
        for weak in [
            "hp_0000000000000",
            "hp_0000000000000000000000000000000000000000",
            "hp_abcabcabcabcabcabcabc",
        ] {
            let error = check_chosen_token("--dev-root-token", weak).unwrap_err();
            assert_eq!(error.code, ErrorCode::WeakToken);
            assert!(error.message.contains("openssl rand"), "{}", error.message);
        }
        assert!(check_chosen_token("t", "no-prefix-0123456789abcdefghijklmnopqrstuv").is_err());
    }

    #[test]
    fn reserved_principals_are_refused() {
        for name in RESERVED_PRINCIPALS {
            assert_eq!(check_principal_name(name).unwrap_err().code, ErrorCode::ReservedName);
        }
        assert!(check_principal_name("alice").is_ok());
        assert!(RESERVED_PRINCIPALS.contains(&super::super::SYSTEM_ACTOR));
    }

    #[test]
    fn failures_are_limited_per_address() {
        let windows = FailureWindows {
            limit: 7,
            windows: Mutex::default(),
        };
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..7 {
            assert_eq!(windows.blocked(attacker), None);
            windows.record(attacker);
        }
        assert!(windows.blocked(attacker).is_some());
        assert_eq!(windows.blocked(other), None);
    }
}
