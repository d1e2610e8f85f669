//! `hallpass audit verify --file` as a user runs it, offline: exit codes and
//! what the output claims, with and without the server's public audit key.
//!
//! The signed export in `fixtures/audit/` is made by [`signed_export`] with
//! RFC 8032's first Ed25519 test key (published, so anyone can reproduce
//! it); it holds floats, escapes and names whose UTF-16 and UTF-8 orders
//! differ, so it doubles as a test vector for other implementations of
//! docs/audit.md. Regenerate with
//! `cargo test -p hallpass-cli --test audit_verify -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hallpass_core::audit::{AuditDraft, AuditEvent, CheckpointSigner, GENESIS_HASH};
use serde_json::json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit")
}

/// PKCS#8 v1 of the RFC 8032 section 7.1 "TEST 1" secret key, or "TEST 2".
fn rfc8032_signer(test: u8) -> CheckpointSigner {
    let seed = match test {
        1 => "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        _ => "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    };
    let document = format!("302e020100300506032b657004220420{seed}");
    let bytes: Vec<u8> = (0..document.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&document[i..i + 2], 16).unwrap())
        .collect();
    CheckpointSigner::from_pkcs8(&bytes).unwrap()
}

/// Ten lines, checkpoints at 4, 7 and 10, as the server writes and exports.
fn signed_export() -> String {
    let signer = rfc8032_signer(1);
    let request = Some("01a1fd95-0000-7000-8000-000000000001".to_string());
    let drafts = [
        Some(AuditDraft::new(
            "dev",
            "token.created",
            None,
            json!({"principal": "admin", "groups": ["admins"], "token_id": "tok_1"}),
        )),
        Some(AuditDraft::new(
            "admin",
            "target.created",
            None,
            json!({"name": "db", "spec": {"type": "webhook", "config": {"timeout_seconds": 2.5, "retries": 3}}}),
        )),
        Some(AuditDraft::new(
            "admin",
            "role.created",
            None,
            json!({"name": "db-admin", "labels": {"team": "ops", "\u{fb33}": "dalet", "\u{1f600}": "grin", "\u{e9}": "e"}}),
        )),
        None,
        Some(AuditDraft::new(
            "alice",
            "request.created",
            request.clone(),
            json!({
                "reason": "INC-7 \"failover\"\n\tnext\u{1}line \\ done",
                "duration_seconds": 3600,
                "ratio": 1.0,
                "big": 1e21,
                "small": 0.000001,
                "tiny": 1.5e-7,
                "negative_zero": -0.0,
                "large_integer": 9007199254740993u64,
            }),
        )),
        Some(AuditDraft::new(
            "bob",
            "request.approved",
            request.clone(),
            json!({"approvals": 1, "comment": "ok, é and € and 😀", "required_approvals": 1}),
        )),
        None,
        Some(AuditDraft::new(
            "hallpass",
            "grant.activated",
            request.clone(),
            json!({"emergency": false, "expires_at": "2026-11-21T11:00:08.000000Z"}),
        )),
        Some(AuditDraft::new(
            "alice",
            "grant.released",
            request,
            json!({"attempts": 1, "lag_ms": 0, "reason": null}),
        )),
        None,
    ];
    let mut events: Vec<AuditEvent> = Vec::new();
    for draft in drafts {
        let (seq, prev) = events
            .last()
            .map_or((1, GENESIS_HASH.to_string()), |e| (e.seq + 1, e.hash.clone()));
        let time = format!("2026-11-21T10:00:{seq:02}.000000Z");
        let draft = draft.unwrap_or_else(|| signer.checkpoint_draft(seq - 1, &prev, &time));
        events.push(draft.seal(seq, time, &prev));
    }
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect()
}

#[test]
#[ignore = "rewrites the fixtures; run when the fixture's content is meant to change"]
fn regenerate_fixtures() {
    let dir = fixtures();
    std::fs::create_dir_all(&dir).unwrap();
    let key = rfc8032_signer(1).public_key().clone();
    std::fs::write(dir.join("signed-export.jsonl"), signed_export()).unwrap();
    std::fs::write(dir.join("audit-key.pem"), key.to_pem()).unwrap();
    std::fs::write(
        dir.join("audit-key.jwk"),
        serde_json::to_string_pretty(&key.to_jwk()).unwrap() + "\n",
    )
    .unwrap();
    std::fs::write(dir.join("other-key.pem"), rfc8032_signer(2).public_key().to_pem()).unwrap();
}

#[test]
fn the_committed_fixture_is_what_this_release_writes() {
    // Hashes and signatures are deterministic, so any change to the hashed
    // form or the signed message shows up here as a format change.
    let committed = std::fs::read_to_string(fixtures().join("signed-export.jsonl")).unwrap();
    assert_eq!(committed, signed_export());
}

/// Runs the real binary offline: a dead server address and no token.
fn hallpass(args: &[&str], file: &Path, key: Option<&Path>) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hallpass"));
    command.args(args).arg("--file").arg(file);
    if let Some(key) = key {
        command.arg("--public-key").arg(key);
    }
    let Output { status, stdout, stderr } = command
        .env("HALLPASS_ADDR", "http://127.0.0.1:9")
        .env_remove("HALLPASS_TOKEN")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.code(), text)
}

fn verify(file: &Path, key: Option<&Path>) -> (Option<i32>, String) {
    hallpass(&["audit", "verify"], file, key)
}

/// The fixture's lines `range`, written to a file in `dir`.
fn cut(dir: &Path, range: std::ops::Range<usize>) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join("signed-export.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let path = dir.join(format!("cut-{}-{}.jsonl", range.start, range.end));
    std::fs::write(&path, lines[range].iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    path
}

#[test]
fn a_complete_export_verifies_with_either_key_format() {
    let export = fixtures().join("signed-export.jsonl");
    for key in ["audit-key.pem", "audit-key.jwk"] {
        let (code, text) = verify(&export, Some(&fixtures().join(key)));
        assert_eq!(code, Some(0), "{text}");
        assert!(
            text.starts_with(
                "OK: 10 events verified (seq 1..10), complete: signed checkpoint at 10 by key \
                 kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k; head "
            ),
            "{text}"
        );
    }
}

#[test]
fn without_a_key_it_says_completeness_was_not_proven() {
    let temp = tempfile::tempdir().unwrap();
    let (code, text) = verify(&cut(temp.path(), 0..8), None);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("OK: chain of 8 events intact (seq 1..8)"), "{text}");
    assert!(
        text.trim_end().ends_with("completeness NOT proven (no --public-key)"),
        "{text}"
    );
}

#[test]
fn cut_empty_or_foreign_files_fail_with_exit_code_3() {
    let temp = tempfile::tempdir().unwrap();
    let key = fixtures().join("audit-key.pem");
    let cases = [
        (
            cut(temp.path(), 0..9),
            "FAILED at seq 10: the file ends at seq 9 without a checkpoint",
        ),
        (
            cut(temp.path(), 4..10),
            "FAILED at seq 5: the file starts at seq 5 without a signed checkpoint",
        ),
        (cut(temp.path(), 0..0), "FAILED: the file holds no audit events"),
    ];
    for (file, expected) in &cases {
        let (code, text) = verify(file, Some(&key));
        assert_eq!(code, Some(3), "{text}");
        assert!(text.starts_with(expected), "{text}");
    }
    let (code, text) = verify(
        &fixtures().join("signed-export.jsonl"),
        Some(&fixtures().join("other-key.pem")),
    );
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains(
            "checkpoint 4 is signed by key kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k, not by the given key"
        )
    );
    // A partial export that starts with its anchoring checkpoint is fine.
    let (code, text) = verify(&cut(temp.path(), 3..10), Some(&key));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with("OK: 7 events verified (seq 4..10), complete:"),
        "{text}"
    );
}

#[test]
fn an_unusable_key_file_is_an_error_not_a_verdict() {
    let temp = tempfile::tempdir().unwrap();
    let export = fixtures().join("signed-export.jsonl");
    let garbage = temp.path().join("key.txt");
    std::fs::write(&garbage, "not a key").unwrap();
    let (code, text) = verify(&export, Some(&garbage));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("is not a usable audit public key"), "{text}");
    assert!(
        text.contains("neither PEM (-----BEGIN PUBLIC KEY-----) nor a JWK"),
        "{text}"
    );
    let (code, text) = verify(&export, Some(&temp.path().join("absent.pem")));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cannot read the public key file"), "{text}");
}

#[test]
fn the_help_explains_the_public_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .args(["audit", "verify", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--public-key <KEY>"), "{help}");
    assert!(help.contains("Without it, completeness is not proven"), "{help}");
}
