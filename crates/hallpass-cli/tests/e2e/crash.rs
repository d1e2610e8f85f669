//! Durability across crashes: `kill -9` while a grant is active, restart
//! after its expiry, and the grant is revoked before the API answers.

use std::time::Duration;

use crate::harness::Server;

const ROLE_FILE: &str = r#"
target "svc" {
  type   = "jwt"
  config = { audience = "svc" }
}
role "svc-read" {
  target         = "svc"
  max_duration   = "1h"
  requestable_by = ["group:dev"]
  auto_approve   = true
}
"#;

#[test]
fn overdue_grant_is_revoked_at_start_up_after_kill_9() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut server = Server::persistent(&data_dir);
    let file = temp.path().join("access.hcl");
    std::fs::write(&file, ROLE_FILE).unwrap();
    server.json(&server.admin, &["apply", "-f", file.to_str().unwrap()]);
    let dev = server.json(
        &server.admin,
        &["token", "create", "--principal", "dana", "--groups", "dev"],
    );
    let dana = dev["token"].as_str().unwrap().to_string();
    // A second principal: dana asking again would extend her own grant.
    let erin = server.token("erin", "dev");

    let short = server.json(
        &dana,
        &["request", "svc-read", "--for", "2s", "--reason", "before the crash"],
    );
    let long = server.json(
        &erin,
        &["request", "svc-read", "--for", "1h", "--reason", "survives the crash"],
    );
    let short_id = short["id"].as_str().unwrap().to_string();
    let long_id = long["id"].as_str().unwrap().to_string();
    assert_eq!(short["state"], "active");

    server.kill_hard();
    std::thread::sleep(Duration::from_secs(3));

    let server = Server::persistent(&data_dir);
    // The very first answer after start-up already shows the grant ended.
    let after = server.json(&dana, &["show", &short_id]);
    assert_eq!(
        after["state"], "expired",
        "overdue grant must be revoked at start-up: {after}"
    );
    assert_eq!(after["ended_by"]["by"], "hallpass");
    assert_eq!(
        server.json(&erin, &["show", &long_id])["state"],
        "active",
        "grants not yet due stay active"
    );

    let events = server.json(&server.admin, &["audit", "list", "--request", &short_id]);
    let kinds: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["request.created", "grant.activated", "grant.expired"]);
    assert_eq!(server.json(&server.admin, &["audit", "verify"])["ok"], true);
}

#[test]
fn graceful_shutdown_on_sigterm_and_restart_keeps_everything() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut server = Server::persistent(&data_dir);
    let created = server.json(
        &server.admin,
        &[
            "token",
            "create",
            "--principal",
            "erin",
            "--groups",
            "ops",
            "--ttl",
            "30d",
        ],
    );
    assert!(server.terminate(), "SIGTERM must stop the server cleanly with exit 0");
    let server = Server::persistent(&data_dir);
    let erin = created["token"].as_str().unwrap();
    let whoami = server.json(erin, &["whoami"]);
    assert_eq!(whoami["principal"], "erin");
    // The bootstrap token is created only on the first start.
    let tokens = server.json(&server.admin, &["token", "list"]);
    assert_eq!(tokens.as_array().unwrap().len(), 2);
}

#[test]
fn wrong_seal_key_fails_clearly_and_changes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let server = Server::persistent(&data_dir);
    let events = server.audit_len();
    drop(server);

    // HALLPASS_SEAL_KEY wins over the key file (SQLite) and replaces the
    // suite's key (PostgreSQL).
    let wrong = "d3Jvbmctc2VhbC1rZXktd3Jvbmctc2VhbC1rZXktISE=";
    let (mut command, _) = Server::command(&data_dir, "127.0.0.1:9");
    let output = command
        .env("HALLPASS_SEAL_KEY", wrong)
        .output()
        .expect("run hallpass server");
    assert!(!output.status.success(), "a wrong seal key must stop the server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("seal key does not match"), "{stderr}");
    assert!(!stderr.contains(wrong), "the key is not echoed: {stderr}");

    let server = Server::persistent(&data_dir);
    assert_eq!(server.audit_len(), events, "the failed start changed nothing");
    assert_eq!(server.json(&server.admin, &["audit", "verify"])["ok"], true);
}

#[test]
fn a_second_server_on_one_sqlite_directory_is_refused() {
    // SQLite on purpose, whatever the suite's backend: this is its rule.
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let start = |port: u16| {
        std::process::Command::new(crate::harness::hallpass_bin())
            .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data_dir)
            .env("HALLPASS_BOOTSTRAP_TOKEN", crate::harness::ROOT_TOKEN)
            .env_remove("HALLPASS_SEAL_KEY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start hallpass server")
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut first = start(port);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the first server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = start(0).wait_with_output().expect("second server");
    let _ = first.kill();
    let _ = first.wait();
    assert!(
        !second.status.success(),
        "two servers on one SQLite directory would both end grants"
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another hallpass server is using"), "{stderr}");
}
