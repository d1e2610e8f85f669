//! Issuing on a postgres target: one login role per grant, made to match
//! the grant (password, expiry, connection limit, memberships) in one
//! transaction, whether it is new or was made by an earlier attempt.

use serde_json::{Value, json};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use super::admin::{Admin, Pools};
use super::errors::{Failures, describe};
use super::login::{Existing, Login, PASSWORD_PURPOSE};
use super::settings::{Grant, PASSWORD, Settings};
use super::sql::{self, LoginSpec};
use crate::{GrantContext, ProviderError};

pub(super) async fn issue(pools: &Pools, grant: &GrantContext) -> Result<Value, ProviderError> {
    let settings = Settings::parse(&grant.target.config)?;
    let spec = Grant::parse(&grant.grant)?;
    let login = Login::of(grant);
    let password = grant.derive_secret(PASSWORD_PURPOSE);
    let verifier = sql::verifier(&password);
    let valid_until = sql::valid_until(grant.expires_at);
    let mut failures = Failures::new(&grant.target.name)
        .hide(password.expose())
        .hide(&verifier);
    if let Some(admin_password) = grant.target.secrets.get(PASSWORD) {
        failures = failures.hide(admin_password.expose());
    }
    let admin = pools.admin(&grant.target, &settings, failures).await?;
    let wanted = LoginSpec {
        login: &login.name,
        verifier: &verifier,
        valid_until: &valid_until,
        connection_limit: spec.connection_limit,
    };
    let oid = make_login(&admin, &settings, &login, &wanted, &spec.roles).await?;
    admin.release();
    Ok(json!({
        "type": super::settings::TARGET_TYPE,
        "username": login.name,
        "host": settings.host,
        "port": settings.port,
        "database": settings.database,
        "roles": spec.roles,
        "connection_limit": spec.connection_limit,
        "valid_until": grant.expires_at.to_rfc3339(),
        "sslmode": settings.sslmode.as_str(),
        "role_oid": oid,
    }))
}

/// Creates or updates the login in one transaction; returns its oid. On
/// any error the caller drops the connection, which rolls it all back.
async fn make_login(
    admin: &Admin<'_>,
    settings: &Settings,
    login: &Login,
    wanted: &LoginSpec<'_>,
    roles: &[String],
) -> Result<u32, ProviderError> {
    admin.execute("starting a transaction", "BEGIN").await?;
    admin
        .query(
            "locking the login's name",
            sql::LOCK_LOGIN,
            &[(&login.name, Type::TEXT)],
        )
        .await?;
    let existing = login.find(admin).await?;
    let statement = match &existing {
        Some(existing) => {
            login.check_ours(existing, admin)?;
            wanted.alter()?
        }
        None => wanted.create()?,
    };
    let verb = if existing.is_some() { "updating" } else { "creating" };
    if let Err(error) = admin.try_execute(&statement).await? {
        return Err(admin
            .failures()
            .error(role_failure(verb, &login.name, settings, &error)));
    }
    admin
        .execute(
            "marking the login as Hallpass's",
            &sql::comment(&login.name, &login.marker)?,
        )
        .await?;
    let current = existing.as_ref().map_or(&[][..], |e: &Existing| &e.member_of[..]);
    for extra in current.iter().filter(|role| !roles.contains(role)) {
        admin
            .execute(
                &format!("revoking role {extra:?} the grant no longer gives"),
                &sql::revoke(extra, &login.name)?,
            )
            .await?;
    }
    for role in roles {
        if let Err(error) = admin.try_execute(&sql::grant(role, &login.name)?).await? {
            return Err(admin.failures().error(grant_failure(role, settings, &error)));
        }
    }
    let oid = match existing {
        Some(existing) => existing.oid,
        None => login.find(admin).await?.map(|e| e.oid).unwrap_or_default(),
    };
    admin.execute("committing", "COMMIT").await?;
    Ok(oid)
}

/// Said of every failed issue: the transaction leaves nothing behind.
const ROLLED_BACK: &str = "the transaction was rolled back, nothing was created or changed";

fn role_failure(verb: &str, login: &str, settings: &Settings, error: &tokio_postgres::Error) -> String {
    let server = describe(error);
    if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        let admin = sql::ident(&settings.username).unwrap_or_default();
        format!(
            "{verb} login role {login:?} failed: {server}; user {admin} lacks CREATEROLE: ALTER ROLE {admin} \
             CREATEROLE (as a superuser); {ROLLED_BACK}"
        )
    } else {
        format!("{verb} login role {login:?} failed: {server}; {ROLLED_BACK}")
    }
}

fn grant_failure(role: &str, settings: &Settings, error: &tokio_postgres::Error) -> String {
    let server = describe(error);
    let quoted = sql::ident(role).unwrap_or_default();
    let admin = sql::ident(&settings.username).unwrap_or_default();
    let fix = match error.code() {
        Some(code) if *code == SqlState::UNDEFINED_OBJECT => format!(
            "create it on the server (CREATE ROLE {quoted} NOLOGIN, then grant it what the grant should give), \
             or fix the role's grant"
        ),
        Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => format!(
            "on PostgreSQL 16 and later a CREATEROLE user may grant only roles it holds with ADMIN OPTION: \
             GRANT {quoted} TO {admin} WITH ADMIN OPTION (as a superuser); on any version only a superuser \
             may grant a superuser role"
        ),
        _ => String::new(),
    };
    let fix = if fix.is_empty() { fix } else { format!("; {fix}") };
    format!("granting role {quoted} failed: {server}{fix}; {ROLLED_BACK}")
}
