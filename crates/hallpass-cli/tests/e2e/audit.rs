//! The audit log: every step recorded, no secrets, verifiable offline,
//! tampering named by sequence number (also a database rewritten and
//! rehashed behind the server's back), and its signing key sealed.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hallpass_core::audit::AuditEvent;
use serde_json::Value;

use crate::harness::{Database, Server};

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
    verdict(&output)
}

/// Whether `hallpass audit verify` passed, and what it printed; a failed
/// verification must exit 3.
fn verdict(output: &std::process::Output) -> (bool, String) {
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

/// Every audit row, read from the store itself.
fn stored_events(database: &mut Database) -> Vec<AuditEvent> {
    let mut data = database.documents("SELECT data FROM audit ORDER BY seq").into_iter();
    let (prev_hash, hash) = (database.hex("prev_hash"), database.hex("hash"));
    database
        .rows(&format!(
            "SELECT CAST(seq AS TEXT), time, actor, kind, request_id, {prev_hash}, {hash} FROM audit ORDER BY seq"
        ))
        .into_iter()
        .map(|row| {
            let text = |i: usize| row[i].clone().expect("a NOT NULL column");
            AuditEvent {
                seq: text(0).parse().expect("a seq"),
                time: text(1),
                actor: text(2),
                kind: text(3),
                request_id: row[4].clone(),
                data: data.next().expect("as many data as rows"),
                prev_hash: text(5),
                hash: text(6),
            }
        })
        .collect()
}

/// Writes `event`'s actor and hashes over its stored row.
fn overwrite(database: &mut Database, event: &AuditEvent) {
    let (prev_hash, hash) = (database.hash_param(2), database.hash_param(3));
    let changed = database.execute(
        &format!("UPDATE audit SET actor = $1, prev_hash = {prev_hash}, hash = {hash} WHERE CAST(seq AS TEXT) = $4"),
        &[&event.actor, &event.prev_hash, &event.hash, &event.seq.to_string()],
    );
    assert_eq!(changed, 1);
}

/// `hallpass audit verify`, checked by the server.
fn verify_on_server(server: &Server) -> (bool, String) {
    verdict(&server.run(&server.admin, &["audit", "verify"]))
}

/// What someone with write access to the database and none to the audit
/// key can do, done with the server stopped: edit an event, then also
/// recompute every hash after it and the head the server chains onto.
/// The edit fails at the event; the rehashed chain at the signed
/// checkpoint after it.
#[test]
fn an_event_rewritten_in_the_database_fails_the_servers_verification_even_rehashed() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut server = Server::persistent(&data_dir);
    let started = server.json(&server.admin, &["audit", "list"]);
    let newest = started.as_array().and_then(|events| events.last()).cloned();
    assert_eq!(
        newest.map(|event| event["kind"].clone()),
        Some(Value::from("audit.checkpoint")),
        "start-up signs the head before the API answers: {started}"
    );
    server.apply(
        temp.path(),
        "target \"svc\" {\n  type = \"jwt\"\n  config = { audience = \"svc\" }\n}\n\
         role \"svc-read\" {\n  target = \"svc\"\n  max_duration = \"1h\"\n  \
         requestable_by = [\"group:dev\"]\n  auto_approve = true\n}\n",
    );
    let dana = server.token("dana", "dev");
    let grant = server.json(&dana, &["request", "svc-read", "--reason", "INC-30 dana's own"]);
    server.json(&dana, &["release", grant["id"].as_str().unwrap()]);
    let (ok, report) = verify_on_server(&server);
    assert!(ok, "{report}");
    assert!(server.terminate(), "a clean stop, which signs the head");

    let mut database = server.database();
    let events = stored_events(&mut database);
    let mut forged = events
        .iter()
        .find(|e| e.kind == "request.created")
        .expect("the request's event")
        .clone();
    let edited = forged.seq;
    forged.actor = "mallory".into();
    overwrite(&mut database, &forged);
    drop(database);
    let mut server = Server::persistent(&data_dir);
    let (ok, report) = verify_on_server(&server);
    assert!(!ok, "{report}");
    assert!(
        report.contains(&format!("FAILED at seq {edited}:")) && report.contains("changed"),
        "{report}"
    );
    assert!(server.terminate());

    let mut database = server.database();
    let mut prev_hash = events[(edited - 2) as usize].hash.clone();
    for mut event in stored_events(&mut database).into_iter().skip((edited - 1) as usize) {
        event.prev_hash = prev_hash;
        event.hash = event.compute_hash();
        overwrite(&mut database, &event);
        prev_hash = event.hash;
    }
    database.execute("UPDATE audit_head SET hash = $1 WHERE id = 1", &[&prev_hash]);
    let rehashed = stored_events(&mut database);
    assert!(
        rehashed.iter().all(AuditEvent::hash_is_intact),
        "the chain is whole again"
    );
    let checkpoint = rehashed
        .iter()
        .find(|e| e.seq > edited && e.kind == "audit.checkpoint")
        .expect("a checkpoint after the edit")
        .seq;
    drop(database);
    let server = Server::persistent(&data_dir);
    let (ok, report) = verify_on_server(&server);
    assert!(!ok, "{report}");
    assert!(
        report.contains(&format!("FAILED at seq {checkpoint}:")) && report.contains("rehashed"),
        "the signed checkpoint no longer matches: {report}"
    );
}

/// The forms an Ed25519 private key (PKCS#8, as the server makes its
/// keys) would take stored in clear: its DER header raw, in hex, and in
/// base64 or base64url at any alignment; and a PEM label.
fn private_key_forms() -> Vec<String> {
    let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("a key");
    // Up to the OCTET STRING holding the private key: the same in every key.
    let header = &document.as_ref()[..16];
    assert_eq!(header[14..], [0x04, 0x20], "the header ends where the key begins");
    let mut forms = vec![
        header.iter().map(|&b| char::from(b)).collect(),
        header.iter().map(|b| format!("{b:02x}")).collect(),
        header.iter().map(|b| format!("{b:02X}")).collect(),
        "PRIVATE KEY".to_string(),
    ];
    for shift in 0..3 {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(header);
        // The characters that depend on the header's bits alone.
        let (first, end) = ((4 * shift).div_ceil(3), 4 * (shift + header.len()) / 3);
        for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
            forms.push(engine.encode(&shifted)[first..end].to_string());
        }
    }
    forms
}

#[test]
fn the_signing_keys_are_stored_sealed() {
    let server = Server::dev();
    let storage = server.dump_storage();
    for name in ["audit_signing_key", "jwt_signing_key"] {
        assert!(storage.contains(name), "the store holds the {name}");
    }
    for form in private_key_forms() {
        assert!(
            !storage.contains(&form),
            "a private key is stored in clear (found {form:?})"
        );
    }
}
