//! Scenario 1: request → credential throughput.
//!
//! For each client count, a fresh server is started and N concurrent tasks
//! each loop over the self-service path a person or pipeline takes: `POST
//! /v1/requests` for the auto-approved role `demo-read` (the server commits
//! the request, issues the credential and commits the activation, both
//! durably) and then `GET /v1/requests/{id}/credentials` (signs the JWT).
//! One such pair is one operation. After a warm-up, operations completing in
//! the measurement window are counted and their latency recorded; the
//! server's and the benchmark's CPU use over the window is sampled from
//! `/proc` so the report shows which side (and which server thread) is busy.
//!
//! With several replicas (PostgreSQL), client `i` talks to replica
//! `i mod replicas` only, and the server CPU is that of all replicas.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hallpass_api::{CreateRequest, CreateToken};
use hallpass_client::Client;
use serde::Serialize;

use crate::procfs::CpuReport;
use crate::server::{Backend, Deployment};
use crate::stats::{Latencies, Summary, fmt_ms, print_table};

/// Above this much CPU used by other processes, results get a warning.
pub const OTHERS_WARNING_CORES: f64 = 0.15;
/// At most this many distinct error messages are kept per run.
const ERROR_SAMPLES: usize = 5;

#[derive(Debug, Clone)]
pub struct Options {
    pub clients: Vec<usize>,
    pub duration: Duration,
    pub warmup: Duration,
    /// The auto-approved role requested.
    pub role: String,
    /// Grant duration asked for, e.g. `5m`.
    pub grant_for: String,
}

/// The result at one client count.
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub clients: usize,
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
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub backend: Backend,
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
        let measured = measure_level(&deployment, clients, options).await;
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
}

/// One request → credential pair; returns the two latencies.
async fn operation(client: &Client, body: &CreateRequest) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    let request = client.create_request(body).await?;
    let created = Instant::now();
    if request.state != "active" {
        bail!(
            "request {} is {} instead of active; is role {} auto-approved?",
            request.id,
            request.state,
            body.role
        );
    }
    let credential = client.credentials(&request.id).await?;
    if credential.token.is_empty() {
        bail!("grant {} came back with an empty credential", request.id);
    }
    Ok((created - start, created.elapsed()))
}

async fn client_task(
    client: Client,
    body: CreateRequest,
    window_start: Instant,
    window_end: Instant,
) -> Result<TaskResult> {
    let mut result = TaskResult {
        pair: Latencies::new()?,
        create: Latencies::new()?,
        credentials: Latencies::new()?,
        errors: 0,
        error_samples: Vec::new(),
    };
    // Bounded by time: no new operation starts after the window closes.
    while Instant::now() < window_end {
        let start = Instant::now();
        let outcome = operation(&client, &body).await;
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
                    result.errors += 1;
                    let message = format!("{error:#}");
                    if result.error_samples.len() < ERROR_SAMPLES && !result.error_samples.contains(&message) {
                        result.error_samples.push(message);
                    }
                }
                // Do not spin on a server that keeps failing.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(result)
}

async fn measure_level(deployment: &Deployment, clients: usize, options: &Options) -> Result<Level> {
    let admin = deployment.admin(0)?;
    // One connection pool per replica; client i sticks to replica i mod N.
    let replicas: Vec<Client> = (0..deployment.replica_count())
        .map(|replica| deployment.admin(replica))
        .collect::<Result<_>>()?;
    // One principal per client, all in group `dev`, which may request demo-read.
    let mut handles = Vec::with_capacity(clients);
    let mut tokens = Vec::with_capacity(clients);
    for i in 0..clients {
        let created = admin
            .create_token(&CreateToken {
                principal: format!("bench-{i}"),
                groups: vec!["dev".into()],
                ttl: Some("1d".into()),
            })
            .await
            .context("cannot create a benchmark token")?;
        tokens.push(created.token);
    }
    let body = CreateRequest {
        role: options.role.clone(),
        duration: Some(options.grant_for.clone()),
        reason: "hallpass-bench throughput".into(),
        ticket: None,
    };
    let window_start = Instant::now() + options.warmup;
    let window_end = window_start + options.duration;
    for (i, token) in tokens.into_iter().enumerate() {
        let client = replicas[i % replicas.len()].with_token(token);
        handles.push(tokio::spawn(client_task(
            client,
            body.clone(),
            window_start,
            window_end,
        )));
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
    for handle in handles {
        let task = handle.await.context("a client task panicked")??;
        pair.merge(&task.pair)?;
        create.merge(&task.create)?;
        credentials.merge(&task.credentials)?;
        errors += task.errors;
        for message in task.error_samples {
            if error_samples.len() < ERROR_SAMPLES && !error_samples.contains(&message) {
                error_samples.push(message);
            }
        }
    }
    Ok(Level {
        clients,
        measured_seconds: seconds,
        operations: pair.count(),
        operations_per_second: pair.count() as f64 / seconds,
        errors,
        error_samples,
        pair: pair.summary(),
        create: create.summary(),
        credentials: credentials.summary(),
        cpu: CpuReport::between(&before, &after),
    })
}

pub fn print(report: &Report) {
    let replicas = report.backend.replicas();
    println!(
        "\nThroughput ({}): POST /v1/requests ({}, --for {}) then GET .../credentials = 1 op; durable commits",
        report.backend.label(),
        report.role,
        report.grant_for
    );
    if replicas > 1 {
        println!("  clients spread round-robin over {replicas} replicas; server columns are all replicas together");
    }
    // PostgreSQL's CPU gets its own column when it runs on this machine.
    let database = report.levels.iter().any(|l| l.cpu.database.is_some());
    let rows: Vec<Vec<String>> = report
        .levels
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
    println!("\n  Per call (p50 / p99 ms) and the busiest threads:");
    let rows: Vec<Vec<String>> = report
        .levels
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
        let rows: Vec<Vec<String>> = report
            .levels
            .iter()
            .filter_map(|l| Some(vec![l.clients.to_string(), l.cpu.database.as_ref()?.describe()]))
            .collect();
        println!();
        print_table(&["clients", "PostgreSQL CPU (whole server)"], &rows);
    }
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
    }
}
