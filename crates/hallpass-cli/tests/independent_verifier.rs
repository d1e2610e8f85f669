//! The audit export format, reimplemented from `docs/audit.md` alone: an
//! independent Python verifier (`independent_verifier/verify_audit.py`)
//! must accept the signed fixtures and a real server's export, fail every
//! tampered copy at the sequence number the documentation names, give the
//! documented verdict on the edge cases the documentation settles, and agree
//! with `hallpass audit verify` on every file. When the two disagree, the
//! documentation does not specify the format well enough (or one side has a
//! bug): either way a reader of the docs alone would get a different answer.

#[allow(dead_code, unused_imports)] // the e2e suite's helpers; this file uses a few
#[path = "e2e/harness.rs"]
mod harness;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use harness::Server;
use serde_json::Value;

/// The one line this test fails with when the verifier cannot run.
const PYTHON_NEEDED: &str = "the independent audit verifier needs python3 with the `cryptography` package: \
                             run scripts/test, which installs them";

const FIXTURE_KEY_ID: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
/// The secret seed of RFC 8032 section 7.1's first test key (public there),
/// whose public half is the fixtures' `audit-key.pem`: crafted checkpoints
/// are signed with it.
const RFC8032_KEY_1_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

/// The previous release's form's test vector at the end of docs/audit.md:
/// a `data` value as written, its `C` form and its `C'` form.
fn docs_previous_release_vector() -> (String, String, String) {
    let block = |start: &str, language: &str| {
        hallpass_doc_examples::example("audit.md", start, language)
            .trim_end()
            .to_string()
    };
    (
        block("The previous release's form `C'` differs from `C`", "json"),
        block("Its `C` form is", "text"),
        block("and its `C'` form is", "text"),
    )
}

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
    let mut python = Command::new("python3");
    // Importing verify_audit would leave a __pycache__ in the source tree.
    python.env("PYTHONDONTWRITEBYTECODE", "1");
    python
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

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What a verifier said about a file: passed, or failed at a seq (or at none).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Pass,
    FailAt(Option<u64>),
}

const PASS: Verdict = Verdict::Pass;

fn fail(seq: u64) -> Verdict {
    Verdict::FailAt(Some(seq))
}

/// Failed naming no seq: the file's first line is unreadable, or it has none.
const FAIL_NO_SEQ: Verdict = Verdict::FailAt(None);

/// The Python verifier's verdict and its output line, or `Err` with its
/// message when it refused to give one (a key file it cannot use).
fn python_outcome(file: &Path, key: Option<&Path>) -> Result<(Verdict, String), String> {
    let mut command = python();
    command.arg(verifier_dir().join("verify_audit.py")).arg(file);
    if let Some(key) = key {
        command.arg("--public-key").arg(key);
    }
    let output = command.output().expect("run verify_audit.py");
    let stdout = text(&output.stdout);
    let line = stdout.trim().to_string();
    match output.status.code() {
        Some(0) => Ok((Verdict::Pass, line)),
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
            Ok((Verdict::FailAt(seq), line))
        }
        Some(2) if stdout.is_empty() => Err(text(&output.stderr)),
        _ => panic!(
            "verify_audit.py errored ({}): {stdout}{}",
            output.status,
            text(&output.stderr)
        ),
    }
}

fn python_verify(file: &Path, key: Option<&Path>) -> (Verdict, String) {
    python_outcome(file, key).unwrap_or_else(|error| panic!("verify_audit.py gave no verdict: {error}"))
}

/// The Rust CLI's offline verdict, from its `--output json` report, or
/// `Err` with its message when it exits 1 with none (an unusable key file).
fn cli_outcome(file: &Path, key: Option<&Path>) -> Result<Verdict, String> {
    let mut command = Command::new(harness::hallpass_bin());
    command
        .args(["--output", "json", "audit", "verify", "--file"])
        .arg(file);
    if let Some(key) = key {
        command.arg("--public-key").arg(key);
    }
    let output = command.output().expect("run hallpass audit verify");
    let report: Value = match serde_json::from_slice(&output.stdout) {
        Ok(report) => report,
        Err(_) if output.status.code() == Some(1) && output.stdout.is_empty() => {
            return Err(text(&output.stderr));
        }
        Err(error) => panic!(
            "hallpass audit verify printed no JSON report ({error}; {}): {}{}",
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        ),
    };
    Ok(match report["ok"].as_bool() {
        Some(true) => Verdict::Pass,
        _ => Verdict::FailAt(report["first_bad_seq"].as_u64()),
    })
}

fn cli_verify(file: &Path, key: Option<&Path>) -> Verdict {
    cli_outcome(file, key).unwrap_or_else(|error| panic!("hallpass audit verify gave no verdict: {error}"))
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

/// Lines chained from the genesis hash, each `template` kept byte for byte
/// but for what this adds. A template is a JSON object; one without
/// `prev_hash` gets the previous line's hash, one without `hash` gets its
/// hash in the current form (computed by the Python verifier). The text
/// `CHECKPOINT` in a template is replaced by the `data` of a checkpoint
/// covering the previous line, signed for the template's `seq` and `time`
/// with RFC 8032's first test key; `CHECKPOINT:high_s` adds the group order
/// to its `S`, `CHECKPOINT:unused_bits` sets a bit its base64url must leave
/// zero, `CHECKPOINT:padded` pads its base64url with `==`.
fn chain(templates: &[&str]) -> Vec<String> {
    const CODE: &str = r#"
import re, sys
sys.path.insert(0, sys.argv[1])
import verify_audit as v
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(sys.argv[2]))
raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
key_id = v.key_id_of(raw)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
def high_s(sig):
    s = int.from_bytes(sig[32:], "little") + v.GROUP_ORDER
    return v.b64url(sig[:32] + s.to_bytes(32, "little"))
def unused_bits(sig):
    text = v.b64url(sig)
    return text[:-1] + ALPHABET[ALPHABET.index(text[-1]) | 1]
SIGNATURES = {None: v.b64url, "high_s": high_s, "unused_bits": unused_bits, "padded": lambda sig: v.b64url(sig) + "=="}
previous = v.GENESIS_HASH
for line in sys.stdin.read().split("\n"):
    placeholder = re.search(r"CHECKPOINT(?::(\w+))?", line)
    if placeholder:
        before, after = line[: placeholder.start()], line[placeholder.end() :]
        event = v.parse_json(before + "{}" + after)
        covers = int(event["seq"].text) - 1
        signature = key.sign(v.checkpoint_message(covers, previous, key_id, event["time"]))
        data = '{"covers_seq":%d,"covers_hash":"%s","key_id":"%s","signature":"%s"}' % (
            covers, previous, key_id, SIGNATURES[placeholder.group(1)](signature))
        line = before + data + after
    event = v.parse_json(line)
    if "prev_hash" not in event:
        event["prev_hash"] = previous
        line = line[:-1] + ',"prev_hash":"%s"}' % previous
    if "hash" not in event:
        event["hash"] = v.event_hash(event)
        line = line[:-1] + ',"hash":"%s"}' % event["hash"]
    previous = event["hash"]
    print(line)
"#;
    python_snippet(CODE, &[RFC8032_KEY_1_SEED], &templates.join("\n"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// The template of an ordinary event (actor `alice`) at `seq` (as written)
/// with `data` (as written).
fn event(seq: &str, data: &str) -> String {
    format!(
        r#"{{"seq":{seq},"time":"{EVENT_TIME}","actor":"alice","kind":"request.created","request_id":null,"data":{data}}}"#
    )
}

const EVENT_TIME: &str = "2026-11-21T10:00:00Z";

/// The template of a checkpoint at `seq` with `actor`, `request_id` (as
/// written) and `signature`, a `CHECKPOINT` placeholder of [`chain`].
fn checkpoint_as(seq: &str, actor: &str, request_id: &str, signature: &str) -> String {
    format!(
        r#"{{"seq":{seq},"time":"2026-11-21T10:01:00.5+01:00","actor":"{actor}","kind":"audit.checkpoint","request_id":{request_id},"data":{signature}}}"#
    )
}

/// `template` with a string member added at its end.
fn appended(template: &str, member: &str, value: &str) -> String {
    let body = template.strip_suffix('}').expect("a JSON object");
    format!(r#"{body},"{member}":"{value}"}}"#)
}

/// Seq 1 holding `data`, which is not valid, with hashes that do not matter.
fn invalid_first_line(data: &str) -> String {
    appended(
        &appended(&event("1", data), "prev_hash", GENESIS_HASH),
        "hash",
        GENESIS_HASH,
    )
}

fn checkpoint(seq: &str) -> String {
    checkpoint_as(seq, "hallpass", "null", "CHECKPOINT")
}

/// Seq 1 with `data` as written and its hash over the canonical text
/// `hashed_data` put in its place: whether a verifier accepts it says
/// whether it reads `data` as `hashed_data` (in the form C or C').
fn hashed_over(data: &str, hashed_data: &str) -> String {
    let canonical = format!(
        r#"{{"actor":"alice","data":{hashed_data},"kind":"request.created","prev_hash":"{GENESIS_HASH}","request_id":null,"seq":1,"time":"{EVENT_TIME}"}}"#
    );
    let hash = sha256_hex(format!("{GENESIS_HASH}{canonical}").as_bytes());
    appended(&appended(&event("1", data), "prev_hash", GENESIS_HASH), "hash", &hash)
}

/// A file of `lines`, each ended by `\n`.
fn file_of(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|line| [line.as_bytes(), b"\n"].concat())
        .collect()
}

/// A file and the verdicts docs/audit.md prescribes for it, with the
/// fixtures' key and without a key.
struct Variant {
    name: &'static str,
    body: Vec<u8>,
    with_key: Verdict,
    without_key: Verdict,
}

fn variant(name: &'static str, lines: &[String], with_key: Verdict, without_key: Verdict) -> Variant {
    Variant {
        name,
        body: file_of(lines),
        with_key,
        without_key,
    }
}

/// Tampered copies of the export `lines`, whose lines `edit` and `edit + 1`
/// are consecutive ordinary events and whose last line is a checkpoint, with
/// the verdicts docs/audit.md implies.
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
    assert!(is_checkpoint(&lines[last]), "an export ends with a checkpoint");
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
    let cut_at_start = if is_checkpoint(&lines[2]) { PASS } else { fail(seq(2)) };
    let recomputed = first_signed_after_edit.map_or(fail(seq(last) + 1), fail);
    let at_edit = fail(edited_seq);
    vec![
        variant("a field edited", &edited, at_edit, at_edit),
        variant("a line removed", &removed, at_edit, at_edit),
        variant("two lines swapped", &swapped, at_edit, at_edit),
        variant("a line duplicated", &duplicated, at_edit, at_edit),
        variant("the last line cut", &lines[..last], fail(seq(last)), PASS),
        variant("the first two lines cut", &lines[2..], cut_at_start, PASS),
        variant("an edit with the chain recomputed", &rehash(&edited), recomputed, PASS),
        // The final checkpoint signs its own time: nothing after it is needed.
        variant(
            "the last checkpoint's time edited and rehashed",
            &rehash(&last_retimed),
            fail(seq(last)),
            PASS,
        ),
        variant("an empty file", &[], FAIL_NO_SEQ, FAIL_NO_SEQ),
        Variant {
            name: "blank lines only",
            body: b"\n \t\n\r\n\n".to_vec(),
            with_key: FAIL_NO_SEQ,
            without_key: FAIL_NO_SEQ,
        },
    ]
}

/// Runs both verifiers on every variant with `key` (when given) and without
/// one; each must give the verdict the variant expects.
fn check_variants(dir: &Path, variants: &[Variant], key: Option<&Path>) {
    let mut wrong = Vec::new();
    for variant in variants {
        let file = dir.join("variant.jsonl");
        std::fs::write(&file, &variant.body).expect("write the variant");
        let mut runs = vec![(None, variant.without_key, "without a key")];
        if let Some(key) = key {
            runs.push((Some(key), variant.with_key, "with the key"));
        }
        for (key, expected, how) in runs {
            let (python, line) = python_verify(&file, key);
            let rust = cli_verify(&file, key);
            if python != expected || rust != expected {
                wrong.push(format!(
                    "{} ({how}): expected {expected:?}, python {python:?} ({line}), hallpass {rust:?}",
                    variant.name
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "verdicts other than docs/audit.md prescribes:\n{}",
        wrong.join("\n")
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
fn both_forms_match_the_docs_previous_release_test_vector() {
    const CODE: &str = r#"
import sys
sys.path.insert(0, sys.argv[1])
import verify_audit as v
value = v.parse_json(sys.stdin.read())
print(v.canonical(value))
print(v.canonical(value, legacy=True))
"#;
    let (data, current, previous) = docs_previous_release_vector();
    let output = python_snippet(CODE, &[], &data);
    let mut printed = output.lines();
    assert_eq!(printed.next(), Some(current.as_str()), "C");
    assert_eq!(printed.next(), Some(previous.as_str()), "C'");
    assert_ne!(current, previous, "the vector shows the two forms apart");
}

#[test]
fn signed_fixture_is_complete_with_either_key_form_and_only_a_chain_without() {
    let export = fixture("signed-export.jsonl");
    for key in ["audit-key.pem", "audit-key.jwk"] {
        let (verdict, line) = python_verify(&export, Some(&fixture(key)));
        assert_eq!(verdict, PASS, "{key}: {line}");
        assert!(
            line.contains("complete: signed checkpoint at 10") && line.contains(FIXTURE_KEY_ID),
            "{key}: {line}"
        );
    }
    let (verdict, line) = python_verify(&export, None);
    assert_eq!(verdict, PASS, "{line}");
    assert!(line.contains("completeness NOT proven"), "{line}");
}

#[test]
fn another_key_fails_at_the_first_checkpoint_naming_both_key_ids() {
    let (verdict, line) = python_verify(&fixture("signed-export.jsonl"), Some(&fixture("other-key.pem")));
    assert_eq!(verdict, fail(4), "{line}");
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
    variants.push(variant("a partial export from checkpoint 4", &lines[3..], PASS, PASS));
    variants.push(variant("cut right after checkpoint 7", &lines[..7], PASS, PASS));
    let dir = tempfile::tempdir().expect("temp dir");
    check_variants(dir.path(), &variants, Some(&fixture("audit-key.pem")));
}

#[test]
fn previous_release_export_is_an_intact_chain_but_not_complete() {
    let export = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hallpass-core/tests/fixtures/audit-prev.jsonl");
    let last = lines_of(&export).last().map(|line| seq_of(line)).expect("events");
    let (verdict, line) = python_verify(&export, None);
    assert_eq!(verdict, PASS, "{line}");
    assert_eq!(cli_verify(&export, None), PASS);
    let key = fixture("audit-key.pem");
    let (verdict, line) = python_verify(&export, Some(&key));
    assert_eq!(verdict, fail(last + 1), "no checkpoint ends it: {line}");
    assert_eq!(cli_verify(&export, Some(&key)), verdict);
}

/// Files on the edges of reading a line that docs/audit.md settles (blank
/// lines, nesting, the forms of `seq` and hashes, encoding, numbers, names
/// and strings). Each is built so that a verifier reading the edge another
/// way would give another verdict: an unreadable first line fails naming no
/// seq, where a hash or link failure would name one.
fn reading_edge_variants() -> Vec<Variant> {
    let nested = |levels: usize| format!(r#"{{"d":{}{}}}"#, "[".repeat(levels), "]".repeat(levels));
    let largest_seq = u64::MAX.to_string();
    let good = chain(&[&event("1", "{}"), &checkpoint("2")]);
    let between = |line: &str| {
        let mut lines = good.clone();
        lines.insert(1, line.to_string());
        lines
    };
    let mut upper_hash = good.clone();
    upper_hash[0] = with_member(&good[0], "hash", &hash_of(&good[0]).to_uppercase());
    let mut bom = good.clone();
    bom[0].insert(0, '\u{feff}');
    let accented = chain(&[&event("1", r#"{"who":"é"}"#), &checkpoint("2")]);
    let mut latin1 = file_of(&accented);
    let accent = latin1.windows(2).position(|pair| pair == "é".as_bytes()).expect("é");
    latin1.splice(accent..accent + 2, [0xe9]);
    let upper_prev = appended(&event("5", "{}"), "prev_hash", &"AB".repeat(32));
    vec![
        variant("a line of spaces and tabs is blank", &between(" \t "), PASS, PASS),
        variant(
            "a line of a vertical tab is not blank",
            &between("\u{b}"),
            fail(2),
            fail(2),
        ),
        variant(
            "arrays and objects 127 levels deep",
            &chain(&[&event("1", &nested(125)), &checkpoint("2")]),
            PASS,
            PASS,
        ),
        variant(
            "arrays and objects 128 levels deep",
            &chain(&[&event("1", "{}"), &event("2", &nested(126)), &checkpoint("3")]),
            fail(2),
            fail(2),
        ),
        variant(
            "seq written 2.0",
            &chain(&[&event("1", "{}"), &event("2.0", "{}"), &checkpoint("3")]),
            fail(2),
            fail(2),
        ),
        variant("seq 0", &chain(&[&event("0", "{}")]), FAIL_NO_SEQ, FAIL_NO_SEQ),
        variant(
            "seq written 1e1",
            &chain(&[&event("1e1", "{}")]),
            FAIL_NO_SEQ,
            FAIL_NO_SEQ,
        ),
        variant(
            "a checkpoint at seq 2^64 - 1",
            &chain(&[&checkpoint(&largest_seq)]),
            PASS,
            PASS,
        ),
        variant(
            "seq 2^64",
            &chain(&[&event("18446744073709551616", "{}")]),
            FAIL_NO_SEQ,
            FAIL_NO_SEQ,
        ),
        variant("an upper-case hash", &upper_hash, FAIL_NO_SEQ, FAIL_NO_SEQ),
        variant(
            "an upper-case prev_hash on a first line at seq 5",
            &chain(&[&upper_prev]),
            FAIL_NO_SEQ,
            FAIL_NO_SEQ,
        ),
        variant("a byte-order mark", &bom, FAIL_NO_SEQ, FAIL_NO_SEQ),
        Variant {
            name: "invalid UTF-8",
            body: latin1,
            with_key: FAIL_NO_SEQ,
            without_key: FAIL_NO_SEQ,
        },
        variant(
            "a number too large for a double",
            &[invalid_first_line(r#"{"n":1e400}"#)],
            FAIL_NO_SEQ,
            FAIL_NO_SEQ,
        ),
        variant(
            "a member named twice in data",
            &[invalid_first_line(r#"{"a":1,"a":1}"#)],
            FAIL_NO_SEQ,
            FAIL_NO_SEQ,
        ),
        variant(
            "an unpaired surrogate escape",
            &[invalid_first_line(r#"{"s":"\ud800"}"#)],
            FAIL_NO_SEQ,
            FAIL_NO_SEQ,
        ),
    ]
}

/// The `hash` member of an event line.
fn hash_of(line: &str) -> String {
    let event: Value = serde_json::from_str(line).expect("an event line");
    event["hash"].as_str().expect("hash").to_string()
}

/// Files on the edges of the checks that docs/audit.md settles: a line
/// claiming its predecessor's seq, the checks running line by line,
/// checkpoint lines at seq 1 or with another actor or a request, and the
/// signature's strict encoding.
fn checking_edge_variants() -> Vec<Variant> {
    let first = event("1", "{}");
    let mut out_of_order = chain(&[&first, &event("2", "{}"), &checkpoint("3")]);
    out_of_order[1] = with_member(&out_of_order[1], "actor", "mallory");
    out_of_order[2] = "not JSON".to_string();
    let bad_checkpoint_then_gap = chain(&[
        &first,
        &checkpoint_as("2", "hallpass", "null", "CHECKPOINT:high_s"),
        &event("4", "{}"),
    ]);
    let signed_as = |actor: &str, request_id: &str, signature: &str| {
        chain(&[&first, &checkpoint_as("2", actor, request_id, signature)])
    };
    vec![
        variant(
            "seq 2 twice with other contents",
            &chain(&[&first, &event("2", "{}"), &event("2", r#"{"x":1}"#)]),
            fail(2),
            fail(2),
        ),
        variant(
            "line 2 changed and line 3 unreadable: line by line",
            &out_of_order,
            fail(2),
            fail(2),
        ),
        variant(
            "a bad checkpoint signature before a gap: line by line",
            &bad_checkpoint_then_gap,
            fail(2),
            fail(3),
        ),
        variant("a checkpoint at seq 1", &chain(&[&checkpoint("1")]), PASS, PASS),
        variant(
            "a checkpoint with actor admin",
            &signed_as("admin", "null", "CHECKPOINT"),
            fail(2),
            PASS,
        ),
        variant(
            "a checkpoint with a request_id",
            &signed_as("hallpass", r#""01a1fd95-0000-7000-8000-000000000001""#, "CHECKPOINT"),
            fail(2),
            PASS,
        ),
        variant(
            "a signature whose S is not below the group order",
            &signed_as("hallpass", "null", "CHECKPOINT:high_s"),
            fail(2),
            PASS,
        ),
        variant(
            "a signature with a base64url bit set that must be zero",
            &signed_as("hallpass", "null", "CHECKPOINT:unused_bits"),
            fail(2),
            PASS,
        ),
        variant(
            "a padded signature",
            &signed_as("hallpass", "null", "CHECKPOINT:padded"),
            fail(2),
            PASS,
        ),
    ]
}

/// Numbers whose canonical text docs/audit.md settles: each file holds seq 1
/// hashed over a given text for its `data`, then a checkpoint.
fn number_edge_variants() -> Vec<Variant> {
    let (vector, vector_current, vector_previous) = docs_previous_release_vector();
    let cases = [
        (
            "digits of a tie rounded to even",
            r#"{"a":1125899906842624.25,"b":1125899906842624.75}"#,
            r#"{"a":1125899906842624.2,"b":1125899906842624.8}"#,
            r#"{"a":1125899906842624.3,"b":1125899906842624.7}"#,
        ),
        (
            "-0 in the previous release's form",
            r#"{"z":-0}"#,
            r#"{"z":-0.0}"#,
            r#"{"z":-0}"#,
        ),
        (
            "the integer bounds of the previous release's form, included",
            r#"{"max":18446744073709551615,"min":-9223372036854775808}"#,
            r#"{"max":18446744073709551615,"min":-9223372036854775808}"#,
            r#"{"max":1.8446744073709552e+19,"min":-9.223372036854776e+18}"#,
        ),
        (
            "integers past those bounds in the previous release's form",
            r#"{"over":18446744073709551616,"under":-9223372036854775809}"#,
            r#"{"over":1.8446744073709552e+19,"under":-9.223372036854776e+18}"#,
            r#"{"over":18446744073709551616,"under":-9223372036854775809}"#,
        ),
        ("the docs' vector in the form C", &vector, &vector_current, &vector),
        ("the docs' vector in the form C'", &vector, &vector_previous, &vector),
    ];
    let with_checkpoint = |line: String| chain(&[&line, &checkpoint("2")]);
    cases
        .into_iter()
        .flat_map(|(name, data, right, wrong)| {
            [
                variant(name, &with_checkpoint(hashed_over(data, right)), PASS, PASS),
                variant(name, &with_checkpoint(hashed_over(data, wrong)), fail(1), fail(1)),
            ]
        })
        .collect()
}

#[test]
fn edge_cases_the_docs_settle_get_the_documented_verdict_from_both() {
    let mut variants = reading_edge_variants();
    variants.extend(checking_edge_variants());
    variants.extend(number_edge_variants());
    let dir = tempfile::tempdir().expect("temp dir");
    check_variants(dir.path(), &variants, Some(&fixture("audit-key.pem")));
}

#[test]
fn key_file_forms_the_docs_settle_are_read_alike_by_both() {
    let jwk: Value = serde_json::from_str(&std::fs::read_to_string(fixture("audit-key.jwk")).expect("read the JWK"))
        .expect("the fixture JWK");
    let pem = std::fs::read_to_string(fixture("audit-key.pem")).expect("read the PEM");
    let base64: String = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    let with = |member: &str, value: &str| {
        let mut jwk = jwk.clone();
        jwk[member] = value.into();
        jwk
    };
    let answer = |jwk: &Value| serde_json::json!({"key_id": FIXTURE_KEY_ID, "jwk": jwk, "pem": pem}).to_string();
    let rewrapped = base64
        .as_bytes()
        .chunks(7)
        .map(|chunk| std::str::from_utf8(chunk).expect("ASCII"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let accepted = [
        ("the answer of GET /v1/audit/public-key", answer(&jwk)),
        ("a JWK with another kid", with("kid", "someone-else").to_string()),
        ("a JWK after white space", format!(" \n\t{jwk}")),
        (
            "a PEM block with text around it",
            format!("Hallpass audit key, saved 2026-11-21:\n{pem}-- end of note\n"),
        ),
        (
            "a PEM block with its base64 wrapped at 7 characters",
            format!("-----BEGIN PUBLIC KEY-----\r\n{rewrapped}\r\n-----END PUBLIC KEY-----\r\n"),
        ),
        (
            "a PEM block with its base64 and no line breaks",
            format!("-----BEGIN PUBLIC KEY-----{base64}-----END PUBLIC KEY-----"),
        ),
    ];
    let refused = [
        ("a JWK with alg ES256", with("alg", "ES256").to_string()),
        ("an answer whose jwk has alg ES256", answer(&with("alg", "ES256"))),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let export = fixture("signed-export.jsonl");
    let key_file = dir.path().join("key");
    let mut wrong = Vec::new();
    for (name, content) in accepted {
        std::fs::write(&key_file, content).expect("write the key file");
        let python = python_outcome(&export, Some(&key_file)).map(|(verdict, _)| verdict);
        let rust = cli_outcome(&export, Some(&key_file));
        if python != Ok(PASS) || rust != Ok(PASS) {
            wrong.push(format!("{name} (accepted): python {python:?}, hallpass {rust:?}"));
        }
    }
    for (name, content) in refused {
        std::fs::write(&key_file, content).expect("write the key file");
        let python = python_outcome(&export, Some(&key_file));
        let rust = cli_outcome(&export, Some(&key_file));
        if python.is_ok() || rust.is_ok() {
            wrong.push(format!("{name} (refused): python {python:?}, hallpass {rust:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "key files read otherwise than docs/audit.md says:\n{}",
        wrong.join("\n")
    );
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
        let error = python_outcome(&export, Some(&path)).expect_err(name);
        assert!(error.contains("--public-key"), "{name}: {error}");
        assert!(
            cli_outcome(&export, Some(&path)).is_err(),
            "{name}: hallpass gave a verdict"
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
    let answer = dir.path().join("audit-key.json");
    std::fs::write(&answer, key.to_string()).expect("write the answer");

    let file = export(&server, dir.path(), None);
    let (verdict, line) = python_verify(&file, None);
    assert_eq!(verdict, PASS, "{line}");
    assert!(line.contains("completeness NOT proven"), "{line}");
    for key_file in [&pem, &jwk, &answer] {
        let (verdict, line) = python_verify(&file, Some(key_file));
        assert_eq!(verdict, PASS, "{line}");
        assert!(
            line.contains("complete: signed checkpoint") && line.contains(key_id),
            "{line}"
        );
        assert_eq!(cli_verify(&file, Some(key_file)), PASS, "{}", key_file.display());
    }

    let lines = lines_of(&file);
    let variants = tampered_variants(&lines, ordinary_pair(&lines));
    check_variants(dir.path(), &variants, Some(&pem));

    // A partial export starts at the newest checkpoint at or before the
    // first event asked for, or at seq 1 when there is none; all the
    // checkpoints up to there are already in the full export.
    let anchor = lines
        .iter()
        .filter(|line| is_checkpoint(line) && seq_of(line) <= 6)
        .map(|line| seq_of(line))
        .max()
        .unwrap_or(1);
    let partial = export(&server, dir.path(), Some("5"));
    let (verdict, line) = python_verify(&partial, Some(&pem));
    assert_eq!(verdict, PASS, "{line}");
    assert_eq!(cli_verify(&partial, Some(&pem)), PASS);
    let first = lines_of(&partial).first().map(|line| seq_of(line)).expect("events");
    assert_eq!(first, anchor, "--since 5 must start at seq {anchor}");
}
