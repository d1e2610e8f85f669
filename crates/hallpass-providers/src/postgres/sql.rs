//! The SQL text Hallpass sends to a postgres target. Role statements
//! (`CREATE ROLE`, `GRANT`...) take no bind parameters, so every name is
//! quoted as an identifier and every value as a literal here, in one place;
//! catalog queries use bind parameters instead. Passwords go out only as
//! SCRAM-SHA-256 verifiers computed here, so the cleartext never reaches
//! the server, its logs or `pg_stat_activity`.

use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::{ProviderError, SecretValue};

/// `"name"`, inner double quotes doubled: always one identifier, whatever
/// it holds. NUL, which PostgreSQL cannot hold, is refused.
pub(super) fn ident(name: &str) -> Result<String, ProviderError> {
    no_nul("name", name)?;
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// A string literal, quotes doubled; with backslashes, an `E'...'` literal
/// with them doubled too, which means the same whether or not the server
/// has `standard_conforming_strings` on (as libpq's PQescapeLiteral does).
pub(super) fn literal(value: &str) -> Result<String, ProviderError> {
    no_nul("value", value)?;
    let quoted = value.replace('\'', "''");
    Ok(if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    })
}

fn no_nul(what: &str, text: &str) -> Result<(), ProviderError> {
    if text.contains('\0') {
        return Err(ProviderError::Credential(format!(
            "a {what} for PostgreSQL contains a NUL character, which it cannot hold"
        )));
    }
    Ok(())
}

/// The SCRAM-SHA-256 verifier of `password` (random salt, 4096 rounds, the
/// server's own defaults): what `PASSWORD '...'` stores, not the password.
pub(super) fn verifier(password: &SecretValue) -> Zeroizing<String> {
    Zeroizing::new(postgres_protocol::password::scram_sha_256(password.expose().as_bytes()))
}

/// `VALID UNTIL` value: the grant's expiry, in UTC.
pub(super) fn valid_until(expires_at: DateTime<Utc>) -> String {
    expires_at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// What a login is made of, for CREATE ROLE and ALTER ROLE alike.
pub(super) struct LoginSpec<'a> {
    pub login: &'a str,
    pub verifier: &'a str,
    pub valid_until: &'a str,
    pub connection_limit: Option<u32>,
}

impl LoginSpec<'_> {
    /// The options both statements share. Only attributes a CREATEROLE
    /// admin may set on PostgreSQL 15 and 16+ alike (`NOSUPERUSER` in an
    /// ALTER ROLE needs a superuser there, so it is left to the defaults).
    fn options(&self) -> Result<String, ProviderError> {
        let limit = self.connection_limit.map_or(-1, i64::from);
        Ok(format!(
            "LOGIN NOCREATEROLE INHERIT CONNECTION LIMIT {limit} PASSWORD {} VALID UNTIL {}",
            literal(self.verifier)?,
            literal(self.valid_until)?
        ))
    }

    pub(super) fn create(&self) -> Result<String, ProviderError> {
        Ok(format!(
            "CREATE ROLE {} WITH NOSUPERUSER NOCREATEDB NOREPLICATION NOBYPASSRLS {}",
            ident(self.login)?,
            self.options()?
        ))
    }

    pub(super) fn alter(&self) -> Result<String, ProviderError> {
        Ok(format!("ALTER ROLE {} WITH {}", ident(self.login)?, self.options()?))
    }
}

/// Locks a login's name until the end of the transaction: concurrent
/// issues and revokes of one grant wait for each other instead of racing
/// to create or drop the same role. Bind parameter `$1`: the login.
pub(super) const LOCK_LOGIN: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

/// [`LOCK_LOGIN`] with the login as a literal, for a multi-statement
/// string (which takes no bind parameters); the same lock.
pub(super) fn lock_login(login: &str) -> Result<String, ProviderError> {
    Ok(format!(
        "SELECT pg_advisory_xact_lock(hashtextextended({}, 0))",
        literal(login)?
    ))
}

/// Marks a login as Hallpass's, for this grant: checked before any change.
pub(super) fn comment(login: &str, text: &str) -> Result<String, ProviderError> {
    Ok(format!("COMMENT ON ROLE {} IS {}", ident(login)?, literal(text)?))
}

pub(super) fn grant(role: &str, login: &str) -> Result<String, ProviderError> {
    Ok(format!("GRANT {} TO {}", ident(role)?, ident(login)?))
}

pub(super) fn revoke(role: &str, login: &str) -> Result<String, ProviderError> {
    Ok(format!("REVOKE {} FROM {}", ident(role)?, ident(login)?))
}

pub(super) fn no_login(login: &str) -> Result<String, ProviderError> {
    Ok(format!("ALTER ROLE {} WITH NOLOGIN", ident(login)?))
}

/// Drops a login and hands what it created to the admin. The admin joins
/// the login first because REASSIGN OWNED and DROP OWNED need the
/// privileges of the role they act on, which a CREATEROLE admin (not a
/// superuser) only has as a member.
pub(super) fn drop_login(login: &str) -> Result<[String; 4], ProviderError> {
    let login = ident(login)?;
    Ok([
        format!("GRANT {login} TO CURRENT_USER"),
        format!("REASSIGN OWNED BY {login} TO CURRENT_USER"),
        format!("DROP OWNED BY {login}"),
        format!("DROP ROLE {login}"),
    ])
}

/// Sets the admin's own password (as a verifier).
pub(super) fn set_own_password(verifier: &str) -> Result<String, ProviderError> {
    Ok(format!("ALTER ROLE CURRENT_USER WITH PASSWORD {}", literal(verifier)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("app_read").unwrap(), "\"app_read\"");
        assert_eq!(ident("a\"; DROP ROLE x; --").unwrap(), "\"a\"\"; DROP ROLE x; --\"");
        assert_eq!(ident("é\\n").unwrap(), "\"é\\n\"");
        assert!(ident("a\0b").is_err());
        assert_eq!(literal("it's").unwrap(), "'it''s'");
        assert_eq!(literal("a\\'; x").unwrap(), "E'a\\\\''; x'");
        assert!(literal("\0").is_err());
    }

    #[test]
    fn role_statements_carry_a_verifier_never_the_password() {
        let password = SecretValue::new("Plain-Password-0123456789");
        let verifier = verifier(&password);
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{}", verifier.as_str());
        let spec = LoginSpec {
            login: "hp_alice_0123456789abcdef",
            verifier: &verifier,
            valid_until: "2030-01-02 03:04:05.000000+00",
            connection_limit: Some(3),
        };
        for statement in [spec.create().unwrap(), spec.alter().unwrap()] {
            assert!(!statement.contains(password.expose()), "{statement}");
            assert!(statement.contains(verifier.as_str()), "{statement}");
            assert!(statement.contains("CONNECTION LIMIT 3"), "{statement}");
            assert!(
                statement.contains("VALID UNTIL '2030-01-02 03:04:05.000000+00'"),
                "{statement}"
            );
        }
        assert!(!set_own_password(&verifier).unwrap().contains(password.expose()));
    }

    #[test]
    fn valid_until_is_utc() {
        let at = DateTime::parse_from_rfc3339("2030-01-02T03:04:05.5+02:00")
            .unwrap()
            .to_utc();
        assert_eq!(valid_until(at), "2030-01-02 01:04:05.500000+00");
    }
}
