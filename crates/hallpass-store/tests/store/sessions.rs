//! Single sign-on sessions: one check with the identity provider at a time
//! under a lease, and the claim hands out the refresh token as it is then,
//! never one a finished check already spent.

use hallpass_store::SsoSessionRow;

use crate::support::{Db, Fixture, at};

on_both_backends!(one_check_at_a_time_and_each_gets_the_refresh_token_of_its_time,);

fn session(refresh: &str, checked: i64) -> SsoSessionRow {
    SsoSessionRow {
        token_id: "tok_1".into(),
        sealed_refresh: refresh.into(),
        checked_at: at(checked),
    }
}

async fn one_check_at_a_time_and_each_gets_the_refresh_token_of_its_time(db: Db) {
    let f = Fixture::open(db);
    let put = |row: SsoSessionRow| f.store.write(move |w| w.put_sso_session(&row));
    let claim = |due: i64, lease: i64| f.store.write(move |w| w.claim_sso_recheck("tok_1", at(due), at(lease)));
    put(session("refresh-0", 0)).await.expect("put");
    assert_eq!(
        claim(-1, 30).await.expect("claim"),
        None,
        "not due: checked after `due`"
    );
    let first = claim(0, 30).await.expect("claim").expect("due, no lease: claimed");
    assert_eq!(first.sealed_refresh, "refresh-0");
    assert_eq!(
        claim(0, 30).await.expect("claim"),
        None,
        "a second check while the lease holds"
    );
    // The first check rotates the refresh token and ends its lease.
    put(session("refresh-1", 0)).await.expect("rotate");
    let second = claim(0, 30)
        .await
        .expect("claim")
        .expect("claimed after the first ended");
    assert_eq!(second.sealed_refresh, "refresh-1", "never the spent token");
    // A check that dies leaves its lease; it lapses.
    assert_eq!(claim(0, 30).await.expect("claim"), None);
    f.advance(31);
    assert!(
        claim(31, 61).await.expect("claim").is_some(),
        "a lapsed lease is taken over"
    );
    f.store
        .write(|w| w.finish_sso_recheck("tok_1", at(31)))
        .await
        .expect("finish");
    assert_eq!(
        claim(30, 90).await.expect("claim"),
        None,
        "checked at 31: not due at 30"
    );
}
