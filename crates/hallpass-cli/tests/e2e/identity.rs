//! Tokens: creation, identity, revocation; and the service endpoints.

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
