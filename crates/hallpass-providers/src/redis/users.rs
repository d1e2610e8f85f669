//! The ACL user of one grant on a redis target: set in one atomic
//! `ACL SETUSER … reset on #<sha256> <rules>` (the same command again makes
//! an existing user match), deleted with `ACL DELUSER` with its
//! connections ended, and looked for afterwards.

use std::time::Duration;

use ::redis::{RedisError, Value};
use sha2::{Digest, Sha256};

use super::acl::Rules;
use super::conn::Link;
use crate::{ProviderError, SecretValue, Verification};

/// Rounds of listing and ending connections before leaving the rest to
/// verify.
const KILL_ROUNDS: usize = 30;

/// `#` and the SHA-256 of `password` in hex: how `ACL SETUSER` takes a
/// password without it being sent.
pub(super) fn password_rule(password: &SecretValue) -> String {
    format!("#{}", hex::encode(Sha256::digest(password.expose().as_bytes())))
}

fn denied(error: &RedisError) -> bool {
    error.code() == Some("NOPERM")
}

/// What to do about `error` from `command` (`acl|setuser`...): the
/// missing permission, or why nothing answered.
fn hint(error: &RedisError, admin: &str, command: &str) -> String {
    if denied(error) {
        permission_fix(admin, command)
    } else if error.is_timeout() {
        "no answer within command_timeout_seconds; check the server's load and the network".into()
    } else if error.is_io_error() || error.is_connection_dropped() {
        "the connection broke; check that the server is running".into()
    } else {
        String::new()
    }
}

/// The rule that lets the admin run `command` (`acl|setuser`...).
pub(super) fn permission_fix(admin: &str, command: &str) -> String {
    format!("the admin needs {command}: ACL SETUSER {admin} +{command}")
}

pub(super) async fn create(
    link: &mut Link,
    name: &str,
    password: &SecretValue,
    rules: &Rules,
) -> Result<(), ProviderError> {
    let hash = password_rule(password);
    let mut args = vec!["ACL", "SETUSER", name, "reset", "on", hash.as_str()];
    args.extend(rules.0.iter().map(String::as_str));
    let Err(error) = link.call(&args).await else {
        return Ok(());
    };
    let hint = match hint(&error, &link.config().username, "acl|setuser") {
        hint if hint.is_empty() => format!(
            "check the role's `acl` rules ({}) against this server's version",
            rules.text()
        ),
        hint => hint,
    };
    // Refused by the server, the (atomic) command changed nothing; without
    // an answer it may have been applied, so the user is deleted.
    let removed = if error.is_timeout() || error.is_io_error() || error.is_connection_dropped() {
        match link.call(&["ACL", "DELUSER", name]).await {
            Ok(_) => format!(". The user {name} was deleted in case it was made"),
            Err(_) => format!(". The user {name} may have been made; revoking the grant deletes it"),
        }
    } else {
        String::new()
    };
    let what = format!("ACL SETUSER {name}");
    let error = link.error(&what, &error, &hint, &[hash.as_str(), password.expose()]);
    Err(match error {
        ProviderError::Target { target, message } => ProviderError::Target {
            target,
            message: message + &removed,
        },
        other => other,
    })
}

/// Deletes the user (Redis 7 also closes its connections then), and ends
/// any of its connections still open.
pub(super) async fn remove(link: &mut Link, name: &str) -> Result<(), ProviderError> {
    let admin = link.config().username.clone();
    if let Err(error) = link.call(&["ACL", "DELUSER", name]).await {
        let hint = hint(&error, &admin, "acl|deluser");
        return Err(link.error(&format!("ACL DELUSER {name}"), &error, &hint, &[]));
    }
    match link.call(&["CLIENT", "KILL", "USER", name]).await {
        Err(error) if denied(&error) => {
            let hint = permission_fix(&admin, "client|kill");
            return Err(link.error(&format!("CLIENT KILL USER {name}"), &error, &hint, &[]));
        }
        // "No such user": deleted above; its connections are matched by id below.
        _ => {}
    }
    for _ in 0..KILL_ROUNDS {
        let ids = connections_of(link, name).await?;
        if ids.is_empty() {
            return Ok(());
        }
        for id in ids {
            match link.call(&["CLIENT", "KILL", "ID", &id]).await {
                Err(error) if denied(&error) => {
                    let hint = permission_fix(&admin, "client|kill");
                    return Err(link.error(&format!("CLIENT KILL ID {id}"), &error, &hint, &[]));
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The ids of the connections logged in as `name`, from `CLIENT LIST`.
async fn connections_of(link: &mut Link, name: &str) -> Result<Vec<String>, ProviderError> {
    let listing = match link.call(&["CLIENT", "LIST"]).await {
        Ok(Value::BulkString(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(Value::VerbatimString { text, .. }) => text,
        Ok(Value::SimpleString(text)) => text,
        Ok(_) => String::new(),
        Err(error) => {
            let hint = hint(&error, &link.config().username, "client|list");
            return Err(link.error("CLIENT LIST", &error, &hint, &[]));
        }
    };
    Ok(client_ids(&listing, name))
}

/// The `id=` of each `CLIENT LIST` line whose `user=` is `name`.
pub(super) fn client_ids(listing: &str, name: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let field = |key: &str| line.split(' ').find_map(|part| part.strip_prefix(key));
            (field("user=") == Some(name)).then(|| field("id=").unwrap_or_default().to_string())
        })
        .filter(|id| !id.is_empty())
        .collect()
}

/// What is left of the user: itself (`ACL GETUSER`) and its connections.
pub(super) async fn remaining(link: &mut Link, name: &str) -> Result<Verification, ProviderError> {
    let exists = match link.call(&["ACL", "GETUSER", name]).await {
        Ok(Value::Nil) => false,
        Ok(_) => true,
        Err(error) => {
            let hint = hint(&error, &link.config().username, "acl|getuser");
            return Err(link.error(&format!("ACL GETUSER {name}"), &error, &hint, &[]));
        }
    };
    let connections = connections_of(link, name).await?.len();
    Ok(match (exists, connections) {
        (false, 0) => Verification::Gone,
        (true, 0) => Verification::Remaining(format!("ACL user {name} still exists")),
        (exists, n) => Verification::Remaining(format!(
            "{n} connection(s) of {name} still open{}",
            if exists { ", and the ACL user still exists" } else { "" }
        )),
    })
}
