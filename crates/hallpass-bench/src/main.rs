//! `hallpass-bench`: benchmarks that drive a real `hallpass server` process
//! over its HTTP API, on loopback, and report what they measured.
//!
//! Every subcommand starts its own fresh `hallpass server --dev` (release
//! binary, SQLite with WAL and `synchronous=FULL`, group commit) in a temp
//! dir on a free loopback port, runs, prints a table, optionally writes a
//! JSON summary (`--json FILE`), and stops the server, also on error and on
//! Ctrl-C / SIGTERM. With `--postgres URL [--replicas N]` it starts N
//! replicas on a fresh PostgreSQL database instead ([`server::Deployment`]).
//!
//! - `throughput`: request → credential operations per second and latency at
//!   one or more client counts ([`throughput`]).
//! - `expiry`: N grants expiring within a short window; expiry lag from the
//!   audit log, and RSS with all N active ([`expiry`]).
//! - `rss`: RSS with N active grants only.
//! - `policy`: in-process policy decision latency, no server ([`policy`]).
//! - `flood`: `/healthz` latency and server RSS while 20,000 half-open
//!   connections are held ([`flood`]), and while 16 clients flood
//!   `POST /v1/policies/eval` with a slow policy ([`eval_flood`]).
//! - `revocation --target postgres,mysql,redis,ssh|all`: N grants (1,000) on
//!   a real target of each type, a session open on each, all expiring in one
//!   window; from `expires_at` until a new login is refused and the open
//!   session ended, seen with the real clients; issue latency per type; and
//!   on postgres one issue + revoke through Hallpass against the provider's
//!   SQL by hand ([`revocation`]).
//! - `audit-verify`: `hallpass audit verify --file` on a generated signed
//!   export of N events (a million), events per second on one core, beside
//!   `openssl speed` for SHA-256 ([`audit_verify`]).
//! - `million`: a million active grants: RSS, store size per grant, and a
//!   restart on the same data (until serving, overdue grants ended, expiry
//!   timers rebuilt) ([`million`]).
//! - `overload`: 512 clients posting requests without pause; refusals are
//!   fine, an acknowledged request without its audit events is not
//!   ([`overload`]).
//! - `all`: throughput at 1, 8, 32 and 64 clients, expiry with 100k grants,
//!   million and overload; with `--postgres URL` again on PostgreSQL with 1
//!   and with 3 replicas; and audit-verify once. Every goal of issue #14 is a
//!   row of its targets table ([`targets`]). The run behind
//!   `docs/benchmarks.md`.
//!
//! Smoke run (seconds): `hallpass-bench throughput --clients 2 --duration 1s
//! --warmup 0s`, `hallpass-bench expiry --grants 200 --window 2s`,
//! `hallpass-bench million --grants 20000`, `hallpass-bench overload
//! --clients 64 --duration 5s` and `hallpass-bench revocation --target redis
//! --grants 20 --window 2s` (with `HALLPASS_TEST_REDIS_URL` set).

mod audit_chain;
mod audit_verify;
mod eval_flood;
mod expiry;
mod flood;
mod healthz;
mod million;
mod overload;
mod policy;
mod postgres;
mod procfs;
mod random;
mod revocation;
mod server;
mod stats;
mod targets;
mod throughput;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::procfs::Machine;
use crate::server::Backend;
use crate::stats::Summary;
use crate::targets::{Target, print_target_comparison, print_targets};

/// Benchmarks for Hallpass: each subcommand starts its own server.
#[derive(Debug, Parser)]
#[command(name = "hallpass-bench", version)]
struct Cli {
    /// The `hallpass` binary to benchmark [default: target/release/hallpass,
    /// else the one next to hallpass-bench].
    #[arg(long, global = true, value_name = "PATH")]
    hallpass: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Request → credential operations per second and latency.
    Throughput(ThroughputArgs),
    /// Expiry lag with many grants ending in one window, and RSS.
    Expiry(ExpiryArgs),
    /// Server RSS with N active grants.
    Rss(RssArgs),
    /// Throughput at 1, 8, 32 and 64 clients, expiry with 100k grants, a
    /// million active grants and a restart, overload; with --postgres, on
    /// SQLite, then PostgreSQL with 1 and 3 replicas; then audit-verify.
    All(AllArgs),
    /// A million active grants: RSS, store size per grant, and a restart on
    /// the same data (serving, overdue grants ended, timers rebuilt).
    Million(MillionArgs),
    /// Many clients posting requests without pause: refusals counted, no
    /// acknowledged audit event may be lost.
    Overload(OverloadArgs),
    /// Policy decision latency in-process (no server): the example policies
    /// and a generated 1,000-rule set, each beside bare regorus.
    Policy(PolicyArgs),
    /// /healthz latency and server memory under a flood of half-open
    /// connections, and under a flood of slow policy evaluations.
    Flood(flood::FloodArgs),
    /// From a grant's expiry until its credential is refused and its open
    /// session ended, on real postgres, mysql, redis and ssh targets.
    Revocation(RevocationArgs),
    /// `hallpass audit verify --file` on a generated signed export: events
    /// per second on one core, beside `openssl speed` for SHA-256.
    AuditVerify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
struct AuditVerifyArgs {
    /// Events in the generated export.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Verification runs; the median counts.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Debug, Args)]
struct BackendArgs {
    /// Run on PostgreSQL instead of SQLite: a server URL where the benchmark
    /// may CREATE DATABASE, e.g. postgres://postgres@127.0.0.1:5433/postgres.
    /// Each server start gets a fresh database, dropped at the end.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// hallpass replicas sharing the database (only with --postgres); clients
    /// are spread round-robin over them.
    #[arg(long, default_value_t = 1, value_name = "N")]
    replicas: usize,
}

impl BackendArgs {
    fn backend(self) -> Result<Backend> {
        match self.postgres {
            _ if self.replicas == 0 => anyhow::bail!("--replicas must be at least 1"),
            None if self.replicas > 1 => anyhow::bail!("--replicas above 1 needs --postgres URL"),
            None => Ok(Backend::Sqlite),
            Some(server_url) => Ok(Backend::Postgres {
                server_url,
                replicas: self.replicas,
            }),
        }
    }
}

#[derive(Debug, Args)]
struct ThroughputArgs {
    /// Concurrent clients; several comma-separated counts run one after another,
    /// each against a fresh server.
    #[arg(long, value_delimiter = ',', default_value = "32")]
    clients: Vec<usize>,
    /// Measured time per client count, e.g. 20s.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured time before it.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Auto-approved role whose settings the benchmark's roles copy (one copy per role, requested by new principals).
    #[arg(long, default_value = "demo-read")]
    role: String,
    /// Grant duration requested.
    #[arg(long = "for", default_value = "5m", value_name = "DURATION")]
    grant_for: String,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(Debug, Args)]
struct ExpiryArgs {
    /// Grants to create.
    #[arg(long, default_value_t = 100_000)]
    grants: usize,
    /// All grants expire within this window (whole seconds).
    #[arg(long, default_value = "10s", value_parser = whole_seconds)]
    window: u64,
    /// Concurrent clients creating grants.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds between the estimated end of creation and the first expiry.
    #[arg(long, default_value_t = 5)]
    margin: u64,
    /// Give up when grants are still active this long after the last expiry.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(Debug, Args)]
struct MillionArgs {
    /// Active grants to create.
    #[arg(long, default_value_t = 1_000_000)]
    grants: usize,
    /// Of them, grants that fall due while the server is down (created
    /// last).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    overdue: usize,
    /// Their duration: more than sampling memory and stopping the server
    /// take.
    #[arg(long, default_value = "10s", value_parser = whole_seconds)]
    overdue_after: u64,
    /// Concurrent clients creating grants.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long after the API answers to wait for the
    /// hallpass_expiry_timers_ready gauge before reporting it absent.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timers_timeout: Duration,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(Debug, Args)]
struct OverloadArgs {
    /// Concurrent clients, each posting without pause.
    #[arg(long, default_value_t = 512)]
    clients: usize,
    /// How long they post.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(Debug, Args)]
struct RssArgs {
    /// Active grants to create.
    #[arg(long, default_value_t = 100_000)]
    grants: usize,
    /// Concurrent clients creating grants.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(Debug, Args)]
struct AllArgs {
    /// Client counts for the throughput part.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    clients: Vec<usize>,
    /// Measured time per client count.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured time before it.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Grants for the expiry part.
    #[arg(long, default_value_t = 100_000)]
    grants: usize,
    /// Expiry window (whole seconds).
    #[arg(long, default_value = "10s", value_parser = whole_seconds)]
    window: u64,
    /// Also run everything on PostgreSQL, with 1 and with 3 replicas: a
    /// server URL where the benchmark may CREATE DATABASE.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Grants for the expiry part on PostgreSQL [default: --grants].
    #[arg(long, value_name = "N")]
    postgres_grants: Option<usize>,
    /// Active grants of the million part (the goal's scale is 1,000,000).
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    million_grants: usize,
    /// Clients of the overload part.
    #[arg(long, default_value_t = 512, value_name = "N")]
    overload_clients: usize,
    /// Duration of the overload part.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    overload_duration: Duration,
    /// Events in the export the audit-verify part checks.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    audit_events: u64,
}

#[derive(Debug, Args)]
struct PolicyArgs {
    /// Measured evaluations per policy set and engine.
    #[arg(long, default_value_t = 100_000)]
    iterations: u64,
    /// Unmeasured evaluations before them.
    #[arg(long, default_value_t = 10_000)]
    warmup: u64,
    /// Rules in the generated policy set.
    #[arg(long, default_value_t = 1000)]
    rules: usize,
    /// The example policies [default: examples/policies of this source tree].
    #[arg(long, value_name = "DIR")]
    examples: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RevocationArgs {
    /// Target types: postgres, mysql, redis, ssh, a comma-separated list of
    /// them, or all.
    #[arg(long = "target", value_delimiter = ',', default_value = "all", value_name = "TYPE")]
    targets: Vec<String>,
    /// Grants per type, each with a session open.
    #[arg(long, default_value_t = 1000)]
    grants: usize,
    /// All grants of a type expire within this window (whole seconds).
    #[arg(long, default_value = "10s", value_parser = whole_seconds)]
    window: u64,
    /// Concurrent clients creating grants (request, credential, session).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds between the estimated end of creation and the first expiry.
    #[arg(long, default_value_t = 5)]
    margin: u64,
    /// Give up on a grant whose access is still there this long after its
    /// expiry.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Grants also watched with the command-line client (psql, mariadb,
    /// redis-cli).
    #[arg(long, default_value_t = 5, value_name = "N")]
    cli_sample: usize,
    /// ssh: grants whose logins are probed with `ssh` and which keep an ssh
    /// session open (each login is a process and a key exchange).
    #[arg(long, default_value_t = 20, value_name = "N")]
    ssh_logins: usize,
    /// ssh: grants then revoked before expiry, through the KRL.
    #[arg(long, default_value_t = 20, value_name = "N")]
    krl_revokes: usize,
    /// postgres: issue + revoke cycles of the provider's SQL by hand and
    /// through Hallpass (each); 0 skips them.
    #[arg(long, default_value_t = 200, value_name = "K")]
    baseline_cycles: usize,
    /// Workers probing new logins, and as many probing the open sessions.
    #[arg(long, default_value_t = 4, value_name = "N")]
    probe_workers: usize,
    /// New-login probes a second, all grants of a type together (four
    /// times as many session checks); 0 for no limit.
    #[arg(long, default_value_t = 500.0, value_name = "N")]
    probe_rate: f64,
    /// The PostgreSQL server of the postgres target, as a superuser (not
    /// --postgres, which is the store).
    #[arg(long, env = "HALLPASS_TEST_POSTGRES_URL", hide_env_values = true, value_name = "URL")]
    postgres_url: Option<String>,
    /// The MariaDB or MySQL server of the mysql target, as root.
    #[arg(long, env = "HALLPASS_TEST_MYSQL_URL", hide_env_values = true, value_name = "URL")]
    mysql_url: Option<String>,
    /// The Redis server of the redis target, as a user that may ACL SETUSER.
    #[arg(long, env = "HALLPASS_TEST_REDIS_URL", hide_env_values = true, value_name = "URL")]
    redis_url: Option<String>,
    /// The sshd binary the ssh target's throwaway host runs.
    #[arg(long, default_value = "/usr/sbin/sshd", value_name = "PATH")]
    sshd: PathBuf,
    #[command(flatten)]
    backend: BackendArgs,
}

/// Replica counts `all --postgres` runs.
const ALL_POSTGRES_REPLICAS: [usize; 2] = [1, 3];

fn whole_seconds(text: &str) -> Result<u64, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.subsec_nanos() != 0 || duration.is_zero() {
        return Err(format!("{text:?} must be a positive whole number of seconds"));
    }
    Ok(duration.as_secs())
}

/// Everything one invocation measured.
#[derive(Debug, Serialize)]
struct Results {
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    machine: Machine,
    /// `write(4 KiB) + fdatasync` in the temp dir, 200 times.
    fsync_4k: Summary,
    hallpass_binary: String,
    /// When that binary was built (its mtime): check it matches the commit.
    hallpass_binary_modified: Option<DateTime<Utc>>,
    /// One entry per backend measured.
    runs: Vec<Run>,
}

/// What one invocation measured on one backend.
#[derive(Debug, Serialize)]
struct Run {
    backend: Backend,
    #[serde(skip_serializing_if = "Option::is_none")]
    throughput: Option<throughput::Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry: Option<expiry::ExpiryReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss: Option<expiry::RssReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revocation: Option<revocation::Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    million: Option<million::MillionReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    overload: Option<overload::OverloadReport>,
    /// Offline, no server: in `all` on the first run.
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_verify: Option<audit_verify::Report>,
    targets: Vec<Target>,
}

impl Run {
    fn new(backend: &Backend) -> Run {
        Run {
            backend: backend.clone(),
            throughput: None,
            expiry: None,
            rss: None,
            revocation: None,
            million: None,
            overload: None,
            audit_verify: None,
            targets: Vec::new(),
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let json = cli.json.as_deref();
    let hallpass = cli.hallpass.as_deref();
    // The policy benchmark is in-process: no binary, no server, its own report.
    let command = match cli.command {
        Command::Policy(args) => return run_policy(args, json).await,
        Command::Flood(args) => return flood::run(args, hallpass, json).await,
        Command::AuditVerify(args) => return run_audit_verify(&args, hallpass, json),
        command => command,
    };
    let binary = server::resolve_binary(hallpass)?;
    let mut results = Results::start(&binary)?;
    let mut failure = None;
    match command {
        Command::Throughput(args) => results.runs.push(throughput_run(&binary, args).await?),
        Command::Expiry(args) => results.runs.push(expiry_run(&binary, args).await?),
        Command::Rss(args) => {
            let backend = args.backend.backend()?;
            let mut run = Run::new(&backend);
            run.rss = Some(expiry::run_rss(&binary, &backend, args.grants, args.clients).await?);
            results.runs.push(run);
        }
        // Returned before the server set-up above; repeated for the match.
        Command::Policy(args) => return run_policy(args, json).await,
        Command::Flood(args) => return flood::run(args, hallpass, json).await,
        Command::AuditVerify(args) => return run_audit_verify(&args, hallpass, json),
        Command::All(args) => failure = run_all(&binary, &args, &mut results.runs).await,
        Command::Million(args) => results.runs.push(million_run(&binary, args).await?),
        Command::Overload(args) => results.runs.push(overload_run(&binary, args).await?),
        Command::Revocation(args) => {
            let (run, error) = revocation_run(&binary, args).await?;
            results.runs.push(run);
            failure = error;
        }
    }
    finish(results, failure, json)
}

impl Results {
    /// Describes the machine and the binary (also on stderr, before the
    /// long run starts); no runs yet.
    fn start(binary: &Path) -> Result<Results> {
        let started_at = Utc::now();
        let machine = Machine::detect();
        let built = std::fs::metadata(binary)
            .and_then(|meta| meta.modified())
            .ok()
            .map(DateTime::<Utc>::from);
        let fsync_4k = procfs::sync_latency(200)?;
        eprintln!(
            "hallpass-bench: {} (built {}) on {} CPU(s) ({}), {} MiB; client and server share these CPUs",
            binary.display(),
            built.map_or_else(
                || "at an unknown time".to_string(),
                |t| t.format("%Y-%m-%d %H:%M UTC").to_string()
            ),
            machine.cpus,
            machine.cpu_model,
            machine.memory_total_mib
        );
        Ok(Results {
            started_at,
            finished_at: started_at,
            machine,
            fsync_4k,
            hallpass_binary: binary.display().to_string(),
            hallpass_binary_modified: built,
            runs: Vec::new(),
        })
    }
}

/// `throughput` on the backend asked for.
async fn throughput_run(binary: &Path, args: ThroughputArgs) -> Result<Run> {
    let backend = args.backend.backend()?;
    let options = throughput::Options {
        clients: args.clients,
        duration: args.duration,
        warmup: args.warmup,
        role: args.role,
        grant_for: args.grant_for,
    };
    let mut run = Run::new(&backend);
    run.throughput = Some(throughput::run(binary, &backend, &options).await?);
    Ok(run)
}

/// `expiry` on the backend asked for.
async fn expiry_run(binary: &Path, args: ExpiryArgs) -> Result<Run> {
    let backend = args.backend.backend()?;
    let options = expiry::Options {
        grants: args.grants,
        window_seconds: args.window,
        clients: args.clients,
        margin_seconds: args.margin,
        timeout: args.timeout,
    };
    let mut run = Run::new(&backend);
    run.expiry = Some(expiry::run_expiry(binary, &backend, &options).await?);
    Ok(run)
}

/// `million` on the backend asked for.
async fn million_run(binary: &Path, args: MillionArgs) -> Result<Run> {
    let backend = args.backend.backend()?;
    let options = million::Options {
        grants: args.grants,
        overdue: args.overdue,
        overdue_after_seconds: args.overdue_after,
        clients: args.clients,
        timers_timeout: args.timers_timeout,
    };
    let mut run = Run::new(&backend);
    run.million = Some(million::run(binary, &backend, &options).await?);
    Ok(run)
}

/// `overload` on the backend asked for.
async fn overload_run(binary: &Path, args: OverloadArgs) -> Result<Run> {
    let backend = args.backend.backend()?;
    let options = overload::Options {
        clients: args.clients,
        duration: args.duration,
    };
    let mut run = Run::new(&backend);
    run.overload = Some(overload::run(binary, &backend, &options).await?);
    Ok(run)
}

/// `revocation` on the backend asked for.
async fn revocation_run(binary: &Path, args: RevocationArgs) -> Result<(Run, Option<anyhow::Error>)> {
    let backend = args.backend.backend()?;
    let options = revocation::Options {
        kinds: revocation::Kind::parse_list(&args.targets)?,
        grants: args.grants,
        window_seconds: args.window,
        clients: args.clients,
        margin_seconds: args.margin,
        timeout: args.timeout,
        cli_sample: args.cli_sample,
        ssh_logins: args.ssh_logins,
        krl_revokes: args.krl_revokes,
        baseline_cycles: args.baseline_cycles,
        probe_workers: args.probe_workers,
        probe_rate: args.probe_rate,
        services: revocation::Services {
            postgres: args.postgres_url,
            mysql: args.mysql_url,
            redis: args.redis_url,
            sshd: args.sshd,
        },
    };
    let mut run = Run::new(&backend);
    let (report, error) = revocation::run(binary, &backend, &options).await;
    run.revocation = Some(report);
    Ok((run, error))
}

/// `all`: every part on SQLite, then on PostgreSQL with each replica count
/// when a server is given, then the offline audit verification (reported
/// with the first run). A failing backend does not stop the next one; the
/// first failure is returned.
async fn run_all(binary: &Path, args: &AllArgs, runs: &mut Vec<Run>) -> Option<anyhow::Error> {
    let mut backends = vec![(Backend::Sqlite, args.grants)];
    if let Some(url) = &args.postgres {
        for replicas in ALL_POSTGRES_REPLICAS {
            let backend = Backend::Postgres {
                server_url: url.clone(),
                replicas,
            };
            backends.push((backend, args.postgres_grants.unwrap_or(args.grants)));
        }
    }
    let mut failure = None;
    for (backend, grants) in backends {
        let (run, error) = run_all_parts(binary, &backend, args, grants).await;
        runs.push(run);
        if let Some(error) = error {
            eprintln!("error on {}: {error:#}", backend.label());
            failure.get_or_insert(error);
        }
    }
    let options = audit_verify::Options {
        events: args.audit_events,
        runs: 3,
        hallpass: binary.to_path_buf(),
    };
    eprintln!("audit-verify: {} events, offline", options.events);
    let verified = tokio::task::spawn_blocking(move || audit_verify::run(&options)).await;
    match verified.context("the audit-verify part panicked").and_then(|r| r) {
        Ok(report) => {
            if let Some(first) = runs.first_mut() {
                first.audit_verify = Some(report);
            }
        }
        Err(error) => {
            eprintln!("error in audit-verify: {error:#}");
            failure.get_or_insert(error.context("the audit-verify part failed"));
        }
    }
    failure
}

/// Checks the runs against the targets, prints and writes the results, then
/// fails on the first failure or on a grant count that does not add up.
fn finish(mut results: Results, failure: Option<anyhow::Error>, json: Option<&Path>) -> Result<()> {
    results.finished_at = Utc::now();
    for run in &mut results.runs {
        run.targets = targets::targets(run);
    }
    // Three replicas are held against one: rows that need both runs.
    for (i, target) in targets::replica_targets(&results.runs) {
        results.runs[i].targets.push(target);
    }
    print_results(&results);
    if let Some(path) = json {
        write_json(path, &results)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let mismatch = results
        .runs
        .iter()
        .any(|run| run.expiry.as_ref().is_some_and(|e| !e.count_ok));
    if mismatch {
        anyhow::bail!("the number of grant.expired events does not match the grants created");
    }
    Ok(())
}

/// `audit-verify`: no server, the binary's offline verifier only.
fn run_audit_verify(args: &AuditVerifyArgs, hallpass: Option<&Path>, json: Option<&Path>) -> Result<()> {
    let options = audit_verify::Options {
        events: args.events,
        runs: args.runs,
        hallpass: server::resolve_binary(hallpass)?,
    };
    let report = audit_verify::run(&options)?;
    audit_verify::print(&report);
    let target = targets::audit_verify_target(&report);
    print_targets(std::slice::from_ref(&target));
    if let Some(path) = json {
        write_json(path, &serde_json::json!({"audit_verify": report, "targets": [target]}))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

async fn run_policy(args: PolicyArgs, json: Option<&Path>) -> Result<()> {
    if args.iterations == 0 {
        anyhow::bail!("--iterations must be at least 1");
    }
    let options = policy::Options {
        iterations: args.iterations,
        warmup: args.warmup,
        rules: args.rules,
        examples: args.examples.unwrap_or_else(policy::default_examples_dir),
    };
    let report = policy::run(options).await?;
    policy::print(&report);
    if let Some(path) = json {
        write_json(path, &report)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `all` on one backend: throughput, expiry, million, then overload. Keeps
/// what was measured when a part fails, and stops there.
async fn run_all_parts(
    binary: &Path,
    backend: &Backend,
    args: &AllArgs,
    grants: usize,
) -> (Run, Option<anyhow::Error>) {
    let mut run = Run::new(backend);
    let options = throughput::Options {
        clients: args.clients.clone(),
        duration: args.duration,
        warmup: args.warmup,
        role: "demo-read".into(),
        grant_for: "5m".into(),
    };
    match throughput::run(binary, backend, &options).await {
        Ok(report) => run.throughput = Some(report),
        Err(error) => return (run, Some(error.context("the throughput part failed"))),
    }
    let options = expiry::Options {
        grants,
        window_seconds: args.window,
        clients: 64,
        margin_seconds: 5,
        timeout: Duration::from_secs(300),
    };
    match expiry::run_expiry(binary, backend, &options).await {
        Ok(report) => run.expiry = Some(report),
        Err(error) => return (run, Some(error.context("the expiry part failed"))),
    }
    let error = run_all_later_parts(binary, backend, args, &mut run).await.err();
    (run, error)
}

/// The million and overload parts of `all`.
async fn run_all_later_parts(binary: &Path, backend: &Backend, args: &AllArgs, run: &mut Run) -> Result<()> {
    let options = million::Options {
        grants: args.million_grants,
        overdue: args.million_grants.min(1000),
        overdue_after_seconds: 10,
        clients: 64,
        timers_timeout: Duration::from_secs(30),
    };
    let report = million::run(binary, backend, &options)
        .await
        .context("the million part failed")?;
    run.million = Some(report);
    let options = overload::Options {
        clients: args.overload_clients,
        duration: args.overload_duration,
    };
    let report = overload::run(binary, backend, &options)
        .await
        .context("the overload part failed")?;
    run.overload = Some(report);
    Ok(())
}

fn print_results(results: &Results) {
    println!(
        "\nhallpass-bench {} — {} CPU(s) {}, {} MiB RAM, Linux {}; client and server share the CPUs",
        results.started_at.format("%Y-%m-%d %H:%M UTC"),
        results.machine.cpus,
        results.machine.cpu_model,
        results.machine.memory_total_mib,
        results.machine.kernel
    );
    println!(
        "fdatasync of 4 KiB in the temp dir: p50 {} ms, p99 {} ms",
        stats::fmt_ms(results.fsync_4k.p50_ms),
        stats::fmt_ms(results.fsync_4k.p99_ms)
    );
    for run in &results.runs {
        if results.runs.len() > 1 {
            println!("\n=== {} ===", run.backend.label());
        }
        if let Some(report) = &run.throughput {
            throughput::print(report);
        }
        if let Some(report) = &run.expiry {
            expiry::print_expiry(report);
        }
        if let Some(report) = &run.rss {
            expiry::print_rss(report);
        }
        if let Some(report) = &run.million {
            million::print(report);
        }
        if let Some(report) = &run.overload {
            overload::print(report);
        }
        if let Some(report) = &run.audit_verify {
            audit_verify::print(report);
        }
        if let Some(report) = &run.revocation {
            revocation::print(report);
        }
        print_targets(&run.targets);
    }
    print_target_comparison(&results.runs);
}

fn write_json(path: &Path, results: &impl Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(results).context("cannot encode the results")?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)",
        _ = term.recv() => "terminated (SIGTERM)",
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any HTTP client exists: the expiry benchmark also builds plain
    // reqwest clients, which take the process's rustls provider.
    hallpass_client::install_tls_crypto_provider();
    // Dropping the benchmark future drops its server handles, which kills the
    // servers, removes their temp dirs and drops a PostgreSQL database.
    let outcome = tokio::select! {
        result = run(cli) => result.map_err(|e| (e, ExitCode::FAILURE)),
        why = interrupted() => Err((anyhow::anyhow!("{why}; the server was stopped"), ExitCode::from(130))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err((error, code)) => {
            eprintln!("error: {error:#}");
            code
        }
    }
}
