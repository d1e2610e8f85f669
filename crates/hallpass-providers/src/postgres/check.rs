//! Checking a postgres target's admin (can it log in, create roles, end
//! sessions, reach the database?) and rotating its password. Both open a
//! connection of their own rather than take a pooled one, so that they
//! prove the secrets work now, not that they worked when the pool filled.

use tokio_postgres::Row;

use super::admin::{Admin, connect};
use super::errors::Failures;
use super::settings::{PASSWORD, Settings, check_secrets};
use super::sql;
use super::tls::MakeTls;
use crate::{ProviderError, SecretValue, TargetContext, TestCheck};

/// What the admin is, as the server sees it.
const WHO_AM_I: &str = "SELECT current_user::text, r.rolsuper, r.rolcreaterole, r.rolinherit, \
     pg_has_role(current_user, 'pg_signal_backend', 'USAGE'), current_database()::text, \
     current_setting('server_version_num')::int, current_setting('server_version') \
     FROM pg_roles r WHERE r.rolname = current_user";

/// The names of the checks, in order.
const CHECKS: [&str; 4] = ["connect", "createrole", "terminate_sessions", "database"];

fn failures<'a>(target: &'a TargetContext, more: &[&'a SecretValue]) -> Failures<'a> {
    let mut failures = Failures::new(&target.name);
    for secret in target.secrets.get(PASSWORD).into_iter().chain(more.iter().copied()) {
        failures = failures.hide(secret.expose());
    }
    failures
}

pub(super) async fn test(target: &TargetContext) -> Result<Vec<TestCheck>, ProviderError> {
    let settings = Settings::parse(&target.config)?;
    check_secrets(&target.secrets)?;
    let mut checks = vec![TestCheck::passed("settings", "the target's settings are valid")];
    let tls = MakeTls::new(&settings)?;
    let client = match connect(&settings, target.secrets.get(PASSWORD), &tls).await {
        Ok(client) => client,
        Err(failure) => {
            checks.push(TestCheck::failed(
                "connect",
                failures(target, &[]).scrub(failure.message),
            ));
            checks.extend(
                CHECKS[1..]
                    .iter()
                    .map(|name| TestCheck::failed(*name, "not checked: the admin could not log in")),
            );
            return Ok(checks);
        }
    };
    let admin = Admin::single(client, &settings, failures(target, &[]));
    let rows = admin.query("reading the admin's attributes", WHO_AM_I, &[]).await?;
    let row = rows
        .first()
        .ok_or_else(|| admin.failures().error("the admin user is missing from pg_roles"))?;
    checks.extend(judge(&settings, row).map_err(|e| admin.failures().error(format!("unexpected answer: {e}")))?);
    Ok(checks)
}

/// The checks after a successful login, from the admin's attributes.
fn judge(settings: &Settings, row: &Row) -> Result<Vec<TestCheck>, tokio_postgres::Error> {
    let user: String = row.try_get(0)?;
    let (superuser, createrole, inherit, signal): (bool, bool, bool, bool) =
        (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
    let (database, version_num, version): (String, i32, String) = (row.try_get(5)?, row.try_get(6)?, row.try_get(7)?);
    let quoted = sql::ident(&user).unwrap_or_default();
    let mut checks = vec![TestCheck::passed(
        "connect",
        format!(
            "logged in to {} as {quoted} (sslmode {})",
            settings.address(),
            settings.sslmode.as_str()
        ),
    )];
    checks.push(if superuser {
        TestCheck::passed("createrole", format!("user {quoted} is a superuser"))
    } else if !createrole {
        TestCheck::failed(
            "createrole",
            format!("user {quoted} lacks CREATEROLE: ALTER ROLE {quoted} CREATEROLE (as a superuser)"),
        )
    } else if !inherit {
        TestCheck::failed(
            "createrole",
            format!(
                "user {quoted} is NOINHERIT, so it cannot hand over what a revoked login owned: ALTER ROLE \
                 {quoted} INHERIT"
            ),
        )
    } else if version_num >= 160_000 {
        TestCheck::passed(
            "createrole",
            format!(
                "user {quoted} has CREATEROLE; on PostgreSQL {version} it may grant only roles it holds WITH \
                 ADMIN OPTION: GRANT <role> TO {quoted} WITH ADMIN OPTION for each role a grant gives"
            ),
        )
    } else {
        TestCheck::passed(
            "createrole",
            format!("user {quoted} has CREATEROLE (PostgreSQL {version})"),
        )
    });
    checks.push(if superuser || signal {
        TestCheck::passed(
            "terminate_sessions",
            format!("user {quoted} may end other users' sessions"),
        )
    } else {
        TestCheck::failed(
            "terminate_sessions",
            format!(
                "user {quoted} cannot end revoked logins' sessions: GRANT pg_signal_backend TO {quoted} (as a \
                 superuser)"
            ),
        )
    });
    checks.push(TestCheck::passed(
        "database",
        format!("database {database:?} is reachable (PostgreSQL {version})"),
    ));
    Ok(checks)
}

/// Sets the admin's password to `new`. When the current secrets no longer
/// log in but `new` does, an earlier rotation got that far: it is set again.
pub(super) async fn rotate(target: &TargetContext, new: &SecretValue) -> Result<(), ProviderError> {
    let settings = Settings::parse(&target.config)?;
    let verifier = sql::verifier(new);
    let tls = MakeTls::new(&settings)?;
    let failures = || failures(target, &[new]).hide(&verifier);
    let client = match connect(&settings, target.secrets.get(PASSWORD), &tls).await {
        Ok(client) => client,
        Err(failure) if failure.auth => match connect(&settings, Some(new), &tls).await {
            Ok(client) => client,
            Err(_) => return Err(failures().error(format!("rotating the admin password: {}", failure.message))),
        },
        Err(failure) => return Err(failures().error(format!("rotating the admin password: {}", failure.message))),
    };
    let admin = Admin::single(client, &settings, failures());
    admin
        .execute(
            "setting the admin's new password (ALTER ROLE CURRENT_USER PASSWORD)",
            &sql::set_own_password(&verifier)?,
        )
        .await
}
