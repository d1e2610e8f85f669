//! Schema migrations, applied in order at start-up. The same DDL runs on
//! SQLite and PostgreSQL (TEXT and BIGINT), except where the types differ
//! (packed documents and audit hashes: BLOB values in SQLite's TEXT
//! columns, BYTEA on PostgreSQL). `schema_version` records how
//! many have run; on PostgreSQL an advisory lock makes replicas that start at
//! the same time apply them once.

use crate::StoreError;
use crate::sql::{Conn, Dialect};

/// Arbitrary, fixed: the advisory lock id that serialises migrations.
const MIGRATION_LOCK: i64 = 0x4841_4c4c_5041_5353;

/// One step of the schema: the same SQL on both backends, or one each
/// where their types differ.
enum Migration {
    Both(&'static str),
    Each {
        sqlite: &'static str,
        postgres: &'static str,
    },
}

impl Migration {
    fn sql(&self, dialect: Dialect) -> &'static str {
        match (self, dialect) {
            (Migration::Both(sql), _) => sql,
            (Migration::Each { sqlite, .. }, Dialect::Sqlite) => sqlite,
            (Migration::Each { postgres, .. }, Dialect::Postgres) => postgres,
        }
    }
}

const MIGRATIONS: &[Migration] = &[
    Migration::Both(
        r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    principal   TEXT NOT NULL,
    groups_json TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
);
CREATE TABLE targets (
    name       TEXT PRIMARY KEY,
    reference  TEXT NOT NULL,
    document   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE roles (
    name       TEXT PRIMARY KEY,
    reference  TEXT NOT NULL,
    document   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX roles_by_target ON roles (reference);
CREATE TABLE requests (
    id            TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    requester     TEXT NOT NULL,
    role          TEXT NOT NULL,
    activated     BIGINT NOT NULL,
    next_deadline TEXT,
    claimed_by    TEXT,
    claim_until   TEXT,
    created_at    TEXT NOT NULL,
    version       BIGINT NOT NULL,
    record        TEXT NOT NULL
);
CREATE INDEX requests_by_created ON requests (created_at);
CREATE INDEX requests_by_deadline ON requests (next_deadline) WHERE next_deadline IS NOT NULL;
CREATE INDEX requests_by_state ON requests (state, created_at);
CREATE TABLE audit (
    seq        BIGINT PRIMARY KEY,
    time       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    request_id TEXT,
    data       TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_by_request ON audit (request_id) WHERE request_id IS NOT NULL;
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY,
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
"#,
    ),
    Migration::Both(
        r#"
CREATE TABLE approval_flows (
    name       TEXT PRIMARY KEY,
    reference  TEXT NOT NULL,
    document   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE policies (
    name       TEXT PRIMARY KEY,
    reference  TEXT NOT NULL,
    document   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
ALTER TABLE requests ADD COLUMN review BIGINT NOT NULL DEFAULT 0;
CREATE INDEX requests_by_review ON requests (review, created_at) WHERE review > 0;
CREATE INDEX requests_holding_by_requester ON requests (requester, role, created_at)
    WHERE state IN ('active', 'revoke_failed');
"#,
    ),
    // Target secrets sealed apart from their documents; principal locks;
    // an index of audit checkpoints (partial exports start at one);
    // one open request or grant per requester and role, enforced by a
    // unique key (records left open twice by the first release keep their
    // place: only the newest of each pair takes the key); configuration
    // versions (the audit seq of their last change) so decisions can check
    // they still hold.
    Migration::Both(
        r#"
CREATE TABLE target_secrets (
    target     TEXT NOT NULL,
    name       TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (target, name)
);
CREATE TABLE locks (
    principal TEXT PRIMARY KEY,
    reason    TEXT NOT NULL,
    locked_by TEXT NOT NULL,
    locked_at TEXT NOT NULL
);
ALTER TABLE requests ADD COLUMN open_key TEXT;
UPDATE requests SET open_key = requester || ' ' || role
 WHERE state IN ('pending', 'approved', 'scheduled', 'active', 'revoke_failed')
   AND NOT EXISTS (
       SELECT 1 FROM requests newer
        WHERE newer.requester = requests.requester AND newer.role = requests.role
          AND newer.state IN ('pending', 'approved', 'scheduled', 'active', 'revoke_failed')
          AND (newer.created_at > requests.created_at
               OR (newer.created_at = requests.created_at AND newer.id > requests.id)));
CREATE UNIQUE INDEX requests_one_open ON requests (open_key) WHERE open_key IS NOT NULL;
DROP INDEX requests_holding_by_requester;
CREATE INDEX requests_open_by_requester ON requests (requester, state)
    WHERE state IN ('pending', 'approved', 'scheduled', 'active', 'revoke_failed');
ALTER TABLE targets ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE roles ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE approval_flows ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE policies ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX audit_checkpoints ON audit (seq) WHERE kind = 'audit.checkpoint';
"#,
    ),
    // Grants ended before their expiry on targets whose clients check a
    // revocation list (SSH certificates in a KRL): listed before the
    // revoke is attempted, kept until the grant would have expired.
    Migration::Both(
        r#"
CREATE TABLE revocations (
    target     TEXT NOT NULL,
    grant_id   TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    PRIMARY KEY (target, grant_id)
);
CREATE INDEX revocations_by_expiry ON revocations (target, expires_at);
"#,
    ),
    // Notifiers (configuration, with sealed secrets like targets'); the
    // deliveries the notification dispatcher derives from the audit log
    // (its cursor is in `meta`), sent in order per `order_key`, retried,
    // dead-lettered; and the replay register of signed callbacks (Slack).
    Migration::Both(
        r#"
CREATE TABLE notifiers (
    name       TEXT PRIMARY KEY,
    reference  TEXT NOT NULL,
    document   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version    BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE notifier_secrets (
    target     TEXT NOT NULL,
    name       TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (target, name)
);
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    notifier        TEXT NOT NULL,
    event_seq       BIGINT NOT NULL,
    topic           TEXT NOT NULL,
    request_id      TEXT,
    order_key       TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    claimed_by      TEXT,
    claim_until     TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_in_order ON deliveries (notifier, order_key, event_seq) WHERE state = 'pending';
CREATE INDEX deliveries_dead ON deliveries (created_at) WHERE state = 'dead';
CREATE INDEX deliveries_finished ON deliveries (created_at) WHERE state IN ('delivered', 'dropped');
CREATE TABLE seen_nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
CREATE INDEX seen_nonces_by_expiry ON seen_nonces (expires_at);
"#,
    ),
    // Single sign-on sessions: a signed-in token's sealed refresh token,
    // when the identity provider last vouched for its claims, and the lease
    // of the one server asking it again (a refresh token is spent once).
    Migration::Both(
        r#"
CREATE TABLE sso_sessions (
    token_id       TEXT PRIMARY KEY,
    sealed_refresh TEXT NOT NULL,
    checked_at     TEXT NOT NULL,
    checking_until TEXT
);
"#,
    ),
    // The claimed records, for start-up on SQLite to release what a dead
    // predecessor held without reading every request (a scan of the whole
    // table, 0.5 s with a million grants, before the server could serve).
    // Claims are few and short-lived, so the index stays small. Building
    // it reads the table once, at the first start of this release.
    Migration::Both(
        r#"
CREATE INDEX requests_claimed ON requests (claimed_by) WHERE claimed_by IS NOT NULL;
"#,
    ),
    // Claims move to a table of their own. Claiming a due grant rewrote its
    // row: on PostgreSQL a new version of the whole record and an entry in
    // seven of its eight indexes, and ending it did much the same again
    // (in isolation, claiming 50,000 grants so took twice as long as ending
    // them). A claim is now a short row here, deleted when the record is
    // next written. The old columns stay, always NULL: dropping a column
    // rewrites every row of a SQLite table.
    Migration::Both(
        r#"
CREATE TABLE claims (
    request_id  TEXT PRIMARY KEY,
    claimed_by  TEXT NOT NULL,
    claim_until TEXT NOT NULL
);
INSERT INTO claims (request_id, claimed_by, claim_until)
    SELECT id, claimed_by, claim_until FROM requests
     WHERE claimed_by IS NOT NULL AND claim_until IS NOT NULL;
UPDATE requests SET claimed_by = NULL, claim_until = NULL WHERE claimed_by IS NOT NULL;
DROP INDEX requests_claimed;
"#,
    ),
    // Request records and audit event data are stored packed (see
    // `packed_json`), and audit hashes as their 32 bytes: binary, which a
    // PostgreSQL TEXT column cannot hold. The documents already there
    // become their UTF-8 bytes, which read as before, and the hashes their
    // bytes (this rewrites both tables once). A column that is no longer
    // text is left as it is. SQLite keeps any value in any column: old
    // rows keep their text, which reads as before; nothing to change.
    Migration::Each {
        sqlite: "SELECT 1",
        postgres: r#"
DO $$
DECLARE
    audit_columns TEXT;
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = 'requests'
                  AND column_name = 'record' AND data_type = 'text') THEN
        ALTER TABLE requests ALTER COLUMN record TYPE BYTEA USING convert_to(record, 'UTF8');
    END IF;
    -- One ALTER for all three: one rewrite of the table.
    SELECT string_agg(format('ALTER COLUMN %I TYPE BYTEA USING %s', column_name,
                             CASE column_name
                                 WHEN 'data' THEN 'convert_to(data, ''UTF8'')'
                                 ELSE format('decode(%I, ''hex'')', column_name)
                             END), ', ')
      INTO audit_columns
      FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = 'audit'
       AND column_name IN ('data', 'prev_hash', 'hash') AND data_type = 'text';
    IF audit_columns IS NOT NULL THEN
        EXECUTE 'ALTER TABLE audit ' || audit_columns;
    END IF;
END
$$;
"#,
    },
];

pub fn migrate(conn: &mut dyn Conn) -> Result<(), StoreError> {
    let postgres = conn.dialect() == Dialect::Postgres;
    if postgres {
        conn.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
    }
    let result = apply_pending(conn);
    if postgres {
        let unlocked = conn.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
        result?;
        return unlocked;
    }
    result
}

fn apply_pending(conn: &mut dyn Conn) -> Result<(), StoreError> {
    conn.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let applied = match conn.query_one("SELECT version FROM schema_version", &[])? {
        Some(row) => usize::try_from(row.int(0)?).unwrap_or(usize::MAX),
        None => {
            conn.execute("INSERT INTO schema_version (version) VALUES (0)", &[])?;
            0
        }
    };
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {applied}, newer than this build knows ({}); upgrade hallpass",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        conn.batch(conn.dialect().begin())?;
        let step = conn.batch(migration.sql(conn.dialect())).and_then(|()| {
            conn.execute(
                "UPDATE schema_version SET version = $1",
                crate::sql_params![(index + 1) as i64],
            )
        });
        match step {
            Ok(_) => conn.batch("COMMIT")?,
            Err(error) => {
                let _ = conn.batch("ROLLBACK");
                return Err(error);
            }
        }
    }
    Ok(())
}
