//! Workload identity end to end: a CI job's OIDC token, from an issuer the
//! server configuration trusts, becomes a short-lived Hallpass token
//! through `hallpass login --oidc-token-file`. Keys from a JWKS file and
//! from the configuration itself (ES256), and from a JWKS URL served here
//! (RS256); every bad token —
//! expired, not yet valid, wrong audience, untrusted issuer, `alg: none`,
//! a bad signature, no matching rule — is refused with its reason.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hallpass_server::testing::TestIssuerKey;
use serde_json::{Value, json};

use crate::harness::Server;

const AUDIENCE: &str = "hallpass-e2e";

/// Serves `jwks` at any path of a loopback port, counting the requests.
fn jwks_server(jwks: String) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            // The request line and headers, up to the blank line.
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            count.fetch_add(1, Ordering::SeqCst);
            let mut stream = &stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
        }
    });
    (port, served)
}

struct Setup {
    server: Server,
    dir: tempfile::TempDir,
    file_key: TestIssuerKey,
    url_key: TestIssuerKey,
    inline_key: TestIssuerKey,
    url_issuer: String,
    fetches: Arc<AtomicUsize>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let file_key = TestIssuerKey::es256("file-1");
    let url_key = TestIssuerKey::rs256("url-1");
    let inline_key = TestIssuerKey::es256("inline-1");
    let inline_jwks = json!({"keys": [inline_key.jwk()]}).to_string();
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, json!({"keys": [file_key.jwk()]}).to_string()).expect("jwks");
    let (port, fetches) = jwks_server(json!({"keys": [url_key.jwk()]}).to_string());
    let url_issuer = format!("http://127.0.0.1:{port}");
    let config = format!(
        r#"
workload_identity "ci-file" {{
  issuer    = "https://ci.example"
  audience  = "{AUDIENCE}"
  jwks_file = {jwks_file:?}
  token_ttl = "10m"
  rule {{
    claims    = {{ repository = "acme/infra", ref = "refs/heads/main" }}
    principal = "ci-infra"
    groups    = ["deploy"]
  }}
  rule {{
    claims    = {{ repository = "acme/*" }}
    principal = "ci-acme"
  }}
}}
workload_identity "ci-inline" {{
  issuer   = "https://inline.example"
  audience = "{AUDIENCE}"
  jwks     = <<-EOT
    {inline_jwks}
  EOT
  rule {{
    claims    = {{ sub = "inline-job" }}
    principal = "ci-inline"
  }}
}}
workload_identity "ci-url" {{
  issuer   = "{url_issuer}"
  audience = "{AUDIENCE}"
  jwks_url = "{url_issuer}/jwks"
  rule {{
    claims    = {{ project_path = "acme/app" }}
    principal = "ci-gitlab"
    groups    = ["ops"]
  }}
}}
"#
    );
    let config_file = dir.path().join("server.hcl");
    std::fs::write(&config_file, config).expect("server.hcl");
    let server = Server::dev_with_args(&dir.path().join("data"), &["--config", &config_file.to_string_lossy()]);
    Setup {
        server,
        dir,
        file_key,
        url_key,
        inline_key,
        url_issuer,
        fetches,
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(iss: &str, extra: Value) -> Value {
    let mut claims = json!({"iss": iss, "aud": AUDIENCE, "sub": "repo:acme/infra:ref:refs/heads/main",
        "iat": now(), "nbf": now() - 5, "exp": now() + 300});
    for (name, value) in extra.as_object().into_iter().flatten() {
        claims[name] = value.clone();
    }
    claims
}

/// `hallpass login --oidc-token-file` with `jwt`, without a token of its own.
fn login(setup: &Setup, jwt: &str) -> std::process::Output {
    let file = setup.dir.path().join("ci-token.jwt");
    std::fs::write(&file, jwt).expect("token file");
    setup
        .server
        .cli("")
        .env_remove("HALLPASS_TOKEN")
        .args(["login", "--oidc-token-file"])
        .arg(&file)
        .output()
        .expect("run hallpass login")
}

fn logged_in(setup: &Setup, jwt: &str) -> Value {
    let output = login(setup, jwt);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(token.starts_with("hp_"), "{token}");
    setup.server.json(&token, &["whoami"])
}

#[test]
fn ci_tokens_become_short_lived_hallpass_tokens_by_the_first_matching_rule() {
    let setup = setup();
    let infra = claims(
        "https://ci.example",
        json!({"repository": "acme/infra", "ref": "refs/heads/main"}),
    );
    let me = logged_in(&setup, &setup.file_key.sign(&infra));
    assert_eq!(me["principal"], "ci-infra");
    assert_eq!(me["groups"], json!(["deploy"]));
    let expires = chrono::DateTime::parse_from_rfc3339(me["token_expires_at"].as_str().expect("expiry"))
        .expect("RFC 3339")
        .timestamp();
    assert!(
        (now() + 590..=now() + 600).contains(&expires),
        "10m token_ttl: {expires}"
    );
    // The token's audit event says where it came from.
    let export = setup.server.run(&setup.server.admin, &["audit", "export"]);
    let created: Value = String::from_utf8_lossy(&export.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["kind"] == "token.created" && event["data"]["token_id"] == me["token_id"])
        .expect("token.created");
    assert_eq!(created["actor"], "oidc:ci-file");
    assert_eq!(
        created["data"]["origin"]["subject"],
        "repo:acme/infra:ref:refs/heads/main"
    );
    assert_eq!(created["data"]["origin"]["rule"], 1);

    // Another branch falls through to the second rule.
    let web = claims(
        "https://ci.example",
        json!({"repository": "acme/web", "ref": "refs/heads/dev"}),
    );
    assert_eq!(logged_in(&setup, &setup.file_key.sign(&web))["principal"], "ci-acme");

    // Keys written in the configuration itself.
    let inline = claims("https://inline.example", json!({"sub": "inline-job"}));
    assert_eq!(
        logged_in(&setup, &setup.inline_key.sign(&inline))["principal"],
        "ci-inline"
    );

    // Keys from the URL, fetched once and then cached.
    let gitlab = claims(&setup.url_issuer, json!({"project_path": "acme/app"}));
    for _ in 0..2 {
        let me = logged_in(&setup, &setup.url_key.sign(&gitlab));
        assert_eq!(me["principal"], "ci-gitlab");
        assert_eq!(me["groups"], json!(["ops"]));
    }
    assert_eq!(setup.fetches.load(Ordering::SeqCst), 1);
}

#[test]
fn bad_ci_tokens_are_refused_with_their_reason() {
    let setup = setup();
    let good = json!({"repository": "acme/infra", "ref": "refs/heads/main"});
    let with = |extra: Value| {
        let mut all = good.clone();
        for (name, value) in extra.as_object().into_iter().flatten() {
            all[name] = value.clone();
        }
        claims("https://ci.example", all)
    };
    let key = &setup.file_key;
    let cases = [
        (key.sign(&with(json!({"exp": now() - 120}))), "the token expired"),
        (key.sign(&with(json!({"nbf": now() + 600}))), "not valid yet"),
        (key.sign(&with(json!({"aud": "someone-else"}))), "not \"hallpass-e2e\""),
        (
            key.sign(&claims("https://evil.example", good.clone())),
            "issuer \"https://evil.example\" is not trusted",
        ),
        (
            TestIssuerKey::unsigned(&with(json!({}))),
            "algorithm \"none\" is not accepted",
        ),
        (
            TestIssuerKey::es256("file-1").sign(&with(json!({}))),
            "signature does not verify",
        ),
        (
            key.sign(&with(json!({"repository": "evil/infra"}))),
            "no rule of workload_identity \"ci-file\" matches the token (ref=\"refs/heads/main\", repository=\"evil/infra\")",
        ),
    ];
    for (jwt, expected) in cases {
        let output = login(&setup, &jwt);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("the workload token was refused"), "{stderr}");
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
        assert!(output.stdout.is_empty());
    }
    // Nothing was made for any of them.
    let tokens = setup.server.json(&setup.server.admin, &["token", "list"]);
    assert!(
        tokens
            .as_array()
            .into_iter()
            .flatten()
            .all(|t| !t["created_by"].as_str().unwrap_or("").starts_with("oidc:")),
        "{tokens}"
    );
}

/// `-` reads the token from stdin, as a CI step can pipe it.
#[test]
fn the_ci_token_may_come_on_stdin() {
    let setup = setup();
    let jwt = setup.file_key.sign(&claims(
        "https://ci.example",
        json!({"repository": "acme/infra", "ref": "refs/heads/main"}),
    ));
    let mut child = setup
        .server
        .cli("")
        .env_remove("HALLPASS_TOKEN")
        .args(["login", "--oidc-token-file", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start hallpass login");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(jwt.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("logged in as ci-infra (groups: deploy)"));
}
