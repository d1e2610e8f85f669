//! Bad input gets a clear error, a non-zero exit, and changes nothing.

use crate::harness::Server;
use serde_json::json;

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let server = Server::dev();
    let before = server.audit_len();
    let cases: &[(&[&str], &str)] = &[
        (&["request", "demo-read", "--for", "abc", "--reason", "x"], "not valid"),
        (&["request", "demo-read", "--for", "0s", "--reason", "x"], "zero"),
        (&["request", "demo-read", "--for", "-5m", "--reason", "x"], "negative"),
        (
            &["request", "demo-read", "--for", "2h", "--reason", "x"],
            "longer than role",
        ),
        (
            &[
                "request",
                "demo-read",
                "--for",
                "99999999999999999999s",
                "--reason",
                "x",
            ],
            "10-year",
        ),
        (&["request", "no-such-role", "--for", "5m", "--reason", "x"], "no role"),
        (
            &["request", "demo-read", "--for", "5m", "--reason", "   "],
            "reason is required",
        ),
        (&["show", "no-such-request"], "no request"),
        (&["approve", "no-such-request"], "no request"),
    ];
    for (args, needle) in cases {
        let (code, stderr) = server.fails(&server.alice, args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            stderr.to_lowercase().contains(needle),
            "{args:?}: expected {needle:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // bob (approvers) may not request demo-admin (requestable by group:dev).
    let (_, stderr) = server.fails(&server.bob, &["request", "demo-admin", "--reason", "x"]);
    assert!(stderr.contains("may not request"), "{stderr}");
    assert_eq!(
        server.audit_len(),
        before,
        "refused input must not be audited as a change"
    );
    assert!(server.json(&server.admin, &["requests"]).as_array().unwrap().is_empty());
}

#[test]
fn bad_http_bodies_get_the_error_shape() {
    let server = Server::dev();
    let before = server.audit_len();
    let json_body = |value: serde_json::Value| Some(("application/json", value.to_string().into_bytes()));

    let (status, body) = server.http(
        "POST",
        "/v1/requests",
        Some(&server.alice),
        Some(("application/json", b"{not json".to_vec())),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_json");
    assert!(body["error"]["message"].as_str().unwrap().contains("line 1"), "{body}");

    let (status, body) = server.http(
        "POST",
        "/v1/requests",
        Some(&server.alice),
        json_body(json!({"role": 5, "reason": "x"})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("role"), "{body}");

    let (status, body) = server.http(
        "POST",
        "/v1/requests",
        Some(&server.alice),
        json_body(json!({"role": "demo-read", "reason": "x", "durration": "5m"})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("durration"),
        "unknown field named: {body}"
    );

    let huge = json!({"role": "demo-read", "reason": "x".repeat(2 * 1024 * 1024)});
    let (status, body) = server.http("POST", "/v1/requests", Some(&server.alice), json_body(huge));
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");

    let (status, body) = server.http("GET", "/v1/requests?state=bogus", Some(&server.alice), None);
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("bogus"), "{body}");

    let (status, body) = server.http("GET", "/v1/nope", Some(&server.alice), None);
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");

    assert_eq!(server.audit_len(), before);
}

#[test]
fn bad_tokens_are_401_and_non_admins_403() {
    let server = Server::dev();
    for token in [None, Some("hp_wrong"), Some("not-even-a-token")] {
        let (status, body) = server.http("GET", "/v1/whoami", token, None);
        assert_eq!(status, 401, "{token:?}: {body}");
        assert!(body["error"]["code"].as_str().unwrap().ends_with("token"), "{body}");
    }
    let (code, stderr) = server.fails("hp_wrong", &["whoami"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("token"), "{stderr}");
    let (status, _) = server.http(
        "POST",
        "/v1/tokens",
        Some(&server.alice),
        Some(("application/json", br#"{"principal":"x"}"#.to_vec())),
    );
    assert_eq!(status, 403);
    let (_, stderr) = server.fails(&server.alice, &["role", "delete", "demo-read"]);
    assert!(stderr.contains("admin"), "{stderr}");
}
