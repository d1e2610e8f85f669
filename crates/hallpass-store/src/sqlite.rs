//! SQLite connections: the embedded default. One file in the data
//! directory, WAL mode, `synchronous = FULL` so an acknowledged commit
//! survives a crash or power loss; a checkpointer thread of its own keeps
//! WAL checkpoints out of the writer's commits.

use std::fs::{self, DirBuilder, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};

use crate::StoreError;
use crate::sql::{Conn, Dialect, Row, SqlValue};
use crate::sqlite_page_cache;

pub struct SqliteConn {
    conn: Connection,
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            SqlValue::Int(value) => ToSqlOutput::Borrowed(ValueRef::Integer(*value)),
            SqlValue::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            SqlValue::Bytes(bytes) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
        })
    }
}

/// SQLite numbers placeholders `?N`; the shared SQL says `$N`.
fn native(sql: &str) -> String {
    sql.replace('$', "?")
}

impl Conn for SqliteConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare_cached(&native(sql))?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&native(sql))?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for index in 0..columns {
                values.push(match row.get_ref(index)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(value) => SqlValue::Int(value),
                    ValueRef::Text(bytes) => SqlValue::Text(String::from_utf8_lossy(bytes).into_owned()),
                    ValueRef::Blob(bytes) => SqlValue::Bytes(bytes.to_vec()),
                    other => {
                        return Err(StoreError::Corrupt(format!(
                            "unexpected column type {:?}",
                            other.data_type()
                        )));
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch(sql)?)
    }
}

fn io_error(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

/// Where the database lives: `hallpass.db` in `data_dir`, created 0600.
pub fn prepare_file(data_dir: &Path) -> Result<PathBuf, StoreError> {
    prepare_data_dir(data_dir)?;
    let path = data_dir.join("hallpass.db");
    // Create the file ourselves so it is 0600 from the first byte; SQLite
    // gives the -wal and -shm files the same mode.
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    Ok(path)
}

/// Makes sure `data_dir` is a directory only its owner can change. A
/// missing one is created 0700 (its parents as usual). An existing one is
/// used as it is, never chmodded: it may be shared, like a 1777 temp dir
/// whose sticky bit protects others; but if it is group- or world-writable,
/// others could swap the database or the seal key, so it is refused.
pub fn prepare_data_dir(data_dir: &Path) -> Result<(), StoreError> {
    let refuse = |message: String| {
        Err(StoreError::Io {
            path: data_dir.display().to_string(),
            message,
        })
    };
    let metadata = match fs::metadata(data_dir) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == ErrorKind::NotFound => return create_private_dir(data_dir),
        Err(error) => return Err(io_error(data_dir, error)),
    };
    if !metadata.is_dir() {
        return refuse("it is not a directory; pass a directory (a missing one is created)".into());
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return refuse(format!(
            "it is group- or world-writable (mode {mode:04o}), so other users could plant or swap files in it; \
             run `chmod 700 {}` or choose a private directory",
            data_dir.display()
        ));
    }
    Ok(())
}

fn create_private_dir(data_dir: &Path) -> Result<(), StoreError> {
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    match DirBuilder::new().mode(0o700).create(data_dir) {
        Ok(()) => Ok(()),
        // Someone else created it meanwhile: judge it like any existing one.
        Err(error) if error.kind() == ErrorKind::AlreadyExists => prepare_data_dir(data_dir),
        Err(error) => Err(io_error(data_dir, error)),
    }
}

/// Holds `DIR/hallpass.lock` exclusively for as long as it lives: one server
/// per SQLite data directory, enforced rather than assumed (start-up releases
/// every claim on the strength of it).
pub struct DirLock {
    _file: fs::File,
}

pub fn lock_dir(data_dir: &Path) -> Result<DirLock, StoreError> {
    let path = data_dir.join("hallpass.lock");
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(StoreError::Config(format!(
            "another hallpass server is using {}; one server per SQLite data directory (use PostgreSQL for replicas)",
            data_dir.display()
        ))),
        Err(TryLockError::Error(error)) => Err(io_error(&path, error)),
    }
}

/// The writer's page cache, in KiB (SQLite's default is 2 MiB). Its pages
/// stay valid across commits (readers' caches do not), and the expiry burst
/// and the request path touch index pages all over the file. Its size
/// costs nothing per commit because of `sqlite_page_cache`.
const WRITER_CACHE_KIB: i64 = 64 << 10;

/// Prepared statements kept per connection: more than the distinct
/// statements of the hot paths together (rusqlite keeps 16 by default,
/// and an evicted statement is parsed again on its next use).
const STATEMENT_CACHE: usize = 256;

/// How often the checkpointer copies committed WAL frames into the
/// database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The writer checkpoints by itself only once the WAL holds this many
/// pages (64 MiB of 4 KiB pages), should the checkpointer fall behind.
/// SQLite's default, 1,000, put a checkpoint and its `fsync` of the
/// database file inside a commit every few batches: a fifth of the
/// writer's time in an expiry burst.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16_384;

/// Every connection the store opens comes through here, so the page-cache
/// layer is in place before SQLite's first use in the process.
fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    sqlite_page_cache::install();
    Ok(Connection::open_with_flags(path, flags)?)
}

pub fn open_writer(path: &Path) -> Result<SqliteConn, StoreError> {
    let conn = connect(path, OpenFlags::default())?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: every commit is fsynced before we acknowledge it.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
    // Each write job runs in a savepoint, whose undo pages SQLite would
    // otherwise write to a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(SqliteConn { conn })
}

pub fn open_reader(path: &Path) -> Result<SqliteConn, StoreError> {
    let conn = connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(SqliteConn { conn })
}

/// Checkpoints the WAL from its own thread and connection, off the
/// writer's commits, until `stop` is dropped; then once more. PASSIVE:
/// it never waits for, nor blocks, the writer or the readers.
pub(crate) fn spawn_checkpointer(path: &Path) -> Result<(std::thread::JoinHandle<()>, mpsc::Sender<()>), StoreError> {
    let conn = connect(path, OpenFlags::default())?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let (stop_tx, stop) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("hallpass-store-checkpointer".into())
        .spawn(move || {
            loop {
                let stopping = !matches!(stop.recv_timeout(CHECKPOINT_EVERY), Err(RecvTimeoutError::Timeout));
                if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(%error, "WAL checkpoint failed; the writer checkpoints past its limit meanwhile");
                }
                if stopping {
                    return;
                }
            }
        })
        .map_err(|e| StoreError::Io {
            path: "hallpass-store-checkpointer".into(),
            message: e.to_string(),
        })?;
    Ok((handle, stop_tx))
}
