//! Configuration documents, meta values and tokens round trip.

use chrono::{DateTime, Utc};
use hallpass_store::{ConfigKind, ConfigRow, StoreError, TokenRow};
use serde_json::json;

use crate::support::{Db, Fixture, at};

on_both_backends!(
    config_rows_round_trip_per_kind,
    put_meta_replaces_and_init_meta_keeps_the_first_value,
    tokens_round_trip_and_revoke_once,
);

const KINDS: [ConfigKind; 4] = [
    ConfigKind::Target,
    ConfigKind::Role,
    ConfigKind::ApprovalFlow,
    ConfigKind::Policy,
];

fn row(name: &str, reference: &str, document: serde_json::Value, created: DateTime<Utc>) -> ConfigRow {
    ConfigRow {
        name: name.into(),
        reference: reference.into(),
        document,
        created_at: created,
        updated_at: created,
        version: 0,
    }
}

async fn put(f: &Fixture, kind: ConfigKind, row: ConfigRow) {
    f.store
        .write(move |w| w.put_config(kind, &row))
        .await
        .expect("put_config");
}

async fn config_rows_round_trip_per_kind(db: Db) {
    let f = Fixture::open(db);
    for (index, kind) in KINDS.into_iter().enumerate() {
        // The same name in every kind: each kind is its own namespace.
        let document = json!({"kind": index, "nested": {"list": [1, "two", null]}, "unicode": "Zoë ✓"});
        put(&f, kind, row("shared", "ref", document.clone(), at(0))).await;
        put(&f, kind, row("another", "ref-2", json!({}), at(1))).await;
        let stored = f.store.read(move |r| r.config(kind, "shared")).await.expect("read");
        assert_eq!(stored, Some(row("shared", "ref", document, at(0))), "{kind:?}");
    }

    // Replacing keeps the creation time and takes everything else.
    let mut changed = row("shared", "ref-new", json!({"v": 2}), at(100));
    changed.created_at = at(50);
    put(&f, ConfigKind::Role, changed).await;
    let stored = f
        .store
        .read(|r| r.config(ConfigKind::Role, "shared"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        (
            stored.reference.as_str(),
            &stored.document,
            stored.created_at,
            stored.updated_at
        ),
        ("ref-new", &json!({"v": 2}), at(0), at(100))
    );

    let names: Vec<String> = f
        .store
        .read(|r| r.configs(ConfigKind::Target))
        .await
        .expect("read")
        .into_iter()
        .map(|row| row.name)
        .collect();
    assert_eq!(names, ["another", "shared"], "sorted by name");
    let roles = f.store.read(|r| r.roles_of_target("ref-2")).await.expect("read");
    assert_eq!(roles, ["another"], "roles point at targets through `reference`");

    let delete = |kind, name: &'static str| f.store.write(move |w| w.delete_config(kind, name));
    assert!(delete(ConfigKind::Policy, "shared").await.expect("delete"));
    assert!(
        !delete(ConfigKind::Policy, "shared").await.expect("delete"),
        "already gone"
    );
    assert_eq!(
        f.store
            .read(|r| r.config(ConfigKind::Policy, "shared"))
            .await
            .expect("read"),
        None
    );
    assert!(
        f.store
            .read(|r| r.config(ConfigKind::Target, "shared"))
            .await
            .expect("read")
            .is_some(),
        "other kinds keep theirs"
    );
}

async fn put_meta_replaces_and_init_meta_keeps_the_first_value(db: Db) {
    let f = Fixture::open(db);
    let meta = |key: &'static str| f.store.read(move |r| r.meta(key));
    assert_eq!(meta("k").await.expect("read"), None);

    let first = f.store.write(|w| w.init_meta("k", "first")).await.expect("init");
    assert_eq!(first, "first");
    let second = f.store.write(|w| w.init_meta("k", "second")).await.expect("init");
    assert_eq!(second, "first", "the first value wins and is returned");

    f.store.write(|w| w.put_meta("k", "replaced")).await.expect("put");
    assert_eq!(meta("k").await.expect("read").as_deref(), Some("replaced"));

    // Servers racing to initialise: all end up with one value.
    let replica = f.peer();
    let racers = (0..8).map(|i| {
        let store = if i % 2 == 0 { f.store.clone() } else { replica.clone() };
        tokio::spawn(async move { store.write(move |w| w.init_meta("raced", &format!("value-{i}"))).await })
    });
    let mut values = Vec::new();
    for racer in racers.collect::<Vec<_>>() {
        values.push(racer.await.expect("task").expect("init"));
    }
    values.dedup();
    assert_eq!(values.len(), 1, "{values:?}");
    assert_eq!(meta("raced").await.expect("read"), values.pop());
}

async fn tokens_round_trip_and_revoke_once(db: Db) {
    let f = Fixture::open(db);
    let token = TokenRow {
        id: "tok1".into(),
        secret_hash: "ab".repeat(32),
        principal: "alice".into(),
        groups: vec!["admins".into(), "ops".into()],
        created_at: at(0),
        created_by: "bootstrap".into(),
        expires_at: Some(at(3600)),
        revoked_at: None,
    };
    let inserted = token.clone();
    f.store.write(move |w| w.insert_token(&inserted)).await.expect("insert");
    let duplicate = token.clone();
    let again = f.store.write(move |w| w.insert_token(&duplicate)).await;
    assert!(again.is_err(), "a token id is unique");

    let hash = token.secret_hash.clone();
    let found = f.store.read(move |r| r.token_by_hash(&hash)).await.expect("read");
    assert_eq!(found.as_ref(), Some(&token));
    assert_eq!(f.store.read(|r| r.token_by_hash("00")).await.expect("read"), None);

    let revoke = || f.store.write(|w| w.revoke_token("tok1", at(10)));
    assert!(revoke().await.expect("revoke"));
    assert!(!revoke().await.expect("revoke"), "already revoked");
    let tokens = f.store.read(|r| r.tokens()).await.expect("read");
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].revoked_at, Some(at(10)));
    assert_eq!(f.store.read(|r| r.count_tokens()).await.expect("read"), 1);
    let missing: Result<bool, StoreError> = f.store.write(|w| w.revoke_token("nope", at(10))).await;
    assert!(!missing.expect("revoke"), "no such token");
}
