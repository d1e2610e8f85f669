//! What Hallpass adds to a PostgreSQL grant: one issue + revoke cycle
//! through Hallpass against the same SQL run by hand.
//!
//! A raw cycle sends, over one connection as the target's admin, what the
//! postgres provider sends for one grant (crates/hallpass-providers/src/
//! postgres/{issue,revoke,login}.rs), through the same client calls
//! (`batch_execute` for statements, `query_typed` for catalog queries, one
//! round trip each) and with the same requests sent together: issuing (in
//! one transaction: the advisory lock on the login's name, the role
//! lookup, `CREATE ROLE ... PASSWORD <SCRAM verifier> VALID UNTIL ...`,
//! `COMMENT ON ROLE`, `GRANT`, the lookup again), revoking (the lookup;
//! `ALTER ROLE ... NOLOGIN` and `pg_terminate_backend` of its sessions,
//! sent together; then the `REVOKE` in a transaction and, in another, the
//! lock, `GRANT <login> TO CURRENT_USER`, `REASSIGN OWNED`, `DROP OWNED`,
//! `DROP ROLE`, sent together) and verifying (the lookup with the session
//! count, one query). The SCRAM verifier of a fresh random password is
//! computed in the cycle, as Hallpass computes one per issue.
//!
//! A Hallpass cycle is `POST /v1/requests` (auto-approved: issued and
//! active when it answers) then `POST /v1/grants/{id}/revoke` as the admin
//! (answers once revoked and verified). Cycles alternate, one at a time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use hallpass_api::RequestState;
use serde::Serialize;
use tokio_postgres::NoTls;
use tokio_postgres::types::{ToSql, Type};

use super::issue::Setup;
use super::pg::{Pg, describe, ident};
use crate::random::random_hex;
use crate::stats::{Latencies, Summary};

/// Unmeasured cycles of each kind before the measured ones.
pub const WARMUP: usize = 5;

const LOOKUP: &str = "SELECT r.oid, shobj_description(r.oid, 'pg_authid'), r.rolcanlogin, \
     ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
     WHERE m.member = r.oid ORDER BY 1) FROM pg_roles r WHERE r.rolname = $1";
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";
/// The sessions of role oid `$2` (login `$1`), as the provider finds them.
const SESSIONS: &str = "FROM pg_stat_get_backend_idset() AS b(id) WHERE pg_stat_get_backend_userid(b.id) = $2 \
     AND pg_stat_get_backend_pid(b.id) <> pg_backend_pid() \
     AND NOT EXISTS (SELECT 1 FROM pg_roles o WHERE o.oid = $2 AND o.rolname <> $1)";
/// The verification: the role named `$1` (NULLs when there is none) and
/// the count of its sessions.
const LOOK: &str = "SELECT r.oid, (SELECT count(*) FROM pg_stat_get_backend_idset() AS b(id) \
     WHERE pg_stat_get_backend_userid(b.id) = COALESCE(r.oid, $2) AND pg_stat_get_backend_pid(b.id) <> pg_backend_pid() \
     AND NOT EXISTS (SELECT 1 FROM pg_roles o WHERE o.oid = COALESCE(r.oid, $2) AND o.rolname <> $1)) \
     FROM (VALUES (1)) AS one LEFT JOIN pg_roles r ON r.rolname = $1";

#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    pub cycles: usize,
    /// The provider's statements by hand, per cycle.
    pub raw: Summary,
    /// Request + revoke through Hallpass, per cycle.
    pub hallpass: Summary,
    pub hallpass_request: Summary,
    pub hallpass_revoke: Summary,
    /// Median Hallpass cycle ÷ median raw cycle.
    pub ratio_p50: f64,
}

/// The provider's SQL by hand against Hallpass, alternating, one cycle at a
/// time; principals from `first` on request the Hallpass cycles.
pub async fn measure(setup: &Setup<'_>, pg: &Pg, first: usize, cycles: usize) -> Result<BaselineReport> {
    eprintln!("revocation (postgres): {cycles} raw issue + revoke cycles against as many through Hallpass");
    let client = connect(pg).await?;
    let mut measured = Cycles::new()?;
    let tag = random_hex::<4>()?;
    for k in 0..cycles + WARMUP {
        // Named like Hallpass's logins (and members of the run's role), so
        // that clean-up finds one left by a failed cycle.
        let raw = raw_cycle(&client, &pg.read_role, &format!("hp_raw_{k}_{tag}")).await?;
        let (request, revoke) = hallpass_cycle(setup, first + k).await?;
        if k >= WARMUP {
            measured.raw.record(raw);
            measured.request.record(request);
            measured.revoke.record(revoke);
            measured.hallpass.record(request + revoke);
        }
    }
    Ok(measured.report())
}

/// One issue + revoke through Hallpass, requested by `principal`; how long
/// the request and the revoke took.
async fn hallpass_cycle(setup: &Setup<'_>, principal: usize) -> Result<(Duration, Duration)> {
    let requester = setup.client(principal)?;
    let body = setup.request("1h".into(), "hallpass-bench revocation baseline");
    let started = Instant::now();
    let grant = requester
        .create_request(&body)
        .await
        .context("POST /v1/requests")?
        .request;
    let request = started.elapsed();
    if grant.state != RequestState::Active {
        bail!("baseline request {} is {} instead of active", grant.id, grant.state);
    }
    let started = Instant::now();
    let ended = setup
        .admin
        .revoke(&grant.id, "hallpass-bench baseline cycle")
        .await
        .with_context(|| format!("cannot revoke baseline grant {}", grant.id))?;
    let revoke = started.elapsed();
    if ended.state != RequestState::Revoked {
        bail!("baseline grant {} is {} after its revoke", grant.id, ended.state);
    }
    Ok((request, revoke))
}

/// A connection as the target's admin, which is who the provider is.
pub async fn connect(pg: &Pg) -> Result<tokio_postgres::Client> {
    let (client, connection) = Pg::config(&pg.admin_login(), "hallpass-bench raw")
        .connect(NoTls)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect as the benchmark's admin: {}", describe(&e)))?;
    tokio::spawn(connection);
    Ok(client)
}

/// One raw issue + revoke + verify of login `login`; how long it took.
pub async fn raw_cycle(client: &tokio_postgres::Client, read_role: &str, login: &str) -> Result<Duration> {
    let started = Instant::now();
    let password = random_hex::<32>()?;
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let valid_until = (Utc::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%d %H:%M:%S%.6f+00")
        .to_string();
    let (quoted, read) = (ident(login), ident(read_role));
    let name = [(&login as &(dyn ToSql + Sync), Type::TEXT)];
    execute(client, "BEGIN").await?;
    client.query_typed(LOCK, &name).await.map_err(db)?;
    if !client.query_typed(LOOKUP, &name).await.map_err(db)?.is_empty() {
        bail!("raw cycle: role {login} exists already");
    }
    execute(
        client,
        &format!(
            "CREATE ROLE {quoted} WITH NOSUPERUSER NOCREATEDB NOREPLICATION NOBYPASSRLS LOGIN NOCREATEROLE INHERIT \
             CONNECTION LIMIT -1 PASSWORD '{verifier}' VALID UNTIL '{valid_until}'"
        ),
    )
    .await?;
    execute(
        client,
        &format!("COMMENT ON ROLE {quoted} IS 'hallpass-bench raw cycle'"),
    )
    .await?;
    execute(client, &format!("GRANT {read} TO {quoted}")).await?;
    let rows = client.query_typed(LOOKUP, &name).await.map_err(db)?;
    let oid: u32 = rows.first().context("raw cycle: the new role is missing")?.try_get(0)?;
    execute(client, "COMMIT").await?;
    // Revoke.
    client.query_typed(LOOKUP, &name).await.map_err(db)?;
    let oid = Some(oid);
    let sessions = [(&login as &(dyn ToSql + Sync), Type::TEXT), (&oid, Type::OID)];
    let terminate = format!("SELECT pg_terminate_backend(pg_stat_get_backend_pid(b.id)) {SESSIONS}");
    let no_login = format!("ALTER ROLE {quoted} WITH NOLOGIN");
    let (altered, terminated) = tokio::join!(execute(client, &no_login), client.query_typed(&terminate, &sessions));
    altered?;
    terminated.map_err(db)?;
    // No session was signalled, so the provider sends no second look.
    let revoke = format!("BEGIN; REVOKE {read} FROM {quoted}; COMMIT");
    // The login is the benchmark's own `hp_raw_...` name: no quote in it.
    let drop = format!(
        "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('{login}', 0)); \
         GRANT {quoted} TO CURRENT_USER; REASSIGN OWNED BY {quoted} TO CURRENT_USER; \
         DROP OWNED BY {quoted}; DROP ROLE {quoted}; COMMIT"
    );
    let (revoked, dropped) = tokio::join!(execute(client, &revoke), execute(client, &drop));
    revoked?;
    dropped?;
    // Verify.
    let rows = client.query_typed(LOOK, &sessions).await.map_err(db)?;
    let row = rows.first().context("raw cycle: the verification returned no row")?;
    if row.try_get::<_, Option<u32>>(0)?.is_some() || row.try_get::<_, i64>(1)? > 0 {
        bail!("raw cycle: role {login} or a session of it is still there");
    }
    Ok(started.elapsed())
}

/// Sends statements as the provider does (`batch_execute`).
async fn execute(client: &tokio_postgres::Client, sql: &str) -> Result<()> {
    client.batch_execute(sql).await.map_err(db)
}

/// A failed statement of a raw cycle, with the server's message.
fn db(error: tokio_postgres::Error) -> anyhow::Error {
    anyhow::anyhow!("raw cycle: {}", describe(&error))
}

/// Collects the cycles' times.
pub struct Cycles {
    pub raw: Latencies,
    pub hallpass: Latencies,
    pub request: Latencies,
    pub revoke: Latencies,
}

impl Cycles {
    pub fn new() -> Result<Cycles> {
        Ok(Cycles {
            raw: Latencies::new()?,
            hallpass: Latencies::new()?,
            request: Latencies::new()?,
            revoke: Latencies::new()?,
        })
    }

    pub fn report(&self) -> BaselineReport {
        let (raw, hallpass) = (self.raw.summary(), self.hallpass.summary());
        BaselineReport {
            cycles: raw.count as usize,
            raw,
            hallpass,
            hallpass_request: self.request.summary(),
            hallpass_revoke: self.revoke.summary(),
            ratio_p50: if raw.p50_ms > 0.0 {
                hallpass.p50_ms / raw.p50_ms
            } else {
                f64::NAN
            },
        }
    }
}
