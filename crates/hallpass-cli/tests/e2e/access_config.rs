//! `hallpass apply -f`: idempotent, dry-run, positioned errors.

use crate::harness::{Server, change_actions, write_file};

const CONFIG: &str = r#"
target "billing" {
  type   = "jwt"
  config = { audience = "billing-api" }
}

role "billing-admin" {
  target           = "billing"
  description      = "Admin on the billing API"
  default_duration = "1h"
  max_duration     = "4h"
  requestable_by   = ["group:dev"]
  labels           = { env = "prod" }
  approval {
    approvers = ["group:approvers", "user:carol"]
    required  = 1
  }
}
"#;

#[test]
fn apply_is_idempotent_and_dry_run_changes_nothing() {
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    let file = write_file(temp.path(), "access.hcl", CONFIG);

    let dry = server.json(&server.admin, &["apply", "-f", &file, "--dry-run"]);
    assert_eq!(
        change_actions(&dry),
        ["create target billing", "create role billing-admin"]
    );
    let (_, stderr) = server.fails(&server.admin, &["role", "show", "billing-admin"]);
    assert!(stderr.contains("no role"), "dry run created the role: {stderr}");

    let first = server.json(&server.admin, &["apply", "-f", &file]);
    assert_eq!(
        change_actions(&first),
        ["create target billing", "create role billing-admin"]
    );
    let events = server.audit_len();
    let second = server.json(&server.admin, &["apply", "-f", &file]);
    assert_eq!(
        change_actions(&second),
        ["unchanged target billing", "unchanged role billing-admin"]
    );
    assert_eq!(server.audit_len(), events, "applying twice changes nothing");

    let role = server.json(&server.alice, &["role", "show", "billing-admin"]);
    assert_eq!(role["max_duration_seconds"], 14400);
    assert_eq!(
        role["approval"]["approvers"],
        serde_json::json!(["group:approvers", "user:carol"])
    );

    // Same meaning, other spelling: still unchanged. A real change is an update.
    let respelled = write_file(temp.path(), "b.hcl", &CONFIG.replace("\"4h\"", "\"240m\""));
    assert_eq!(
        change_actions(&server.json(&server.admin, &["apply", "-f", &respelled])),
        ["unchanged target billing", "unchanged role billing-admin"]
    );
    let changed = write_file(temp.path(), "c.hcl", &CONFIG.replace("\"4h\"", "\"2h\""));
    let dry = server.json(&server.admin, &["apply", "-f", &changed, "--dry-run"]);
    assert_eq!(
        change_actions(&dry),
        ["unchanged target billing", "update role billing-admin"]
    );
    assert_eq!(dry["changes"][1]["fields"], serde_json::json!(["max_duration"]));
    let table = server.run(&server.admin, &["apply", "-f", &changed, "--dry-run"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("billing-admin") && text.contains("max_duration"),
        "dry run prints the diff: {text}"
    );
    assert_eq!(
        server.json(&server.alice, &["role", "show", "billing-admin"])["max_duration_seconds"],
        14400
    );

    let listed = server.json(&server.alice, &["role", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let targets = server.json(&server.alice, &["target", "list"]);
    assert_eq!(targets.as_array().unwrap().len(), 2);

    let (_, stderr) = server.fails(&server.admin, &["target", "delete", "billing"]);
    assert!(
        stderr.contains("billing-admin"),
        "a target in use cannot be deleted: {stderr}"
    );
    assert!(
        server
            .run(&server.admin, &["role", "delete", "billing-admin"])
            .status
            .success()
    );
    assert!(
        server
            .run(&server.admin, &["target", "delete", "billing"])
            .status
            .success()
    );
}

#[test]
fn broken_files_are_rejected_with_line_and_column() {
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    let before = server.audit_len();
    let typo = write_file(
        temp.path(),
        "typo.hcl",
        &CONFIG.replace("max_duration     = \"4h\"", "max_duraton      = \"4h\""),
    );
    let (code, stderr) = server.fails(&server.admin, &["apply", "-f", &typo]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("typo.hcl:11:3"),
        "unknown field at its line and column: {stderr}"
    );
    assert!(stderr.contains("max_duraton"), "{stderr}");

    let syntax = write_file(temp.path(), "syntax.hcl", "target \"x\" {\n  type = \n}\n");
    let (_, stderr) = server.fails(&server.admin, &["apply", "-f", &syntax]);
    assert!(stderr.contains("syntax.hcl:"), "{stderr}");

    let dangling = write_file(
        temp.path(),
        "dangling.hcl",
        "role \"r\" {\n  target = \"nowhere\"\n  max_duration = \"1h\"\n  requestable_by = [\"group:dev\"]\n  auto_approve = true\n}\n",
    );
    let (_, stderr) = server.fails(&server.admin, &["apply", "-f", &dangling]);
    assert!(stderr.contains("nowhere"), "{stderr}");
    let (_, stderr) = server.fails(
        &server.alice,
        &["apply", "-f", &write_file(temp.path(), "ok.hcl", CONFIG)],
    );
    assert!(stderr.contains("admin"), "{stderr}");
    assert_eq!(server.audit_len(), before);
}

#[test]
fn a_target_with_live_grants_cannot_be_deleted_until_they_end() {
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    let config = "target \"billing\" {\n  type = \"jwt\"\n  config = { audience = \"billing-api\" }\n}\n\
                  role \"billing-read\" {\n  target = \"billing\"\n  max_duration = \"1h\"\n  \
                  requestable_by = [\"group:dev\"]\n  auto_approve = true\n}\n";
    server.apply(temp.path(), config);
    let grant = server.json(&server.alice, &["request", "billing-read", "--reason", "INC-40 live"]);
    assert_eq!(grant["state"], "active");
    let id = grant["id"].as_str().unwrap();
    // The role may go while its grant runs; the target it holds may not.
    assert!(
        server
            .run(&server.admin, &["role", "delete", "billing-read"])
            .status
            .success()
    );
    let target = server.json(&server.alice, &["target", "show", "billing"]);
    let events = server.audit_len();
    let (status, body) = server.http("DELETE", "/v1/targets/billing", Some(&server.admin), None);
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "in_use");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("live grants") && message.contains(id), "{body}");
    let (_, stderr) = server.fails(&server.admin, &["target", "delete", "billing"]);
    assert!(stderr.contains(id), "{stderr}");
    assert_eq!(server.audit_len(), events, "a refused deletion records nothing");
    assert_eq!(
        server.json(&server.alice, &["target", "show", "billing"]),
        target,
        "and changes nothing"
    );

    assert_eq!(server.json(&server.alice, &["release", id])["state"], "released");
    assert!(
        server
            .run(&server.admin, &["target", "delete", "billing"])
            .status
            .success()
    );
    let (_, stderr) = server.fails(&server.alice, &["target", "show", "billing"]);
    assert!(stderr.contains("no target"), "{stderr}");
}
