//! Request → approval → credential → expiry/revoke/release, through the CLI.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Server, jwt_claims};
use serde_json::Value;

#[test]
fn approval_flow_issues_a_jwt_that_stops_working_on_revoke() {
    let server = Server::dev();
    // alice waits in the background while bob approves.
    let waiting = server
        .cli(&server.alice)
        .args([
            "--output",
            "json",
            "request",
            "demo-admin",
            "--for",
            "30m",
            "--reason",
            "INC-7: fix the demo",
            "--ticket",
            "INC-7",
            "--wait",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the waiting request");
    let pending = loop {
        let requests = server.json(&server.bob, &["requests", "--state", "pending"]);
        if let Some(first) = requests.as_array().and_then(|list| list.first()).cloned() {
            break first;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let id = pending["id"].as_str().expect("id").to_string();
    assert_eq!(pending["requester"], "alice");
    assert_eq!(pending["reason"], "INC-7: fix the demo");
    assert_eq!(pending["ticket"], "INC-7");
    assert_eq!(pending["duration_seconds"], 1800);
    assert_eq!(
        pending["activated_at"],
        Value::Null,
        "time has not started before approval"
    );

    let approved = server.json(&server.bob, &["approve", &id, "--comment", "go ahead"]);
    assert_eq!(approved["state"], "active");
    assert_eq!(approved["approvals"][0]["approver"], "bob");
    assert_eq!(approved["approvals"][0]["comment"], "go ahead");

    let output = waiting.wait_with_output().expect("wait for --wait");
    assert!(
        output.status.success(),
        "--wait must exit 0 once active: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let credential: Value = serde_json::from_slice(&output.stdout).expect("credential JSON");
    let token = credential["token"].as_str().expect("token").to_string();

    let claims = jwt_claims(&token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "demo");
    assert_eq!(claims["role"], "demo-admin");
    assert_eq!(claims["jti"], id.as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
        1800,
        "access time counts from activation"
    );
    let jwks = server.http("GET", "/.well-known/jwks.json", None, None).1;
    let header = jwt_claims(&format!("x.{}", token.split('.').next().unwrap()));
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");

    assert_eq!(server.introspect(&token)["active"], true);
    assert_eq!(server.introspect(&token)["sub"], "alice");

    // Only the requester can fetch the secret.
    let (_, stderr) = server.fails(&server.bob, &["credentials", &id]);
    assert!(stderr.contains("requester"), "{stderr}");

    // bob is an approver of demo-admin, so he may revoke.
    let revoked = server.json(&server.bob, &["revoke", &id, "--reason", "incident closed"]);
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(
        server.introspect(&token)["active"],
        false,
        "introspection must answer inactive at once"
    );
    let (_, stderr) = server.fails(&server.alice, &["credentials", &id]);
    assert!(stderr.contains("revoked"), "{stderr}");
}

#[test]
fn self_approval_is_refused_even_for_an_approver() {
    let server = Server::dev();
    let carol = server.json(
        &server.admin,
        &["token", "create", "--principal", "carol", "--groups", "dev,approvers"],
    );
    let carol = carol["token"].as_str().expect("token").to_string();
    let request = server.json(&carol, &["request", "demo-admin", "--for", "10m", "--reason", "self"]);
    let id = request["id"].as_str().unwrap();
    let events_before = server.audit_len();
    let (code, stderr) = server.fails(&carol, &["approve", id]);
    assert_eq!(code, 1);
    assert!(stderr.contains("your own request"), "{stderr}");
    assert_eq!(server.json(&carol, &["show", id])["state"], "pending");
    assert_eq!(server.audit_len(), events_before, "a refused approval changes nothing");
    // alice is not an approver at all: to her the request does not exist.
    let (_, stderr) = server.fails(&server.alice, &["approve", id]);
    assert!(stderr.contains("no request"), "{stderr}");
    // dave is in the approvers group of another role only... and bob in
    // demo-admin's: the rule itself names who may approve.
    let (_, stderr) = server.fails(&carol, &["deny", id]);
    assert!(stderr.contains("your own request"), "{stderr}");
    // Once approved, further approvals are refused.
    let approved = server.json(&server.bob, &["approve", id]);
    assert_eq!(approved["state"], "active");
    let (_, stderr) = server.fails(&server.bob, &["approve", id]);
    assert!(stderr.contains("active"), "{stderr}");
}

#[test]
fn denial_ends_the_request_and_wait_exits_non_zero() {
    let server = Server::dev();
    let request = server.json(
        &server.alice,
        &["request", "demo-admin", "--for", "10m", "--reason", "please"],
    );
    let id = request["id"].as_str().unwrap().to_string();
    // Asking again while it is pending is that same request, never a second;
    // --wait follows it.
    let waiting = server
        .cli(&server.alice)
        .args(["request", "demo-admin", "--for", "10m", "--reason", "second", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pending = server.json(&server.bob, &["requests", "--state", "pending"]);
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");
    let denied = server.json(&server.bob, &["deny", &id, "--comment", "not now"]);
    assert_eq!(denied["state"], "denied");
    assert_eq!(denied["decision"]["by"], "bob");
    let output = waiting.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(3), "a denied --wait exits 3");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("you already have request {id}")), "{stderr}");
    let (_, stderr) = server.fails(&server.bob, &["approve", &id]);
    assert!(stderr.contains("denied"), "{stderr}");

    // Once closed, the role can be asked for again: a new request.
    let again = server.json(
        &server.alice,
        &["request", "demo-admin", "--for", "10m", "--reason", "third"],
    );
    let again = again["id"].as_str().unwrap().to_string();
    assert_ne!(again, id);
    // Cancel is for the requester; bob may not cancel alice's request.
    server.fails(&server.bob, &["cancel", &again]);
    assert_eq!(server.json(&server.alice, &["cancel", &again])["state"], "cancelled");
    let mine = server.json(&server.alice, &["requests", "--mine"]);
    assert_eq!(mine.as_array().unwrap().len(), 2);
}

#[test]
fn grants_expire_on_time_and_can_be_released() {
    let server = Server::dev();
    let short = server.json(
        &server.alice,
        &["request", "demo-read", "--for", "2s", "--reason", "quick look"],
    );
    assert_eq!(short["state"], "active", "demo-read is auto-approved");
    let id = short["id"].as_str().unwrap().to_string();
    let token = server.json(&server.alice, &["credentials", &id])["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(server.introspect(&token)["active"], true);
    let active = server.json(&server.alice, &["grants", "--active"]);
    assert!(active.as_array().unwrap().iter().any(|g| g["id"] == id.as_str()));

    let expired = server.wait_state(&server.alice, &id, "expired", Duration::from_secs(10));
    let lag = chrono_lag(&expired);
    assert!(lag < 2.0, "expired {lag}s after expires_at");
    assert_eq!(server.introspect(&token)["active"], false);
    assert!(
        !server
            .json(&server.alice, &["grants", "--active"])
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == id.as_str())
    );

    let long = server.json(
        &server.alice,
        &["request", "demo-read", "--for", "30m", "--reason", "longer"],
    );
    let long_id = long["id"].as_str().unwrap();
    server.fails(&server.bob, &["release", long_id]);
    let released = server.json(&server.alice, &["release", long_id]);
    assert_eq!(released["state"], "released");
    // demo-read has no approvers: only admins may revoke, and it is over anyway.
    let (_, stderr) = server.fails(&server.admin, &["revoke", long_id, "--reason", "x"]);
    assert!(stderr.contains("released"), "{stderr}");
}

/// Seconds between `expires_at` and `ended_at` of a record.
fn chrono_lag(record: &Value) -> f64 {
    let parse = |field: &str| -> f64 {
        let text = record[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing in {record}"));
        let at = chrono::DateTime::parse_from_rfc3339(text).expect("an RFC 3339 time");
        at.timestamp() as f64 + f64::from(at.timestamp_subsec_nanos()) / 1e9
    };
    parse("ended_at") - parse("expires_at")
}
