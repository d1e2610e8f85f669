//! The notification outbox: deliveries claimed one server at a time, in
//! order per notifier and request, retried, dead-lettered and revived; and
//! the register of signed callbacks that refuses a replay.

use chrono::Duration;
use hallpass_store::{DeliveryOutcome, DeliveryRow, NewDelivery, StoreError};
use serde_json::json;

use crate::support::{Db, Fixture, at};

on_both_backends!(
    a_request_s_deliveries_go_out_one_after_the_other_in_event_order,
    a_claimed_delivery_is_nobody_else_s_until_its_lease_lapses,
    failures_wait_for_their_time_and_dead_ones_come_back_only_when_revived,
    a_nonce_is_accepted_once_until_it_expires,
);

fn delivery(id: &str, notifier: &str, seq: u64, order_key: &str, not_before: i64) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        notifier: notifier.into(),
        event_seq: seq,
        topic: "request.pending".into(),
        request_id: Some(order_key.into()),
        order_key: order_key.into(),
        payload: json!({"id": id}),
        not_before: at(not_before),
    }
}

impl Fixture {
    async fn insert(&self, deliveries: Vec<NewDelivery>) {
        self.store
            .write(move |w| -> Result<(), StoreError> {
                for d in &deliveries {
                    w.insert_delivery(d)?;
                }
                Ok(())
            })
            .await
            .expect("insert deliveries");
    }

    async fn claim(&self, owner: &str) -> Vec<String> {
        let owner = owner.to_string();
        let rows: Vec<DeliveryRow> = self
            .store
            .write(move |w| w.claim_deliveries(&owner, Duration::seconds(60), 100))
            .await
            .expect("claim");
        let mut ids: Vec<String> = rows.into_iter().map(|r| r.id).collect();
        ids.sort();
        ids
    }

    async fn finish(&self, id: &str, outcome: DeliveryOutcome) -> bool {
        let id = id.to_string();
        self.store
            .write(move |w| w.finish_delivery(&id, &outcome))
            .await
            .expect("finish")
    }
}

async fn a_request_s_deliveries_go_out_one_after_the_other_in_event_order(db: Db) {
    let f = Fixture::open(db);
    f.insert(vec![
        delivery("r1-second", "hook", 7, "r1", 0),
        delivery("r1-first", "hook", 5, "r1", 0),
        delivery("r1-other-notifier", "mail", 7, "r1", 0),
        delivery("r2-only", "hook", 6, "r2", 0),
    ])
    .await;
    assert_eq!(
        f.claim("a").await,
        ["r1-first", "r1-other-notifier", "r2-only"],
        "the first pending of each notifier and request"
    );
    assert!(f.claim("b").await.is_empty(), "r1-second waits for r1-first");
    assert!(f.finish("r1-first", DeliveryOutcome::Delivered).await);
    assert_eq!(f.claim("b").await, ["r1-second"]);
    assert!(!f.finish("r1-first", DeliveryOutcome::Delivered).await, "finished once");
}

async fn a_claimed_delivery_is_nobody_else_s_until_its_lease_lapses(db: Db) {
    let f = Fixture::open(db);
    f.insert(vec![
        delivery("d1", "hook", 1, "r1", 0),
        delivery("later", "hook", 2, "r2", 30),
    ])
    .await;
    assert_eq!(f.claim("a").await, ["d1"], "not what is due later");
    assert!(f.claim("a").await.is_empty());
    assert!(f.claim("b").await.is_empty());
    f.advance(61);
    assert_eq!(f.claim("b").await, ["d1", "later"], "a lapsed lease is taken over");
}

async fn failures_wait_for_their_time_and_dead_ones_come_back_only_when_revived(db: Db) {
    let f = Fixture::open(db);
    f.insert(vec![
        delivery("d1", "hook", 1, "r1", 0),
        delivery("d2", "hook", 2, "r1", 0),
    ])
    .await;
    assert_eq!(f.claim("a").await, ["d1"]);
    assert!(f.finish("d1", DeliveryOutcome::RetryAt(at(10), "503".into())).await);
    assert!(
        f.claim("a").await.is_empty(),
        "not before its time, and d2 waits behind it"
    );
    f.advance(10);
    assert_eq!(f.claim("a").await, ["d1"]);
    assert!(f.finish("d1", DeliveryOutcome::Dead("503 again".into())).await);
    assert_eq!(f.claim("a").await, ["d2"], "a dead delivery holds nothing back");
    assert!(f.finish("d2", DeliveryOutcome::Delivered).await);
    let dead = f
        .store
        .read(|r| r.deliveries("dead", None, 10))
        .await
        .expect("read dead");
    assert_eq!((dead.len(), dead[0].attempts), (1, 2));
    assert_eq!(dead[0].last_error.as_deref(), Some("503 again"));
    f.advance(3600);
    assert!(f.claim("b").await.is_empty(), "dead is not tried again");
    let revived = f
        .store
        .write(|w| w.revive_delivery("d1"))
        .await
        .expect("revive")
        .expect("was dead");
    assert_eq!((revived.state.as_str(), revived.attempts), ("pending", 0));
    assert!(
        f.store
            .write(|w| w.revive_delivery("d1"))
            .await
            .expect("revive")
            .is_none()
    );
    assert_eq!(f.claim("b").await, ["d1"]);
    let dropped = f.store.write(|w| w.drop_deliveries_of("hook")).await.expect("drop");
    assert_eq!(dropped, 1, "d1 (claimed, pending) is dropped with its notifier");
}

async fn a_nonce_is_accepted_once_until_it_expires(db: Db) {
    let f = Fixture::open(db);
    let remember = |nonce: &'static str, until: i64| f.store.write(move |w| w.remember_nonce(nonce, at(until)));
    assert!(remember("sig-1", 300).await.expect("first"));
    assert!(!remember("sig-1", 300).await.expect("replay"), "a replay is refused");
    assert!(remember("sig-2", 300).await.expect("another"));
    f.advance(301);
    assert!(
        remember("sig-1", 600).await.expect("expired"),
        "forgotten after it expired"
    );
}
