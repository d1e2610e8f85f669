//! Each target type end to end: a `hallpass server` issues real credentials
//! on the real service `scripts/test` started, the requester uses them with
//! the real client (`psql`, `mariadb`, `redis-cli`, `ssh`, AWS's boto3), and
//! a revoke through the CLI ends the sessions opened during the grant,
//! leaves the credential useless and nothing behind, and is recorded as
//! verified. A target that is down when a grant is revoked leaves it
//! `revoke_failed` until it is back; an admin without the privileges fails
//! `target test` and activation, creating nothing.
//!
//! Every test makes its own names (admin, roles, principal) with
//! [`support::unique`], so tests share one service without meeting.

mod aws;
mod hallpass;
mod mysql;
mod postgres;
mod redis;
mod ssh;

// Where the services are, and the throwaway sshd: one definition with the
// providers' own integration tests.
#[path = "../../../../hallpass-providers/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Server;

/// A dev server with one target and one auto-approved role on it (both
/// named [`World::name`]), and a requester of its own in group `dev`.
pub struct World {
    pub server: Server,
    pub dir: tempfile::TempDir,
    /// Unique, lower-case letters, digits and `x`: usable as an identifier
    /// on every service.
    pub name: String,
    pub token: String,
}

/// An active grant and its credential's environment.
pub struct Grant {
    pub id: String,
    pub env: BTreeMap<String, String>,
}

impl World {
    pub fn new(prefix: &str) -> World {
        let server = Server::dev();
        let name = support::unique(prefix);
        let token = server.token(&format!("{name}@example.com"), "dev");
        World {
            server,
            dir: tempfile::tempdir().expect("temp dir"),
            name,
            token,
        }
    }

    /// Applies the target `name` (`target_body`: its type, config and
    /// secrets) and an auto-approved role `name` whose grant is `grant`
    /// (an HCL object).
    pub fn apply(&self, target_body: &str, grant: &str) -> Value {
        let name = &self.name;
        let config = format!(
            "target \"{name}\" {{\n{target_body}\n}}\n\
             role \"{name}\" {{\n  target = \"{name}\"\n  max_duration = \"1h\"\n  \
             requestable_by = [\"group:dev\"]\n  auto_approve = true\n  grant = {grant}\n}}\n"
        );
        self.server.apply(self.dir.path(), &config)
    }

    /// Requests the role and fetches the credential, through the CLI.
    pub fn request(&self) -> Grant {
        let request = self.server.json(
            &self.token,
            &["request", &self.name, "--for", "20m", "--reason", "end-to-end test"],
        );
        assert_eq!(request["state"], "active", "{request}");
        let id = request["id"].as_str().expect("id").to_string();
        let credential = self.server.json(&self.token, &["credentials", &id, "--format", "json"]);
        let env = serde_json::from_value(credential["env"].clone()).expect("the credential's env");
        Grant { id, env }
    }

    /// `hallpass request` for a role whose target cannot issue: it fails,
    /// and the request is left approved (retried), never active.
    pub fn request_fails(&self) -> String {
        let (_, stderr) = self.server.fails(
            &self.token,
            &["request", &self.name, "--for", "20m", "--reason", "end-to-end test"],
        );
        let mine = self.server.json(&self.token, &["requests", "--mine"]);
        assert!(
            mine.as_array().into_iter().flatten().all(|r| r["state"] != "active"),
            "{mine}"
        );
        stderr
    }

    /// `hallpass revoke` as the admin: the CLI's output.
    pub fn revoke(&self, id: &str) -> Output {
        self.server
            .run(&self.server.admin, &["revoke", id, "--reason", "end-to-end test"])
    }

    /// Revokes, expecting the grant to be gone and verified.
    pub fn revoke_verified(&self, id: &str) {
        let output = self.revoke(id);
        assert!(
            output.status.success(),
            "hallpass revoke failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(self.end_event(id, "grant.revoked")["data"]["verified"], true);
    }

    /// Revokes while the target is down: exit 1, `revoke_failed` in
    /// `hallpass grants`, and an audit event saying it was not verified.
    fn revoke_fails(&self, id: &str) {
        let output = self.revoke(id);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
        assert!(stderr.contains("may still work"), "{stderr}");
        let grants = self.server.json(&self.server.admin, &["grants"]);
        let grant = grants
            .as_array()
            .into_iter()
            .flatten()
            .find(|grant| grant["id"] == id)
            .expect("the grant is listed");
        assert_eq!(grant["state"], "revoke_failed", "{grant}");
        assert_eq!(self.end_event(id, "grant.revoke_failed")["data"]["verified"], false);
    }

    /// The target behind `proxy` goes down before the grant is revoked and
    /// comes back: meanwhile the grant is `revoke_failed` and its access
    /// still on the target (`on_target`); once it is back, the retry
    /// removes it and the grant ends, verified.
    pub fn revoke_while_down(&self, proxy: &Proxy, id: &str, mut on_target: impl FnMut() -> bool) {
        assert!(on_target(), "the grant's access is on the target");
        proxy.down();
        self.revoke_fails(id);
        assert!(on_target(), "nothing could be done while it was down");
        proxy.up();
        self.wait_revoked(id);
        assert!(!on_target(), "the retry removed the access");
    }

    /// Once the target is back, the retry ends the grant, verified.
    fn wait_revoked(&self, id: &str) {
        self.server
            .wait_state(&self.server.admin, id, "revoked", Duration::from_secs(40));
        assert_eq!(self.end_event(id, "grant.revoked")["data"]["verified"], true);
    }

    /// The last audit event of `kind` for request `id`.
    pub fn end_event(&self, id: &str, kind: &str) -> Value {
        audit_event(&self.server, id, kind)
    }

    /// `hallpass target test NAME`: its exit code and what it printed.
    pub fn target_test(&self) -> (Option<i32>, String) {
        let output = self.server.run(&self.server.admin, &["target", "test", &self.name]);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// Asserts that nothing Hallpass stores holds `secret`.
    pub fn assert_not_stored(&self, secret: &str) {
        assert!(!secret.is_empty());
        assert!(
            !self.server.dump_storage().contains(secret),
            "a secret is stored in clear"
        );
    }
}

/// Polls `done` every 50 ms until it holds, or fails after `within`.
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `command`, returning its output (stdin closed).
pub fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("the client is installed")
}

/// What a client printed, both streams, for assertions and messages.
pub fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A client process holding a session open (a long sleep on the server).
pub struct Session(Child);

impl Session {
    pub fn start(command: &mut Command) -> Session {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the client is installed");
        Session(child)
    }

    /// Its exit status once it ends; fails if it is still running after
    /// `within`.
    pub fn ended_within(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for the client") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the session opened during the grant is still open {within:?} after the revoke"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `host` and `port` of a service URL such as `mysql://root@127.0.0.1:3306/`.
pub fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = host_port.rsplit_once(':').expect("the URL names a port");
    (host.to_string(), port.parse().expect("a port number"))
}

/// A TCP forwarder on a port of 127.0.0.1 in front of a service, which a
/// test takes down (connections refused, open ones cut) and brings back on
/// the same port: a target that is down, then up again.
pub struct Proxy {
    pub port: u16,
    shared: Arc<ProxyShared>,
}

struct ProxyShared {
    up: AtomicBool,
    stop: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    pub fn start(upstream: (String, u16)) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        // Polled, so that the loop notices when it is to go down.
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let shared = Arc::new(ProxyShared {
            up: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || accept_loop(Some(listener), port, upstream, &accepting));
        Proxy { port, shared }
    }

    /// Refuses new connections and cuts the open ones.
    pub fn down(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        for stream in self.shared.open.lock().expect("lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // The accept loop drops its listener within a few milliseconds.
        wait_until("the proxy to refuse connections", Duration::from_secs(5), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_err()
        });
    }

    pub fn up(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.up.store(false, Ordering::SeqCst);
        for stream in self.shared.open.lock().expect("lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(mut listener: Option<TcpListener>, port: u16, upstream: (String, u16), shared: &ProxyShared) {
    while !shared.stop.load(Ordering::SeqCst) {
        if !shared.up.load(Ordering::SeqCst) {
            listener = None;
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if listener.is_none() {
            // std sets SO_REUSEADDR: the port is free again at once.
            listener = TcpListener::bind(("127.0.0.1", port)).ok();
            if let Some(listener) = &listener {
                listener.set_nonblocking(true).expect("nonblocking");
            }
        }
        let Some(accepting) = &listener else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        match accepting.accept() {
            Ok((client, _)) => forward(client, &upstream, shared),
            Err(error) if error.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn forward(client: TcpStream, upstream: &(String, u16), shared: &ProxyShared) {
    let Ok(server) = TcpStream::connect((upstream.0.as_str(), upstream.1)) else {
        return;
    };
    let _ = client.set_nonblocking(false);
    let (Ok(client_copy), Ok(server_copy)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    {
        let mut open = shared.open.lock().expect("lock");
        for stream in [&client, &server] {
            if let Ok(kept) = stream.try_clone() {
                open.push(kept);
            }
        }
    }
    std::thread::spawn(move || pump(client, server));
    std::thread::spawn(move || pump(server_copy, client_copy));
}

/// Copies `from` to `to` until either side closes, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Writes `text` to `dir/name` with mode 0600 and returns its path.
pub fn private_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// The last audit event of `kind` for request `id` on `server`.
pub fn audit_event(server: &Server, id: &str, kind: &str) -> Value {
    let export = server.run(&server.admin, &["audit", "export"]);
    String::from_utf8_lossy(&export.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .rfind(|event| event["kind"] == kind && event["request_id"] == id)
        .unwrap_or_else(|| panic!("no {kind} event for {id}"))
}
