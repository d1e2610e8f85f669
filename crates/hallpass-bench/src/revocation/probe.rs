//! Watching many grants at once until each is refused or ended.
//!
//! [`run`] probes every item from its start time on, over a fixed number of
//! worker tasks and at most a given rate, until the probe says the access is
//! gone or the item's deadline passes. Hallpass ends grants roughly in the
//! order they expire, so the next to go are the earliest-expiring items
//! still live: the *frontier*. Those are probed often, the others (a backlog
//! behind a slow revocation) rarely, which keeps the probes' own CPU use
//! small — two cores are shared with the server and the target being
//! measured — without losing precision where the state changes. What
//! precision there was is reported per item as the *bracket*: the time
//! between the last probe that still found access (or the start) and the
//! one that found it gone. The true moment lies in between.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What one probe found.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Still there: the login was accepted, the session answered.
    Live,
    /// Gone: the login was refused, the session is dead. With the moment it
    /// was seen, when that was before the probe returned (a connection task
    /// that saw the server close the socket).
    Ended(Option<DateTime<Utc>>),
    /// Neither: the probe itself failed (a timeout, too many connections).
    /// Probed again.
    Failed(String),
}

pub type ProbeFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;
/// Probes item `i`.
pub type ProbeFn = Arc<dyn Fn(usize) -> ProbeFuture + Send + Sync>;

/// How one item's probing went.
#[derive(Debug, Clone, Default)]
pub struct Track {
    pub attempts: u32,
    pub failures: u32,
    /// When a probe last found access, if one did.
    pub last_live: Option<DateTime<Utc>>,
    /// When access was seen gone.
    pub ended: Option<DateTime<Utc>>,
    /// The end's moment was noted by the client as it happened (a
    /// connection task), not found by a probe: exact.
    pub exact: bool,
    pub first_failure: Option<String>,
}

/// The schedule of one kind of probe.
pub struct Plan {
    /// Item `i` is first probed at `start[i]`...
    pub start: Vec<DateTime<Utc>>,
    /// ...and given up at `give_up[i]`.
    pub give_up: Vec<DateTime<Utc>>,
    pub workers: usize,
    /// The earliest-starting live items probed every `near` at most...
    pub frontier: usize,
    pub near: Duration,
    /// ...the others every `far`.
    pub far: Duration,
    /// Probes per second, all workers together (0: no limit).
    pub rate: f64,
}

/// How long a worker sleeps when every due item is being probed already.
const IDLE: Duration = Duration::from_millis(2);
/// Longest a worker sleeps before looking again (an item may have moved
/// into the frontier meanwhile).
const MAX_IDLE: Duration = Duration::from_millis(20);

struct Item {
    start: DateTime<Utc>,
    give_up: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
    busy: bool,
    done: bool,
    track: Track,
}

struct State {
    items: Vec<Item>,
    /// Item indices by start time.
    order: Vec<usize>,
    /// Items before this position in `order` are done.
    head: usize,
}

impl Item {
    /// Notes what a probe found at `now`; the item is done once its access
    /// is gone or its deadline has passed.
    fn record(&mut self, outcome: Outcome, now: DateTime<Utc>) {
        self.busy = false;
        self.last = Some(now);
        self.track.attempts += 1;
        match outcome {
            Outcome::Live => self.track.last_live = Some(now),
            Outcome::Ended(at) => {
                self.track.ended = Some(at.map_or(now, |at| at.min(now)));
                self.track.exact = at.is_some();
                self.done = true;
            }
            Outcome::Failed(message) => {
                self.track.failures += 1;
                self.track.first_failure.get_or_insert(message);
            }
        }
        if now >= self.give_up {
            self.done = true;
        }
    }
}

impl State {
    /// The plan's items, none probed yet.
    fn new(plan: &Plan) -> State {
        let mut order: Vec<usize> = (0..plan.start.len()).collect();
        order.sort_by_key(|&i| plan.start[i]);
        let items = plan
            .start
            .iter()
            .zip(&plan.give_up)
            .map(|(start, give_up)| Item {
                start: *start,
                give_up: *give_up,
                last: None,
                busy: false,
                done: false,
                track: Track::default(),
            })
            .collect();
        State { items, order, head: 0 }
    }

    /// Every item's track, taken out.
    fn take_tracks(&mut self) -> Vec<Track> {
        self.items
            .iter_mut()
            .map(|item| std::mem::take(&mut item.track))
            .collect()
    }

    /// The item due the longest (fair when the workers cannot keep up), or
    /// how long until one is due; `None` once every item is done.
    fn next(
        &mut self,
        near: chrono::Duration,
        far: chrono::Duration,
        frontier: usize,
    ) -> Option<Result<usize, Duration>> {
        while self.head < self.order.len() && self.items[self.order[self.head]].done {
            self.head += 1;
        }
        if self.head == self.order.len() {
            return None;
        }
        let now = Utc::now();
        let mut first_start: Option<DateTime<Utc>> = None;
        let mut best: Option<(DateTime<Utc>, usize)> = None;
        let mut rank = 0;
        for &i in &self.order[self.head..] {
            let item = &self.items[i];
            if item.done {
                continue;
            }
            if item.start > now {
                // Sorted by start: none after this one has started either.
                first_start = Some(item.start);
                break;
            }
            let interval = if rank < frontier { near } else { far };
            rank += 1;
            if item.busy {
                continue;
            }
            let due = item.last.map_or(item.start, |last| last + interval);
            if best.is_none_or(|(at, _)| due < at) {
                best = Some((due, i));
            }
        }
        match best {
            Some((due, i)) if due <= now => {
                self.items[i].busy = true;
                Some(Ok(i))
            }
            _ => {
                let soonest = match (best.map(|(at, _)| at), first_start) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let wait = match soonest {
                    Some(at) => (at - now).to_std().unwrap_or_default().min(MAX_IDLE),
                    None => IDLE,
                };
                Some(Err(wait))
            }
        }
    }
}

/// Probes every item until it is gone or given up; one [`Track`] per item.
pub async fn run(plan: Plan, probe: ProbeFn) -> Vec<Track> {
    let state = Arc::new(Mutex::new(State::new(&plan)));
    let pace = Pace::of(&plan);
    let handles: Vec<_> = (0..pace.workers)
        .map(|_| tokio::spawn(work(state.clone(), probe.clone(), pace)))
        .collect();
    for handle in handles {
        let _ = handle.await;
    }
    match state.lock() {
        Ok(mut state) => state.take_tracks(),
        Err(_) => Vec::new(),
    }
}

/// How often the workers probe, from a [`Plan`].
#[derive(Clone, Copy)]
struct Pace {
    workers: usize,
    near: chrono::Duration,
    far: chrono::Duration,
    frontier: usize,
    /// The least time from one probe's start to the next of one worker.
    cycle: Duration,
}

impl Pace {
    /// The pace `plan` asks for.
    fn of(plan: &Plan) -> Pace {
        let workers = plan.workers.max(1);
        // Each worker keeps to its share of the rate.
        let cycle = if plan.rate > 0.0 {
            Duration::from_secs_f64(workers as f64 / plan.rate)
        } else {
            Duration::ZERO
        };
        Pace {
            workers,
            near: chrono::Duration::from_std(plan.near).unwrap_or_default(),
            far: chrono::Duration::from_std(plan.far).unwrap_or_default(),
            frontier: plan.frontier,
            cycle,
        }
    }
}

/// One worker: probes the item due the longest, again and again, until
/// every item is done.
async fn work(state: Arc<Mutex<State>>, probe: ProbeFn, pace: Pace) {
    loop {
        let next = match state.lock() {
            Ok(mut state) => state.next(pace.near, pace.far, pace.frontier),
            Err(_) => return,
        };
        let i = match next {
            None => return,
            Some(Ok(i)) => i,
            Some(Err(wait)) => {
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let began = Instant::now();
        let outcome = probe(i).await;
        let now = Utc::now();
        {
            let Ok(mut state) = state.lock() else { return };
            state.items[i].record(outcome, now);
        }
        if let Some(rest) = pace.cycle.checked_sub(began.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

/// Signed milliseconds (a refusal may come before `expires_at`) by
/// nearest rank.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    pub count: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Spread {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let index = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values[index]
        };
        Spread {
            count: values.len(),
            min_ms: values[0],
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: values[values.len() - 1],
        }
    }
}

/// Milliseconds from `from` to `to`, negative when `to` is earlier.
pub fn ms_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().map_or(f64::NAN, |us| us as f64 / 1000.0)
}

/// What probing found over all items.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeReport {
    /// Which client probed (`tokio-postgres`, `psql`, ...).
    pub client: String,
    pub probed: usize,
    /// Items whose access was seen gone.
    pub ended: usize,
    /// Items still with access at their deadline.
    pub still_there: usize,
    /// From each item's `expires_at` to when it was seen gone.
    pub latency: Spread,
    /// From the last probe that found access (or the first probe's start)
    /// to the one that found it gone: the precision of `latency` (0 when
    /// the client noted the end as it happened).
    pub bracket: Spread,
    /// Items that still had access at some probe after their `expires_at`.
    pub live_after_expiry: usize,
    pub attempts: u64,
    /// Probes that failed for another reason (not counted as gone).
    pub failures: u64,
    pub failure_samples: Vec<String>,
}

impl ProbeReport {
    pub fn of(client: &str, tracks: &[Track], expires_at: &[DateTime<Utc>], start: &[DateTime<Utc>]) -> ProbeReport {
        let mut latency = Vec::new();
        let mut bracket = Vec::new();
        let mut failure_samples: Vec<String> = Vec::new();
        let mut live_after_expiry = 0;
        for (i, track) in tracks.iter().enumerate() {
            if track.last_live.is_some_and(|at| at > expires_at[i]) {
                live_after_expiry += 1;
            }
            if let Some(ended) = track.ended {
                latency.push(ms_between(expires_at[i], ended));
                let from = track.last_live.map_or(start[i], |live| live.max(start[i]));
                bracket.push(if track.exact {
                    0.0
                } else {
                    ms_between(from, ended).max(0.0)
                });
            }
            if let Some(message) = &track.first_failure
                && failure_samples.len() < 5
                && !failure_samples.contains(message)
            {
                failure_samples.push(message.clone());
            }
        }
        ProbeReport {
            client: client.to_string(),
            probed: tracks.len(),
            ended: latency.len(),
            still_there: tracks.len() - latency.len(),
            latency: Spread::of(latency),
            bracket: Spread::of(bracket),
            live_after_expiry,
            attempts: tracks.iter().map(|t| u64::from(t.attempts)).sum(),
            failures: tracks.iter().map(|t| u64::from(t.failures)).sum(),
            failure_samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_keep_the_sign() {
        let spread = Spread::of((1..=100).map(|v| f64::from(v) - 11.0).collect());
        assert_eq!(spread.count, 100);
        assert_eq!(spread.min_ms, -10.0);
        assert_eq!(spread.p50_ms, 39.0);
        assert_eq!(spread.p99_ms, 88.0);
        assert_eq!(spread.max_ms, 89.0);
        assert_eq!(Spread::of(Vec::new()).count, 0);
    }

    #[tokio::test]
    async fn items_are_probed_until_gone() {
        let now = Utc::now();
        let plan = Plan {
            start: vec![now, now + chrono::Duration::milliseconds(20)],
            give_up: vec![now + chrono::Duration::seconds(5); 2],
            workers: 2,
            frontier: 1,
            near: Duration::from_millis(1),
            far: Duration::from_millis(5),
            rate: 0.0,
        };
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        let probe: ProbeFn = Arc::new(move |i| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async move {
                if i == 0 && n < 3 {
                    Outcome::Live
                } else {
                    Outcome::Ended(None)
                }
            })
        });
        let tracks = run(plan, probe).await;
        assert!(tracks.iter().all(|t| t.ended.is_some()), "{tracks:?}");
        assert!(tracks[0].last_live.is_some());
    }
}
