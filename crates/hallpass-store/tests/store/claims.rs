//! Claims and leases: how servers share due work without doing it twice.

use std::collections::HashSet;

use chrono::Duration;
use hallpass_store::StoreError;

use crate::support::{Db, Fixture, active, approved, at, claim_due, denied, expired};

on_both_backends!(
    claim_due_takes_the_earliest_due_unclaimed_records_up_to_the_limit,
    a_claim_hides_the_record_until_its_lease_lapses_even_from_its_owner,
    writing_a_record_releases_its_claim,
    claiming_one_record_holds_it_for_the_lease,
    release_all_claims_frees_every_claim,
    claiming_a_record_that_does_not_exist_claims_nothing,
);

async fn claim_due_takes_the_earliest_due_unclaimed_records_up_to_the_limit(db: Db) {
    let f = Fixture::open(db);
    // Written in an order unlike their deadlines'.
    f.put(&approved("due-3s-ago", "alice", "due-3s-ago", at(-3))).await;
    f.put(&active("due-in-1h", "alice", "due-in-1h", at(0), 3600)).await;
    f.put(&approved("due-1s-ago", "alice", "due-1s-ago", at(-1))).await;
    f.put(&denied("never-due", "alice", "db", at(-10))).await;
    f.put(&expired("ended", "alice", "db", at(-20))).await;
    f.put(&approved("due-2s-ago", "alice", "due-2s-ago", at(-2))).await;
    f.put(&approved("due-now", "alice", "due-now", at(0))).await;

    let mut first = f.claim_due("server-a", 60, 2).await;
    first.sort();
    assert_eq!(first, ["due-2s-ago", "due-3s-ago"], "the two earliest deadlines");
    let mut rest = f.claim_due("server-a", 60, 10).await;
    rest.sort();
    assert_eq!(
        rest,
        ["due-1s-ago", "due-now"],
        "the remaining due ones (a deadline of exactly now is due); nothing claimed, ended or in the future"
    );
    assert!(f.claim_due("server-a", 60, 10).await.is_empty());

    f.clock.advance(Duration::hours(1));
    let mut later = f.claim_due("server-b", 60, 10).await;
    later.sort();
    assert_eq!(
        later,
        ["due-1s-ago", "due-2s-ago", "due-3s-ago", "due-in-1h", "due-now"],
        "an hour on, the grant is due and every earlier lease has lapsed"
    );
}

async fn a_claim_hides_the_record_until_its_lease_lapses_even_from_its_owner(db: Db) {
    let f = Fixture::open(db);
    f.put(&approved("r1", "alice", "r1", at(0))).await;
    assert_eq!(f.claim_due("server-a", 60, 10).await, ["r1"]);

    assert!(
        f.claim_due("server-a", 60, 10).await.is_empty(),
        "the owner does not get it again: work that failed without writing must not spin"
    );
    assert!(
        f.claim_due("server-b", 60, 10).await.is_empty(),
        "another server does not get it"
    );
    f.advance(60);
    assert!(
        f.claim_due("server-b", 60, 10).await.is_empty(),
        "a lease ending exactly now still holds"
    );
    f.advance(1);
    assert_eq!(
        f.claim_due("server-b", 60, 10).await,
        ["r1"],
        "the lapsed lease is taken over"
    );
    assert!(
        f.claim_due("server-a", 60, 10).await.is_empty(),
        "and held by the new owner"
    );
}

async fn writing_a_record_releases_its_claim(db: Db) {
    let f = Fixture::open(db);
    let record = approved("r1", "alice", "r1", at(0));
    f.put(&record).await;
    assert_eq!(f.claim_due("server-a", 600, 10).await, ["r1"]);

    // Still due after the write (e.g. a failed step recorded): claimable
    // again at once, without waiting for the lease.
    f.put(&record).await;
    assert_eq!(f.claim_due("server-b", 600, 10).await, ["r1"]);
}

async fn claiming_one_record_holds_it_for_the_lease(db: Db) {
    let f = Fixture::open(db);
    f.put(&approved("r1", "alice", "r1", at(0))).await;
    f.put(&approved("r2", "alice", "r2", at(0))).await;
    f.store
        .write(|w| w.claim("r1", "server-a", Duration::seconds(30)))
        .await
        .expect("claim");

    assert_eq!(f.claim_due("server-b", 60, 10).await, ["r2"], "r1 is taken");
    f.advance(31);
    assert_eq!(f.claim_due("server-b", 60, 10).await, ["r1"], "its lease lapsed");
}

async fn release_all_claims_frees_every_claim(db: Db) {
    let f = Fixture::open(db);
    for id in ["r1", "r2", "r3"] {
        f.put(&approved(id, "alice", id, at(0))).await;
    }
    assert_eq!(f.claim_due("server-a", 3600, 2).await.len(), 2);
    let released = f.store.write(|w| w.release_all_claims()).await.expect("release");
    assert_eq!(released, 2, "only the claimed rows count");

    let mut all = f.claim_due("server-b", 3600, 10).await;
    all.sort();
    assert_eq!(all, ["r1", "r2", "r3"]);
}

async fn claiming_a_record_that_does_not_exist_claims_nothing(db: Db) {
    let f = Fixture::open(db);
    f.store
        .write(|w| w.claim("ghost", "server-a", Duration::seconds(30)))
        .await
        .expect("claim");
    assert!(f.db.strings("SELECT request_id FROM claims").is_empty());

    // A record created later under that id starts unclaimed.
    f.put(&approved("ghost", "alice", "ghost", at(0))).await;
    assert_eq!(f.claim_due("server-b", 60, 10).await, ["ghost"]);
}

/// On PostgreSQL, claiming a due grant used to write a new version of its
/// request's row (the whole record, and an entry in most of its indexes)
/// before ending it did the same again. A claim now leaves the row alone:
/// its `xmin`, the transaction that wrote the version, stays the same,
/// and the claim sits in `claims` until the record is written.
mod claiming_leaves_the_request_row_as_it_was {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::claiming_leaves_the_request_row_as_it_was(super::Db::postgres()).await;
    }
}

async fn claiming_leaves_the_request_row_as_it_was(db: Db) {
    let f = Fixture::open(db);
    f.put(&approved("r1", "alice", "r1", at(0))).await;
    f.put(&approved("r2", "alice", "r2", at(0))).await;
    let versions = || {
        f.db.strings("SELECT id || ' ' || CAST(xmin AS TEXT) FROM requests ORDER BY id")
    };
    let before = versions();

    assert_eq!(f.claim_due("server-a", 60, 1).await.len(), 1);
    f.store
        .write(|w| w.claim("r2", "server-a", Duration::seconds(60)))
        .await
        .expect("claim");
    assert_eq!(versions(), before, "no request row was rewritten");
    assert_eq!(
        f.db.strings("SELECT request_id || ' ' || claimed_by FROM claims ORDER BY request_id"),
        ["r1 server-a", "r2 server-a"]
    );

    f.put(&approved("r1", "alice", "r1", at(0))).await;
    assert_eq!(
        f.db.strings("SELECT request_id FROM claims"),
        ["r2"],
        "writing r1 released its claim, and only its"
    );
}

/// Only PostgreSQL serves several replicas.
mod replicas_claiming_at_once_never_get_the_same_record {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        super::replicas_claiming_at_once_never_get_the_same_record(super::Db::postgres()).await;
    }
}

/// Two stores on one database (two replicas), 50 claimers in all, at
/// once: every due record is claimed exactly once.
async fn replicas_claiming_at_once_never_get_the_same_record(db: Db) {
    const RECORDS: usize = 300;
    let f = Fixture::open(db);
    let replica = f.replica();
    f.store
        .write(|w| -> Result<(), StoreError> {
            for i in 0..RECORDS {
                let id = format!("r{i:03}");
                w.put_request(&approved(&id, "alice", &id, at(-(i as i64))))?;
            }
            Ok(())
        })
        .await
        .expect("seed");

    let claimers = (0..50).map(|i| {
        let store = if i % 2 == 0 { f.store.clone() } else { replica.clone() };
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = claim_due(&store, &format!("claimer-{i}"), 3600, 7).await;
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got);
            }
        })
    });
    let mut seen = HashSet::new();
    let mut total = 0;
    for claimer in claimers.collect::<Vec<_>>() {
        for id in claimer.await.expect("claimer") {
            total += 1;
            assert!(seen.insert(id.clone()), "{id} was claimed twice");
        }
    }
    assert_eq!(total, RECORDS, "every due record was claimed");
    replica.close();
}
