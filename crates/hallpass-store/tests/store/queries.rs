//! Reading requests back: one by id, filtered lists, the requester's active
//! grant, how many grants hold access, and the pending deadlines.

use chrono::{DateTime, Utc};
use hallpass_core::RequestState;
use hallpass_store::{RequestFilter, Store};

use crate::support::{Db, Fixture, active, approved, at, break_glass, denied, expired, revoke_failed};

on_both_backends!(
    a_record_reads_back_as_written_with_its_version,
    filters_select_and_order_newest_first,
    active_grant_and_count_holding_see_only_grants_that_hold_access,
    deadlines_list_every_pending_deadline,
);

/// Seven requests, one per second from t0 (so a1 is the oldest):
///
/// | id | requester | role | state                | activated | review       |
/// |----|-----------|------|----------------------|-----------|--------------|
/// | a1 | alice     | db   | active (1h)          | yes       |              |
/// | a2 | alice     | db   | expired              | yes       |              |
/// | a3 | alice     | ssh  | denied               | no        |              |
/// | b1 | bob       | db   | revoke_failed        | yes       |              |
/// | b2 | bob       | db   | approved             | no        |              |
/// | b3 | bob       | ssh  | active (break-glass) | yes       | open         |
/// | b4 | bob       | ssh  | active (break-glass) | yes       | acknowledged |
async fn seed(f: &Fixture) {
    f.put(&active("a1", "alice", "db", at(1), 3600)).await;
    f.put(&expired("a2", "alice", "db", at(2))).await;
    f.put(&denied("a3", "alice", "ssh", at(3))).await;
    f.put(&revoke_failed("b1", "bob", "db", at(4), at(600))).await;
    f.put(&approved("b2", "bob", "db", at(5))).await;
    f.put(&break_glass("b3", "bob", "ssh", at(6), false)).await;
    f.put(&break_glass("b4", "bob", "ssh", at(7), true)).await;
}

async fn list(store: &Store, filter: RequestFilter) -> Vec<String> {
    let records = store.read(move |r| r.requests(&filter)).await.expect("requests");
    records.into_iter().map(|(record, _)| record.id).collect()
}

async fn a_record_reads_back_as_written_with_its_version(db: Db) {
    let f = Fixture::open(db);
    let first = approved("r1", "alice", "db", at(0));
    let version = f.put(&first).await;
    let (stored, stored_version) = f
        .store
        .read(|r| r.request("r1"))
        .await
        .expect("read")
        .expect("r1 exists");
    assert_eq!((stored, stored_version), (first.clone(), version));

    let mut second = first;
    second
        .activate(serde_json::json!({"issuer": "test"}), at(5))
        .expect("activate");
    let newer = f.put(&second).await;
    assert!(
        newer > version,
        "each write gets a newer version ({newer} after {version})"
    );
    let stored = f.store.read(|r| r.request("r1")).await.expect("read");
    assert_eq!(stored, Some((second, newer)), "replaced in place");
    assert_eq!(f.store.read(|r| r.request("nope")).await.expect("read"), None);
}

async fn filters_select_and_order_newest_first(db: Db) {
    let f = Fixture::open(db);
    seed(&f).await;
    let s = &f.store;
    let all = RequestFilter::default;

    assert_eq!(list(s, all()).await, ["b4", "b3", "b2", "b1", "a3", "a2", "a1"]);
    let state = |state| RequestFilter {
        state: Some(state),
        ..all()
    };
    assert_eq!(list(s, state(RequestState::Active)).await, ["b4", "b3", "a1"]);
    assert_eq!(list(s, state(RequestState::RevokeFailed)).await, ["b1"]);
    assert!(list(s, state(RequestState::Pending)).await.is_empty());
    let alice = RequestFilter {
        requester: Some("alice".into()),
        ..all()
    };
    assert_eq!(list(s, alice).await, ["a3", "a2", "a1"]);
    let grants = RequestFilter {
        grants_only: true,
        ..all()
    };
    assert_eq!(list(s, grants).await, ["b4", "b3", "b1", "a2", "a1"], "ever activated");
    let holding = RequestFilter {
        holding_access: true,
        ..all()
    };
    assert_eq!(
        list(s, holding).await,
        ["b4", "b3", "b1", "a1"],
        "active or revoke_failed"
    );
    let open_reviews = RequestFilter {
        review_open: Some(true),
        ..all()
    };
    assert_eq!(list(s, open_reviews).await, ["b3"]);
    let any_review = RequestFilter {
        review_open: Some(false),
        ..all()
    };
    assert_eq!(list(s, any_review).await, ["b4", "b3"], "open or acknowledged");
    let newest_two = RequestFilter { limit: 2, ..all() };
    assert_eq!(list(s, newest_two).await, ["b4", "b3"]);
    let combined = RequestFilter {
        requester: Some("bob".into()),
        holding_access: true,
        state: Some(RequestState::Active),
        limit: 1,
        ..all()
    };
    assert_eq!(list(s, combined).await, ["b4"], "filters combine with AND");
}

async fn active_grant_and_count_holding_see_only_grants_that_hold_access(db: Db) {
    let f = Fixture::open(db);
    seed(&f).await;
    // A second, newer active grant of the same role.
    f.put(&active("a9", "alice", "db", at(9), 3600)).await;
    let grant = |requester: &'static str, role: &'static str| {
        f.store.read(move |r| {
            r.active_grant(requester, role)
                .map(|found| found.map(|(record, _)| record.id))
        })
    };
    assert_eq!(
        grant("alice", "db").await.expect("read").as_deref(),
        Some("a9"),
        "the newest"
    );
    assert_eq!(
        grant("bob", "db").await.expect("read"),
        None,
        "revoke_failed holds access but is not an active grant; approved is not one yet"
    );
    assert_eq!(grant("bob", "ssh").await.expect("read").as_deref(), Some("b4"));
    assert_eq!(grant("alice", "ssh").await.expect("read"), None);
    assert_eq!(grant("carol", "db").await.expect("read"), None);

    let holding = |requester: &'static str| f.store.read(move |r| r.count_holding(requester));
    assert_eq!(holding("alice").await.expect("read"), 2, "a1 and a9");
    assert_eq!(holding("bob").await.expect("read"), 3, "b1, b3 and b4");
    assert_eq!(holding("carol").await.expect("read"), 0);
}

async fn deadlines_list_every_pending_deadline(db: Db) {
    let f = Fixture::open(db);
    seed(&f).await;
    let mut deadlines: Vec<(DateTime<Utc>, String)> = f.store.read(|r| r.deadlines()).await.expect("read");
    deadlines.sort();
    let expected: Vec<(DateTime<Utc>, String)> = vec![
        (at(5), "b2".into()),    // approved: to be issued now
        (at(600), "b1".into()),  // the next revoke attempt
        (at(3601), "a1".into()), // expiry
        (at(3606), "b3".into()),
        (at(3607), "b4".into()),
    ];
    assert_eq!(deadlines, expected, "ended and denied requests have none");
}
