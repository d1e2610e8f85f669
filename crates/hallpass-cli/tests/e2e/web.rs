//! The web UI end to end in a real headless Chromium: single sign-on
//! through a real OpenID Connect provider (the `oidc-provider` package,
//! `tests/web/oidc_provider.mjs`), then the Playwright scenario of
//! `tests/web/scenario.mjs` (request, live updates, approval, credential,
//! revocation, CSRF, who sees what, sign-out, phone width). Afterwards the
//! audit log, read through the API, must hold what the browsers did, under
//! the names the IdP vouched for.
//!
//! Needs Node.js >= 20, the packages of `tests/web` (`npm ci` there;
//! scripts/test does it) and Chromium (`HALLPASS_TEST_CHROMIUM`, default
//! `/usr/bin/chromium`). Without them the test is skipped with a loud
//! note, except under CI=true, where that is a failure.
//! `HALLPASS_WEB_SCREENSHOTS=DIR` keeps the screenshots in DIR.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Server, hallpass_bin, post_all};

const CLIENT_ID: &str = "hallpass-web-e2e";
const CLIENT_SECRET: &str = "e2e-web-client-secret-Xq8vB3nL0wT6";
/// The reason alice types (scenario.mjs): an XSS attempt.
const PAYLOAD: &str = "<img src=x onerror=alert(1)>";
/// How long the whole scenario may take before it is killed.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

const ACCESS: &str = r#"
target "db" {
  type   = "jwt"
  config = { audience = "db" }
}

role "db-admin" {
  target         = "db"
  description    = "Admin on the database (web UI test)"
  max_duration   = "1h"
  requestable_by = ["group:dev"]
  approval {
    approvers = ["group:approvers"]
    required  = 1
  }
}
"#;

/// What the scenario needs: node, the web test's directory with its
/// packages installed, and Chromium.
struct Tools {
    node: String,
    dir: PathBuf,
    chromium: String,
}

/// The tools, or `None` (the test skips) when one is missing outside CI.
fn tools() -> Option<Tools> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    let node = std::env::var("HALLPASS_TEST_NODE").unwrap_or_else(|_| "node".to_string());
    let chromium = std::env::var("HALLPASS_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
    let version = Command::new(&node)
        .arg("--version")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string());
    let major = version
        .as_deref()
        .and_then(|v| v.trim_start_matches('v').split('.').next()?.parse::<u32>().ok());
    let problem = if major.is_none() {
        format!("{node} (Node.js) does not run")
    } else if major < Some(20) {
        format!(
            "{node} is Node.js {}; the web test needs >= 20",
            version.unwrap_or_default()
        )
    } else if ["oidc-provider", "playwright-core"]
        .iter()
        .any(|package| !dir.join("node_modules").join(package).join("package.json").is_file())
    {
        format!("the packages of {} are not installed (npm ci there)", dir.display())
    } else if !Path::new(&chromium).is_file() {
        format!("no Chromium at {chromium} (apt-get install chromium, or set HALLPASS_TEST_CHROMIUM)")
    } else {
        return Some(Tools { node, dir, chromium });
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {problem}: scripts/test installs what the web test needs"
    );
    eprintln!("\n!!!!!!!! SKIPPING the web UI test: {problem} (scripts/test sets it up) !!!!!!!!\n");
    None
}

/// A child process (the IdP, the scenario), killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Echoes each line of `from` to stderr with `prefix`, and sends it on.
fn forward(from: impl Read + Send + 'static, prefix: &'static str) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            eprintln!("{prefix}{line}");
            let _ = tx.send(line);
        }
    });
    rx
}

/// Starts the test IdP with alice (dev), bob (the IdP's `idp-approvers`,
/// which the server renames to `approvers`) and carol (auditors); returns
/// it with its issuer URL.
/// The IdP's people as they start.
fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@example.com", "groups": ["dev"]},
        "bob": {"email": "bob@example.com", "groups": ["idp-approvers"]},
        "carol": {"email": "carol@example.com", "groups": ["auditors"]},
    })
}

/// Starts the IdP with the people of `accounts_file`, which it reads again
/// at every sign-in and refresh.
fn start_idp(tools: &Tools, redirect_uri: &str, accounts_file: &Path) -> (Running, String) {
    std::fs::write(accounts_file, accounts().to_string()).expect("write the IdP's accounts");
    let mut child = Command::new(&tools.node)
        .arg("oidc_provider.mjs")
        .current_dir(&tools.dir)
        .env("OIDC_PORT", "0")
        .env("OIDC_CLIENT_ID", CLIENT_ID)
        .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("OIDC_REDIRECT_URIS", redirect_uri)
        .env("OIDC_ACCOUNTS_FILE", accounts_file)
        .env("OIDC_HOLD_FILE", hold_file(accounts_file))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node oidc_provider.mjs");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let idp = Running(child);
    let lines = forward(stdout, "idp: ");
    let _ = forward(stderr, "idp: ");
    let line = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the IdP did not say where it listens within 30s");
    let issuer = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("the IdP said {line:?}"))
        .trim()
        .to_string();
    (idp, issuer)
}

/// A loopback address nothing listens on yet, for the server: the IdP
/// must know the redirect URI before the server starts.
fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").to_string()
}

/// The server configuration: SSO through the IdP at `issuer`. No
/// `public_url`: the server derives `http://ADDR` from where it listens.
fn server_config(issuer: &str) -> String {
    format!(
        r#"
sso {{
  issuer          = "{issuer}"
  client_id       = "{CLIENT_ID}"
  client_secret   = "{CLIENT_SECRET}"
  scopes          = ["email", "groups"]
  principal_claim = "email"
  groups_claim    = "groups"
  group_names     = {{ "idp-approvers" = "approvers" }}
  session_ttl     = "1h"
  recheck_every   = "0s"
}}
# 49 replays of a one-time code are failed authentications from 127.0.0.1,
# which the admin's later calls share.
auth_failures_per_minute = 1000
"#
    )
}

/// Runs scenario.mjs against `server`, its output streamed; returns whether
/// it passed. Killed after [`SCENARIO_TIMEOUT`].
fn run_scenario(tools: &Tools, server: &Server, screenshots: &Path, result_file: &Path, cli_urls: &str) -> bool {
    let mut child = Command::new(&tools.node)
        .arg("scenario.mjs")
        .current_dir(&tools.dir)
        .env("HALLPASS_URL", &server.addr)
        .env("SCREENSHOT_DIR", screenshots)
        .env("RESULT_FILE", result_file)
        .env("CHROMIUM", &tools.chromium)
        .env("AUDITOR_USER", "carol")
        .env("CLI_LOGIN_URLS", cli_urls)
        // Generous for clicks and page loads on a busy machine; live
        // updates keep the scenario's own bound (LIVE_TIMEOUT_MS, 3 s).
        .env("TIMEOUT_MS", "10000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node scenario.mjs");
    let _out = forward(child.stdout.take().expect("stdout"), "scenario: ");
    let _err = forward(child.stderr.take().expect("stderr"), "scenario: ");
    let mut scenario = Running(child);
    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    loop {
        if let Some(status) = scenario.0.try_wait().expect("wait for the scenario") {
            // Let the forwarding threads print the last lines.
            std::thread::sleep(Duration::from_millis(200));
            return status.success();
        }
        if Instant::now() > deadline {
            eprintln!("the scenario ran longer than {SCENARIO_TIMEOUT:?}: killed");
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `hallpass login --no-browser` waiting for the browser, with its own
/// configuration directory; and the address it asks the person to open.
fn start_cli_login(server: &Server, config_home: &Path) -> (Running, String) {
    let mut child = Command::new(hallpass_bin())
        .args(["login", "--no-browser", "--addr", &server.addr])
        .env("XDG_CONFIG_HOME", config_home)
        .env_remove("HALLPASS_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hallpass login");
    let lines = forward(child.stderr.take().expect("stderr"), "hallpass login: ");
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("hallpass login printed no sign-in address");
        if let Some(at) = line.find("http://") {
            return (running, line[at..].trim().to_string());
        }
    }
}

/// Waits for `hallpass login` to finish; panics unless it succeeded.
fn finished(mut login: Running) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = login.0.try_wait().expect("wait for hallpass login") {
            assert!(status.success(), "hallpass login failed: {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "hallpass login did not finish after the browser allowed it"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A stand-in for the CLI's loopback listener: the code the browser brings
/// arrives on the receiver; the verifier is this test's own.
struct LoopbackCatcher {
    url: String,
    verifier: String,
    codes: Receiver<String>,
}

fn loopback_catcher(server: &Server) -> LoopbackCatcher {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::Digest;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the loopback catcher");
    let port = listener.local_addr().expect("local addr").port();
    let verifier = "e2e-verifier-0123456789-abcdefghijklmnopqrstuvwxyz".to_string();
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let (tx, codes) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else { return };
        let mut line = String::new();
        let _ = BufReader::new(&stream).read_line(&mut line);
        let code = line
            .split_whitespace()
            .nth(1)
            .and_then(|target| target.strip_prefix("/callback?"))
            .and_then(|query| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("code="))
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let _ = std::io::Write::write_all(
            &mut stream,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        );
        let _ = tx.send(code);
    });
    let url = format!(
        "{}/auth/cli?port={port}&state=e2e-raw-state&code_challenge={challenge}",
        server.addr
    );
    LoopbackCatcher { url, verifier, codes }
}

/// The CLI kept its token owner-only, uses it for this server, and
/// `hallpass logout` revokes and forgets it.
fn check_cli_login(server: &Server, config_home: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let file = config_home.join("hallpass").join("credentials.json");
    let mode = std::fs::metadata(&file).expect("credentials.json").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials.json is {mode:o}");
    let dir_mode = std::fs::metadata(file.parent().expect("dir"))
        .expect("dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700, "its directory is {dir_mode:o}");
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).expect("read credentials.json")).expect("JSON");
    let token = stored["token"].as_str().expect("token").to_string();
    let cli = |args: &[&str]| {
        Command::new(hallpass_bin())
            .args(["--addr", &server.addr])
            .args(args)
            .env("XDG_CONFIG_HOME", config_home)
            .env_remove("HALLPASS_TOKEN")
            .output()
            .expect("run hallpass")
    };
    let whoami = cli(&["--output", "json", "whoami"]);
    assert!(whoami.status.success(), "{}", String::from_utf8_lossy(&whoami.stderr));
    let me: Value = serde_json::from_slice(&whoami.stdout).expect("whoami JSON");
    assert_eq!(me["principal"], "alice@example.com", "{me:#}");
    assert_eq!(me["groups"], json!(["dev"]), "{me:#}");
    assert!(me["token_expires_at"].is_string(), "a CLI token must expire: {me:#}");
    let logout = cli(&["logout"]);
    assert!(logout.status.success(), "{}", String::from_utf8_lossy(&logout.stderr));
    assert!(!file.exists(), "hallpass logout left {}", file.display());
    let after = cli(&["whoami"]);
    assert!(!after.status.success(), "still signed in after logout");
    // The token itself is dead, not just forgotten.
    let (status, body) = server.http("GET", "/v1/whoami", Some(&token), None);
    assert_eq!(status, 401, "{body:#}");
    token
}

/// A one-time code from the browser works once: 50 parallel trades of it
/// make exactly one token, a wrong verifier makes none. Returns the code
/// and the token it made.
fn check_code_is_one_time(server: &Server, catcher: &LoopbackCatcher) -> [String; 2] {
    let code = catcher
        .codes
        .recv_timeout(Duration::from_secs(10))
        .expect("the browser brought no code to the loopback catcher");
    assert!(!code.is_empty());
    let wrong = json!({"code": code, "code_verifier": "x".repeat(43)});
    let (status, body) = server.http(
        "POST",
        "/v1/auth/cli/token",
        None,
        Some(("application/json", wrong.to_string().into_bytes())),
    );
    assert_eq!(status, 401, "{body:#}");
    let right = json!({"code": code, "code_verifier": catcher.verifier});
    let answers = post_all(
        std::slice::from_ref(&server.addr),
        "/v1/auth/cli/token",
        "",
        vec![right; 50],
    );
    let made: Vec<_> = answers.iter().filter(|(status, _)| *status == 201).collect();
    assert_eq!(made.len(), 1, "one code made {} tokens: {answers:?}", made.len());
    assert_eq!(made[0].1["principal"], "alice@example.com");
    assert!(
        answers.iter().all(|(status, _)| *status == 201 || *status == 401),
        "{answers:?}"
    );
    [code, made[0].1["token"].as_str().expect("token").to_string()]
}

/// Someone reading the database, or the audit export, finds none of the
/// secrets of sign-in: the client secret, session cookies, CLI tokens and
/// one-time codes (only hashes and sealed values are kept).
fn check_no_secret_at_rest(server: &Server, secrets: &[&str]) {
    let stored = server.dump_storage();
    let export = server.run(&server.admin, &["audit", "export"]);
    assert!(export.status.success());
    let export = String::from_utf8_lossy(&export.stdout);
    assert!(
        export.contains("token.created") && stored.len() > 1000,
        "nothing was read"
    );
    for secret in secrets {
        assert!(secret.len() >= 16, "not a secret: {secret:?}");
        assert!(!stored.contains(secret), "a sign-in secret is in the database in clear");
        assert!(!export.contains(secret), "a sign-in secret is in the audit export");
    }
}

/// `GET /` with a session cookie: the status, the `Location` and the page.
fn home_with(server: &Server, cookie: &str) -> (u16, String, String) {
    let host = server.addr.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    let request =
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nCookie: hallpass_session={cookie}\r\nConnection: close\r\n\r\n");
    std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = answer
        .lines()
        .find_map(|line| line.strip_prefix("location: "))
        .unwrap_or_default()
        .to_string();
    (status, location, answer)
}

/// Locking a principal ends their browser session on its next request.
fn check_lock_ends_session(server: &Server, cookie: &str) {
    assert_eq!(
        home_with(server, cookie).0,
        200,
        "carol's session should still work before the lock"
    );
    server.json(
        &server.admin,
        &["lock", "carol@example.com", "--reason", "web e2e: lock ends sessions"],
    );
    let (status, location, _) = home_with(server, cookie);
    assert_eq!(status, 303, "carol's session outlived her lock");
    assert!(location.starts_with("/login"), "{location}");
}

/// While this file (beside the IdP's accounts) exists, the IdP holds its
/// token endpoint's answers.
fn hold_file(accounts_file: &Path) -> PathBuf {
    accounts_file.with_file_name("idp-hold")
}

/// A request whose client goes away while its recheck waits on the
/// provider does not leave the check half-done: the check ends, and the
/// next request rechecks (`check_groups_follow_the_provider` runs next).
/// A check dropped with its request kept its 30 s lease, and every request
/// meanwhile went on with the stored groups.
fn check_an_abandoned_recheck_blocks_nothing(server: &Server, accounts_file: &Path, cookie: &str) {
    let hold = hold_file(accounts_file);
    let held = hold.with_extension("held");
    std::fs::write(&hold, "").expect("hold the IdP's answers");
    let host = server.addr.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nCookie: hallpass_session={cookie}\r\n\r\n");
    std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !held.exists() {
        assert!(
            Instant::now() < deadline,
            "the server never asked the IdP to recheck the session"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The client goes away while its request waits on the provider.
    drop(stream);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&hold).expect("release the IdP's answers");
    // The check ends when the server has recorded the IdP's answer: no
    // session is left in a check. A check dropped with its request would
    // hold it for its whole 30 s lease.
    let mut database = server.database();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let checking = database.rows("SELECT token_id FROM sso_sessions WHERE checking_until IS NOT NULL");
        if checking.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned request's recheck still holds its lease 10 s after the IdP answered: {checking:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A session follows the provider (`recheck_every = "0s"`): bob's groups
/// changed there are his on the next request, with an audit event, and
/// once the provider no longer knows him his session ends.
fn check_groups_follow_the_provider(server: &Server, accounts_file: &Path, cookie: &str) {
    let (status, _, page) = home_with(server, cookie);
    assert_eq!(status, 200);
    assert!(page.contains("title=\"groups: approvers\""), "{page}");
    let mut people = accounts();
    people["bob"]["groups"] = json!(["dev"]);
    std::fs::write(accounts_file, people.to_string()).expect("rewrite the IdP's accounts");
    let (status, _, page) = home_with(server, cookie);
    assert_eq!(status, 200);
    assert!(
        page.contains("title=\"groups: dev\""),
        "bob kept his old groups: {page}"
    );
    let events = server.json(&server.admin, &["audit", "list", "--limit", "10000"]);
    let changed = of_kind(events.as_array().expect("events"), "token.groups_changed");
    assert_eq!(changed.len(), 1, "{changed:#?}");
    assert_eq!(changed[0]["data"]["groups_before"], json!(["approvers"]));
    assert_eq!(changed[0]["data"]["groups"], json!(["dev"]));
    people.as_object_mut().expect("accounts").remove("bob");
    std::fs::write(accounts_file, people.to_string()).expect("rewrite the IdP's accounts");
    let (status, location, _) = home_with(server, cookie);
    assert_eq!(status, 303, "bob's session outlived his account");
    assert!(location.starts_with("/login"), "{location}");
    let events = server.json(&server.admin, &["audit", "list", "--limit", "10000"]);
    let ended: Vec<_> = of_kind(events.as_array().expect("events"), "token.revoked")
        .into_iter()
        .filter(|e| e["data"]["reason"] == "the identity provider no longer vouches for the session")
        .collect();
    assert_eq!(ended.len(), 1, "{events:#}");
}

/// The events of `kind` in `events`.
fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|event| event["kind"] == kind).collect()
}

/// The audit log holds what the browsers did, with the IdP's names.
fn check_audit(server: &Server, id: &str) {
    let request = server.json(&server.admin, &["audit", "list", "--request", id]);
    let request = request.as_array().expect("events");
    let created = of_kind(request, "request.created");
    assert_eq!(created.len(), 1, "{request:#?}");
    assert_eq!(created[0]["actor"], "alice@example.com", "{:#}", created[0]);
    assert_eq!(created[0]["data"]["reason"], PAYLOAD, "{:#}", created[0]);
    // One approval: the forged ones (no or a wrong csrf field) changed nothing.
    let approved = of_kind(request, "request.approved");
    assert_eq!(approved.len(), 1, "{request:#?}");
    assert_eq!(approved[0]["actor"], "bob@example.com", "{:#}", approved[0]);
    assert_eq!(
        approved[0]["data"]["comment"], "ok, for the incident",
        "{:#}",
        approved[0]
    );
    assert_eq!(of_kind(request, "grant.activated").len(), 1, "{request:#?}");
    let revoked = of_kind(request, "grant.revoked");
    assert_eq!(revoked.len(), 1, "{request:#?}");
    assert_eq!(revoked[0]["actor"], "bob@example.com", "{:#}", revoked[0]);
    assert_eq!(revoked[0]["data"]["reason"], "done with the test", "{:#}", revoked[0]);
    assert!(
        of_kind(request, "grant.released").is_empty(),
        "a forged release went through: {request:#?}"
    );

    // Signing out revoked alice's session token, which she never used again.
    let all = server.json(&server.admin, &["audit", "list", "--limit", "10000"]);
    let all = all.as_array().expect("events");
    let sign_outs: Vec<_> = of_kind(all, "token.revoked")
        .into_iter()
        .filter(|event| event["actor"] == "alice@example.com")
        .collect();
    // Two: the browser's "Sign out" and `hallpass logout`.
    assert_eq!(
        sign_outs.len(),
        2,
        "alice's sign-outs are not in the audit log: {all:#?}"
    );
    assert!(
        sign_outs.iter().all(|event| event["data"]["reason"] == "signed out"),
        "{sign_outs:#?}"
    );
}

#[test]
fn sso_request_live_approval_credential_revocation_csrf_and_sign_out_in_a_real_browser() {
    let Some(tools) = tools() else { return };
    let temp = tempfile::tempdir().expect("temp dir");
    let addr = free_addr();
    let accounts_file = temp.path().join("idp-accounts.json");
    let (_idp, issuer) = start_idp(&tools, &format!("http://{addr}/auth/callback"), &accounts_file);
    let config = temp.path().join("server.hcl");
    std::fs::write(&config, server_config(&issuer)).expect("write server.hcl");
    let server = Server::persistent_with_args(
        &temp.path().join("data"),
        &["--config", &config.to_string_lossy(), "--listen", &addr],
    );
    server.apply(temp.path(), ACCESS);

    let screenshots =
        std::env::var_os("HALLPASS_WEB_SCREENSHOTS").map_or_else(|| temp.path().join("screenshots"), PathBuf::from);
    std::fs::create_dir_all(&screenshots).expect("create the screenshot dir");
    let result_file = temp.path().join("scenario-result.json");
    let config_home = temp.path().join("cli-config");
    let (cli_login, cli_url) = start_cli_login(&server, &config_home);
    let catcher = loopback_catcher(&server);
    let cli_urls = format!("{cli_url} {}", catcher.url);
    let passed = run_scenario(&tools, &server, &screenshots, &result_file, &cli_urls);
    if !passed {
        // The temp dir, with the screenshots (failure-*.png among them)
        // and the server's data, outlives the failed test.
        let kept = temp.keep();
        panic!(
            "the browser scenario failed (its output is above); screenshots in {}, the server's data in {}",
            screenshots.display(),
            kept.join("data").display()
        );
    }
    eprintln!("screenshots in {}", screenshots.display());

    let result: Value =
        serde_json::from_slice(&std::fs::read(&result_file).expect("the scenario's result file")).expect("JSON");
    let id = result["request_id"].as_str().expect("request_id").to_string();
    let shown = server.json(&server.admin, &["show", &id]);
    assert!(matches!(shown["state"].as_str(), Some("revoked")), "{shown:#}");
    finished(cli_login);
    let cli_token = check_cli_login(&server, &config_home);
    let [code, raced_token] = check_code_is_one_time(&server, &catcher);
    let (auditor, approver) = (
        result["auditor_cookie"].as_str().expect("auditor_cookie"),
        result["approver_cookie"].as_str().expect("approver_cookie"),
    );
    check_lock_ends_session(&server, auditor);
    check_an_abandoned_recheck_blocks_nothing(&server, &accounts_file, approver);
    check_groups_follow_the_provider(&server, &accounts_file, approver);
    check_audit(&server, &id);
    check_no_secret_at_rest(
        &server,
        &[CLIENT_SECRET, auditor, approver, &cli_token, &code, &raced_token],
    );
}
