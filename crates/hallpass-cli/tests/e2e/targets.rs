//! What every target type shares, through the CLI: `target test`,
//! `target rotate`, `target krl`, a role's `grant` block checked by the
//! target's type, a public key only where the type certifies one, and the
//! `verified` field of the event that ends a grant.

use serde_json::Value;

use crate::harness::{Server, write_file};

#[test]
fn target_test_is_for_admins_and_reports_each_check() {
    let server = Server::dev();
    let output = server.run(&server.admin, &["target", "test", "demo"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("ok   settings:"), "{stdout}");
    assert!(stdout.contains("target demo passed every check"), "{stdout}");
    let report = server.json(&server.admin, &["target", "test", "demo"]);
    assert_eq!(report["ok"], true);
    assert_eq!(report["checks"][0]["name"], "settings");

    let (_, stderr) = server.fails(&server.alice, &["target", "test", "demo"]);
    assert!(stderr.contains("admin"), "{stderr}");
    let (_, stderr) = server.fails(&server.admin, &["target", "test", "nowhere"]);
    assert!(stderr.contains("no target \"nowhere\""), "{stderr}");
}

#[test]
fn rotation_and_revocation_lists_are_refused_by_types_without_them() {
    let server = Server::dev();
    let (_, stderr) = server.fails(&server.admin, &["target", "rotate", "demo"]);
    assert!(stderr.contains("jwt targets have no admin password"), "{stderr}");
    let (_, stderr) = server.fails(&server.admin, &["target", "krl", "demo"]);
    assert!(stderr.contains("has no revocation list"), "{stderr}");
    let (status, _) = server.http("GET", "/v1/targets/demo/krl", None, None);
    assert_eq!(status, 404);
    let target = server.json(&server.admin, &["target", "show", "demo"]);
    assert!(target.get("ca_public_key").is_none(), "{target}");
}

#[test]
fn a_grant_block_the_target_type_does_not_take_is_refused_and_changes_nothing() {
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    let file = write_file(
        temp.path(),
        "access.hcl",
        r#"
role "demo-extra" {
  target         = "demo"
  max_duration   = "1h"
  requestable_by = ["group:dev"]
  auto_approve   = true
  grant {
    roles = ["app_read"]
  }
}
"#,
    );
    let (_, stderr) = server.fails(&server.admin, &["apply", "-f", &file]);
    assert!(
        stderr.contains("role \"demo-extra\" (target \"demo\")") && stderr.contains("take no `grant` block"),
        "{stderr}"
    );
    let (_, stderr) = server.fails(&server.admin, &["role", "show", "demo-extra"]);
    assert!(stderr.contains("no role"), "{stderr}");
}

#[test]
fn a_public_key_is_refused_for_types_that_certify_none() {
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    let key = write_file(
        temp.path(),
        "id.pub",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9e me@laptop\n",
    );
    let (_, stderr) = server.fails(
        &server.alice,
        &["request", "demo-read", "--reason", "look", "--ssh-public-key", &key],
    );
    assert!(
        stderr.contains("ssh_public_key") && stderr.contains("jwt targets do not take a public key"),
        "{stderr}"
    );
    let requests = server.json(&server.alice, &["requests", "--mine"]);
    assert_eq!(
        requests.as_array().map(Vec::len),
        Some(0),
        "nothing was recorded: {requests}"
    );
}

#[test]
fn the_end_of_a_grant_says_whether_its_revocation_was_verified() {
    let server = Server::dev();
    let grant = server.json(
        &server.alice,
        &["request", "demo-read", "--for", "10m", "--reason", "look"],
    );
    let id = grant["id"].as_str().unwrap().to_string();
    server.json(&server.alice, &["release", &id]);
    let export = String::from_utf8(server.run(&server.admin, &["audit", "export"]).stdout).unwrap();
    let released: Value = export
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|event| event["kind"] == "grant.released" && event["request_id"] == id.as_str())
        .expect("a grant.released event");
    // A signed JWT cannot be observed on its audience: not verified, and
    // not claimed to be either.
    assert_eq!(released["data"]["verified"], Value::Null, "{released}");
    assert!(
        released["data"].as_object().unwrap().contains_key("verified"),
        "{released}"
    );
}
