//! The audit checkpoints the server writes on its own
//! (`scheduler::checkpoints`, docs/audit.md "Signed checkpoints"): while
//! events are written, a signed checkpoint of the newest one follows within
//! a minute; a quiet log keeps its last checkpoint and gets no new one.
//!
//! Tokio's time is paused and moves only when the test says so: the
//! ticker's minutes pass in an instant, and exactly when expected.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use hallpass_api as api;
use hallpass_core::audit::AuditEvent;
use hallpass_server::app::App;
use hallpass_server::app::audit::{AuditQuery, CHECKPOINT_INTERVAL};
use hallpass_server::testing::caller;
use support::Kind;
use tokio::sync::watch;

const CHECKPOINT: &str = "audit.checkpoint";

/// Keeps Tokio from moving paused time on its own while held. Left to
/// itself, a paused runtime with nothing to do jumps to its next timer,
/// which it would do whenever the test waits for the store's threads: the
/// ticker's minute would pass at moments the test does not choose.
struct TimeMovesOnlyByHand {
    /// Dropped with the guard, which ends the blocking task.
    _release: std::sync::mpsc::Sender<()>,
}

impl TimeMovesOnlyByHand {
    fn hold() -> TimeMovesOnlyByHand {
        let (release, released) = std::sync::mpsc::channel::<()>();
        // While a blocking task runs, paused time does not advance itself.
        tokio::task::spawn_blocking(move || {
            let _ = released.recv();
        });
        TimeMovesOnlyByHand { _release: release }
    }
}

async fn log(app: &App) -> Vec<AuditEvent> {
    let query = AuditQuery {
        since: 0,
        request: None,
        limit: 1000,
    };
    app.audit_page(&caller("admin", &["admins"]), query)
        .await
        .expect("audit")
}

/// Writes one event (a new token for `principal`); returns its seq.
async fn write_event(app: &App, principal: &str) -> u64 {
    let body = api::CreateToken {
        principal: principal.into(),
        groups: vec!["dev".into()],
        ttl: None,
    };
    app.create_token(&caller("admin", &["admins"]), body)
        .await
        .expect("token");
    let newest = log(app).await.pop().expect("an event");
    assert_eq!(newest.kind, "token.created");
    newest.seq
}

/// Waits until the log's newest line is a checkpoint of event `seq`. Polled
/// in real time (the store writes on threads of its own, and paused time
/// does not move while the test waits), for at most 10 s.
async fn checkpointed(app: &App, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = log(app).await;
        let newest = events.last().expect("an event");
        if newest.kind == CHECKPOINT && newest.data["covers_seq"] == seq {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of event {seq}: the log ends {newest:?}"
        );
        tokio::task::yield_now().await;
    }
}

async fn a_checkpoint_follows_new_events_within_a_minute_and_none_while_quiet(kind: Kind) {
    let start = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).single().expect("valid time");
    let held = support::app(kind, start, Vec::new());
    let app = held.app.clone();
    let _by_hand = TimeMovesOnlyByHand::hold();
    let first = write_event(&app, "alice").await;
    let (stop, stop_rx) = watch::channel(false);
    let ticker = tokio::spawn(hallpass_server::scheduler::checkpoints(app.clone(), stop_rx));
    // Let the ticker start (and set its first tick) before time moves.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    // Start-up signs the head itself, so the ticker's first tick is one
    // interval later; nothing comes before it.
    tokio::time::advance(CHECKPOINT_INTERVAL - Duration::from_secs(1)).await;
    assert_eq!(log(&app).await.len(), 1, "no checkpoint before the first minute is up");
    tokio::time::advance(Duration::from_secs(1)).await;
    checkpointed(&app, first).await;

    // Each minute with events ends with a checkpoint of the newest.
    for principal in ["bob", "carol", "dave"] {
        let seq = write_event(&app, principal).await;
        tokio::time::advance(CHECKPOINT_INTERVAL).await;
        checkpointed(&app, seq).await;
    }
    let written = log(&app).await;

    // Quiet minutes: each tick finds the newest line a checkpoint already.
    for _ in 0..3 {
        tokio::time::advance(CHECKPOINT_INTERVAL).await;
        assert_eq!(log(&app).await, written, "no checkpoint without new events");
    }
    // Once stopped, the ticker has finished whatever its ticks started.
    stop.send(true).expect("the ticker listens");
    ticker.await.expect("the ticker stops");
    let events = log(&app).await;
    assert_eq!(events, written, "no checkpoint in the quiet minutes");
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["token.created", CHECKPOINT].repeat(4),
        "one checkpoint after each event"
    );
    let report = app.audit_verify(&caller("admin", &["admins"])).await.expect("verify");
    assert!(report.ok && report.complete, "{report:?}");
    assert_eq!(report.checkpoints, 4, "each one signed with the server's key");
}

on_both_backends!(paused: a_checkpoint_follows_new_events_within_a_minute_and_none_while_quiet);
