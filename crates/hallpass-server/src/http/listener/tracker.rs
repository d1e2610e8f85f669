//! The listener's book of open connections: how many there are, which have
//! not sent a byte yet (in arrival order, so the oldest can be evicted), and a
//! way to close any of them from outside their task.
//!
//! Each connection's entry holds the sending half of a oneshot channel whose
//! receiver the connection task watches: removing the entry drops the sender,
//! which tells the task to close. Counts derive from the two maps, so an
//! eviction and the evicted task's own clean-up cannot both subtract.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// Resolves when the listener wants the connection closed (evicted, or the
/// shutdown grace period ran out).
pub(super) type CloseSignal = oneshot::Receiver<()>;

#[derive(Default)]
struct Book {
    next_id: u64,
    /// Not a byte received yet; ids grow with arrival, so the first is the oldest.
    silent: BTreeMap<u64, oneshot::Sender<()>>,
    /// Sent something: handed to TLS / HTTP.
    talking: HashMap<u64, oneshot::Sender<()>>,
}

impl Book {
    fn open(&self) -> usize {
        self.silent.len() + self.talking.len()
    }
}

#[derive(Default)]
pub(super) struct Tracker {
    book: Mutex<Book>,
    emptied: Notify,
    evicted: AtomicU64,
    refused: AtomicU64,
}

/// Where a new connection stands.
pub(super) enum Admission {
    Admitted(ConnectionGuard, CloseSignal),
    /// At the limit with every connection talking.
    Refused,
}

impl Tracker {
    fn book(&self) -> MutexGuard<'_, Book> {
        // The book stays consistent across a panic elsewhere: every update is
        // a single map operation.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new connection, first evicting the oldest silent one when
    /// `max_connections` are open.
    pub(super) fn admit(self: &Arc<Self>, max_connections: usize) -> Admission {
        let mut book = self.book();
        if book.open() >= max_connections && !self.evict_oldest_silent_locked(&mut book) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("hallpass_connections_refused_total").increment(1);
            return Admission::Refused;
        }
        let id = book.next_id;
        book.next_id += 1;
        let (close, signal) = oneshot::channel();
        book.silent.insert(id, close);
        record_open(&book);
        let guard = ConnectionGuard {
            id,
            tracker: self.clone(),
        };
        Admission::Admitted(guard, signal)
    }

    /// Closes the oldest connection that has not sent anything; false when
    /// there is none.
    pub(super) fn evict_oldest_silent(&self) -> bool {
        let mut book = self.book();
        self.evict_oldest_silent_locked(&mut book)
    }

    fn evict_oldest_silent_locked(&self, book: &mut Book) -> bool {
        if book.silent.pop_first().is_none() {
            return false;
        }
        self.evicted.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("hallpass_connections_evicted_total").increment(1);
        record_open(book);
        true
    }

    /// Shutdown: connections that never sent a request have nothing to finish.
    pub(super) fn close_silent(&self) {
        let mut book = self.book();
        book.silent.clear();
        record_open(&book);
    }

    /// End of the grace period: close everything still open.
    pub(super) fn close_all(&self) {
        let mut book = self.book();
        book.silent.clear();
        book.talking.clear();
        record_open(&book);
    }

    /// Waits until no connection is open or `deadline` passes; true when none is.
    pub(super) async fn wait_until_empty(&self, deadline: Instant) -> bool {
        loop {
            // Registered before the check, so a close in between is not missed.
            let emptied = self.emptied.notified();
            if self.book().open() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, emptied).await.is_err() {
                return self.book().open() == 0;
            }
        }
    }

    pub(super) fn open(&self) -> usize {
        self.book().open()
    }

    pub(super) fn silent(&self) -> usize {
        self.book().silent.len()
    }

    pub(super) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    pub(super) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

fn record_open(book: &Book) {
    metrics::gauge!("hallpass_connections_open").set(book.open() as f64);
}

/// One admitted connection's place in the book; dropping it removes it.
pub(super) struct ConnectionGuard {
    id: u64,
    tracker: Arc<Tracker>,
}

impl ConnectionGuard {
    /// The connection sent its first byte: it is no longer evictable. False
    /// when it was evicted (or shut down) just before.
    pub(super) fn mark_talking(&self) -> bool {
        let mut book = self.tracker.book();
        match book.silent.remove(&self.id) {
            Some(close) => {
                book.talking.insert(self.id, close);
                true
            }
            None => false,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut book = self.tracker.book();
        let removed = book.silent.remove(&self.id).is_some() || book.talking.remove(&self.id).is_some();
        if removed {
            record_open(&book);
        }
        if book.open() == 0 {
            self.tracker.emptied.notify_waiters();
        }
    }
}

/// Exponential pause after failed accepts, so a persistent error (no free
/// file descriptors) neither spins a core nor stalls accepting for long.
pub(super) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_millis(500);

    pub(super) fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    pub(super) fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    pub(super) fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admission: Admission) -> (ConnectionGuard, CloseSignal) {
        match admission {
            Admission::Admitted(guard, signal) => (guard, signal),
            Admission::Refused => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn at_the_limit_the_oldest_silent_connection_is_evicted_then_new_ones_refused() {
        let tracker = Arc::new(Tracker::default());
        let (first, mut first_signal) = admitted(tracker.admit(2));
        let (second, mut second_signal) = admitted(tracker.admit(2));
        assert!(second.mark_talking());
        let (third, _third_signal) = admitted(tracker.admit(2));
        // The oldest silent one (first) was told to close; the talking one was not.
        assert_eq!(first_signal.try_recv(), Err(oneshot::error::TryRecvError::Closed));
        assert_eq!(second_signal.try_recv(), Err(oneshot::error::TryRecvError::Empty));
        assert_eq!((tracker.open(), tracker.evicted()), (2, 1));
        // Its task ending afterwards does not free a second slot.
        assert!(!first.mark_talking());
        drop(first);
        assert_eq!(tracker.open(), 2);
        // Now only the third is silent: the next arrival evicts it; once all
        // open connections are talking, a new one is refused.
        let (fourth, _fourth_signal) = admitted(tracker.admit(2));
        assert!(!third.mark_talking());
        assert!(fourth.mark_talking());
        assert!(matches!(tracker.admit(2), Admission::Refused));
        assert_eq!((tracker.open(), tracker.evicted(), tracker.refused()), (2, 2, 1));
    }

    #[tokio::test]
    async fn waiting_for_empty_ends_when_the_last_connection_closes() {
        let tracker = Arc::new(Tracker::default());
        let (guard, _signal) = admitted(tracker.admit(10));
        let waiter = {
            let tracker = tracker.clone();
            tokio::spawn(async move { tracker.wait_until_empty(Instant::now() + Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(guard);
        assert!(waiter.await.unwrap());
        assert!(tracker.wait_until_empty(Instant::now()).await);
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::new();
        let pauses: Vec<u128> = (0..9).map(|_| backoff.next_pause().as_millis()).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_pause(), Backoff::FIRST);
    }
}
