//! Shared fixtures for the end-to-end tests: start the real `hallpass`
//! binary on a free loopback port, run CLI commands against it, talk HTTP.
//!
//! Each test gets its own server and data dir, so tests run in parallel and
//! never see each other's state. The binary is the one `cargo build` put in
//! the target dir (`scripts/test` builds it before running the suite).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ROOT_TOKEN: &str = "hp_e2e_root_token_0123456789";

/// Path of the `hallpass` binary under test.
pub fn hallpass_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("hallpass")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A running `hallpass server`; killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    pub admin: String,
    pub alice: String,
    pub bob: String,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// `hallpass server --dev` with its seeded demo data and printed tokens.
    pub fn dev() -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Self::spawn(&data_dir, true, &[]);
        server._temp = Some(temp);
        server
    }

    /// `hallpass server --data-dir DIR` (not dev): the first start creates
    /// the admin token from HALLPASS_BOOTSTRAP_TOKEN.
    pub fn persistent(data_dir: &Path) -> Server {
        Self::spawn(data_dir, false, &[])
    }

    fn spawn(data_dir: &Path, dev: bool, extra: &[&str]) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut command = Command::new(hallpass_bin());
        command
            .arg("server")
            .args(["--listen", &addr, "--data-dir"])
            .arg(data_dir)
            .args(extra);
        if dev {
            command.args(["--dev", "--dev-root-token", ROOT_TOKEN]);
        } else {
            command.env("HALLPASS_BOOTSTRAP_TOKEN", ROOT_TOKEN);
        }
        command.env_remove("HALLPASS_TOKEN").env("RUST_LOG", "warn");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hallpass server");
        let stdout = child.stdout.take().expect("stdout");
        // Read the banner on a thread: it tells the tokens (dev mode).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child: Some(child),
            addr: format!("http://{addr}"),
            data_dir: data_dir.to_path_buf(),
            admin: ROOT_TOKEN.to_string(),
            alice: String::new(),
            bob: String::new(),
            _temp: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            while let Ok(line) = rx.try_recv() {
                let token = line.split_whitespace().last().unwrap_or_default().to_string();
                if line.trim_start().starts_with("alice ") {
                    server.alice = token;
                } else if line.trim_start().starts_with("bob ") {
                    server.bob = token;
                }
            }
            if server.healthy() && (!dev || (!server.alice.is_empty() && !server.bob.is_empty())) {
                return server;
            }
            if let Some(status) = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("hallpass server exited during start-up: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "hallpass server did not become healthy within 30s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn healthy(&self) -> bool {
        let host = self.addr.trim_start_matches("http://");
        let Ok(mut stream) = std::net::TcpStream::connect(host) else {
            return false;
        };
        use std::io::{Read, Write};
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// SIGKILL: no shutdown hooks, no flush — a crash.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A `hallpass` CLI command against this server with `token`.
    pub fn cli(&self, token: &str) -> Command {
        let mut command = Command::new(hallpass_bin());
        command
            .env("HALLPASS_ADDR", &self.addr)
            .env("HALLPASS_TOKEN", token)
            .env_remove("HALLPASS_DEV_ROOT_TOKEN");
        command
    }

    /// Runs the CLI with `--output json`, asserting success; parses stdout.
    pub fn json(&self, token: &str, args: &[&str]) -> Value {
        let output = self
            .cli(token)
            .args(["--output", "json"])
            .args(args)
            .output()
            .expect("run hallpass");
        assert!(
            output.status.success(),
            "hallpass {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "hallpass {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// Runs the CLI expecting failure; returns (exit code, stderr).
    pub fn fails(&self, token: &str, args: &[&str]) -> (i32, String) {
        let output = self.cli(token).args(args).output().expect("run hallpass");
        assert!(
            !output.status.success(),
            "hallpass {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    pub fn run(&self, token: &str, args: &[&str]) -> Output {
        self.cli(token).args(args).output().expect("run hallpass")
    }

    /// The number of audit events so far.
    pub fn audit_len(&self) -> usize {
        self.json(&self.admin, &["audit", "list", "--limit", "10000"])
            .as_array()
            .map_or(0, Vec::len)
    }

    /// Polls a request until it reaches `state`.
    pub fn wait_state(&self, token: &str, id: &str, state: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let request = self.json(token, &["show", id]);
            if request["state"] == state {
                return request;
            }
            assert!(
                Instant::now() < deadline,
                "request {id} is {} after {within:?}, expected {state}",
                request["state"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET a non-JSON page (e.g. `/metrics`) as text.
    pub fn text(&self, path: &str) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let response = reqwest::get(format!("{}{path}", self.addr))
                .await
                .expect("http request");
            response.text().await.expect("body")
        })
    }

    /// Raw HTTP call; returns (status, body as JSON or Null).
    pub fn http(&self, method: &str, path: &str, token: Option<&str>, body: Option<(&str, Vec<u8>)>) -> (u16, Value) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = reqwest::Client::new();
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut request = client.request(method, format!("{}{path}", self.addr));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some((content_type, bytes)) = body {
                request = request.header("content-type", content_type).body(bytes);
            }
            let response = request.send().await.expect("http request");
            let status = response.status().as_u16();
            let bytes = response.bytes().await.expect("body");
            (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// The claims of a JWT, decoded without verification (tests check the
/// signature through introspection and the JWKS separately).
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}
