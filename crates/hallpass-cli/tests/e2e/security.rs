//! The rules an attacker tries first, tried against the real binary: one
//! grant per principal and role under 50 parallel callers, policy limits
//! that hold under the same race, target secrets that never come back out
//! (API, audit export, database files or dump, log) and that show when
//! each last changed, signed webhook calls, tokens, names and text that
//! cannot be abused, and who may see which requests and grants.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::harness::{Server, WEBHOOK_HMAC_SECRET, WebhookRecorder, change_actions, write_file};

const PARALLEL: usize = 50;

fn ids(answers: &[(u16, Value)]) -> Vec<String> {
    answers
        .iter()
        .map(|(status, body)| {
            assert!(matches!(status, 200 | 201), "{status}: {body}");
            body["id"].as_str().expect("an id").to_string()
        })
        .collect()
}

#[test]
fn fifty_parallel_identical_requests_make_one_grant() {
    let server = Server::dev();
    let body = json!({"role": "demo-read", "duration": "10m", "reason": "INC-50: one of fifty"});
    let answers = server.post_all("/v1/requests", &server.alice, vec![body; PARALLEL]);
    let ids = ids(&answers);
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "every answer names the one grant: {ids:?}"
    );
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(created, 1, "one 201, the other answers are 200 with that grant");
    let outcomes: Vec<&str> = answers
        .iter()
        .map(|(_, b)| b["outcome"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "created").count(), 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| matches!(*o, "created" | "existing_grant")),
        "{outcomes:?}"
    );
    let grants = server.json(&server.admin, &["grants", "--active"]);
    assert_eq!(grants.as_array().map(Vec::len), Some(1), "{grants}");
    let events = server.json(&server.admin, &["audit", "list", "--limit", "10000"]);
    let activations = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "grant.activated")
        .count();
    assert_eq!(activations, 1);
}

/// A policy that allows one live grant per person, whatever the role.
const ONE_GRANT: &str = "package hallpass.request\n\nimport rego.v1\n\n\
deny contains \"one live grant at a time\" if input.context.active_grants >= 1\n";

fn many_roles(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "role \"r{i}\" {{\n  target = \"demo\"\n  max_duration = \"1h\"\n  requestable_by = [\"group:dev\"]\n  auto_approve = true\n}}\n"
            )
        })
        .collect()
}

#[test]
fn a_policy_capping_live_grants_holds_under_fifty_parallel_requests() {
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    write_file(temp.path(), "one.rego", ONE_GRANT);
    let config = format!(
        "{}policy \"one-grant\" {{\n  source_file = \"one.rego\"\n}}\n",
        many_roles(PARALLEL)
    );
    server.apply(temp.path(), &config);
    let bodies = (0..PARALLEL)
        .map(|i| json!({"role": format!("r{i}"), "reason": "INC-51: race the policy"}))
        .collect();
    let answers = server.post_all("/v1/requests", &server.alice, bodies);
    let states: Vec<&str> = answers
        .iter()
        .map(|(_, b)| b["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(states.iter().filter(|s| **s == "active").count(), 1, "{states:?}");
    assert_eq!(
        states.iter().filter(|s| **s == "denied").count(),
        PARALLEL - 1,
        "{states:?}"
    );
    let denied = answers.iter().find(|(_, b)| b["state"] == "denied").expect("a denial");
    assert_eq!(denied.1["decision"]["comment"], "one live grant at a time");
}

fn hmac_key() -> Vec<u8> {
    let encoded = WEBHOOK_HMAC_SECRET.strip_prefix("whsec_").expect("whsec_ prefix");
    STANDARD.decode(encoded).expect("base64")
}

/// When each secret of `target` last changed, by name, as `target show`
/// tells it.
fn secret_times(server: &Server, target: &str) -> BTreeMap<String, DateTime<Utc>> {
    server.json(&server.alice, &["target", "show", target])["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|secret| {
            let at = secret["updated_at"].as_str().expect("updated_at");
            let at = DateTime::parse_from_rfc3339(at).expect("an RFC 3339 time");
            (secret["name"].as_str().unwrap().to_string(), at.with_timezone(&Utc))
        })
        .collect()
}

#[test]
fn target_secrets_are_write_only_sealed_and_never_leak() {
    // At DEBUG, so whatever the server or its libraries log about the
    // calls that carry secrets is checked too.
    let server = Server::dev_with_env(&[("RUST_LOG", "debug")]);
    let temp = tempfile::tempdir().unwrap();
    let hook = WebhookRecorder::with_revoke_delay(Duration::ZERO);
    let bearer = "bearer-c0ffee-7d1f9a2b4e";
    let panel = |hmac: &str| {
        format!(
            "target \"panel\" {{\n  type = \"webhook\"\n  config = {{ url = \"{}\" }}\n  secrets = {{ hmac_secret = \"{hmac}\", bearer_token = \"{bearer}\" }}\n}}\n\
             role \"panel-admin\" {{\n  target = \"panel\"\n  max_duration = \"1h\"\n  requestable_by = [\"group:dev\"]\n  auto_approve = true\n}}\n",
            hook.url
        )
    };
    // Every answer that talks about the target: none may hold a value.
    let mut answers = Vec::new();
    let first = server.apply(temp.path(), &panel(WEBHOOK_HMAC_SECRET));
    assert!(change_actions(&first).contains(&"create target panel".to_string()));
    answers.push(first.to_string());

    // Reads show the names, never the values.
    let target = server.json(&server.alice, &["target", "show", "panel"]);
    let names: Vec<&str> = target["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bearer_token", "hmac_secret"]);
    answers.push(target.to_string());
    let (status, listed) = server.http("GET", "/v1/targets", Some(&server.alice), None);
    assert_eq!(status, 200, "{listed}");
    assert!(
        listed.as_array().unwrap().iter().any(|t| t["name"] == "panel"),
        "{listed}"
    );
    answers.push(listed.to_string());
    let created = secret_times(&server, "panel");

    // The same secrets again: unchanged (compared on the server), and
    // neither secret's time moves. Another HMAC key: an update that names
    // the secret, in a dry run first, and only its time moves.
    let again = server.apply(temp.path(), &panel(WEBHOOK_HMAC_SECRET));
    assert!(
        change_actions(&again).contains(&"unchanged target panel".to_string()),
        "{again}"
    );
    answers.push(again.to_string());
    assert_eq!(
        secret_times(&server, "panel"),
        created,
        "an unchanged apply changes no secret"
    );
    let rotated = "whsec_cm90YXRlZC1obWFjLWtleS0zMi1ieXRlcy1sb25nIQ==";
    let file = write_file(temp.path(), "rotate.hcl", &panel(rotated));
    let dry = server.run(&server.admin, &["apply", "-f", &file, "--dry-run"]);
    let dry = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(dry.contains("~ target panel (secrets: hmac_secret)"), "{dry}");
    answers.push(dry);
    let events_before = server.audit_len();
    let applied = server.run(&server.admin, &["apply", "-f", &file]);
    let applied = String::from_utf8_lossy(&applied.stdout).into_owned();
    assert!(applied.contains("~ target panel (secrets: hmac_secret)"), "{applied}");
    answers.push(applied);
    assert_eq!(server.audit_len(), events_before + 1, "one target.updated event");
    let after_rotation = secret_times(&server, "panel");
    assert!(
        after_rotation["hmac_secret"] > created["hmac_secret"],
        "the rotated secret shows its new time: {after_rotation:?} after {created:?}"
    );
    assert_eq!(
        after_rotation["bearer_token"], created["bearer_token"],
        "the secret left alone keeps its time"
    );
    answers.push(server.apply(temp.path(), &panel(WEBHOOK_HMAC_SECRET)).to_string());

    // Calls carry the bearer token and a Standard Webhooks signature.
    let grant = server.json(&server.alice, &["request", "panel-admin", "--reason", "signed call"]);
    assert_eq!(grant["state"], "active");
    server.json(&server.alice, &["release", grant["id"].as_str().unwrap()]);
    let calls = hook.calls();
    assert_eq!(calls.len(), 2, "issue and revoke");
    for call in &calls {
        assert_eq!(call.header("authorization"), Some(format!("Bearer {bearer}").as_str()));
        let id = call.header("webhook-id").expect("webhook-id");
        let timestamp = call.header("webhook-timestamp").expect("webhook-timestamp");
        let mut signed = format!("{id}.{timestamp}.").into_bytes();
        signed.extend_from_slice(&call.raw_body);
        let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &hmac_key()), &signed);
        let expected = format!("v1,{}", STANDARD.encode(expected.as_ref()));
        assert_eq!(call.header("webhook-signature"), Some(expected.as_str()), "{id}");
    }

    // Not in any answer, the audit log, the database files or dump, or
    // the server's log.
    let export = server.run(&server.admin, &["audit", "export"]);
    let export = String::from_utf8_lossy(&export.stdout).into_owned();
    let storage = server.dump_storage();
    let logs = server.logs();
    assert!(
        logs.contains("DEBUG") && logs.contains("/v1/apply"),
        "the log is at DEBUG and covers the applies:\n{logs}"
    );
    for secret in [WEBHOOK_HMAC_SECRET, rotated, bearer] {
        let encoded = secret.trim_start_matches("whsec_");
        for (what, text) in answers.iter().map(|answer| ("an answer", answer)).chain([
            ("the audit export", &export),
            ("the store", &storage),
            ("the log", &logs),
        ]) {
            if let Some(line) = text.lines().find(|line| line.contains(encoded)) {
                let line: String = line.chars().take(400).collect();
                panic!("a secret is in {what}: {line}");
            }
        }
    }
    assert!(
        export.contains("\"secrets_changed\":[\"hmac_secret\"]"),
        "events name what changed"
    );
}

#[test]
fn webhook_urls_with_credentials_are_refused() {
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    for url in [
        "https://hookuser:s3cr3tPw@panel.internal/hook",
        "https://panel.internal/hook?token=abc123xyz",
    ] {
        let config = format!(
            "target \"panel\" {{\n  type = \"webhook\"\n  config = {{ url = \"{url}\" }}\n  secrets = {{ hmac_secret = \"{WEBHOOK_HMAC_SECRET}\" }}\n}}\n"
        );
        let file = write_file(temp.path(), "bad.hcl", &config);
        let (code, stderr) = server.fails(&server.admin, &["apply", "-f", &file]);
        assert_eq!(code, 1);
        assert!(
            stderr.contains("secrets"),
            "the error says where credentials go: {stderr}"
        );
        assert!(
            !stderr.contains("s3cr3tPw") && !stderr.contains("abc123xyz"),
            "{stderr}"
        );
    }
}

/// POSTs a request for `demo-read` as alice with `reason` and `ticket`.
fn request_as_alice(server: &Server, reason: &str, ticket: Option<&str>) -> (u16, Value) {
    let body = json!({"role": "demo-read", "reason": reason, "ticket": ticket});
    server.http(
        "POST",
        "/v1/requests",
        Some(&server.alice),
        Some(("application/json", body.to_string().into_bytes())),
    )
}

#[test]
fn text_with_control_characters_is_refused_and_names_are_reserved() {
    let server = Server::dev();
    let refusals = [
        (
            request_as_alice(&server, "fix\r\u{1b}[2Kapproved by security", None),
            "reason",
            "U+000D at character 4",
        ),
        (
            request_as_alice(&server, "INC-80 plain reason", Some("INC-80\u{1b}[8m hidden")),
            "ticket",
            "U+001B at character 7",
        ),
        (
            request_as_alice(&server, "INC-81 plain reason", Some("INC-81 \u{202e}dexif")),
            "ticket",
            "U+202E at character 8",
        ),
    ];
    for ((status, body), field, position) in refusals {
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "control_character");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("the {field} holds")) && message.contains(position),
            "{body}"
        );
    }
    assert_eq!(
        server.json(&server.alice, &["requests"]),
        json!([]),
        "a refused request leaves nothing behind"
    );
    for name in ["hallpass", "policy"] {
        let (code, stderr) = server.fails(&server.admin, &["token", "create", "--principal", name]);
        assert_eq!(code, 1);
        assert!(stderr.contains("reserved"), "{stderr}");
    }
}

#[test]
fn requests_are_seen_by_their_requester_their_approvers_and_auditors() {
    let server = Server::dev();
    let mine = server.json(
        &server.alice,
        &["request", "demo-admin", "--reason", "INC-60 private reason"],
    );
    let other = server.token("olaf", "dev");
    server.json(&other, &["request", "demo-read", "--reason", "INC-61 olaf's own"]);
    let auditor = server.token("audrey", "auditors");

    let listed = |token: &str| -> Vec<String> {
        server
            .json(token, &["requests"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["reason"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed(&server.alice), ["INC-60 private reason"]);
    assert_eq!(listed(&other), ["INC-61 olaf's own"]);
    assert_eq!(
        listed(&server.bob),
        ["INC-60 private reason"],
        "bob approves demo-admin only"
    );
    assert_eq!(listed(&auditor).len(), 2);
    assert_eq!(listed(&server.admin).len(), 2);
    let (_, stderr) = server.fails(&other, &["show", mine["id"].as_str().unwrap()]);
    assert!(stderr.contains("no request"), "{stderr}");

    // Pages follow the cursor.
    for i in 0..3 {
        let user = server.token(&format!("pager{i}"), "dev");
        server.json(&user, &["request", "demo-read", "--reason", "paging"]);
    }
    let seen = all_pages(&server, "/v1/requests", &server.admin, 2);
    assert_eq!(seen.len(), 5, "{seen:?}");
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 5, "no request twice");
}

/// The ids of the grants `token` lists.
fn grant_ids(server: &Server, token: &str) -> BTreeSet<String> {
    server
        .json(token, &["grants"])
        .as_array()
        .unwrap()
        .iter()
        .map(|grant| grant["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every item of `GET path` as `token`, following the cursor `limit` at
/// a time, in the order the pages give them.
fn all_pages(server: &Server, path: &str, token: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page, next) = server.http_response("GET", &format!("{path}?limit={limit}{cursor}"), Some(token));
        assert_eq!(status, 200, "{page}");
        let page = page.as_array().unwrap();
        assert!(page.len() <= limit, "{page:?}");
        seen.extend(page.iter().map(|item| item["id"].as_str().unwrap().to_string()));
        match next {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return seen,
        }
    }
}

#[test]
fn grants_are_seen_by_their_holder_their_approvers_and_auditors() {
    let server = Server::dev();
    let id = |answer: &Value| answer["id"].as_str().unwrap().to_string();
    // demo-admin needs bob's approval; demo-read is approved by no one.
    let approved = |token: &str, reason: &str| {
        let request = server.json(token, &["request", "demo-admin", "--reason", reason]);
        let approved = server.json(&server.bob, &["approve", &id(&request)]);
        assert_eq!(approved["state"], "active", "{approved}");
        id(&request)
    };
    let alice_admin = approved(&server.alice, "INC-90 alice admin");
    let alice_read = id(&server.json(&server.alice, &["request", "demo-read", "--reason", "INC-91"]));
    let olaf = server.token("olaf", "dev");
    let olaf_read = id(&server.json(&olaf, &["request", "demo-read", "--reason", "INC-92"]));
    // Pending: a request, not a grant, whoever looks.
    let petra = server.token("petra", "dev");
    server.json(&petra, &["request", "demo-admin", "--reason", "INC-93 waiting"]);
    let auditor = server.token("audrey", "auditors");

    let set = |ids: &[&String]| ids.iter().map(|id| id.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(grant_ids(&server, &server.alice), set(&[&alice_admin, &alice_read]));
    assert_eq!(grant_ids(&server, &olaf), set(&[&olaf_read]));
    assert_eq!(grant_ids(&server, &petra), set(&[]));
    assert_eq!(
        grant_ids(&server, &server.bob),
        set(&[&alice_admin]),
        "bob approves demo-admin only"
    );
    let everything = set(&[&alice_admin, &alice_read, &olaf_read]);
    assert_eq!(grant_ids(&server, &auditor), everything);
    assert_eq!(grant_ids(&server, &server.admin), everything);

    // Bob's pages skip the grants he may not see, in between his own:
    // each page resumes after the last row it looked at, so every grant
    // he may see comes exactly once.
    let mut bobs = vec![alice_admin];
    for i in 0..4 {
        let user = server.token(&format!("pager{i}"), "dev");
        server.json(&user, &["request", "demo-read", "--reason", "INC-94 unseen by bob"]);
        bobs.push(approved(&user, "INC-95 seen by bob"));
    }
    let paged = all_pages(&server, "/v1/grants", &server.bob, 2);
    bobs.reverse();
    assert_eq!(paged, bobs, "newest first, each once");
}

#[test]
fn every_counter_is_exported_from_the_start() {
    let server = Server::dev();
    let metrics = server.text("/metrics");
    for counter in [
        "hallpass_requests_total",
        "hallpass_grants_activated_total",
        "hallpass_revoke_failures_total",
        "hallpass_requests_timed_out_total",
        "hallpass_auth_failures_total",
        "hallpass_connections_evicted_total",
        "hallpass_connections_refused_total",
        "hallpass_policy_evaluation_failures_total",
        "hallpass_accept_errors_total",
    ] {
        assert!(
            metrics
                .lines()
                .any(|line| line.starts_with(counter) && line.ends_with(" 0")),
            "{counter} is not at 0 before anything happened:\n{metrics}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("hallpass_connections_open ")),
        "the open-connections gauge is there from the start:\n{metrics}"
    );
}

#[test]
fn failed_authentications_are_logged_without_the_secret() {
    let server = Server::dev();
    let body = json!({"principal": "carol", "groups": ["dev"]})
        .to_string()
        .into_bytes();
    let (status, created) = server.http(
        "POST",
        "/v1/tokens",
        Some(&server.admin),
        Some(("application/json", body)),
    );
    assert_eq!(status, 201, "{created}");
    let (id, secret) = (created["id"].as_str().unwrap(), created["token"].as_str().unwrap());
    let (status, _) = server.http("DELETE", &format!("/v1/tokens/{id}"), Some(&server.admin), None);
    assert_eq!(status, 204);
    let guess = format!("hp_guess{:040}", 7);
    let garbage = "not-a-hallpass-token-0123456789";
    for token in [secret, guess.as_str(), garbage] {
        let (status, body) = server.http("GET", "/v1/whoami", Some(token), None);
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "invalid_token");
    }
    let logs = server.logs_when(|logs| logs.matches("authentication failed").count() >= 3);
    let failures: Vec<&str> = logs.lines().filter(|l| l.contains("authentication failed")).collect();
    assert_eq!(failures.len(), 3, "{logs}");
    assert!(
        failures[0].contains(id) && failures[0].contains("revoked token"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].contains("unknown token") && failures[1].contains("127.0.0.1"),
        "{}",
        failures[1]
    );
    assert!(failures[2].contains("malformed token"), "{}", failures[2]);
    for line in failures {
        assert!(line.contains("fingerprint"), "{line}");
        assert!(
            !line.contains(secret) && !line.contains(&guess) && !line.contains(garbage),
            "a secret was logged: {line}"
        );
    }
    let metrics = server.text("/metrics");
    assert!(
        metrics.lines().any(|l| l == "hallpass_auth_failures_total 3"),
        "every failure is counted, the malformed one too:\n{metrics}"
    );
}

#[test]
fn failed_authentications_are_limited_per_address() {
    let server = Server::dev();
    let mut statuses = Vec::new();
    for i in 0..25 {
        let (status, _) = server.http("GET", "/v1/whoami", Some(&format!("hp_guess{i:040}")), None);
        statuses.push(status);
    }
    assert_eq!(statuses[0], 401);
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    let (status, body) = server.http("GET", "/v1/whoami", Some(&server.alice), None);
    assert_eq!(
        status, 429,
        "the address waits out its window, whatever token it shows: {body}"
    );
    assert_eq!(body["error"]["code"], "too_many_failures");
}

/// Many tokens, each within its own rate, flood `policies/eval` with
/// evaluations that run into the time limit: the route may use all policy
/// workers but one, so access requests are still decided, not failed
/// closed for want of a worker.
#[test]
fn a_flood_of_evaluations_leaves_a_worker_for_access_requests() {
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    // Slow only for the flood's inputs; requests evaluate it at once.
    let policy = "package hallpass.request\n\nimport rego.v1\n\n\
                  deny contains \"never\" if {\n  input.request.reason == \"flood\"\n  \
                  count(numbers.range(1, 1000000000)) == 0\n}\n";
    let file = write_file(temp.path(), "flood.rego", policy);
    server.json(&server.admin, &["policy", "put", "flood", "-f", &file]);
    let tokens: Vec<String> = (0..24).map(|i| server.token(&format!("flooder{i}"), "dev")).collect();
    let input = json!({"input": {"request": {"reason": "flood"}}}).to_string();
    let flooding = std::sync::atomic::AtomicBool::new(true);
    let decided = std::thread::scope(|scope| {
        for token in &tokens {
            let (server, input, flooding) = (&server, &input, &flooding);
            scope.spawn(move || {
                while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = Some(("application/json", input.clone().into_bytes()));
                    server.http("POST", "/v1/policies/eval", Some(token), body);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        let decided: Vec<Value> = (0..8)
            .map(|i| {
                let asker = server.token(&format!("asker{i}"), "dev");
                let body = json!({"role": "demo-read", "reason": "INC-8 work"}).to_string();
                let (status, answer) = server.http(
                    "POST",
                    "/v1/requests",
                    Some(&asker),
                    Some(("application/json", body.into_bytes())),
                );
                assert!(matches!(status, 200 | 201), "{status}: {answer}");
                answer
            })
            .collect();
        flooding.store(false, std::sync::atomic::Ordering::Relaxed);
        decided
    });
    for answer in decided {
        assert_eq!(answer["state"], "active", "decided despite the flood: {answer}");
    }
}

#[test]
fn policy_evaluation_is_bounded_in_time_and_rate() {
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    let slow = "package hallpass.request\n\nimport rego.v1\n\n\
                deny contains \"never\" if count(numbers.range(1, 1000000000)) == 0\n";
    let file = write_file(temp.path(), "slow.rego", slow);
    server.json(&server.admin, &["policy", "put", "slow", "-f", &file]);
    let started = std::time::Instant::now();
    let (status, body) = server.http(
        "POST",
        "/v1/requests",
        Some(&server.alice),
        Some((
            "application/json",
            json!({"role": "demo-read", "reason": "x"}).to_string().into_bytes(),
        )),
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped at the limit: {:?}",
        started.elapsed()
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "denied");
    // Time or memory, whichever the huge range hits first, stops it.
    let error = body["policy"]["error"].as_str().unwrap();
    assert!(error.contains("time limit") || error.contains("memory limit"), "{body}");
    assert!(server.text("/healthz").contains("ok"), "the server still answers");

    // Evaluations of hypothetical inputs are limited per token.
    assert!(
        server
            .run(&server.admin, &["policy", "delete", "slow"])
            .status
            .success()
    );
    let input = json!({"input": {"principal": {"name": "a", "groups": []}}});
    let statuses: Vec<u16> = (0..40)
        .map(|_| {
            server
                .http(
                    "POST",
                    "/v1/policies/eval",
                    Some(&server.bob),
                    Some(("application/json", input.to_string().into_bytes())),
                )
                .0
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
}
