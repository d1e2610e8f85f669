//! Reading requests back: one by id, filtered lists, the requester's open
//! request or grant of a role (and that there is never a second), how many
//! grants they hold, and the pending deadlines.

use chrono::{DateTime, Utc};
use hallpass_core::RequestState;
use hallpass_core::audit::AuditDraft;
use hallpass_store::{RequestFilter, Store, StoreError};

use crate::support::{Db, Fixture, active, approved, at, break_glass, denied, expired, revoke_failed};

on_both_backends!(
    a_record_reads_back_as_written_with_its_version,
    filters_select_and_order_newest_first,
    grants_holding_access_page_newest_first_across_their_states,
    count_overdue_grants_counts_grants_holding_access_past_their_deadline,
    open_request_and_count_grants_see_the_open_record_and_the_grants,
    a_second_open_record_for_one_requester_and_role_is_refused,
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
/// At most one open request or grant per requester and role: the store
/// refuses a second (see `a_second_open_record_for_one_requester_and_role_is_refused`).
async fn seed(f: &Fixture) {
    f.put(&active("a1", "alice", "db", at(1), 3600)).await;
    f.put(&expired("a2", "alice", "db", at(2))).await;
    f.put(&denied("a3", "alice", "ssh", at(3))).await;
    f.put(&revoke_failed("b1", "bob", "db", at(4), at(600))).await;
    f.put(&approved("b2", "bob", "web", at(5))).await;
    f.put(&break_glass("b3", "bob", "ssh", at(6), false)).await;
    f.put(&break_glass("b4", "bob", "vpn", at(7), true)).await;
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
        .activate(serde_json::json!({"issuer": "test"}), 86_400, at(5))
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

/// Grants holding access are read one state at a time and merged (see
/// `requests_sql::list`): pages and cursors still run across both states.
async fn grants_holding_access_page_newest_first_across_their_states(db: Db) {
    let f = Fixture::open(db);
    seed(&f).await;
    let s = &f.store;
    let holding = |limit, before: Option<(i64, &str)>| RequestFilter {
        grants_only: true,
        holding_access: true,
        before: before.map(|(seconds, id)| (at(seconds), id.to_string())),
        limit,
        ..RequestFilter::default()
    };
    assert_eq!(list(s, holding(2, None)).await, ["b4", "b3"]);
    assert_eq!(
        list(s, holding(2, Some((6, "b3")))).await,
        ["b1", "a1"],
        "after b3: revoke_failed b1 and active a1, in order"
    );
    assert_eq!(list(s, holding(1, Some((6, "b3")))).await, ["b1"]);
    assert_eq!(list(s, holding(1, Some((4, "b1")))).await, ["a1"]);
    assert!(list(s, holding(5, Some((1, "a1")))).await.is_empty());
    let bobs = RequestFilter {
        requester: Some("bob".into()),
        ..holding(0, None)
    };
    assert_eq!(list(s, bobs).await, ["b4", "b3", "b1"]);
    let alices = RequestFilter {
        requester: Some("alice".into()),
        ..holding(0, None)
    };
    assert_eq!(list(s, alices).await, ["a1"]);
}

async fn count_overdue_grants_counts_grants_holding_access_past_their_deadline(db: Db) {
    let f = Fixture::open(db);
    f.put(&active("in-a-minute", "alice", "db", at(0), 60)).await;
    f.put(&revoke_failed("retry-at-30", "alice", "ssh", at(0), at(30)))
        .await;
    f.put(&active("in-an-hour", "bob", "db", at(0), 3600)).await;
    f.put(&approved("approved", "bob", "ssh", at(0))).await;
    f.put(&expired("ended", "carol", "db", at(0))).await;
    let overdue = |seconds| f.store.read(move |r| r.count_overdue_grants(at(seconds)));
    assert_eq!(overdue(29).await.expect("count"), 0, "an approved request is no grant");
    assert_eq!(
        overdue(30).await.expect("count"),
        1,
        "a deadline of exactly then counts"
    );
    assert_eq!(overdue(60).await.expect("count"), 2);
    assert_eq!(overdue(3600).await.expect("count"), 3);
}

async fn open_request_and_count_grants_see_the_open_record_and_the_grants(db: Db) {
    let f = Fixture::open(db);
    seed(&f).await;
    let open = |requester: &'static str, role: &'static str| {
        f.store.read(move |r| {
            r.open_request(requester, role)
                .map(|found| found.map(|(record, _)| record.id))
        })
    };
    assert_eq!(open("alice", "db").await.expect("read").as_deref(), Some("a1"));
    assert_eq!(
        open("bob", "db").await.expect("read").as_deref(),
        Some("b1"),
        "revoke_failed is still open"
    );
    assert_eq!(
        open("bob", "web").await.expect("read").as_deref(),
        Some("b2"),
        "approved is open"
    );
    assert_eq!(open("alice", "ssh").await.expect("read"), None, "denied is closed");
    assert_eq!(open("carol", "db").await.expect("read"), None);

    let grants = |requester: &'static str| f.store.read(move |r| r.count_grants(requester));
    assert_eq!(grants("alice").await.expect("read"), 1, "a1");
    assert_eq!(grants("bob").await.expect("read"), 4, "b1, b2 (approved), b3 and b4");
    assert_eq!(grants("carol").await.expect("read"), 0);
}

async fn a_second_open_record_for_one_requester_and_role_is_refused(db: Db) {
    let f = Fixture::open(db);
    f.put(&active("a1", "alice", "db", at(1), 3600)).await;
    let second = approved("a2", "alice", "db", at(2));
    let refused = f
        .store
        .write(move |w| -> Result<u64, StoreError> {
            w.append_audit(AuditDraft::new(
                "test",
                "test.put",
                Some(second.id.clone()),
                serde_json::json!({}),
            ))?;
            w.put_request(&second)
        })
        .await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    assert_eq!(
        f.store.read(|r| r.request("a2")).await.expect("read"),
        None,
        "nothing of it was written"
    );
    // Once the first closes, the pair is free again.
    let mut first = f.store.read(|r| r.request("a1")).await.expect("read").expect("a1").0;
    let by = hallpass_core::request::Decision {
        by: "hallpass".into(),
        comment: None,
        at: at(3),
    };
    first
        .finish_end(hallpass_core::request::EndKind::Release, by, at(3))
        .expect("end");
    f.put(&first).await;
    f.put(&approved("a3", "alice", "db", at(4))).await;
    let open = f.store.read(|r| r.open_request("alice", "db")).await.expect("read");
    assert_eq!(open.map(|(record, _)| record.id).as_deref(), Some("a3"));
}

async fn deadlines_list_every_pending_deadline(db: Db) {
    let f = Fixture::open(db);
    seed(&f).await;
    let mut deadlines: Vec<(DateTime<Utc>, String)> =
        f.store.read(|r| r.deadlines(None, at(1_000_000))).await.expect("read");
    deadlines.sort();
    let expected: Vec<(DateTime<Utc>, String)> = vec![
        (at(5), "b2".into()),    // approved: to be issued now
        (at(600), "b1".into()),  // the next revoke attempt
        (at(3601), "a1".into()), // expiry
        (at(3606), "b3".into()),
        (at(3607), "b4".into()),
    ];
    assert_eq!(deadlines, expected, "ended and denied requests have none");
    let mut window = f
        .store
        .read(|r| r.deadlines(Some(at(5)), at(3606)))
        .await
        .expect("read");
    window.sort();
    assert_eq!(window, expected[1..4], "after excludes, until includes");
    let overdue = f.store.read(|r| r.deadlines(None, at(600))).await.expect("read");
    assert_eq!(overdue.len(), 2, "without a start, however overdue: {overdue:?}");
}
