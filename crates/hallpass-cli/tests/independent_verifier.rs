//! The audit export format, reimplemented from `docs/audit.md` alone: an
//! independent Python verifier (`independent_verifier/verify_audit.py`)
//! must accept the signed fixtures and a real server's export, fail every
//! tampered copy at the sequence number the documentation names, and agree
//! with `hallpass audit verify` on every file. When the two disagree, the
//! documentation does not specify the format well enough (or one side has a
//! bug): either way a reader of the docs alone would get a different answer.

#[allow(dead_code, unused_imports)] // the e2e suite's helpers; this file uses a few
#[path = "e2e/harness.rs"]
mod harness;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use harness::Server;
use serde_json::Value;

/// The one line this test fails with when the verifier cannot run.
const PYTHON_NEEDED: &str = "the independent audit verifier needs python3 with the `cryptography` package: \
                             run scripts/test, which installs them";

/// Line 5 of the signed fixture in canonical form and its hash, as
/// docs/audit.md prints them.
fn docs_line_5() -> (String, String) {
    const START: &str = "Line 5 of the signed export has `C` =";
    let canonical = hallpass_doc_examples::example("audit.md", START, "text");
    let doc = std::fs::read_to_string(hallpass_doc_examples::doc_path("audit.md")).expect("read docs/audit.md");
    let after = &doc[doc.find(START).expect("the line 5 vector")..];
    let hash = after
        .split("and `hash` `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("docs/audit.md gives line 5's hash as: and `hash` `...`");
    (canonical.trim_end().to_string(), hash.to_string())
}
const FIXTURE_KEY_ID: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

fn verifier_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/independent_verifier")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audit")
        .join(name)
}

/// `python3`, once checked to import `cryptography`; otherwise the test
/// fails with [`PYTHON_NEEDED`] as its whole output, never skips.
fn python() -> Command {
    static READY: OnceLock<bool> = OnceLock::new();
    let ready = *READY.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import cryptography"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    if !ready {
        eprintln!("{PYTHON_NEEDED}");
        // Not `panic!`: its hook would add a line that says nothing more.
        std::panic::resume_unwind(Box::new(PYTHON_NEEDED));
    }
    Command::new("python3")
}

/// Runs a Python snippet with the verifier's directory as `sys.argv[1]`
/// (to import `verify_audit`) and `args` after it; returns its stdout.
fn python_snippet(code: &str, args: &[&str], stdin: &str) -> String {
    let mut child = python()
        .args(["-c", code])
        .arg(verifier_dir())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write the snippet's input");
    let output = child.wait_with_output().expect("run python3");
    assert!(
        output.status.success(),
        "python snippet failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a verifier said about a file: passed, or failed at a seq (or at none).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Pass,
    FailAt(Option<u64>),
}

/// The Python verifier's verdict and its output line.
fn python_verify(file: &Path, key: Option<&Path>) -> (Verdict, String) {
    let mut command = python();
    command.arg(verifier_dir().join("verify_audit.py")).arg(file);
    if let Some(key) = key {
        command.arg("--public-key").arg(key);
    }
    let output = command.output().expect("run verify_audit.py");
    let stdout = text(&output.stdout);
    let line = stdout.trim().to_string();
    let verdict = match output.status.code() {
        Some(0) => Verdict::Pass,
        Some(1) => {
            let seq = line
                .strip_prefix("FAILED at seq ")
                .and_then(|rest| rest.split(':').next())
                .map(|seq| seq.parse().expect("a seq number"));
            assert!(
                seq.is_some() || line.starts_with("FAILED: "),
                "unexpected verdict line: {line}{}",
                text(&output.stderr)
            );
            Verdict::FailAt(seq)
        }
        _ => panic!(
            "verify_audit.py errored ({}): {stdout}{}",
            output.status,
            text(&output.stderr)
        ),
    };
    (verdict, line)
}

/// The Rust CLI's offline verdict, from its `--output json` report.
fn cli_verify(file: &Path, key: Option<&Path>) -> Verdict {
    let mut command = Command::new(harness::hallpass_bin());
    command
        .args(["--output", "json", "audit", "verify", "--file"])
        .arg(file);
    if let Some(key) = key {
        command.arg("--public-key").arg(key);
    }
    let output: Output = command.output().expect("run hallpass audit verify");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "hallpass audit verify printed no JSON report ({error}; {}): {}{}",
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        )
    });
    match report["ok"].as_bool() {
        Some(true) => Verdict::Pass,
        _ => Verdict::FailAt(report["first_bad_seq"].as_u64()),
    }
}

fn lines_of(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .expect("read the export")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn seq_of(line: &str) -> u64 {
    let event: Value = serde_json::from_str(line).expect("an event line");
    event["seq"].as_u64().expect("seq")
}

fn is_checkpoint(line: &str) -> bool {
    let event: Value = serde_json::from_str(line).expect("an event line");
    event["kind"] == "audit.checkpoint"
}

/// `line` with one top-level string member's value replaced, byte for byte
/// elsewhere (re-serializing would be a second, untested encoder).
fn with_member(line: &str, member: &str, value: &str) -> String {
    let event: Value = serde_json::from_str(line).expect("an event line");
    let old = event[member].as_str().expect("a string member");
    let edited = line.replacen(
        &format!("\"{member}\":\"{old}\""),
        &format!("\"{member}\":\"{value}\""),
        1,
    );
    assert_ne!(edited, line, "{member} not found in {line}");
    edited
}

/// The chain recomputed from the first line on, as someone who edited a line
/// and wants it to verify again would: each `prev_hash`, each checkpoint's
/// `covers_hash` (the signatures they cannot redo) and each `hash`.
fn rehash(lines: &[String]) -> Vec<String> {
    const CODE: &str = r#"
import sys
sys.path.insert(0, sys.argv[1])
import verify_audit as v
previous = None
for line in sys.stdin.read().splitlines():
    event = v.parse_event(line)
    if previous is not None:
        event["prev_hash"] = previous
        if event["kind"] == v.CHECKPOINT_KIND:
            event["data"]["covers_hash"] = previous
    event["hash"] = previous = v.event_hash(event)
    print(v.canonical(event))
"#;
    python_snippet(CODE, &[], &lines.join("\n"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// What a tampered copy must give.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Verdicts {
        with_key: Verdict,
        without_key: Verdict,
    },
    /// Only that the two verifiers agree: the docs do not say.
    Agreement,
}

fn expect(with_key: Verdict, without_key: Verdict) -> Expect {
    Expect::Verdicts { with_key, without_key }
}

struct Variant {
    name: &'static str,
    lines: Vec<String>,
    expect: Expect,
}

/// Tampered copies of the export `lines`, whose lines `edit` and `edit + 1`
/// are consecutive ordinary events, with the verdicts docs/audit.md implies.
fn tampered_variants(lines: &[String], edit: usize) -> Vec<Variant> {
    let seq = |index: usize| seq_of(&lines[index]);
    let last = lines.len() - 1;
    let edited_seq = seq(edit);
    assert_eq!(
        seq(edit + 1),
        edited_seq + 1,
        "lines {edit} and {} must be consecutive events",
        edit + 1
    );
    let mut edited = lines.to_vec();
    edited[edit] = with_member(&lines[edit], "actor", "mallory");
    let mut removed = lines.to_vec();
    removed.remove(edit);
    let mut swapped = lines.to_vec();
    swapped.swap(edit, edit + 1);
    let mut duplicated = lines.to_vec();
    duplicated.insert(edit + 1, lines[edit].clone());
    // The checkpoint that first vouches for the edited line.
    let first_signed_after_edit = lines[edit..]
        .iter()
        .find(|line| is_checkpoint(line))
        .map(|line| seq_of(line));
    let mut last_retimed = lines.to_vec();
    last_retimed[last] = with_member(&lines[last], "time", "2099-01-01T00:00:00.000000Z");
    let fail = |seq: u64| Verdict::FailAt(Some(seq));
    let cut_at_start = if is_checkpoint(&lines[2]) {
        Verdict::Pass
    } else {
        fail(seq(2))
    };
    let recomputed = first_signed_after_edit.map_or(fail(seq(last) + 1), fail);
    let no_events = expect(Verdict::FailAt(None), Verdict::FailAt(None));
    [
        (
            "a field edited",
            edited.clone(),
            expect(fail(edited_seq), fail(edited_seq)),
        ),
        ("a line removed", removed, expect(fail(edited_seq), fail(edited_seq))),
        ("two lines swapped", swapped, expect(fail(edited_seq), fail(edited_seq))),
        (
            "a line duplicated",
            duplicated,
            expect(fail(edited_seq), fail(edited_seq)),
        ),
        (
            "the last line cut",
            lines[..last].to_vec(),
            expect(fail(seq(last)), Verdict::Pass),
        ),
        (
            "the first two lines cut",
            lines[2..].to_vec(),
            expect(cut_at_start, Verdict::Pass),
        ),
        (
            "an edit with the chain recomputed",
            rehash(&edited),
            expect(recomputed, Verdict::Pass),
        ),
        // Nothing signs a checkpoint line's own time: the docs do not say
        // whether that is caught, so only agreement is checked.
        (
            "the last line's time edited and rehashed",
            rehash(&last_retimed),
            Expect::Agreement,
        ),
        ("an empty file", Vec::new(), no_events),
        (
            "blank lines only",
            vec![String::new(), "\r".to_string(), String::new()],
            no_events,
        ),
    ]
    .into_iter()
    .map(|(name, lines, expect)| Variant { name, lines, expect })
    .collect()
}

/// Runs both verifiers on every variant, with `key` and without; checks the
/// expected verdicts (`check_expected`) and that Python and Rust agree.
fn check_variants(dir: &Path, variants: &[Variant], key: Option<&Path>, check_expected: bool) {
    let mut disagreements = Vec::new();
    for variant in variants {
        let file = dir.join("variant.jsonl");
        let mut body = variant.lines.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        std::fs::write(&file, body).expect("write the variant");
        let (python, line) = python_verify(&file, key);
        let rust = cli_verify(&file, key);
        if let (true, Expect::Verdicts { with_key, without_key }) = (check_expected, variant.expect) {
            assert_eq!(
                python,
                if key.is_some() { with_key } else { without_key },
                "{} ({}): the Python verifier said {line}",
                variant.name,
                if key.is_some() { "with the key" } else { "without a key" }
            );
        }
        if python != rust {
            disagreements.push(format!(
                "{}: python {python:?} ({line}), hallpass {rust:?}",
                variant.name
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "the Python verifier and `hallpass audit verify` disagree{}:\n{}",
        if key.is_some() {
            " (with the key)"
        } else {
            " (without a key)"
        },
        disagreements.join("\n")
    );
}

#[test]
fn canonical_form_and_hash_match_the_docs_test_vector() {
    const CODE: &str = r#"
import sys
sys.path.insert(0, sys.argv[1])
import verify_audit as v
event = v.parse_event(sys.stdin.read().splitlines()[4])
print(v.canonical({m: event[m] for m in v.MEMBERS if m != "hash"}))
print(v.event_hash(event))
"#;
    let export = std::fs::read_to_string(fixture("signed-export.jsonl")).expect("read the fixture");
    let output = python_snippet(CODE, &[], &export);
    let mut printed = output.lines();
    let (canonical, hash) = docs_line_5();
    assert_eq!(printed.next(), Some(canonical.as_str()));
    assert_eq!(printed.next(), Some(hash.as_str()));
}

#[test]
fn signed_fixture_is_complete_with_either_key_form_and_only_a_chain_without() {
    let export = fixture("signed-export.jsonl");
    for key in ["audit-key.pem", "audit-key.jwk"] {
        let (verdict, line) = python_verify(&export, Some(&fixture(key)));
        assert_eq!(verdict, Verdict::Pass, "{key}: {line}");
        assert!(
            line.contains("complete: signed checkpoint at 10") && line.contains(FIXTURE_KEY_ID),
            "{key}: {line}"
        );
    }
    let (verdict, line) = python_verify(&export, None);
    assert_eq!(verdict, Verdict::Pass, "{line}");
    assert!(line.contains("completeness NOT proven"), "{line}");
}

#[test]
fn another_key_fails_at_the_first_checkpoint_naming_both_key_ids() {
    let (verdict, line) = python_verify(&fixture("signed-export.jsonl"), Some(&fixture("other-key.pem")));
    assert_eq!(verdict, Verdict::FailAt(Some(4)), "{line}");
    assert!(line.contains(FIXTURE_KEY_ID), "{line}");
    let other_id = line
        .split("not by the given key ")
        .nth(1)
        .and_then(|rest| rest.split(':').next());
    assert!(
        other_id.is_some_and(|id| id.len() == 43 && id != FIXTURE_KEY_ID),
        "{line}"
    );
}

#[test]
fn tampered_fixtures_fail_where_the_docs_say_and_as_the_cli_does() {
    let lines = lines_of(&fixture("signed-export.jsonl"));
    // Seq 5 and 6 are ordinary events between the checkpoints at 4 and 7.
    let mut variants = tampered_variants(&lines, 4);
    variants.push(Variant {
        name: "a partial export from checkpoint 4",
        lines: lines[3..].to_vec(),
        expect: expect(Verdict::Pass, Verdict::Pass),
    });
    variants.push(Variant {
        name: "cut right after checkpoint 7",
        lines: lines[..7].to_vec(),
        expect: expect(Verdict::Pass, Verdict::Pass),
    });
    let dir = tempfile::tempdir().expect("temp dir");
    check_variants(dir.path(), &variants, Some(&fixture("audit-key.pem")), true);
    check_variants(dir.path(), &variants, None, true);
}

#[test]
fn previous_release_export_is_an_intact_chain_but_not_complete() {
    let export = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hallpass-core/tests/fixtures/audit-prev.jsonl");
    let last = lines_of(&export).last().map(|line| seq_of(line)).expect("events");
    let (verdict, line) = python_verify(&export, None);
    assert_eq!(verdict, Verdict::Pass, "{line}");
    assert_eq!(cli_verify(&export, None), Verdict::Pass);
    let key = fixture("audit-key.pem");
    let (verdict, line) = python_verify(&export, Some(&key));
    assert_eq!(
        verdict,
        Verdict::FailAt(Some(last + 1)),
        "no checkpoint ends it: {line}"
    );
    assert_eq!(cli_verify(&export, Some(&key)), verdict);
}

#[test]
fn unreadable_or_private_keys_are_errors_not_verdicts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let export = fixture("signed-export.jsonl");
    let private_jwk = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#;
    let keys = [
        ("missing.pem", None),
        ("private.jwk", Some(private_jwk)),
        ("rsa.jwk", Some(r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#)),
        (
            "garbage.pem",
            Some("-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n"),
        ),
        (
            "short.pem",
            Some("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"),
        ),
    ];
    for (name, content) in keys {
        let path = dir.path().join(name);
        if let Some(content) = content {
            std::fs::write(&path, content).expect("write the key file");
        }
        let output = python()
            .arg(verifier_dir().join("verify_audit.py"))
            .arg(&export)
            .arg("--public-key")
            .arg(&path)
            .output()
            .expect("run verify_audit.py");
        assert_eq!(output.status.code(), Some(2), "{name}: {}", text(&output.stderr));
        assert!(
            text(&output.stderr).contains("--public-key"),
            "{name}: {}",
            text(&output.stderr)
        );
    }
}

/// A dev server with a few more events than its seed: a token, a request
/// with quotes and non-ASCII in its reason, its approval.
fn server_with_requests() -> Server {
    let server = Server::dev();
    server.token("carol", "dev");
    let request = server.json(
        &server.alice,
        &[
            "request",
            "demo-admin",
            "--for",
            "30m",
            "--reason",
            "INC-9 \"failover\" \\ é € 😀",
        ],
    );
    let id = request["id"].as_str().expect("request id");
    server.json(&server.bob, &["approve", id, "--comment", "ok, דּ"]);
    server
}

fn export(server: &Server, dir: &Path, since: Option<&str>) -> PathBuf {
    let mut args = vec!["audit", "export"];
    args.extend(since.map(|seq| ["--since", seq]).into_iter().flatten());
    let output = server.run(&server.admin, &args);
    assert!(
        output.status.success(),
        "hallpass audit export: {}",
        text(&output.stderr)
    );
    let file = dir.join(format!("export-{}.jsonl", since.unwrap_or("all")));
    std::fs::write(&file, &output.stdout).expect("write the export");
    file
}

/// The index of two adjacent ordinary events in the middle of `lines`.
fn ordinary_pair(lines: &[String]) -> usize {
    (1..lines.len() - 2)
        .find(|&index| !is_checkpoint(&lines[index]) && !is_checkpoint(&lines[index + 1]))
        .expect("two adjacent ordinary events")
}

#[test]
fn live_export_chain_verifies_and_agrees_with_the_cli_without_a_key() {
    let server = server_with_requests();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = export(&server, dir.path(), None);
    let (verdict, line) = python_verify(&file, None);
    assert_eq!(verdict, Verdict::Pass, "{line}");
    assert!(line.contains("completeness NOT proven"), "{line}");
    let lines = lines_of(&file);
    let variants = tampered_variants(&lines, ordinary_pair(&lines));
    check_variants(dir.path(), &variants, None, true);
}

#[test]
#[ignore = "needs the server's audit checkpoints (in progress)"]
fn live_export_is_complete_with_the_servers_key_and_agrees_with_the_cli() {
    let server = server_with_requests();
    let dir = tempfile::tempdir().expect("temp dir");
    let (status, key) = server.http("GET", "/v1/audit/public-key", Some(&server.admin), None);
    assert_eq!(status, 200, "GET /v1/audit/public-key: {key}");
    let key_id = key["key_id"].as_str().expect("key_id");
    assert_eq!(key["jwk"]["kid"], key_id);
    let pem = dir.path().join("audit-key.pem");
    std::fs::write(&pem, key["pem"].as_str().expect("pem")).expect("write the PEM");
    let jwk = dir.path().join("audit-key.jwk");
    std::fs::write(&jwk, key["jwk"].to_string()).expect("write the JWK");

    let file = export(&server, dir.path(), None);
    for key_file in [&pem, &jwk] {
        let (verdict, line) = python_verify(&file, Some(key_file));
        assert_eq!(verdict, Verdict::Pass, "{line}");
        assert!(
            line.contains("complete: signed checkpoint") && line.contains(key_id),
            "{line}"
        );
    }
    assert_eq!(cli_verify(&file, Some(&pem)), Verdict::Pass);

    let lines = lines_of(&file);
    let variants = tampered_variants(&lines, ordinary_pair(&lines));
    check_variants(dir.path(), &variants, Some(&pem), true);
    check_variants(dir.path(), &variants, None, true);

    // A partial export starts at a checkpoint (or at seq 1) and proves itself.
    let partial = export(&server, dir.path(), Some("5"));
    let (verdict, line) = python_verify(&partial, Some(&pem));
    assert_eq!(verdict, Verdict::Pass, "{line}");
    assert_eq!(cli_verify(&partial, Some(&pem)), Verdict::Pass);
    let first = lines_of(&partial).first().map(|line| seq_of(line)).expect("events");
    assert!(first <= 6, "--since 5 must start at or before seq 6, not {first}");
}

/// Lines built from `events` (each a JSON object without `prev_hash` and
/// `hash`, kept byte for byte) chained from the genesis hash, each hashed by
/// the Python verifier in the current form or, with `legacy`, in the
/// previous release's form.
fn sealed(events: &[&str], legacy: bool) -> Vec<String> {
    const CODE: &str = r#"
import sys
sys.path.insert(0, sys.argv[1])
import verify_audit as v
legacy = sys.argv[2] == "legacy"
previous = "0" * 64
for line in sys.stdin.read().splitlines():
    event = v.parse_json(line)
    event["prev_hash"] = line_prev = previous
    previous = v.event_hash(event, legacy)
    print(line[:-1] + ',"prev_hash":"%s","hash":"%s"}' % (line_prev, previous))
"#;
    let mode = if legacy { "legacy" } else { "current" };
    python_snippet(CODE, &[mode], &events.join("\n"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// Files on which the docs allow more than one reading, and the CLI took
/// another than this verifier (see the gaps listed when this was written).
/// Un-ignore once docs/audit.md settles them and both follow it.
#[test]
#[ignore = "docs/audit.md leaves these open: -0 in C', a repeated seq with other content, nesting depth"]
fn files_the_docs_leave_open_get_the_same_verdict_from_both() {
    let event = |seq: u64, data: &str| {
        format!(r#"{{"seq":{seq},"time":"t","actor":"a","kind":"k","request_id":null,"data":{data}}}"#)
    };
    let deep = format!("{}{}", "[".repeat(126), "]".repeat(126));
    let variants = [
        Variant {
            name: "-0 hashed in the previous release's form",
            lines: sealed(&[&event(1, r#"{"e":-0,"g":15.0}"#)], true),
            expect: Expect::Agreement,
        },
        Variant {
            name: "seq 2 twice with different contents",
            lines: sealed(&[&event(1, "{}"), &event(2, "{}"), &event(2, r#"{"x":1}"#)], false),
            expect: Expect::Agreement,
        },
        Variant {
            name: "data nested 127 levels deep",
            lines: sealed(&[&event(1, &format!(r#"{{"d":{deep}}}"#))], false),
            expect: Expect::Agreement,
        },
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    check_variants(dir.path(), &variants, None, false);
}
