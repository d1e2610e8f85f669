//! Revoking on a postgres target, and checking afterwards that nothing is
//! left. Each step is idempotent and committed on its own, so a revoke
//! that fails half way has still taken away what it got to (first the
//! right to log in, then the open sessions, then the memberships) and the
//! retry carries on from there.

use std::time::Instant;

use serde_json::Value;
use tokio_postgres::error::SqlState;

use super::admin::{Admin, Pools};
use super::errors::{Failures, describe};
use super::login::{Existing, Login};
use super::settings::{PASSWORD, Settings};
use super::sql;
use crate::{GrantContext, ProviderError, SessionPoll, Verification};

/// The sessions of the login (by name, or by the oid its issue recorded,
/// for a role dropped while they stayed open), other than the caller's.
const SESSIONS: &str = "FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
                        AND (usename = $1 OR (usesysid = $2 AND usename IS NULL))";

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

pub(super) async fn revoke(pools: &Pools, grant: &GrantContext, metadata: &Value) -> Result<(), ProviderError> {
    let settings = Settings::parse(&grant.target.config)?;
    let login = Login::of(grant);
    let admin = pools.admin(&grant.target, &settings, failures(grant)).await?;
    let oid = recorded_oid(metadata);
    let Some(existing) = login.find(&admin).await? else {
        // Gone already; end sessions a role dropped by hand left open.
        end_sessions(&admin, &settings, &login.name, oid).await?;
        admin.release();
        return Ok(());
    };
    login.check_ours(&existing, &admin)?;
    admin
        .execute("ALTER ROLE ... NOLOGIN", &sql::no_login(&login.name)?)
        .await?;
    end_sessions(&admin, &settings, &login.name, Some(existing.oid)).await?;
    revoke_memberships(&admin, &login.name, &existing).await?;
    drop_login(&admin, &settings, &login.name).await?;
    admin.release();
    Ok(())
}

/// Terminates the login's sessions and waits until they have ended.
async fn end_sessions(
    admin: &Admin<'_>,
    settings: &Settings,
    login: &str,
    oid: Option<u32>,
) -> Result<(), ProviderError> {
    let deadline = Instant::now() + settings.statement_timeout;
    let mut poll = SessionPoll::new();
    loop {
        let sql = format!("SELECT pg_terminate_backend(pid) {SESSIONS}");
        let rows = match admin.try_query(&sql, &[&login, &oid]).await? {
            Ok(rows) => rows,
            Err(error) => return Err(admin.failures().error(terminate_failure(settings, &error))),
        };
        if rows.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(admin.failures().error(format!(
                "{} session(s) of login {login:?} did not end within {} s of pg_terminate_backend; the login \
                 can no longer log in, and revocation will be tried again",
                rows.len(),
                settings.statement_timeout.as_secs()
            )));
        }
        poll.wait().await;
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

async fn revoke_memberships(admin: &Admin<'_>, login: &str, existing: &Existing) -> Result<(), ProviderError> {
    for role in &existing.member_of {
        admin
            .execute(&format!("revoking role {role:?}"), &sql::revoke(role, login)?)
            .await?;
    }
    Ok(())
}

/// Drops the login in one transaction, giving what it owns in the target's
/// database to the admin.
async fn drop_login(admin: &Admin<'_>, settings: &Settings, login: &str) -> Result<(), ProviderError> {
    admin.execute("starting a transaction", "BEGIN").await?;
    admin
        .query("locking the login's name", sql::LOCK_LOGIN, &[&login])
        .await?;
    for statement in sql::drop_login(login)? {
        if let Err(error) = admin.try_execute(&statement).await? {
            return Err(admin.failures().error(drop_failure(login, settings, &error)));
        }
    }
    admin.execute("committing", "COMMIT").await
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
    let existing = login.find(&admin).await?;
    let oid = existing.as_ref().map(|e| e.oid).or(recorded_oid(metadata));
    let sessions = admin
        .query(
            "counting the login's sessions",
            &format!("SELECT pid {SESSIONS}"),
            &[&login.name, &oid],
        )
        .await?
        .len();
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
