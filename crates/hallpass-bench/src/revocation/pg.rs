//! The PostgreSQL server behind the revocation scenario's `postgres` target.
//!
//! [`Pg::create`] connects with `--postgres-url` (a superuser), checks that
//! the server takes the sessions the run will open, and creates what the
//! target needs, named for this run only: an admin role with `CREATEROLE`
//! and `pg_signal_backend` (as docs/targets.md asks) and a `NOLOGIN` role
//! the grants make their logins members of. [`Pg::remove`], or dropping the
//! handle on error or Ctrl-C, drops them again, and with them any login of
//! the run's grants Hallpass did not get to drop.
//!
//! Sessions and logins use tokio-postgres, a client of the wire protocol;
//! a session notices at once when the server ends it (the connection task
//! finishes), which is when it counts as ended.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use hallpass_api::{Credential, TargetSpec};
use serde_json::{Map, Value, json};
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use super::probe::Outcome;
use super::{IssuedAccounts, Login, LoginVars, cli, drop_unless_removed, json_object, password_target};
use crate::random::random_hex;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The libpq variables a postgres credential sets.
const LOGIN_VARS: LoginVars = LoginVars {
    user: "PGUSER",
    secret: "PGPASSWORD",
    host: "PGHOST",
    port: "PGPORT",
    database: Some("PGDATABASE"),
};

pub struct Pg {
    /// The superuser URL the run was given.
    url: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub admin: String,
    pub admin_password: String,
    /// The role grants give membership of.
    pub read_role: String,
    /// Logins Hallpass issued in this run, dropped at the end if still there.
    logins: IssuedAccounts,
    removed: bool,
}

/// `"name"`, inner quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, quotes doubled (no backslashes in what is quoted here).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Runs SQL through `psql` on stdin, stopping at the first error; `hide`
/// is kept out of the error.
fn psql(url: &str, sql: &str, hide: &[&str]) -> Result<String> {
    let args = ["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", url].map(String::from);
    cli::script("psql", &args, &[("PGCONNECT_TIMEOUT", "10")], sql, hide)
}

impl Pg {
    /// Checks the server's capacity for `sessions` more connections and
    /// creates the run's admin and grant roles.
    pub fn create(url: &str, sessions: usize) -> Result<Pg> {
        let config = tokio_postgres::Config::from_str(url)
            .with_context(|| "--postgres-url is not a postgres://USER@HOST:PORT/DATABASE URL".to_string())?;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            _ => bail!("--postgres-url must name a TCP host (the target connects over TCP)"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let database = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres")
            .to_string();
        let free: i64 = psql(
            url,
            "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int \
             - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
            &[],
        )?
        .parse()
        .context("unreadable answer about max_connections")?;
        if free < sessions as i64 {
            let need = sessions + 100;
            bail!(
                "PostgreSQL at {host}:{port} takes {free} more connections, the run needs {sessions}: as a superuser \
                 `ALTER SYSTEM SET max_connections = {need}` and restart it, use fewer --grants, or use a throwaway \
                 server (docs/benchmarks.md)"
            );
        }
        let suffix = random_hex::<4>()?;
        let pg = Pg {
            url: url.to_string(),
            host,
            port,
            database,
            admin: format!("hallpass_bench_admin_{suffix}"),
            admin_password: random_hex::<24>()?,
            read_role: format!("hallpass_bench_read_{suffix}"),
            logins: IssuedAccounts::default(),
            removed: false,
        };
        // Sent as a SCRAM verifier, as Hallpass does: no password in the
        // server's logs.
        let verifier = postgres_protocol::password::scram_sha_256(pg.admin_password.as_bytes());
        let (admin, read) = (ident(&pg.admin), ident(&pg.read_role));
        psql(
            url,
            &format!(
                "CREATE ROLE {read} NOLOGIN;\n\
                 CREATE ROLE {admin} LOGIN CREATEROLE PASSWORD {};\n\
                 GRANT pg_signal_backend TO {admin};\n\
                 GRANT {read} TO {admin} WITH ADMIN OPTION;\n",
                literal(&verifier)
            ),
            &[&verifier],
        )
        .context("cannot create the benchmark's admin role (--postgres-url must be a superuser)")?;
        Ok(pg)
    }

    pub fn target(&self, name: &str) -> TargetSpec {
        let config = json!({
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "username": self.admin,
            "sslmode": "disable",
        });
        password_target(name, "postgres", config, &self.admin_password)
    }

    pub fn grant(&self) -> Map<String, Value> {
        json_object(json!({ "roles": [self.read_role] }))
    }

    /// The login a credential hands out, from its libpq variables.
    pub fn login(&self, credential: &Credential) -> Result<Login> {
        let login = Login::from_env(credential, &LOGIN_VARS)?;
        self.logins.note(&login.user);
        Ok(login)
    }

    /// The run's admin, as a login.
    pub fn admin_login(&self) -> Login {
        Login {
            user: self.admin.clone(),
            secret: self.admin_password.clone(),
            host: self.host.clone(),
            port: self.port,
            database: Some(self.database.clone()),
            env: Default::default(),
            files: None,
        }
    }

    /// How to connect with `login`, named `application_name` on the server.
    pub fn config(login: &Login, application_name: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&login.host)
            .port(login.port)
            .user(&login.user)
            .password(&login.secret)
            .dbname(login.database.as_deref().unwrap_or("postgres"))
            .application_name(application_name)
            .connect_timeout(CONNECT_TIMEOUT);
        config
    }

    /// A session kept open; its connection task notes when it ends.
    pub async fn open(login: &Login) -> Result<PgSession> {
        let (client, connection) = Self::config(login, "hallpass-bench")
            .connect(NoTls)
            .await
            .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
        let closed = Arc::new(OnceLock::new());
        let noted = closed.clone();
        tokio::spawn(async move {
            let _ = connection.await;
            let _ = noted.set(Utc::now());
        });
        Ok(PgSession { client, closed })
    }

    /// A new login: accepted, refused, or failed for another reason.
    pub async fn try_login(login: &Login) -> Outcome {
        match Self::config(login, "hallpass-bench").connect(NoTls).await {
            Ok((client, connection)) => {
                // Closed politely (Terminate) once the client is dropped.
                tokio::spawn(connection);
                drop(client);
                Outcome::Live
            }
            Err(error) if is_refusal(&error) => Outcome::Ended(None),
            Err(error) => Outcome::Failed(describe(&error)),
        }
    }

    /// Whether the server checks passwords for `login` at all: a wrong one
    /// must be refused. With `trust` in pg_hba.conf it is not, and only
    /// Hallpass's revoke (not `VALID UNTIL`) refuses the login.
    pub async fn checks_passwords(login: &Login) -> bool {
        let wrong = Login {
            secret: format!("{}-wrong", login.secret),
            ..login.clone()
        };
        !matches!(Self::try_login(&wrong).await, Outcome::Live)
    }

    /// A superuser connection that lists which of the run's logins exist.
    pub async fn watcher(&self) -> Result<PgWatcher> {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect with --postgres-url: {}", describe(&e)))?;
        tokio::spawn(connection);
        Ok(PgWatcher { client })
    }

    /// Drops the run's roles, and any login of its grants still there.
    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        self.drop_all()
    }

    fn drop_all(&self) -> Result<()> {
        let logins = self.logins.all();
        let names: Vec<String> = logins.iter().map(|l| literal(l)).collect();
        let mut sql = String::new();
        // Logins still members of the run's role (issued, never revoked),
        // and those the credentials named (revoked half way).
        sql.push_str(&format!(
            "DO $$ DECLARE r text; BEGIN\n\
             FOR r IN SELECT m.rolname FROM pg_roles m JOIN pg_auth_members a ON a.member = m.oid \
             JOIN pg_roles g ON g.oid = a.roleid WHERE g.rolname = {} AND m.rolname LIKE 'hp\\_%' \
             UNION SELECT rolname FROM pg_roles WHERE rolname = ANY(ARRAY[{}]::text[]) LOOP\n\
             PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = r;\n\
             EXECUTE format('DROP ROLE %I', r);\n\
             END LOOP; END $$;\n",
            literal(&self.read_role),
            names.join(",")
        ));
        let (admin, read) = (ident(&self.admin), ident(&self.read_role));
        sql.push_str(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = {name};\n\
             DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN \
             EXECUTE 'DROP OWNED BY ' || quote_ident({name}); END IF; END $$;\n\
             DROP ROLE IF EXISTS {admin};\nDROP ROLE IF EXISTS {read};\n",
            name = literal(&self.admin)
        ));
        psql(&self.url, &sql, &[]).map(drop).with_context(|| {
            format!(
                "cannot drop the benchmark's roles {} and {}",
                self.admin, self.read_role
            )
        })
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        drop_unless_removed(self.removed, || self.drop_all());
    }
}

/// A session of a grant's login.
pub struct PgSession {
    client: tokio_postgres::Client,
    /// When the connection task saw the connection end.
    closed: Arc<OnceLock<DateTime<Utc>>>,
}

impl PgSession {
    pub async fn check(&mut self) -> Outcome {
        if let Some(at) = self.closed.get() {
            return Outcome::Ended(Some(*at));
        }
        match self.client.simple_query("SELECT 1").await {
            Ok(_) => Outcome::Live,
            Err(_) => Outcome::Ended(self.closed.get().copied()),
        }
    }
}

pub struct PgWatcher {
    client: tokio_postgres::Client,
}

impl PgWatcher {
    pub async fn present(&mut self, names: &[String]) -> Result<HashSet<String>> {
        let rows = self
            .client
            .query("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)", &[&names])
            .await
            .map_err(|e| anyhow::anyhow!("cannot list roles: {}", describe(&e)))?;
        rows.iter()
            .map(|row| row.try_get::<_, String>(0).context("unreadable role name"))
            .collect()
    }
}

/// The server refusing the login itself: wrong or expired password, a
/// role that may not log in or no longer exists.
fn is_refusal(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    )
}

/// The server's message when there is one (tokio-postgres's own
/// `Display` is only "db error").
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => error.to_string(),
    }
}
