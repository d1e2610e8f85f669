//! Audit sinks: outside copies of the audit log, each event in order and,
//! after de-duplication by `seq`, exactly once (`audit_sink` blocks of the
//! server configuration; docs/audit.md, "Audit streaming").
//!
//! Each sink is a task that reads the log after its position, wakes on the
//! store's change counter (and a timer, in case a change went unseen),
//! sends a batch, and moves its position only once the receiver has it: a
//! 2xx answer (webhook), the bytes written and flushed (syslog), the file
//! fsync'd (file). A receiver that is down is retried with backoff (1 s
//! doubling to 5 min) and the sink falls behind; nothing is dropped. A
//! crash between the acknowledgement and the cursor's write sends the batch
//! again, which the receiver recognises by `seq`.
//!
//! The webhook and syslog sinks keep their position in the store
//! ([`cursor`]), driven by one replica at a time under a lease; the file
//! sink is per server and its file is its own position.
//!
//! A sink is a witness: it refuses to go on when the database no longer
//! holds what it sent (the log ends before the sink's position, or the
//! event there, or the chain after it, changed), with an `ALERT` in the log
//! and `hallpass_audit_sink_rewrite_detected{sink} 1`. That is a restored or
//! rewritten database, which is what the copy is there to show.

mod cursor;
mod file;
mod run;
mod syslog;
mod webhook;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hallpass_config::{AuditSink, SinkDestination};
use hallpass_core::audit::AuditEvent;
use hallpass_store::{Backend, Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use cursor::Cursor;
use file::FileWriter;
use syslog::SyslogSender;
use webhook::WebhookSender;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest a sink waits without looking at the log's head itself.
const POLL: Duration = Duration::from_secs(5);
/// Between attempts while the server shuts down.
const DRAIN_RETRY: Duration = Duration::from_millis(200);

/// The running sinks.
pub struct AuditSinks {
    drain: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for AuditSinks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Where a receiver's copy ends: its last event's seq and hash.
#[derive(Debug, Clone, Default)]
struct Position {
    seq: u64,
    hash: Option<String>,
}

impl Position {
    fn of(event: &AuditEvent) -> Position {
        Position {
            seq: event.seq,
            hash: Some(event.hash.clone()),
        }
    }
}

enum Transport {
    Webhook(Box<WebhookSender>),
    Syslog(SyslogSender),
    File(FileWriter),
}

impl Transport {
    async fn send(&mut self, events: &[AuditEvent]) -> Result<(), String> {
        match self {
            Transport::Webhook(sender) => sender.send(events).await,
            Transport::Syslog(sender) => sender.send(events).await,
            Transport::File(writer) => writer.send(events).await,
        }
    }
}

/// Why a sink stops or pauses.
enum Failure {
    /// The database no longer holds what the sink sent: the sink stops.
    Rewritten(String),
    /// The store could not be read or written: retried.
    Store(StoreError),
    /// The receiver did not take the batch: retried.
    Send(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Rewritten(problem) | Failure::Send(problem) => f.write_str(problem),
            Failure::Store(error) => write!(f, "the store: {error}"),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

/// Events as export lines: JSON, one per line, each ending in `\n`.
fn lines(events: &[AuditEvent]) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.len() * 400);
    for event in events {
        // An event read from the store always serialises.
        if serde_json::to_writer(&mut body, event).is_ok() {
            body.push(b'\n');
        }
    }
    body
}

/// Raises the alarm for a sink that will not go on.
fn refuse(sink: &str, problem: &str) {
    metrics::gauge!("hallpass_audit_sink_rewrite_detected", "sink" => sink.to_string()).set(1.0);
    tracing::error!(
        sink,
        "ALERT: audit sink {sink:?} stopped: {problem}; the copy it made is the evidence, keep it"
    );
}

/// The log's head and its event `seq` (when there is one).
async fn event_at(store: &Store, seq: u64) -> Result<(u64, Option<AuditEvent>), StoreError> {
    store
        .read(move |r| {
            let head = r.audit_head_seq()?;
            let event = match seq {
                0 => None,
                seq => r.audit(seq - 1, None, 1)?.into_iter().find(|event| event.seq == seq),
            };
            Ok((head, event))
        })
        .await
}

/// Checks that the database still holds event `seq` as `copy` has it
/// (when given), and returns the sink's position there.
async fn anchor(store: &Store, seq: u64, copy: Option<&AuditEvent>, whose: &str) -> Result<Position, Failure> {
    if seq == 0 {
        return Ok(Position::default());
    }
    let (head, event) = event_at(store, seq).await?;
    let Some(event) = event else {
        return Err(Failure::Rewritten(format!(
            "{whose} holds the log up to seq {seq}, but the database's audit log ends at seq {head} and has no \
             event {seq}: the database was restored from an older backup, or its log was cut"
        )));
    };
    if copy.is_some_and(|copy| *copy != event) {
        return Err(Failure::Rewritten(format!(
            "event {seq} in the database differs from the copy {whose} holds: the database's audit log was rewritten"
        )));
    }
    Ok(Position::of(&event))
}

/// Checks that `events` follow `position` in one unbroken chain.
fn check_chain(position: &Position, events: &[AuditEvent]) -> Result<(), Failure> {
    let (mut seq, mut hash) = (position.seq, position.hash.as_deref());
    for event in events {
        if event.seq != seq + 1 {
            return Err(Failure::Rewritten(format!(
                "the database's audit log has no event {} after event {seq} (the next is {}): events were removed",
                seq + 1,
                event.seq
            )));
        }
        if hash.is_some_and(|hash| hash != event.prev_hash) {
            return Err(Failure::Rewritten(format!(
                "event {} in the database no longer follows event {seq} as it was sent: the audit log was rewritten",
                event.seq
            )));
        }
        (seq, hash) = (event.seq, Some(event.hash.as_str()));
    }
    Ok(())
}

/// The sinks, checked and opened before the store is.
pub struct PreparedSinks(Vec<Prepared>);

struct Prepared {
    config: AuditSink,
    transport: Transport,
    /// A file sink's last event, to be found in the database.
    last: Option<AuditEvent>,
}

impl AuditSinks {
    /// Checks every sink's settings (the key, the URL, the CA file) and
    /// opens the files, before the server changes anything: a sink it
    /// cannot use stops the start-up. A file that holds something other
    /// than audit events is refused with an alert.
    pub fn prepare(sinks: &[AuditSink]) -> anyhow::Result<PreparedSinks> {
        crate::telemetry::install_metrics();
        let mut prepared = Vec::new();
        for config in sinks {
            crate::telemetry::register_audit_sink(&config.name);
            let context = || format!("audit_sink {:?}", config.name);
            let (transport, last) = match &config.destination {
                SinkDestination::Webhook(webhook) => {
                    let sender = WebhookSender::new(webhook).with_context(context)?;
                    (Transport::Webhook(Box::new(sender)), None)
                }
                SinkDestination::Syslog(syslog) => (
                    Transport::Syslog(SyslogSender::new(syslog).with_context(context)?),
                    None,
                ),
                SinkDestination::File(file) => match open_file(&config.name, &file.path)? {
                    Some(opened) => (Transport::File(opened.writer), opened.last),
                    None => continue,
                },
            };
            prepared.push(Prepared {
                config: config.clone(),
                transport,
                last,
            });
        }
        Ok(PreparedSinks(prepared))
    }

    /// Starts a task per sink. A file sink whose copy the database no
    /// longer matches is refused (with an alert) and the others run.
    pub async fn start(prepared: PreparedSinks, store: &Store) -> anyhow::Result<AuditSinks> {
        let owner = matches!(store.backend(), Backend::Postgres { .. }).then(|| uuid::Uuid::now_v7().to_string());
        let (drain, drain_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for Prepared {
            config,
            transport,
            last,
        } in prepared.0
        {
            let (cursor, position) = match &config.destination {
                SinkDestination::File(file) => {
                    let seq = last.as_ref().map_or(0, |event| event.seq);
                    let whose = format!("the file {}", file.path.display());
                    match anchor(store, seq, last.as_ref(), &whose).await {
                        Ok(position) => (None, position),
                        Err(Failure::Rewritten(problem)) => {
                            refuse(&config.name, &problem);
                            continue;
                        }
                        Err(failure) => anyhow::bail!("audit_sink {:?}: {failure}", config.name),
                    }
                }
                _ => (
                    Some(Cursor::new(store.clone(), &config.name, owner.clone())),
                    Position::default(),
                ),
            };
            tracing::info!(sink = %config.name, from_seq = position.seq, "audit sink started");
            let sink = Sink {
                name: config.name.clone(),
                store: store.clone(),
                changes: store.changes(),
                transport,
                leased: cursor.is_none(),
                cursor,
                position,
                head: 0,
                renewed: None,
                max_events: config.batch_max_events,
                max_wait: config.batch_max_wait,
            };
            tasks.push(tokio::spawn(sink.run(drain_rx.clone())));
        }
        Ok(AuditSinks { drain, tasks })
    }

    /// Lets every sink send what the log holds now (the closing checkpoint
    /// included), then stops them; gives up on those still busy `within`.
    pub async fn drain(mut self, within: Duration) {
        let _ = self.drain.send(true);
        let deadline = Instant::now() + within;
        for mut task in std::mem::take(&mut self.tasks) {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                tracing::warn!(
                    "an audit sink had not sent everything when the server stopped; it goes on from there at the next start"
                );
            }
        }
    }
}

/// Opens a file sink; `None` when it is refused.
fn open_file(name: &str, path: &Path) -> anyhow::Result<Option<file::Opened>> {
    let opened = match file::open(path) {
        Ok(opened) => opened,
        Err(error @ file::FileError::Foreign { .. }) => {
            refuse(name, &error.to_string());
            return Ok(None);
        }
        Err(error) => return Err(error).with_context(|| format!("audit_sink {name:?}")),
    };
    if opened.cut > 0 {
        tracing::warn!(
            sink = name, file = %path.display(), bytes = opened.cut,
            "cut a torn last line (a crash during a write) off the audit sink file; its events are written again"
        );
    }
    Ok(Some(opened))
}

/// One sink's task state.
struct Sink {
    name: String,
    store: Store,
    changes: watch::Receiver<u64>,
    transport: Transport,
    /// The store cursor (webhook, syslog); `None` for a file.
    cursor: Option<Cursor>,
    /// Whether this replica drives the sink (always, without a cursor).
    leased: bool,
    /// Where the receiver's copy ends.
    position: Position,
    /// The newest seq seen by polling (the change counter may know more).
    head: u64,
    /// When the lease was last renewed.
    renewed: Option<Instant>,
    max_events: u32,
    max_wait: Duration,
}

#[cfg(test)]
mod tests {
    use hallpass_core::audit::{AuditDraft, GENESIS_HASH};
    use serde_json::json;

    use super::*;

    /// A chain of `n` events from seq 1.
    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut events: Vec<AuditEvent> = Vec::new();
        for seq in 1..=n {
            let prev = events.last().map_or(GENESIS_HASH.to_string(), |e| e.hash.clone());
            let draft = AuditDraft::new("alice", "token.created", None, json!({"n": seq}));
            events.push(draft.seal(seq, "2026-11-21T10:00:00.000000Z".into(), &prev));
        }
        events
    }

    fn problem(position: &Position, events: &[AuditEvent]) -> Option<String> {
        match check_chain(position, events) {
            Ok(()) => None,
            Err(failure) => Some(failure.to_string()),
        }
    }

    #[test]
    fn a_batch_must_follow_what_was_sent_in_one_chain() {
        let events = chain(5);
        assert_eq!(problem(&Position::default(), &events), None);
        assert_eq!(problem(&Position::of(&events[1]), &events[2..]), None);
        // Resumed from a cursor alone (no hash known), the seq still counts.
        let cursor = Position { seq: 2, hash: None };
        assert_eq!(problem(&cursor, &events[2..]), None);
        let gap = [events[2].clone(), events[4].clone()];
        assert_eq!(
            problem(&Position::of(&events[1]), &gap).as_deref(),
            Some("the database's audit log has no event 4 after event 3 (the next is 5): events were removed")
        );
        // The log rewritten from event 3 on, and rehashed.
        let forged = AuditDraft::new("mallory", "token.created", None, json!({})).seal(
            3,
            "2026-11-21T10:00:00.000000Z".into(),
            &events[1].hash,
        );
        let mut tail = events[3..].to_vec();
        tail[0].prev_hash = forged.hash.clone();
        assert_eq!(
            problem(&Position::of(&events[2]), &tail).as_deref(),
            Some("event 4 in the database no longer follows event 3 as it was sent: the audit log was rewritten")
        );
    }

    #[test]
    fn lines_are_the_export_format() {
        let events = chain(2);
        let text = String::from_utf8(lines(&events)).unwrap();
        let read: Vec<AuditEvent> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(read, events);
        assert!(text.ends_with("}\n") && !text.contains("\n\n"));
    }
}
