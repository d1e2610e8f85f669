//! `audit-verify`: how fast `hallpass audit verify --file` checks an export
//! offline, beside what this machine's SHA-256 can do (`openssl speed`).
//!
//! The benchmark writes a signed export of N events itself (no server): a
//! request's life in four events (`request.created`, `request.approved`,
//! `grant.activated`, `grant.expired`) with the data the server records,
//! chained and sealed by `hallpass-core` exactly as the server does, with a
//! signed checkpoint every 1,000 events and one at the end. It then runs
//! the real binary on it several times and takes the median wall time; the
//! verifier runs on one thread, so events per second are per core (the CPU
//! time of the runs is reported beside it to show that).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use hallpass_core::audit::{AuditDraft, AuditEvent, CheckpointSigner, GENESIS_HASH};
use serde::Serialize;
use serde_json::json;

use crate::stats;

/// Events between two signed checkpoints in the generated export.
const CHECKPOINT_EVERY: u64 = 1_000;
/// The goal of issue #14: one core verifies a million events a second.
pub const TARGET_EVENTS_PER_SECOND: f64 = 1_000_000.0;

pub struct Options {
    pub events: u64,
    pub runs: usize,
    pub hallpass: PathBuf,
}

/// What `openssl speed` measured for SHA-256 on 1 KiB blocks.
#[derive(Debug, Serialize)]
pub struct OpensslSha256 {
    pub bytes_per_second: f64,
    /// That speed over the export's mean line: an upper bound for a
    /// verifier that did nothing but hash each line once.
    pub lines_per_second: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub events: u64,
    pub file_bytes: u64,
    pub mean_line_bytes: f64,
    pub generate_seconds: f64,
    pub run_seconds: Vec<f64>,
    pub run_cpu_seconds: Vec<f64>,
    pub median_seconds: f64,
    pub events_per_second: f64,
    pub openssl_sha256: Option<OpensslSha256>,
}

/// The events of request number `n`, in order.
fn request_life(n: u64) -> [AuditDraft; 4] {
    let id = format!("01a3{n:028x}");
    let created = json!({
        "role": "db-admin", "target": "orders-db", "duration_seconds": 1800,
        "reason": format!("INC-{n}: investigate the stuck settlement job on the primary"),
        "ticket": format!("INC-{n}"), "emergency": false,
        "policy": {"policy_hash": "9f2c1e6d4b8a7f3e5d2c1b0a9f8e7d6c5b4a3928171615141312111009080706",
                   "deny": [], "auto_approve": false, "approval_flow": "two-step", "max_duration_seconds": null},
        "approvers": ["group:approvers"], "required_approvals": 1
    });
    [
        AuditDraft::new("alice@example.com", "request.created", Some(id.clone()), created),
        AuditDraft::new(
            "bob@example.com",
            "request.approved",
            Some(id.clone()),
            json!({"comment": "ok for the incident", "stage": 1, "approvals": 1, "required": 1}),
        ),
        AuditDraft::new(
            "hallpass",
            "grant.activated",
            Some(id.clone()),
            json!({"expires_at": "2026-11-30T10:30:00Z", "credential": {"type": "postgres", "login": format!("hp_alice_{n}")}}),
        ),
        AuditDraft::new(
            "hallpass",
            "grant.expired",
            Some(id),
            json!({"revoked": true, "verified": true}),
        ),
    ]
}

/// The time of event `seq`: a checkpoint signs its own time, so it is
/// computed before the event is.
fn time_of(seq: u64) -> String {
    format!(
        "2026-11-30T10:{:02}:{:02}.{:06}Z",
        (seq / 60) % 60,
        seq % 60,
        seq % 1_000_000
    )
}

/// Writes the export and the public key; returns (lines, bytes).
fn write_export(path: &Path, key_path: &Path, events: u64) -> Result<(u64, u64)> {
    let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| anyhow::anyhow!("no key"))?;
    let signer = CheckpointSigner::from_pkcs8(document.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(key_path, signer.public_key().to_pem())?;
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let (mut seq, mut prev, mut bytes) = (0u64, GENESIS_HASH.to_string(), 0u64);
    let mut write = |draft: AuditDraft, seq: &mut u64, prev: &mut String| -> Result<u64> {
        *seq += 1;
        let time = format!(
            "2026-11-30T10:{:02}:{:02}.{:06}Z",
            (*seq / 60) % 60,
            *seq % 60,
            *seq % 1_000_000
        );
        let event: AuditEvent = draft.seal(*seq, time, prev);
        let line = serde_json::to_vec(&event)?;
        out.write_all(&line)?;
        out.write_all(b"\n")?;
        prev.clone_from(&event.hash);
        Ok(line.len() as u64 + 1)
    };
    let mut n = 0;
    while seq < events {
        for draft in request_life(n) {
            bytes += write(draft, &mut seq, &mut prev)?;
            if seq % CHECKPOINT_EVERY == 0 {
                let draft = signer.checkpoint_draft(seq, &prev, &time_of(seq + 1));
                bytes += write(draft, &mut seq, &mut prev)?;
            }
        }
        n += 1;
    }
    let draft = signer.checkpoint_draft(seq, &prev, &time_of(seq + 1));
    bytes += write(draft, &mut seq, &mut prev)?;
    out.flush()?;
    Ok((seq, bytes))
}

/// User + system CPU seconds of the children waited for so far.
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN is a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// One `hallpass audit verify --file`: (wall, CPU) seconds; fails unless
/// the export verified complete.
fn verify_once(hallpass: &Path, export: &Path, key: &Path) -> Result<(f64, f64)> {
    let cpu_before = children_cpu_seconds();
    let started = Instant::now();
    let output = Command::new(hallpass)
        .args(["--output", "json", "audit", "verify", "--file"])
        .arg(export)
        .arg("--public-key")
        .arg(key)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", hallpass.display()))?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = children_cpu_seconds() - cpu_before;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "audit verify printed no JSON: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    if report["ok"] != true || report["complete"] != true {
        bail!("the generated export did not verify complete: {report}");
    }
    Ok((wall, cpu))
}

/// `openssl speed -evp sha256` on 1 KiB blocks, one process: bytes/s.
fn openssl_sha256() -> Option<f64> {
    let output = Command::new("openssl")
        .args(["speed", "-seconds", "2", "-bytes", "1024", "-evp", "sha256"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    // The last line: `sha256   123456.78k` (thousands of bytes a second).
    let last = text
        .lines()
        .rev()
        .find(|line| line.trim_start().to_lowercase().starts_with("sha256"))?;
    let number = last.split_whitespace().last()?.trim_end_matches('k');
    number.parse::<f64>().ok().map(|k| k * 1000.0)
}

pub fn run(options: &Options) -> Result<Report> {
    if options.runs == 0 || options.events == 0 {
        bail!("--events and --runs must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let (export, key) = (dir.path().join("audit.jsonl"), dir.path().join("audit-key.pem"));
    let started = Instant::now();
    let (lines, bytes) = write_export(&export, &key, options.events)?;
    let generate_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {lines} events ({:.0} MB) in {generate_seconds:.1} s",
        bytes as f64 / 1e6
    );
    let mut runs = Vec::new();
    for _ in 0..options.runs {
        runs.push(verify_once(&options.hallpass, &export, &key)?);
    }
    let mut sorted: Vec<f64> = runs.iter().map(|(wall, _)| *wall).collect();
    sorted.sort_by(f64::total_cmp);
    let median_seconds = sorted[sorted.len() / 2];
    let mean_line_bytes = bytes as f64 / lines as f64;
    Ok(Report {
        events: lines,
        file_bytes: bytes,
        mean_line_bytes,
        generate_seconds,
        run_seconds: runs.iter().map(|(wall, _)| *wall).collect(),
        run_cpu_seconds: runs.iter().map(|(_, cpu)| *cpu).collect(),
        median_seconds,
        events_per_second: lines as f64 / median_seconds,
        openssl_sha256: openssl_sha256().map(|bytes_per_second| OpensslSha256 {
            bytes_per_second,
            lines_per_second: bytes_per_second / mean_line_bytes,
        }),
    })
}

pub fn print(report: &Report) {
    println!(
        "\naudit verify --file: {} events, {:.0} MB ({:.0} bytes a line)",
        report.events,
        report.file_bytes as f64 / 1e6,
        report.mean_line_bytes
    );
    let runs: Vec<String> = report
        .run_seconds
        .iter()
        .zip(&report.run_cpu_seconds)
        .map(|(wall, cpu)| format!("{wall:.2} s (CPU {cpu:.2} s)"))
        .collect();
    let mut rows = vec![
        vec!["runs".to_string(), runs.join(", ")],
        vec!["median".to_string(), format!("{:.2} s", report.median_seconds)],
        vec![
            "events/s (median run)".to_string(),
            format!("{:.0}", report.events_per_second),
        ],
    ];
    if let Some(openssl) = &report.openssl_sha256 {
        rows.push(vec![
            "openssl speed -evp sha256, 1 KiB blocks".to_string(),
            format!(
                "{:.0} MB/s = {:.0} lines/s",
                openssl.bytes_per_second / 1e6,
                openssl.lines_per_second
            ),
        ]);
        rows.push(vec![
            "verify / bare SHA-256 of each line".to_string(),
            format!("{:.1} %", 100.0 * report.events_per_second / openssl.lines_per_second),
        ]);
    }
    stats::print_table(&["", ""], &rows);
}
