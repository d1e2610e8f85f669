//! The store handle: a writer thread that group-commits closures, reader
//! threads, and the change counter. Backend-agnostic: it only sees [`Conn`].
//!
//! Each batch of write closures runs in one transaction that first locks the
//! `audit_head` row. With one server that costs nothing; with several
//! replicas on PostgreSQL it is what keeps the audit log one valid chain:
//! batches from different replicas take turns appending to it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use hallpass_core::Clock;
use tokio::sync::{oneshot, watch};

use crate::sql::Conn;
use crate::token_cache::{TokenCache, TokenForAuth};
use crate::tx::{ChainHead, ReadTx, WriteTx};
use crate::{StoreError, pg, schema, sqlite};

/// Most closures committed in one transaction.
const MAX_BATCH: usize = 512;
/// Reader threads (and connections).
const READERS: usize = 4;

/// Where the data lives.
#[derive(Clone)]
pub enum Backend {
    /// `hallpass.db` in this directory.
    Sqlite { data_dir: PathBuf },
    /// A PostgreSQL database shared by every replica.
    Postgres { url: String },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Sqlite { data_dir } => write!(f, "sqlite ({})", data_dir.display()),
            // The URL may carry a password.
            Backend::Postgres { .. } => f.write_str("postgres"),
        }
    }
}

/// Hands a job's result to its caller once the batch's fate is known: the
/// argument is the commit error, if the commit failed.
type Deliver = Box<dyn FnOnce(Option<&StoreError>) + Send>;

struct Pending {
    ok: bool,
    deliver: Deliver,
}

type WriteJob = Box<dyn FnOnce(&mut WriteTx<'_>) -> Pending + Send>;
type ReadJob = Box<dyn FnOnce(Result<&mut ReadTx<'_>, StoreError>) + Send>;
type Connect = Arc<dyn Fn() -> Result<Box<dyn Conn>, StoreError> + Send + Sync>;

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writes: Mutex<Option<mpsc::Sender<WriteJob>>>,
    reads: Mutex<Option<mpsc::Sender<ReadJob>>>,
    /// SQLite: dropped to stop the WAL checkpointer.
    checkpointer: Mutex<Option<mpsc::Sender<()>>>,
    /// Sequence number of the newest committed audit event, here or (on
    /// PostgreSQL) on any replica. Every state change writes one, so this is
    /// the change counter long-polls wait on.
    changes: watch::Receiver<u64>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    /// SQLite only: authentication's token look-ups (see `token_cache`).
    tokens: Option<Arc<TokenCache>>,
    backend: Backend,
    /// SQLite: the data directory's lock, held while the store is open.
    _dir_lock: Option<sqlite::DirLock>,
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<thread::JoinHandle<()>, StoreError> {
    thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|e| StoreError::Io {
            path: name.into(),
            message: e.to_string(),
        })
}

impl Store {
    /// Opens the backend, applies migrations, and starts the threads.
    pub fn open(backend: Backend, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        let (mut dir_lock, mut sqlite_file) = (None, None);
        let (writer_connect, reader_connect): (Connect, Connect) = match &backend {
            Backend::Sqlite { data_dir } => {
                let path = sqlite::prepare_file(data_dir)?;
                sqlite_file = Some(path.clone());
                dir_lock = Some(sqlite::lock_dir(data_dir)?);
                let reader_path = path.clone();
                (
                    Arc::new(move || Ok(Box::new(sqlite::open_writer(&path)?) as Box<dyn Conn>)),
                    Arc::new(move || Ok(Box::new(sqlite::open_reader(&reader_path)?) as Box<dyn Conn>)),
                )
            }
            Backend::Postgres { url } => {
                let url = url.clone();
                let connect: Connect = Arc::new(move || Ok(Box::new(pg::connect(&url)?) as Box<dyn Conn>));
                (connect.clone(), connect)
            }
        };
        let mut first_conn = writer_connect()?;
        schema::migrate(first_conn.as_mut())?;
        let head = load_head(first_conn.as_mut())?;
        let (changes_tx, changes_rx) = watch::channel(head.seq);
        let changes_tx = Arc::new(changes_tx);

        let tokens = matches!(backend, Backend::Sqlite { .. }).then(|| Arc::new(TokenCache::default()));
        let mut threads = Vec::new();
        let (write_tx, write_rx) = mpsc::channel::<WriteJob>();
        let writer = Writer {
            connect: writer_connect,
            changes: changes_tx.clone(),
            tokens: tokens.clone(),
        };
        threads.push(spawn("hallpass-store-writer", move || {
            writer_loop(writer, first_conn, write_rx, clock.as_ref())
        })?);

        let (read_tx, read_rx) = mpsc::channel::<ReadJob>();
        let read_rx = Arc::new(Mutex::new(read_rx));
        for index in 0..READERS {
            let conn = reader_connect()?;
            let (connect, jobs) = (reader_connect.clone(), read_rx.clone());
            threads.push(spawn(&format!("hallpass-store-reader-{index}"), move || {
                reader_loop(conn, connect, &jobs)
            })?);
        }

        let mut checkpointer = None;
        if let Some(path) = &sqlite_file {
            let (handle, stop) = sqlite::spawn_checkpointer(path)?;
            threads.push(handle);
            checkpointer = Some(stop);
        }

        if let Backend::Postgres { url } = &backend {
            // Detached: it blocks on the socket and ends with the process.
            let listener = pg::connect(url)?;
            spawn("hallpass-store-listener", {
                let url = url.clone();
                move || listen_loop(listener, &url, &changes_tx)
            })?;
        }

        Ok(Store {
            inner: Arc::new(Inner {
                writes: Mutex::new(Some(write_tx)),
                reads: Mutex::new(Some(read_tx)),
                checkpointer: Mutex::new(checkpointer),
                changes: changes_rx,
                threads: Mutex::new(threads),
                tokens,
                backend,
                _dir_lock: dir_lock,
            }),
        })
    }

    /// Opens the embedded SQLite store in `data_dir`.
    pub fn open_sqlite(data_dir: &std::path::Path, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        Self::open(
            Backend::Sqlite {
                data_dir: data_dir.to_path_buf(),
            },
            clock,
        )
    }

    pub fn backend(&self) -> &Backend {
        &self.inner.backend
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
        let job: WriteJob = Box::new(move |wtx| {
            let result = f(wtx);
            Pending {
                ok: result.is_ok(),
                deliver: Box::new(move |commit_error| {
                    let outcome = match (commit_error, result) {
                        (Some(error), Ok(_)) => Err(E::from(StoreError::Commit(error.to_string()))),
                        (_, result) => result,
                    };
                    let _ = reply_tx.send(outcome);
                }),
            }
        });
        submit(&self.inner.writes, job)?;
        reply_rx.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// Runs `f` on a reader connection (its own thread), off the runtime.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut ReadTx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T, E>>();
        let job: ReadJob = Box::new(move |rtx| {
            let _ = reply_tx.send(rtx.map_err(E::from).and_then(f));
        });
        submit(&self.inner.reads, job)?;
        reply_rx.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// The token with this secret hash and whether its principal is
    /// locked: what every API call's authentication asks. On SQLite from
    /// memory when nothing that touched tokens or locks has committed since
    /// it was last read (see `token_cache`); from a reader otherwise.
    pub async fn token_for_auth(&self, secret_hash: &str) -> Result<Option<TokenForAuth>, StoreError> {
        let lookup = secret_hash.to_string();
        let Some(cache) = &self.inner.tokens else {
            return self.read(move |r| r.token_for_auth(&lookup)).await;
        };
        if let Some(found) = cache.get(secret_hash) {
            return Ok(Some(found));
        }
        let read_at = cache.generation();
        let found = self.read(move |r| r.token_for_auth(&lookup)).await?;
        // An unknown token is not kept: guesses would fill the cache.
        if let Some(found) = &found {
            cache.put(secret_hash, read_at, found);
        }
        Ok(found)
    }

    /// Sequence number of the newest committed audit event; changes whenever
    /// any state changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.clone()
    }

    /// Stops the threads after everything already queued is committed.
    pub fn close(&self) {
        close_queue(&self.inner.writes);
        close_queue(&self.inner.reads);
        close_queue(&self.inner.checkpointer);
        if let Ok(mut threads) = self.inner.threads.lock() {
            for handle in threads.drain(..) {
                let _ = handle.join();
            }
        }
    }
}

/// Queues a job for the writer or a reader; fails once the store is closed.
fn submit<J>(queue: &Mutex<Option<mpsc::Sender<J>>>, job: J) -> Result<(), StoreError> {
    let guard = queue.lock().map_err(|_| StoreError::Closed)?;
    guard
        .as_ref()
        .ok_or(StoreError::Closed)?
        .send(job)
        .map_err(|_| StoreError::Closed)
}

/// Drops the sender: the threads drain what is queued, then end.
fn close_queue<J>(queue: &Mutex<Option<mpsc::Sender<J>>>) {
    if let Ok(mut sender) = queue.lock() {
        sender.take();
    }
}

pub(crate) fn load_head(conn: &mut dyn Conn) -> Result<ChainHead, StoreError> {
    let row = conn
        .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])?
        .ok_or_else(|| StoreError::Corrupt("the audit_head row is missing".into()))?;
    Ok(ChainHead {
        seq: row.int(0)? as u64,
        hash: row.text(1)?,
    })
}

/// Replaces a broken connection, retrying with a pause; gives up only when
/// the store is closing.
fn reconnect(connect: &Connect, what: &str) -> Option<Box<dyn Conn>> {
    for attempt in 1u32.. {
        match connect() {
            Ok(conn) => return Some(conn),
            Err(error) => {
                tracing::error!(%error, attempt, "{what}: cannot reconnect to the database; retrying");
                thread::sleep(Duration::from_millis(500 * u64::from(attempt.min(10))));
            }
        }
    }
    None
}

/// What the writer thread tells others through.
struct Writer {
    connect: Connect,
    changes: Arc<watch::Sender<u64>>,
    tokens: Option<Arc<TokenCache>>,
}

fn writer_loop(writer: Writer, mut conn: Box<dyn Conn>, jobs: mpsc::Receiver<WriteJob>, clock: &dyn Clock) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = run_batch(conn.as_mut(), batch, clock);
        // Before anyone hears of the commit, callers or the change counter:
        // a revocation that has returned is never answered from memory.
        if outcome.touched_tokens
            && let Some(cache) = &writer.tokens
        {
            cache.invalidate();
        }
        let error = match outcome.committed {
            Ok(seq) => {
                advance(&writer.changes, seq);
                None
            }
            Err(error) => {
                tracing::error!(%error, "store commit failed; the batch was rolled back");
                let _ = conn.batch("ROLLBACK");
                Some(error)
            }
        };
        for pending in outcome.pendings {
            (pending.deliver)(error.as_ref());
        }
        if conn.is_broken() {
            match reconnect(&writer.connect, "store writer") {
                Some(fresh) => conn = fresh,
                None => return,
            }
        }
    }
}

/// What became of one batch.
struct BatchOutcome {
    /// Each job's outcome, in order (fewer than the jobs when the batch
    /// failed part-way: the rest never ran).
    pendings: Vec<Pending>,
    /// The audit head after commit.
    committed: Result<u64, StoreError>,
    /// Whether a job changed a token or a lock (kept or rolled back).
    touched_tokens: bool,
}

/// Runs one batch in one transaction.
fn run_batch(conn: &mut dyn Conn, batch: Vec<WriteJob>, clock: &dyn Clock) -> BatchOutcome {
    let mut touched_tokens = false;
    let (pendings, committed) = run_jobs(conn, batch, clock, &mut touched_tokens);
    BatchOutcome {
        pendings,
        committed,
        touched_tokens,
    }
}

/// [`run_batch`]'s work: returns each job's outcome and the audit head
/// after commit, and notes whether a job touched tokens or locks.
fn run_jobs(
    conn: &mut dyn Conn,
    batch: Vec<WriteJob>,
    clock: &dyn Clock,
    touched_tokens: &mut bool,
) -> (Vec<Pending>, Result<u64, StoreError>) {
    let dialect = conn.dialect();
    let start = conn.batch(dialect.begin()).and_then(|()| {
        let sql = format!(
            "SELECT seq, hash FROM audit_head WHERE id = 1{}",
            dialect.for_update(false)
        );
        let row = conn
            .query_one(&sql, &[])?
            .ok_or_else(|| StoreError::Corrupt("audit_head row missing".into()))?;
        Ok(ChainHead {
            seq: row.int(0)? as u64,
            hash: row.text(1)?,
        })
    });
    let head = match start {
        Ok(head) => head,
        Err(error) => {
            // The jobs never ran: dropping them tells their callers.
            drop(batch);
            return (Vec::new(), Err(error));
        }
    };
    let mut pendings = Vec::with_capacity(batch.len());
    let mut current = head.clone();
    // PostgreSQL: a job's RELEASE goes with the next job's SAVEPOINT (or
    // the COMMIT), one round trip fewer per job.
    let merge_release = dialect == crate::sql::Dialect::Postgres;
    let mut release_due = false;
    for job in batch {
        let open = if release_due {
            "RELEASE SAVEPOINT job; SAVEPOINT job"
        } else {
            "SAVEPOINT job"
        };
        if let Err(error) = statement(conn, open) {
            return (pendings, Err(error));
        }
        let mut wtx = WriteTx::new(conn, current.clone(), clock);
        let pending = job(&mut wtx);
        *touched_tokens |= wtx.touched_tokens;
        let after = wtx.head().clone();
        release_due = pending.ok && merge_release;
        let step = if pending.ok {
            current = after;
            if merge_release {
                Ok(())
            } else {
                statement(conn, "RELEASE SAVEPOINT job")
            }
        } else {
            conn.batch("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")
        };
        pendings.push(pending);
        if let Err(error) = step {
            return (pendings, Err(error));
        }
    }
    let finish = if current.seq == head.seq {
        conn.batch("COMMIT")
    } else {
        move_head_and_commit(conn, &current)
    };
    (pendings, finish.map(|()| current.seq))
}

/// Moves the head row to `head` and commits. On PostgreSQL the update, the
/// announcement to other replicas and the commit go as one simple query:
/// one round trip where three prepared statements took three. The values
/// are spelled into the text, so they are checked first: a sequence number
/// and a hash of the chain, lowercase hex (a malformed hash would be a bug,
/// and is refused before anything is sent).
fn move_head_and_commit(conn: &mut dyn Conn, head: &ChainHead) -> Result<(), StoreError> {
    if conn.dialect() == crate::sql::Dialect::Sqlite {
        let params = crate::sql_params![head.seq, &head.hash];
        conn.execute("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", params)?;
        return conn.batch("COMMIT");
    }
    let hex = head.hash.len() == 64 && head.hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !hex {
        return Err(StoreError::Corrupt(format!(
            "the audit head at seq {} has a malformed hash",
            head.seq
        )));
    }
    conn.batch(&format!(
        "UPDATE audit_head SET seq = {seq}, hash = '{hash}' WHERE id = 1; \
         SELECT pg_notify('{channel}', '{seq}'); COMMIT",
        seq = head.seq,
        hash = head.hash,
        channel = pg::CHANGES_CHANNEL
    ))
}

/// A statement without parameters that runs once per job: prepared once
/// on SQLite (a batch is parsed anew each time; one statement only); a
/// simple query on PostgreSQL (one round trip, several statements allowed).
fn statement(conn: &mut dyn Conn, sql: &str) -> Result<(), StoreError> {
    match conn.dialect() {
        crate::sql::Dialect::Sqlite => conn.execute(sql, &[]).map(drop),
        crate::sql::Dialect::Postgres => conn.batch(sql),
    }
}

/// Moves the change counter forward (never back: notifications from other
/// replicas may arrive out of order).
fn advance(changes: &watch::Sender<u64>, seq: u64) {
    changes.send_if_modified(|current| {
        let newer = seq > *current;
        if newer {
            *current = seq;
        }
        newer
    });
}

fn reader_loop(mut conn: Box<dyn Conn>, connect: Connect, jobs: &Mutex<mpsc::Receiver<ReadJob>>) {
    loop {
        let job = match jobs.lock() {
            Ok(receiver) => match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        job(Ok(&mut ReadTx::new(conn.as_mut())));
        if conn.is_broken() {
            match reconnect(&connect, "store reader") {
                Some(fresh) => conn = fresh,
                None => return,
            }
        }
    }
}

/// Follows other replicas' commits through LISTEN/NOTIFY.
fn listen_loop(mut conn: pg::PgConn, url: &str, changes: &watch::Sender<u64>) {
    loop {
        let listening = conn.batch(&format!("LISTEN {}", pg::CHANGES_CHANNEL));
        let outcome: Result<(), StoreError> = listening.and_then(|()| {
            loop {
                match conn.next_notification()? {
                    Some(payload) => {
                        if let Ok(seq) = payload.parse::<u64>() {
                            advance(changes, seq);
                        }
                    }
                    None => return Err(StoreError::Postgres("notification stream ended".into())),
                }
            }
        });
        if let Err(error) = outcome {
            tracing::warn!(%error, "change listener lost its connection; reconnecting");
        }
        thread::sleep(Duration::from_secs(1));
        match pg::connect(url) {
            Ok(fresh) => conn = fresh,
            Err(error) => tracing::warn!(%error, "change listener cannot reconnect yet"),
        }
    }
}
