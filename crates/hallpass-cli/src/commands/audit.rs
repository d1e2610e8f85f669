//! The audit trail: `audit list`, `audit export` (NDJSON to stdout, streamed)
//! and `audit verify`, either by the server or offline from an exported file
//! with no server and no token; given the server's public audit key, the
//! offline check also proves the file complete.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use hallpass_api::VerifyReport;
use hallpass_core::audit::{AuditPublicKey, ChainVerifier};

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
    /// Check the audit log: on the server, or offline in an exported file.
    ///
    /// Offline, the hash chain shows any edited, removed, duplicated or
    /// reordered line. Only with --public-key are the signed checkpoints
    /// checked too, which prove that no line was cut from either end and
    /// that the chain was not recomputed after an edit.
    Verify {
        /// Exported NDJSON file to verify offline (needs no server or token).
        #[arg(long, value_name = "FILE.jsonl")]
        file: Option<PathBuf>,
        /// The server's public audit key, as a PEM or JWK file (from GET
        /// /v1/audit/public-key): prove the file complete with its signed
        /// checkpoints. Without it, completeness is not proven.
        #[arg(long, value_name = "KEY", requires = "file")]
        public_key: Option<PathBuf>,
    },
    /// Print the server's public audit key (PEM, or the JWK with --output
    /// json), for `audit verify --file F --public-key KEY`. Needs no token.
    PublicKey,
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
        AuditCommand::PublicKey => {
            let key = ctx.client()?.audit_public_key().await?;
            if ctx.json() {
                print_json(&key)?;
            } else {
                print!("{}", key.pem);
            }
            ok()
        }
        AuditCommand::Verify { file: None, .. } => {
            let report = ctx.client()?.audit_verify().await?;
            report_verification(ctx, &report, Checked::Server)
        }
        AuditCommand::Verify {
            file: Some(path),
            public_key,
        } => {
            let key = public_key.as_deref().map(load_public_key).transpose()?;
            let checked = if key.is_some() {
                Checked::FileWithKey
            } else {
                Checked::FileWithoutKey
            };
            let report = tokio::task::spawn_blocking(move || verify_file(&path, key)).await??;
            report_verification(ctx, &report, checked)
        }
    }
}

/// What a report was checked with, for saying what it proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    Server,
    FileWithKey,
    FileWithoutKey,
}

/// Prints `OK: ...` or `FAILED at seq N: ...`; exit code 3 on failure.
fn report_verification(ctx: &Ctx, report: &VerifyReport, checked: Checked) -> CmdResult {
    if ctx.json() {
        print_json(report)?;
    } else {
        crate::output::print_message(&verification_line(report, checked));
    }
    Ok(verification_exit_code(report))
}

pub fn verification_exit_code(report: &VerifyReport) -> ExitCode {
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO_ACCESS)
    }
}

/// One line saying what was proven: the chain, and completeness only when
/// signed checkpoints showed it.
pub fn verification_line(report: &VerifyReport, checked: Checked) -> String {
    if !report.ok {
        // The problem can quote the file (a member name, a key id): keep
        // its control characters away from the terminal.
        let problem = truncate(&or_dash(report.problem.as_deref()), 500);
        return match report.first_bad_seq {
            Some(seq) => format!("FAILED at seq {seq}: {problem}"),
            None => format!("FAILED: {problem}"),
        };
    }
    let count = report.events_checked;
    let (Some(first), Some(last), Some(head)) = (report.first_seq, report.last_seq, report.head_hash.as_deref()) else {
        return format!("OK: {count} events verified");
    };
    if !report.complete {
        let why = match (checked, &report.key_id) {
            (Checked::FileWithoutKey, _) => "no --public-key",
            (Checked::Server, None) => "the server checked no signed checkpoints",
            (Checked::Server | Checked::FileWithKey, _) => "no signed checkpoint covers the end",
        };
        return format!(
            "OK: chain of {count} events intact (seq {first}..{last}), head {head}; completeness NOT proven ({why})"
        );
    }
    let key = or_dash(report.key_id.as_deref());
    let end = match report.last_checkpoint_seq {
        Some(checkpoint) if checkpoint == last => format!("signed checkpoint at {checkpoint} by key {key}"),
        Some(checkpoint) => {
            format!("ends at the server's newest event; last signed checkpoint at {checkpoint} by key {key}")
        }
        None => "ends at the server's newest event".to_string(),
    };
    let start = if first > 1 {
        format!(", starting at the signed checkpoint at {first}")
    } else {
        String::new()
    };
    format!("OK: {count} events verified (seq {first}..{last}), complete: {end}{start}; head {head}")
}

/// Reads a PEM or JWK public key file.
pub fn load_public_key(path: &Path) -> anyhow::Result<AuditPublicKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the public key file {}", path.display()))?;
    AuditPublicKey::parse(&text).with_context(|| {
        format!(
            "{} is not a usable audit public key (expected the server's Ed25519 key as PEM or JWK, from GET /v1/audit/public-key)",
            path.display()
        )
    })
}

/// Verifies an exported NDJSON file, reading it line by line.
pub fn verify_file(path: &Path, key: Option<AuditPublicKey>) -> anyhow::Result<VerifyReport> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    verify_reader(BufReader::with_capacity(1 << 20, file), key)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Feeds every non-empty line to a [`ChainVerifier`]: with the key, the
/// checkpoints must prove the file complete; without, the chain alone.
pub fn verify_reader<R: BufRead>(mut reader: R, key: Option<AuditPublicKey>) -> std::io::Result<VerifyReport> {
    let mut verifier = match key {
        Some(key) => ChainVerifier::with_key(key),
        None => ChainVerifier::for_export(),
    };
    let mut line = Vec::with_capacity(4096);
    let mut line_number = 0usize;
    while !verifier.failed() {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_number += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        verifier.push_line(line_number, text);
    }
    Ok(verifier.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hallpass_core::audit::AuditEvent;
    use serde_json::json;
    use std::io::Write;

    /// A complete export with checkpoints at 4, 7 and 10, signed with RFC
    /// 8032's first test key (see tests/audit_verify.rs, which makes it).
    const EXPORT: &str = include_str!("../../tests/fixtures/audit/signed-export.jsonl");
    const KEY_PEM: &str = include_str!("../../tests/fixtures/audit/audit-key.pem");
    const OTHER_KEY_PEM: &str = include_str!("../../tests/fixtures/audit/other-key.pem");

    fn export() -> Vec<String> {
        EXPORT.lines().map(str::to_string).collect()
    }

    fn key() -> AuditPublicKey {
        AuditPublicKey::parse(KEY_PEM).unwrap()
    }

    fn write_temp(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file.flush().unwrap();
        file
    }

    fn lines_file(lines: &[String]) -> tempfile::NamedTempFile {
        write_temp(&lines.iter().map(|l| format!("{l}\n")).collect::<String>())
    }

    fn verify_with_key(lines: &[String]) -> VerifyReport {
        verify_file(lines_file(lines).path(), Some(key())).unwrap()
    }

    fn verify_without_key(lines: &[String]) -> VerifyReport {
        verify_file(lines_file(lines).path(), None).unwrap()
    }

    fn failure_line(report: &VerifyReport) -> String {
        assert_eq!(verification_exit_code(report), ExitCode::from(EXIT_NO_ACCESS));
        verification_line(report, Checked::FileWithKey)
    }

    #[test]
    fn a_complete_export_is_proven_complete_with_the_key() {
        let mut lines = export();
        lines.insert(2, String::new()); // blank lines are skipped
        let report = verify_with_key(&lines);
        assert!(report.ok && report.complete, "{report:?}");
        assert_eq!((report.events_checked, report.checkpoints), (10, 3));
        assert_eq!(verification_exit_code(&report), ExitCode::SUCCESS);
        let line = verification_line(&report, Checked::FileWithKey);
        let expected = "OK: 10 events verified (seq 1..10), complete: signed checkpoint at 10 by key \
                        kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k; head ";
        assert!(line.starts_with(expected), "{line}");
    }

    #[test]
    fn without_the_key_the_output_says_completeness_is_not_proven() {
        let report = verify_without_key(&export()[..8]); // cut before the final checkpoint
        assert!(report.ok && !report.complete, "{report:?}");
        assert_eq!(verification_exit_code(&report), ExitCode::SUCCESS);
        let line = verification_line(&report, Checked::FileWithoutKey);
        assert!(
            line.starts_with("OK: chain of 8 events intact (seq 1..8), head "),
            "{line}"
        );
        assert!(line.ends_with("; completeness NOT proven (no --public-key)"), "{line}");
    }

    #[test]
    fn a_cut_export_fails_with_the_key() {
        let lines = export();
        assert_eq!(
            failure_line(&verify_with_key(&lines[..9])),
            "FAILED at seq 10: the file ends at seq 9 without a checkpoint: events may have been cut \
             (the last signed checkpoint is at seq 7)"
        );
        let line = failure_line(&verify_with_key(&lines[1..]));
        assert!(
            line.starts_with("FAILED at seq 2: the file starts at seq 2 without a signed checkpoint"),
            "{line}"
        );
    }

    #[test]
    fn a_partial_export_from_its_checkpoint_is_complete() {
        let report = verify_with_key(&export()[6..]);
        assert!(report.ok && report.complete, "{report:?}");
        let line = verification_line(&report, Checked::FileWithKey);
        assert!(
            line.starts_with("OK: 4 events verified (seq 7..10), complete: signed checkpoint at 10 by key kPrK_"),
            "{line}"
        );
        assert!(
            line.contains(", starting at the signed checkpoint at 7; head "),
            "{line}"
        );
    }

    #[test]
    fn tampering_is_named_by_seq() {
        let lines = export();
        let mut edited = lines.clone();
        edited[4] = edited[4].replace("alice", "mallory");
        assert!(failure_line(&verify_with_key(&edited)).starts_with("FAILED at seq 5: event 5 was changed"));
        let mut removed = lines.clone();
        removed.remove(1);
        assert!(failure_line(&verify_with_key(&removed)).starts_with("FAILED at seq 2: event 2 is missing"));
        let mut rehashed: Vec<AuditEvent> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        rehashed[4].actor = "mallory".into();
        for i in 4..rehashed.len() {
            rehashed[i].prev_hash = rehashed[i - 1].hash.clone();
            rehashed[i].hash = rehashed[i].compute_hash();
        }
        let rehashed: Vec<String> = rehashed.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
        let line = failure_line(&verify_with_key(&rehashed));
        assert!(
            line.starts_with("FAILED at seq 7: checkpoint 7 vouches for another hash"),
            "{line}"
        );
        assert!(verify_without_key(&rehashed).ok, "the chain alone cannot see it");
    }

    #[test]
    fn an_empty_file_fails_either_way() {
        for report in [verify_with_key(&[]), verify_without_key(&[String::new()])] {
            assert_eq!(failure_line(&report), "FAILED: the file holds no audit events");
        }
    }

    #[test]
    fn a_checkpoint_by_another_key_is_refused() {
        let other = AuditPublicKey::parse(OTHER_KEY_PEM).unwrap();
        let report = verify_file(lines_file(&export()).path(), Some(other.clone())).unwrap();
        let expected = format!(
            "FAILED at seq 4: checkpoint 4 is signed by key kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k, \
             not by the given key {}",
            other.key_id()
        );
        let line = failure_line(&report);
        assert!(line.starts_with(&expected), "{line}");
    }

    #[test]
    fn an_unparsable_line_is_reported_as_the_next_seq() {
        let mut lines = export();
        lines[1] = "{not json".to_string();
        let report = verify_without_key(&lines);
        assert_eq!(report.first_bad_seq, Some(2));
        assert!(report.problem.unwrap().contains("line 2"));
    }

    #[test]
    fn keys_load_from_pem_and_jwk_files() {
        let pem = write_temp(KEY_PEM);
        let jwk = write_temp(&serde_json::to_string_pretty(&key().to_jwk()).unwrap());
        assert_eq!(load_public_key(pem.path()).unwrap(), key());
        assert_eq!(load_public_key(jwk.path()).unwrap(), key());
    }

    #[test]
    fn unusable_key_files_are_errors_naming_the_file() {
        let missing = load_public_key(Path::new("/nonexistent/audit.pem")).unwrap_err();
        assert!(format!("{missing:#}").contains("cannot read the public key file /nonexistent/audit.pem"));
        let private = write_temp("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n");
        let error = format!("{:#}", load_public_key(private.path()).unwrap_err());
        assert!(error.contains("is not a usable audit public key"), "{error}");
        assert!(error.contains("this is a private key"), "{error}");
    }

    #[test]
    fn text_from_the_file_cannot_reach_the_terminal_raw() {
        let mut lines = export();
        lines[1] = lines[1].replace("\"actor\"", "\"\\u001b[2Jactor\"");
        let line = failure_line(&verify_with_key(&lines));
        assert!(
            line.starts_with("FAILED at seq 2: line 2 is not a valid audit event: unknown field `\\x1b[2Jactor`"),
            "{line}"
        );
        assert!(!line.contains('\u{1b}'));
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = verify_file(Path::new("/nonexistent/audit.jsonl"), None).unwrap_err();
        assert!(format!("{err:#}").contains("cannot open /nonexistent/audit.jsonl"));
    }

    #[test]
    fn a_server_report_says_what_the_server_proved() {
        let mut live = verify_with_key(&export());
        live.last_seq = Some(12); // two events written since the last checkpoint
        let line = verification_line(&live, Checked::Server);
        assert!(
            line.contains("complete: ends at the server's newest event; last signed checkpoint at 10"),
            "{line}"
        );
        // An older server's report carries none of the checkpoint fields.
        let old: VerifyReport = serde_json::from_value(json!({
            "ok": true, "events_checked": 4, "first_seq": 1, "last_seq": 4,
            "head_hash": "ab", "first_bad_seq": null, "problem": null
        }))
        .unwrap();
        assert_eq!(
            verification_line(&old, Checked::Server),
            "OK: chain of 4 events intact (seq 1..4), head ab; completeness NOT proven (the server checked no signed checkpoints)"
        );
    }
}
