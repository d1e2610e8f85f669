//! What the service-layer tests share: the [`App`] on SQLite or on a
//! PostgreSQL database of its own, on a manual clock, and
//! [`on_both_backends!`] to run a test on each (`NAME::sqlite`,
//! `NAME::postgres`), as the store's tests do.
//!
//! PostgreSQL comes from `HALLPASS_TEST_POSTGRES_URL` (scripts/test, or the
//! nextest setup script when it is unset).

// Each test binary uses part of this.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hallpass_core::ManualClock;
use hallpass_providers::CredentialProvider;
use hallpass_server::app::App;
use hallpass_server::testing::DeadlineInbox;
use hallpass_store::Backend;

// One definition with the store's tests and the e2e harness of where
// PostgreSQL is and of the one-line failure when there is none.
#[path = "../../../hallpass-store/tests/shared/postgres.rs"]
mod postgres;

/// Defines `NAME::sqlite` and `NAME::postgres` for each `async fn NAME(kind:
/// Kind)` listed, each running it on a fresh database of that backend.
/// After `paused:`, the tests run with Tokio's time paused (on one thread,
/// as paused time requires).
macro_rules! on_both_backends {
    (paused: $($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(start_paused = true)]
            async fn sqlite() {
                super::$test($crate::support::Kind::Sqlite).await;
            }

            #[tokio::test(start_paused = true)]
            async fn postgres() {
                super::$test($crate::support::Kind::Postgres).await;
            }
        }
    )+};
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test($crate::support::Kind::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$test($crate::support::Kind::Postgres).await;
            }
        }
    )+};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// An [`App`] on a database of its own, with the clock it runs on; the
/// database goes with it.
pub struct TestApp {
    pub app: App,
    pub clock: Arc<ManualClock>,
    /// Held: the app sends the scheduler's deadlines here.
    pub inbox: DeadlineInbox,
    _database: Option<PgDatabase>,
    _dir: tempfile::TempDir,
}

/// An app on `kind`, its clock at `start`, with the JWT provider and
/// `providers`.
pub fn app(kind: Kind, start: DateTime<Utc>, providers: Vec<Arc<dyn CredentialProvider>>) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(start));
    let (backend, database) = match kind {
        Kind::Sqlite => (
            Backend::Sqlite {
                data_dir: dir.path().join("data"),
            },
            None,
        ),
        Kind::Postgres => {
            let database = PgDatabase::create();
            (Backend::Postgres { url: database.url() }, Some(database))
        }
    };
    let (app, inbox) = hallpass_server::testing::app_on(backend, dir.path(), clock.clone(), providers).expect("app");
    TestApp {
        app,
        clock,
        inbox,
        _database: database,
        _dir: dir,
    }
}

impl TestApp {
    /// Everything the store holds, as text, for "is this secret anywhere
    /// in clear?" checks: the SQLite files byte for byte (WAL included), or
    /// every row of every table on PostgreSQL; and the packed documents
    /// unpacked, as anyone reading the database can.
    pub fn dump(&self) -> String {
        let backend = match &self._database {
            None => Backend::Sqlite {
                data_dir: self._dir.path().join("data"),
            },
            Some(database) => Backend::Postgres { url: database.url() },
        };
        let documents = hallpass_store::stored_documents(&backend).expect("the stored documents");
        let raw = match &self._database {
            None => {
                let mut text = String::new();
                let entries = std::fs::read_dir(self._dir.path().join("data")).expect("data dir");
                for entry in entries.flatten() {
                    if let Ok(bytes) = std::fs::read(entry.path()) {
                        text.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
                text
            }
            Some(database) => database.dump(),
        };
        raw + &documents
    }
}

/// A database of its own on the test server, dropped with the test.
struct PgDatabase {
    base_url: String,
    name: String,
}

impl PgDatabase {
    fn create() -> PgDatabase {
        let base_url = postgres::postgres_base_url();
        let name = format!("hp_app_{}", uuid::Uuid::new_v4().simple());
        sql(&base_url, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|error| panic!("CREATE DATABASE on HALLPASS_TEST_POSTGRES_URL: {error}"));
        PgDatabase { base_url, name }
    }

    /// The base URL pointed at this database (a `dbname` parameter
    /// overrides the URL's path).
    fn url(&self) -> String {
        let separator = if self.base_url.contains('?') { '&' } else { '?' };
        format!("{}{separator}dbname={}", self.base_url, self.name)
    }
}

impl PgDatabase {
    /// Every row of every table, as JSON text.
    fn dump(&self) -> String {
        let url = self.url();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).expect("connect");
                    let tables = client
                        .query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", &[])
                        .expect("tables");
                    let mut text = String::new();
                    for table in tables {
                        let name: String = table.get(0);
                        let sql = format!("SELECT COALESCE(json_agg(t)::text, '') FROM {name} t");
                        let rows: String = client.query_one(&sql, &[]).expect("rows").get(0);
                        text.push_str(&rows);
                    }
                    text
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // FORCE: the store's change listener keeps its connection open.
        // Best effort: a failure here must not hide the test's own outcome.
        let _ = sql(
            &self.base_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs `statement` on the server at `url`, on a thread of its own: the
/// synchronous client refuses to run on a thread that drives a runtime.
fn sql(url: &str, statement: &str) -> Result<(), ::postgres::Error> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| ::postgres::Client::connect(url, ::postgres::NoTls)?.batch_execute(statement))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
