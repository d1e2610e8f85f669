//! Schema migrations: a fresh store is at the current version, reopening
//! changes nothing, and a database from a newer build is refused untouched.

use hallpass_core::audit::{AuditDraft, ChainVerifier};
use hallpass_store::{RevocationRow, StoreError};
use serde_json::json;

use crate::support::{Db, Fixture, Kind, approved, at};

on_both_backends!(
    a_fresh_store_has_the_current_schema,
    reopening_is_idempotent,
    a_newer_schema_is_refused_and_left_alone,
    revocations_list_what_has_not_expired_once_per_grant,
    a_claim_held_before_the_upgrade_still_holds_after_it,
    documents_stored_as_text_before_packing_read_and_verify_after_it,
);

/// The number of migrations in `schema.rs`: bump it with each one added.
const CURRENT_SCHEMA_VERSION: i64 = 9;

const TABLES: [&str; 19] = [
    "approval_flows",
    "audit",
    "audit_head",
    "claims",
    "deliveries",
    "locks",
    "meta",
    "notifier_secrets",
    "notifiers",
    "policies",
    "requests",
    "revocations",
    "roles",
    "schema_version",
    "seen_nonces",
    "sso_sessions",
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
    // Migration 3's column and migration 4's table are there and usable.
    f.put(&approved("r1", "alice", "db", at(0))).await;
    assert_eq!(f.db.strings("SELECT CAST(review AS TEXT) FROM requests"), ["0"]);
    f.store
        .write(|w| w.put_revocation(&revocation("ssh", "g1", at(60)), at(0)))
        .await
        .expect("put revocation");
    assert_eq!(f.db.strings("SELECT grant_id FROM revocations"), ["g1"]);
}

fn revocation(target: &str, grant_id: &str, expires_at: chrono::DateTime<chrono::Utc>) -> RevocationRow {
    RevocationRow {
        target: target.to_owned(),
        grant_id: grant_id.to_owned(),
        expires_at,
        metadata: json!({ "serial": grant_id }),
    }
}

/// A target's revocation list: each grant once (a retried revoke adds
/// nothing), only until the grant would have expired anyway, and gone
/// with the target.
async fn revocations_list_what_has_not_expired_once_per_grant(db: Db) {
    let f = Fixture::open(db);
    let rows = [
        revocation("ssh", "g1", at(100)),
        revocation("ssh", "g2", at(300)),
        revocation("ssh", "g1", at(900)),
        revocation("other", "g3", at(300)),
    ];
    for row in rows {
        f.store
            .write(move |w| w.put_revocation(&row, at(0)))
            .await
            .expect("put");
    }
    let listed = |now| {
        let store = &f.store;
        async move {
            let rows = store.read(move |r| r.revocations("ssh", now)).await.expect("list");
            rows.into_iter()
                .map(|row| (row.grant_id, row.expires_at, row.metadata))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(at(0)).await,
        [
            ("g1".to_owned(), at(100), json!({ "serial": "g1" })),
            ("g2".to_owned(), at(300), json!({ "serial": "g2" })),
        ],
        "the first row for a grant wins; ordered by expiry"
    );
    assert_eq!(
        listed(at(100)).await.len(),
        1,
        "a grant past its expiry drops off the list"
    );

    // A later write prunes rows whose grants have expired.
    f.store
        .write(|w| w.put_revocation(&revocation("ssh", "g4", at(400)), at(200)))
        .await
        .expect("put");
    assert_eq!(
        f.db.strings("SELECT grant_id FROM revocations WHERE target = 'ssh' ORDER BY grant_id"),
        ["g2", "g4"]
    );

    let deleted = f.store.write(|w| w.delete_revocations("ssh")).await.expect("delete");
    assert_eq!(deleted, 2);
    assert_eq!(
        f.db.strings("SELECT grant_id FROM revocations"),
        ["g3"],
        "other targets keep theirs"
    );
}

/// Migration 8 moves claims out of `requests` into `claims`. A database
/// left at version 7 by a server that stopped mid-claim keeps the claim:
/// another server does not take the record until the lease lapses.
async fn a_claim_held_before_the_upgrade_still_holds_after_it(db: Db) {
    let f = Fixture::open(db);
    f.put(&approved("held", "alice", "held", at(0))).await;
    f.put(&approved("free", "alice", "free", at(0))).await;
    let Fixture { clock, store, db } = f;
    store.close();
    drop(store);

    // Back to version 7, as that release left it, with "held" claimed.
    let lease_end = crate::support::t0() + chrono::Duration::seconds(60);
    db.execute(&format!(
        "DROP TABLE claims;
         CREATE INDEX requests_claimed ON requests (claimed_by) WHERE claimed_by IS NOT NULL;
         UPDATE requests SET claimed_by = 'server-a', claim_until = '{}' WHERE id = 'held';
         UPDATE schema_version SET version = 7;",
        hallpass_store::format_time(lease_end)
    ));

    let store = db.open(clock.clone()).expect("open, migrating");
    let f = Fixture { clock, store, db };
    assert_eq!(
        f.db.strings("SELECT request_id || ' ' || claimed_by FROM claims"),
        ["held server-a"]
    );
    assert_eq!(
        f.db.strings("SELECT id FROM requests WHERE claimed_by IS NOT NULL OR claim_until IS NOT NULL"),
        Vec::<String>::new(),
        "the old columns are cleared"
    );
    assert_eq!(
        f.claim_due("server-b", 3600, 10).await,
        ["free"],
        "the held one stays held"
    );
    f.advance(61);
    assert_eq!(
        f.claim_due("server-b", 3600, 10).await,
        ["held"],
        "until its lease lapses"
    );
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

/// A store of version 8 kept request records and audit event data as JSON
/// text and audit hashes as hex (TEXT columns on PostgreSQL). After the
/// upgrade those rows read as they were, their events still verify, and
/// the chain goes on with packed events.
async fn documents_stored_as_text_before_packing_read_and_verify_after_it(db: Db) {
    let f = Fixture::open(db);
    let Fixture { clock, store, db } = f;
    store.close();
    drop(store);
    let record = approved("old", "alice", "db", at(0));
    let record_json = serde_json::to_string(&record).expect("json");
    let genesis = "0".repeat(64);
    let first = AuditDraft::new(
        "alice",
        "request.created",
        Some("old".into()),
        json!({"reason": "it's old"}),
    )
    .seal(1, hallpass_store::format_time(at(0)), &genesis);
    let second = AuditDraft::new("hallpass", "grant.activated", Some("old".into()), json!({"n": 2.5})).seal(
        2,
        hallpass_store::format_time(at(1)),
        &first.hash,
    );
    let back_to_text = match db.kind {
        Kind::Postgres => {
            "ALTER TABLE requests ALTER COLUMN record TYPE TEXT USING convert_from(record, 'UTF8');
             ALTER TABLE audit ALTER COLUMN data TYPE TEXT USING convert_from(data, 'UTF8'),
                               ALTER COLUMN prev_hash TYPE TEXT USING encode(prev_hash, 'hex'),
                               ALTER COLUMN hash TYPE TEXT USING encode(hash, 'hex');"
        }
        Kind::Sqlite => "",
    };
    let quote = |text: &str| text.replace('\'', "''");
    let event_row = |event: &hallpass_core::audit::AuditEvent| {
        format!(
            "({}, '{}', '{}', '{}', 'old', '{}', '{}', '{}')",
            event.seq,
            event.time,
            event.actor,
            event.kind,
            quote(&event.data.to_string()),
            event.prev_hash,
            event.hash
        )
    };
    db.execute(&format!(
        "{back_to_text}
         UPDATE schema_version SET version = 8;
         INSERT INTO requests (id, state, requester, role, activated, created_at, version, record, review)
              VALUES ('old', 'approved', 'alice', 'db', 0, '{created}', 2, '{record}', 0);
         INSERT INTO audit (seq, time, actor, kind, request_id, data, prev_hash, hash) VALUES {one}, {two};
         UPDATE audit_head SET seq = 2, hash = '{head}';",
        created = hallpass_store::format_time(at(0)),
        record = quote(&record_json),
        one = event_row(&first),
        two = event_row(&second),
        head = second.hash
    ));

    let store = db.open(clock.clone()).expect("open, migrating");
    let f = Fixture { clock, store, db };
    let (read, version) = f
        .store
        .read(|r| r.request("old"))
        .await
        .expect("read")
        .expect("the old record");
    assert_eq!((read, version), (record, 2));
    f.store
        .write(|w| {
            w.append_audit(AuditDraft::new(
                "bob",
                "request.approved",
                Some("old".into()),
                json!({}),
            ))
        })
        .await
        .expect("append after the upgrade");
    let events = f.store.read(|r| r.audit(0, None, 100)).await.expect("read");
    assert_eq!(events[..2], [first, second], "the old events read as written");
    let mut verifier = ChainVerifier::from_genesis();
    events.iter().for_each(|event| verifier.push(event));
    let report = verifier.finish();
    assert!(report.ok && report.last_seq == Some(3), "{report:?}");
    // The old rows are as they were; the new one is packed.
    let stored = f.db.documents("SELECT data FROM audit ORDER BY seq");
    let sizes: Vec<bool> = stored.iter().map(|(bytes, json)| *bytes == json.len()).collect();
    assert_eq!(sizes, [true, true, false], "{stored:?}");
}
