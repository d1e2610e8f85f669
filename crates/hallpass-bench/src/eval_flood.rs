//! The `eval` scenario of `hallpass-bench flood`: does a flood of slow
//! policy evaluations (`POST /v1/policies/eval`) keep `/healthz` from
//! answering, and what do the flooding clients get?
//!
//! Each case (a policy × how tokens are shared) runs against its own fresh
//! `hallpass server --dev`:
//!
//! 1. set-up: the benchmark stores a policy whose `deny` rule does
//!    `--eval-work`² steps of work and never denies ([`EvalPolicy::Slow`]),
//!    or 4 × as many per side, past the sandbox's 100 ms wall-clock limit
//!    ([`EvalPolicy::OverLimit`]); then times [`CALIBRATION_EVALS`]
//!    evaluations one after another with a token of their own (within its
//!    burst), so the report says what one evaluation costs at rest;
//! 2. at rest: `--requests` `/healthz` probes over fresh connections;
//! 3. during: `--eval-clients` clients send evaluations back to back for
//!    `--eval-duration`, each waiting for its answer and ignoring
//!    `Retry-After`, as an attacker would. With [`TokenSharing::PerClient`]
//!    each has a token of its own, so the per-token limit admits up to
//!    clients × its rate and the policy workers are what saturates; with
//!    [`TokenSharing::Shared`] one token's limit holds them all back and the
//!    flood is mostly refused requests. Meanwhile `/healthz` is probed on a
//!    thread of its own, [`PROBE_PAUSE`] apart, and the CPU used by the
//!    server, its policy workers, the benchmark and other processes is
//!    measured;
//!    Also meanwhile a bystander, a token of its own, asks for an evaluation
//!    every [`BYSTANDER_PAUSE`], within its limit: what it gets is what the
//!    request path, which evaluates in the same policy workers, would get;
//! 4. after: the clients stop, `--requests` probes again.
//!
//! Answers are counted as decided (200 with a decision), failed closed (200
//! with the evaluation's error: the time limit, or no worker free within the
//! sandbox's queue wait), rate limited (429), other statuses and transport
//! errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hallpass_api::CreateToken;
use hallpass_client::{Client, ClientError};
use serde::Serialize;
use serde_json::json;

use crate::healthz::{self, Phase};
use crate::procfs::{self, TreeCpu};
use crate::server::{Backend, Deployment};
use crate::stats::{Latencies, Summary, fmt_ms, print_table};

/// Evaluations timed one after another before the flood.
pub const CALIBRATION_EVALS: usize = 10;
/// Between two `/healthz` probes during the flood.
pub const PROBE_PAUSE: Duration = Duration::from_millis(10);
/// Between two evaluations of the bystander: 4 a second, within the
/// per-token limit of 5.
pub const BYSTANDER_PAUSE: Duration = Duration::from_millis(250);
/// The over-limit policy's work per side, as a multiple of the slow one's.
const OVER_LIMIT_FACTOR: u32 = 4;
/// Failure messages are grouped by their first this many characters.
const REASON_CHARS: usize = 90;

/// The policy the clients have evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalPolicy {
    /// Much work per evaluation, finishing within the time limit.
    Slow,
    /// Work past the sandbox's wall-clock limit: every evaluation is stopped.
    OverLimit,
}

/// Which tokens the flooding clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenSharing {
    /// A token (and principal) per client: the per-token limit applies to
    /// each client alone.
    PerClient,
    /// One token for all the clients: they share one limit.
    Shared,
}

impl TokenSharing {
    fn label(self) -> &'static str {
        match self {
            TokenSharing::PerClient => "token per client",
            TokenSharing::Shared => "one shared token",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub clients: usize,
    pub duration: Duration,
    /// `/healthz` probes at rest and after.
    pub requests: usize,
    /// Steps per side of the slow policy's work.
    pub work: u32,
    pub policies: Vec<EvalPolicy>,
    pub tokens: Vec<TokenSharing>,
}

/// One case: a policy and a way of sharing tokens, on a fresh server.
#[derive(Debug, Serialize)]
pub struct Case {
    pub policy: EvalPolicy,
    pub tokens: TokenSharing,
    /// Steps per side of the policy's work.
    pub work: u32,
    pub clients: usize,
    pub seconds: f64,
    /// One evaluation at a time with the server otherwise idle.
    pub one_evaluation: Summary,
    pub answers: Answers,
    /// What a caller within its limit got during the flood.
    pub bystander: Answers,
    /// `/healthz` at rest, during the flood, after.
    pub phases: Vec<Phase>,
    pub cpu: Cpu,
    pub memory: Memory,
}

/// What the flooding clients got.
#[derive(Debug, Default, Serialize)]
pub struct Answers {
    /// 200 with a decision.
    pub decided: u64,
    /// 200 with the evaluation's error (the decision fails closed).
    pub failed_closed: u64,
    /// 429.
    pub rate_limited: u64,
    pub other_status: u64,
    pub transport_errors: u64,
    /// Failed-closed errors and other failures by message (digits as `#`).
    pub reasons: BTreeMap<String, u64>,
    /// Latency of 200 answers (decided or failed closed).
    pub answered_200: Summary,
    /// Latency of 429 answers.
    pub answered_429: Summary,
    /// Evaluations (200 answers) each flooding client got, lowest and
    /// highest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_client_200: Option<(u64, u64)>,
}

impl Answers {
    pub fn total(&self) -> u64 {
        self.decided + self.failed_closed + self.rate_limited + self.other_status + self.transport_errors
    }
}

/// CPU during the flood, in cores busy on average.
#[derive(Debug, Default, Serialize)]
pub struct Cpu {
    pub server_cores: f64,
    /// The policy workers (live and replaced ones).
    pub workers_cores: f64,
    /// The flooding clients and the probes.
    pub bench_cores: f64,
    /// The rest of the machine's busy time: other processes.
    pub others_cores: f64,
}

/// Resident memory, MiB.
#[derive(Debug, Default, Serialize)]
pub struct Memory {
    pub server_before_mib: f64,
    pub server_end_of_flood_mib: f64,
    pub server_after_mib: f64,
    pub server_peak_mib: f64,
    /// All live policy workers together, at the end of the flood.
    pub workers_end_of_flood_mib: f64,
}

/// Runs every case: each policy with each way of sharing tokens.
pub async fn run(binary: &Path, options: &Options) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for &policy in &options.policies {
        for &tokens in &options.tokens {
            eprintln!(
                "eval flood: {} clients, {policy:?} policy, {}",
                options.clients,
                tokens.label()
            );
            cases.push(run_case(binary, options, policy, tokens).await?);
        }
    }
    Ok(cases)
}

async fn run_case(binary: &Path, options: &Options, policy: EvalPolicy, tokens: TokenSharing) -> Result<Case> {
    let deployment = Deployment::start(binary, &Backend::Sqlite).await?;
    let measured = measure_case(&deployment, options, policy, tokens).await;
    deployment.stop().await?;
    measured
}

async fn measure_case(
    deployment: &Deployment,
    options: &Options,
    policy: EvalPolicy,
    tokens: TokenSharing,
) -> Result<Case> {
    let admin = deployment.admin(0)?;
    let addr = socket_addr(admin.base_url())?;
    let pid = deployment.pids()[0];
    let work = match policy {
        EvalPolicy::Slow => options.work,
        EvalPolicy::OverLimit => options.work.saturating_mul(OVER_LIMIT_FACTOR),
    };
    admin
        .put_policy("bench_slow", policy_source(work))
        .await
        .context("cannot store the benchmark's policy")?;
    let clients = flooding_clients(&admin, options.clients, tokens).await?;
    let bystander = Client::new(admin.base_url(), Some(new_token(&admin, "bench-eval-bystander").await?))?;
    let one_evaluation = calibrate(&admin).await?;

    let mut memory = Memory {
        server_before_mib: procfs::mib(procfs::memory(pid)?.rss_bytes),
        ..Memory::default()
    };
    let mut phases = vec![healthz::phase("at rest", addr, options.requests).await];
    let flooded = flood(addr, pid, clients, bystander, options.duration, &mut memory).await?;
    phases.push(flooded.during);
    phases.push(healthz::phase("after", addr, options.requests).await);
    let after = procfs::memory(pid)?;
    memory.server_after_mib = procfs::mib(after.rss_bytes);
    memory.server_peak_mib = procfs::mib(after.peak_rss_bytes);
    Ok(Case {
        policy,
        tokens,
        work,
        clients: options.clients,
        seconds: flooded.seconds,
        one_evaluation,
        answers: flooded.answers,
        bystander: flooded.bystander,
        phases,
        cpu: flooded.cpu,
        memory,
    })
}

/// `http://127.0.0.1:PORT/` → `127.0.0.1:PORT`.
pub fn socket_addr(url: &str) -> Result<SocketAddr> {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("the server's URL {url} is not http://HOST:PORT"))
}

/// Rego whose decision rule does `work`² comparisons and never denies.
fn policy_source(work: u32) -> String {
    format!(
        r#"package hallpass.request

import rego.v1

# hallpass-bench: {work}² steps of work per evaluation, and no decision.
bench_steps := count([1 | some x in numbers.range(1, {work}); some y in numbers.range(1, {work}); x == y])

deny contains "hallpass-bench: unreachable" if bench_steps < 0
"#
    )
}

/// The document the clients evaluate: a plausible request.
fn eval_input() -> serde_json::Map<String, serde_json::Value> {
    let input = json!({
        "principal": {"name": "bench-eval", "groups": ["bench"]},
        "role": {"name": "demo-read", "labels": {"env": "dev"}},
        "request": {"duration_seconds": 900, "reason": "hallpass-bench eval flood", "emergency": false},
        "context": {"weekday": "Mon", "hour": 10, "active_grants": 0},
    });
    match input {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// One client per flooder, with its own connection pool: with
/// [`TokenSharing::Shared`] they all carry the same token.
async fn flooding_clients(admin: &Client, clients: usize, tokens: TokenSharing) -> Result<Vec<Client>> {
    let principals = match tokens {
        TokenSharing::PerClient => clients,
        TokenSharing::Shared => 1,
    };
    let mut secrets = Vec::with_capacity(principals);
    for index in 0..principals {
        secrets.push(new_token(admin, &format!("bench-eval-{index}")).await?);
    }
    (0..clients)
        .map(|index| {
            Ok(Client::new(
                admin.base_url(),
                Some(secrets[index % principals].clone()),
            )?)
        })
        .collect()
}

async fn new_token(admin: &Client, principal: &str) -> Result<String> {
    let created = admin
        .create_token(&CreateToken {
            principal: principal.into(),
            groups: vec!["bench".into()],
            ttl: Some("1d".into()),
        })
        .await
        .with_context(|| format!("cannot create a token for {principal}"))?;
    Ok(created.token)
}

/// [`CALIBRATION_EVALS`] evaluations one after another, by a token of its
/// own and a fresh client, within that token's burst.
async fn calibrate(admin: &Client) -> Result<Summary> {
    let client = Client::new(
        admin.base_url(),
        Some(new_token(admin, "bench-eval-calibration").await?),
    )?;
    let input = eval_input();
    let mut latencies = Latencies::new()?;
    for _ in 0..CALIBRATION_EVALS {
        let started = Instant::now();
        client
            .eval_policy(input.clone())
            .await
            .context("the policy evaluation before the flood failed")?;
        latencies.record(started.elapsed());
    }
    Ok(latencies.summary())
}

/// What [`flood`] measured.
struct Flooded {
    answers: Answers,
    bystander: Answers,
    /// `/healthz` meanwhile.
    during: Phase,
    cpu: Cpu,
    seconds: f64,
}

/// The flood itself: the clients for `duration`, the bystander and
/// `/healthz` meanwhile.
async fn flood(
    addr: SocketAddr,
    pid: u32,
    clients: Vec<Client>,
    bystander: Client,
    duration: Duration,
    memory: &mut Memory,
) -> Result<Flooded> {
    let before = CpuTotals::take(pid)?;
    let deadline = tokio::time::Instant::now() + duration;
    let tallies: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(client_loop(client, deadline, Duration::ZERO)))
        .collect();
    let bystander = tokio::spawn(client_loop(bystander, deadline, BYSTANDER_PAUSE));
    // A thread and runtime of its own: the probes must not wait behind the
    // flooding clients' tasks in this process.
    let probes = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        anyhow::Ok(runtime.block_on(healthz::phase_until(
            "during eval flood",
            addr,
            PROBE_PAUSE,
            tokio::time::sleep_until(deadline),
        )))
    });
    let during = probes.await.context("the /healthz probe thread failed")??;
    let at_end = CpuTotals::take(pid)?;
    memory.server_end_of_flood_mib = procfs::mib(procfs::memory(pid)?.rss_bytes);
    memory.workers_end_of_flood_mib = procfs::children(pid)
        .into_iter()
        .filter_map(|child| procfs::memory(child).ok())
        .map(|m| procfs::mib(m.rss_bytes))
        .sum();
    let mut merged = Tally::new()?;
    let mut per_client = Vec::new();
    for tally in tallies {
        let tally = tally.await.context("a flooding client failed")??;
        per_client.push(tally.answers.decided + tally.answers.failed_closed);
        merged.merge(tally)?;
    }
    let mut answers = merged.finish();
    answers.per_client_200 = per_client.iter().copied().min().zip(per_client.iter().copied().max());
    Ok(Flooded {
        answers,
        bystander: bystander.await.context("the bystander failed")??.finish(),
        during,
        cpu: CpuTotals::between(&before, &at_end),
        seconds: at_end.at.duration_since(before.at).as_secs_f64(),
    })
}

/// One client's answers and their latencies.
struct Tally {
    answers: Answers,
    ok: Latencies,
    limited: Latencies,
}

impl Tally {
    fn new() -> Result<Tally> {
        Ok(Tally {
            answers: Answers::default(),
            ok: Latencies::new()?,
            limited: Latencies::new()?,
        })
    }

    fn count(&mut self, outcome: Result<hallpass_api::PolicyDecision, ClientError>, latency: Duration) {
        let answers = &mut self.answers;
        match outcome {
            Ok(decision) => {
                self.ok.record(latency);
                match decision.error {
                    None => answers.decided += 1,
                    Some(error) => {
                        answers.failed_closed += 1;
                        *answers.reasons.entry(reason(&error)).or_default() += 1;
                    }
                }
            }
            Err(error) if error.status() == Some(429) => {
                answers.rate_limited += 1;
                self.limited.record(latency);
            }
            Err(error) => {
                if error.status().is_some() {
                    answers.other_status += 1;
                } else {
                    answers.transport_errors += 1;
                }
                *answers.reasons.entry(reason(&error.to_string())).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: Tally) -> Result<()> {
        let (a, b) = (&mut self.answers, other.answers);
        a.decided += b.decided;
        a.failed_closed += b.failed_closed;
        a.rate_limited += b.rate_limited;
        a.other_status += b.other_status;
        a.transport_errors += b.transport_errors;
        for (reason, count) in b.reasons {
            *a.reasons.entry(reason).or_default() += count;
        }
        self.ok.merge(&other.ok)?;
        self.limited.merge(&other.limited)
    }

    fn finish(self) -> Answers {
        Answers {
            answered_200: self.ok.summary(),
            answered_429: self.limited.summary(),
            ..self.answers
        }
    }
}

/// A failure message with its numbers blanked, so like failures group.
fn reason(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .take(REASON_CHARS)
        .collect()
}

/// Evaluations until `deadline`, `pause` apart (none: back to back); one
/// in flight at a time.
async fn client_loop(client: Client, deadline: tokio::time::Instant, pause: Duration) -> Result<Tally> {
    let input = eval_input();
    let mut tally = Tally::new()?;
    while tokio::time::Instant::now() < deadline {
        let started = Instant::now();
        let outcome = client.eval_policy(input.clone()).await;
        tally.count(outcome, started.elapsed());
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    Ok(tally)
}

/// CPU counters of the server, its workers, this benchmark and the machine.
struct CpuTotals {
    server: TreeCpu,
    bench_seconds: f64,
    machine_seconds: f64,
    at: Instant,
}

impl CpuTotals {
    fn take(pid: u32) -> Result<CpuTotals> {
        Ok(CpuTotals {
            server: TreeCpu::of(pid)?,
            bench_seconds: TreeCpu::of(std::process::id())?.own_seconds,
            machine_seconds: procfs::machine_busy_seconds()?,
            at: Instant::now(),
        })
    }

    fn between(before: &CpuTotals, after: &CpuTotals) -> Cpu {
        let wall = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let cores = |a: f64, b: f64| (b - a).max(0.0) / wall;
        let server_cores = cores(before.server.own_seconds, after.server.own_seconds);
        let workers_cores = cores(before.server.children_seconds, after.server.children_seconds);
        let bench_cores = cores(before.bench_seconds, after.bench_seconds);
        let machine_cores = cores(before.machine_seconds, after.machine_seconds);
        Cpu {
            server_cores,
            workers_cores,
            bench_cores,
            others_cores: (machine_cores - server_cores - workers_cores - bench_cores).max(0.0),
        }
    }
}

pub fn print(cases: &[Case]) {
    for case in cases {
        let answers = &case.answers;
        let per_second = |n: u64| n as f64 / case.seconds.max(1e-9);
        println!(
            "\n/healthz while {} clients flood policies/eval — {:?} policy ({}² steps; one evaluation at rest p50 {} ms), {}, {:.0}s",
            case.clients,
            case.policy,
            case.work,
            fmt_ms(case.one_evaluation.p50_ms),
            case.tokens.label(),
            case.seconds
        );
        println!(
            "answers: {} decided, {} failed closed, {} rate limited (429), {} other status, {} transport errors; \
             {:.0}/s in all, {:.1} evaluations/s",
            answers.decided,
            answers.failed_closed,
            answers.rate_limited,
            answers.other_status,
            answers.transport_errors,
            per_second(answers.total()),
            per_second(answers.decided + answers.failed_closed)
        );
        println!(
            "200 answers p50 {} / p99 {} ms, 429 answers p50 {} / p99 {} ms; evaluations per client {}",
            fmt_ms(answers.answered_200.p50_ms),
            fmt_ms(answers.answered_200.p99_ms),
            fmt_ms(answers.answered_429.p50_ms),
            fmt_ms(answers.answered_429.p99_ms),
            answers
                .per_client_200
                .map_or_else(|| "-".into(), |(min, max)| format!("{min}..{max}"))
        );
        for (reason, count) in &answers.reasons {
            println!("  {count:>7} × {reason}");
        }
        let bystander = &case.bystander;
        println!(
            "bystander (own token, one evaluation every {} ms): {} decided, {} failed closed, {} rate limited, \
             {} other; 200 answers p50 {} / p99 {} ms",
            BYSTANDER_PAUSE.as_millis(),
            bystander.decided,
            bystander.failed_closed,
            bystander.rate_limited,
            bystander.other_status + bystander.transport_errors,
            fmt_ms(bystander.answered_200.p50_ms),
            fmt_ms(bystander.answered_200.p99_ms)
        );
        for (reason, count) in &bystander.reasons {
            println!("  {count:>7} × {reason}");
        }
        let rows: Vec<Vec<String>> = case.phases.iter().map(Phase::row).collect();
        print_table(&Phase::HEADER, &rows);
        let (cpu, memory) = (&case.cpu, &case.memory);
        println!(
            "CPU during (cores): server {:.2}, policy workers {:.2}, benchmark {:.2}, other processes {:.2}",
            cpu.server_cores, cpu.workers_cores, cpu.bench_cores, cpu.others_cores
        );
        println!(
            "server RSS MiB: before {:.1}, end of flood {:.1}, after {:.1}, peak {:.1}; workers at end of flood {:.1}",
            memory.server_before_mib,
            memory.server_end_of_flood_mib,
            memory.server_after_mib,
            memory.server_peak_mib,
            memory.workers_end_of_flood_mib
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_policy_compiles_and_never_denies() {
        let set = hallpass_policy::PolicySet::compile(&[hallpass_policy::PolicyModule {
            name: "bench_slow.rego".into(),
            source: policy_source(20),
        }])
        .unwrap();
        let decision = set.evaluate(&serde_json::Value::Object(eval_input())).unwrap();
        assert!(decision.deny.is_empty(), "{decision:?}");
    }

    #[test]
    fn reasons_group_messages_that_differ_in_numbers() {
        assert_eq!(
            reason("stopped at the time limit of 100 ms"),
            reason("stopped at the time limit of 250 ms")
        );
        assert_eq!(reason(&"x".repeat(200)).len(), REASON_CHARS);
    }
}
