//! Scenario 1: request → credential throughput.
//!
//! For each client count, a fresh server is started and N concurrent tasks
//! each loop over the self-service path a person or pipeline takes: `POST
//! /v1/requests` for an auto-approved role (the server records the request,
//! issues the credential and activates the grant in one durable commit) and
//! then `GET /v1/requests/{id}/credentials` (signs the JWT). One such pair is
//! one operation. After a warm-up, operations completing in the measurement
//! window are counted and their latency recorded; the server's and the
//! benchmark's CPU use over the window is sampled from `/proc` so the report
//! shows which side (and which server thread) is busy.
//!
//! Every request is for a (principal, role) pair that holds no grant yet: a
//! second request for a role the principal already holds would extend (or
//! just return) the existing grant instead of creating one. At setup the
//! benchmark creates up to [`MAX_ROLES`] copies of `--role` (same target,
//! durations and approval, requestable by group `bench`) with `POST
//! /v1/apply`, and for each client as many principals (one token each) as
//! it needs for [`Pairs`] enough for the whole run at [`PLANNED_RATE`]. A
//! client walks its pairs in order, cycling through its principals, so no
//! pair repeats; a response whose grant id the client has seen before (the
//! overlap path) counts as an error.
//!
//! With several replicas (PostgreSQL), client `i` talks to replica
//! `i mod replicas` only, and the server CPU is that of all replicas.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use hallpass_api::{ApplyRequest, ChangeAction, CreateRequest, CreateToken, RoleSpec};
use hallpass_client::Client;
use serde::Serialize;

use crate::audit_chain::{self, ChainCheck};
use crate::procfs::CpuReport;
use crate::server::{Backend, Deployment};
use crate::stats::{Latencies, Summary, fmt_ms, print_table};

/// Above this much CPU used by other processes, results get a warning.
pub const OTHERS_WARNING_CORES: f64 = 0.15;
/// At most this many distinct error messages are kept per run.
const ERROR_SAMPLES: usize = 5;
/// Operations per second, all clients together, the pairs are sized for:
/// about twice the most measured on the reference machine (5,788 at 64
/// clients), so that no client runs out of pairs.
pub const PLANNED_RATE: f64 = 12_000.0;
/// Operations per second of one client the pairs are sized for (one client
/// did about 800).
pub const PLANNED_CLIENT_RATE: f64 = 2_500.0;
/// Seconds added to warm-up + duration when sizing the pairs (the last
/// operations end after the window).
const PLANNED_SLACK_SECONDS: f64 = 2.0;
/// Roles a scenario creates at most; more pairs come from more principals.
pub const MAX_ROLES: usize = 1_000;
/// Roles per `POST /v1/apply` (about 350 bytes each, far below the 1 MiB
/// body limit).
pub const ROLES_PER_APPLY: usize = 500;
/// The group of every benchmark principal; the benchmark roles are
/// requestable by it.
pub const GROUP: &str = "bench";
/// Concurrent `POST /v1/tokens` at setup.
const SETUP_CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct Options {
    pub clients: Vec<usize>,
    pub duration: Duration,
    pub warmup: Duration,
    /// The auto-approved role whose settings the benchmark roles copy.
    pub role: String,
    /// Grant duration asked for, e.g. `5m`.
    pub grant_for: String,
}

/// The (principal, role) pairs requests may use, each at most once: request
/// `j` uses principal `j mod principals` and role `j / principals`, so the
/// principals' grants grow evenly and no pair comes twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pairs {
    pub principals: usize,
    pub roles: usize,
}

impl Pairs {
    /// Enough pairs for `requests` requests: that many roles up to
    /// [`MAX_ROLES`], and as many principals as it then takes.
    pub fn for_requests(requests: usize) -> Self {
        let roles = requests.clamp(1, MAX_ROLES);
        Self {
            principals: requests.div_ceil(roles).max(1),
            roles,
        }
    }

    pub fn capacity(self) -> usize {
        self.principals.saturating_mul(self.roles)
    }

    /// `(principal, role)` of request `j`; `None` once the pairs are used up.
    pub fn pair(self, j: usize) -> Option<(usize, usize)> {
        (j < self.capacity()).then(|| (j % self.principals, j / self.principals))
    }
}

/// An auto-approved role on `target` that the benchmark's principals may
/// request, for an hour unless they ask otherwise.
pub fn auto_approved_role(
    name: &str,
    target: &str,
    description: &str,
    max_duration: &str,
    grant: serde_json::Map<String, serde_json::Value>,
) -> RoleSpec {
    RoleSpec {
        name: name.into(),
        target: target.into(),
        description: description.into(),
        default_duration: Some("1h".into()),
        max_duration: max_duration.into(),
        max_total_duration: None,
        requestable_by: vec![format!("group:{GROUP}")],
        labels: Default::default(),
        approval: None,
        approval_flow: None,
        auto_approve: true,
        emergency_access: false,
        extension_requires_approval: true,
        grant,
    }
}

/// Creates `roles` with `POST /v1/apply`, [`ROLES_PER_APPLY`] at a time, and
/// checks that each was created (not already there).
pub async fn apply_roles(admin: &Client, roles: &[RoleSpec]) -> Result<()> {
    for chunk in roles.chunks(ROLES_PER_APPLY) {
        let response = admin
            .apply(&ApplyRequest {
                roles: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create {} benchmark roles with POST /v1/apply", chunk.len()))?;
        let created = response
            .changes
            .iter()
            .filter(|change| change.kind == hallpass_api::ConfigKind::Role && change.action == ChangeAction::Create)
            .count();
        if created != chunk.len() {
            bail!(
                "POST /v1/apply created {created} of {} benchmark roles; the server should be fresh",
                chunk.len()
            );
        }
    }
    Ok(())
}

/// Creates a one-day token for each principal, all in group [`GROUP`];
/// returns the tokens in the order of `principals`.
pub async fn create_principals(admin: &Client, principals: Vec<String>) -> Result<Vec<String>> {
    futures::stream::iter(principals)
        .map(|principal| async move {
            admin
                .create_token(&CreateToken {
                    principal: principal.clone(),
                    groups: vec![GROUP.into()],
                    ttl: Some("1d".into()),
                })
                .await
                .map(|created| created.token)
                .with_context(|| format!("cannot create a token for benchmark principal {principal}"))
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

/// The result at one client count.
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub clients: usize,
    /// Benchmark roles created (copies of the requested role).
    pub roles: usize,
    /// Principals per client; `clients × principals_per_client` in all.
    pub principals_per_client: usize,
    /// Creating the roles and the principals' tokens.
    pub setup_seconds: f64,
    /// (principal, role) pairs used, warm-up and window, of `clients ×
    /// principals_per_client × roles` available.
    pub pairs_used: usize,
    pub measured_seconds: f64,
    /// Completed request → credential pairs in the window.
    pub operations: u64,
    pub operations_per_second: f64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Latency of the whole pair.
    pub pair: Summary,
    /// Latency of `POST /v1/requests` alone.
    pub create: Summary,
    /// Latency of `GET /v1/requests/{id}/credentials` alone.
    pub credentials: Summary,
    /// CPU use over the measured window.
    pub cpu: CpuReport,
    /// With several replicas: `GET /v1/audit/verify` after the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<ChainCheck>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backend: Backend,
    /// The role the benchmark roles copy.
    pub role: String,
    pub grant_for: String,
    pub warmup_seconds: f64,
    pub levels: Vec<Level>,
}

pub async fn run(binary: &Path, backend: &Backend, options: &Options) -> Result<Report> {
    if options.clients.is_empty() || options.clients.contains(&0) {
        bail!("--clients needs one or more positive counts, like 1,8,32,64");
    }
    if options.duration.is_zero() {
        bail!("--duration must be positive, like 20s");
    }
    let mut levels = Vec::with_capacity(options.clients.len());
    for &clients in &options.clients {
        eprintln!(
            "throughput ({}): {clients} client(s), {}s warm-up + {}s measured, fresh server",
            backend.label(),
            options.warmup.as_secs_f64(),
            options.duration.as_secs_f64()
        );
        let deployment = Deployment::start(binary, backend).await?;
        let mut measured = measure_level(&deployment, clients, options).await;
        // Replicas append to one log: it must still be one chain.
        if let Ok(level) = &mut measured
            && deployment.replica_count() > 1
        {
            level.audit = Some(audit_chain::verify(&deployment).await);
        }
        let stopped = deployment.stop().await;
        let level = measured?;
        stopped?;
        eprintln!(
            "  {:.0} ops/s, p99 {} ms, {} errors",
            level.operations_per_second,
            fmt_ms(level.pair.p99_ms),
            level.errors
        );
        levels.push(level);
    }
    Ok(Report {
        backend: backend.clone(),
        role: options.role.clone(),
        grant_for: options.grant_for.clone(),
        warmup_seconds: options.warmup.as_secs_f64(),
        levels,
    })
}

/// What one client task measured.
struct TaskResult {
    pair: Latencies,
    create: Latencies,
    credentials: Latencies,
    errors: u64,
    error_samples: Vec<String>,
    /// Requests made (pairs used), counted or not.
    requests: usize,
}

impl TaskResult {
    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&message) {
            self.error_samples.push(message);
        }
    }
}

/// What one client works with: its principals (one client each, all on the
/// same replica) and the benchmark roles.
struct Plan {
    principals: Vec<Client>,
    roles: std::sync::Arc<Vec<String>>,
    pairs: Pairs,
    /// The role the benchmark roles copy, for error messages.
    template: String,
    grant_for: String,
}

/// One request → credential pair; returns the two latencies. `seen` holds
/// the grant ids this client got so far: the response must be a new grant.
async fn operation(
    client: &Client,
    body: &CreateRequest,
    template: &str,
    seen: &mut HashSet<String>,
) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    let request = client.create_request(body).await?.request;
    let created = Instant::now();
    if request.state != hallpass_api::RequestState::Active {
        bail!(
            "request {} for role {} (a copy of {template}) is {} instead of active; is role {template} auto-approved?",
            request.id,
            body.role,
            request.state
        );
    }
    if request.role != body.role {
        bail!(
            "request {} is for role {} instead of {}",
            request.id,
            request.role,
            body.role
        );
    }
    if !seen.insert(request.id.clone()) {
        bail!(
            "asking for role {} returned grant {}, which this client already got: the server extended or \
             returned an existing grant (a principal asking for a role it holds) instead of creating one",
            body.role,
            request.id
        );
    }
    let credential = client.credentials(&request.id).await?;
    if credential.token.is_empty() {
        bail!("grant {} came back with an empty credential", request.id);
    }
    Ok((created - start, created.elapsed()))
}

async fn client_task(plan: Plan, window_start: Instant, window_end: Instant) -> Result<TaskResult> {
    let mut result = TaskResult {
        pair: Latencies::new()?,
        create: Latencies::new()?,
        credentials: Latencies::new()?,
        errors: 0,
        error_samples: Vec::new(),
        requests: 0,
    };
    let mut seen = HashSet::new();
    // Bounded by time: no new operation starts after the window closes.
    while Instant::now() < window_end {
        // A pair is used up by any attempt: a failed one may have created a grant.
        let j = result.requests;
        let Some((principal, role)) = plan.pairs.pair(j) else {
            result.error(format!(
                "a client ran out of (principal, role) pairs after {j} requests; the benchmark sizes them \
                 for {PLANNED_RATE} operations/s in all and at most {PLANNED_CLIENT_RATE} per client"
            ));
            break;
        };
        let (Some(client), Some(role)) = (plan.principals.get(principal), plan.roles.get(role)) else {
            bail!("pair ({principal}, {role}) is outside the benchmark's principals and roles");
        };
        result.requests += 1;
        let body = CreateRequest {
            role: role.clone(),
            duration: Some(plan.grant_for.clone()),
            reason: "hallpass-bench throughput".into(),
            ticket: None,
            emergency: false,
            scheduled_start: None,
            ssh_public_key: None,
            plan: None,
        };
        let start = Instant::now();
        let outcome = operation(client, &body, &plan.template, &mut seen).await;
        let done = Instant::now();
        let counted = done >= window_start && done <= window_end;
        match outcome {
            Ok((create, credentials)) if counted => {
                result.pair.record(done - start);
                result.create.record(create);
                result.credentials.record(credentials);
            }
            Ok(_) => {}
            Err(error) => {
                if counted {
                    result.error(format!("{error:#}"));
                }
                // Do not spin on a server that keeps failing.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(result)
}

/// Roles and principals for `clients` clients: returns the pairs each
/// client has, the role names and one token per principal, client by client.
async fn setup(admin: &Client, clients: usize, options: &Options) -> Result<(Pairs, Vec<String>, Vec<String>)> {
    let template = admin
        .get_role(&options.role)
        .await
        .with_context(|| {
            format!(
                "cannot read role {:?}, whose settings the benchmark roles copy",
                options.role
            )
        })?
        .to_spec();
    let seconds = (options.warmup + options.duration).as_secs_f64() + PLANNED_SLACK_SECONDS;
    let per_client_rate = (PLANNED_RATE / clients as f64).min(PLANNED_CLIENT_RATE);
    let pairs = Pairs::for_requests((seconds * per_client_rate).ceil() as usize);
    let names: Vec<String> = (0..pairs.roles).map(|k| format!("bench-tp-{k:04}")).collect();
    let specs: Vec<RoleSpec> = names
        .iter()
        .map(|name| RoleSpec {
            name: name.clone(),
            description: format!("hallpass-bench throughput: a copy of {}", options.role),
            requestable_by: vec![format!("group:{GROUP}")],
            ..template.clone()
        })
        .collect();
    apply_roles(admin, &specs).await?;
    let principals = (0..clients)
        .flat_map(|c| (0..pairs.principals).map(move |p| format!("bench-{c}-{p}")))
        .collect();
    let tokens = create_principals(admin, principals).await?;
    Ok((pairs, names, tokens))
}

async fn measure_level(deployment: &Deployment, clients: usize, options: &Options) -> Result<Level> {
    let admin = deployment.admin(0)?;
    // One connection pool per replica; client i sticks to replica i mod N.
    let replicas: Vec<Client> = (0..deployment.replica_count())
        .map(|replica| deployment.admin(replica))
        .collect::<Result<_>>()?;
    let setup_started = Instant::now();
    let (pairs, roles, tokens) = setup(&admin, clients, options).await?;
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    eprintln!(
        "  setup: {} roles (copies of {}), {} principals ({} per client) in {setup_seconds:.1}s",
        pairs.roles,
        options.role,
        tokens.len(),
        pairs.principals
    );
    let roles = std::sync::Arc::new(roles);
    let window_start = Instant::now() + options.warmup;
    let window_end = window_start + options.duration;
    let mut handles = Vec::with_capacity(clients);
    for (i, tokens) in tokens.chunks(pairs.principals).enumerate() {
        let replica = &replicas[i % replicas.len()];
        let plan = Plan {
            principals: tokens.iter().map(|token| replica.with_token(token.clone())).collect(),
            roles: roles.clone(),
            pairs,
            template: options.role.clone(),
            grant_for: options.grant_for.clone(),
        };
        handles.push(tokio::spawn(client_task(plan, window_start, window_end)));
    }

    tokio::time::sleep_until(window_start.into()).await;
    let before = deployment.cpu_snapshot()?;
    tokio::time::sleep_until(window_end.into()).await;
    let after = deployment.cpu_snapshot()?;
    let seconds = options.duration.as_secs_f64();

    let mut pair = Latencies::new()?;
    let mut create = Latencies::new()?;
    let mut credentials = Latencies::new()?;
    let mut errors = 0;
    let mut error_samples: Vec<String> = Vec::new();
    let mut pairs_used = 0;
    for handle in handles {
        let task = handle.await.context("a client task panicked")??;
        pair.merge(&task.pair)?;
        create.merge(&task.create)?;
        credentials.merge(&task.credentials)?;
        errors += task.errors;
        pairs_used += task.requests;
        for message in task.error_samples {
            if error_samples.len() < ERROR_SAMPLES && !error_samples.contains(&message) {
                error_samples.push(message);
            }
        }
    }
    Ok(Level {
        clients,
        roles: pairs.roles,
        principals_per_client: pairs.principals,
        setup_seconds,
        pairs_used,
        measured_seconds: seconds,
        operations: pair.count(),
        operations_per_second: pair.count() as f64 / seconds,
        errors,
        error_samples,
        pair: pair.summary(),
        create: create.summary(),
        credentials: credentials.summary(),
        cpu: CpuReport::between(&before, &after),
        audit: None,
    })
}

pub fn print(report: &Report) {
    let replicas = report.backend.replicas();
    println!(
        "\nThroughput ({}): POST /v1/requests (--for {}) then GET .../credentials = 1 op; durable commits",
        report.backend.label(),
        report.grant_for
    );
    println!(
        "  each request a new (principal, role) pair: roles copied from {}, principals in group {GROUP}",
        report.role
    );
    if replicas > 1 {
        println!("  clients spread round-robin over {replicas} replicas; server columns are all replicas together");
    }
    // PostgreSQL's CPU gets its own column when it runs on this machine.
    let database = report.levels.iter().any(|l| l.cpu.database.is_some());
    print_rates(&report.levels, database);
    print_per_call(&report.levels, database);
    print_setup(&report.levels);
    for level in &report.levels {
        if level.cpu.others_cores > OTHERS_WARNING_CORES {
            println!(
                "  note: at {} clients other processes used {:.2} cores meanwhile; the figures may be skewed",
                level.clients, level.cpu.others_cores
            );
        }
        for message in &level.error_samples {
            println!("  error at {} clients: {message}", level.clients);
        }
        if let Some(check) = &level.audit {
            println!("  audit chain after {} clients: {}", level.clients, check.describe());
        }
    }
}

/// Operations per second, latency and CPU by client count.
fn print_rates(levels: &[Level], database: bool) {
    let rows: Vec<Vec<String>> = levels
        .iter()
        .map(|l| {
            let mut row = vec![
                l.clients.to_string(),
                format!("{:.0}", l.operations_per_second),
                fmt_ms(l.pair.p50_ms),
                fmt_ms(l.pair.p90_ms),
                fmt_ms(l.pair.p99_ms),
                fmt_ms(l.pair.max_ms),
                l.errors.to_string(),
                format!("{:.2}", l.cpu.server.cores),
            ];
            if database {
                row.push(
                    l.cpu
                        .database
                        .as_ref()
                        .map_or("-".into(), |d| format!("{:.2}", d.cores)),
                );
            }
            row.push(format!("{:.2}", l.cpu.bench.cores));
            row.push(format!("{:.2}", l.cpu.others_cores));
            row
        })
        .collect();
    let mut header = vec![
        "clients",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "server cores",
    ];
    if database {
        header.push("postgres cores");
    }
    header.extend(["bench cores", "other cores"]);
    print_table(&header, &rows);
}

/// Latency of each of the two calls, and where the server's (and
/// PostgreSQL's) CPU went.
fn print_per_call(levels: &[Level], database: bool) {
    println!("\n  Per call (p50 / p99 ms) and the busiest threads:");
    let rows: Vec<Vec<String>> = levels
        .iter()
        .map(|l| {
            vec![
                l.clients.to_string(),
                format!("{} / {}", fmt_ms(l.create.p50_ms), fmt_ms(l.create.p99_ms)),
                format!("{} / {}", fmt_ms(l.credentials.p50_ms), fmt_ms(l.credentials.p99_ms)),
                l.cpu.server.describe(),
            ]
        })
        .collect();
    print_table(&["clients", "POST request", "GET credentials", "server CPU"], &rows);
    if database {
        let rows: Vec<Vec<String>> = levels
            .iter()
            .filter_map(|l| Some(vec![l.clients.to_string(), l.cpu.database.as_ref()?.describe()]))
            .collect();
        println!();
        print_table(&["clients", "PostgreSQL CPU (whole server)"], &rows);
    }
}

/// How many (role, principal) pairs each level had and used.
fn print_setup(levels: &[Level]) {
    println!("\n  Setup (roles × principals, each pair requested at most once):");
    let rows: Vec<Vec<String>> = levels
        .iter()
        .map(|l| {
            let available = l.roles * l.principals_per_client * l.clients;
            vec![
                l.clients.to_string(),
                l.roles.to_string(),
                format!(
                    "{} ({} per client)",
                    l.principals_per_client * l.clients,
                    l.principals_per_client
                ),
                format!("{} of {available}", l.pairs_used),
                format!("{:.1} s", l.setup_seconds),
            ]
        })
        .collect();
    print_table(&["clients", "roles", "principals", "pairs used", "setup"], &rows);
}
