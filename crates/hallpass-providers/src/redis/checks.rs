//! The target test of a redis target — whether its admin may run every
//! command issuing and revoking use, asked with `ACL DRYRUN` (Redis 7) or
//! tried harmlessly on a throw-away user — and the rotation of the admin's
//! own password.

use ::redis::Value;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::Config;
use super::conn::{self, Link, failed, is_auth_failure};
use super::users::{password_rule, permission_fix};
use crate::{ProviderError, SecretValue, TestCheck};

/// The commands issuing, revoking and verifying send, with their ACL names.
fn needed(probe: &str) -> Vec<(&'static str, Vec<&str>)> {
    vec![
        ("acl|getuser", vec!["ACL", "GETUSER", probe]),
        ("acl|setuser", vec!["ACL", "SETUSER", probe, "reset", "off"]),
        ("client|kill", vec!["CLIENT", "KILL", "USER", probe]),
        ("client|list", vec!["CLIENT", "LIST"]),
        ("acl|deluser", vec!["ACL", "DELUSER", probe]),
    ]
}

pub(super) async fn run(link: &mut Link) -> Vec<TestCheck> {
    let config = link.config().clone();
    let version = server_version(link).await;
    let mut checks = vec![TestCheck::passed(
        "connect",
        format!(
            "connected to {}:{} (Redis {}) as {}",
            config.host,
            config.port,
            version.as_deref().unwrap_or("of unknown version"),
            config.username
        ),
    )];
    let mut random = [0u8; 8];
    if SystemRandom::new().fill(&mut random).is_err() {
        checks.push(TestCheck::failed("permissions", "no random bytes for a test user name"));
        return checks;
    }
    let probe = format!("hp_probe_{}", hex::encode(random));
    let modern = version
        .as_deref()
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        .is_some_and(|major| major >= 7);
    if modern && let Some(asked) = dry_run(link, &config.username, &probe).await {
        checks.extend(asked);
    } else {
        checks.extend(try_each(link, &config.username, &probe).await);
    }
    checks
}

/// `redis_version` from `INFO server`, if the admin may read it.
async fn server_version(link: &mut Link) -> Option<String> {
    let info = match link.call(&["INFO", "server"]).await.ok()? {
        Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Value::VerbatimString { text, .. } => text,
        _ => return None,
    };
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|version| version.trim().to_string())
}

/// Asks `ACL DRYRUN` about each command; `None` when the admin may not
/// run `ACL DRYRUN` itself.
async fn dry_run(link: &mut Link, admin: &str, probe: &str) -> Option<Vec<TestCheck>> {
    let mut checks = Vec::new();
    for (command, args) in needed(probe) {
        let mut asked = vec!["ACL", "DRYRUN", admin];
        asked.extend(args);
        let check = match link.call(&asked).await {
            Ok(Value::Okay) => TestCheck::passed(command, format!("{admin} may run {command}")),
            Ok(other) => TestCheck::failed(
                command,
                format!("{}; {}", reply_text(&other), permission_fix(admin, command)),
            ),
            Err(_) => return None,
        };
        checks.push(check);
    }
    Some(checks)
}

fn reply_text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) | Value::VerbatimString { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

/// Runs each command on a throw-away user that is created switched off
/// and deleted at the end.
async fn try_each(link: &mut Link, admin: &str, probe: &str) -> Vec<TestCheck> {
    let mut checks = Vec::new();
    for (command, args) in needed(probe) {
        let check = match link.call(&args).await {
            Ok(_) => TestCheck::passed(command, format!("{admin} ran {command} on the test user {probe}")),
            // The command ran: the user was just gone (its creation was refused).
            Err(error) if error.to_string().contains("No such user") => {
                TestCheck::passed(command, format!("{admin} may run {command}"))
            }
            Err(error) if error.code() == Some("NOPERM") => {
                TestCheck::failed(command, format!("{error}; {}", permission_fix(admin, command)))
            }
            Err(error) => TestCheck::failed(command, format!("{command} failed: {error}")),
        };
        checks.push(check);
    }
    checks
}

/// The admin user's ACL flags (`on`, `nopass`...).
async fn flags(conn: &mut ::redis::aio::MultiplexedConnection, user: &str) -> Result<Vec<String>, ::redis::RedisError> {
    let reply = conn::call(conn, &["ACL", "GETUSER", user]).await?;
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Map(pairs) => pairs,
        Value::Array(items) => {
            let mut items = items.into_iter();
            std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
        }
        _ => Vec::new(),
    };
    Ok(pairs
        .into_iter()
        .find(|(key, _)| reply_text(key) == "flags")
        .map(|(_, value)| match value {
            Value::Array(items) | Value::Set(items) => items.iter().map(reply_text).collect(),
            _ => Vec::new(),
        })
        .unwrap_or_default())
}

/// Sets the admin's password to `new` (as a hash), keeping its rules.
/// Idempotent: when the current password is refused and `new` accepted,
/// the change was made before. Refused for a user without a password.
pub(super) async fn rotate(
    config: &Config,
    target: &str,
    current: Option<&SecretValue>,
    new: &SecretValue,
) -> Result<(), ProviderError> {
    let hash = password_rule(new);
    let hidden = [new.expose(), current.map_or("", SecretValue::expose), hash.as_str()];
    let fail = |what: &str, detail: &str, hint: &str| failed(target, config, what, detail, hint, &hidden);
    if new.expose().is_empty() {
        return Err(fail("rotating the admin password", "the new password is empty", ""));
    }
    let mut admin = match conn::connect(config, target, current).await {
        Ok(admin) => admin,
        Err((Some(error), _)) if is_auth_failure(&error) => return already_rotated(config, target, new).await,
        Err((_, error)) => return Err(error),
    };
    let user = config.username.as_str();
    let flags = flags(&mut admin, user).await.map_err(|e| {
        fail(
            &format!("ACL GETUSER {user}"),
            &e.to_string(),
            &permission_fix(user, "acl|getuser"),
        )
    })?;
    if flags.iter().any(|flag| flag == "nopass") {
        return Err(fail(
            "rotating the admin password",
            &format!(
                "the admin user {user} has no password (nopass): every client that connects without one is logged in as it, and giving it a password now would lock them all out"
            ),
            "set a password for it yourself and put it in the `password` secret, or give Hallpass an admin user of its own, then rotate",
        ));
    }
    let what = format!("ACL SETUSER {user} resetpass #…");
    conn::call(&mut admin, &["ACL", "SETUSER", user, "resetpass", &hash])
        .await
        .map_err(|e| fail(&what, &e.to_string(), &permission_fix(user, "acl|setuser")))?;
    conn::connect(config, target, Some(new))
        .await
        .map(|_| ())
        .map_err(|(_, error)| error)
}

/// After the current password was refused: succeeds when `new` works.
async fn already_rotated(config: &Config, target: &str, new: &SecretValue) -> Result<(), ProviderError> {
    match conn::connect(config, target, Some(new)).await {
        Ok(_) => Ok(()),
        Err((Some(error), _)) if is_auth_failure(&error) => Err(failed(
            target,
            config,
            "rotating the admin password",
            &format!(
                "the server refused both the current and the new password of {}",
                config.username
            ),
            "set the `password` secret to the one that works",
            &[new.expose()],
        )),
        Err((_, error)) => Err(error),
    }
}
