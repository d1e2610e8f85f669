//! The account of one grant on a mysql target: created locked, given the
//! role's privileges, unlocked — and removed again when any step fails;
//! revoked by locking it, ending its connections and dropping it; looked
//! for afterwards.

use serde_json::Value;

use super::Config;
use super::grant::{GrantSpec, quote_string};
use super::privileges::{Held, create_user_fix, kill_fix, process_fix};
use super::session::{Failure, Session};
use crate::{GrantContext, ProviderError, SecretValue, SessionPoll, Verification, login_name};

/// ER_CANNOT_USER: the account exists (CREATE) or does not (ALTER).
const CANNOT_USER: u16 = 1396;
/// ER_NO_SUCH_THREAD: the connection ended on its own.
const NO_SUCH_THREAD: u16 = 1094;
/// ER_NONEXISTING_GRANT: nothing to revoke.
const NONEXISTING_GRANT: u16 = 1141;
/// Rounds of listing and ending connections before leaving the rest to
/// verify (a connection being killed can linger a moment).
const KILL_ROUNDS: usize = 30;

/// `'user'@'host'`: the user from the principal and the grant id, the host
/// from `user_host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Account {
    pub(super) user: String,
    pub(super) host: String,
}

/// Host patterns as MySQL writes them (`%`, `10.0.%`, `db.internal`,
/// `10.0.0.0/255.0.0.0`, `::1`): nothing that needs escaping.
pub(super) fn check_user_host(host: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '%' | '_' | ':' | '/' | '-');
    if host.is_empty() || host.len() > 255 || !host.chars().all(plain) {
        return Err(
            "`user_host` must be a host pattern such as \"%\", \"10.0.%\" or \"app.internal\" (letters, digits, `.%_:/-`)"
                .into(),
        );
    }
    Ok(())
}

impl Account {
    pub(super) fn new(user: String, config: &Config) -> Self {
        Self {
            user,
            host: config.user_host.clone(),
        }
    }

    /// The account an issue made: the user derived again, the host as
    /// recorded then (`user_host` may have changed since).
    pub(super) fn issued(grant: &GrantContext, metadata: &Value, config: &Config, max_len: usize) -> Self {
        let host = metadata
            .get("user_host")
            .and_then(Value::as_str)
            .filter(|host| check_user_host(host).is_ok())
            .unwrap_or(&config.user_host);
        Self {
            user: login_name(&grant.principal, &grant.grant_id, max_len),
            host: host.to_string(),
        }
    }

    pub(super) fn sql(&self) -> String {
        format!("{}@{}", quote_string(&self.user), quote_string(&self.host))
    }
}

/// Creates (or, when issued before, resets) the account with `password`
/// and exactly the grant's privileges. On failure the account is dropped.
pub(super) async fn create(
    session: &mut Session,
    account: &Account,
    password: &SecretValue,
    spec: &GrantSpec,
) -> Result<(), ProviderError> {
    let who = account.sql();
    let identified = format!("IDENTIFIED BY {} ACCOUNT LOCK", quote_string(password.expose()));
    match session.run(&format!("CREATE USER {who} {identified}")).await {
        Ok(()) => {}
        Err(failure) if failure.code() == Some(CANNOT_USER) => {
            // Issued before: make it match rather than fail.
            if let Err(failure) = session.run(&format!("ALTER USER {who} {identified}")).await {
                let error = session.error(&format!("ALTER USER {who}"), failure, "");
                return Err(undo(session, account, error).await);
            }
            match session
                .run(&format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who}"))
                .await
            {
                Err(failure) if failure.code() != Some(NONEXISTING_GRANT) => {
                    let error = session.error(&format!("REVOKE ALL PRIVILEGES FROM {who}"), failure, "");
                    return Err(undo(session, account, error).await);
                }
                _ => {}
            }
        }
        Err(failure) => {
            let fix = format!("the admin needs CREATE USER: {}", create_user_fix(session.server()));
            return Err(session.error(&format!("CREATE USER {who}"), failure, &fix));
        }
    }
    let escape = session.server().escape_wildcards;
    for (statement, object) in spec.statements(&who, escape).iter().zip(&spec.objects) {
        if let Err(failure) = session.run(statement).await {
            let privileges = spec.privileges.join(", ");
            let fix = format!(
                "the admin must hold {privileges} WITH GRANT OPTION on {0}: GRANT {privileges} ON {0} TO {1} WITH GRANT OPTION;",
                object.sql(escape),
                session.server().admin
            );
            let error = session.error(statement, failure, &fix);
            return Err(undo(session, account, error).await);
        }
    }
    if let Err(failure) = session.run(&format!("ALTER USER {who} ACCOUNT UNLOCK")).await {
        let error = session.error(&format!("ALTER USER {who} ACCOUNT UNLOCK"), failure, "");
        return Err(undo(session, account, error).await);
    }
    Ok(())
}

/// Drops the account after a failed issue, and says so in `error`.
async fn undo(session: &mut Session, account: &Account, error: ProviderError) -> ProviderError {
    let dropped = session.run(&format!("DROP USER IF EXISTS {}", account.sql())).await;
    match error {
        ProviderError::Target { target, message } => {
            let outcome = match dropped {
                Ok(()) => format!(" The account {} was removed.", account.user),
                Err(_) => format!(
                    " Removing the account {} failed too: it is left locked, and revoking the grant removes it.",
                    account.user
                ),
            };
            ProviderError::Target {
                target,
                message: message + &outcome,
            }
        }
        other => other,
    }
}

/// Locks the account (no new logins), ends its connections, drops it, and
/// ends any connection that slipped in meanwhile. When the admin cannot
/// see other accounts' connections, the account is still dropped, and the
/// revoke fails saying so.
pub(super) async fn remove(session: &mut Session, account: &Account) -> Result<(), ProviderError> {
    let who = account.sql();
    let fix = format!("the admin needs CREATE USER: {}", create_user_fix(session.server()));
    let lock = format!("ALTER USER IF EXISTS {who} ACCOUNT LOCK");
    session.run(&lock).await.map_err(|f| session.error(&lock, f, &fix))?;
    let visible = check_sees_connections(session).await;
    if visible.is_ok() {
        end_connections(session, account).await?;
    }
    let drop = format!("DROP USER IF EXISTS {who}");
    session.run(&drop).await.map_err(|f| session.error(&drop, f, &fix))?;
    visible?;
    end_connections(session, account).await
}

/// Fails when the admin surely cannot see other accounts' connections:
/// an empty list would then say nothing.
async fn check_sees_connections(session: &mut Session) -> Result<(), ProviderError> {
    let lines: Vec<String> = session
        .rows("SHOW GRANTS")
        .await
        .map_err(|f| session.error("SHOW GRANTS", f, ""))?;
    if Held::parse(&lines).holds(&["PROCESS"]) == Some(false) {
        return Err(session.error(
            "listing the account's connections",
            Failure::Other("the admin lacks PROCESS, so it sees only its own connections".into()),
            &process_fix(session.server()),
        ));
    }
    Ok(())
}

async fn end_connections(session: &mut Session, account: &Account) -> Result<(), ProviderError> {
    let mut poll = SessionPoll::new();
    for _ in 0..KILL_ROUNDS {
        let ids = session
            .connections_of(&account.user)
            .await
            .map_err(|f| session.error("SELECT … FROM information_schema.PROCESSLIST", f, ""))?;
        if ids.is_empty() {
            return Ok(());
        }
        for id in ids {
            match session.run(&format!("KILL CONNECTION {id}")).await {
                Err(failure) if failure.code() != Some(NO_SUCH_THREAD) => {
                    let what = format!("KILL CONNECTION {id} (a connection of {})", account.user);
                    let fix = kill_fix(session.server());
                    return Err(session.error(&what, failure, &fix));
                }
                _ => {}
            }
        }
        poll.wait().await;
    }
    // What is still there after this is verify's to report.
    Ok(())
}

/// What is left of the account: the account itself (looked up with
/// `ALTER USER … ACCOUNT LOCK`, which needs only CREATE USER and locks it if
/// found) and its connections.
pub(super) async fn remaining(session: &mut Session, account: &Account) -> Result<Verification, ProviderError> {
    let who = account.sql();
    let probe = format!("ALTER USER {who} ACCOUNT LOCK");
    let exists = match session.run(&probe).await {
        Ok(()) => true,
        Err(failure) if failure.code() == Some(CANNOT_USER) => false,
        Err(failure) => return Err(session.error(&probe, failure, "")),
    };
    check_sees_connections(session).await?;
    let connections = session
        .connections_of(&account.user)
        .await
        .map_err(|f| session.error("SELECT … FROM information_schema.PROCESSLIST", f, ""))?
        .len();
    Ok(match (exists, connections) {
        (false, 0) => Verification::Gone,
        (true, 0) => Verification::Remaining(format!("account {who} still exists (now locked)")),
        (exists, n) => Verification::Remaining(format!(
            "{n} connection(s) of {} still open{}",
            account.user,
            if exists {
                ", and the account still exists (now locked)"
            } else {
                ""
            }
        )),
    })
}
