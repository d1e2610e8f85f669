//! What authentication reads of a token (`Store::token_for_auth`): on
//! SQLite it may come from memory, and must still show every change to the
//! token or its principal's lock as soon as the change has returned, here
//! and (PostgreSQL) on another replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hallpass_store::{LockRow, Store, TokenRow};

use crate::support::{Db, Fixture, at};

on_both_backends!(
    authentication_sees_each_change_once_it_has_returned,
    fifty_callers_never_pass_with_a_token_revoked_before_they_asked,
);

fn token(id: &str, principal: &str) -> TokenRow {
    TokenRow {
        id: id.into(),
        secret_hash: format!("{id:0>64}"),
        principal: principal.into(),
        groups: vec!["ops".into()],
        created_at: at(0),
        created_by: "bootstrap".into(),
        expires_at: None,
        revoked_at: None,
    }
}

async fn insert(store: &Store, row: &TokenRow) {
    let row = row.clone();
    store
        .write(move |w| w.insert_token(&row))
        .await
        .expect("insert the token");
}

/// The token as authentication sees it: (groups, expiry, revoked, locked).
async fn seen(store: &Store, hash: &str) -> (Vec<String>, Option<String>, bool, bool) {
    let (row, locked) = store
        .token_for_auth(hash)
        .await
        .expect("look the token up")
        .expect("the token exists");
    (
        row.groups,
        row.expires_at.map(|at| at.to_rfc3339()),
        row.revoked_at.is_some(),
        locked,
    )
}

async fn authentication_sees_each_change_once_it_has_returned(db: Db) {
    let f = Fixture::open(db);
    // On PostgreSQL the changes come from another replica.
    let other = f.peer();
    let row = token("t1", "alice");
    insert(&f.store, &row).await;
    let hash = row.secret_hash.as_str();
    assert_eq!(f.store.token_for_auth(&"f".repeat(64)).await.expect("look up"), None);
    let expiry = Some(at(600).to_rfc3339());

    // Each time: seen once (so a cache would hold it), changed, seen again.
    assert_eq!(seen(&f.store, hash).await, (vec!["ops".into()], None, false, false));
    let changed = other.write(|w| w.set_token_groups("t1", &["dba".into()])).await;
    assert!(changed.expect("set groups"));
    assert_eq!(seen(&f.store, hash).await, (vec!["dba".into()], None, false, false));

    let changed = other.write(|w| w.set_token_expiry("t1", at(600))).await;
    assert!(changed.expect("set expiry"));
    assert_eq!(
        seen(&f.store, hash).await,
        (vec!["dba".into()], expiry.clone(), false, false)
    );

    let lock = LockRow {
        principal: "alice".into(),
        reason: "incident".into(),
        locked_by: "root".into(),
        locked_at: at(1),
    };
    other.write(move |w| w.put_lock(&lock)).await.expect("lock");
    assert_eq!(
        seen(&f.store, hash).await,
        (vec!["dba".into()], expiry.clone(), false, true)
    );
    let unlocked = other.write(|w| w.delete_lock("alice")).await;
    assert!(unlocked.expect("unlock"));
    assert_eq!(
        seen(&f.store, hash).await,
        (vec!["dba".into()], expiry.clone(), false, false)
    );

    let revoked = other.write(|w| w.revoke_token("t1", at(2))).await;
    assert!(revoked.expect("revoke"));
    assert_eq!(
        seen(&f.store, hash).await,
        (vec!["dba".into()], expiry.clone(), true, false)
    );

    // Revoking every token of a principal (what a lock does).
    let second = token("t2", "bob");
    insert(&f.store, &second).await;
    assert!(!seen(&f.store, &second.secret_hash).await.2);
    let ids = other
        .write(|w| w.revoke_tokens_of("bob", at(3)))
        .await
        .expect("revoke bob's tokens");
    assert_eq!(ids, vec!["t2".to_string()]);
    assert!(seen(&f.store, &second.secret_hash).await.2, "bob's token is revoked");
}

/// The attacker's view of a cache: a token is revoked while 50 callers use
/// it. A call may still pass while the revocation is in flight, but none
/// that started after it returned.
async fn fifty_callers_never_pass_with_a_token_revoked_before_they_asked(db: Db) {
    let f = Fixture::open(db);
    let other = f.peer();
    for round in 0..10 {
        let row = token(&format!("r{round}"), "alice");
        insert(&f.store, &row).await;
        let revoked = Arc::new(AtomicBool::new(false));
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let (store, revoked, hash) = (f.store.clone(), revoked.clone(), row.secret_hash.clone());
                tokio::spawn(async move {
                    let mut late_passes = 0;
                    // Until a few look-ups after the revocation returned.
                    let mut after = 0;
                    while after < 5 {
                        let asked_after_revocation = revoked.load(Ordering::SeqCst);
                        let found = store.token_for_auth(&hash).await.expect("look up").expect("exists");
                        if asked_after_revocation {
                            after += 1;
                            if found.0.revoked_at.is_none() {
                                late_passes += 1;
                            }
                        }
                        tokio::task::yield_now().await;
                    }
                    late_passes
                })
            })
            .collect();
        // Let the callers fill any cache first.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let id = row.id.clone();
        let done = other.write(move |w| w.revoke_token(&id, at(5))).await;
        assert!(done.expect("revoke"));
        revoked.store(true, Ordering::SeqCst);
        let mut late = 0;
        for caller in callers {
            late += caller.await.expect("caller");
        }
        assert_eq!(
            late, 0,
            "round {round}: look-ups that began after the revocation saw it live"
        );
    }
}
