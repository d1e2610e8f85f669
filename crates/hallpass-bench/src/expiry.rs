//! Scenarios 2 and 3: expiry lag with many grants ending at once, and the
//! server's memory with many grants active.
//!
//! `expiry` creates N active grants through the API with many concurrent
//! clients. Grant durations are whole seconds, so all N are aimed at a short
//! window that opens after creation ends: a calibration run estimates the
//! creation rate, which gives a common base expiry time T0 (now + estimated
//! creation time × 1.5 + margin), and grant `i` asks for
//! `ceil(T0 + (i mod window) − now)` seconds. Right after creation (all N
//! active) the server's RSS is read from `/proc`. The benchmark then waits
//! for the last expiry, polls `GET /v1/grants?active=true&limit=1` until it
//! is empty, streams the audit export and reports the `data.lag_ms` of every
//! `grant.expired` event (ended_at − expires_at), checking there is exactly
//! one per grant created.
//!
//! `rss` is the creation half alone: N grants of one hour, then memory.
//!
//! Every grant is for its own (principal, role) pair, as in a deployment with
//! many people and roles: a second request for a role the principal already
//! holds would extend (or just return) the existing grant instead of creating
//! one. At setup up to [`MAX_ROLES`](crate::throughput::MAX_ROLES) auto-approved roles are created on the
//! `demo` (jwt) target in a few `POST /v1/apply` calls, and as many principals
//! in group `bench` (one token each) as make enough [`Pairs`] for every grant
//! (100,000 grants plus 2,000 for calibration: 1,000 roles × 102 principals).
//! Grant `i` uses pair `i` (calibration the pairs after the N grants), so no
//! pair repeats; a grant id that comes back twice (the overlap path) is a
//! creation failure.
//!
//! With several replicas (PostgreSQL), creation worker `w` talks to replica
//! `w mod replicas` only, and RSS is read from every replica; the
//! active-grants poll and the audit export go through replica 0.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use hallpass_api::{AccessRequest, CreateRequest, RoleSpec};
use hallpass_client::Client;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;

use crate::audit_chain::{self, ChainCheck};
use crate::procfs::{CpuReport, Memory, mib};
use crate::server::{Backend, Deployment};
use crate::stats::{Latencies, Summary, fmt_ms, print_table};
use crate::throughput::{Pairs, apply_roles, auto_approved_role, create_principals};

/// The auto-approved roles the grants are made of are named this plus a
/// number; their max covers any window.
const ROLE_PREFIX: &str = "bench-expiry-";
const ROLE_MAX: &str = "2h";
/// Duration of the grants in the `rss` scenario.
const RSS_GRANT_SECONDS: u64 = 3600;
/// Attempts per grant before it counts as a creation failure.
const ATTEMPTS: usize = 3;
/// Estimated creation time is multiplied by this to place T0.
const SAFETY_FACTOR: f64 = 1.5;
/// How often the "any grant still active?" poll runs once all should be over.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
const ERROR_SAMPLES: usize = 5;

#[derive(Debug, Clone)]
pub struct Options {
    pub grants: usize,
    /// Width of the expiry window in whole seconds.
    pub window_seconds: u64,
    /// Concurrent clients creating grants.
    pub clients: usize,
    /// Seconds added to the estimated creation time before T0.
    pub margin_seconds: u64,
    /// How long to wait, after the last planned expiry, for every grant to end.
    pub timeout: Duration,
}

/// Memory of the server processes, one entry per replica.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// RSS right after start-up (dev seed, no grants).
    pub baseline_rss_mib: Vec<f64>,
    /// RSS with every created grant active.
    pub active_rss_mib: Vec<f64>,
    /// VmHWM at the end of the scenario: the peak over the whole run.
    pub peak_rss_mib: Vec<f64>,
    /// What `database_mib` measures.
    pub database_measure: String,
    /// SQLite files (db + WAL + shm), or `pg_database_size`, with every grant active.
    pub database_mib: f64,
    /// False when some grant may already have expired at the RSS sample.
    pub all_active_at_sample: bool,
}

/// The largest per-replica value.
pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// The roles and principals a scenario created before its grants.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub roles: usize,
    pub principals: usize,
    /// Creating the roles and the principals' tokens.
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Creation {
    pub created: usize,
    pub failures: usize,
    pub failure_samples: Vec<String>,
    pub seconds: f64,
    pub per_second: f64,
    /// Latency of `POST /v1/requests` (auto-approved, so it includes issuing).
    pub latency: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExpiryReport {
    pub backend: Backend,
    pub grants: usize,
    pub window_seconds: u64,
    pub clients: usize,
    pub setup: Setup,
    pub calibration_grants: usize,
    pub calibration_per_second: f64,
    /// Common base expiry time T0.
    pub planned_start: DateTime<Utc>,
    pub creation: Creation,
    /// Grants whose `expires_at` fell outside [T0, T0 + window + 2s]
    /// (creation ran past its estimate); non-zero means the burst was spread.
    pub outside_window: usize,
    pub memory: MemoryReport,
    /// Every `grant.expired` event in the audit log.
    pub expired_events: usize,
    /// Of those, events for grants created here (exactly one each expected).
    pub matched: usize,
    /// Grants created here without a `grant.expired` event.
    pub missing: usize,
    /// Grants with more than one `grant.expired` event.
    pub duplicated: usize,
    /// `grant.expired` events for grants not created by this scenario.
    pub unexpected: usize,
    /// True when every grant created has exactly one event and nothing else does.
    pub count_ok: bool,
    /// `data.lag_ms` of the matched events (ended_at − expires_at).
    pub lag: Summary,
    /// From the first to the last `grant.expired` event (at best the window).
    pub expiry_span_seconds: f64,
    /// Until the active-grants poll came back empty, from the last `expires_at`
    /// (1 s poll resolution).
    pub drained_after_seconds: f64,
    /// CPU use from the first expiry until the poll came back empty.
    pub cpu_during_expiry: CpuReport,
    /// With several replicas: `GET /v1/audit/verify` at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<ChainCheck>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RssReport {
    pub backend: Backend,
    pub grants: usize,
    pub clients: usize,
    pub setup: Setup,
    pub creation: Creation,
    pub memory: MemoryReport,
}

/// One grant as created.
#[derive(Debug, Clone)]
struct Grant {
    id: String,
    expires_at: DateTime<Utc>,
    /// Index of the principal holding it.
    principal: usize,
}

/// The benchmark's roles and principals on a deployment.
pub(crate) struct Population {
    /// An admin client per replica; requests swap in a principal's token.
    pub replicas: Vec<Client>,
    /// One token per principal.
    pub tokens: Vec<String>,
    pub roles: Vec<String>,
    pub pairs: Pairs,
    pub setup: Setup,
}

impl Population {
    /// Principal `principal`'s client on the replica of worker `worker`.
    pub fn client(&self, worker: usize, principal: usize) -> Result<Client> {
        let token = self
            .tokens
            .get(principal)
            .with_context(|| format!("no benchmark principal {principal}"))?;
        Ok(self.replicas[worker % self.replicas.len()].with_token(token.clone()))
    }
}

/// Creates enough auto-approved roles and principals allowed to request them
/// for `requests` grants, each of its own (principal, role) pair.
pub(crate) async fn setup(deployment: &Deployment, requests: usize) -> Result<Population> {
    let started = Instant::now();
    let admin = deployment.admin(0)?;
    let pairs = Pairs::for_requests(requests);
    let roles: Vec<String> = (0..pairs.roles).map(|k| format!("{ROLE_PREFIX}{k:04}")).collect();
    let specs: Vec<RoleSpec> = roles
        .iter()
        .map(|name| {
            let description = "hallpass-bench: auto-approved grants, one per (principal, role) pair";
            auto_approved_role(name, "demo", description, ROLE_MAX, Default::default())
        })
        .collect();
    apply_roles(&admin, &specs).await?;
    let tokens = create_principals(&admin, (0..pairs.principals).map(|p| format!("bench-{p}")).collect()).await?;
    let setup = Setup {
        roles: pairs.roles,
        principals: pairs.principals,
        seconds: started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "  setup: {} roles, {} principals in {:.1}s",
        setup.roles, setup.principals, setup.seconds
    );
    let replicas = (0..deployment.replica_count())
        .map(|replica| deployment.admin(replica))
        .collect::<Result<_>>()?;
    Ok(Population {
        replicas,
        tokens,
        roles,
        pairs,
        setup,
    })
}

/// Runs `job(worker, i)` for `i` in `0..count` on `workers` concurrent tasks;
/// returns each index's result, unordered. Prints progress every few seconds
/// when `label` is set.
async fn run_pool<T, F, Fut>(
    count: usize,
    workers: usize,
    label: Option<&'static str>,
    job: F,
) -> Result<Vec<(usize, Result<T>)>>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send,
    T: Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(workers);
    for worker in 0..workers.max(1) {
        let (job, next, done) = (job.clone(), next.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return results;
                }
                results.push((i, job(worker, i).await));
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progress = label.map(|label| {
        let done = done.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(PROGRESS_INTERVAL).await;
                let n = done.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64();
                eprintln!("  {label}: {n}/{count} after {secs:.0}s ({:.0}/s)", n as f64 / secs);
            }
        })
    });
    let mut all = Vec::with_capacity(count);
    let mut panicked = false;
    for handle in handles {
        match handle.await {
            Ok(results) => all.extend(results),
            Err(_) => panicked = true,
        }
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    if panicked {
        bail!("a worker task panicked");
    }
    Ok(all)
}

/// Creates `count` grants, grant `i` of pair `first + i`, worker `w` on
/// replica `w mod replicas`; `seconds(i)` is evaluated just before grant `i`
/// is requested.
async fn create_grants(
    population: &Arc<Population>,
    first: usize,
    count: usize,
    workers: usize,
    label: Option<&'static str>,
    seconds: Arc<dyn Fn(usize) -> u64 + Send + Sync>,
) -> Result<(Vec<Grant>, Creation)> {
    if population.pairs.pair(first + count.saturating_sub(1)).is_none() {
        bail!(
            "{} grants from pair {first} need more than the {} (principal, role) pairs set up",
            count,
            population.pairs.capacity()
        );
    }
    let started = Instant::now();
    let population_for_jobs = population.clone();
    let results = run_pool(count, workers, label, move |worker, i| {
        let (population, seconds) = (population_for_jobs.clone(), seconds.clone());
        async move { create_grant(&population, worker, first + i, i, &*seconds).await }
    })
    .await?;
    let seconds_taken = started.elapsed().as_secs_f64();
    let created = Created::collect(results, count)?;
    let creation = Creation {
        created: created.grants.len(),
        failures: created.failures,
        failure_samples: created.failure_samples,
        seconds: seconds_taken,
        per_second: created.grants.len() as f64 / seconds_taken.max(1e-9),
        latency: created.latency.summary(),
    };
    Ok((created.grants, creation))
}

/// Grant `i`, of pair `pair`, for `seconds(i)`, by worker `worker`; tried
/// [`ATTEMPTS`] times. Returns it with how long the successful call took.
async fn create_grant(
    population: &Population,
    worker: usize,
    pair: usize,
    i: usize,
    seconds: &(dyn Fn(usize) -> u64 + Send + Sync),
) -> Result<(Grant, Duration)> {
    let (principal, role) = population
        .pairs
        .pair(pair)
        .with_context(|| format!("no (principal, role) pair left for grant {i}"))?;
    let role = population
        .roles
        .get(role)
        .with_context(|| format!("no benchmark role {role}"))?;
    let client = population.client(worker, principal)?;
    let mut last_error = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = CreateRequest {
            role: role.clone(),
            duration: Some(format!("{}s", seconds(i))),
            reason: "hallpass-bench expiry".into(),
            ticket: None,
            emergency: false,
            scheduled_start: None,
            ssh_public_key: None,
            plan: None,
        };
        let start = Instant::now();
        match client.create_request(&body).await {
            Ok(response) => {
                return active_grant(response.request, role, principal).map(|g| (g, start.elapsed()));
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(anyhow::anyhow!(
        "{}",
        last_error.map_or_else(|| "no attempt made".to_string(), |e| e.to_string())
    ))
}

/// What came of `create_grants`'s jobs.
struct Created {
    grants: Vec<Grant>,
    latency: Latencies,
    failures: usize,
    /// The first few distinct failures.
    failure_samples: Vec<String>,
}

impl Created {
    fn collect(results: Vec<(usize, Result<(Grant, Duration)>)>, count: usize) -> Result<Created> {
        let mut grants = Vec::with_capacity(count);
        let mut latency = Latencies::new()?;
        let mut failures = 0;
        let mut failure_samples: Vec<String> = Vec::new();
        let mut seen = HashSet::with_capacity(count);
        for (_, result) in results {
            // Every pair is new, so every answer must be a new grant: the same id
            // twice means the server extended or returned a grant it had.
            let result = result.and_then(|(grant, took)| {
                if seen.insert(grant.id.clone()) {
                    Ok((grant, took))
                } else {
                    bail!(
                        "grant {} came back for a second (principal, role) pair: the server returned an existing \
                     grant instead of creating one",
                        grant.id
                    )
                }
            });
            match result {
                Ok((grant, took)) => {
                    latency.record(took);
                    grants.push(grant);
                }
                Err(error) => {
                    failures += 1;
                    let message = format!("{error:#}");
                    if failure_samples.len() < ERROR_SAMPLES && !failure_samples.contains(&message) {
                        failure_samples.push(message);
                    }
                }
            }
        }
        Ok(Created {
            grants,
            latency,
            failures,
            failure_samples,
        })
    }
}

fn active_grant(request: AccessRequest, role: &str, principal: usize) -> Result<Grant> {
    if request.role != role {
        bail!("request {} is for role {} instead of {role}", request.id, request.role);
    }
    match (request.state, request.expires_at) {
        (hallpass_api::RequestState::Active, Some(expires_at)) => Ok(Grant {
            id: request.id,
            expires_at,
            principal,
        }),
        (state, _) => bail!(
            "request {} is {state} instead of active; is role {role} auto-approved?",
            request.id
        ),
    }
}

async fn memory_with_grants(
    deployment: &Deployment,
    baseline: &[Memory],
    earliest_expiry: Option<DateTime<Utc>>,
) -> Result<MemoryReport> {
    let active = deployment.memory()?;
    let all_active_at_sample = earliest_expiry.is_none_or(|at| Utc::now() < at);
    let database_measure = match deployment.backend() {
        Backend::Sqlite => "SQLite files",
        Backend::Postgres { .. } => "PostgreSQL database (pg_database_size)",
    };
    Ok(MemoryReport {
        baseline_rss_mib: baseline.iter().map(|m| mib(m.rss_bytes)).collect(),
        active_rss_mib: active.iter().map(|m| mib(m.rss_bytes)).collect(),
        peak_rss_mib: active.iter().map(|m| mib(m.peak_rss_bytes)).collect(),
        database_measure: database_measure.into(),
        database_mib: mib(deployment.database_bytes()?),
        all_active_at_sample,
    })
}

fn check_creation(creation: &Creation) {
    if creation.failures > 0 {
        eprintln!(
            "WARNING: {} grant(s) could not be created; first errors: {}",
            creation.failures,
            creation.failure_samples.join(" | ")
        );
    }
}

/// `expiry`: N grants expiring in one window; lag and memory.
pub async fn run_expiry(binary: &Path, backend: &Backend, options: &Options) -> Result<ExpiryReport> {
    if options.grants == 0 || options.window_seconds == 0 || options.clients == 0 {
        bail!("--grants, --window and --clients must be positive");
    }
    eprintln!("expiry ({}): fresh server", backend.label());
    let deployment = Deployment::start(binary, backend).await?;
    let result = expiry_scenario(&deployment, options).await;
    let stopped = deployment.stop().await;
    let report = result?;
    stopped?;
    Ok(report)
}

async fn expiry_scenario(deployment: &Deployment, options: &Options) -> Result<ExpiryReport> {
    let n = options.grants;
    let calibration_grants = (n / 20).clamp(20, 2000);
    let population = Arc::new(setup(deployment, n + calibration_grants).await?);
    let baseline = deployment.memory()?;
    let rate = calibrate(&population, n, calibration_grants, options.clients).await?;
    let burst = create_burst(deployment, &population, &baseline, options, rate).await?;
    let (Some(earliest), Some(latest)) = (burst.earliest(), burst.latest()) else {
        bail!("no grant was created: {}", burst.creation.failure_samples.join(" | "));
    };
    let drain = wait_for_expiry(deployment, earliest, latest, options.timeout).await?;
    let peak = deployment.memory()?;
    let events = expired_events(deployment).await?;
    let tally = ExpiryTally::of(&burst.grants, &events)?;
    // Replicas append to one log: it must still be one chain.
    let audit = if deployment.replica_count() > 1 {
        Some(audit_chain::verify(deployment).await)
    } else {
        None
    };
    let count_ok = tally.missing == 0 && tally.duplicated == 0 && tally.unexpected == 0 && burst.creation.failures == 0;
    Ok(ExpiryReport {
        backend: deployment.backend().clone(),
        grants: n,
        window_seconds: options.window_seconds,
        clients: options.clients,
        setup: population.setup.clone(),
        calibration_grants,
        calibration_per_second: rate,
        planned_start: burst.planned_start,
        creation: burst.creation,
        outside_window: burst.outside_window,
        memory: MemoryReport {
            peak_rss_mib: peak.iter().map(|m| mib(m.peak_rss_bytes)).collect(),
            ..burst.memory_active
        },
        expired_events: events.len(),
        matched: tally.matched,
        missing: tally.missing,
        duplicated: tally.duplicated,
        unexpected: tally.unexpected,
        count_ok,
        lag: tally.lag.summary(),
        expiry_span_seconds: tally.span_seconds,
        drained_after_seconds: drain.after_seconds,
        cpu_during_expiry: drain.cpu,
        audit,
    })
}

/// How fast this server creates grants, per second. The calibration grants
/// (pairs `first..`, after the ones of the measured grants) are released at
/// once, so they neither expire nor stay active.
async fn calibrate(population: &Arc<Population>, first: usize, grants: usize, clients: usize) -> Result<f64> {
    eprintln!("expiry: calibrating with {grants} grants");
    let (calibration, run) = create_grants(
        population,
        first,
        grants,
        clients,
        None,
        Arc::new(|_| RSS_GRANT_SECONDS),
    )
    .await?;
    if run.created == 0 {
        bail!("calibration created no grant: {}", run.failure_samples.join(" | "));
    }
    release_all(population, calibration, clients).await?;
    Ok(run.per_second)
}

/// The measured grants, all active, and the server's memory with them.
struct Burst {
    grants: Vec<Grant>,
    creation: Creation,
    /// When the first of them is planned to expire (T0).
    planned_start: DateTime<Utc>,
    outside_window: usize,
    memory_active: MemoryReport,
}

impl Burst {
    fn earliest(&self) -> Option<DateTime<Utc>> {
        self.grants.iter().map(|g| g.expires_at).min()
    }

    fn latest(&self) -> Option<DateTime<Utc>> {
        self.grants.iter().map(|g| g.expires_at).max()
    }
}

/// Creates the N grants so that they expire together in the window, which
/// starts once creating them all (at `rate` per second, with a margin) is
/// expected to be done.
async fn create_burst(
    deployment: &Deployment,
    population: &Arc<Population>,
    baseline: &[Memory],
    options: &Options,
    rate: f64,
) -> Result<Burst> {
    let (n, window) = (options.grants, options.window_seconds);
    let estimate = n as f64 / rate * SAFETY_FACTOR + options.margin_seconds as f64;
    let planned_start = Utc::now() + chrono::Duration::milliseconds((estimate * 1000.0) as i64);
    eprintln!(
        "expiry: creating {n} grants with {} clients (~{rate:.0}/s measured); \
         they expire from {} over {window}s",
        options.clients,
        planned_start.format("%H:%M:%S")
    );
    let seconds = Arc::new(move |i: usize| {
        let target = planned_start + chrono::Duration::seconds((i as u64 % window) as i64);
        let millis = (target - Utc::now()).num_milliseconds().max(0) as u64;
        millis.div_ceil(1000).max(1)
    });
    let (grants, creation) = create_grants(population, 0, n, options.clients, Some("created"), seconds).await?;
    check_creation(&creation);
    let earliest = grants.iter().map(|g| g.expires_at).min();
    let memory_active = memory_with_grants(deployment, baseline, earliest).await?;
    eprintln!(
        "expiry: created {} grants in {:.1}s ({:.0}/s); server RSS {:.1} MiB (largest replica) with all active",
        creation.created,
        creation.seconds,
        creation.per_second,
        max(&memory_active.active_rss_mib)
    );
    let window_end = planned_start + chrono::Duration::seconds(window as i64 + 2);
    let outside_window = grants
        .iter()
        .filter(|g| g.expires_at < planned_start || g.expires_at > window_end)
        .count();
    if outside_window > 0 {
        eprintln!(
            "WARNING: {outside_window} grant(s) expire outside the planned window \
             (creation took longer than estimated); the burst is spread out"
        );
    }
    Ok(Burst {
        grants,
        creation,
        planned_start,
        outside_window,
        memory_active,
    })
}

/// How the server's expiry of the burst went, seen from outside.
struct Drain {
    /// From the last `expires_at` until nothing was active any more.
    after_seconds: f64,
    /// From the first expiry until nothing was active any more.
    cpu: CpuReport,
}

/// Waits for the burst, then until nothing is active any more; fails after
/// `timeout` past the last expiry.
async fn wait_for_expiry(
    deployment: &Deployment,
    earliest: DateTime<Utc>,
    latest: DateTime<Utc>,
    timeout: Duration,
) -> Result<Drain> {
    sleep_until_wall(earliest).await;
    let cpu_before = deployment.cpu_snapshot()?;
    sleep_until_wall(latest + chrono::Duration::seconds(1)).await;
    let deadline = Instant::now() + timeout;
    let admin = deployment.admin(0)?;
    loop {
        if !any_active(&admin).await? {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "grants were still active {}s after the last planned expiry; \
                 the server is not keeping up (see its CPU use) or the scheduler is stuck",
                timeout.as_secs() + 1
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let after_seconds = (Utc::now() - latest).num_milliseconds() as f64 / 1000.0;
    let cpu = CpuReport::between(&cpu_before, &deployment.cpu_snapshot()?);
    Ok(Drain { after_seconds, cpu })
}

/// Every `grant.expired` event of the deployment's audit log.
pub(crate) async fn expired_events(deployment: &Deployment) -> Result<Vec<Expired>> {
    eprintln!("  all grants ended; reading grant.expired events from the audit export");
    let mut collector = ExpiredCollector::default();
    deployment
        .admin(0)?
        .audit_export(None, &mut collector)
        .await
        .context("cannot export the audit log")?;
    collector.finish()
}

/// The `grant.expired` events held against the grants created.
struct ExpiryTally {
    /// Grants with at least one event.
    matched: usize,
    /// Grants without an event.
    missing: usize,
    /// Grants with more than one event.
    duplicated: usize,
    /// Events for grants not created here.
    unexpected: usize,
    /// Each grant's first event's lag.
    lag: Latencies,
    /// From the first to the last of the grants' events.
    span_seconds: f64,
}

impl ExpiryTally {
    fn of(grants: &[Grant], events: &[Expired]) -> Result<ExpiryTally> {
        let mut wanted: HashMap<&str, usize> = grants.iter().map(|g| (g.id.as_str(), 0)).collect();
        let mut lag = Latencies::new()?;
        let mut unexpected = 0;
        let (mut first, mut last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
        for event in events {
            match event.request_id.as_deref().and_then(|id| wanted.get_mut(id)) {
                Some(seen) => {
                    *seen += 1;
                    if *seen == 1 {
                        lag.record_micros(event.lag_ms.max(0) as u64 * 1000);
                    }
                    first = Some(first.map_or(event.time, |t| t.min(event.time)));
                    last = Some(last.map_or(event.time, |t| t.max(event.time)));
                }
                None => unexpected += 1,
            }
        }
        let span_seconds = match (first, last) {
            (Some(first), Some(last)) => (last - first).num_milliseconds() as f64 / 1000.0,
            _ => 0.0,
        };
        Ok(ExpiryTally {
            matched: wanted.values().filter(|&&seen| seen >= 1).count(),
            missing: wanted.values().filter(|&&seen| seen == 0).count(),
            duplicated: wanted.values().filter(|&&seen| seen > 1).count(),
            unexpected,
            lag,
            span_seconds,
        })
    }
}

/// `rss`: N one-hour grants, then the server's memory.
pub async fn run_rss(binary: &Path, backend: &Backend, grants: usize, clients: usize) -> Result<RssReport> {
    if grants == 0 || clients == 0 {
        bail!("--grants and --clients must be positive");
    }
    let deployment = Deployment::start(binary, backend).await?;
    let result = rss_scenario(&deployment, grants, clients).await;
    let stopped = deployment.stop().await;
    let report = result?;
    stopped?;
    Ok(report)
}

async fn rss_scenario(deployment: &Deployment, grants: usize, clients: usize) -> Result<RssReport> {
    let population = Arc::new(setup(deployment, grants).await?);
    let baseline = deployment.memory()?;
    eprintln!(
        "rss ({}): creating {grants} one-hour grants with {clients} clients",
        deployment.backend().label()
    );
    let (created, creation) = create_grants(
        &population,
        0,
        grants,
        clients,
        Some("created"),
        Arc::new(|_| RSS_GRANT_SECONDS),
    )
    .await?;
    check_creation(&creation);
    let earliest = created.iter().map(|g| g.expires_at).min();
    let memory = memory_with_grants(deployment, &baseline, earliest).await?;
    Ok(RssReport {
        backend: deployment.backend().clone(),
        grants,
        clients,
        setup: population.setup.clone(),
        creation,
        memory,
    })
}

async fn release_all(population: &Arc<Population>, grants: Vec<Grant>, workers: usize) -> Result<()> {
    let grants = Arc::new(grants);
    let count = grants.len();
    let population = population.clone();
    let results = run_pool(count, workers, None, move |worker, i| {
        let (population, grants) = (population.clone(), grants.clone());
        async move {
            let grant = &grants[i];
            population
                .client(worker, grant.principal)?
                .release(&grant.id)
                .await
                .with_context(|| format!("cannot release calibration grant {}", grant.id))
        }
    })
    .await?;
    for (_, result) in results {
        result?;
    }
    Ok(())
}

/// Sleeps until the wall clock reads `at` (at once if it is past).
pub(crate) async fn sleep_until_wall(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

/// Whether `GET /v1/grants?active=true&limit=1` returns anything.
pub(crate) async fn any_active(client: &Client) -> Result<bool> {
    let url = format!(
        "{}/v1/grants?active=true&limit=1",
        client.base_url().trim_end_matches('/')
    );
    hallpass_client::install_tls_crypto_provider();
    let mut request = reqwest::Client::new().get(&url).timeout(Duration::from_secs(60));
    if let Some(token) = client.token() {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("GET {url} answered {status}: {body}");
    }
    let grants: Vec<serde_json::Value> = response
        .json()
        .await
        .with_context(|| format!("unreadable answer to GET {url}"))?;
    Ok(!grants.is_empty())
}

/// One `grant.expired` audit event, as much as the benchmarks need.
#[derive(Debug, Clone)]
pub(crate) struct Expired {
    pub request_id: Option<String>,
    pub time: DateTime<Utc>,
    pub lag_ms: i64,
    /// Whether the end was verified on the target (`None`: the type cannot
    /// tell).
    pub verified: Option<bool>,
}

#[derive(Deserialize)]
struct ExportLine {
    kind: String,
    request_id: Option<String>,
    time: String,
    data: ExportData,
}

#[derive(Deserialize)]
struct ExportData {
    lag_ms: Option<i64>,
    verified: Option<bool>,
}

/// An `AsyncWrite` sink for the NDJSON audit export that keeps only the
/// `grant.expired` events, so memory stays small however long the log is.
#[derive(Default)]
struct ExpiredCollector {
    pending: Vec<u8>,
    events: Vec<Expired>,
    error: Option<String>,
}

impl ExpiredCollector {
    fn take_lines(&mut self) {
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.pending.drain(..=end).collect();
        for line in complete.split(|&b| b == b'\n') {
            self.line(line);
        }
    }

    fn line(&mut self, line: &[u8]) {
        if self.error.is_some() || line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        // Cheap filter first: most events are something else.
        const NEEDLE: &[u8] = b"\"grant.expired\"";
        if !line.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            return;
        }
        let parsed = serde_json::from_slice::<ExportLine>(line)
            .map_err(|e| e.to_string())
            .and_then(|event| {
                let time = DateTime::parse_from_rfc3339(&event.time)
                    .map_err(|e| format!("bad time {:?}: {e}", event.time))?
                    .with_timezone(&Utc);
                Ok((event, time))
            });
        match parsed {
            Ok((event, _)) if event.kind != "grant.expired" => {}
            Ok((event, time)) => match event.data.lag_ms {
                Some(lag_ms) => self.events.push(Expired {
                    request_id: event.request_id,
                    time,
                    lag_ms,
                    verified: event.data.verified,
                }),
                None => {
                    self.error = Some(format!(
                        "grant.expired event for {:?} has no data.lag_ms",
                        event.request_id
                    ))
                }
            },
            Err(error) => self.error = Some(format!("unreadable audit export line: {error}")),
        }
    }

    fn finish(mut self) -> Result<Vec<Expired>> {
        let rest = std::mem::take(&mut self.pending);
        self.line(&rest);
        match self.error {
            Some(error) => bail!("{error}"),
            None => Ok(self.events),
        }
    }
}

impl AsyncWrite for ExpiredCollector {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.pending.extend_from_slice(buf);
        this.take_lines();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `30.0 MiB`, or with several replicas `max 30.0, sum 90.0 MiB (3 replicas)`.
fn rss_cell(values: &[f64]) -> String {
    if values.len() <= 1 {
        format!("{:.1} MiB", max(values))
    } else {
        format!(
            "max {:.1}, sum {:.1} MiB ({} replicas)",
            max(values),
            values.iter().sum::<f64>(),
            values.len()
        )
    }
}

fn memory_rows(memory: &MemoryReport, grants: usize) -> Vec<Vec<String>> {
    vec![
        vec![
            "server RSS at start (no grants)".into(),
            rss_cell(&memory.baseline_rss_mib),
        ],
        vec![
            format!("server RSS with {grants} active grants"),
            format!(
                "{}{}",
                rss_cell(&memory.active_rss_mib),
                if memory.all_active_at_sample {
                    ""
                } else {
                    " (some may have expired)"
                }
            ),
        ],
        vec!["server peak RSS (VmHWM)".into(), rss_cell(&memory.peak_rss_mib)],
        vec![
            format!("{} with all grants active", memory.database_measure),
            format!("{:.1} MiB", memory.database_mib),
        ],
    ]
}

fn creation_rows(setup: &Setup, creation: &Creation, clients: usize) -> Vec<Vec<String>> {
    vec![
        vec![
            "roles × principals (one grant per pair)".into(),
            format!(
                "{} × {} (set up in {:.1} s)",
                setup.roles, setup.principals, setup.seconds
            ),
        ],
        vec![
            format!("grants created ({clients} clients)"),
            format!("{} ({} failed)", creation.created, creation.failures),
        ],
        vec![
            "creation took".into(),
            format!("{:.1} s ({:.0} grants/s)", creation.seconds, creation.per_second),
        ],
        vec![
            "POST /v1/requests p50 / p99".into(),
            format!(
                "{} / {} ms",
                fmt_ms(creation.latency.p50_ms),
                fmt_ms(creation.latency.p99_ms)
            ),
        ],
    ]
}

pub fn print_expiry(report: &ExpiryReport) {
    println!(
        "\nExpiry ({}): {} grants aimed at a {}s window from {}",
        report.backend.label(),
        report.grants,
        report.window_seconds,
        report.planned_start.format("%H:%M:%S")
    );
    let mut rows = creation_rows(&report.setup, &report.creation, report.clients);
    rows.push(vec![
        "grants outside the planned window".into(),
        report.outside_window.to_string(),
    ]);
    rows.push(vec![
        "grant.expired events (matched / expected)".into(),
        format!(
            "{} / {}{}",
            report.matched,
            report.creation.created,
            if report.count_ok { "" } else { "  MISMATCH" }
        ),
    ]);
    rows.push(vec![
        "expiry lag p50 / p99 / max".into(),
        format!(
            "{} / {} / {} ms",
            fmt_ms(report.lag.p50_ms),
            fmt_ms(report.lag.p99_ms),
            fmt_ms(report.lag.max_ms)
        ),
    ]);
    rows.push(vec![
        "first to last grant.expired event".into(),
        format!("{:.1} s", report.expiry_span_seconds),
    ]);
    rows.push(vec![
        "active list empty after last expires_at".into(),
        format!("{:.1} s", report.drained_after_seconds),
    ]);
    rows.push(vec![
        "server CPU while expiring".into(),
        report.cpu_during_expiry.server.describe(),
    ]);
    if let Some(database) = &report.cpu_during_expiry.database {
        rows.push(vec!["PostgreSQL CPU meanwhile".into(), database.describe()]);
    }
    rows.push(vec![
        "other processes' CPU meanwhile".into(),
        format!("{:.2} cores", report.cpu_during_expiry.others_cores),
    ]);
    if let Some(check) = &report.audit {
        rows.push(vec!["audit chain (GET /v1/audit/verify)".into(), check.describe()]);
    }
    rows.extend(memory_rows(&report.memory, report.creation.created));
    print_table(&["measure", "value"], &rows);
    if report.cpu_during_expiry.others_cores > crate::throughput::OTHERS_WARNING_CORES {
        println!(
            "  note: other processes used {:.2} cores while grants expired; the lag may be skewed",
            report.cpu_during_expiry.others_cores
        );
    }
    if !report.count_ok {
        println!(
            "\n  !!! COUNT MISMATCH: {} grants created ({} creation failures), {} matched events, \
             {} missing, {} duplicated, {} unexpected of {} grant.expired events",
            report.creation.created,
            report.creation.failures,
            report.matched,
            report.missing,
            report.duplicated,
            report.unexpected,
            report.expired_events
        );
    }
}

pub fn print_rss(report: &RssReport) {
    println!(
        "\nRSS ({}): {} one-hour grants active",
        report.backend.label(),
        report.grants
    );
    let mut rows = creation_rows(&report.setup, &report.creation, report.clients);
    rows.extend(memory_rows(&report.memory, report.creation.created));
    print_table(&["measure", "value"], &rows);
}
