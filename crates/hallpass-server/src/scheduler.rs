//! The in-memory timer that ends grants on time.
//!
//! The store is the truth: every active grant and every failed revoke carries
//! its next deadline in an indexed column. This task keeps a min-heap of those
//! deadlines (rebuilt from the store at start-up, fed by the app as grants
//! activate or fail) and sleeps until the earliest. Due work runs with bounded
//! concurrency, so a burst of expiries shares the store's group commits
//! instead of queueing one by one. A heap entry is only a hint: the record is
//! re-read before acting, so stale or duplicate entries are harmless.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::app::App;

/// How many due records are processed at once.
const CONCURRENCY: usize = 256;

pub type Deadline = (DateTime<Utc>, String);

pub async fn run(
    app: App,
    initial: Vec<Deadline>,
    mut incoming: mpsc::UnboundedReceiver<Deadline>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut heap: BinaryHeap<Reverse<Deadline>> = initial.into_iter().map(Reverse).collect();
    loop {
        let now = app.now();
        let mut due = Vec::new();
        while heap.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            if let Some(Reverse((_, id))) = heap.pop() {
                due.push(id);
            }
        }
        if !due.is_empty() {
            process(&app, due).await;
            // Collect what arrived meanwhile before sleeping again.
            while let Ok(entry) = incoming.try_recv() {
                heap.push(Reverse(entry));
            }
            continue;
        }
        let sleep = heap
            .peek()
            .map(|Reverse((at, _))| (*at - now).to_std().unwrap_or_default())
            .unwrap_or(std::time::Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            entry = incoming.recv() => match entry {
                Some(entry) => heap.push(Reverse(entry)),
                None => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Processes due records; failures are logged and retried from the store.
pub async fn process(app: &App, due: Vec<String>) {
    futures::stream::iter(due)
        .for_each_concurrent(CONCURRENCY, |id| async move {
            if let Err(error) = app.process_due(id.clone()).await {
                tracing::error!(request_id = %id, error = %error, "scheduled work failed; retrying in 5s");
                app.retry_later(id);
            }
        })
        .await;
}
