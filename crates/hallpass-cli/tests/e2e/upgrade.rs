//! This release started on data the first release wrote (fixtures in
//! `tests/fixtures/release-0.1`, on SQLite and PostgreSQL): every stored
//! document and record still reads, the old audit chain still verifies,
//! and credentials the old release kept in a webhook URL are moved into
//! sealed secrets at start-up, logged, and audited by name only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{Server, database_for, postgres_base_url};

/// The admin token the fixtures were made with.
const FIXTURE_ADMIN: &str = "hp_fixture_root_token_01234567";
/// Credentials inside the old webhook URL.
const OLD_PASSWORD: &str = "hook-pass-7f3a9c";
const OLD_QUERY_TOKEN: &str = "legacy-query-token-4b2e";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/release-0.1")
}

fn seal_key() -> String {
    std::fs::read_to_string(fixtures().join("seal.key")).expect("fixture seal key")
}

/// What must hold on any store the first release wrote.
fn check_upgraded(server: &mut Server) {
    server.admin = FIXTURE_ADMIN.to_string();
    let panel = server.json(&server.admin, &["target", "show", "panel"]);
    assert_eq!(
        panel["config"]["url"], "https://127.0.0.1:9/hallpass",
        "no credentials left in the URL"
    );
    let names: Vec<&str> = panel["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["basic_auth", "hmac_secret", "url_query"]);
    assert!(!panel.to_string().contains(OLD_PASSWORD));

    let logs = server.logs();
    assert!(logs.contains("sealed secrets") && logs.contains("rotate"), "{logs}");
    assert!(
        !logs.contains(OLD_PASSWORD) && !logs.contains(OLD_QUERY_TOKEN),
        "{logs}"
    );

    let events = server.json(&server.admin, &["audit", "list", "--limit", "10000"]);
    let upgrade = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "target.secrets_upgraded")
        .expect("the upgrade is audited");
    assert_eq!(upgrade["actor"], "hallpass");
    assert!(!upgrade.to_string().contains(OLD_PASSWORD) && !upgrade.to_string().contains(OLD_QUERY_TOKEN));

    // Everything the old release stored reads as before.
    for (list, expected) in [("role", 4), ("flow", 1), ("policy", 1), ("target", 2)] {
        let listed = server.json(&server.admin, &[list, "list"]);
        assert_eq!(listed.as_array().map(Vec::len), Some(expected), "{list}: {listed}");
    }
    let requests = server.json(&server.admin, &["requests"]);
    let denied = requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "forbidden")
        .expect("the policy-denied request");
    assert_eq!(denied["policy"]["deny"][0], "reason 'forbidden' is not allowed");
    assert!(
        requests.as_array().unwrap().iter().all(|r| r["state"] != "active"),
        "grants that ran out while the old server was down were ended at start-up"
    );

    // The old chain and everything after it verify, signed.
    let report = server.json(&server.admin, &["audit", "verify"]);
    assert_eq!(report["ok"], true, "{report}");
    // Apply the same configuration again: nothing changes (documents are
    // compared in their meaning, whatever version they were stored in).
    let temp = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(fixtures().join("access.hcl")).unwrap().replace(
        "https://hook-user:hook-pass-7f3a9c@127.0.0.1:9/hallpass?team=ops&token=legacy-query-token-4b2e",
        "https://127.0.0.1:9/hallpass",
    );
    let again = server.apply(temp.path(), &config);
    let changed: Vec<&Value> = again["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "unchanged")
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
    // And it works: a new grant on the old configuration.
    let bob = server.token("bob2", "dev");
    let grant = server.json(&bob, &["request", "demo-read", "--reason", "after the upgrade"]);
    assert_eq!(grant["state"], "active");
}

#[test]
fn a_sqlite_store_written_by_release_0_1_upgrades_in_place() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(fixtures().join("hallpass.db"), data.join("hallpass.db")).unwrap();
    std::fs::copy(fixtures().join("seal.key"), data.join("seal.key")).unwrap();
    std::fs::set_permissions(data.join("seal.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut server = Server::with_env(&data, None, &[]);
    check_upgraded(&mut server);
}

#[test]
fn a_postgres_store_written_by_release_0_1_upgrades_in_place() {
    let temp = tempfile::tempdir().unwrap();
    let url = database_for(&postgres_base_url(), temp.path());
    let restored = std::process::Command::new("psql")
        .arg(&url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-f"])
        .arg(fixtures().join("postgres.sql"))
        .output()
        .expect("run psql");
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let key = seal_key();
    let mut server = Server::with_env(
        &temp.path().join("replica"),
        Some(url),
        &[("HALLPASS_SEAL_KEY", key.trim())],
    );
    check_upgraded(&mut server);
}
