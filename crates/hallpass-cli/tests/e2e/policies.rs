//! Policy as code through the CLI: upload with compile errors refused,
//! decisions (deny, auto-approve, cap, flow choice) applied to real requests
//! and recorded in the audit log with the policy-set hash, fail-closed
//! evaluation, `policy test` and `policy eval`.

use std::path::Path;

use crate::harness::{Server, change_actions, write_file};
use serde_json::Value;

/// Runs a CLI command expected to fail; returns its exit code and all output.
fn refused(server: &Server, token: &str, args: &[&str]) -> (i32, String) {
    let output = server.run(token, args);
    assert!(!output.status.success(), "hallpass {args:?} unexpectedly succeeded");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

fn audit_events(server: &Server, request_id: &str) -> Vec<Value> {
    server
        .json(&server.admin, &["audit", "list", "--request", request_id])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

const PROD: &str = r#"
target "prod-pg" {
  type   = "jwt"
  config = { audience = "prod-pg" }
}
role "prod-db-write" {
  target         = "prod-pg"
  max_duration   = "4h"
  requestable_by = ["group:dev", "group:contractors", "group:oncall"]
  labels         = { env = "prod", access = "write" }
  approval {
    approvers = ["group:approvers"]
  }
}
"#;

const GUARDRAILS: &str = r#"package hallpass.request

import rego.v1

deny contains "prod write roles need a ticket: pass --ticket" if {
	input.role.labels.env == "prod"
	input.role.labels.access == "write"
	not has_ticket
}

has_ticket if {
	is_string(input.request.ticket)
	trim_space(input.request.ticket) != ""
}

auto_approve if {
	"oncall" in input.principal.groups
	input.request.duration_seconds <= 3600
}

max_duration_seconds contains 1800 if "contractors" in input.principal.groups

# Two rules giving different values for one request: an evaluation error.
approval_flow := "a" if input.request.reason == "conflict"

approval_flow := "b" if input.request.reason == "conflict"
"#;

#[test]
fn policies_decide_requests_and_every_decision_is_audited() {
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    server.apply(temp.path(), PROD);

    // A module that does not compile is refused at upload, with its position,
    // both by the CLI (file name) and by the server (policy name).
    let events = server.audit_len();
    let broken = write_file(
        temp.path(),
        "broken.rego",
        "package hallpass.request\n\nimport rego.v1\ndeny contains x if {\n",
    );
    let (code, text) = refused(&server, &server.admin, &["policy", "put", "broken", "-f", &broken]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("broken.rego:"), "the error names the file: {text}");
    let body = serde_json::to_vec(&serde_json::json!({"source": "package hallpass.request\n\ndeny contains x if {\n"}))
        .unwrap();
    let (status, answer) = server.http(
        "PUT",
        "/v1/policies/broken",
        Some(&server.admin),
        Some(("application/json", body)),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "policy_compile_error");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("broken:"),
        "position in the stored policy: {message}"
    );
    assert_eq!(server.audit_len(), events, "a refused policy changes nothing");

    let file = write_file(temp.path(), "guardrails.rego", GUARDRAILS);
    server.json(&server.admin, &["policy", "put", "guardrails", "-f", &file]);
    let listed = server.json(&server.admin, &["policy", "list"]);
    assert_eq!(listed[0]["name"], "guardrails");
    let shown = server.json(&server.alice, &["policy", "show", "guardrails"]);
    assert_eq!(shown["source"], GUARDRAILS);

    // deny: shown verbatim, exit 3, recorded as a denied request with the
    // decision and the hash of the set that made it.
    let (code, text) = refused(
        &server,
        &server.alice,
        &["request", "prod-db-write", "--for", "1h", "--reason", "INC-1: fix"],
    );
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("prod write roles need a ticket: pass --ticket"), "{text}");
    let denied = server.json(&server.alice, &["requests", "--mine", "--state", "denied"]);
    let denied = &denied[0];
    assert_eq!(denied["decision"]["by"], "policy");
    let hash = denied["policy"]["policy_hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64);
    let events = audit_events(&server, denied["id"].as_str().unwrap());
    assert_eq!(events[0]["kind"], "request.denied");
    assert_eq!(events[0]["data"]["policy"]["policy_hash"], hash.as_str());
    assert_eq!(
        events[0]["data"]["policy"]["deny"][0],
        "prod write roles need a ticket: pass --ticket"
    );

    // With a ticket the role's own approval applies.
    let pending = server.json(
        &server.alice,
        &[
            "request",
            "prod-db-write",
            "--for",
            "1h",
            "--reason",
            "INC-1",
            "--ticket",
            "INC-1",
        ],
    );
    assert_eq!(pending["state"], "pending");
    assert_eq!(pending["policy"]["deny"], serde_json::json!([]));

    // auto_approve: on-call self-serves up to an hour, not longer.
    let oncall = server.token("olga", "oncall");
    let granted = server.json(
        &oncall,
        &[
            "request",
            "prod-db-write",
            "--for",
            "1h",
            "--reason",
            "page",
            "--ticket",
            "INC-2",
        ],
    );
    assert_eq!(granted["state"], "active", "{granted}");
    assert!(granted["auto_approved"].as_bool().unwrap());
    let long = server.json(
        &oncall,
        &[
            "request",
            "prod-db-write",
            "--for",
            "2h",
            "--reason",
            "page",
            "--ticket",
            "INC-2",
        ],
    );
    assert_eq!(
        long["id"], granted["id"],
        "asking again for a held role extends that grant"
    );

    // max_duration_seconds: a cap; longer asks are denied, defaults shortened.
    let contractor = server.token("carl", "contractors");
    let (code, text) = refused(
        &server,
        &contractor,
        &[
            "request",
            "prod-db-write",
            "--for",
            "1h",
            "--reason",
            "x",
            "--ticket",
            "T-1",
        ],
    );
    assert_eq!(code, 3);
    assert!(
        text.contains("policy caps this request at 30m; ask for 30m or less"),
        "{text}"
    );
    let capped = server.json(
        &contractor,
        &["request", "prod-db-write", "--reason", "x", "--ticket", "T-1"],
    );
    assert_eq!(capped["duration_seconds"], 1800, "default shortened to the cap");

    // An evaluation error fails closed, with the error. (Not alice: her
    // pending request above is the one open request she may have.)
    let zoe = server.token("zoe", "dev");
    let (code, text) = refused(
        &server,
        &zoe,
        &["request", "prod-db-write", "--reason", "conflict", "--ticket", "T-2"],
    );
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("policy evaluation failed") && text.contains("fail closed"),
        "{text}"
    );

    // policy eval: the same decision for a hypothetical input.
    let input = serde_json::json!({
        "principal": {"name": "zed", "kind": "user", "groups": ["dev"]},
        "role": {"name": "prod-db-write", "target": "prod-pg", "target_type": "jwt", "max_duration_seconds": 14400,
                 "labels": {"env": "prod", "access": "write"}},
        "request": {"duration_seconds": 3600, "reason": "r", "ticket": null, "emergency": false, "extension": false,
                    "scheduled_start": null},
        "context": {"now": "2026-11-21T10:00:00Z", "weekday": "Sat", "hour": 10, "active_grants": 0}
    });
    let input_file = write_file(temp.path(), "input.json", &input.to_string());
    let decision = server.json(&server.alice, &["policy", "eval", "--input", &input_file]);
    assert_eq!(decision["deny"][0], "prod write roles need a ticket: pass --ticket");
    assert_eq!(decision["policy_hash"], hash.as_str());

    // Deleting the policy changes the set (and its hash): no more denial.
    server.run(&server.admin, &["policy", "delete", "guardrails"]);
    let after = server.json(&zoe, &["request", "prod-db-write", "--reason", "INC-3"]);
    assert_eq!(after["state"], "pending");
    assert_ne!(after["policy"]["policy_hash"], hash.as_str());
}

#[test]
fn policies_in_apply_files_are_idempotent_and_choose_flows() {
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    std::fs::create_dir(temp.path().join("rego")).unwrap();
    write_file(
        &temp.path().join("rego"),
        "routing.rego",
        "package hallpass.request\n\nimport rego.v1\n\napproval_flow := \"security\" if input.role.labels.env == \"prod\"\n",
    );
    let config = format!(
        "{PROD}\napproval_flow \"security\" {{\n  stage {{\n    approvers = [\"group:security\"]\n  }}\n}}\npolicy \"routing\" {{\n  source_file = \"rego/routing.rego\"\n}}\n"
    );
    let first = server.apply(temp.path(), &config);
    let kinds = change_actions(&first);
    assert!(kinds.contains(&"create policy routing".to_string()), "{kinds:?}");
    assert!(
        kinds.contains(&"create approval_flow security".to_string()),
        "{kinds:?}"
    );
    let events = server.audit_len();
    let second = server.apply(temp.path(), &config);
    assert!(
        second["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["action"] == "unchanged"),
        "{second}"
    );
    assert_eq!(server.audit_len(), events);

    // The policy sends prod requests through the security flow instead of
    // the role's own approvers.
    let request = server.json(&server.alice, &["request", "prod-db-write", "--reason", "INC-4"]);
    assert_eq!(request["approval"]["flow"], "security");
    assert_eq!(request["approval"]["stages"][0]["approvers"][0], "group:security");
    let (_, stderr) = server.fails(&server.bob, &["approve", request["id"].as_str().unwrap()]);
    assert!(stderr.contains("group:security"), "{stderr}");
    let security = server.token("sam", "security");
    let approved = server.json(&security, &["approve", request["id"].as_str().unwrap()]);
    assert_eq!(approved["state"], "active");

    // A Rego error in a source_file is reported at the .rego position.
    write_file(
        &temp.path().join("rego"),
        "routing.rego",
        "package hallpass.request\n\nx := \n",
    );
    let file = temp.path().join("access.hcl");
    let (code, stderr) = server.fails(&server.admin, &["apply", "-f", &file.to_string_lossy()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("routing.rego:"), "{stderr}");
}

#[test]
fn policy_test_runs_rego_tests_like_opa() {
    let server = Server::dev();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let passed = server.run(&server.admin, &["policy", "test", &examples.to_string_lossy()]);
    assert!(
        passed.status.success(),
        "the example policies' tests pass: {}{}",
        String::from_utf8_lossy(&passed.stdout),
        String::from_utf8_lossy(&passed.stderr)
    );
    let temp = tempfile::tempdir().unwrap();
    write_file(
        temp.path(),
        "p.rego",
        "package hallpass.request\n\nimport rego.v1\n\ndeny contains \"no\" if input.request.reason == \"\"\n",
    );
    write_file(
        temp.path(),
        "p_test.rego",
        "package hallpass.request_test\n\nimport rego.v1\n\nimport data.hallpass.request\n\ntest_passes if { \"no\" in request.deny with input as {\"request\": {\"reason\": \"\"}} }\n\ntest_fails if { count(request.deny) == 1 with input as {\"request\": {\"reason\": \"ok\"}} }\n",
    );
    let (code, text) = refused(
        &server,
        &server.admin,
        &["policy", "test", &temp.path().to_string_lossy()],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("test_fails"), "{text}");
}
