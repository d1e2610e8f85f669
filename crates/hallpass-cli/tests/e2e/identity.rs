//! Tokens: creation, identity, revocation; principal locks; and the
//! service endpoints.

use serde_json::json;

use crate::harness::Server;

#[test]
fn tokens_carry_identity_and_stop_working_when_revoked() {
    let server = Server::dev();
    let created = server.json(
        &server.admin,
        &[
            "token",
            "create",
            "--principal",
            "frank",
            "--groups",
            "dev,oncall",
            "--ttl",
            "1h",
        ],
    );
    let secret = created["token"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("hp_") && secret.len() >= 3 + 43,
        "≥ 256 bits, base64url: {secret}"
    );
    assert!(created["expires_at"].is_string());
    let me = server.json(&secret, &["whoami"]);
    assert_eq!(me["principal"], "frank");
    assert_eq!(me["groups"], serde_json::json!(["dev", "oncall"]));
    assert_eq!(me["admin"], false);

    let id = created["id"].as_str().unwrap();
    let output = server.run(&server.admin, &["token", "revoke", id]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (status, _) = server.http("GET", "/v1/whoami", Some(&secret), None);
    assert_eq!(status, 401);

    // Only the hash is stored: the secret is nowhere in the store at rest.
    let dump = server.dump_storage();
    assert!(dump.contains("frank"), "the dump is real");
    assert!(
        !dump.contains(&secret) && !dump.contains(&server.alice),
        "a token secret is stored in clear"
    );
    let (_, stderr) = server.fails(
        &server.admin,
        &["token", "create", "--principal", "x", "--ttl", "forever"],
    );
    assert!(stderr.contains("ttl"), "{stderr}");
}

#[test]
fn service_endpoints_answer() {
    let server = Server::dev();
    let (status, health) = server.http("GET", "/healthz", None, None);
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, openapi) = server.http("GET", "/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    for path in [
        "/v1/requests",
        "/v1/requests/{id}/approve",
        "/v1/grants/{id}/revoke",
        "/v1/introspect",
        "/v1/audit/verify",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(openapi["components"]["schemas"]["AccessRequest"].is_object());
    server.json(
        &server.alice,
        &["request", "demo-read", "--for", "5m", "--reason", "metrics"],
    );
    let metrics = server.text("/metrics");
    assert!(metrics.contains("hallpass_grants_activated_total 1"), "{metrics}");
    assert!(
        metrics.contains("hallpass_requests_total{outcome=\"auto_approved\"} 1"),
        "{metrics}"
    );
    if server.database_url.is_none() {
        let mode = |name: &str| {
            let path = server.data_dir.join(name);
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
        };
        assert_eq!(mode("."), 0o700, "the data directory is private");
        assert_eq!(mode("hallpass.db"), 0o600, "the database is private");
        assert_eq!(mode("seal.key"), 0o600, "the seal key is private");
    }
    assert!(
        !server.data_dir.join("jwt-signing-key.pk8").exists(),
        "the signing key lives sealed in the store"
    );
}

#[test]
fn a_locked_principal_is_stopped_until_unlocked() {
    let server = Server::dev();
    let grant = server.json(
        &server.alice,
        &["request", "demo-read", "--reason", "INC-70 before the lock"],
    );
    assert_eq!(grant["state"], "active");
    let grant_id = grant["id"].as_str().unwrap().to_string();
    let credential = server.json(&server.alice, &["credentials", &grant_id])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let pending = server.json(&server.alice, &["request", "demo-admin", "--reason", "INC-71 waiting"]);
    let pending_id = pending["id"].as_str().unwrap().to_string();
    assert_eq!(pending["state"], "pending");

    // Only admins lock, list and unlock.
    for args in [
        &["lock", "alice", "--reason", "bob tries"][..],
        &["locks"],
        &["unlock", "alice"],
    ] {
        let (_, stderr) = server.fails(&server.bob, args);
        assert!(stderr.contains("admin"), "{args:?}: {stderr}");
    }
    assert_eq!(server.json(&server.alice, &["whoami"])["principal"], "alice");

    let locked = server.json(&server.admin, &["lock", "alice", "--reason", "INC-72 laptop stolen"]);
    assert_eq!(locked["principal"], "alice");
    assert_eq!(locked["tokens_revoked"].as_array().map(Vec::len), Some(1), "{locked}");
    let ended: Vec<&str> = locked["requests_ended"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    assert!(
        ended.contains(&grant_id.as_str()) && ended.contains(&pending_id.as_str()),
        "{locked}"
    );
    assert_eq!(server.json(&server.admin, &["show", &grant_id])["state"], "revoked");
    assert_eq!(server.json(&server.admin, &["show", &pending_id])["state"], "cancelled");
    assert_eq!(
        server.introspect(&credential)["active"],
        false,
        "the grant's token is dead"
    );
    for (method, path) in [("GET", "/v1/whoami"), ("POST", "/v1/requests")] {
        let body = json!({"role": "demo-read", "reason": "INC-73 after the lock"});
        let (status, answer) = server.http(
            method,
            path,
            Some(&server.alice),
            Some(("application/json", body.to_string().into_bytes())),
        );
        assert_eq!(status, 401, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_token");
    }
    let (_, stderr) = server.fails(
        &server.admin,
        &["token", "create", "--principal", "alice", "--groups", "dev"],
    );
    assert!(stderr.contains("locked") && stderr.contains("INC-72"), "{stderr}");
    let locks = server.json(&server.admin, &["locks"]);
    assert_eq!(locks.as_array().map(Vec::len), Some(1), "{locks}");
    assert_eq!(locks[0]["principal"], "alice");
    assert_eq!(locks[0]["reason"], "INC-72 laptop stolen");
    assert_eq!(locks[0]["locked_by"], "admin");

    let output = server.run(&server.admin, &["unlock", "alice"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(server.json(&server.admin, &["locks"]), json!([]));
    let (status, _) = server.http("GET", "/v1/whoami", Some(&server.alice), None);
    assert_eq!(status, 401, "tokens revoked by the lock stay revoked");
    let fresh = server.token("alice", "dev");
    let again = server.json(&fresh, &["request", "demo-read", "--reason", "INC-74 after the unlock"]);
    assert_eq!(again["state"], "active", "{again}");

    let events = server.json(&server.admin, &["audit", "list", "--limit", "10000"]);
    let event = |kind: &str| {
        events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} event in {events}"))
            .clone()
    };
    let lock_event = event("principal.locked");
    assert_eq!(lock_event["actor"], "admin");
    assert_eq!(lock_event["data"]["principal"], "alice");
    assert_eq!(lock_event["data"]["reason"], "INC-72 laptop stolen");
    assert_eq!(event("principal.unlocked")["data"]["principal"], "alice");
    let revoked = event("grant.revoked");
    assert_eq!(revoked["request_id"], grant_id.as_str());
    assert!(
        revoked["data"].to_string().contains("INC-72 laptop stolen"),
        "the grant ended with the lock's reason: {revoked}"
    );
}
