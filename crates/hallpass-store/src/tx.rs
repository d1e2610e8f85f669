//! The operations a write or read closure can perform, in SQL shared by both
//! backends.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use hallpass_core::Clock;
use hallpass_core::audit::{AuditDraft, AuditEvent};
use hallpass_core::request::RequestRecord;

use crate::packed_json;
use crate::sql::{Conn, Dialect, Row, SqlValue};
use crate::{
    ConfigKind, ConfigRow, LockRow, RequestFilter, RevocationRow, SecretOwner, SecretRow, StoreError, TokenForAuth,
    TokenRow, format_time, requests_sql, sql_params,
};

/// The key that allows one open request or grant per requester and role.
/// Names cannot hold spaces, so the pair is unambiguous.
pub fn open_key(requester: &str, role: &str) -> String {
    format!("{requester} {role}")
}

/// The `state IN (...)` of the open states, word for word as in the partial
/// index `requests_open_by_requester`, so both databases use it.
const OPEN_STATES: &str = "state IN ('pending', 'approved', 'scheduled', 'active', 'revoke_failed')";

/// See [`ReadTx::decision_facts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionFacts {
    /// Why the requester is locked, if they are.
    pub lock_reason: Option<String>,
    pub role_version: Option<u64>,
    /// The requester's open request or grant of the role: id and version.
    pub open: Option<(String, u64)>,
    /// The `meta` value asked for.
    pub meta_value: Option<String>,
}

/// The head of the audit chain inside the current transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

/// What a write closure works with: the open transaction and the audit head.
pub struct WriteTx<'a> {
    pub(crate) conn: &'a mut dyn Conn,
    head: ChainHead,
    pub(crate) clock: &'a dyn Clock,
    /// Set by every write that changes an existing row of `tokens` or any
    /// of `locks`: what authentication reads (see `token_cache`).
    pub(crate) touched_tokens: bool,
}

/// What a read closure works with.
pub struct ReadTx<'a> {
    pub(crate) conn: &'a mut dyn Conn,
}

fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl<'a> WriteTx<'a> {
    pub(crate) fn new(conn: &'a mut dyn Conn, head: ChainHead, clock: &'a dyn Clock) -> Self {
        Self {
            conn,
            head,
            clock,
            touched_tokens: false,
        }
    }

    /// The audit chain's head as this transaction sees it: its newest
    /// event's sequence number and hash.
    pub fn chain_head(&self) -> (u64, &str) {
        (self.head.seq, &self.head.hash)
    }

    pub(crate) fn head(&self) -> &ChainHead {
        &self.head
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Reads inside this transaction (they see its own writes).
    pub fn read(&mut self) -> ReadTx<'_> {
        ReadTx { conn: &mut *self.conn }
    }

    /// Appends an audit event after the current head and returns it.
    pub fn append_audit(&mut self, draft: AuditDraft) -> Result<AuditEvent, StoreError> {
        self.append_audit_with(|_, _, _| draft)
    }

    /// Appends the event `make(head seq, head hash, time)` returns, `time`
    /// being the one the event is sealed with: for a checkpoint, which
    /// signs the line before it and its own time.
    pub fn append_audit_with(
        &mut self,
        make: impl FnOnce(u64, &str, &str) -> AuditDraft,
    ) -> Result<AuditEvent, StoreError> {
        let time = format_time(self.clock.now());
        let draft = make(self.head.seq, &self.head.hash, &time);
        let event = self.seal(draft, time);
        self.conn.execute(
            &format!("{AUDIT_INSERT} {}", placeholders(1, 8)),
            &audit_params(&event)?,
        )?;
        Ok(event)
    }

    /// Appends events in this order after the current head, in one
    /// statement (one round trip for a batch of ends).
    pub fn append_audits(&mut self, drafts: Vec<AuditDraft>) -> Result<Vec<AuditEvent>, StoreError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let time = format_time(self.clock.now());
        let mut params = Vec::with_capacity(drafts.len() * 8);
        let events: Vec<AuditEvent> = drafts.into_iter().map(|draft| self.seal(draft, time.clone())).collect();
        for event in &events {
            params.extend(audit_params(event)?);
        }
        let sql = format!("{AUDIT_INSERT} {}", placeholders(events.len(), 8));
        self.conn.execute(&sql, &params)?;
        Ok(events)
    }

    /// Seals `draft` as the next event and moves the head to it.
    fn seal(&mut self, draft: AuditDraft, time: String) -> AuditEvent {
        let event = draft.seal(self.head.seq + 1, time, &self.head.hash);
        self.head = ChainHead {
            seq: event.seq,
            hash: event.hash.clone(),
        };
        event
    }

    /// Inserts or replaces a request record and releases any claim on it.
    /// Its version becomes the current audit head, so append the audit event
    /// first.
    ///
    /// An open record takes the `(requester, role)` key when it is created
    /// and keeps it until it closes; a second open record for the pair is
    /// refused with [`StoreError::Conflict`]. (Open records written before
    /// the key existed keep no key, so they never block each other.)
    pub fn put_request(&mut self, record: &RequestRecord) -> Result<u64, StoreError> {
        let version = self.head.seq;
        self.put_requests(&[(record, version)])?;
        Ok(version)
    }

    /// [`WriteTx::put_request`] for several records, each with its own
    /// version (that of its own audit event), in one statement. The ids
    /// must differ.
    pub fn put_requests(&mut self, records: &[(&RequestRecord, u64)]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut ids = std::collections::HashSet::new();
        let mut params = Vec::with_capacity(records.len() * 11);
        for (record, version) in records {
            if !ids.insert(record.id.as_str()) {
                return Err(StoreError::Conflict(format!(
                    "request {} is twice in one write",
                    record.id
                )));
            }
            params.extend(request_params(record, *version)?);
        }
        let upsert = format!(
            "{REQUEST_UPSERT_HEAD} {} {REQUEST_UPSERT_TAIL}",
            placeholders(records.len(), 11)
        );
        // Writing a record releases any claim on it.
        match self.conn.dialect() {
            // One round trip: the release rides along with the upsert, as
            // a statement on the ids the upsert returns.
            Dialect::Postgres => {
                let sql = format!(
                    "WITH written AS ({upsert} RETURNING id) \
                     DELETE FROM claims WHERE request_id IN (SELECT id FROM written)"
                );
                self.conn.execute(&sql, &params)?;
            }
            // In-process, a second statement costs no round trip; SQLite
            // has no DELETE in a CTE.
            Dialect::Sqlite => {
                let ids: Vec<SqlValue> = records.iter().map(|(record, _)| record.id.as_str().into()).collect();
                let sql = format!("DELETE FROM claims WHERE request_id IN {}", placeholders(1, ids.len()));
                self.conn.execute(&sql, &ids)?;
                self.conn.execute(&upsert, &params)?;
            }
        }
        Ok(())
    }

    /// Claims up to `limit` records whose deadline has passed and that nobody
    /// holds (or whose claim lapsed), for `lease`. Returns their ids. A claim
    /// ends when the record is next written; work that failed without
    /// writing waits for its lease to lapse, even for the same server, so a
    /// persistent failure cannot spin.
    ///
    /// A claim is a row of `claims`, not a change to the request's row: on
    /// PostgreSQL rewriting the request would write a new version of its
    /// whole record and an entry in most of its indexes, twice per grant
    /// ended (once to claim, once to end). Claims run in the writer's
    /// batches, under the `audit_head` lock, so replicas take turns; `FOR
    /// UPDATE SKIP LOCKED` and the conflict clause (which sees the newest
    /// committed claim whatever the statement's snapshot) would keep a
    /// record to one claimer even without that.
    pub fn claim_due(&mut self, owner: &str, lease: Duration, limit: u32) -> Result<Vec<String>, StoreError> {
        let now = self.clock.now();
        let sql = format!(
            "INSERT INTO claims (request_id, claimed_by, claim_until)
             SELECT id, $1, $2 FROM requests
              WHERE next_deadline IS NOT NULL AND next_deadline <= $3
                AND NOT EXISTS (SELECT 1 FROM claims AS held
                                 WHERE held.request_id = requests.id AND held.claim_until >= $3)
              ORDER BY next_deadline LIMIT $4{}
             {CLAIM_CONFLICT} WHERE claims.claim_until < $3
             RETURNING request_id",
            self.conn.dialect().for_update(true)
        );
        let rows = self.conn.query(
            &sql,
            sql_params![owner, format_time(now + lease), format_time(now), u64::from(limit)],
        )?;
        rows.iter().map(|row| row.text(0)).collect()
    }

    /// Claims one record for `owner` (e.g. an approved request this server
    /// is about to activate), so no other server takes it unless the lease
    /// lapses. A record that does not exist is not claimed.
    pub fn claim(&mut self, id: &str, owner: &str, lease: Duration) -> Result<(), StoreError> {
        let until = format_time(self.clock.now() + lease);
        self.conn.execute(
            &format!(
                "INSERT INTO claims (request_id, claimed_by, claim_until)
                 SELECT id, $1, $2 FROM requests WHERE id = $3 {CLAIM_CONFLICT}"
            ),
            sql_params![owner, until, id],
        )?;
        Ok(())
    }

    /// Drops every claim. Only for a store no other server uses (SQLite):
    /// claims left by a crashed predecessor are certainly dead.
    pub fn release_all_claims(&mut self) -> Result<u64, StoreError> {
        self.conn.execute(requests_sql::RELEASE_ALL_CLAIMS, &[])
    }

    /// Adds a token. It leaves the token cache as it is: the cache never
    /// holds a hash it did not find, and a hash is unique.
    pub fn insert_token(&mut self, token: &TokenRow) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO tokens (id, secret_hash, principal, groups_json, created_at, created_by, expires_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            sql_params![
                &token.id,
                &token.secret_hash,
                &token.principal,
                json_text(&token.groups)?,
                format_time(token.created_at),
                &token.created_by,
                token.expires_at.map(format_time),
                token.revoked_at.map(format_time)
            ],
        )?;
        Ok(())
    }

    /// Moves an unrevoked token's expiry (the token of a grant that was
    /// extended); false when it does not exist or is revoked.
    pub fn set_token_expiry(&mut self, id: &str, expires_at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.touched_tokens = true;
        let changed = self.conn.execute(
            "UPDATE tokens SET expires_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            sql_params![format_time(expires_at), id],
        )?;
        Ok(changed == 1)
    }

    /// Marks a token revoked; false when it does not exist or already was.
    pub fn revoke_token(&mut self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.touched_tokens = true;
        let changed = self.conn.execute(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            sql_params![format_time(at), id],
        )?;
        Ok(changed == 1)
    }

    /// Inserts or replaces a configuration document; its version becomes
    /// the current audit head (append the audit event first).
    pub fn put_config(&mut self, kind: ConfigKind, row: &ConfigRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (name, reference, document, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET reference = excluded.reference, document = excluded.document,
                 updated_at = excluded.updated_at, version = excluded.version",
            kind.table()
        );
        self.conn.execute(
            &sql,
            sql_params![
                &row.name,
                &row.reference,
                json_text(&row.document)?,
                format_time(row.created_at),
                format_time(row.updated_at),
                self.head.seq
            ],
        )?;
        Ok(())
    }

    /// Stores one sealed secret of a target.
    pub fn put_target_secret(&mut self, secret: &SecretRow) -> Result<(), StoreError> {
        self.put_secret(SecretOwner::Target, secret)
    }

    /// Stores one sealed secret of a target or notifier.
    pub fn put_secret(&mut self, owner: SecretOwner, secret: &SecretRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (target, name, sealed, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (target, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            owner.table()
        );
        self.conn.execute(
            &sql,
            sql_params![
                &secret.target,
                &secret.name,
                &secret.sealed,
                format_time(secret.updated_at)
            ],
        )?;
        Ok(())
    }

    pub fn delete_target_secret(&mut self, target: &str, name: &str) -> Result<bool, StoreError> {
        self.delete_secret(SecretOwner::Target, target, name)
    }

    pub fn delete_secret(&mut self, owner: SecretOwner, target: &str, name: &str) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM {} WHERE target = $1 AND name = $2", owner.table());
        Ok(self.conn.execute(&sql, sql_params![target, name])? == 1)
    }

    /// Lists a grant as revoked on its target (again: no change), and drops
    /// the target's entries whose grants have expired by `now`.
    pub fn put_revocation(&mut self, row: &RevocationRow, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO revocations (target, grant_id, expires_at, metadata) VALUES ($1, $2, $3, $4)
             ON CONFLICT (target, grant_id) DO NOTHING",
            sql_params![
                &row.target,
                &row.grant_id,
                format_time(row.expires_at),
                row.metadata.to_string()
            ],
        )?;
        self.conn.execute(
            "DELETE FROM revocations WHERE target = $1 AND expires_at <= $2",
            sql_params![&row.target, format_time(now)],
        )?;
        Ok(())
    }

    pub fn delete_revocations(&mut self, target: &str) -> Result<u64, StoreError> {
        self.conn
            .execute("DELETE FROM revocations WHERE target = $1", sql_params![target])
    }

    pub fn delete_target_secrets(&mut self, target: &str) -> Result<u64, StoreError> {
        self.delete_secrets(SecretOwner::Target, target)
    }

    pub fn delete_secrets(&mut self, owner: SecretOwner, target: &str) -> Result<u64, StoreError> {
        let sql = format!("DELETE FROM {} WHERE target = $1", owner.table());
        self.conn.execute(&sql, sql_params![target])
    }

    pub fn put_lock(&mut self, lock: &LockRow) -> Result<(), StoreError> {
        self.touched_tokens = true;
        self.conn.execute(
            "INSERT INTO locks (principal, reason, locked_by, locked_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (principal) DO UPDATE SET reason = excluded.reason, locked_by = excluded.locked_by,
                 locked_at = excluded.locked_at",
            sql_params![
                &lock.principal,
                &lock.reason,
                &lock.locked_by,
                format_time(lock.locked_at)
            ],
        )?;
        Ok(())
    }

    /// Removes a lock; false when the principal was not locked.
    pub fn delete_lock(&mut self, principal: &str) -> Result<bool, StoreError> {
        self.touched_tokens = true;
        Ok(self
            .conn
            .execute("DELETE FROM locks WHERE principal = $1", sql_params![principal])?
            == 1)
    }

    /// Revokes every live token of `principal`; returns their ids.
    pub fn revoke_tokens_of(&mut self, principal: &str, at: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        self.touched_tokens = true;
        let rows = self.conn.query(
            "UPDATE tokens SET revoked_at = $1 WHERE principal = $2 AND revoked_at IS NULL RETURNING id",
            sql_params![format_time(at), principal],
        )?;
        let mut ids = rows.iter().map(|row| row.text(0)).collect::<Result<Vec<_>, _>>()?;
        ids.sort();
        Ok(ids)
    }

    pub fn delete_config(&mut self, kind: ConfigKind, name: &str) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM {} WHERE name = $1", kind.table());
        Ok(self.conn.execute(&sql, sql_params![name])? == 1)
    }

    /// Sets `key` to `value`, replacing what was there.
    pub fn put_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            sql_params![key, value],
        )?;
        Ok(())
    }

    /// Sets `key` unless it is already set; returns the value now stored.
    /// Concurrent replicas racing to initialise a value all end up with the
    /// first one.
    pub fn init_meta(&mut self, key: &str, value: &str) -> Result<String, StoreError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            sql_params![key, value],
        )?;
        self.read()
            .meta(key)?
            .ok_or_else(|| StoreError::Corrupt(format!("meta {key} vanished")))
    }
}

/// The `review` column: 0 no review, 1 open, 2 acknowledged.
/// The start of every audit insert; `VALUES` rows of 8 follow.
const AUDIT_INSERT: &str = "INSERT INTO audit (seq, time, actor, kind, request_id, data, prev_hash, hash) VALUES";

fn audit_params(event: &AuditEvent) -> Result<[SqlValue; 8], StoreError> {
    Ok([
        event.seq.into(),
        event.time.as_str().into(),
        event.actor.as_str().into(),
        event.kind.as_str().into(),
        event.request_id.as_deref().into(),
        SqlValue::Bytes(packed_json::pack(&event.data)?),
        SqlValue::Bytes(hash_bytes(&event.prev_hash)?),
        SqlValue::Bytes(hash_bytes(&event.hash)?),
    ])
}

/// An audit hash as stored: its 32 bytes, half its hex. The store computes
/// every hash it writes, so one that is not 64 hex digits is a bug.
fn hash_bytes(hash: &str) -> Result<Vec<u8>, StoreError> {
    match hex::decode(hash) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(StoreError::Corrupt(format!(
            "an audit hash is not 64 hex digits: {hash:?}"
        ))),
    }
}

/// How a claim replaces the one already on its record.
const CLAIM_CONFLICT: &str =
    "ON CONFLICT (request_id) DO UPDATE SET claimed_by = excluded.claimed_by, claim_until = excluded.claim_until";

/// A request upsert is this, `VALUES` rows of 11 parameters, and
/// [`REQUEST_UPSERT_TAIL`].
const REQUEST_UPSERT_HEAD: &str = "INSERT INTO requests (id, state, requester, role, activated, next_deadline,
    created_at, version, record, review, open_key) VALUES";
const REQUEST_UPSERT_TAIL: &str = "ON CONFLICT (id) DO UPDATE SET state = excluded.state,
    activated = excluded.activated, next_deadline = excluded.next_deadline,
    version = excluded.version, record = excluded.record, review = excluded.review,
    open_key = CASE WHEN excluded.open_key IS NULL THEN NULL ELSE requests.open_key END";

/// One record's row of a request upsert.
fn request_params(record: &RequestRecord, version: u64) -> Result<[SqlValue; 11], StoreError> {
    let key = record.is_open().then(|| open_key(&record.requester.name, &record.role));
    Ok([
        record.id.as_str().into(),
        record.state.as_str().into(),
        record.requester.name.as_str().into(),
        record.role.as_str().into(),
        record.activated_at.is_some().into(),
        record.next_deadline().map(format_time).into(),
        format_time(record.created_at).into(),
        version.into(),
        SqlValue::Bytes(packed_json::pack(record)?),
        review_code(record).into(),
        key.into(),
    ])
}

/// `rows` rows of `columns` numbered parameters: `($1, $2), ($3, $4)`.
fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let numbers: Vec<String> = (1..=columns).map(|c| format!("${}", row * columns + c)).collect();
            format!("({})", numbers.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn review_code(record: &RequestRecord) -> i64 {
    match &record.review {
        None => 0,
        Some(review) if review.acknowledged.is_none() => 1,
        Some(_) => 2,
    }
}

const TOKEN_COLUMNS: &str = "id, secret_hash, principal, groups_json, created_at, created_by, expires_at, revoked_at";
pub(crate) const CONFIG_COLUMNS: &str = "name, reference, document, created_at, updated_at, version";
const LOCK_COLUMNS: &str = "principal, reason, locked_by, locked_at";
const AUDIT_COLUMNS: &str = "seq, time, actor, kind, request_id, data, prev_hash, hash";

fn token_from_row(row: &Row) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: row.text(0)?,
        secret_hash: row.text(1)?,
        principal: row.text(2)?,
        groups: row.json(3)?,
        created_at: row.time(4)?,
        created_by: row.text(5)?,
        expires_at: row.opt_time(6)?,
        revoked_at: row.opt_time(7)?,
    })
}

fn config_from_row(row: &Row) -> Result<ConfigRow, StoreError> {
    config_at(row, 0)
}

/// The [`CONFIG_COLUMNS`] of `row` from column `start` on.
pub(crate) fn config_at(row: &Row, start: usize) -> Result<ConfigRow, StoreError> {
    Ok(ConfigRow {
        name: row.text(start)?,
        reference: row.text(start + 1)?,
        document: row.json(start + 2)?,
        created_at: row.time(start + 3)?,
        updated_at: row.time(start + 4)?,
        version: row.int(start + 5)? as u64,
    })
}

fn lock_from_row(row: &Row) -> Result<LockRow, StoreError> {
    Ok(LockRow {
        principal: row.text(0)?,
        reason: row.text(1)?,
        locked_by: row.text(2)?,
        locked_at: row.time(3)?,
    })
}

fn secret_from_row(row: &Row) -> Result<SecretRow, StoreError> {
    secret_at(row, 0)
}

/// A secret's four columns of `row` from column `start` on.
pub(crate) fn secret_at(row: &Row, start: usize) -> Result<SecretRow, StoreError> {
    Ok(SecretRow {
        target: row.text(start)?,
        name: row.text(start + 1)?,
        sealed: row.text(start + 2)?,
        updated_at: row.time(start + 3)?,
    })
}

fn request_from_row(row: &Row) -> Result<(RequestRecord, u64), StoreError> {
    request_at(row, 0)
}

/// A request's `record, version` columns of `row` from column `start` on.
pub(crate) fn request_at(row: &Row, start: usize) -> Result<(RequestRecord, u64), StoreError> {
    Ok((row.json(start)?, row.int(start + 1)? as u64))
}

fn audit_from_row(row: &Row) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        seq: row.int(0)? as u64,
        time: row.text(1)?,
        actor: row.text(2)?,
        kind: row.text(3)?,
        request_id: row.opt_text(4)?,
        data: row.json(5)?,
        prev_hash: row.hash(6)?,
        hash: row.hash(7)?,
    })
}

pub(crate) fn all<T>(rows: Vec<Row>, convert: fn(&Row) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(convert).collect()
}

impl<'a> ReadTx<'a> {
    pub(crate) fn new(conn: &'a mut dyn Conn) -> Self {
        Self { conn }
    }

    fn one<T>(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        convert: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.conn.query_one(sql, params)?.as_ref().map(convert).transpose()
    }

    pub fn token_by_hash(&mut self, secret_hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = $1");
        self.one(&sql, sql_params![secret_hash], token_from_row)
    }

    /// The token with this hash and whether its principal is locked, in one
    /// round trip. Authentication asks [`crate::Store::token_for_auth`],
    /// which may answer from memory.
    pub fn token_for_auth(&mut self, secret_hash: &str) -> Result<Option<TokenForAuth>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS}, (SELECT COUNT(*) FROM locks WHERE locks.principal = tokens.principal)
             FROM tokens WHERE secret_hash = $1"
        );
        let row = self.conn.query_one(&sql, sql_params![secret_hash])?;
        row.map(|row| Ok((token_from_row(&row)?, row.int(8)? > 0))).transpose()
    }

    pub fn tokens(&mut self) -> Result<Vec<TokenRow>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id");
        all(self.conn.query(&sql, &[])?, token_from_row)
    }

    pub fn count_tokens(&mut self) -> Result<u64, StoreError> {
        let row = self.conn.query_one("SELECT COUNT(*) FROM tokens", &[])?;
        Ok(row.map(|r| r.int(0)).transpose()?.unwrap_or(0) as u64)
    }

    pub fn config(&mut self, kind: ConfigKind, name: &str) -> Result<Option<ConfigRow>, StoreError> {
        let sql = format!("SELECT {CONFIG_COLUMNS} FROM {} WHERE name = $1", kind.table());
        self.one(&sql, sql_params![name], config_from_row)
    }

    pub fn configs(&mut self, kind: ConfigKind) -> Result<Vec<ConfigRow>, StoreError> {
        let sql = format!("SELECT {CONFIG_COLUMNS} FROM {} ORDER BY name", kind.table());
        all(self.conn.query(&sql, &[])?, config_from_row)
    }

    /// Names of roles that point at `target`.
    pub fn roles_of_target(&mut self, target: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT name FROM roles WHERE reference = $1 ORDER BY name",
            sql_params![target],
        )?;
        rows.iter().map(|row| row.text(0)).collect()
    }

    pub fn request(&mut self, id: &str) -> Result<Option<(RequestRecord, u64)>, StoreError> {
        self.one(
            "SELECT record, version FROM requests WHERE id = $1",
            sql_params![id],
            request_from_row,
        )
    }

    /// A request's version alone: whether a record read earlier is still
    /// current, without reading (and parsing) it again.
    pub fn request_version(&mut self, id: &str) -> Result<Option<u64>, StoreError> {
        let row = self
            .conn
            .query_one("SELECT version FROM requests WHERE id = $1", sql_params![id])?;
        row.map(|row| row.int(0).map(|version| version as u64)).transpose()
    }

    /// The versions of those of `ids` that exist, in one statement.
    pub fn request_versions(&mut self, ids: &[String]) -> Result<HashMap<String, u64>, StoreError> {
        let rows = self.by_ids("id, version", ids)?;
        rows.iter().map(|row| Ok((row.text(0)?, row.int(1)? as u64))).collect()
    }

    /// Those of `ids` that exist, by id, in one statement.
    pub fn requests_by_id(&mut self, ids: &[String]) -> Result<HashMap<String, (RequestRecord, u64)>, StoreError> {
        let rows = self.by_ids("record, version", ids)?;
        rows.iter()
            .map(|row| {
                let (record, version) = request_from_row(row)?;
                Ok((record.id.clone(), (record, version)))
            })
            .collect()
    }

    /// `columns` of the requests with these ids.
    fn by_ids(&mut self, columns: &str, ids: &[String]) -> Result<Vec<Row>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {columns} FROM requests WHERE id IN {}",
            placeholders(1, ids.len())
        );
        let params: Vec<SqlValue> = ids.iter().map(SqlValue::from).collect();
        self.conn.query(&sql, &params)
    }

    /// Newest first.
    pub fn requests(&mut self, filter: &RequestFilter) -> Result<Vec<(RequestRecord, u64)>, StoreError> {
        let (sql, params) = requests_sql::list(filter);
        all(self.conn.query(&sql, &params)?, request_from_row)
    }

    /// What a decision about `requester`'s request for `role` rests on,
    /// in one statement (one round trip inside the writer's transaction).
    pub fn decision_facts(&mut self, requester: &str, role: &str, meta_key: &str) -> Result<DecisionFacts, StoreError> {
        let row = self
            .conn
            .query_one(
                "SELECT (SELECT reason FROM locks WHERE principal = $1),
                        (SELECT version FROM roles WHERE name = $2),
                        (SELECT id FROM requests WHERE open_key = $3),
                        (SELECT version FROM requests WHERE open_key = $3),
                        (SELECT value FROM meta WHERE key = $4)",
                sql_params![requester, role, open_key(requester, role), meta_key],
            )?
            .ok_or_else(|| StoreError::Corrupt("a query of scalar subqueries returned no row".into()))?;
        let open = match (row.opt_text(2)?, row.opt_int(3)?) {
            (Some(id), Some(version)) => Some((id, version as u64)),
            _ => None,
        };
        Ok(DecisionFacts {
            lock_reason: row.opt_text(0)?,
            role_version: row.opt_int(1)?.map(|version| version as u64),
            open,
            meta_value: row.opt_text(4)?,
        })
    }

    /// The requester's open request or grant of `role`, if any: the record
    /// holding the `(requester, role)` key.
    pub fn open_request(&mut self, requester: &str, role: &str) -> Result<Option<(RequestRecord, u64)>, StoreError> {
        self.one(
            "SELECT record, version FROM requests WHERE open_key = $1",
            sql_params![open_key(requester, role)],
            request_from_row,
        )
    }

    /// Grants that hold access past their deadline at `at`: what start-up
    /// must see ended before the API serves.
    pub fn count_overdue_grants(&mut self, at: DateTime<Utc>) -> Result<u64, StoreError> {
        let sql = requests_sql::count_overdue(self.conn.dialect());
        let row = self.conn.query_one(&sql, sql_params![format_time(at)])?;
        Ok(row.map(|row| row.int(0)).transpose()?.unwrap_or(0) as u64)
    }

    /// How many of the requester's grants hold access or are about to
    /// (approved, active, revoke_failed): `active_grants` for policies.
    pub fn count_grants(&mut self, requester: &str) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) FROM requests WHERE requester = $1 AND {OPEN_STATES}
               AND state IN ('approved', 'active', 'revoke_failed')"
        );
        let row = self.conn.query_one(&sql, sql_params![requester])?;
        Ok(row.map(|r| r.int(0)).transpose()?.unwrap_or(0) as u64)
    }

    /// Ids of every grant holding access on `target`.
    pub fn grants_holding_on(&mut self, target: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.conn.query(
            "SELECT id, record FROM requests WHERE state IN ('active', 'revoke_failed') ORDER BY created_at",
            &[],
        )?;
        let mut ids = Vec::new();
        for row in &rows {
            let record: RequestRecord = row.json(1)?;
            if record.target == target {
                ids.push(row.text(0)?);
            }
        }
        Ok(ids)
    }

    /// The requester's open requests and grants (every role).
    pub fn open_requests_of(&mut self, requester: &str) -> Result<Vec<(RequestRecord, u64)>, StoreError> {
        let sql =
            format!("SELECT record, version FROM requests WHERE requester = $1 AND {OPEN_STATES} ORDER BY created_at");
        all(self.conn.query(&sql, sql_params![requester])?, request_from_row)
    }

    /// The target's revoked grants that have not yet expired at `now`,
    /// oldest expiry first.
    pub fn revocations(&mut self, target: &str, now: DateTime<Utc>) -> Result<Vec<RevocationRow>, StoreError> {
        let rows = self.conn.query(
            "SELECT target, grant_id, expires_at, metadata FROM revocations
              WHERE target = $1 AND expires_at > $2 ORDER BY expires_at, grant_id",
            sql_params![target, format_time(now)],
        )?;
        all(rows, |row| {
            Ok(RevocationRow {
                target: row.text(0)?,
                grant_id: row.text(1)?,
                expires_at: row.time(2)?,
                metadata: row.json(3)?,
            })
        })
    }

    pub fn target_secrets(&mut self, target: &str) -> Result<Vec<SecretRow>, StoreError> {
        self.secrets(SecretOwner::Target, target)
    }

    pub fn secrets(&mut self, owner: SecretOwner, target: &str) -> Result<Vec<SecretRow>, StoreError> {
        let sql = format!(
            "SELECT target, name, sealed, updated_at FROM {} WHERE target = $1 ORDER BY name",
            owner.table()
        );
        all(self.conn.query(&sql, sql_params![target])?, secret_from_row)
    }

    pub fn lock(&mut self, principal: &str) -> Result<Option<LockRow>, StoreError> {
        let sql = format!("SELECT {LOCK_COLUMNS} FROM locks WHERE principal = $1");
        self.one(&sql, sql_params![principal], lock_from_row)
    }

    pub fn locks(&mut self) -> Result<Vec<LockRow>, StoreError> {
        let sql = format!("SELECT {LOCK_COLUMNS} FROM locks ORDER BY principal");
        all(self.conn.query(&sql, &[])?, lock_from_row)
    }

    /// The deadlines after `after` (all earlier ones when `None`, however
    /// overdue) up to `until`: what the scheduler's timer holds.
    pub fn deadlines(
        &mut self,
        after: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        let rows = match after {
            Some(after) => self.conn.query(
                "SELECT next_deadline, id FROM requests WHERE next_deadline IS NOT NULL
                   AND next_deadline > $1 AND next_deadline <= $2",
                sql_params![format_time(after), format_time(until)],
            )?,
            None => self.conn.query(
                "SELECT next_deadline, id FROM requests WHERE next_deadline IS NOT NULL AND next_deadline <= $1",
                sql_params![format_time(until)],
            )?,
        };
        rows.iter().map(|row| Ok((row.time(0)?, row.text(1)?))).collect()
    }

    /// Events with `seq > since`, oldest first, optionally for one request.
    pub fn audit(&mut self, since: u64, request_id: Option<&str>, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = match request_id {
            Some(id) => self.conn.query(
                &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE request_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"),
                sql_params![id, since, u64::from(limit)],
            )?,
            None => self.conn.query(
                &format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"),
                sql_params![since, u64::from(limit)],
            )?,
        };
        all(rows, audit_from_row)
    }

    /// The newest checkpoint at or before `seq`, if any.
    pub fn checkpoint_at_or_before(&mut self, seq: u64) -> Result<Option<u64>, StoreError> {
        let row = self.conn.query_one(
            "SELECT MAX(seq) FROM audit WHERE kind = 'audit.checkpoint' AND seq <= $1",
            sql_params![seq],
        )?;
        match row {
            Some(row) => match row.0.first() {
                Some(SqlValue::Int(seq)) => Ok(Some(*seq as u64)),
                _ => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// The newest audit sequence number committed (by any replica).
    pub fn audit_head_seq(&mut self) -> Result<u64, StoreError> {
        let row = self.conn.query_one("SELECT seq FROM audit_head WHERE id = 1", &[])?;
        Ok(row.map(|r| r.int(0)).transpose()?.unwrap_or(0) as u64)
    }

    pub fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .conn
            .query_one("SELECT value FROM meta WHERE key = $1", sql_params![key])?;
        row.map(|r| r.text(0)).transpose()
    }
}
