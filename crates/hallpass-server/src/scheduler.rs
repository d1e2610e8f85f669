//! Ends grants on time.
//!
//! The store is the truth: every active grant and every failed revoke carries
//! its next deadline in an indexed column. Work is taken by *claiming* due
//! records in the store (a lease of [`crate::app::CLAIM_LEASE_SECONDS`]), so when several
//! servers share a database each record is handled by one of them, and the
//! work of a server that dies is picked up by another once its lease lapses.
//!
//! A min-heap of this server's own deadlines (rebuilt from the store at
//! start-up, fed as grants activate or fail) says when to wake; between
//! deadlines the scheduler also polls, to see other servers' grants and
//! lapsed claims. Claimed work runs with bounded concurrency, so a burst of
//! expiries shares the store's group commits.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::app::App;
use crate::app::audit::CHECKPOINT_INTERVAL;

/// How many due records are processed at once.
const CONCURRENCY: usize = 256;
/// Most records claimed per round.
const CLAIM_BATCH: u32 = 1000;
/// Longest sleep between looks at the store.
const POLL_INTERVAL: StdDuration = StdDuration::from_secs(1);

pub type Deadline = (DateTime<Utc>, String);

pub async fn run(
    app: App,
    initial: Vec<Deadline>,
    mut incoming: mpsc::UnboundedReceiver<Deadline>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut heap: BinaryHeap<Reverse<Deadline>> = initial.into_iter().map(Reverse).collect();
    loop {
        match app.claim_due(CLAIM_BATCH).await {
            Ok(claimed) if !claimed.is_empty() => {
                process(&app, claimed).await;
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "cannot claim due grants; retrying"),
        }
        let now = app.now();
        while heap.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            heap.pop();
        }
        let sleep = heap
            .peek()
            .map(|Reverse((at, _))| (*at - now).to_std().unwrap_or_default())
            .unwrap_or(POLL_INTERVAL)
            .min(POLL_INTERVAL);
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

/// Processes claimed records; failures are logged and retried.
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

/// Writes a signed checkpoint every [`CHECKPOINT_INTERVAL`] while events
/// are written (a quiet log keeps its last one), until shutdown. The first
/// comes one interval after start-up, which signed the head already.
pub async fn checkpoints(app: App, mut shutdown: watch::Receiver<bool>) {
    let first = tokio::time::Instant::now() + CHECKPOINT_INTERVAL;
    let mut ticks = tokio::time::interval_at(first, CHECKPOINT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(error) = app.write_checkpoint().await {
                    tracing::error!(%error, "cannot write an audit checkpoint; retrying at the next tick");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Claims and processes everything due now, until nothing new is due. Used
/// at start-up, before the API serves.
pub async fn drain_due(app: &App) -> anyhow::Result<usize> {
    let mut seen = std::collections::HashSet::new();
    loop {
        let claimed = app.claim_due(CLAIM_BATCH).await?;
        let fresh: Vec<String> = claimed.into_iter().filter(|id| seen.insert(id.clone())).collect();
        if fresh.is_empty() {
            return Ok(seen.len());
        }
        process(app, fresh).await;
    }
}
