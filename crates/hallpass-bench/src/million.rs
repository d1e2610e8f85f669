//! Scenario `million`: a million active grants (issue #14): the server's
//! memory and the store's size with all of them active, then a restart on
//! the same data.
//!
//! N grants (default 1,000,000) are created through the API by many
//! concurrent clients (64), each grant for its own (principal, role) pair
//! (1,000 roles × 1,000 principals for a million; see
//! [`crate::expiry::setup`]), progress printed every 10 s. All but the last
//! K (1,000) are for two hours; the last K are for `--overdue-after`
//! seconds (10), so that they fall due while the server is down. With all N
//! active, each replica's `VmRSS` and the store's size are read; the size
//! per grant is (size now − size before the grants) / grants created.
//!
//! Then every replica gets SIGTERM; once all have exited and the K short
//! grants are overdue, the replicas are started again on the same data (the
//! same SQLite data dir, the same PostgreSQL database) and, from the spawn,
//! each is polled every 10 ms for: `/healthz` answering 200; the first
//! authenticated API call answering (`GET /v1/grants?active=true&limit=1`
//! as the admin); and the gauge `hallpass_expiry_timers_ready` in `GET
//! /metrics` (the deadlines loaded into the scheduler, present once the
//! rebuild is done; absent from servers older than the gauge, which is
//! then reported as such). Each overdue grant must have its `grant.expired`
//! event (`GET /v1/audit?request=ID`) with a time before the first API
//! answer of any replica.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use hallpass_api::{CreateRequest, RequestState};
use serde::Serialize;

use crate::expiry::{Creation, Population, Setup, max, setup};
use crate::procfs::mib;
use crate::server::{Backend, Deployment};
use crate::stats::{Latencies, fmt_ms, print_table};

/// The goal's scale.
pub const TARGET_GRANTS: usize = 1_000_000;
pub const TARGET_RSS_MIB: f64 = 300.0;
/// On-disk bytes per active grant, with its events: 1.5 KiB.
pub const TARGET_BYTES_PER_GRANT: f64 = 1536.0;
/// From spawn until the API answers.
pub const TARGET_SERVING_SECONDS: f64 = 2.0;
/// From spawn until every expiry timer is rebuilt.
pub const TARGET_TIMERS_SECONDS: f64 = 5.0;
/// The gauge the server sets once its expiry timers are loaded.
pub const TIMERS_METRIC: &str = "hallpass_expiry_timers_ready";
/// Duration of the long-lived grants (the benchmark roles allow 2 h).
const LONG_SECONDS: u64 = 7200;
const ATTEMPTS: usize = 3;
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// How often the restarted servers are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// One poll's time limit.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a restarted server may take to answer at all.
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);
const ERROR_SAMPLES: usize = 5;
/// Concurrent `GET /v1/audit?request=ID` for the overdue grants.
const CHECK_CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct Options {
    pub grants: usize,
    /// Of them, grants that fall due while the server is down.
    pub overdue: usize,
    /// Their duration, in whole seconds: longer than sampling memory and
    /// stopping the servers takes.
    pub overdue_after_seconds: u64,
    pub clients: usize,
    /// After the API answers, how long to wait for the timers gauge.
    pub timers_timeout: Duration,
}

/// Memory and store size with every grant active.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    pub baseline_rss_mib: Vec<f64>,
    pub active_rss_mib: Vec<f64>,
    /// False when an overdue grant may already have expired at the sample.
    pub all_active_at_sample: bool,
    pub database_measure: String,
    /// The store after set-up, before the grants.
    pub database_bytes_before: u64,
    pub database_bytes_active: u64,
    /// SQLite: each file's bytes with all active (the WAL may hold much).
    pub sqlite_files_active: Vec<(String, u64)>,
    /// (active − before) / grants created.
    pub bytes_per_grant: f64,
}

/// One replica's start on the data it had.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStart {
    /// From spawn until `/healthz` answered 200.
    pub healthz_ms: f64,
    /// From spawn until the first authenticated API call answered 200.
    pub api_ms: f64,
    /// From spawn until `hallpass_expiry_timers_ready` turned 1 in
    /// `/metrics`; `None` when it did not (an older server).
    pub timers_ms: Option<f64>,
    /// The gauge's value (1: the timers are loaded).
    pub timers_loaded: Option<f64>,
}

/// The overdue grants against the first API answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OverdueCheck {
    pub checked: usize,
    /// `grant.expired` recorded before the first API answer of any replica.
    pub ended_before_api: usize,
    pub ended_after_api: usize,
    /// No `grant.expired` event at all.
    pub not_ended: usize,
    /// With several replicas: ended before the last replica's first API
    /// answer (each replica ends what is due before it serves, but one may
    /// serve while another still ends grants it has claimed).
    pub ended_before_every_replica_served: usize,
    /// Of those ended, ended by the server before it was stopped (the
    /// grant fell due too early; not a restart figure).
    pub ended_before_stop: usize,
    pub samples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    /// SIGTERM until every replica had exited.
    pub stop_seconds: f64,
    /// Overdue grants whose `expires_at` fell after every replica exited.
    pub overdue_due_while_down: usize,
    /// Exited until spawned again.
    pub down_seconds: f64,
    pub replicas: Vec<ReplicaStart>,
    /// The slowest replica's `healthz_ms`, `api_ms`, `timers_ms`.
    pub healthz_ms: f64,
    pub serving_ms: f64,
    pub timers_ms: Option<f64>,
    pub overdue: OverdueCheck,
    /// Once restarted and the timers loaded (or given up on).
    pub rss_after_restart_mib: Vec<f64>,
    /// The store once restarted (SQLite: the WAL checkpointed at the stop).
    pub database_bytes_after_restart: u64,
    pub sqlite_files_after_restart: Vec<(String, u64)>,
    /// (after restart − before) / grants created.
    pub bytes_per_grant_after_restart: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MillionReport {
    pub backend: Backend,
    pub grants: usize,
    pub overdue: usize,
    pub clients: usize,
    pub setup: Setup,
    pub creation: Creation,
    pub footprint: Footprint,
    pub restart: Restart,
}

/// `million` on `backend`: a fresh deployment, stopped and its data removed
/// at the end (also on error).
pub async fn run(binary: &std::path::Path, backend: &Backend, options: &Options) -> Result<MillionReport> {
    if options.grants == 0 || options.clients == 0 || options.overdue_after_seconds == 0 {
        bail!("--grants, --clients and --overdue-after must be positive");
    }
    if options.overdue > options.grants {
        bail!("--overdue cannot exceed --grants");
    }
    eprintln!("million ({}): fresh server", backend.label());
    let mut deployment = Deployment::start(binary, backend).await?;
    let result = scenario(&mut deployment, binary, options).await;
    let stopped = deployment.stop().await;
    let report = result?;
    stopped?;
    Ok(report)
}

async fn scenario(deployment: &mut Deployment, binary: &std::path::Path, options: &Options) -> Result<MillionReport> {
    let population = Arc::new(setup(deployment, options.grants).await?);
    let baseline = deployment.memory()?;
    let bytes_before = deployment.database_bytes()?;
    let long = options.grants - options.overdue;
    eprintln!(
        "million: creating {long} two-hour grants and {} of {}s with {} clients",
        options.overdue, options.overdue_after_seconds, options.clients
    );
    let started = Instant::now();
    let mut made = create_range(&population, 0, long, LONG_SECONDS, options.clients, false).await?;
    let short = create_range(
        &population,
        long,
        options.overdue,
        options.overdue_after_seconds,
        options.clients,
        true,
    )
    .await?;
    made.merge(short);
    let creation = made.creation(started.elapsed().as_secs_f64());
    log_creation(&creation);
    let active = deployment.memory()?;
    let earliest = made.overdue.iter().map(|(_, at)| *at).min();
    let bytes_active = deployment.database_bytes()?;
    let footprint = Footprint {
        baseline_rss_mib: baseline.iter().map(|m| mib(m.rss_bytes)).collect(),
        active_rss_mib: active.iter().map(|m| mib(m.rss_bytes)).collect(),
        all_active_at_sample: earliest.is_none_or(|at| Utc::now() < at),
        database_measure: database_measure(deployment.backend()).into(),
        database_bytes_before: bytes_before,
        database_bytes_active: bytes_active,
        sqlite_files_active: owned(deployment.sqlite_files()),
        bytes_per_grant: bytes_active.saturating_sub(bytes_before) as f64 / creation.created.max(1) as f64,
    };
    eprintln!(
        "million: RSS {:.1} MiB (largest replica), store {:.1} MiB ({:.0} bytes per grant) with all active",
        max(&footprint.active_rss_mib),
        mib(bytes_active),
        footprint.bytes_per_grant
    );
    let mut restart = restart(deployment, binary, &made.overdue, options).await?;
    restart.bytes_per_grant_after_restart =
        restart.database_bytes_after_restart.saturating_sub(bytes_before) as f64 / creation.created.max(1) as f64;
    Ok(MillionReport {
        backend: deployment.backend().clone(),
        grants: options.grants,
        overdue: options.overdue,
        clients: options.clients,
        setup: population.setup.clone(),
        creation,
        footprint,
        restart,
    })
}

fn owned(files: Vec<(&'static str, u64)>) -> Vec<(String, u64)> {
    files
        .into_iter()
        .map(|(name, bytes)| (name.to_string(), bytes))
        .collect()
}

/// ` (hallpass.db 5.0, hallpass.db-wal 300.0 MiB)`; empty for none.
fn files_cell(files: &[(String, u64)]) -> String {
    let cells: Vec<String> = files
        .iter()
        .map(|(name, bytes)| format!("{name} {:.1}", mib(*bytes)))
        .collect();
    if cells.is_empty() {
        String::new()
    } else {
        format!(" ({} MiB)", cells.join(", "))
    }
}

fn database_measure(backend: &Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SQLite files",
        Backend::Postgres { .. } => "PostgreSQL database (pg_database_size)",
    }
}

fn log_creation(creation: &Creation) {
    eprintln!(
        "million: created {} grants in {:.1}s ({:.0}/s), {} failed",
        creation.created, creation.seconds, creation.per_second, creation.failures
    );
    if creation.failures > 0 {
        eprintln!(
            "WARNING: {} grant(s) could not be created; first errors: {}",
            creation.failures,
            creation.failure_samples.join(" | ")
        );
    }
}

/// What the creation workers counted.
struct Made {
    created: usize,
    failures: usize,
    samples: Vec<String>,
    latency: Latencies,
    /// Id and `expires_at` of the grants kept (the overdue ones).
    overdue: Vec<(String, DateTime<Utc>)>,
}

impl Made {
    fn new() -> Result<Made> {
        Ok(Made {
            created: 0,
            failures: 0,
            samples: Vec::new(),
            latency: Latencies::new()?,
            overdue: Vec::new(),
        })
    }

    fn failure(&mut self, message: String) {
        self.failures += 1;
        if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&message) {
            self.samples.push(message);
        }
    }

    fn merge(&mut self, other: Made) {
        self.created += other.created;
        self.failures += other.failures;
        for message in other.samples {
            if self.samples.len() < ERROR_SAMPLES && !self.samples.contains(&message) {
                self.samples.push(message);
            }
        }
        // Histograms of the same bounds always merge.
        let _ = self.latency.merge(&other.latency);
        self.overdue.extend(other.overdue);
    }

    fn creation(&self, seconds: f64) -> Creation {
        Creation {
            created: self.created,
            failures: self.failures,
            failure_samples: self.samples.clone(),
            seconds,
            per_second: self.created as f64 / seconds.max(1e-9),
            latency: self.latency.summary(),
        }
    }
}

/// Creates `count` grants of `seconds` each, of pairs `first..first + count`,
/// on `workers` concurrent tasks (worker `w` on replica `w mod replicas`),
/// progress every 10 s. Keeps the grants' ids when `keep` is set.
async fn create_range(
    population: &Arc<Population>,
    first: usize,
    count: usize,
    seconds: u64,
    workers: usize,
    keep: bool,
) -> Result<Made> {
    if count == 0 {
        return Made::new();
    }
    if population.pairs.pair(first + count - 1).is_none() {
        bail!("{count} grants from pair {first} need more (principal, role) pairs than were set up");
    }
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (population, next, done) = (population.clone(), next.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let mut made = Made::new()?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(made);
                }
                let start = Instant::now();
                match create_one(&population, worker, first + i, seconds).await {
                    Ok((id, expires_at)) => {
                        made.latency.record(start.elapsed());
                        made.created += 1;
                        if keep {
                            made.overdue.push((id, expires_at));
                        }
                    }
                    Err(error) => made.failure(format!("{error:#}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progress = tokio::spawn(progress(done, count));
    let mut all = Made::new()?;
    for handle in handles {
        all.merge(handle.await.context("a creation worker panicked")??);
    }
    progress.abort();
    Ok(all)
}

async fn progress(done: Arc<AtomicUsize>, count: usize) {
    let start = Instant::now();
    loop {
        tokio::time::sleep(PROGRESS_INTERVAL).await;
        let n = done.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64();
        eprintln!("  created: {n}/{count} after {secs:.0}s ({:.0}/s)", n as f64 / secs);
    }
}

/// One auto-approved grant of pair `pair` for `seconds`; its id and
/// `expires_at`. A retry after an answer that got lost returns the same
/// grant (the pair already holds it), which is just as good.
async fn create_one(
    population: &Population,
    worker: usize,
    pair: usize,
    seconds: u64,
) -> Result<(String, DateTime<Utc>)> {
    let (principal, role) = population
        .pairs
        .pair(pair)
        .with_context(|| format!("no (principal, role) pair {pair}"))?;
    let role = population
        .roles
        .get(role)
        .with_context(|| format!("no benchmark role {role}"))?;
    let client = population.client(worker, principal)?;
    let body = CreateRequest {
        role: role.clone(),
        duration: Some(format!("{seconds}s")),
        reason: "hallpass-bench million".into(),
        ticket: None,
        emergency: false,
        scheduled_start: None,
        ssh_public_key: None,
        plan: None,
    };
    let mut last_error = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match client.create_request(&body).await {
            Ok(response) => {
                let request = response.request;
                return match (request.state, request.expires_at) {
                    (RequestState::Active, Some(expires_at)) => Ok((request.id, expires_at)),
                    (state, _) => bail!("request {} for role {role} is {state} instead of active", request.id),
                };
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(anyhow::anyhow!(
        "{}",
        last_error.map_or_else(|| "no attempt made".to_string(), |e| e.to_string())
    ))
}

/// Stops the replicas, waits until the overdue grants are due, starts them
/// again on the same data and measures how they come back.
async fn restart(
    deployment: &mut Deployment,
    binary: &std::path::Path,
    overdue: &[(String, DateTime<Utc>)],
    options: &Options,
) -> Result<Restart> {
    eprintln!("million: stopping the server(s) with SIGTERM");
    let stop_started = Instant::now();
    deployment.terminate().await?;
    let stop_seconds = stop_started.elapsed().as_secs_f64();
    let stopped_at = Utc::now();
    let latest = overdue.iter().map(|(_, at)| *at).max();
    let due_while_down = overdue.iter().filter(|(_, at)| *at > stopped_at).count();
    if due_while_down < overdue.len() {
        eprintln!(
            "WARNING: {} of {} overdue grants fell due before the server(s) had stopped; \
             raise --overdue-after",
            overdue.len() - due_while_down,
            overdue.len()
        );
    }
    if let Some(latest) = latest {
        crate::expiry::sleep_until_wall(latest + chrono::Duration::milliseconds(500)).await;
    }
    let down_seconds = (Utc::now() - stopped_at).num_milliseconds() as f64 / 1000.0;
    eprintln!("million: down {down_seconds:.1}s; starting again on the same data");
    let probes = Probes::new(deployment.replica_count())?;
    let spawned = Instant::now();
    deployment.respawn(binary)?;
    let (replicas, answers) = watch_start(deployment, &probes, spawned, options.timers_timeout).await?;
    let overdue_check = check_overdue(deployment, overdue, answers, stopped_at).await?;
    let serving_ms = replicas.iter().map(|r| r.api_ms).fold(0.0, f64::max);
    let healthz_ms = replicas.iter().map(|r| r.healthz_ms).fold(0.0, f64::max);
    let timers_ms = replicas
        .iter()
        .map(|r| r.timers_ms)
        .collect::<Option<Vec<f64>>>()
        .map(|all| all.into_iter().fold(0.0, f64::max));
    Ok(Restart {
        stop_seconds,
        overdue_due_while_down: due_while_down,
        down_seconds,
        replicas,
        healthz_ms,
        serving_ms,
        timers_ms,
        overdue: overdue_check,
        rss_after_restart_mib: deployment.memory()?.iter().map(|m| mib(m.rss_bytes)).collect(),
        database_bytes_after_restart: deployment.database_bytes()?,
        sqlite_files_after_restart: owned(deployment.sqlite_files()),
        bytes_per_grant_after_restart: 0.0,
    })
}

/// HTTP clients for polling the restarted replicas, made before the spawn
/// so that building them is not part of the measurement.
struct Probes {
    http: Vec<reqwest::Client>,
}

impl Probes {
    fn new(replicas: usize) -> Result<Probes> {
        hallpass_client::install_tls_crypto_provider();
        let http = (0..replicas)
            .map(|_| {
                reqwest::Client::builder()
                    .timeout(PROBE_TIMEOUT)
                    .build()
                    .context("cannot build an HTTP client")
            })
            .collect::<Result<_>>()?;
        Ok(Probes { http })
    }
}

/// Polls every replica until it serves and its timers are loaded (or the
/// gauge is given up on), failing at once if a replica exits. Returns each
/// replica's start and the wall times of the first and of the last
/// replica's first API answer.
async fn watch_start(
    deployment: &mut Deployment,
    probes: &Probes,
    spawned: Instant,
    timers_timeout: Duration,
) -> Result<(Vec<ReplicaStart>, (DateTime<Utc>, DateTime<Utc>))> {
    let first_api: Arc<Mutex<Vec<DateTime<Utc>>>> = Arc::new(Mutex::new(Vec::new()));
    let token = deployment.admin_token().to_string();
    let watches = probes.http.iter().enumerate().map(|(i, http)| {
        let target = Target {
            http: http.clone(),
            base: deployment.base_url(i),
            token: token.clone(),
        };
        watch_replica(target, spawned, timers_timeout, first_api.clone())
    });
    let all = futures::future::join_all(watches);
    tokio::pin!(all);
    let results = loop {
        tokio::select! {
            results = &mut all => break results,
            _ = tokio::time::sleep(Duration::from_millis(100)) => deployment.check_running()?,
        }
    };
    let replicas = results.into_iter().collect::<Result<Vec<_>>>()?;
    let answers = first_api.lock().map(|at| at.clone()).unwrap_or_default();
    let (Some(first), Some(last)) = (answers.iter().min(), answers.iter().max()) else {
        bail!("no replica answered the API");
    };
    Ok((replicas, (*first, *last)))
}

/// One replica to poll.
struct Target {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Target {
    /// Whether `GET path` answers 200 (with the admin token when `auth`).
    async fn ok(&self, path: &str, auth: bool) -> bool {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if auth {
            request = request.bearer_auth(&self.token);
        }
        matches!(request.send().await, Ok(response) if response.status().is_success())
    }

    /// The timers gauge's value, once it says the timers are loaded (the
    /// server registers it at 0 from start-up and sets 1).
    async fn timers_loaded(&self) -> Option<f64> {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        gauge(&response.text().await.ok()?, TIMERS_METRIC).filter(|ready| *ready >= 1.0)
    }

    /// Polls `GET path` until it answers 200; the time since `spawned`.
    async fn until_ok(&self, path: &str, auth: bool, spawned: Instant) -> Result<Duration> {
        loop {
            if self.ok(path, auth).await {
                return Ok(spawned.elapsed());
            }
            if spawned.elapsed() > RESTART_TIMEOUT {
                bail!(
                    "{}{path} did not answer within {}s of the restart",
                    self.base,
                    RESTART_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// The value of an unlabelled (or the first labelled) sample of `name` in
/// Prometheus text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = match rest.chars().next()? {
            ' ' => rest,
            '{' => &rest[rest.find('}')? + 1..],
            _ => return None,
        };
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// One replica from spawn: `/healthz`, the first API answer and the
/// timers gauge, polled side by side.
async fn watch_replica(
    target: Target,
    spawned: Instant,
    timers_timeout: Duration,
    first_api: Arc<Mutex<Vec<DateTime<Utc>>>>,
) -> Result<ReplicaStart> {
    let api_done: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let healthz = target.until_ok("/healthz", false, spawned);
    let api = async {
        let took = target.until_ok("/v1/grants?active=true&limit=1", true, spawned).await?;
        let now = Utc::now();
        if let Ok(mut answers) = first_api.lock() {
            answers.push(now);
        }
        let _ = api_done.set(Instant::now());
        anyhow::Ok(took)
    };
    let timers = async {
        loop {
            if let Some(value) = target.timers_loaded().await {
                return Some((spawned.elapsed(), value));
            }
            let gave_up = api_done.get().is_some_and(|at| at.elapsed() > timers_timeout);
            if gave_up || spawned.elapsed() > RESTART_TIMEOUT + timers_timeout {
                return None;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    };
    let (healthz, api, timers) = tokio::join!(healthz, api, timers);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(ReplicaStart {
        healthz_ms: ms(healthz?),
        api_ms: ms(api?),
        timers_ms: timers.map(|(took, _)| ms(took)),
        timers_loaded: timers.map(|(_, value)| value),
    })
}

/// Looks up each overdue grant's `grant.expired` event and holds its time
/// against the first API answer of any replica and of the last replica
/// (`answers`).
async fn check_overdue(
    deployment: &Deployment,
    overdue: &[(String, DateTime<Utc>)],
    answers: (DateTime<Utc>, DateTime<Utc>),
    stopped_at: DateTime<Utc>,
) -> Result<OverdueCheck> {
    let (api_at, last_api_at) = answers;
    let admin = deployment.admin(0)?;
    let ends: Vec<Result<Option<DateTime<Utc>>>> = futures::stream::iter(overdue)
        .map(|(id, _)| {
            let admin = admin.clone();
            async move {
                let events = admin
                    .audit_list(None, Some(id.as_str()), Some(100))
                    .await
                    .with_context(|| format!("cannot read the audit events of grant {id}"))?;
                let Some(event) = events.iter().find(|e| e.kind == "grant.expired") else {
                    return Ok(None);
                };
                let time = DateTime::parse_from_rfc3339(&event.time)
                    .with_context(|| format!("bad audit time {:?}", event.time))?;
                Ok(Some(time.with_timezone(&Utc)))
            }
        })
        .buffered(CHECK_CONCURRENCY)
        .collect()
        .await;
    let mut check = OverdueCheck {
        checked: overdue.len(),
        ..OverdueCheck::default()
    };
    for ((id, _), end) in overdue.iter().zip(ends) {
        let end = end?;
        if end.is_some_and(|at| at <= stopped_at) {
            check.ended_before_stop += 1;
        }
        if end.is_some_and(|at| at <= last_api_at) {
            check.ended_before_every_replica_served += 1;
        }
        let problem = match end {
            Some(at) if at <= api_at => {
                check.ended_before_api += 1;
                None
            }
            Some(at) => {
                check.ended_after_api += 1;
                Some(format!(
                    "{id}: ended {} ms after the API answered",
                    (at - api_at).num_milliseconds()
                ))
            }
            None => {
                check.not_ended += 1;
                Some(format!("{id}: no grant.expired event"))
            }
        };
        if let Some(problem) = problem
            && check.samples.len() < ERROR_SAMPLES
        {
            check.samples.push(problem);
        }
    }
    Ok(check)
}

/// `30.0 MiB`, or with several replicas `max 30.0 MiB (3 replicas)`.
fn rss_cell(values: &[f64]) -> String {
    if values.len() <= 1 {
        format!("{:.1} MiB", max(values))
    } else {
        format!("max {:.1} MiB ({} replicas)", max(values), values.len())
    }
}

/// `12 ms`, or per replica when there are several.
fn ms_cell(values: impl Iterator<Item = Option<f64>>) -> String {
    let cells: Vec<String> = values
        .map(|v| v.map_or_else(|| "not reported".into(), |ms| format!("{} ms", fmt_ms(ms))))
        .collect();
    cells.join(", ")
}

fn footprint_rows(report: &MillionReport) -> Vec<Vec<String>> {
    let f = &report.footprint;
    vec![
        vec!["server RSS at start (no grants)".into(), rss_cell(&f.baseline_rss_mib)],
        vec![
            format!("server RSS with {} active grants", report.creation.created),
            format!(
                "{}{}",
                rss_cell(&f.active_rss_mib),
                if f.all_active_at_sample {
                    ""
                } else {
                    " (some may have expired)"
                }
            ),
        ],
        vec![
            format!("{}: before / with all active", f.database_measure),
            format!(
                "{:.1} / {:.1} MiB{}",
                mib(f.database_bytes_before),
                mib(f.database_bytes_active),
                files_cell(&f.sqlite_files_active)
            ),
        ],
        vec![
            "on disk per active grant (growth ÷ grants)".into(),
            format!(
                "{:.0} bytes (after the restart {:.0})",
                f.bytes_per_grant, report.restart.bytes_per_grant_after_restart
            ),
        ],
    ]
}

fn restart_rows(restart: &Restart) -> Vec<Vec<String>> {
    let o = &restart.overdue;
    vec![
        vec!["SIGTERM until exited".into(), format!("{:.1} s", restart.stop_seconds)],
        vec![
            "overdue grants due while down".into(),
            format!("{} of {}", restart.overdue_due_while_down, o.checked),
        ],
        vec!["down".into(), format!("{:.1} s", restart.down_seconds)],
        vec![
            "spawn → /healthz 200".into(),
            ms_cell(restart.replicas.iter().map(|r| Some(r.healthz_ms))),
        ],
        vec![
            "spawn → first API answer".into(),
            ms_cell(restart.replicas.iter().map(|r| Some(r.api_ms))),
        ],
        vec![
            format!("spawn → {TIMERS_METRIC}"),
            ms_cell(restart.replicas.iter().map(|r| r.timers_ms)),
        ],
        vec![
            "expiry timers ready (the gauge's value)".into(),
            restart
                .replicas
                .iter()
                .map(|r| r.timers_loaded.map_or_else(|| "-".into(), |v| format!("{v:.0}")))
                .collect::<Vec<_>>()
                .join(", "),
        ],
        vec![
            "overdue ended before the API answered".into(),
            format!(
                "{} of {} ({} after, {} not ended; {} ended before the stop)",
                o.ended_before_api, o.checked, o.ended_after_api, o.not_ended, o.ended_before_stop
            ),
        ],
        vec![
            "server RSS after the restart".into(),
            rss_cell(&restart.rss_after_restart_mib),
        ],
        vec![
            "store after the restart".into(),
            format!(
                "{:.1} MiB{}",
                mib(restart.database_bytes_after_restart),
                files_cell(&restart.sqlite_files_after_restart)
            ),
        ],
    ]
}

pub fn print(report: &MillionReport) {
    println!(
        "\nA million active grants ({}): {} grants ({} due while the server is down), {} clients",
        report.backend.label(),
        report.grants,
        report.overdue,
        report.clients
    );
    let c = &report.creation;
    let mut rows = vec![
        vec![
            "roles × principals (one grant per pair)".into(),
            format!(
                "{} × {} (set up in {:.1} s)",
                report.setup.roles, report.setup.principals, report.setup.seconds
            ),
        ],
        vec![
            "grants created".into(),
            format!("{} ({} failed)", c.created, c.failures),
        ],
        vec![
            "creation took".into(),
            format!("{:.1} s ({:.0} grants/s)", c.seconds, c.per_second),
        ],
        vec![
            "POST /v1/requests p50 / p99".into(),
            format!("{} / {} ms", fmt_ms(c.latency.p50_ms), fmt_ms(c.latency.p99_ms)),
        ],
    ];
    rows.extend(footprint_rows(report));
    rows.extend(restart_rows(&report.restart));
    let restart = &report.restart;
    if restart.replicas.len() > 1 {
        rows.push(vec![
            "overdue ended before every replica answered".into(),
            format!(
                "{} of {}",
                restart.overdue.ended_before_every_replica_served, restart.overdue.checked
            ),
        ]);
    }
    print_table(&["measure", "value"], &rows);
    for sample in report
        .creation
        .failure_samples
        .iter()
        .chain(&report.restart.overdue.samples)
    {
        println!("  {sample}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_gauge_from_prometheus_text() {
        let text = "# HELP hallpass_expiry_timers_ready x\n# TYPE hallpass_expiry_timers_ready gauge\n\
                    hallpass_expiry_timers_ready_total 3\nhallpass_expiry_timers_ready 999000\n";
        assert_eq!(gauge(text, TIMERS_METRIC), Some(999_000.0));
        assert_eq!(gauge("x{a=\"b\"} 2\n", "x"), Some(2.0));
        assert_eq!(gauge("hallpass_up 1\n", TIMERS_METRIC), None);
    }
}
