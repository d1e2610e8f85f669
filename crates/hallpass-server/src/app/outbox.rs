//! The notification outbox. The audit log is its source: every state
//! change commits with its audit event, so an event committed is a
//! notification owed. The dispatcher reads the log from its cursor (in
//! `meta`), turns events into deliveries (one notification for one
//! notifier, see [`route`]) and moves the cursor in the same transaction,
//! checking the cursor did not move under it (another replica), so each
//! event is turned into deliveries exactly once.
//!
//! Deliveries are claimed like due grants (a lease, one server at a time),
//! sent in order per request and notifier, retried with exponential
//! backoff and dead-lettered after [`MAX_ATTEMPTS`]; an admin sends a
//! dead one again. A delivery's id is its idempotency key: the same on
//! every attempt.

pub mod route;

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use hallpass_api::{self as api, NotificationTopic};
use hallpass_core::AuditKind;
use hallpass_core::audit::{AuditDraft, AuditEvent};
use hallpass_core::documents::{Document, NotifierDocument};
use hallpass_core::request::RequestRecord;
use hallpass_notifiers::{NotifierContext, NotifyError, Routing};
use hallpass_store::{ConfigKind, DeliveryOutcome, DeliveryRow, NewDelivery, WriteTx};
use serde_json::json;

use self::route::Planned;
use super::wire::request_to_api;
use super::{App, AppResult, SYSTEM_ACTOR};

/// `meta` key of the last audit seq turned into deliveries.
pub const CURSOR_KEY: &str = "outbox.cursor";
/// Attempts before a delivery is dead-lettered: with backoff from 1 s
/// doubling to 5 min, about an hour of trying.
pub const MAX_ATTEMPTS: u32 = 18;
const FIRST_BACKOFF_SECONDS: i64 = 1;
const MAX_BACKOFF_SECONDS: i64 = 300;
/// How long a claimed delivery is this server's.
pub const DELIVERY_LEASE_SECONDS: i64 = 60;
/// Delivered and dropped deliveries are kept this long, for inspection.
pub const KEEP_FINISHED_DAYS: i64 = 7;

/// The wait before attempt `attempts + 1`, after `attempts` failures.
pub fn backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(20);
    Duration::seconds((FIRST_BACKOFF_SECONDS << shift).min(MAX_BACKOFF_SECONDS))
}

/// What one dispatch step read.
struct Batch {
    cursor: u64,
    events: Vec<AuditEvent>,
    notifiers: Vec<(String, Routing)>,
    records: BTreeMap<String, RequestRecord>,
}

fn read_cursor(value: Option<String>) -> u64 {
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl App {
    /// At start-up: a store that never had an outbox starts it at the
    /// current head (history is not announced).
    pub async fn init_outbox(&self) -> AppResult<()> {
        self.inner
            .store
            .write(|wtx| -> AppResult<()> {
                let head = wtx.chain_head().0.to_string();
                wtx.init_meta(CURSOR_KEY, &head)?;
                Ok(())
            })
            .await
    }

    /// Turns up to `limit` audit events after the cursor into deliveries.
    /// Returns how many events it consumed (0: nothing new).
    pub async fn dispatch_notifications(&self, limit: u32) -> AppResult<usize> {
        let types = self.inner.notifier_types.clone();
        let batch = self
            .inner
            .store
            .read(move |r| -> AppResult<Batch> {
                let cursor = read_cursor(r.meta(CURSOR_KEY)?);
                let mut notifiers = Vec::new();
                for row in r.configs(ConfigKind::Notifier)? {
                    let document = NotifierDocument::decode(&row.document)?;
                    // Checked when stored; a notifier a newer release wrote
                    // in a form this one refuses hears nothing.
                    if types.get(&document.notifier_type).is_some()
                        && let Ok(routing) = Routing::parse(&document.notifier_type, &document.config)
                    {
                        notifiers.push((row.name, routing));
                    }
                }
                let events = if notifiers.is_empty() {
                    Vec::new()
                } else {
                    r.audit(cursor, None, limit)?
                };
                let mut records = BTreeMap::new();
                for id in events.iter().filter_map(|e| e.request_id.clone()) {
                    if !records.contains_key(&id)
                        && let Some((record, _)) = r.request(&id)?
                    {
                        records.insert(id, record);
                    }
                }
                Ok(Batch {
                    cursor,
                    events,
                    notifiers,
                    records,
                })
            })
            .await?;
        if batch.notifiers.is_empty() {
            return self.skip_to_head(batch.cursor).await;
        }
        let Some(last) = batch.events.last().map(|e| e.seq) else {
            return Ok(0);
        };
        let deliveries = self.plan_deliveries(&batch);
        let (consumed, from) = (batch.events.len(), batch.cursor);
        self.inner
            .store
            .write(move |wtx| -> AppResult<usize> {
                if read_cursor(wtx.read().meta(CURSOR_KEY)?) != from {
                    return Ok(0); // another replica dispatched these
                }
                for delivery in &deliveries {
                    wtx.insert_delivery(delivery)?;
                }
                wtx.put_meta(CURSOR_KEY, &last.to_string())?;
                Ok(consumed)
            })
            .await
            .inspect(|&consumed| {
                // New deliveries move no audit head: tell this server's
                // worker directly (other replicas look within a few
                // seconds).
                if consumed > 0 {
                    self.inner.outbox_wake.notify_one();
                }
            })
    }

    /// With no notifier, nothing is owed: the cursor follows the head, so
    /// a notifier added later hears only what happens after it.
    async fn skip_to_head(&self, from: u64) -> AppResult<usize> {
        self.inner
            .store
            .write(move |wtx| -> AppResult<usize> {
                let head = wtx.chain_head().0;
                let cursor = read_cursor(wtx.read().meta(CURSOR_KEY)?);
                // Checked again here: a notifier made since the read hears
                // every event after its own.
                let none = wtx.read().configs(ConfigKind::Notifier)?.is_empty();
                if none && cursor == from && head > cursor {
                    wtx.put_meta(CURSOR_KEY, &head.to_string())?;
                }
                Ok(0)
            })
            .await
    }

    fn plan_deliveries(&self, batch: &Batch) -> Vec<NewDelivery> {
        let mut deliveries = Vec::new();
        for event in &batch.events {
            let record = event.request_id.as_ref().and_then(|id| batch.records.get(id));
            let planned = route::notifications(event, record);
            for (name, routing) in &batch.notifiers {
                let warning = record.and_then(|r| route::warnings(event, r, routing.expiry_warning_seconds));
                for plan in planned.iter().chain(warning.as_ref()) {
                    if routing.hears(plan.topic, record.map(|r| r.role.as_str())) {
                        deliveries.push(self.delivery(event, record, name, plan));
                    }
                }
            }
        }
        deliveries
    }

    fn delivery(
        &self,
        event: &AuditEvent,
        record: Option<&RequestRecord>,
        notifier: &str,
        plan: &Planned,
    ) -> NewDelivery {
        let id = uuid::Uuid::now_v7().to_string();
        let time = DateTime::parse_from_rfc3339(&event.time)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| self.now());
        let actor_subject = format!("user:{}", event.actor);
        let notification = api::Notification {
            id: id.clone(),
            topic: plan.topic,
            time,
            event_seq: event.seq,
            actor: event.actor.clone(),
            // Nobody is told of what they did themselves.
            audience: plan.audience.iter().filter(|s| **s != actor_subject).cloned().collect(),
            request: record.map(|r| request_to_api(r, event.seq, time)),
            detail: plan.detail.clone(),
            links: route::links(self.inner.public_url.as_deref(), event.request_id.as_deref()),
        };
        let base_key = event.request_id.clone().unwrap_or_else(|| "-".to_string());
        NewDelivery {
            id,
            notifier: notifier.to_string(),
            event_seq: event.seq,
            topic: plan.topic.as_str().to_string(),
            request_id: event.request_id.clone(),
            order_key: match &plan.order_suffix {
                Some(suffix) => format!("{base_key}:{suffix}"),
                None => base_key,
            },
            payload: serde_json::to_value(&notification).unwrap_or_default(),
            not_before: plan.not_before.unwrap_or(time),
        }
    }

    /// Claims due deliveries for this server.
    pub async fn claim_deliveries(&self, limit: u32) -> AppResult<Vec<DeliveryRow>> {
        let owner = self.inner.replica_id.clone();
        Ok(self
            .inner
            .store
            .write(move |w| w.claim_deliveries(&owner, Duration::seconds(DELIVERY_LEASE_SECONDS), limit))
            .await?)
    }

    /// Sends one claimed delivery and records how it went.
    pub async fn send_delivery(&self, row: DeliveryRow) -> AppResult<()> {
        let outcome = match self.attempt(&row).await {
            Ok(()) => DeliveryOutcome::Delivered,
            Err(Attempt::Drop(reason)) => DeliveryOutcome::Dropped(reason),
            Err(Attempt::Fail(error)) if row.attempts + 1 >= MAX_ATTEMPTS => DeliveryOutcome::Dead(error),
            Err(Attempt::Fail(error)) => DeliveryOutcome::RetryAt(self.now() + backoff(row.attempts + 1), error),
        };
        record_outcome_metrics(&row, &outcome);
        self.inner
            .store
            .write(move |wtx| -> AppResult<()> {
                if wtx.finish_delivery(&row.id, &outcome)?
                    && let DeliveryOutcome::Dead(error) = &outcome
                {
                    dead_letter_event(wtx, &row, error)?;
                }
                Ok(())
            })
            .await
    }

    async fn attempt(&self, row: &DeliveryRow) -> Result<(), Attempt> {
        let notification: api::Notification = serde_json::from_value(row.payload.clone())
            .map_err(|e| Attempt::Drop(format!("the stored notification cannot be read: {e}")))?;
        if notification.topic == NotificationTopic::GrantExpiring && !self.still_expiring(&notification).await? {
            return Err(Attempt::Drop(
                "the grant ended or was extended before the warning".into(),
            ));
        }
        let Some((document, secrets)) = self.notifier_for_send(&row.notifier).await.map_err(Attempt::store)? else {
            return Err(Attempt::Drop("the notifier was deleted".into()));
        };
        let Some(kind) = self.inner.notifier_types.get(&document.notifier_type) else {
            return Err(Attempt::Fail(format!(
                "this server cannot send {:?} notifications",
                document.notifier_type
            )));
        };
        let routing =
            Routing::parse(&document.notifier_type, &document.config).map_err(|e| Attempt::Fail(e.to_string()))?;
        let context = NotifierContext {
            name: document.name,
            config: document.config,
            secrets,
            routing,
        };
        match kind.send(&context, &notification).await {
            Ok(()) => Ok(()),
            Err(NotifyError::NothingToSend(reason)) => Err(Attempt::Drop(reason)),
            Err(error) => Err(Attempt::Fail(error.to_string())),
        }
    }

    /// An expiry warning still holds when its grant is active and ends
    /// when the warning says.
    async fn still_expiring(&self, notification: &api::Notification) -> Result<bool, Attempt> {
        let Some(request) = &notification.request else {
            return Ok(false);
        };
        let id = request.id.clone();
        let current = self
            .inner
            .store
            .read(move |r| r.request(&id))
            .await
            .map_err(|e| Attempt::store(e.into()))?;
        Ok(current.is_some_and(|(record, _)| {
            record.state == hallpass_core::RequestState::Active && record.expires_at == request.expires_at
        }))
    }

    /// Forgets delivered and dropped deliveries older than a week.
    pub(crate) async fn prune_deliveries(&self) -> AppResult<u64> {
        let before = self.now() - Duration::days(KEEP_FINISHED_DAYS);
        Ok(self.inner.store.write(move |w| w.prune_deliveries(before)).await?)
    }

    /// The store's change counter (moves with every commit, this
    /// replica's or another's).
    pub(crate) fn store_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.store.changes()
    }

    /// Resolves when an admin put a delivery back in line.
    pub(crate) async fn outbox_woken(&self) {
        self.inner.outbox_wake.notified().await;
    }

    /// How long the outbox worker may sleep: until the next pending
    /// delivery is due, at most `cap`.
    pub(crate) async fn next_delivery_in(&self, cap: StdDuration) -> StdDuration {
        let next = self.inner.store.read(|r| r.next_delivery_due()).await.ok().flatten();
        match next {
            Some(at) => (at - self.now()).to_std().unwrap_or(StdDuration::ZERO).min(cap),
            None => cap,
        }
    }
}

/// Why an attempt did not deliver.
enum Attempt {
    /// Not worth sending (outdated, notifier gone, nobody to tell).
    Drop(String),
    /// Failed; retried.
    Fail(String),
}

impl Attempt {
    fn store(error: super::AppError) -> Attempt {
        Attempt::Fail(format!("cannot read the notifier: {error}"))
    }
}

fn dead_letter_event(wtx: &mut WriteTx<'_>, row: &DeliveryRow, error: &str) -> AppResult<()> {
    wtx.append_audit(AuditDraft::new(
        SYSTEM_ACTOR,
        AuditKind::NotificationDeadLettered,
        row.request_id.clone(),
        json!({"delivery": row.id, "notifier": row.notifier, "type": row.topic,
               "attempts": row.attempts + 1, "error": error}),
    ))?;
    Ok(())
}

fn record_outcome_metrics(row: &DeliveryRow, outcome: &DeliveryOutcome) {
    let notifier = row.notifier.clone();
    match outcome {
        DeliveryOutcome::Delivered => {
            metrics::counter!("hallpass_notifications_delivered_total", "notifier" => notifier).increment(1)
        }
        DeliveryOutcome::RetryAt(..) => {
            metrics::counter!("hallpass_notification_failures_total", "notifier" => notifier).increment(1)
        }
        DeliveryOutcome::Dead(_) => {
            metrics::counter!("hallpass_notification_failures_total", "notifier" => notifier.clone()).increment(1);
            metrics::counter!("hallpass_notifications_dead_lettered_total", "notifier" => notifier).increment(1)
        }
        DeliveryOutcome::Dropped(_) => {
            metrics::counter!("hallpass_notifications_dropped_total", "notifier" => notifier).increment(1)
        }
    }
}
