//! The `postgres` target: a PostgreSQL login role per grant.
//!
//! ```hcl
//! target "orders-db" {
//!   type    = "postgres"
//!   config  = { host = "db.internal", database = "orders", username = "hallpass_admin",
//!               ca_file = "/etc/hallpass/db-ca.pem" }
//!   secrets = { password = env("ORDERS_DB_ADMIN_PASSWORD") }
//! }
//! role "orders-read" {
//!   target = "orders-db"
//!   grant  = { roles = ["app_read"], connection_limit = 2 }
//! }
//! ```
//!
//! Issuing creates `hp_<principal>_<grant digest>` with `LOGIN`, the
//! grant's derived password (sent as a SCRAM-SHA-256 verifier, never in
//! clear), `VALID UNTIL` the grant's expiry and the optional connection
//! limit, and makes it a member of the grant's roles, in one transaction;
//! issuing again makes an existing login match instead of failing. A
//! comment on the role marks it as this grant's, and a role of that name
//! without the mark is never touched. Revoking takes away `LOGIN`, ends the
//! login's sessions and waits until they are gone, revokes its memberships,
//! hands what it owned in the target's database to the admin (`REASSIGN
//! OWNED`, `DROP OWNED`) and drops it. Verifying looks for the role and for
//! sessions of it. See docs/targets.md for the admin's privileges.

mod admin;
mod check;
mod errors;
mod issue;
mod login;
mod revoke;
mod settings;
mod sql;
mod tls;

use std::collections::BTreeMap;
use std::fmt;

use futures::future::{BoxFuture, FutureExt};
use serde_json::{Map, Value};

use crate::{
    CredentialProvider, GrantContext, ProviderError, SecretCredential, SecretSpec, SecretValue, TargetContext,
    TargetSecrets, TestCheck, Verification,
};
use login::{Login, PASSWORD_PURPOSE};

pub use admin::POOL_SIZE;
pub use settings::{
    CONNECT_TIMEOUT_RANGE_SECONDS, CONNECTION_LIMIT_RANGE, DEFAULT_CONNECT_TIMEOUT_SECONDS, DEFAULT_PORT,
    DEFAULT_STATEMENT_TIMEOUT_SECONDS, GRANT_SETTINGS, Grant, MAX_GRANT_ROLES, MAX_NAME_BYTES, PASSWORD, SECRETS,
    SETTINGS, STATEMENT_TIMEOUT_RANGE_SECONDS, Settings, SslMode, TARGET_TYPE,
};

/// Issues PostgreSQL logins; keeps a pool of admin connections per target.
#[derive(Default)]
pub struct PostgresProvider {
    pools: admin::Pools,
}

impl fmt::Debug for PostgresProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresProvider")
            .field("pools", &self.pools.len())
            .finish()
    }
}

impl PostgresProvider {
    pub fn new() -> Self {
        Self::default()
    }
}

/// `text` percent-encoded for a URI's user, password, host or path: all
/// but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The requester's credential: a `postgresql://` URI and libpq's variables.
fn credential(grant: &GrantContext) -> Result<SecretCredential, ProviderError> {
    let settings = Settings::parse(&grant.target.config)?;
    let login = Login::of(grant).name;
    let password = grant.derive_secret(PASSWORD_PURPOSE);
    let sslmode = settings.sslmode.as_str();
    let (authority, socket) = if settings.is_unix_socket() {
        (String::new(), format!("&host={}", percent_encode(&settings.host)))
    } else if settings.host.contains(':') {
        (format!("[{}]:{}", settings.host, settings.port), String::new())
    } else {
        (
            format!("{}:{}", percent_encode(&settings.host), settings.port),
            String::new(),
        )
    };
    let port_query = if settings.is_unix_socket() {
        format!("&port={}", settings.port)
    } else {
        String::new()
    };
    let token = format!(
        "postgresql://{}:{}@{authority}/{}?sslmode={sslmode}{socket}{port_query}",
        percent_encode(&login),
        percent_encode(password.expose()),
        percent_encode(&settings.database),
    );
    let env: BTreeMap<String, String> = [
        ("PGHOST", settings.host.clone()),
        ("PGPORT", settings.port.to_string()),
        ("PGDATABASE", settings.database.clone()),
        ("PGUSER", login),
        ("PGPASSWORD", password.expose().to_string()),
        ("PGSSLMODE", sslmode.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    Ok(SecretCredential::new(TARGET_TYPE, token, env))
}

impl CredentialProvider for PostgresProvider {
    fn target_type(&self) -> &'static str {
        TARGET_TYPE
    }

    fn secrets(&self) -> &'static [SecretSpec] {
        SECRETS
    }

    fn validate_config(&self, config: &Map<String, Value>, secrets: &TargetSecrets) -> Result<(), ProviderError> {
        Settings::parse(config)?;
        settings::check_secrets(secrets)
    }

    fn validate_grant(&self, grant: &Map<String, Value>) -> Result<(), ProviderError> {
        Grant::parse(grant).map(|_| ())
    }

    fn issue<'a>(&'a self, grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
        issue::issue(&self.pools, grant).boxed()
    }

    fn credential<'a>(
        &'a self,
        grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>> {
        let result = credential(grant);
        async move { result }.boxed()
    }

    fn revoke<'a>(&'a self, grant: &'a GrantContext, metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>> {
        revoke::revoke(&self.pools, grant, metadata).boxed()
    }

    fn verify<'a>(
        &'a self,
        grant: &'a GrantContext,
        metadata: &'a Value,
    ) -> BoxFuture<'a, Result<Verification, ProviderError>> {
        revoke::verify(&self.pools, grant, metadata).boxed()
    }

    fn test<'a>(&'a self, target: &'a TargetContext) -> BoxFuture<'a, Result<Vec<TestCheck>, ProviderError>> {
        check::test(target).boxed()
    }

    fn forget_target(&self, name: &str) {
        self.pools.forget(name);
    }

    fn rotatable_secret(&self) -> Option<&'static str> {
        Some(PASSWORD)
    }

    fn rotate<'a>(
        &'a self,
        target: &'a TargetContext,
        new: &'a SecretValue,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        check::rotate(target, new).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};
    use serde_json::json;

    fn grant(config: Value) -> GrantContext {
        let target = TargetContext {
            name: "db".into(),
            config: config.as_object().unwrap().clone(),
            secrets: TargetSecrets::new(),
            seed: crate::Seed::for_grant(b"k", "db", "-"),
        };
        let now = Utc::now();
        GrantContext::new(
            "g-1",
            "alice@example.com",
            "read",
            target,
            crate::Seed::for_grant(b"k", "db", "g-1"),
            now,
            now + Duration::minutes(5),
        )
    }

    #[test]
    fn credential_is_a_uri_and_libpq_variables() {
        let grant =
            grant(json!({"host": "db.internal", "database": "app/x y", "username": "adm", "sslmode": "require"}));
        let credential = credential(&grant).unwrap();
        let password = grant.derive_secret(PASSWORD_PURPOSE);
        let user = Login::of(&grant).name;
        assert_eq!(credential.credential_type, "postgres");
        assert_eq!(
            credential.token,
            format!(
                "postgresql://{user}:{}@db.internal:5432/app%2Fx%20y?sslmode=require",
                password.expose()
            )
        );
        assert_eq!(credential.env["PGPASSWORD"], password.expose());
        assert_eq!(credential.env["PGUSER"], user);
        assert_eq!(credential.env["PGDATABASE"], "app/x y");
        assert_eq!(credential.env["PGSSLMODE"], "require");
        assert!(!format!("{credential:?}").contains(password.expose()));
        let ipv6 = credential_of(json!({"host": "::1", "database": "d", "username": "a", "sslmode": "disable"}));
        assert!(ipv6.token.contains("@[::1]:5432/d?sslmode=disable"), "{}", ipv6.token);
        let socket = credential_of(json!({"host": "/run/pg", "database": "d", "username": "a", "sslmode": "disable"}));
        assert!(
            socket.token.ends_with("@/d?sslmode=disable&host=%2Frun%2Fpg&port=5432"),
            "{}",
            socket.token
        );
    }

    fn credential_of(config: Value) -> SecretCredential {
        credential(&grant(config)).unwrap()
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("p@ss:w/rd é"), "p%40ss%3Aw%2Frd%20%C3%A9");
    }
}
