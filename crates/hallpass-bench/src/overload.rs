//! Scenario `overload`: audit append under overload (issue #14). Many
//! clients (512) post self-service requests without pause for a while (20
//! s); the server may refuse (429, 503: backpressure) but must never
//! acknowledge a request whose audit events it then loses.
//!
//! Every request is for a (principal, role) pair nobody used before (a
//! shared counter over [`crate::throughput::Pairs`], roles and principals
//! set up as for `expiry`, sized for 15,000 requests a second), so each
//! acknowledged one is a new grant: one durable write with its events.
//! Clients stick to replica `client mod replicas`. Answers are counted by
//! kind: acknowledged (2xx), refused (429 and 503), timed out (408 from the
//! server or no answer within the client's 60 s), other HTTP errors, and
//! connection failures (after which a client waits 10 ms, so as not to spin
//! on a refused connection).
//!
//! Afterwards the whole audit export is read: every acknowledged request
//! must have its `request.created` and `grant.activated` events, and the
//! events whose time falls in the window, divided by the window, are the
//! events per second sustained. `GET /v1/audit/verify` must pass.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use hallpass_api::CreateRequest;
use hallpass_client::ClientError;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;

use crate::audit_chain::{self, ChainCheck};
use crate::expiry::{Population, Setup, setup};
use crate::procfs::CpuReport;
use crate::server::{Backend, Deployment};
use crate::stats::{Latencies, Summary, fmt_ms, print_table};

/// The scale of the goal's run.
pub const GOAL_CLIENTS: usize = 512;
pub const GOAL_SECONDS: u64 = 20;
/// Requests per second, all clients together, the pairs are sized for.
const PLANNED_RATE: f64 = 15_000.0;
/// What the server writes for an auto-approved request.
pub const EXPECTED_KINDS: [&str; 2] = ["request.created", "grant.activated"];
const ERROR_SAMPLES: usize = 5;

#[derive(Debug, Clone)]
pub struct Options {
    pub clients: usize,
    pub duration: Duration,
}

/// Answers by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Answers {
    pub sent: u64,
    pub acknowledged: u64,
    /// 429 and 503: backpressure.
    pub refused: u64,
    /// 408, or no answer within the client's time limit.
    pub timed_out: u64,
    pub other_errors: u64,
    pub connection_failures: u64,
    pub error_samples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverloadReport {
    pub backend: Backend,
    pub clients: usize,
    pub duration_seconds: f64,
    pub setup: Setup,
    pub answers: Answers,
    /// A client found no unused (principal, role) pair left and stopped.
    pub ran_out_of_pairs: bool,
    pub acknowledged_per_second: f64,
    /// Every answer, whatever it was.
    pub latency: Summary,
    pub latency_acknowledged: Summary,
    /// Events in the whole export.
    pub export_events: u64,
    /// Events whose time falls in the window.
    pub window_events: u64,
    pub events_per_second: f64,
    /// Acknowledged requests missing one of [`EXPECTED_KINDS`].
    pub lost: usize,
    pub lost_samples: Vec<String>,
    pub audit: ChainCheck,
    pub cpu: CpuReport,
}

impl OverloadReport {
    /// The goal's scale: 512 clients for 20 s.
    pub fn at_scale(&self) -> bool {
        self.clients >= GOAL_CLIENTS && self.duration_seconds >= GOAL_SECONDS as f64
    }

    /// No acknowledged event lost and the chain verifies.
    pub fn nothing_lost(&self) -> bool {
        self.lost == 0 && self.audit.ok && self.answers.acknowledged > 0
    }
}

/// `overload` on `backend`: a fresh deployment, stopped at the end.
pub async fn run(binary: &Path, backend: &Backend, options: &Options) -> Result<OverloadReport> {
    if options.clients == 0 || options.duration.is_zero() {
        bail!("--clients and --duration must be positive");
    }
    eprintln!("overload ({}): fresh server", backend.label());
    let deployment = Deployment::start(binary, backend).await?;
    let result = scenario(&deployment, options).await;
    let stopped = deployment.stop().await;
    let report = result?;
    stopped?;
    Ok(report)
}

/// What one client counted.
struct Tally {
    answers: Answers,
    latency: Latencies,
    acknowledged: Latencies,
    ids: Vec<String>,
}

impl Tally {
    fn new() -> Result<Tally> {
        Ok(Tally {
            answers: Answers::default(),
            latency: Latencies::new()?,
            acknowledged: Latencies::new()?,
            ids: Vec::new(),
        })
    }

    fn sample(&mut self, message: String) {
        let samples = &mut self.answers.error_samples;
        if samples.len() < ERROR_SAMPLES && !samples.contains(&message) {
            samples.push(message);
        }
    }

    fn merge(&mut self, other: Tally) -> Result<()> {
        let (a, b) = (&mut self.answers, &other.answers);
        a.sent += b.sent;
        a.acknowledged += b.acknowledged;
        a.refused += b.refused;
        a.timed_out += b.timed_out;
        a.other_errors += b.other_errors;
        a.connection_failures += b.connection_failures;
        for message in other.answers.error_samples {
            self.sample(message);
        }
        self.latency.merge(&other.latency)?;
        self.acknowledged.merge(&other.acknowledged)?;
        self.ids.extend(other.ids);
        Ok(())
    }

    /// Counts one answer; true when the client should pause (no connection).
    fn count(&mut self, answer: Result<String, ClientError>, took: Duration) -> bool {
        self.answers.sent += 1;
        self.latency.record(took);
        match answer {
            Ok(id) => {
                self.answers.acknowledged += 1;
                self.acknowledged.record(took);
                self.ids.push(id);
            }
            Err(error) => match (error.status(), &error) {
                (Some(429 | 503), _) => self.answers.refused += 1,
                (Some(408), _) => self.answers.timed_out += 1,
                (None, ClientError::Transport(message)) if message.contains("did not answer in time") => {
                    self.answers.timed_out += 1
                }
                (None, ClientError::Transport(message)) => {
                    self.answers.connection_failures += 1;
                    self.sample(format!("connection: {message}"));
                    return true;
                }
                (status, _) => {
                    self.answers.other_errors += 1;
                    self.sample(format!("{}: {error}", status.map_or("error".into(), |s| s.to_string())));
                }
            },
        }
        false
    }
}

/// One client: new pairs from `next` until `end`.
async fn client_task(
    population: Arc<Population>,
    worker: usize,
    next: Arc<AtomicUsize>,
    ran_out: Arc<AtomicBool>,
    end: Instant,
) -> Result<Tally> {
    let mut tally = Tally::new()?;
    while Instant::now() < end {
        let j = next.fetch_add(1, Ordering::Relaxed);
        let Some((principal, role)) = population.pairs.pair(j) else {
            ran_out.store(true, Ordering::Relaxed);
            break;
        };
        let role = population
            .roles
            .get(role)
            .context("pair outside the benchmark's roles")?;
        let body = CreateRequest {
            role: role.clone(),
            duration: Some("1h".into()),
            reason: "hallpass-bench overload".into(),
            ticket: None,
            emergency: false,
            scheduled_start: None,
            ssh_public_key: None,
            plan: None,
        };
        let client = population.client(worker, principal)?;
        let start = Instant::now();
        let answer = client.create_request(&body).await.map(|response| response.request.id);
        if tally.count(answer, start.elapsed()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(tally)
}

async fn scenario(deployment: &Deployment, options: &Options) -> Result<OverloadReport> {
    let seconds = options.duration.as_secs_f64();
    let population = Arc::new(setup(deployment, (seconds * PLANNED_RATE).ceil() as usize).await?);
    eprintln!(
        "overload: {} clients posting requests without pause for {seconds:.0}s",
        options.clients
    );
    let (next, ran_out) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let window_start = Utc::now();
    let before = deployment.cpu_snapshot()?;
    let end = Instant::now() + options.duration;
    let handles: Vec<_> = (0..options.clients)
        .map(|worker| {
            tokio::spawn(client_task(
                population.clone(),
                worker,
                next.clone(),
                ran_out.clone(),
                end,
            ))
        })
        .collect();
    tokio::time::sleep_until(end.into()).await;
    let after = deployment.cpu_snapshot()?;
    let window_end = Utc::now();
    let mut tally = Tally::new()?;
    for handle in handles {
        tally.merge(handle.await.context("a client task panicked")??)?;
    }
    eprintln!(
        "overload: {} sent, {} acknowledged, {} refused; reading the audit export",
        tally.answers.sent, tally.answers.acknowledged, tally.answers.refused
    );
    let scan = scan_export(deployment, &tally.ids, window_start, window_end).await?;
    let audit = audit_chain::verify(deployment).await;
    let window_seconds = (window_end - window_start).num_milliseconds() as f64 / 1000.0;
    Ok(OverloadReport {
        backend: deployment.backend().clone(),
        clients: options.clients,
        duration_seconds: seconds,
        setup: population.setup.clone(),
        acknowledged_per_second: tally.answers.acknowledged as f64 / seconds,
        answers: tally.answers,
        ran_out_of_pairs: ran_out.load(Ordering::Relaxed),
        latency: tally.latency.summary(),
        latency_acknowledged: tally.acknowledged.summary(),
        export_events: scan.events,
        window_events: scan.in_window,
        events_per_second: scan.in_window as f64 / window_seconds.max(1e-9),
        lost: scan.lost,
        lost_samples: scan.lost_samples,
        audit,
        cpu: CpuReport::between(&before, &after),
    })
}

/// What the export held.
struct Scan {
    events: u64,
    in_window: u64,
    lost: usize,
    lost_samples: Vec<String>,
}

/// Streams the audit export and checks every acknowledged request's events.
async fn scan_export(
    deployment: &Deployment,
    acknowledged: &[String],
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
) -> Result<Scan> {
    let mut sink = ExportScan {
        pending: Vec::new(),
        seen: acknowledged.iter().map(|id| (id.clone(), 0u8)).collect(),
        window: (window_start, window_end),
        events: 0,
        in_window: 0,
        error: None,
    };
    deployment
        .admin(0)?
        .audit_export(None, &mut sink)
        .await
        .context("cannot export the audit log")?;
    let rest = std::mem::take(&mut sink.pending);
    sink.line(&rest);
    if let Some(error) = sink.error {
        bail!("{error}");
    }
    let all = (1u8 << EXPECTED_KINDS.len()) - 1;
    let mut lost_samples = Vec::new();
    let mut lost = 0;
    for (id, seen) in &sink.seen {
        if *seen != all {
            lost += 1;
            if lost_samples.len() < ERROR_SAMPLES {
                let missing: Vec<&str> = EXPECTED_KINDS
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| seen & (1 << bit) == 0)
                    .map(|(_, kind)| *kind)
                    .collect();
                lost_samples.push(format!("{id}: no {}", missing.join(", ")));
            }
        }
    }
    Ok(Scan {
        events: sink.events,
        in_window: sink.in_window,
        lost,
        lost_samples,
    })
}

#[derive(Deserialize)]
struct Line {
    kind: String,
    request_id: Option<String>,
    time: String,
}

/// An `AsyncWrite` sink for the NDJSON export: counts events, those in the
/// window, and marks the expected kinds of the acknowledged requests.
struct ExportScan {
    pending: Vec<u8>,
    /// Acknowledged request id → bit `k` set once `EXPECTED_KINDS[k]` is seen.
    seen: HashMap<String, u8>,
    window: (DateTime<Utc>, DateTime<Utc>),
    events: u64,
    in_window: u64,
    error: Option<String>,
}

impl ExportScan {
    fn line(&mut self, line: &[u8]) {
        if self.error.is_some() || line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let event = match serde_json::from_slice::<Line>(line) {
            Ok(event) => event,
            Err(error) => {
                self.error = Some(format!("unreadable audit export line: {error}"));
                return;
            }
        };
        self.events += 1;
        match DateTime::parse_from_rfc3339(&event.time) {
            Ok(time) => {
                let time = time.with_timezone(&Utc);
                if time >= self.window.0 && time <= self.window.1 {
                    self.in_window += 1;
                }
            }
            Err(error) => self.error = Some(format!("bad audit time {:?}: {error}", event.time)),
        }
        let bit = EXPECTED_KINDS.iter().position(|kind| *kind == event.kind);
        if let (Some(bit), Some(id)) = (bit, event.request_id)
            && let Some(seen) = self.seen.get_mut(&id)
        {
            *seen |= 1 << bit;
        }
    }
}

impl AsyncWrite for ExportScan {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.pending.extend_from_slice(buf);
        if let Some(end) = this.pending.iter().rposition(|&b| b == b'\n') {
            let complete: Vec<u8> = this.pending.drain(..=end).collect();
            for line in complete.split(|&b| b == b'\n') {
                this.line(line);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

pub fn print(report: &OverloadReport) {
    println!(
        "\nOverload ({}): {} clients posting self-service requests without pause for {:.0} s",
        report.backend.label(),
        report.clients,
        report.duration_seconds
    );
    let a = &report.answers;
    let lat = |s: &Summary| format!("{} / {} / {} ms", fmt_ms(s.p50_ms), fmt_ms(s.p99_ms), fmt_ms(s.max_ms));
    let rows = vec![
        vec!["requests sent".into(), a.sent.to_string()],
        vec![
            "acknowledged (2xx)".into(),
            format!("{} ({:.0}/s)", a.acknowledged, report.acknowledged_per_second),
        ],
        vec!["refused (429, 503)".into(), a.refused.to_string()],
        vec!["timed out (408, no answer in 60 s)".into(), a.timed_out.to_string()],
        vec!["other errors".into(), a.other_errors.to_string()],
        vec!["connection failures".into(), a.connection_failures.to_string()],
        vec!["latency p50 / p99 / max, all answers".into(), lat(&report.latency)],
        vec![
            "latency p50 / p99 / max, acknowledged".into(),
            lat(&report.latency_acknowledged),
        ],
        vec![
            "audit events in the window (whole export)".into(),
            format!("{} ({})", report.window_events, report.export_events),
        ],
        vec![
            "audit events/s sustained".into(),
            format!("{:.0}", report.events_per_second),
        ],
        vec![
            "acknowledged requests missing events".into(),
            format!("{} of {}", report.lost, a.acknowledged),
        ],
        vec!["audit chain (GET /v1/audit/verify)".into(), report.audit.describe()],
        vec!["server CPU over the window".into(), report.cpu.server.describe()],
    ];
    print_table(&["measure", "value"], &rows);
    if report.ran_out_of_pairs {
        println!("  note: the clients ran out of (principal, role) pairs before the window ended");
    }
    for sample in a.error_samples.iter().chain(&report.lost_samples) {
        println!("  {sample}");
    }
}
