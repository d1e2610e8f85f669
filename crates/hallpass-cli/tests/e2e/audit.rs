//! The audit log: every step recorded, no secrets, verifiable offline, and
//! tampering named by sequence number.

use crate::harness::Server;
use serde_json::Value;

fn busy_server() -> (Server, String) {
    let server = Server::dev();
    let request = server.json(
        &server.alice,
        &["request", "demo-admin", "--for", "10m", "--reason", "audit me"],
    );
    let id = request["id"].as_str().unwrap().to_string();
    server.json(&server.bob, &["approve", &id]);
    server.json(&server.alice, &["credentials", &id]);
    server.json(&server.alice, &["release", &id]);
    (server, id)
}

fn export(server: &Server, dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>) {
    let output = server.run(&server.admin, &["audit", "export"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let path = dir.join("audit.jsonl");
    std::fs::write(&path, &text).unwrap();
    (path, lines)
}

fn verify_file(server: &Server, path: &std::path::Path) -> (bool, String) {
    verify_offline(server, path, None)
}

/// The server's public audit key, saved as `DIR/audit-key.pem` by the CLI.
fn public_key(server: &Server, dir: &std::path::Path) -> std::path::PathBuf {
    let output = server.run("", &["audit", "public-key"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let path = dir.join("audit-key.pem");
    std::fs::write(&path, &output.stdout).unwrap();
    path
}

fn verify_offline(server: &Server, path: &std::path::Path, key: Option<&std::path::Path>) -> (bool, String) {
    // Offline: no server address or token needed.
    let mut command = std::process::Command::new(crate::harness::hallpass_bin());
    command.args(["audit", "verify", "--file"]).arg(path);
    if let Some(key) = key {
        command.arg("--public-key").arg(key);
    }
    let output = command
        .env("HALLPASS_ADDR", "http://127.0.0.1:9")
        .env_remove("HALLPASS_TOKEN")
        .output()
        .unwrap();
    let _ = server;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        assert_eq!(output.status.code(), Some(3), "verification failure exits 3: {text}");
    }
    (output.status.success(), text)
}

#[test]
fn every_step_is_recorded_without_secrets() {
    let (server, id) = busy_server();
    let events = server.json(&server.admin, &["audit", "list", "--request", &id]);
    let kinds: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "request.created",
            "request.approved",
            "grant.activated",
            "grant.released"
        ]
    );
    let all = server.json(&server.admin, &["audit", "list"]);
    let kinds: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    for expected in ["token.created", "target.created", "role.created"] {
        assert!(kinds.iter().any(|k| k == expected), "{expected} missing from {kinds:?}");
    }
    let credential = server.json(&server.alice, &["request", "demo-read", "--for", "5m", "--reason", "x"]);
    let token = server.json(&server.alice, &["credentials", credential["id"].as_str().unwrap()])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let text = String::from_utf8(server.run(&server.admin, &["audit", "export"]).stdout).unwrap();
    for secret in [&server.alice, &server.bob, &server.admin, &token] {
        assert!(!text.contains(secret.as_str()), "a secret leaked into the audit log");
    }
    let signature = token.rsplit('.').next().unwrap();
    assert!(!text.contains(signature));
    // Non-auditors cannot read it.
    let (status, body) = server.http("GET", "/v1/audit", Some(&server.alice), None);
    assert_eq!(status, 403, "{body}");
}

#[test]
fn exported_log_verifies_offline_and_tampering_is_named() {
    let (server, _) = busy_server();
    let temp = tempfile::tempdir().unwrap();
    let (path, lines) = export(&server, temp.path());
    assert!(lines.len() >= 8);
    let (ok, text) = verify_file(&server, &path);
    assert!(ok, "{text}");
    assert_eq!(server.json(&server.admin, &["audit", "verify"])["ok"], true);

    let seq_of = |line: &str| serde_json::from_str::<Value>(line).unwrap()["seq"].as_u64().unwrap();
    let target = 5;
    let target_seq = seq_of(&lines[target]);

    // Changed: an actor rewritten.
    let mut changed = lines.clone();
    let mut event: Value = serde_json::from_str(&changed[target]).unwrap();
    event["actor"] = Value::String("mallory".into());
    changed[target] = event.to_string();
    std::fs::write(&path, changed.join("\n")).unwrap();
    let (ok, text) = verify_file(&server, &path);
    assert!(!ok);
    assert!(text.contains(&target_seq.to_string()), "names seq {target_seq}: {text}");

    // Removed.
    let mut removed = lines.clone();
    removed.remove(target);
    std::fs::write(&path, removed.join("\n")).unwrap();
    let (ok, text) = verify_file(&server, &path);
    assert!(!ok);
    assert!(text.contains(&target_seq.to_string()), "names seq {target_seq}: {text}");

    // Reordered.
    let mut reordered = lines.clone();
    reordered.swap(target, target + 1);
    std::fs::write(&path, reordered.join("\n")).unwrap();
    let (ok, text) = verify_file(&server, &path);
    assert!(!ok);
    assert!(text.contains(&target_seq.to_string()), "names seq {target_seq}: {text}");
}

#[test]
fn partial_export_starts_at_a_signed_checkpoint_and_verifies_with_the_key() {
    let (server, _) = busy_server();
    let temp = tempfile::tempdir().unwrap();
    let key = public_key(&server, temp.path());
    // Before any checkpoint there is nothing to anchor a partial export:
    // it starts at the beginning.
    let early = server.run(&server.admin, &["audit", "export", "--since", "3"]);
    let early = String::from_utf8(early.stdout).unwrap();
    let first: Value = serde_json::from_str(early.lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], 1);
    // That export ended with a checkpoint; later exports from it start there.
    let last: Value = serde_json::from_str(early.lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "audit.checkpoint");
    let anchor = last["seq"].as_u64().unwrap();
    server.json(&server.alice, &["request", "demo-read", "--reason", "after the export"]);
    let since = (anchor + 1).to_string();
    let output = server.run(&server.admin, &["audit", "export", "--since", &since]);
    let text = String::from_utf8(output.stdout).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["seq"], anchor,
        "anchored at the checkpoint before its first event"
    );
    assert_eq!(first["kind"], "audit.checkpoint");
    let path = temp.path().join("tail.jsonl");
    std::fs::write(&path, &text).unwrap();
    let (ok, report) = verify_offline(&server, &path, Some(&key));
    assert!(ok && report.contains("complete"), "{report}");
}

#[test]
fn a_cut_or_emptied_export_fails_with_the_key() {
    let (server, _) = busy_server();
    let temp = tempfile::tempdir().unwrap();
    let key = public_key(&server, temp.path());
    let (path, lines) = export(&server, temp.path());
    let (ok, report) = verify_offline(&server, &path, Some(&key));
    assert!(ok && report.contains("complete: signed checkpoint"), "{report}");
    let (ok, report) = verify_offline(&server, &path, None);
    assert!(ok && report.contains("completeness NOT proven"), "{report}");
    let cases: [(&str, Vec<String>); 3] = [
        ("cut at the end", lines[..lines.len() - 1].to_vec()),
        ("cut at the start", lines[2..].to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, kept) in cases {
        let cut = temp.path().join("cut.jsonl");
        std::fs::write(&cut, kept.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        let (ok, report) = verify_offline(&server, &cut, Some(&key));
        assert!(!ok, "{what}: {report}");
    }
}
