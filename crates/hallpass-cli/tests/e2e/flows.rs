//! Approval flows, break-glass, extensions, scheduling and overlapping
//! grants, through the CLI against a real server on real (short) time.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::Server;
use chrono::{DateTime, Utc};
use serde_json::Value;

const FLOWS: &str = r#"
target "prod-pg" {
  type   = "jwt"
  config = { audience = "prod-pg" }
}
approval_flow "peer-then-security" {
  pending_ttl = "1h"
  stage {
    approvers   = ["group:dev-leads"]
    required    = 1
    timeout     = "2s"
    escalate_to = ["group:security"]
  }
  stage {
    approvers = ["group:security", "group:dev-leads"]
    required  = 2
  }
}
approval_flow "quick" {
  pending_ttl = "2s"
  stage {
    approvers = ["group:approvers"]
  }
}
role "prod-db" {
  target         = "prod-pg"
  max_duration   = "4h"
  requestable_by = ["group:dev"]
  approval_flow  = "peer-then-security"
  emergency_access = true
}
role "short-lived" {
  target         = "prod-pg"
  max_duration   = "1h"
  requestable_by = ["group:dev"]
  approval_flow  = "quick"
}
role "self-extend" {
  target         = "prod-pg"
  max_duration   = "1h"
  requestable_by = ["group:dev"]
  approval       { approvers = ["group:approvers"] }
  extension_requires_approval = false
}
"#;

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a time: {value}"))
}

fn id(request: &Value) -> String {
    request["id"].as_str().expect("id").to_string()
}

fn kinds(server: &Server, request_id: &str) -> Vec<String> {
    server
        .json(&server.admin, &["audit", "list", "--request", request_id])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

fn setup() -> (Server, tempfile::TempDir) {
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    server.apply(temp.path(), FLOWS);
    (server, temp)
}

#[test]
fn stages_open_in_order_escalate_after_their_timeout_and_need_distinct_approvers() {
    let (server, _temp) = setup();
    let lead = server.token("lee", "dev-leads");
    let sam = server.token("sam", "security");
    let sue = server.token("sue", "security");
    let request = server.json(
        &server.alice,
        &["request", "prod-db", "--for", "1h", "--reason", "INC-9"],
    );
    let rid = id(&request);
    assert_eq!(request["state"], "pending");
    let stages = &request["approval"]["stages"];
    assert_eq!(stages[0]["state"], "open");
    assert_eq!(stages[0]["may_approve"], serde_json::json!(["group:dev-leads"]));
    assert_eq!(stages[1]["state"], "waiting");
    assert!(stages[0]["escalates_at"].is_string());

    // Security may not approve stage 1 before its timeout...
    let (_, stderr) = server.fails(&sam, &["approve", &rid]);
    assert!(stderr.contains("stage 1"), "{stderr}");
    // ...and `show` says who may and when escalation happens.
    let shown = server.run(&server.alice, &["show", &rid]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("group:dev-leads") && shown.contains("group:security"),
        "{shown}"
    );

    // After the timeout the scheduler records the escalation and security
    // may approve stage 1.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !kinds(&server, &rid).contains(&"request.escalated".to_string()) {
        assert!(Instant::now() < deadline, "no request.escalated event");
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = server.json(&sam, &["approve", &rid]);
    assert_eq!(after["approval"]["stages"][0]["state"], "approved");
    assert_eq!(after["approval"]["stages"][1]["state"], "open");

    // Distinct approvers: sam approved stage 1 and may not count in stage 2.
    let (_, stderr) = server.fails(&sam, &["approve", &rid]);
    assert!(stderr.contains("stage 1"), "{stderr}");
    let counted = server.json(&lead, &["approve", &rid]);
    assert_eq!(counted["state"], "pending", "stage 2 needs two");
    let (_, stderr) = server.fails(&lead, &["approve", &rid]);
    assert!(stderr.contains("already approved"), "{stderr}");
    let done = server.json(&sue, &["approve", &rid]);
    assert_eq!(done["state"], "active");
    assert_eq!(done["approvals"].as_array().unwrap().len(), 3);
}

#[test]
fn pending_requests_time_out() {
    let (server, _temp) = setup();
    let waiting = server
        .cli(&server.alice)
        .args(["request", "short-lived", "--for", "10m", "--reason", "slow", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = waiting.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "--wait exits 3 when the request times out"
    );
    let requests = server.json(&server.alice, &["requests", "--mine"]);
    let request = &requests[0];
    assert_eq!(request["state"], "timed_out");
    assert_eq!(request["decision"]["by"], "hallpass");
    let (_, stderr) = server.fails(&server.bob, &["approve", request["id"].as_str().unwrap()]);
    assert!(stderr.contains("timed_out") || stderr.contains("timed out"), "{stderr}");
    assert!(kinds(&server, request["id"].as_str().unwrap()).contains(&"request.timed_out".to_string()));
}

#[test]
fn break_glass_is_granted_at_once_flagged_and_reviewed() {
    let (server, temp) = setup();
    let policy = temp.path().join("breakglass.rego");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies/breakglass.rego"),
        &policy,
    )
    .unwrap();
    server.json(
        &server.admin,
        &["policy", "put", "breakglass", "-f", &policy.to_string_lossy()],
    );
    let (code, stderr) = server.fails(
        &server.alice,
        &["request", "prod-db", "--emergency", "--reason", "db on fire"],
    );
    assert_eq!(code, 3, "only sre may break glass: {stderr}");
    let sre = server.token("sid", "dev,sre");
    let granted = server.json(
        &sre,
        &["request", "prod-db", "--emergency", "--reason", "INC-10: db on fire"],
    );
    let gid = id(&granted);
    assert_eq!(granted["state"], "active");
    assert_eq!(granted["emergency"], true);
    assert_eq!(granted["review"]["state"], "open");
    let events = server.json(&server.admin, &["audit", "list", "--request", &gid]);
    assert_eq!(events[0]["data"]["emergency"], true);
    assert_eq!(events[1]["kind"], "grant.activated");
    assert_eq!(events[1]["data"]["emergency"], true, "the grant's event is flagged too");

    // Roles without emergency_access refuse break-glass.
    let (code, stderr) = server.fails(&sre, &["request", "short-lived", "--emergency", "--reason", "x"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("emergency"), "{stderr}");

    let lead = server.token("lee", "dev-leads");
    let reviews = server.json(&lead, &["reviews"]);
    assert_eq!(reviews[0]["id"], gid.as_str());
    let (_, stderr) = server.fails(&sre, &["review", "ack", &gid, "--comment", "fine by me"]);
    assert!(stderr.contains("own"), "{stderr}");
    // alice may not see sre's grant at all; an approver of another role may
    // see nothing to acknowledge either.
    let (_, stderr) = server.fails(&server.alice, &["review", "ack", &gid, "--comment", "ok"]);
    assert!(stderr.contains("no request"), "{stderr}");
    let acked = server.json(&lead, &["review", "ack", &gid, "--comment", "matches INC-10"]);
    assert_eq!(acked["review"]["state"], "acknowledged");
    assert_eq!(acked["review"]["acknowledged"]["by"], "lee");
    assert_eq!(server.json(&lead, &["reviews"]), serde_json::json!([]));
    assert_eq!(server.json(&lead, &["reviews", "--all"])[0]["id"], gid.as_str());
}

#[test]
fn extensions_go_through_approval_and_never_outlive_the_grant() {
    let server = Server::dev();
    // demo-admin: one approval from group:approvers (bob).
    let grant = server.json(
        &server.alice,
        &["request", "demo-admin", "--for", "1h", "--reason", "INC-11"],
    );
    let gid = id(&grant);
    let active = server.json(&server.bob, &["approve", &gid]);
    let expires = time(&active["expires_at"]);

    let asked = server.json(
        &server.alice,
        &["extend", &gid, "--by", "30m", "--reason", "not done yet"],
    );
    assert_eq!(asked["extensions"][0]["state"], "pending");
    assert_eq!(time(&asked["expires_at"]), expires, "nothing moves before approval");
    let (_, stderr) = server.fails(&server.alice, &["extend", &gid, "--by", "5m", "--reason", "again"]);
    assert!(stderr.contains("already has extension 1 pending"), "{stderr}");
    let extended = server.json(&server.bob, &["approve", &gid]);
    assert_eq!(extended["extensions"][0]["state"], "approved");
    assert_eq!(time(&extended["expires_at"]), expires + chrono::Duration::minutes(30));
    let credential = server.json(&server.alice, &["credentials", &gid]);
    let claims = crate::harness::jwt_claims(credential["token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap(),
        (expires + chrono::Duration::minutes(30)).timestamp(),
        "a fetched credential covers the extension"
    );

    // An extension still pending when the grant expires lapses, and approving
    // it afterwards is refused; the grant ends normally.
    // (dave: alice already holds demo-admin, and asking again would extend it)
    let dave = server.token("dave", "dev");
    let short = server.json(&dave, &["request", "demo-admin", "--for", "3s", "--reason", "quick"]);
    let sid = id(&short);
    server.json(&server.bob, &["approve", &sid]);
    server.json(&dave, &["extend", &sid, "--by", "10m", "--reason", "more"]);
    let ended = server.wait_state(&dave, &sid, "expired", Duration::from_secs(15));
    assert_eq!(ended["extensions"][0]["state"], "lapsed");
    let (code, stderr) = server.fails(&server.bob, &["approve", &sid]);
    assert_eq!(code, 1, "{stderr}");
    assert!(kinds(&server, &sid).contains(&"grant.expired".to_string()));
}

#[test]
fn extensions_without_approval_apply_at_once_when_the_role_says_so() {
    let (server, _temp) = setup();
    let grant = server.json(
        &server.alice,
        &["request", "self-extend", "--for", "10m", "--reason", "r"],
    );
    let gid = id(&grant);
    let active = server.json(&server.bob, &["approve", &gid]);
    let extended = server.json(&server.alice, &["extend", &gid, "--by", "5m", "--reason", "r"]);
    assert_eq!(extended["extensions"][0]["state"], "approved");
    assert_eq!(
        time(&extended["expires_at"]),
        time(&active["expires_at"]) + chrono::Duration::minutes(5)
    );
    let (_, stderr) = server.fails(&server.alice, &["extend", &gid, "--by", "2h", "--reason", "r"]);
    assert!(stderr.contains("longer than role"), "{stderr}");
}

#[test]
fn scheduled_requests_activate_at_their_start_and_count_from_activation() {
    let server = Server::dev();
    let start = Utc::now() + chrono::Duration::seconds(3);
    let at = start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let scheduled = server.json(
        &server.alice,
        &[
            "request",
            "demo-read",
            "--for",
            "10m",
            "--reason",
            "maintenance",
            "--at",
            &at,
        ],
    );
    assert_eq!(scheduled["state"], "scheduled");
    assert_eq!(scheduled["activated_at"], Value::Null);
    let active = server.wait_state(&server.alice, &id(&scheduled), "active", Duration::from_secs(15));
    let activated = time(&active["activated_at"]);
    assert!(activated >= time(&scheduled["scheduled_start"]), "not before its start");
    assert_eq!(time(&active["expires_at"]) - activated, chrono::Duration::minutes(10));
    let (code, stderr) = server.fails(
        &server.alice,
        &["request", "demo-admin", "--reason", "x", "--at", "2020-01-01T00:00Z"],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("in the past"), "{stderr}");
    // A request for later while the role is held would be a second grant.
    let later = (Utc::now() + chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (code, stderr) = server.fails(
        &server.alice,
        &["request", "demo-read", "--reason", "x", "--at", &later],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains(&id(&active)) && stderr.contains("already"), "{stderr}");
}

#[test]
fn a_second_request_extends_the_held_grant_and_ending_one_grant_spares_another() {
    let server = Server::dev();
    let first = server.json(
        &server.alice,
        &["request", "demo-read", "--for", "10m", "--reason", "a"],
    );
    let again = server.json(
        &server.alice,
        &["request", "demo-read", "--for", "30m", "--reason", "b"],
    );
    assert_eq!(again["id"], first["id"], "no second grant of a held role");
    let moved = time(&again["expires_at"]) - time(&first["expires_at"]);
    assert!(
        moved >= chrono::Duration::minutes(19),
        "extended to cover 30m from now: {moved}"
    );
    let covered = server.json(&server.alice, &["request", "demo-read", "--for", "5m", "--reason", "c"]);
    assert_eq!(covered["id"], first["id"]);
    assert_eq!(covered["expires_at"], again["expires_at"], "already covered: unchanged");
    let grants = server.json(&server.alice, &["grants", "--active"]);
    assert_eq!(grants.as_array().unwrap().len(), 1);

    // Two grants on the same target: releasing one leaves the other working.
    let admin_grant = server.json(
        &server.alice,
        &["request", "demo-admin", "--for", "10m", "--reason", "d"],
    );
    server.json(&server.bob, &["approve", &id(&admin_grant)]);
    let read_token = server.json(&server.alice, &["credentials", &id(&first)])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let admin_token = server.json(&server.alice, &["credentials", &id(&admin_grant)])["token"]
        .as_str()
        .unwrap()
        .to_string();
    server.json(&server.alice, &["release", &id(&first)]);
    assert_eq!(server.introspect(&read_token)["active"], false);
    assert_eq!(
        server.introspect(&admin_token)["active"],
        true,
        "the other grant is untouched"
    );
}
