//! The notification outbox: deliveries (one notification for one
//! notifier), claimed by one server at a time like due grants, sent in
//! order per `order_key` (a request), retried with backoff and
//! dead-lettered; and the register of signed callbacks already seen.
//!
//! The store only keeps deliveries; what goes into them, and when to give
//! up, is decided by the server.

use chrono::{DateTime, Duration, Utc};

use crate::sql::Row;
use crate::tx::all;
use crate::{ReadTx, StoreError, WriteTx, format_time, sql_params};

/// A delivery to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub id: String,
    pub notifier: String,
    pub event_seq: u64,
    pub topic: String,
    pub request_id: Option<String>,
    /// Deliveries with the same notifier and key are sent one after the
    /// other, in `event_seq` order.
    pub order_key: String,
    pub payload: serde_json::Value,
    /// Not sent before this (an expiry warning waits for its time).
    pub not_before: DateTime<Utc>,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub id: String,
    pub notifier: String,
    pub event_seq: u64,
    pub topic: String,
    pub request_id: Option<String>,
    pub order_key: String,
    pub payload: serde_json::Value,
    /// `pending`, `delivered`, `dead` or `dropped`.
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// How a claimed delivery ended this time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed; try again at this time.
    RetryAt(DateTime<Utc>, String),
    /// Failed for the last time.
    Dead(String),
    /// Not to be sent (outdated, or its notifier is gone).
    Dropped(String),
}

const DELIVERY_COLUMNS: &str = "id, notifier, event_seq, topic, request_id, order_key, payload, state, attempts, \
     next_attempt_at, last_error, created_at, delivered_at";

fn delivery_from_row(row: &Row) -> Result<DeliveryRow, StoreError> {
    Ok(DeliveryRow {
        id: row.text(0)?,
        notifier: row.text(1)?,
        event_seq: row.int(2)? as u64,
        topic: row.text(3)?,
        request_id: row.opt_text(4)?,
        order_key: row.text(5)?,
        payload: row.json(6)?,
        state: row.text(7)?,
        attempts: u32::try_from(row.int(8)?).unwrap_or(u32::MAX),
        next_attempt_at: row.time(9)?,
        last_error: row.opt_text(10)?,
        created_at: row.time(11)?,
        delivered_at: row.opt_time(12)?,
    })
}

impl WriteTx<'_> {
    pub fn insert_delivery(&mut self, delivery: &NewDelivery) -> Result<(), StoreError> {
        let now = format_time(self.clock.now());
        self.conn.execute(
            "INSERT INTO deliveries (id, notifier, event_seq, topic, request_id, order_key, payload, state,
                 attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $9)",
            sql_params![
                &delivery.id,
                &delivery.notifier,
                delivery.event_seq,
                &delivery.topic,
                delivery.request_id.clone(),
                &delivery.order_key,
                delivery.payload.to_string(),
                format_time(delivery.not_before),
                now
            ],
        )?;
        Ok(())
    }

    /// Claims up to `limit` due deliveries for `owner`, each the first still
    /// pending of its notifier and order key (so a request's notifications
    /// go out in order, and a later one waits while an earlier one is
    /// retried). A claim lapses after `lease`, for another server to take.
    pub fn claim_deliveries(
        &mut self,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let now = self.clock.now();
        let sql = format!(
            "UPDATE deliveries SET claimed_by = $1, claim_until = $2 WHERE id IN (
                 SELECT d.id FROM deliveries d
                  WHERE d.state = 'pending' AND d.next_attempt_at <= $3
                    AND (d.claim_until IS NULL OR d.claim_until < $3)
                    AND NOT EXISTS (
                        SELECT 1 FROM deliveries e
                         WHERE e.state = 'pending' AND e.notifier = d.notifier AND e.order_key = d.order_key
                           AND (e.event_seq < d.event_seq OR (e.event_seq = d.event_seq AND e.id < d.id)))
                  ORDER BY d.next_attempt_at LIMIT $4)
             RETURNING {DELIVERY_COLUMNS}"
        );
        let rows = self.conn.query(
            &sql,
            sql_params![owner, format_time(now + lease), format_time(now), u64::from(limit)],
        )?;
        all(rows, delivery_from_row)
    }

    /// Records how an attempt of a pending delivery ended; false when it is
    /// no longer pending (an admin's retry raced it, or it was dropped).
    pub fn finish_delivery(&mut self, id: &str, outcome: &DeliveryOutcome) -> Result<bool, StoreError> {
        let now = format_time(self.clock.now());
        let changed = match outcome {
            DeliveryOutcome::Delivered => self.conn.execute(
                "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, delivered_at = $1,
                     last_error = NULL, claimed_by = NULL, claim_until = NULL
                  WHERE id = $2 AND state = 'pending'",
                sql_params![now, id],
            )?,
            DeliveryOutcome::RetryAt(at, error) => self.conn.execute(
                "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2,
                     claimed_by = NULL, claim_until = NULL
                  WHERE id = $3 AND state = 'pending'",
                sql_params![format_time(*at), error, id],
            )?,
            DeliveryOutcome::Dead(error) => self.conn.execute(
                "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, last_error = $1,
                     claimed_by = NULL, claim_until = NULL
                  WHERE id = $2 AND state = 'pending'",
                sql_params![error, id],
            )?,
            DeliveryOutcome::Dropped(reason) => self.conn.execute(
                "UPDATE deliveries SET state = 'dropped', last_error = $1, claimed_by = NULL, claim_until = NULL
                  WHERE id = $2 AND state = 'pending'",
                sql_params![reason, id],
            )?,
        };
        Ok(changed == 1)
    }

    /// Puts a dead-lettered delivery back in line, due now, with a fresh
    /// retry budget. `None` when there is no such dead delivery.
    pub fn revive_delivery(&mut self, id: &str) -> Result<Option<DeliveryRow>, StoreError> {
        let sql = format!(
            "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1,
                 claimed_by = NULL, claim_until = NULL
              WHERE id = $2 AND state = 'dead'
             RETURNING {DELIVERY_COLUMNS}"
        );
        let rows = self.conn.query(&sql, sql_params![format_time(self.clock.now()), id])?;
        Ok(all(rows, delivery_from_row)?.into_iter().next())
    }

    /// Drops the pending deliveries of a deleted notifier.
    pub fn drop_deliveries_of(&mut self, notifier: &str) -> Result<u64, StoreError> {
        self.conn.execute(
            "UPDATE deliveries SET state = 'dropped', last_error = 'the notifier was deleted',
                 claimed_by = NULL, claim_until = NULL
              WHERE notifier = $1 AND state = 'pending'",
            sql_params![notifier],
        )
    }

    /// Forgets delivered and dropped deliveries made before `before`.
    pub fn prune_deliveries(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.conn.execute(
            "DELETE FROM deliveries WHERE state IN ('delivered', 'dropped') AND created_at < $1",
            sql_params![format_time(before)],
        )
    }

    /// Records a nonce (a signed callback's signature) until `expires_at`;
    /// false when it was already recorded: a replay. Expired ones are
    /// forgotten first.
    pub fn remember_nonce(&mut self, nonce: &str, expires_at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.conn.execute(
            "DELETE FROM seen_nonces WHERE expires_at < $1",
            sql_params![format_time(self.clock.now())],
        )?;
        let inserted = self.conn.execute(
            "INSERT INTO seen_nonces (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
            sql_params![nonce, format_time(expires_at)],
        )?;
        Ok(inserted == 1)
    }
}

impl ReadTx<'_> {
    pub fn delivery(&mut self, id: &str) -> Result<Option<DeliveryRow>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
        Ok(all(self.conn.query(&sql, sql_params![id])?, delivery_from_row)?
            .into_iter()
            .next())
    }

    /// Deliveries in `state`, oldest first (optionally of one request).
    pub fn deliveries(
        &mut self,
        state: &str,
        request_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let rows = match request_id {
            Some(request) => self.conn.query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = $1 AND request_id = $2
                      ORDER BY created_at, id LIMIT $3"
                ),
                sql_params![state, request, u64::from(limit)],
            )?,
            None => self.conn.query(
                &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = $1 ORDER BY created_at, id LIMIT $2"),
                sql_params![state, u64::from(limit)],
            )?,
        };
        all(rows, delivery_from_row)
    }

    /// When the next pending delivery is due, if any.
    pub fn next_delivery_due(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self.conn.query_one(
            "SELECT next_attempt_at FROM deliveries WHERE state = 'pending' ORDER BY next_attempt_at LIMIT 1",
            &[],
        )?;
        row.map(|r| r.time(0)).transpose()
    }

    pub fn count_deliveries(&mut self, state: &str) -> Result<u64, StoreError> {
        let row = self
            .conn
            .query_one("SELECT COUNT(*) FROM deliveries WHERE state = $1", sql_params![state])?;
        Ok(row.map(|r| r.int(0)).transpose()?.unwrap_or(0) as u64)
    }
}
