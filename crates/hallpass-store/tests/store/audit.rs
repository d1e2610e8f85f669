//! The audit log: appends chain onto the head, commit with their closure or
//! not at all, and read back by position and by request.

use hallpass_core::audit::{AuditDraft, AuditEvent, ChainVerifier};
use hallpass_store::{StoreError, format_time};
use serde_json::json;

use crate::support::{Db, Fixture, active, at, expired};

on_both_backends!(
    appends_chain_across_writes_and_reopening,
    a_failed_closure_leaves_no_audit_event,
    audit_reads_by_position_request_and_limit,
    a_batch_of_ends_is_one_insert_and_one_upsert_with_each_record_at_its_own_event,
);

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

async fn append(f: &Fixture, events: Vec<(&'static str, Option<&'static str>)>) -> Vec<AuditEvent> {
    f.store
        .write(move |w| -> Result<Vec<AuditEvent>, StoreError> {
            events
                .into_iter()
                .map(|(kind, request)| {
                    w.append_audit(AuditDraft::new(
                        "alice",
                        kind,
                        request.map(String::from),
                        json!({"k": kind}),
                    ))
                })
                .collect()
        })
        .await
        .expect("append")
}

async fn appends_chain_across_writes_and_reopening(db: Db) {
    let f = Fixture::open(db);
    let first = append(&f, vec![("one", None), ("two", Some("r1"))]).await;
    f.advance(5);
    let second = append(&f, vec![("three", None)]).await;

    assert_eq!(first[0].seq, 1);
    assert_eq!(first[0].prev_hash, GENESIS, "the chain starts at the genesis hash");
    assert_eq!(first[1].prev_hash, first[0].hash);
    assert_eq!(
        (second[0].seq, second[0].prev_hash.as_str()),
        (3, first[1].hash.as_str())
    );
    assert_eq!(
        first[0].time,
        format_time(crate::support::at(0)),
        "stamped by the store's clock"
    );
    assert_eq!(second[0].time, format_time(crate::support::at(5)));

    let stored = f.store.read(|r| r.audit(0, None, 100)).await.expect("read");
    let written: Vec<AuditEvent> = first.into_iter().chain(second).collect();
    assert_eq!(stored, written, "what the closures got is what was stored");
    assert_eq!(f.store.read(|r| r.audit_head_seq()).await.expect("read"), 3);
    assert_eq!(*f.store.changes().borrow(), 3, "the change counter follows the head");

    // After a restart the chain continues where it ended.
    let f = f.reopen();
    append(&f, vec![("four", None)]).await;
    let events = f.store.read(|r| r.audit(0, None, 100)).await.expect("read");
    let mut verifier = ChainVerifier::from_genesis();
    events.iter().for_each(|event| verifier.push(event));
    let report = verifier.finish();
    assert!(report.ok && report.last_seq == Some(4), "{report:?}");
}

async fn a_failed_closure_leaves_no_audit_event(db: Db) {
    let f = Fixture::open(db);
    append(&f, vec![("kept", None)]).await;
    let failed = f
        .store
        .write(|w| -> Result<(), StoreError> {
            w.append_audit(AuditDraft::new("alice", "lost", None, json!({})))?;
            w.put_meta("lost", "yes")?;
            Err(StoreError::Config("refused".into()))
        })
        .await;
    assert!(matches!(failed, Err(StoreError::Config(_))), "{failed:?}");
    let after = append(&f, vec![("next", None)]).await;
    assert_eq!(after[0].seq, 2, "the failed closure's event left no gap");

    let kinds: Vec<String> = f
        .store
        .read(|r| r.audit(0, None, 100))
        .await
        .expect("read")
        .into_iter()
        .map(|event| event.kind)
        .collect();
    assert_eq!(kinds, ["kept", "next"]);
    assert_eq!(
        f.store.read(|r| r.meta("lost")).await.expect("read"),
        None,
        "nor any other change"
    );
}

async fn audit_reads_by_position_request_and_limit(db: Db) {
    let f = Fixture::open(db);
    append(
        &f,
        vec![
            ("a", Some("r1")),
            ("b", None),
            ("c", Some("r2")),
            ("d", Some("r1")),
            ("e", Some("r1")),
            ("f", None),
        ],
    )
    .await;
    let read = |since: u64, request: Option<&'static str>, limit: u32| {
        f.store.read(move |r| {
            r.audit(since, request, limit)
                .map(|events| events.into_iter().map(|e| e.seq).collect::<Vec<_>>())
        })
    };
    assert_eq!(read(0, None, 100).await.expect("read"), [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        read(2, None, 100).await.expect("read"),
        [3, 4, 5, 6],
        "strictly after `since`"
    );
    assert_eq!(read(2, None, 2).await.expect("read"), [3, 4], "the oldest `limit`");
    assert_eq!(read(0, Some("r1"), 100).await.expect("read"), [1, 4, 5]);
    assert_eq!(read(1, Some("r1"), 1).await.expect("read"), [4]);
    assert!(read(6, None, 100).await.expect("read").is_empty());
    assert!(read(0, Some("r9"), 100).await.expect("read").is_empty());
}

/// `append_audits` and `put_requests`, as a batch of expiries uses them:
/// the events chain in order from the head, each record's version is its
/// own event, claims are released, and an id twice is refused with
/// nothing written.
async fn a_batch_of_ends_is_one_insert_and_one_upsert_with_each_record_at_its_own_event(db: Db) {
    let f = Fixture::open(db);
    for id in ["r1", "r2", "r3"] {
        f.put(&active(id, id, "db", at(0), 60)).await;
    }
    f.advance(61);
    assert_eq!(f.claim_due("server-a", 600, 10).await, ["r1", "r2", "r3"]);
    let head = f.store.read(|r| r.audit_head_seq()).await.expect("read");

    let ended: Vec<_> = ["r1", "r2", "r3"]
        .iter()
        .map(|id| expired(id, id, "db", at(61)))
        .collect();
    let written = ended.clone();
    let events = f
        .store
        .write(move |w| -> Result<Vec<AuditEvent>, StoreError> {
            let drafts = written
                .iter()
                .map(|r| AuditDraft::new("hallpass", "grant.expired", Some(r.id.clone()), json!({})))
                .collect();
            let events = w.append_audits(drafts)?;
            let records: Vec<_> = written.iter().zip(&events).map(|(r, e)| (r, e.seq)).collect();
            w.put_requests(&records)?;
            Ok(events)
        })
        .await
        .expect("batch");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![head + 1, head + 2, head + 3]);
    for (record, event) in ended.iter().zip(&events) {
        let id = record.id.clone();
        let (stored, version) = f
            .store
            .read(move |r| r.request(&id))
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(stored.state, record.state);
        assert_eq!(version, event.seq, "{}: its version is its own event", record.id);
    }
    let stored = f.store.read(|r| r.audit(0, None, 100)).await.expect("read");
    let mut verifier = ChainVerifier::from_genesis();
    stored.iter().for_each(|event| verifier.push(event));
    assert!(verifier.finish().ok);
    f.advance(600);
    assert!(
        f.claim_due("server-b", 600, 10).await.is_empty(),
        "ended: nothing due, no claim left"
    );

    let twice = [expired("r1", "r1", "db", at(62)), expired("r1", "r1", "db", at(63))];
    let refused = f
        .store
        .write(move |w| {
            let records: Vec<_> = twice.iter().map(|r| (r, 1_000)).collect();
            w.put_requests(&records)
        })
        .await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
}
