//! Schema migrations: a fresh store is at the current version, reopening
//! changes nothing, and a database from a newer build is refused untouched.

use hallpass_store::StoreError;

use crate::support::{Db, Fixture, Kind, approved, at};

on_both_backends!(
    a_fresh_store_has_the_current_schema,
    reopening_is_idempotent,
    a_newer_schema_is_refused_and_left_alone,
);

/// The number of migrations in `schema.rs`: bump it with each one added.
const CURRENT_SCHEMA_VERSION: i64 = 3;

const TABLES: [&str; 12] = [
    "approval_flows",
    "audit",
    "audit_head",
    "locks",
    "meta",
    "policies",
    "requests",
    "roles",
    "schema_version",
    "target_secrets",
    "targets",
    "tokens",
];

fn tables(db: &Db) -> Vec<String> {
    let mut names = match db.kind {
        Kind::Sqlite => db.strings("SELECT name FROM sqlite_master WHERE type = 'table'"),
        Kind::Postgres => db.strings("SELECT CAST(tablename AS TEXT) FROM pg_tables WHERE schemaname = 'public'"),
    };
    names.sort();
    names
}

/// Everything a refused start-up must leave as it was.
fn snapshot(db: &Db) -> Vec<Vec<String>> {
    vec![
        tables(db),
        db.strings("SELECT CAST(version AS TEXT) FROM schema_version"),
        db.strings("SELECT id FROM requests ORDER BY id"),
        db.strings("SELECT CAST(seq AS TEXT) || ' ' || hash FROM audit_head"),
        db.strings("SELECT key FROM meta ORDER BY key"),
    ]
}

async fn a_fresh_store_has_the_current_schema(db: Db) {
    let f = Fixture::open(db);
    assert_eq!(
        f.db.strings("SELECT CAST(version AS TEXT) FROM schema_version"),
        [CURRENT_SCHEMA_VERSION.to_string()],
        "one row, at the current version"
    );
    assert_eq!(tables(&f.db), TABLES);
    // The last migration's column is there and usable.
    f.put(&approved("r1", "alice", "db", at(0))).await;
    assert_eq!(f.db.strings("SELECT CAST(review AS TEXT) FROM requests"), ["0"]);
}

async fn reopening_is_idempotent(db: Db) {
    let f = Fixture::open(db);
    f.put(&approved("r1", "alice", "db", at(0))).await;
    f.store.write(|w| w.put_meta("k", "v")).await.expect("meta");
    let before = snapshot(&f.db);

    let f = f.reopen().reopen();
    assert_eq!(snapshot(&f.db), before, "no migration ran again");
    let stored = f.store.read(|r| r.request("r1")).await.expect("read");
    assert!(stored.is_some(), "the data is still there");
    assert_eq!(f.store.read(|r| r.meta("k")).await.expect("read").as_deref(), Some("v"));
}

async fn a_newer_schema_is_refused_and_left_alone(db: Db) {
    let f = Fixture::open(db);
    f.put(&approved("r1", "alice", "db", at(0))).await;
    let Fixture { clock, store, db } = f;
    store.close();
    drop(store);

    let newer = CURRENT_SCHEMA_VERSION + 1;
    db.execute(&format!("UPDATE schema_version SET version = {newer}"));
    let before = snapshot(&db);
    let error = match db.open(clock.clone()) {
        Ok(_) => panic!("a database at schema version {newer} was opened"),
        Err(error) => error,
    };
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&format!("schema version {newer}, newer than this build knows"))
            && message.contains("upgrade hallpass"),
        "{message}"
    );
    assert_eq!(snapshot(&db), before, "nothing was changed");

    // Nothing is left locked either: once the version is one this build
    // knows, the same data opens.
    db.execute(&format!("UPDATE schema_version SET version = {CURRENT_SCHEMA_VERSION}"));
    let store = db.open(clock).expect("open after the downgrade");
    let stored = store.read(|r| r.request("r1")).await.expect("read");
    assert!(stored.is_some());
    store.close();
}
