//! The audit trail: `audit list`, `audit export` (NDJSON to stdout, streamed)
//! and `audit verify`, either by the server or offline from an exported file
//! with no server and no token.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use hallpass_api::VerifyReport;
use hallpass_core::audit::{AuditEvent, ChainVerifier};

use super::{CmdResult, Ctx, EXIT_NO_ACCESS, ok};
use crate::output::{Table, or_dash, print_json, truncate};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit events.
    List {
        /// Only events after this sequence number.
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// Only events about this request.
        #[arg(long, value_name = "ID")]
        request: Option<String>,
        /// At most this many events.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Write the audit log as NDJSON to stdout, one event per line.
    Export {
        /// Only events after this sequence number.
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
    },
    /// Check the hash chain: on the server, or offline in an exported file.
    Verify {
        /// Exported NDJSON file to verify offline (needs no server or token).
        #[arg(long, value_name = "FILE.jsonl")]
        file: Option<PathBuf>,
    },
}

pub async fn run(ctx: &Ctx, command: AuditCommand) -> CmdResult {
    match command {
        AuditCommand::List { since, request, limit } => {
            let events = ctx.client()?.audit_list(since, request.as_deref(), limit).await?;
            if ctx.json() {
                print_json(&events)?;
                return ok();
            }
            let mut table = Table::new(["SEQ", "TIME", "ACTOR", "KIND", "REQUEST", "DATA"]);
            for e in &events {
                table.row([
                    e.seq.to_string(),
                    e.time.clone(),
                    e.actor.clone(),
                    e.kind.clone(),
                    or_dash(e.request_id.as_deref()),
                    truncate(&e.data.to_string(), 60),
                ]);
            }
            table.print_or("no audit events");
            ok()
        }
        AuditCommand::Export { since } => {
            let mut stdout = tokio::io::stdout();
            ctx.client()?.audit_export(since, &mut stdout).await?;
            ok()
        }
        AuditCommand::Verify { file: None } => {
            let report = ctx.client()?.audit_verify().await?;
            report_verification(ctx, &report)
        }
        AuditCommand::Verify { file: Some(path) } => {
            let report = tokio::task::spawn_blocking(move || verify_file(&path)).await??;
            report_verification(ctx, &report)
        }
    }
}

/// Prints `OK: ...` or `FAILED at seq N: ...`; exit code 3 on failure.
fn report_verification(ctx: &Ctx, report: &VerifyReport) -> CmdResult {
    if ctx.json() {
        print_json(report)?;
    } else {
        println!("{}", verification_line(report));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO_ACCESS)
    })
}

pub fn verification_line(report: &VerifyReport) -> String {
    if !report.ok {
        let seq = report.first_bad_seq.map_or_else(|| "?".to_string(), |s| s.to_string());
        return format!("FAILED at seq {seq}: {}", or_dash(report.problem.as_deref()));
    }
    match (report.first_seq, report.last_seq, report.head_hash.as_deref()) {
        (Some(first), Some(last), Some(head)) => {
            format!(
                "OK: {} events verified (seq {first}..{last}), head {head}",
                report.events_checked
            )
        }
        _ => format!("OK: {} events verified", report.events_checked),
    }
}

/// Verifies an exported NDJSON file, reading it line by line.
pub fn verify_file(path: &Path) -> anyhow::Result<VerifyReport> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    verify_reader(BufReader::new(file)).with_context(|| format!("cannot read {}", path.display()))
}

/// Feeds every non-empty line to a [`ChainVerifier`]: from genesis when the
/// first event is seq 1, else from wherever the export starts.
pub fn verify_reader<R: BufRead>(mut reader: R) -> std::io::Result<VerifyReport> {
    let mut verifier: Option<ChainVerifier> = None;
    let mut line = Vec::new();
    let mut line_number = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_number += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<AuditEvent>(text) {
            Ok(event) => {
                let verifier = verifier.get_or_insert_with(|| {
                    if event.seq == 1 {
                        ChainVerifier::from_genesis()
                    } else {
                        ChainVerifier::from_anywhere()
                    }
                });
                verifier.push(&event);
            }
            Err(error) => {
                verifier
                    .get_or_insert_with(ChainVerifier::from_anywhere)
                    .push_unreadable(line_number, &error.to_string());
            }
        }
        if verifier.as_ref().is_some_and(ChainVerifier::failed) {
            break;
        }
    }
    Ok(verifier.unwrap_or_else(ChainVerifier::from_anywhere).finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hallpass_core::audit::{AuditDraft, GENESIS_HASH};
    use serde_json::json;
    use std::io::Write;

    /// `n` chained events as NDJSON lines.
    fn export(n: u64) -> Vec<String> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let draft = AuditDraft::new(
                    "alice",
                    "request.created",
                    Some(format!("r{seq}")),
                    json!({"role": "demo"}),
                );
                let event = draft.seal(seq, format!("2026-11-21T10:00:{seq:02}.000000Z"), &prev);
                prev = event.hash.clone();
                serde_json::to_string(&event).unwrap()
            })
            .collect()
    }

    fn verify_lines(lines: &[String]) -> VerifyReport {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for line in lines {
            writeln!(file, "{line}").unwrap();
        }
        file.flush().unwrap();
        verify_file(file.path()).unwrap()
    }

    #[test]
    fn an_intact_export_verifies() {
        let mut lines = export(4);
        lines.insert(2, String::new()); // blank lines are skipped
        let report = verify_lines(&lines);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.events_checked, 4);
        assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(4)));
        let line = verification_line(&report);
        assert!(line.starts_with("OK: 4 events verified (seq 1..4), head "), "{line}");
    }

    #[test]
    fn a_tampered_line_is_reported_by_seq() {
        let mut lines = export(5);
        lines[2] = lines[2].replace("alice", "mallory");
        let report = verify_lines(&lines);
        assert!(!report.ok);
        assert_eq!(report.first_bad_seq, Some(3));
        assert!(
            verification_line(&report).starts_with("FAILED at seq 3: "),
            "{}",
            verification_line(&report)
        );
    }

    #[test]
    fn an_unparsable_line_is_reported_as_the_next_seq() {
        let mut lines = export(3);
        lines[1] = "{not json".to_string();
        let report = verify_lines(&lines);
        assert_eq!(report.first_bad_seq, Some(2));
        assert!(report.problem.unwrap().contains("line 2"));
    }

    #[test]
    fn a_partial_export_verifies_from_where_it_starts() {
        let lines = export(6);
        let report = verify_lines(&lines[3..]);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.first_seq, Some(4));
        // But a file that claims to start at 1 must start at genesis.
        let mut gap = lines.clone();
        gap.remove(0);
        gap.insert(0, lines[0].clone());
        gap.remove(1);
        assert_eq!(verify_lines(&gap).first_bad_seq, Some(2));
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = verify_file(Path::new("/nonexistent/audit.jsonl")).unwrap_err();
        assert!(format!("{err:#}").contains("cannot open /nonexistent/audit.jsonl"));
    }
}
