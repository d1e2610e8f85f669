//! `hallpass server` itself: settings from flags over the configuration
//! file over defaults; chosen tokens that must be random; the dev token read
//! from a file; a data directory others can write into refused and left as
//! it was; a warning when serving plain HTTP beyond loopback; HTTPS with
//! `--tls-cert`/`--tls-key`; the access log; the time limit per request.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{ROOT_TOKEN, Server, hallpass_bin, jwt_claims, write_file};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `hallpass server ARGS` expecting it to refuse to start.
fn refuses_to_start(args: &[&str]) -> String {
    let output = Command::new(hallpass_bin())
        .arg("server")
        .args(args)
        .env_remove("HALLPASS_BOOTSTRAP_TOKEN")
        .output()
        .expect("run hallpass server");
    assert!(!output.status.success(), "started with {args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let temp = tempfile::tempdir().unwrap();
    let (file_port, flag_port) = (free_port(), free_port());
    let config = format!(
        "listen         = \"127.0.0.1:{file_port}\"\n\
         public_url     = \"https://hallpass.example.test\"\n\
         log_format     = \"json\"\n\
         max_body_bytes = 2048\n\
         auth_failures_per_minute = 3\n"
    );
    let file = write_file(temp.path(), "server.hcl", &config);
    let flag_listen = format!("127.0.0.1:{flag_port}");
    let server = Server::dev_with_args(
        &temp.path().join("data"),
        &["--config", &file, "--listen", &flag_listen],
    );

    // The flag's address, not the file's.
    assert!(server.addr.ends_with(&format!(":{flag_port}")));
    assert!(
        TcpStream::connect(("127.0.0.1", file_port)).is_err(),
        "nothing on the file's address"
    );
    // The file's settings where no flag says otherwise.
    let big = vec![b'x'; 4096];
    let (status, body) = server.http(
        "POST",
        "/v1/apply",
        Some(&server.admin),
        Some(("application/json", big)),
    );
    assert_eq!(status, 413, "max_body_bytes from the file: {body}");
    let grant = server.json(&server.alice, &["request", "demo-read", "--reason", "issuer"]);
    let credential = server.json(&server.alice, &["credentials", grant["id"].as_str().unwrap()]);
    assert_eq!(
        jwt_claims(credential["token"].as_str().unwrap())["iss"],
        "https://hallpass.example.test"
    );
    // A failed authentication is logged (as a warning): in JSON.
    server.http("GET", "/v1/whoami", Some("hp_not-a-real-token-at-all"), None);
    let logs = server.logs_when(|logs| logs.contains("authentication failed"));
    let first_log = logs
        .lines()
        .find(|line| line.starts_with('{'))
        .expect("a JSON log line, not text");
    assert!(serde_json::from_str::<Value>(first_log).is_ok(), "{first_log}");
    // The file's failure limit: two more failures, then the address waits.
    for _ in 0..2 {
        let (status, _) = server.http("GET", "/v1/whoami", Some("hp_not-a-real-token-at-all"), None);
        assert_eq!(status, 401);
    }
    let (status, body) = server.http("GET", "/v1/whoami", Some(ROOT_TOKEN), None);
    assert_eq!(status, 429, "3 failures a minute from the file: {body}");
    assert_eq!(body["error"]["code"], "too_many_failures");
}

#[test]
fn defaults_apply_when_neither_flag_nor_file_says() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::dev_with_args(&temp.path().join("data"), &[]);
    let grant = server.json(&server.alice, &["request", "demo-read", "--reason", "issuer"]);
    let credential = server.json(&server.alice, &["credentials", grant["id"].as_str().unwrap()]);
    assert_eq!(
        jwt_claims(credential["token"].as_str().unwrap())["iss"],
        server.addr,
        "issuer defaults to the address"
    );
    server.http("GET", "/v1/whoami", Some("hp_not-a-real-token-at-all"), None);
    let logs = server.logs_when(|logs| logs.contains("authentication failed"));
    assert!(
        !logs.lines().any(|line| line.starts_with('{')),
        "dev logs are text by default"
    );
    assert!(
        !logs.contains("hp_not-a-real-token-at-all"),
        "the secret is never logged"
    );
}

#[test]
fn chosen_tokens_need_randomness_and_may_come_from_a_file() {
    let temp = tempfile::tempdir().unwrap();
    let stderr = refuses_to_start(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--dev-root-token",
        "hp_0000000000000",
    ]);
    assert!(
        stderr.contains("bits of randomness") && stderr.contains("openssl rand"),
        "{stderr}"
    );

    let token_file = write_file(temp.path(), "root.token", &format!("{ROOT_TOKEN}\n"));
    let server = Server::dev_with_args(&temp.path().join("data"), &["--dev-root-token-file", &token_file]);
    let me = server.json(ROOT_TOKEN, &["whoami"]);
    assert_eq!(me["principal"], "admin");
}

#[test]
fn a_data_directory_others_can_write_into_is_refused_and_left_alone() {
    let temp = tempfile::tempdir().unwrap();
    let shared = temp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let shared_arg = shared.to_string_lossy().into_owned();
    let stderr = refuses_to_start(&["--data-dir", &shared_arg, "--listen", "127.0.0.1:0"]);
    assert!(stderr.contains("chmod 700") || stderr.contains("writable"), "{stderr}");
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777, "the sticky bit and mode are untouched");
    assert!(
        std::fs::read_dir(&shared).unwrap().next().is_none(),
        "nothing was written into it"
    );
}

#[test]
fn plain_http_beyond_loopback_is_warned_about() {
    let temp = tempfile::tempdir().unwrap();
    let listen = format!("0.0.0.0:{}", free_port());
    let server = Server::dev_with_args(&temp.path().join("data"), &["--listen", &listen]);
    let logs = server.logs();
    assert!(logs.contains("plain HTTP") && logs.contains("--tls-cert"), "{logs}");
    let local = Server::dev();
    assert!(!local.logs().contains("plain HTTP"), "loopback is not warned about");
}

#[test]
fn tls_serves_https_with_the_given_certificate() {
    let temp = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = write_file(temp.path(), "cert.pem", &certified.cert.pem());
    let key = write_file(temp.path(), "key.pem", &certified.signing_key.serialize_pem());
    let port = free_port();
    let mut child = Command::new(hallpass_bin())
        .args([
            "server",
            "--dev",
            "--dev-root-token",
            ROOT_TOKEN,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--tls-cert", &cert, "--tls-key", &key, "--data-dir"])
        .arg(temp.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime.block_on(async {
        let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
        hallpass_client::install_tls_crypto_provider();
        let client = reqwest::Client::builder().add_root_certificate(root).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("https://127.0.0.1:{port}/v1/whoami");
            if let Ok(response) = client.get(&url).bearer_auth(ROOT_TOKEN).send().await {
                return (response.status().as_u16(), response.text().await.unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "no HTTPS answer within 30s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert!(answer.1.contains("\"principal\":\"admin\""), "{}", answer.1);
}

/// GET `path` on `server` with `headers`; returns the status, the
/// `x-request-id` answered and the body as JSON (Null if not JSON).
fn get_with_headers(server: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = crate::harness::http_client().get(format!("{}{path}", server.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let id = response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
        (status, id, body)
    })
}

#[test]
fn the_access_log_has_a_line_per_request_with_its_id_and_leaves_out_probes_and_secrets() {
    let temp = tempfile::tempdir().unwrap();
    // Not dev: the log is JSON lines, as in production.
    let server = Server::persistent_with_env(&temp.path().join("data"), &[("RUST_LOG", "info")]);
    let bearer = format!("Bearer {ROOT_TOKEN}");
    for probe in ["/healthz", "/metrics"] {
        assert_eq!(get_with_headers(&server, probe, &[]).0, 200);
    }
    let (status, id, body) = get_with_headers(
        &server,
        "/v1/requests?cursor=secret-cursor-value",
        &[("authorization", &bearer)],
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_cursor");
    let id = id.expect("every answer carries x-request-id");
    assert_eq!(
        body["error"]["request_id"],
        id.as_str(),
        "the error body names the same id"
    );
    let (_, chosen, _) = get_with_headers(
        &server,
        "/v1/whoami",
        &[("authorization", &bearer), ("x-request-id", "lb-7f3a")],
    );
    assert_eq!(chosen.as_deref(), Some("lb-7f3a"), "an id set by a proxy is kept");

    let logs = server.logs_when(|logs| logs.contains("lb-7f3a") && logs.contains(&id));
    // An access-log line is a JSON object; the request's fields are in the
    // event or in its span.
    let field = |line: &Value, name: &str| line.get(name).unwrap_or(&line["span"][name]).clone();
    let line = |request_id: &str| -> Value {
        logs.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| field(line, "message") == "request" && field(line, "request_id") == request_id)
            .unwrap_or_else(|| panic!("no JSON access-log line for {request_id}:\n{logs}"))
    };
    let failed = line(&id);
    assert_eq!(field(&failed, "status"), 400, "{failed}");
    assert_eq!(field(&failed, "method"), "GET", "{failed}");
    assert_eq!(field(&failed, "path"), "/v1/requests", "{failed}");
    assert_eq!(field(&failed, "request_id"), id.as_str(), "{failed}");
    assert_eq!(field(&line("lb-7f3a"), "path"), "/v1/whoami");
    assert!(
        !logs.contains("secret-cursor-value"),
        "the query is not logged:\n{logs}"
    );
    assert!(!logs.contains(ROOT_TOKEN), "the token is not logged");
    assert!(
        !logs.contains("/healthz") && !logs.contains("/metrics"),
        "probes are logged at DEBUG only:\n{logs}"
    );
}
