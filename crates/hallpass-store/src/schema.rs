//! Schema migrations, applied in order at start-up; `PRAGMA user_version`
//! records how many have run.

use rusqlite::Connection;

use crate::StoreError;

const MIGRATIONS: &[&str] = &[r#"
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
    activated     INTEGER NOT NULL,
    next_deadline TEXT,
    created_at    TEXT NOT NULL,
    version       INTEGER NOT NULL,
    record        TEXT NOT NULL
);
CREATE INDEX requests_by_created ON requests (created_at);
CREATE INDEX requests_by_deadline ON requests (next_deadline) WHERE next_deadline IS NOT NULL;
CREATE INDEX requests_by_state ON requests (state, created_at);
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,
    time       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    request_id TEXT,
    data       TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_by_request ON audit (request_id) WHERE request_id IS NOT NULL;
"#];

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: usize = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {applied}, newer than this build knows ({}); upgrade hallpass",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}
