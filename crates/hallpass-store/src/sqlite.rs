//! The SQLite implementation: one writer thread with group commit, a pool of
//! read-only connections.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use chrono::{DateTime, Utc};
use hallpass_core::audit::{AuditDraft, AuditEvent, GENESIS_HASH};
use hallpass_core::request::RequestRecord;
use hallpass_core::{Clock, RequestState};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Transaction, params};
use tokio::sync::{oneshot, watch};

use crate::{ConfigKind, ConfigRow, RequestFilter, StoreError, TokenRow, format_time, parse_time, schema};

/// Most closures committed in one transaction.
const MAX_BATCH: usize = 512;
const READERS: usize = 4;

/// Hands a job's result to its caller once the batch's fate is known: the
/// argument is the commit error, if the commit failed.
type Deliver = Box<dyn FnOnce(Option<&StoreError>) + Send>;

struct Pending {
    ok: bool,
    deliver: Deliver,
}

type Job = Box<dyn FnOnce(&mut WriteTx<'_>) -> Pending + Send>;

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Sequence number of the newest committed audit event. Every state change
    /// writes one, so this doubles as a change counter for long-polls.
    head_seq: watch::Receiver<u64>,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
    path: PathBuf,
}

/// The head of the audit chain as the writer sees it.
#[derive(Debug, Clone)]
struct ChainHead {
    seq: u64,
    hash: String,
}

/// What a write closure works with: the open transaction and the audit head.
pub struct WriteTx<'a> {
    tx: &'a Transaction<'a>,
    head: ChainHead,
    clock: &'a dyn Clock,
}

/// What a read closure works with.
pub struct ReadTx<'a> {
    conn: &'a Connection,
}

fn io_error(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: every commit is fsynced before we acknowledge it.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) `hallpass.db` in `data_dir`, readable by the
    /// owner only, and applies migrations.
    pub fn open(data_dir: &Path, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        fs::create_dir_all(data_dir).map_err(|e| io_error(data_dir, e))?;
        fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700)).map_err(|e| io_error(data_dir, e))?;
        let path = data_dir.join("hallpass.db");
        // Create the file ourselves so it is 0600 from the first byte; SQLite
        // gives the -wal and -shm files the same mode.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        let mut writer = Connection::open(&path)?;
        configure(&writer)?;
        schema::migrate(&mut writer)?;
        let head = load_head(&writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            readers.push(Mutex::new(conn));
        }
        let (head_tx, head_rx) = watch::channel(head.seq);
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let handle = thread::Builder::new()
            .name("hallpass-store-writer".into())
            .spawn(move || writer_loop(writer, head, jobs_rx, head_tx, clock))
            .map_err(|e| io_error(&path, e))?;
        Ok(Store {
            inner: Arc::new(Inner {
                jobs: Mutex::new(Some(jobs_tx)),
                readers,
                next_reader: AtomicUsize::new(0),
                head_seq: head_rx,
                writer: Mutex::new(Some(handle)),
                path,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in the writer's transaction. The result is returned only after
    /// the transaction is durably committed; if `f` fails, its changes (and
    /// any audit events it appended) are rolled back and nothing else is.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |wtx| {
            let result = f(wtx);
            Pending {
                ok: result.is_ok(),
                deliver: Box::new(move |commit_error| {
                    let outcome = match (commit_error, result) {
                        (Some(error), Ok(_)) => Err(E::from(StoreError::Corrupt(format!("commit failed: {error}")))),
                        (_, result) => result,
                    };
                    let _ = reply_tx.send(outcome);
                }),
            }
        });
        {
            let guard = self.inner.jobs.lock().map_err(|_| E::from(StoreError::Closed))?;
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender.send(job).map_err(|_| StoreError::Closed)?;
        }
        reply_rx.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// Runs `f` on a read-only connection, off the async runtime.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&ReadTx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.with_reader(f))
            .await
            .map_err(|_| E::from(StoreError::Closed))?
    }

    /// Sequence number of the newest committed audit event; changes whenever
    /// any state changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.head_seq.clone()
    }

    /// Stops the writer after it has committed everything already queued.
    pub fn close(&self) {
        if let Ok(mut jobs) = self.inner.jobs.lock() {
            jobs.take();
        }
        if let Ok(mut writer) = self.inner.writer.lock()
            && let Some(handle) = writer.take()
        {
            let _ = handle.join();
        }
    }
}

impl Inner {
    fn with_reader<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&ReadTx<'_>) -> Result<T, E>,
        E: From<StoreError>,
    {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        // Prefer an idle connection; otherwise wait for the one we landed on.
        for offset in 0..self.readers.len() {
            if let Ok(conn) = self.readers[(start + offset) % self.readers.len()].try_lock() {
                return f(&ReadTx { conn: &conn });
            }
        }
        let conn = self.readers[start % self.readers.len()]
            .lock()
            .map_err(|_| E::from(StoreError::Closed))?;
        f(&ReadTx { conn: &conn })
    }
}

fn load_head(conn: &Connection) -> Result<ChainHead, StoreError> {
    let head = conn
        .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |row| {
            Ok(ChainHead {
                seq: row.get::<_, i64>(0)? as u64,
                hash: row.get(1)?,
            })
        })
        .optional()?;
    Ok(head.unwrap_or(ChainHead {
        seq: 0,
        hash: GENESIS_HASH.to_string(),
    }))
}

fn writer_loop(
    mut conn: Connection,
    mut head: ChainHead,
    jobs: mpsc::Receiver<Job>,
    head_tx: watch::Sender<u64>,
    clock: Arc<dyn Clock>,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (pendings, committed) = run_batch(&mut conn, &head, batch, clock.as_ref());
        let error = match committed {
            Ok(new_head) => {
                head = new_head;
                head_tx.send_replace(head.seq);
                None
            }
            Err(error) => {
                tracing::error!(%error, "store commit failed; the batch was rolled back");
                // Re-read the head: the rolled-back batch may have moved ours.
                if let Ok(reloaded) = load_head(&conn) {
                    head = reloaded;
                }
                Some(error)
            }
        };
        for pending in pendings {
            (pending.deliver)(error.as_ref());
        }
    }
}

fn run_batch(
    conn: &mut Connection,
    head: &ChainHead,
    batch: Vec<Job>,
    clock: &dyn Clock,
) -> (Vec<Pending>, Result<ChainHead, StoreError>) {
    let mut pendings = Vec::with_capacity(batch.len());
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            for job in batch {
                pendings.push(Pending {
                    ok: false,
                    deliver: failed_job(job),
                });
            }
            return (pendings, Err(error.into()));
        }
    };
    let mut current = head.clone();
    for job in batch {
        let before = current.clone();
        if let Err(error) = tx.execute_batch("SAVEPOINT job") {
            pendings.push(Pending {
                ok: false,
                deliver: failed_job(job),
            });
            tracing::error!(%error, "cannot open savepoint");
            continue;
        }
        let mut wtx = WriteTx {
            tx: &tx,
            head: current.clone(),
            clock,
        };
        let pending = job(&mut wtx);
        if pending.ok {
            current = wtx.head;
            if let Err(error) = tx.execute_batch("RELEASE job") {
                tracing::error!(%error, "cannot release savepoint");
            }
        } else {
            current = before;
            if let Err(error) = tx.execute_batch("ROLLBACK TO job; RELEASE job") {
                tracing::error!(%error, "cannot roll back savepoint");
            }
        }
        pendings.push(pending);
    }
    let committed = tx.commit().map(|()| current).map_err(StoreError::from);
    (pendings, committed)
}

/// A job that never ran because the transaction could not start: run it
/// against nothing so its caller hears about the failure.
fn failed_job(job: Job) -> Deliver {
    drop(job);
    Box::new(|_| {})
}

fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn opt_time(text: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.as_deref().map(parse_time).transpose()
}

impl WriteTx<'_> {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Appends an audit event after the current head and returns it.
    pub fn append_audit(&mut self, draft: AuditDraft) -> Result<AuditEvent, StoreError> {
        let event = draft.seal(self.head.seq + 1, format_time(self.clock.now()), &self.head.hash);
        self.tx.execute(
            "INSERT INTO audit (seq, time, actor, kind, request_id, data, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                event.seq as i64,
                event.time,
                event.actor,
                event.kind,
                event.request_id,
                json_text(&event.data)?,
                event.prev_hash,
                event.hash
            ],
        )?;
        self.head = ChainHead {
            seq: event.seq,
            hash: event.hash.clone(),
        };
        Ok(event)
    }

    /// The sequence number the next audit event will get.
    pub fn head_seq(&self) -> u64 {
        self.head.seq
    }

    pub fn read(&self) -> ReadTx<'_> {
        ReadTx { conn: self.tx }
    }

    /// Inserts or replaces a request record. Its version becomes the current
    /// audit head, so append the audit event first.
    pub fn put_request(&mut self, record: &RequestRecord) -> Result<u64, StoreError> {
        let version = self.head.seq;
        self.tx.execute(
            "INSERT INTO requests (id, state, requester, role, activated, next_deadline, created_at, version, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, activated = excluded.activated,
                 next_deadline = excluded.next_deadline, version = excluded.version, record = excluded.record",
            params![
                record.id,
                record.state.as_str(),
                record.requester.name,
                record.role,
                record.activated_at.is_some(),
                record.next_deadline().map(format_time),
                format_time(record.created_at),
                version as i64,
                json_text(record)?
            ],
        )?;
        Ok(version)
    }

    pub fn insert_token(&mut self, token: &TokenRow) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO tokens (id, secret_hash, principal, groups_json, created_at, created_by, expires_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                token.id,
                token.secret_hash,
                token.principal,
                json_text(&token.groups)?,
                format_time(token.created_at),
                token.created_by,
                token.expires_at.map(format_time),
                token.revoked_at.map(format_time)
            ],
        )?;
        Ok(())
    }

    /// Marks a token revoked; false when it does not exist or already was.
    pub fn revoke_token(&mut self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let changed = self.tx.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, format_time(at)],
        )?;
        Ok(changed == 1)
    }

    pub fn put_config(&mut self, kind: ConfigKind, row: &ConfigRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (name, reference, document, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET reference = excluded.reference, document = excluded.document,
                 updated_at = excluded.updated_at",
            kind.table()
        );
        self.tx.execute(
            &sql,
            params![
                row.name,
                row.reference,
                json_text(&row.document)?,
                format_time(row.created_at),
                format_time(row.updated_at)
            ],
        )?;
        Ok(())
    }

    pub fn delete_config(&mut self, kind: ConfigKind, name: &str) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM {} WHERE name = ?1", kind.table());
        Ok(self.tx.execute(&sql, params![name])? == 1)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}

/// Decoding errors surface as rusqlite conversion errors so row mappers can
/// build typed values in one step.
fn conversion(index: usize, error: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(error))
}

fn time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(index)?;
    parse_time(&text).map_err(|e| conversion(index, e))
}

fn opt_time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.get(index)?;
    opt_time(text).map_err(|e| conversion(index, e))
}

fn json_at<T: serde::de::DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| conversion(index, e))
}

const TOKEN_COLUMNS: &str = "id, secret_hash, principal, groups_json, created_at, created_by, expires_at, revoked_at";

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: row.get(0)?,
        secret_hash: row.get(1)?,
        principal: row.get(2)?,
        groups: json_at(row, 3)?,
        created_at: time_at(row, 4)?,
        created_by: row.get(5)?,
        expires_at: opt_time_at(row, 6)?,
        revoked_at: opt_time_at(row, 7)?,
    })
}

const CONFIG_COLUMNS: &str = "name, reference, document, created_at, updated_at";

fn config_from_row(row: &Row<'_>) -> rusqlite::Result<ConfigRow> {
    Ok(ConfigRow {
        name: row.get(0)?,
        reference: row.get(1)?,
        document: json_at(row, 2)?,
        created_at: time_at(row, 3)?,
        updated_at: time_at(row, 4)?,
    })
}

fn request_from_row(row: &Row<'_>) -> rusqlite::Result<(RequestRecord, u64)> {
    Ok((json_at(row, 0)?, row.get::<_, i64>(1)? as u64))
}

const AUDIT_COLUMNS: &str = "seq, time, actor, kind, request_id, data, prev_hash, hash";

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        seq: row.get::<_, i64>(0)? as u64,
        time: row.get(1)?,
        actor: row.get(2)?,
        kind: row.get(3)?,
        request_id: row.get(4)?,
        data: json_at(row, 5)?,
        prev_hash: row.get(6)?,
        hash: row.get(7)?,
    })
}

fn collect<T>(rows: impl Iterator<Item = rusqlite::Result<T>>) -> Result<Vec<T>, StoreError> {
    Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
}

impl ReadTx<'_> {
    pub fn token_by_hash(&self, secret_hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = ?1");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![secret_hash], token_from_row)
            .optional()?)
    }

    pub fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id], token_from_row)
            .optional()?)
    }

    pub fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        collect(stmt.query_map([], token_from_row)?)
    }

    pub fn count_tokens(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM tokens", [], |row| row.get::<_, i64>(0))? as u64)
    }

    pub fn config(&self, kind: ConfigKind, name: &str) -> Result<Option<ConfigRow>, StoreError> {
        let sql = format!("SELECT {CONFIG_COLUMNS} FROM {} WHERE name = ?1", kind.table());
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![name], config_from_row)
            .optional()?)
    }

    pub fn configs(&self, kind: ConfigKind) -> Result<Vec<ConfigRow>, StoreError> {
        let sql = format!("SELECT {CONFIG_COLUMNS} FROM {} ORDER BY name", kind.table());
        let mut stmt = self.conn.prepare_cached(&sql)?;
        collect(stmt.query_map([], config_from_row)?)
    }

    /// Names of roles that point at `target`.
    pub fn roles_of_target(&self, target: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM roles WHERE reference = ?1 ORDER BY name")?;
        let names = stmt
            .query_map(params![target], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(names)
    }

    pub fn request(&self, id: &str) -> Result<Option<(RequestRecord, u64)>, StoreError> {
        let raw = self
            .conn
            .prepare_cached("SELECT record, version FROM requests WHERE id = ?1")?
            .query_row(params![id], request_from_row)
            .optional()?;
        Ok(raw)
    }

    /// Newest first.
    pub fn requests(&self, filter: &RequestFilter) -> Result<Vec<(RequestRecord, u64)>, StoreError> {
        let mut sql = String::from("SELECT record, version FROM requests WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        if let Some(state) = filter.state {
            args.push(state.as_str().to_string());
            sql.push_str(&format!(" AND state = ?{}", args.len()));
        }
        if let Some(requester) = &filter.requester {
            args.push(requester.clone());
            sql.push_str(&format!(" AND requester = ?{}", args.len()));
        }
        if filter.grants_only {
            sql.push_str(" AND activated = 1");
        }
        if filter.holding_access {
            sql.push_str(&format!(
                " AND state IN ('{}', '{}')",
                RequestState::Active.as_str(),
                RequestState::RevokeFailed.as_str()
            ));
        }
        let limit = if filter.limit == 0 { 1000 } else { filter.limit };
        sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT {limit}"));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        collect(stmt.query_map(rusqlite::params_from_iter(args.iter()), request_from_row)?)
    }

    /// Records whose next deadline (expiry or revoke retry) is at or before
    /// `until`, earliest first.
    pub fn due_requests(&self, until: DateTime<Utc>, limit: u32) -> Result<Vec<RequestRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT record, version FROM requests WHERE next_deadline IS NOT NULL AND next_deadline <= ?1
             ORDER BY next_deadline LIMIT ?2",
        )?;
        let rows = collect(stmt.query_map(params![format_time(until), limit], request_from_row)?)?;
        Ok(rows.into_iter().map(|(record, _)| record).collect())
    }

    /// Every pending deadline, for rebuilding the in-memory timer.
    pub fn deadlines(&self) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT next_deadline, id FROM requests WHERE next_deadline IS NOT NULL")?;
        let rows = stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
        rows.map(|raw| {
            let (deadline, id) = raw?;
            Ok((parse_time(&deadline)?, id))
        })
        .collect()
    }

    /// Requests approved but never activated (a crash between the two).
    pub fn approved_not_active(&self) -> Result<Vec<RequestRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT record, version FROM requests WHERE state = 'approved'")?;
        let rows = collect(stmt.query_map([], request_from_row)?)?;
        Ok(rows.into_iter().map(|(record, _)| record).collect())
    }

    /// Events with `seq > since`, oldest first, optionally for one request.
    pub fn audit(&self, since: u64, request_id: Option<&str>, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        let columns = AUDIT_COLUMNS;
        let mut stmt;
        let rows = match request_id {
            Some(id) => {
                stmt = self.conn.prepare_cached(&format!(
                    "SELECT {columns} FROM audit WHERE request_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                ))?;
                stmt.query_map(params![id, since as i64, limit], audit_from_row)?
            }
            None => {
                stmt = self.conn.prepare_cached(&format!(
                    "SELECT {columns} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ))?;
                stmt.query_map(params![since as i64, limit], audit_from_row)?
            }
        };
        collect(rows)
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row(params![key], |row| row.get(0))
            .optional()?)
    }
}
