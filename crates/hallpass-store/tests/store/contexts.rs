//! The one-statement reads of a call's context: a role with its target, the
//! target's secrets, the requester's open record and a meta value; a
//! request with its role, that role's target and the target's secrets.
//! Each must return exactly what the row-by-row reads would.

use hallpass_store::{ConfigKind, ConfigRow, SecretRow, Store};
use serde_json::json;

use crate::support::{Db, Fixture, active, at, expired};

on_both_backends!(
    a_role_reads_with_its_target_secrets_open_record_and_meta,
    a_role_without_target_or_secrets_reads_with_none,
    a_request_reads_with_its_role_target_and_secrets,
    a_request_whose_role_is_gone_reads_with_none,
);

fn config(name: &str, reference: &str) -> ConfigRow {
    ConfigRow {
        name: name.into(),
        reference: reference.into(),
        document: json!({"name": name, "refers_to": reference}),
        created_at: at(0),
        updated_at: at(1),
        version: 0,
    }
}

fn secret(target: &str, name: &str) -> SecretRow {
    SecretRow {
        target: target.into(),
        name: name.into(),
        sealed: format!("sealed {target}/{name}"),
        updated_at: at(2),
    }
}

/// Role `db` on target `db-target` with secrets `b_key` and `a_key` (put in
/// that order), another target with a secret of its own, and a role `bare`
/// whose target does not exist.
async fn seed_config(store: &Store) {
    store
        .write(|w| {
            w.put_config(ConfigKind::Target, &config("db-target", ""))?;
            w.put_config(ConfigKind::Target, &config("other-target", ""))?;
            w.put_config(ConfigKind::Role, &config("db", "db-target"))?;
            w.put_config(ConfigKind::Role, &config("bare", "missing-target"))?;
            w.put_target_secret(&secret("db-target", "b_key"))?;
            w.put_target_secret(&secret("db-target", "a_key"))?;
            w.put_target_secret(&secret("other-target", "c_key"))?;
            w.put_meta("policy_set_hash", "abc")
        })
        .await
        .expect("seed");
}

/// The role `db` as [`seed_config`] made it, with its target and their
/// secrets in name order, as the row-by-row reads see them.
async fn assert_db_role(
    store: &Store,
    (role, target, secrets): (Option<ConfigRow>, Option<ConfigRow>, Vec<SecretRow>),
) {
    assert_eq!(role, read_config(store, ConfigKind::Role, "db").await);
    assert_eq!(target, read_config(store, ConfigKind::Target, "db-target").await);
    assert_eq!(
        secrets,
        vec![secret("db-target", "a_key"), secret("db-target", "b_key")]
    );
}

/// What the row-by-row reads say about a config row.
async fn read_config(store: &Store, kind: ConfigKind, name: &'static str) -> Option<ConfigRow> {
    store.read(move |r| r.config(kind, name)).await.expect("config")
}

async fn a_role_reads_with_its_target_secrets_open_record_and_meta(db: Db) {
    let f = Fixture::open(db);
    seed_config(&f.store).await;
    f.put(&expired("old", "alice", "db", at(1))).await;
    let version = f.put(&active("a1", "alice", "db", at(2), 3600)).await;
    f.put(&active("b1", "bob", "web", at(3), 3600)).await;

    let found = f
        .store
        .read(|r| r.role_with_context("db", "alice", "policy_set_hash"))
        .await
        .expect("read")
        .expect("role db exists");
    assert_db_role(&f.store, (Some(found.role), found.target, found.target_secrets)).await;
    let (open, open_version) = found.open.expect("alice's open grant of db");
    assert_eq!((open.id.as_str(), open_version), ("a1", version));
    assert_eq!(found.meta_value.as_deref(), Some("abc"));

    let bob = f
        .store
        .read(|r| r.role_with_context("db", "bob", "no_such_key"))
        .await
        .expect("read")
        .expect("role db exists");
    assert!(bob.open.is_none(), "bob's open grant is of another role");
    assert_eq!(bob.meta_value, None);
    assert_eq!(bob.target_secrets.len(), 2);

    let missing = f
        .store
        .read(|r| r.role_with_context("nope", "alice", "policy_set_hash"))
        .await
        .expect("read");
    assert!(missing.is_none(), "{missing:?}");
}

async fn a_role_without_target_or_secrets_reads_with_none(db: Db) {
    let f = Fixture::open(db);
    seed_config(&f.store).await;
    let bare = f
        .store
        .read(|r| r.role_with_context("bare", "alice", "policy_set_hash"))
        .await
        .expect("read")
        .expect("role bare exists");
    assert_eq!(bare.role.name, "bare");
    assert_eq!(bare.target, None);
    assert!(bare.target_secrets.is_empty());
    assert!(bare.open.is_none());
}

async fn a_request_reads_with_its_role_target_and_secrets(db: Db) {
    let f = Fixture::open(db);
    seed_config(&f.store).await;
    let version = f.put(&active("a1", "alice", "db", at(2), 3600)).await;
    let found = f
        .store
        .read(|r| r.request_with_role("a1"))
        .await
        .expect("read")
        .expect("a1 exists");
    let (record, stored_version) = f.store.read(|r| r.request("a1")).await.expect("read").expect("a1");
    assert_eq!((found.record, found.version), (record, stored_version));
    assert_eq!(found.version, version);
    assert_db_role(&f.store, (found.role, found.target, found.target_secrets)).await;

    let missing = f.store.read(|r| r.request_with_role("nope")).await.expect("read");
    assert!(missing.is_none(), "{missing:?}");
}

async fn a_request_whose_role_is_gone_reads_with_none(db: Db) {
    let f = Fixture::open(db);
    seed_config(&f.store).await;
    f.put(&active("w1", "alice", "web", at(2), 3600)).await;
    let found = f
        .store
        .read(|r| r.request_with_role("w1"))
        .await
        .expect("read")
        .expect("w1 exists");
    assert_eq!(found.record.id, "w1");
    assert_eq!((found.role, found.target), (None, None));
    assert!(found.target_secrets.is_empty());
}
