//! Ends grants on time.
//!
//! The store is the truth: every active grant and every failed revoke carries
//! its next deadline in an indexed column. Work is taken by *claiming* due
//! records in the store (a lease of [`crate::app::CLAIM_LEASE_SECONDS`]), so when several
//! servers share a database each record is handled by one of them, and the
//! work of a server that dies is picked up by another once its lease lapses.
//!
//! A min-heap of deadlines says when to wake. It holds only the next
//! [`HORIZON`] of them: loaded from the store when the scheduler starts
//! (after the API already serves) and topped up every [`REFRESH_EVERY`],
//! and fed as this server's grants activate or fail. So a million grants
//! ending hours from now cost no memory here and no time at start-up.
//! Between deadlines the scheduler also polls, to see other servers'
//! grants and lapsed claims. Claimed work runs as tasks of [`BATCH`]
//! records each, at most [`CONCURRENCY`] records at once: a batch of due
//! grants is read in one store read and ended in one write job
//! ([`crate::app::expiry`]), and the tasks share the store's group
//! commits. The scheduler claims again while earlier work still runs, as
//! soon as [`MIN_CLAIM`] slots are free, so slow revokes hold back grants
//! that fall due after them only when more than
//! `CONCURRENCY - MIN_CLAIM` of them hang at once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::{Id, JoinSet};

use crate::app::App;
use crate::app::audit::CHECKPOINT_INTERVAL;

/// How many due records are processed at once.
const CONCURRENCY: usize = 1024;
/// A claim is one commit the scheduler waits for, so it claims only once
/// this many slots are free (or nothing runs): claiming a record each time
/// one task ends made a burst of expiries as slow as one commit per grant.
const MIN_CLAIM: usize = 256;
/// Records handled together: read in one store read, ended in one write
/// job. Small enough that a claim of [`MIN_CLAIM`] spreads over several
/// tasks (and store readers).
const BATCH: usize = 64;
/// Most records claimed per round.
const CLAIM_BATCH: u32 = 1000;
/// Longest sleep between looks at the store.
const POLL_INTERVAL: StdDuration = StdDuration::from_secs(1);
/// How often start-up looks whether other servers have ended the overdue
/// grants they claimed.
const OTHERS_POLL: StdDuration = StdDuration::from_millis(50);
/// How far ahead the timer heap holds deadlines.
const HORIZON: chrono::TimeDelta = chrono::TimeDelta::minutes(2);
/// How often deadlines coming into the horizon are loaded: well inside it,
/// so none is loaded late.
const REFRESH_EVERY: StdDuration = StdDuration::from_secs(30);

pub type Deadline = (DateTime<Utc>, String);

/// The records this server is working on, a batch per task.
#[derive(Default)]
struct Running {
    tasks: JoinSet<()>,
    batches: HashMap<Id, Vec<String>>,
    /// The same ids, to tell a record already in hand.
    records: HashSet<String>,
}

impl Running {
    fn room(&self) -> usize {
        CONCURRENCY.saturating_sub(self.records.len())
    }

    /// Starts work on `ids`, [`BATCH`] to a task, leaving out those a task
    /// of this server has already: a revoke that outlives its claim's lease
    /// can be claimed again, and must not be run twice at once.
    fn start(&mut self, app: &App, ids: Vec<String>) {
        let fresh: Vec<String> = ids.into_iter().filter(|id| self.records.insert(id.clone())).collect();
        for batch in fresh.chunks(BATCH) {
            let (app, batch) = (app.clone(), batch.to_vec());
            let task_ids = batch.clone();
            let handle = self.tasks.spawn(async move { process_batch(&app, task_ids).await });
            self.batches.insert(handle.id(), batch);
        }
    }

    /// Waits for the next task to end. A task that panicked has its
    /// records retried like ones whose work failed.
    async fn next(&mut self, app: &App) {
        let Some(done) = self.tasks.join_next_with_id().await else {
            return;
        };
        let task = match &done {
            Ok((task, ())) => *task,
            Err(error) => error.id(),
        };
        if let Some(batch) = self.batches.remove(&task) {
            for id in batch {
                self.records.remove(&id);
                if let Err(error) = &done {
                    tracing::error!(request_id = %id, %error, "scheduled work panicked; retrying in 5s");
                    app.retry_later(id);
                }
            }
        }
    }
}

/// The deadlines of the next [`HORIZON`], on the heap.
#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<Deadline>>,
    /// Every stored deadline up to here is on the heap (or was, and came).
    loaded_until: Option<DateTime<Utc>>,
}

impl Timers {
    /// Loads the deadlines that came into the horizon since the last load
    /// (at the first, every one up to it, however overdue).
    async fn top_up(&mut self, app: &App) {
        let until = app.now() + HORIZON;
        let after = self.loaded_until;
        match app.deadlines(after, until).await {
            Ok(deadlines) => {
                if after.is_none() {
                    tracing::info!(count = deadlines.len(), "expiry timers loaded");
                    metrics::gauge!("hallpass_expiry_timers_ready").set(1.0);
                }
                self.heap.extend(deadlines.into_iter().map(Reverse));
                self.loaded_until = Some(until);
            }
            Err(error) => tracing::error!(%error, "cannot load grant deadlines; the poll covers them meanwhile"),
        }
    }

    /// A deadline of this server's own; one beyond the horizon is loaded
    /// when it comes near (the store has it).
    fn add(&mut self, deadline: Deadline) {
        if self.loaded_until.is_some_and(|until| deadline.0 <= until) {
            self.heap.push(Reverse(deadline));
        }
    }
}

pub async fn run(app: App, mut incoming: mpsc::UnboundedReceiver<Deadline>, mut shutdown: watch::Receiver<bool>) {
    let mut timers = Timers::default();
    timers.top_up(&app).await;
    let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH_EVERY, REFRESH_EVERY);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running = Running::default();
    // Whether due records may be waiting unclaimed: a deadline came, or
    // the last claim took as many as it asked for.
    let mut more_due = true;
    loop {
        let room = running.room();
        if more_due && room > 0 && (room >= MIN_CLAIM || running.tasks.is_empty()) {
            let limit = u32::try_from(room).unwrap_or(CLAIM_BATCH).min(CLAIM_BATCH);
            // Deadlines up to the moment the claim was asked are in it (or
            // in hand already); one that passes while the claim is written
            // stays on the heap, to wake the next claim, instead of
            // waiting for the poll.
            let asked = app.now();
            match app.claim_due(limit).await {
                Ok(claimed) => {
                    more_due = claimed.len() >= limit as usize;
                    running.start(&app, claimed);
                }
                Err(error) => {
                    more_due = false;
                    tracing::error!(%error, "cannot claim due grants; retrying");
                }
            }
            while timers.heap.peek().is_some_and(|Reverse((at, _))| *at <= asked) {
                timers.heap.pop();
            }
        }
        if more_due && running.room() >= MIN_CLAIM {
            continue;
        }
        // With too few slots free, tasks ending is what lets work start;
        // deadlines that pass meanwhile stay on the heap until then.
        let sleep = if more_due || running.room() < MIN_CLAIM {
            POLL_INTERVAL
        } else {
            let now = app.now();
            timers
                .heap
                .peek()
                .map(|Reverse((at, _))| (*at - now).to_std().unwrap_or_default())
                .unwrap_or(POLL_INTERVAL)
                .min(POLL_INTERVAL)
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => more_due = true,
            () = running.next(&app), if !running.tasks.is_empty() => {}
            entry = incoming.recv() => match entry {
                Some(entry) => timers.add(entry),
                None => break,
            },
            _ = refresh.tick() => timers.top_up(&app).await,
            _ = shutdown.changed() => break,
        }
    }
    // Work already claimed is finished, not dropped half way.
    while !running.tasks.is_empty() {
        running.next(&app).await;
    }
}

/// Acts on a batch of claimed records; failures are logged and retried.
async fn process_batch(app: &App, ids: Vec<String>) {
    for (id, error) in app.process_due_batch(ids).await {
        tracing::error!(request_id = %id, error = %error, "scheduled work failed; retrying in 5s");
        app.retry_later(id);
    }
}

/// Processes claimed records, [`CONCURRENCY`] at a time in batches of
/// [`BATCH`], until all are done; failures are logged and retried.
pub async fn process(app: &App, due: Vec<String>) {
    let batches: Vec<Vec<String>> = due.chunks(BATCH).map(<[String]>::to_vec).collect();
    futures::stream::iter(batches)
        .for_each_concurrent(CONCURRENCY / BATCH, |batch| process_batch(app, batch))
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
/// at start-up, before the API serves. Replicas starting together split
/// the overdue grants between them, so this one also waits (up to two
/// claim leases, then warns and serves) until the grants others claimed
/// have ended too: no replica answers while any overdue grant holds access.
pub async fn drain_due(app: &App) -> anyhow::Result<usize> {
    let started = app.now();
    let lease = StdDuration::from_secs(crate::app::CLAIM_LEASE_SECONDS.unsigned_abs());
    let give_up = tokio::time::Instant::now() + 2 * lease;
    let mut seen = std::collections::HashSet::new();
    loop {
        let claimed = app.claim_due(CLAIM_BATCH).await?;
        let fresh: Vec<String> = claimed.into_iter().filter(|id| seen.insert(id.clone())).collect();
        if !fresh.is_empty() {
            process(app, fresh).await;
            continue;
        }
        let left = app.count_overdue_grants(started).await?;
        if left == 0 {
            return Ok(seen.len());
        }
        if tokio::time::Instant::now() >= give_up {
            tracing::warn!(
                count = left,
                "overdue grants are still being ended (by other servers, or failing); serving anyway"
            );
            return Ok(seen.len());
        }
        tokio::time::sleep(OTHERS_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hallpass_api as api;
    use hallpass_core::SystemClock;

    use super::*;
    use crate::testing::{self, caller};

    /// Replicas starting together: one has claimed an overdue grant and is
    /// still ending it; another must not start serving until it has ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_up_waits_for_overdue_grants_another_server_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _inbox) = testing::app_in(dir.path(), Arc::new(SystemClock), Vec::new()).unwrap();
        let apply: api::ApplyRequest = serde_json::from_value(serde_json::json!({
            "targets": [{"name": "svc", "type": "jwt", "config": {"audience": "svc"}}],
            "roles": [{"name": "ops", "target": "svc", "max_duration": "1h", "requestable_by": ["group:dev"],
                       "auto_approve": true}]
        }))
        .unwrap();
        app.apply(&caller("root", &["admins"]), apply).await.unwrap();
        let body: api::CreateRequest =
            serde_json::from_value(serde_json::json!({"role": "ops", "reason": "INC-1", "duration": "1s"})).unwrap();
        let alice = caller("alice", &["dev"]);
        let id = app.create_request(&alice, body).await.unwrap().request.id;
        tokio::time::sleep(StdDuration::from_millis(1100)).await;

        // The other server's claim: the lease keeps it from this one.
        let held = app.claim_due(CLAIM_BATCH).await.unwrap();
        assert_eq!(held, vec![id.clone()]);
        let starting = tokio::spawn({
            let app = app.clone();
            async move { drain_due(&app).await }
        });
        tokio::time::sleep(StdDuration::from_millis(500)).await;
        assert!(
            !starting.is_finished(),
            "start-up went on while an overdue grant held access"
        );

        process(&app, held).await;
        let ended_here = tokio::time::timeout(StdDuration::from_secs(2), starting)
            .await
            .expect("start-up goes on once the other server ended it")
            .unwrap()
            .unwrap();
        assert_eq!(ended_here, 0, "the other server ended it, not this one");
        let (request, _) = app.get_request(&alice, id).await.unwrap();
        assert_eq!(request.state, api::RequestState::Expired);
    }
}
