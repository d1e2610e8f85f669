//! The writer's group commit: many closures share a transaction, yet each
//! one commits or rolls back on its own, with its audit events.

use std::sync::Arc;

use hallpass_core::SystemClock;
use hallpass_core::audit::{AuditDraft, ChainVerifier};
use hallpass_store::{Store, StoreError};
use serde_json::json;

#[derive(Debug)]
enum Outcome {
    Refused,
    Store(#[allow(dead_code)] StoreError),
}

impl From<StoreError> for Outcome {
    fn from(error: StoreError) -> Self {
        Outcome::Store(error)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_closure_rolls_back_only_itself_and_the_chain_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path(), Arc::new(SystemClock)).unwrap();
    // 400 concurrent writes land in shared batches; every third one appends
    // an event and then fails.
    let writes = (0..400u64).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |w| -> Result<u64, Outcome> {
                    let event = w.append_audit(AuditDraft::new("test", "probe", None, json!({"i": i})))?;
                    w.init_meta(&format!("key-{i}"), "value")?;
                    if i % 3 == 0 {
                        Err(Outcome::Refused)
                    } else {
                        Ok(event.seq)
                    }
                })
                .await
        })
    });
    let results = futures_join(writes.collect()).await;
    let committed: Vec<u64> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    assert_eq!(committed.len(), 400 - 134, "every closure that succeeded committed");
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(Outcome::Refused)))
    );

    let events = store.read(|r| r.audit(0, None, 10_000)).await.unwrap();
    assert_eq!(events.len(), committed.len(), "refused closures left no audit event");
    let mut seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=committed.len() as u64).collect::<Vec<_>>(),
        "no gaps where refused closures were"
    );
    let mut verifier = ChainVerifier::from_genesis();
    events.iter().for_each(|e| verifier.push(e));
    assert!(verifier.finish().ok, "the chain is whole across batches and rollbacks");

    for i in 0..400u64 {
        let key = format!("key-{i}");
        let stored = store.read(move |r| r.meta(&key)).await.unwrap();
        assert_eq!(
            stored.is_some(),
            i % 3 != 0,
            "key-{i}: only committed closures' writes remain"
        );
    }
    assert_eq!(
        *store.changes().borrow(),
        committed.len() as u64,
        "the change counter follows the head"
    );
}

#[tokio::test]
async fn a_reopened_store_continues_the_same_chain() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..2 {
        let store = Store::open_sqlite(dir.path(), Arc::new(SystemClock)).unwrap();
        store
            .write(move |w| -> Result<(), StoreError> {
                w.append_audit(AuditDraft::new("test", "round", None, json!({"round": round})))?;
                Ok(())
            })
            .await
            .unwrap();
        store.close();
    }
    let store = Store::open_sqlite(dir.path(), Arc::new(SystemClock)).unwrap();
    let events = store.read(|r| r.audit(0, None, 10)).await.unwrap();
    let mut verifier = ChainVerifier::from_genesis();
    events.iter().for_each(|e| verifier.push(e));
    let report = verifier.finish();
    assert!(report.ok && report.last_seq == Some(2), "{report:?}");
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}
