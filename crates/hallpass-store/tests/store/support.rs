//! Fixtures: a fresh store on either backend driven by a manual clock,
//! direct SQL on its database (to check or tamper with what the store wrote)
//! and request records in the states the tests need.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use hallpass_core::audit::AuditDraft;
use hallpass_core::request::{EndKind, NewRequest, RequestRecord, RoleApproval, RoleRules, Route};
use hallpass_core::{Decision, ManualClock, Principal, Subject};
use hallpass_store::{Backend, Store, StoreError};
use serde_json::json;

/// Defines `NAME::sqlite` and `NAME::postgres` for each `async fn NAME(db:
/// Db)` listed, each running it on a fresh database of that backend.
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test($crate::support::Db::sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$test($crate::support::Db::postgres()).await;
            }
        }
    )+};
}

/// Runs blocking PostgreSQL client code on a thread of its own: the
/// synchronous client refuses to run on a thread that drives a Tokio
/// runtime, and every test here is async. Panics pass through unchanged.
pub fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(work)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// One test's database, removed when dropped.
pub struct Db {
    pub kind: Kind,
    pub backend: Backend,
    /// Held for their `Drop`: the SQLite directory or the PostgreSQL database.
    _dir: Option<tempfile::TempDir>,
    _postgres: Option<PgDatabase>,
}

/// A database of its own on the test server; dropped with the test.
struct PgDatabase {
    base_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // FORCE: the store's change listener never lets go of its connection.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let base_url = self.base_url.clone();
        off_runtime(move || {
            if let Ok(mut client) = postgres::Client::connect(&base_url, postgres::NoTls) {
                let _ = client.batch_execute(&sql);
            }
        });
    }
}

/// `hp_` and 16 random hex digits: unique across the parallel test
/// processes sharing one server.
fn random_database_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("hp_{:016x}", hasher.finish())
}

/// `base` with its database name replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    let (address, query) = match base.split_once('?') {
        Some((address, query)) => (address, format!("?{query}")),
        None => (base, String::new()),
    };
    let host_start = address.find("://").map_or(0, |i| i + 3);
    let root = match address[host_start..].find('/') {
        Some(slash) => &address[..host_start + slash],
        None => address,
    };
    format!("{root}/{name}{query}")
}

impl Db {
    pub fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        Db {
            kind: Kind::Sqlite,
            backend: Backend::Sqlite {
                data_dir: dir.path().join("data"),
            },
            _dir: Some(dir),
            _postgres: None,
        }
    }

    /// A fresh database on the test PostgreSQL server, or the test fails
    /// at once with the one line saying how to get one.
    pub fn postgres() -> Db {
        let base_url = crate::postgres::postgres_base_url();
        let name = random_database_name();
        off_runtime(|| {
            let mut client = postgres::Client::connect(&base_url, postgres::NoTls)
                .unwrap_or_else(|error| panic!("cannot connect to PostgreSQL at HALLPASS_TEST_POSTGRES_URL: {error}"));
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap_or_else(|error| panic!("CREATE DATABASE {name} on HALLPASS_TEST_POSTGRES_URL: {error}"));
        });
        Db {
            kind: Kind::Postgres,
            backend: Backend::Postgres {
                url: with_database(&base_url, &name),
            },
            _dir: None,
            _postgres: Some(PgDatabase { base_url, name }),
        }
    }

    /// Opens a store on this database (PostgreSQL connects on the calling
    /// thread, so off the runtime).
    pub fn open(&self, clock: Arc<ManualClock>) -> Result<Store, StoreError> {
        let backend = self.backend.clone();
        off_runtime(move || Store::open(backend, clock))
    }

    /// Runs `sql` on the database directly, bypassing the store.
    pub fn execute(&self, sql: &str) {
        match &self.backend {
            Backend::Sqlite { data_dir } => {
                let conn = rusqlite::Connection::open(data_dir.join("hallpass.db")).expect("open hallpass.db");
                conn.execute_batch(sql).expect(sql);
            }
            Backend::Postgres { url } => off_runtime(|| {
                let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
                client.batch_execute(sql).expect(sql);
            }),
        }
    }

    /// The first column of every row of `sql`, which must select text
    /// (`CAST(x AS TEXT)` works on both backends).
    pub fn strings(&self, sql: &str) -> Vec<String> {
        match &self.backend {
            Backend::Sqlite { data_dir } => {
                let conn = rusqlite::Connection::open(data_dir.join("hallpass.db")).expect("open hallpass.db");
                let mut statement = conn.prepare(sql).expect(sql);
                let rows = statement.query_map([], |row| row.get::<_, String>(0)).expect(sql);
                rows.collect::<Result<_, _>>().expect(sql)
            }
            Backend::Postgres { url } => off_runtime(|| {
                let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
                let rows = client.query(sql, &[]).expect(sql);
                rows.iter().map(|row| row.get::<_, String>(0)).collect()
            }),
        }
    }
}

impl Db {
    /// The first column of every row of `sql`, a stored document (a
    /// request record or audit event data): how many bytes it takes in the
    /// database, and the JSON it holds, as someone reading the database
    /// would get it.
    pub fn documents(&self, sql: &str) -> Vec<(usize, String)> {
        let stored: Vec<Vec<u8>> = match &self.backend {
            Backend::Sqlite { data_dir } => {
                let conn = rusqlite::Connection::open(data_dir.join("hallpass.db")).expect("open hallpass.db");
                let mut statement = conn.prepare(sql).expect(sql);
                let rows = statement
                    .query_map([], |row| {
                        Ok(match row.get_ref(0)? {
                            rusqlite::types::ValueRef::Text(text) => text.to_vec(),
                            rusqlite::types::ValueRef::Blob(blob) => blob.to_vec(),
                            other => panic!("{sql}: a document of type {:?}", other.data_type()),
                        })
                    })
                    .expect(sql);
                rows.collect::<Result<_, _>>().expect(sql)
            }
            Backend::Postgres { url } => off_runtime(|| {
                let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
                let rows = client.query(sql, &[]).expect(sql);
                rows.iter().map(|row| row.get::<_, Vec<u8>>(0)).collect()
            }),
        };
        stored
            .into_iter()
            .map(|bytes| {
                let json = hallpass_store::stored_document_json(&bytes).expect("a readable document");
                (bytes.len(), String::from_utf8(json).expect("UTF-8 JSON"))
            })
            .collect()
    }
}

/// 2030-01-01 09:00:00 UTC: where every test's clock starts.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 9, 0, 0)
        .single()
        .expect("a valid time")
}

/// `seconds` after [`t0`].
pub fn at(seconds: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(seconds)
}

/// An open store on a database, with the clock it runs on.
pub struct Fixture {
    pub clock: Arc<ManualClock>,
    pub store: Store,
    pub db: Db,
}

impl Fixture {
    pub fn open(db: Db) -> Fixture {
        let clock = Arc::new(ManualClock::new(t0()));
        let store = db.open(clock.clone()).expect("open the store");
        Fixture { clock, store, db }
    }

    /// Another store on the same database and clock, as a second replica.
    pub fn replica(&self) -> Store {
        self.db.open(self.clock.clone()).expect("open a second store")
    }

    /// Closes the store and opens a new one on the same data, as a restart.
    pub fn reopen(self) -> Fixture {
        let Fixture { clock, store, db } = self;
        store.close();
        // The last handle: this releases the SQLite directory lock.
        drop(store);
        let store = db.open(clock.clone()).expect("reopen the store");
        Fixture { clock, store, db }
    }

    /// Another server on the same data: a second store on PostgreSQL; on
    /// SQLite, which allows one server per data directory, this store.
    pub fn peer(&self) -> Store {
        match self.db.kind {
            Kind::Postgres => self.replica(),
            Kind::Sqlite => self.store.clone(),
        }
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(Duration::seconds(seconds));
    }

    /// Writes `record` the way the server does: an audit event, then the
    /// record. Returns its version.
    pub async fn put(&self, record: &RequestRecord) -> u64 {
        let record = record.clone();
        self.store
            .write(move |w| -> Result<u64, StoreError> {
                w.append_audit(AuditDraft::new("test", "test.put", Some(record.id.clone()), json!({})))?;
                w.put_request(&record)
            })
            .await
            .expect("put the record")
    }

    pub async fn claim_due(&self, owner: &str, lease_seconds: i64, limit: u32) -> Vec<String> {
        claim_due(&self.store, owner, lease_seconds, limit).await
    }
}

pub async fn claim_due(store: &Store, owner: &str, lease_seconds: i64, limit: u32) -> Vec<String> {
    let owner = owner.to_string();
    store
        .write(move |w| w.claim_due(&owner, Duration::seconds(lease_seconds), limit))
        .await
        .expect("claim_due")
}

pub fn principal(name: &str) -> Principal {
    Principal {
        name: name.into(),
        groups: Vec::new(),
    }
}

fn role(name: &str) -> RoleRules {
    RoleRules {
        name: name.into(),
        target: format!("{name}-target"),
        default_duration_seconds: 3600,
        max_duration_seconds: 86_400,
        max_total_duration_seconds: 3 * 86_400,
        requestable_by: vec![Subject::Group("everyone".into())],
        approval: RoleApproval::Auto,
        emergency_access: true,
        extension_requires_approval: false,
    }
}

fn open(
    id: &str,
    requester: &str,
    role_name: &str,
    now: DateTime<Utc>,
    emergency: bool,
    route: Route,
) -> RequestRecord {
    let mut who = principal(requester);
    who.groups.push("everyone".into());
    let input = NewRequest {
        id: id.into(),
        reason: "INC-1: testing the store".into(),
        emergency,
        ..NewRequest::default()
    };
    RequestRecord::open(input, &role(role_name), route, &who, now)
        .expect("a valid request")
        .0
}

/// Approved at `now`, waiting to be issued: due at once.
pub fn approved(id: &str, requester: &str, role_name: &str, now: DateTime<Utc>) -> RequestRecord {
    open(id, requester, role_name, now, false, Route::Approve)
}

/// Denied by policy: never due.
pub fn denied(id: &str, requester: &str, role_name: &str, now: DateTime<Utc>) -> RequestRecord {
    open(id, requester, role_name, now, false, Route::Deny(vec!["no".into()]))
}

/// Activated at `now` for `seconds`: due when it expires.
pub fn active(id: &str, requester: &str, role_name: &str, now: DateTime<Utc>, seconds: u64) -> RequestRecord {
    let mut record = approved(id, requester, role_name, now);
    record.duration_seconds = seconds;
    record.activate(json!({}), 86_400, now).expect("activate");
    record
}

/// A grant that was active and has expired: never due again.
pub fn expired(id: &str, requester: &str, role_name: &str, now: DateTime<Utc>) -> RequestRecord {
    let mut record = active(id, requester, role_name, now, 60);
    let by = Decision {
        by: "hallpass".into(),
        comment: None,
        at: now,
    };
    record.finish_end(EndKind::Expire, by, now).expect("expire");
    record
}

/// A grant whose revocation failed: due again at `retry_at`.
pub fn revoke_failed(
    id: &str,
    requester: &str,
    role_name: &str,
    now: DateTime<Utc>,
    retry_at: DateTime<Utc>,
) -> RequestRecord {
    let mut record = active(id, requester, role_name, now, 3600);
    let by = Decision {
        by: "admin".into(),
        comment: None,
        at: now,
    };
    record
        .record_end_failure(EndKind::Revoke, by, "target unreachable".into(), retry_at, now)
        .expect("record the failure");
    record
}

/// An active break-glass grant; its review acknowledged or still open.
pub fn break_glass(
    id: &str,
    requester: &str,
    role_name: &str,
    now: DateTime<Utc>,
    acknowledged: bool,
) -> RequestRecord {
    let mut record = open(id, requester, role_name, now, true, Route::Approve);
    record.activate(json!({}), 86_400, now).expect("activate");
    if acknowledged {
        let mut admin = principal("root");
        admin.groups.push(hallpass_core::subject::ADMIN_GROUP.into());
        record
            .acknowledge_review(&admin, "checked: matches INC-1", now)
            .expect("acknowledge");
    }
    record
}
