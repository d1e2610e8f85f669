//! Revoking on a postgres target, and checking afterwards that nothing is
//! left. Each step is idempotent and committed on its own, so a revoke
//! that fails half way has still taken away what it got to (first the
//! right to log in, then the open sessions, then the memberships) and the
//! retry carries on from there.
//!
//! A revoke holds one of the target's few admin connections (`POOL_SIZE`)
//! throughout, so it sends its statements in three round trips: the
//! lookup; `NOLOGIN` and the signal to the sessions, sent together; then
//! the memberships, the drop and a second look at the sessions, sent
//! together. Requests on one connection run in the order sent, each on its
//! own, and an earlier failure stops the later ones (see [`drop_login`]).
//! Signalled backends take a few milliseconds to exit; the revoke waits
//! for that only after the drop, so the wait overlaps the drop's work.

use std::time::Instant;

use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use super::admin::{Admin, Param, Pools};
use super::errors::{Failures, describe};
use super::login::{Existing, Login, sessions_of};
use super::settings::{PASSWORD, Settings};
use super::sql;
use crate::{GrantContext, ProviderError, SessionPoll, Verification};

/// Signals the sessions of login `$1` (role oid `$2`) to end; one row per
/// session still there. `pg_terminate_backend(pid, timeout)` (PostgreSQL
/// 14+) is not used: the server looks for the backend's exit only every
/// 100 ms, where the client's [`SessionPoll`] looks after 2 ms.
const TERMINATE: &str = concat!(
    "SELECT pg_terminate_backend(pg_stat_get_backend_pid(b.id)) ",
    sessions_of!("$2")
);

fn failures(grant: &GrantContext) -> Failures<'_> {
    let failures = Failures::new(&grant.target.name);
    match grant.target.secrets.get(PASSWORD) {
        Some(password) => failures.hide(password.expose()),
        None => failures,
    }
}

/// The oid of the login, from the metadata its issue returned.
fn recorded_oid(metadata: &Value) -> Option<u32> {
    metadata
        .get("role_oid")
        .and_then(Value::as_u64)
        .and_then(|oid| u32::try_from(oid).ok())
}

/// The parameters of [`TERMINATE`].
fn session_params<'p>(login: &'p String, oid: &'p Option<u32>) -> [Param<'p>; 2] {
    [(login, Type::TEXT), (oid, Type::OID)]
}

pub(super) async fn revoke(pools: &Pools, grant: &GrantContext, metadata: &Value) -> Result<(), ProviderError> {
    let settings = Settings::parse(&grant.target.config)?;
    let login = Login::of(grant);
    let admin = pools.admin(&grant.target, &settings, failures(grant)).await?;
    let Some(existing) = login.find(&admin).await? else {
        // Gone already; end sessions a role dropped by hand left open.
        let oid = recorded_oid(metadata);
        let started = Instant::now();
        let signalled = terminate(&admin, &settings, &login.name, &oid).await?;
        if signalled > 0 {
            end_sessions(&admin, &settings, &login.name, &oid, started).await?;
        }
        admin.release();
        return Ok(());
    };
    login.check_ours(&existing, &admin)?;
    let oid = Some(existing.oid);
    // Sent together, run in order: NOLOGIN is committed before the first
    // session is signalled, so none can log in again after. Not as one
    // multi-statement query: that would be one transaction, and NOLOGIN
    // would commit only after the sessions were signalled.
    let no_login = sql::no_login(&login.name)?;
    let started = Instant::now();
    let (altered, signalled) = tokio::join!(
        admin.execute("ALTER ROLE ... NOLOGIN", &no_login),
        terminate(&admin, &settings, &login.name, &oid)
    );
    altered?;
    let signalled = signalled?;
    let left = drop_login(&admin, &settings, &login.name, &existing, &oid, signalled > 0).await?;
    if left > 0 {
        end_sessions(&admin, &settings, &login.name, &oid, started).await?;
    }
    admin.release();
    Ok(())
}

/// Signals the login's sessions to end; how many were still there.
async fn terminate(
    admin: &Admin<'_>,
    settings: &Settings,
    login: &String,
    oid: &Option<u32>,
) -> Result<usize, ProviderError> {
    match admin.try_query(TERMINATE, &session_params(login, oid)).await? {
        Ok(rows) => Ok(rows.len()),
        Err(error) => Err(admin.failures().error(terminate_failure(settings, &error))),
    }
}

/// Waits until the login's sessions have ended, signalling again any
/// still there (one that was logging in as NOLOGIN committed), for up to
/// `statement_timeout` from `started`.
async fn end_sessions(
    admin: &Admin<'_>,
    settings: &Settings,
    login: &String,
    oid: &Option<u32>,
    started: Instant,
) -> Result<(), ProviderError> {
    let deadline = started + settings.statement_timeout;
    let mut poll = SessionPoll::new();
    loop {
        poll.wait().await;
        let left = terminate(admin, settings, login, oid).await?;
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(admin.failures().error(format!(
                "{left} session(s) of login {login:?} did not end within {} s of pg_terminate_backend; the login \
                 can no longer log in, and revocation will be tried again",
                settings.statement_timeout.as_secs()
            )));
        }
    }
}

fn terminate_failure(settings: &Settings, error: &tokio_postgres::Error) -> String {
    let server = describe(error);
    if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        let admin = sql::ident(&settings.username).unwrap_or_default();
        format!(
            "ending the login's sessions failed: {server}; user {admin} needs pg_signal_backend to end other \
             users' sessions: GRANT pg_signal_backend TO {admin} (as a superuser)"
        )
    } else {
        format!("ending the login's sessions failed: {server}")
    }
}

/// Takes the login's memberships away, drops it (giving what it owns in
/// the target's database to the admin) and, if `look` (sessions were
/// signalled), signals its sessions again: three requests sent together.
/// Returns how many sessions that last look still found.
///
/// The memberships go in a transaction of their own, committed before the
/// drop's, so a drop that fails (objects in other databases) still leaves
/// the login without them. Both transactions are explicit: when one fails
/// the connection stays in the failed transaction, and everything sent
/// after it fails unrun ("current transaction is aborted") — the drop
/// never runs after a failed membership revoke. The connection is then
/// dropped, which rolls the failed transaction back.
async fn drop_login(
    admin: &Admin<'_>,
    settings: &Settings,
    login: &String,
    existing: &Existing,
    oid: &Option<u32>,
    look: bool,
) -> Result<usize, ProviderError> {
    let memberships = revoke_memberships(login, existing)?;
    let drop = drop_transaction(login)?;
    let (revoked, dropped, left) = tokio::join!(
        async {
            match &memberships {
                Some(statements) => admin.try_execute(statements).await.map(Some),
                None => Ok(None),
            }
        },
        admin.try_execute(&drop),
        async {
            if look {
                terminate(admin, settings, login, oid).await.map(Some)
            } else {
                Ok(None)
            }
        }
    );
    if let Some(Err(error)) = revoked? {
        return Err(admin.failures().error(format!(
            "revoking the login's roles ({}) failed: {}; it can no longer log in, and revocation will be tried \
             again",
            existing.member_of.join(", "),
            describe(&error)
        )));
    }
    if let Err(error) = dropped? {
        return Err(admin.failures().error(drop_failure(login, settings, &error)));
    }
    Ok(left?.unwrap_or(0))
}

/// One transaction revoking every role the login is a member of; `None`
/// when it is a member of none.
fn revoke_memberships(login: &str, existing: &Existing) -> Result<Option<String>, ProviderError> {
    if existing.member_of.is_empty() {
        return Ok(None);
    }
    let mut statements = vec!["BEGIN".to_string()];
    for role in &existing.member_of {
        statements.push(sql::revoke(role, login)?);
    }
    statements.push("COMMIT".into());
    Ok(Some(statements.join("; ")))
}

/// The drop as one transaction, under the lock on the login's name.
fn drop_transaction(login: &str) -> Result<String, ProviderError> {
    let mut statements = vec!["BEGIN".to_string(), sql::lock_login(login)?];
    statements.extend(sql::drop_login(login)?);
    statements.push("COMMIT".into());
    Ok(statements.join("; "))
}

fn drop_failure(login: &str, settings: &Settings, error: &tokio_postgres::Error) -> String {
    let server = describe(error);
    let quoted = sql::ident(login).unwrap_or_default();
    if error.code() == Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST) {
        format!(
            "dropping login {quoted} failed: {server}. It can no longer log in and has no sessions or role \
             memberships, but it owns objects or holds privileges outside database {:?}: in each database \
             named, run REASSIGN OWNED BY {quoted} TO CURRENT_USER; DROP OWNED BY {quoted}; revocation will be \
             tried again",
            settings.database
        )
    } else {
        format!("dropping login {quoted} failed: {server}; it can no longer log in, and revocation will be tried again")
    }
}

pub(super) async fn verify(
    pools: &Pools,
    grant: &GrantContext,
    metadata: &Value,
) -> Result<Verification, ProviderError> {
    let settings = Settings::parse(&grant.target.config)?;
    let login = Login::of(grant);
    let admin = pools.admin(&grant.target, &settings, failures(grant)).await?;
    let (existing, sessions) = login.look(&admin, recorded_oid(metadata)).await?;
    admin.release();
    let mut left = Vec::new();
    if let Some(existing) = existing {
        left.push(format!(
            "role {:?} still exists ({}{})",
            login.name,
            if existing.can_login { "it can log in" } else { "NOLOGIN" },
            if existing.member_of.is_empty() {
                String::new()
            } else {
                format!(", member of {}", existing.member_of.join(", "))
            }
        ));
    }
    if sessions > 0 {
        left.push(format!("{sessions} session(s) of it are still open"));
    }
    Ok(if left.is_empty() {
        Verification::Gone
    } else {
        Verification::Remaining(left.join("; "))
    })
}
