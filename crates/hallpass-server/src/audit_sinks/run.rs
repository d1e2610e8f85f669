//! A sink's task: hold the lease (with replicas), wait for a batch, send
//! it, record the acknowledgement, back off after failures; at shutdown,
//! send what the log holds and stop.

use std::time::Duration;

use hallpass_core::audit::AuditEvent;
use tokio::sync::watch;
use tokio::time::Instant;

use super::cursor::{Held, RENEW_EVERY};
use super::{DRAIN_RETRY, FIRST_BACKOFF, Failure, MAX_BACKOFF, POLL, Position, Sink, anchor, check_chain, refuse};

/// What one turn of a sink's loop did.
enum Step {
    /// The batch was acknowledged, or another replica took the sink over
    /// meanwhile: either way it is done here.
    Sent,
    /// Waited, or read a batch to send next.
    Waited,
    /// Nothing to send.
    CaughtUp,
}

impl Sink {
    pub(super) async fn run(mut self, mut drain: watch::Receiver<bool>) {
        let mut batch: Vec<AuditEvent> = Vec::new();
        let mut backoff = FIRST_BACKOFF;
        // When the events not sent yet showed up: a batch waits from then.
        let mut since: Option<Instant> = None;
        self.head = self.store.read(|r| r.audit_head_seq()).await.unwrap_or(0);
        loop {
            let draining = *drain.borrow();
            let outcome = match self.keep_lease().await {
                Ok(false) if draining => break,
                Ok(false) => {
                    self.pause(RENEW_EVERY, &mut drain).await;
                    continue;
                }
                Ok(true) if batch.is_empty() => self.fill(&mut batch, &mut since, &mut drain).await,
                Ok(true) => self.deliver(&batch).await.map_err(Failure::Send),
                Err(failure) => Err(failure),
            };
            match outcome {
                Ok(Step::Sent) => {
                    batch.clear();
                    since = None;
                    backoff = FIRST_BACKOFF;
                }
                Ok(Step::Waited) => {}
                Ok(Step::CaughtUp) if draining => break,
                Ok(Step::CaughtUp) => since = None,
                Err(Failure::Rewritten(problem)) => {
                    refuse(&self.name, &problem);
                    break;
                }
                Err(failure) => {
                    self.failed(&failure.to_string(), backoff);
                    self.pause(backoff, &mut drain).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Some(cursor) = &self.cursor {
            cursor.release().await;
        }
    }

    /// Reads the next batch into `batch` when it is due (full, waited for
    /// long enough, or anything while shutting down); waits otherwise.
    async fn fill(
        &mut self,
        batch: &mut Vec<AuditEvent>,
        since: &mut Option<Instant>,
        drain: &mut watch::Receiver<bool>,
    ) -> Result<Step, Failure> {
        let head = self.head.max(*self.changes.borrow());
        let behind = head.saturating_sub(self.position.seq);
        metrics::gauge!("hallpass_audit_sink_lag_events", "sink" => self.name.clone()).set(behind as f64);
        if behind == 0 {
            if *drain.borrow() {
                return Ok(Step::CaughtUp);
            }
            self.wait(drain, None).await;
            return Ok(Step::CaughtUp);
        }
        let due = *since.get_or_insert_with(Instant::now) + self.max_wait;
        if !*drain.borrow() && behind < u64::from(self.max_events) && Instant::now() < due {
            self.wait(drain, Some(due)).await;
            return Ok(Step::Waited);
        }
        let (after, limit) = (self.position.seq, self.max_events);
        let events = self.store.read(move |r| r.audit(after, None, limit)).await?;
        check_chain(&self.position, &events)?;
        if events.is_empty() {
            if *drain.borrow() {
                return Ok(Step::CaughtUp);
            }
            // The head is ahead of what can be read yet: look again soon.
            self.wait(drain, None).await;
        }
        *batch = events;
        Ok(Step::Waited)
    }

    /// Takes or renews the lease when due; on taking it, reads the
    /// cursor and checks the database still holds what it points at.
    async fn keep_lease(&mut self) -> Result<bool, Failure> {
        let Some(cursor) = &self.cursor else {
            return Ok(true);
        };
        if self.leased && self.renewed.is_some_and(|at| at.elapsed() < RENEW_EVERY) {
            return Ok(true);
        }
        let held = cursor.hold().await? == Held::Yes;
        if held {
            self.renewed = Some(Instant::now());
            if !self.leased {
                let seq = cursor.load().await?;
                let whose = format!("the receiver of audit sink {:?} (by its cursor)", self.name);
                self.position = anchor(&self.store, seq, None, &whose).await?;
                tracing::info!(sink = %self.name, from_seq = seq, "this server drives the audit sink");
            }
        } else if self.leased {
            tracing::info!(sink = %self.name, "another replica drives the audit sink now");
        }
        self.leased = held;
        Ok(held)
    }

    /// Sends `batch` while keeping the lease, then records the
    /// acknowledgement.
    async fn deliver(&mut self, batch: &[AuditEvent]) -> Result<Step, String> {
        let Some(last) = batch.last() else {
            return Ok(Step::Sent);
        };
        if !self.send_holding_lease(batch).await? {
            return Ok(Step::Sent);
        }
        if let Some(cursor) = &self.cursor {
            match cursor.advance(last.seq).await {
                Ok(Held::Yes) => self.renewed = Some(Instant::now()),
                Ok(Held::No) => {
                    self.leased = false;
                    return Ok(Step::Sent);
                }
                // Sent, not recorded: it goes again, and the receiver drops it by seq.
                Err(error) => {
                    return Err(format!(
                        "delivered up to seq {}, but cannot record it: {error}",
                        last.seq
                    ));
                }
            }
        }
        self.position = Position::of(last);
        let head = self.head.max(*self.changes.borrow());
        metrics::counter!("hallpass_audit_sink_events_total", "sink" => self.name.clone())
            .increment(batch.len() as u64);
        metrics::gauge!("hallpass_audit_sink_lag_events", "sink" => self.name.clone())
            .set(head.saturating_sub(last.seq) as f64);
        Ok(Step::Sent)
    }

    /// The send, with the lease renewed while it runs; `Ok(false)` when the
    /// lease went to another replica (the send is abandoned).
    async fn send_holding_lease(&mut self, batch: &[AuditEvent]) -> Result<bool, String> {
        let Sink {
            transport,
            cursor,
            name,
            ..
        } = self;
        let send = transport.send(batch);
        tokio::pin!(send);
        let mut renew = tokio::time::interval_at(Instant::now() + RENEW_EVERY, RENEW_EVERY);
        loop {
            tokio::select! {
                sent = &mut send => return sent.map(|()| true),
                _ = renew.tick(), if cursor.is_some() => {
                    let Some(cursor) = cursor.as_ref() else { continue };
                    match cursor.hold().await {
                        Ok(Held::Yes) => {}
                        Ok(Held::No) => {
                            self.leased = false;
                            return Ok(false);
                        }
                        Err(error) => tracing::warn!(sink = %name, %error, "cannot renew the audit sink's lease"),
                    }
                }
            }
        }
    }

    /// Waits for the log to change, `until`, the lease to need renewing or
    /// the shutdown; also reads the head itself now and then, in case a
    /// change went unseen.
    async fn wait(&mut self, drain: &mut watch::Receiver<bool>, until: Option<Instant>) {
        if *drain.borrow() {
            return;
        }
        let tick = Instant::now() + if self.cursor.is_some() { RENEW_EVERY } else { POLL };
        let wake = until.map_or(tick, |until| until.min(tick));
        tokio::select! {
            changed = self.changes.changed() => {
                if changed.is_err() {
                    tokio::time::sleep_until(wake).await;
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if let Ok(head) = self.store.read(|r| r.audit_head_seq()).await {
                    self.head = self.head.max(head);
                }
            }
            _ = drain.changed() => {}
        }
    }

    /// Sleeps `pause` (shorter while shutting down), renewing the lease.
    async fn pause(&mut self, pause: Duration, drain: &mut watch::Receiver<bool>) {
        let until = Instant::now() + pause;
        while Instant::now() < until {
            if *drain.borrow() {
                tokio::time::sleep(DRAIN_RETRY.min(pause)).await;
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until.min(Instant::now() + RENEW_EVERY)) => {}
                _ = drain.changed() => {}
            }
            if self.leased && self.keep_lease().await.is_err() {
                return;
            }
        }
    }

    fn failed(&self, error: &str, retry_in: Duration) {
        metrics::counter!("hallpass_audit_sink_failures_total", "sink" => self.name.clone()).increment(1);
        tracing::warn!(
            sink = %self.name, %error, retry_in_seconds = retry_in.as_secs(), behind_seq = self.position.seq,
            "audit sink delivery failed; the sink falls behind and tries again"
        );
    }
}
