//! The notification tasks: the dispatcher turns new audit events into
//! deliveries (woken by the store's change counter, so other replicas'
//! commits count too), and the worker sends due deliveries, several at a
//! time, in order per request. Both stop at shutdown; what they had not
//! done is in the store and done by the next start (or another replica).
//!
//! The service-layer work is in `app::outbox`; here are only the loops.

use std::sync::Arc;
use std::time::Duration;

use hallpass_notifiers::NotifierTypes;
use hallpass_notifiers::email::EmailNotifier;
use hallpass_notifiers::slack::SlackNotifier;
use hallpass_notifiers::webhook::WebhookNotifier;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::app::App;

/// Events read per dispatch step.
const DISPATCH_BATCH: u32 = 500;
/// Deliveries claimed per step, and sent at once.
const SEND_BATCH: u32 = 32;
/// The dispatcher's pause between steps under a stream of commits, so a
/// busy server spends few store writes on notifications.
const DISPATCH_PAUSE: Duration = Duration::from_millis(100);
/// The longest the worker sleeps without looking (another replica's
/// retry may have become due).
const WORKER_IDLE: Duration = Duration::from_secs(5);
/// How soon the worker looks again when deliveries are due but none
/// could be claimed.
const BLOCKED_POLL: Duration = Duration::from_millis(200);
/// How often finished deliveries older than a week are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The notifier types this server sends with.
pub fn notifier_types() -> anyhow::Result<NotifierTypes> {
    Ok(NotifierTypes::default()
        .with(Arc::new(WebhookNotifier::new()?))
        .with(Arc::new(SlackNotifier::new()?))
        .with(Arc::new(EmailNotifier::new())))
}

/// The running tasks.
pub struct NotifyTasks {
    dispatcher: JoinHandle<()>,
    worker: JoinHandle<()>,
}

impl NotifyTasks {
    /// Waits for both tasks to stop (they stop when the stop signal is set).
    pub async fn stop(self) {
        let _ = self.dispatcher.await;
        let _ = self.worker.await;
    }
}

pub fn spawn(app: &App, stop: watch::Receiver<bool>) -> NotifyTasks {
    NotifyTasks {
        dispatcher: tokio::spawn(dispatch(app.clone(), stop.clone())),
        worker: tokio::spawn(work(app.clone(), stop)),
    }
}

async fn dispatch(app: App, mut stop: watch::Receiver<bool>) {
    let mut changes = app.store_changes();
    loop {
        match app.dispatch_notifications(DISPATCH_BATCH).await {
            // A full batch: there may be more at once.
            Ok(consumed) if consumed == DISPATCH_BATCH as usize => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot turn audit events into notifications; retrying"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = changes.changed() => {}
            // A dispatcher that died holding nothing is harmless; this is
            // for a store that was briefly unavailable.
            _ = tokio::time::sleep(WORKER_IDLE) => {}
        }
        if *stop.borrow() {
            return;
        }
        tokio::time::sleep(DISPATCH_PAUSE).await;
    }
}

async fn work(app: App, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(SEND_BATCH as usize));
    let mut changes = app.store_changes();
    let mut last_prune = tokio::time::Instant::now();
    loop {
        if *stop.borrow() {
            return;
        }
        let mut wait = app.next_delivery_in(WORKER_IDLE).await;
        if wait.is_zero() {
            send_due(&app, &slots).await;
            // Due but not claimable (another server's, or behind an earlier
            // delivery of the same request still in flight): look again soon.
            wait = BLOCKED_POLL;
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = tokio::time::Instant::now();
            if let Err(error) = app.prune_deliveries().await {
                tracing::warn!(%error, "cannot prune finished notification deliveries");
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = changes.changed() => {}
            _ = app.outbox_woken() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        // Commits come thousands a second under load; one look per pause
        // is enough, and leaves the store's readers to the API.
        tokio::time::sleep(DISPATCH_PAUSE).await;
    }
}

/// Claims as many due deliveries as there are free sending slots, and
/// sends each in its own task.
async fn send_due(app: &App, slots: &Arc<Semaphore>) {
    let free = u32::try_from(slots.available_permits()).unwrap_or(0);
    if free == 0 {
        return;
    }
    let claimed = app.claim_deliveries(free).await.unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot claim notification deliveries; retrying");
        Vec::new()
    });
    for row in claimed {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let (id, notifier) = (row.id.clone(), row.notifier.clone());
            if let Err(error) = app.send_delivery(row).await {
                tracing::warn!(%error, delivery = %id, %notifier, "cannot record a notification attempt");
            }
            drop(permit);
        });
    }
}
