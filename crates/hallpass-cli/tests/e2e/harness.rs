//! Shared fixtures for the end-to-end tests: start the real `hallpass`
//! binary on a free loopback port, run CLI commands against it, talk HTTP.
//!
//! Each test gets its own server and data dir, so tests run in parallel and
//! never see each other's state.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The admin token the servers under test start with (the dev root token or
/// the bootstrap token). Chosen tokens must carry 128 bits of randomness.
pub const ROOT_TOKEN: &str = "hp_e2eR00t-Kq7vN2xLw9Yb4Hc8Tz3Pm6Jd1Fg5Su0Ra";
/// An HMAC key for webhook targets, in the Standard Webhooks form.
pub const WEBHOOK_HMAC_SECRET: &str = "whsec_aGFsbHBhc3MtZTJlLXdlYmhvb2stc2lnbmluZy1rZXk=";
/// The seal key the servers under test use on PostgreSQL (32 bytes, base64).
pub const SEAL_KEY: &str = "aGFsbHBhc3MtZTJlLXNlYWwta2V5LTMyLWJ5dGVzLiE=";

// One definition with the store's tests of where PostgreSQL is and of the
// one-line failure when there is none.
#[path = "../../../hallpass-store/tests/shared/postgres.rs"]
mod shared_postgres;
pub use shared_postgres::postgres_base_url;

/// Which store the servers under test use: `HALLPASS_TEST_BACKEND=postgres`
/// (on the server at `HALLPASS_TEST_POSTGRES_URL`) or SQLite.
pub fn postgres_url() -> Option<String> {
    match std::env::var("HALLPASS_TEST_BACKEND").as_deref() {
        Ok("postgres") => Some(postgres_base_url()),
        _ => None,
    }
}

/// A database of its own for the server whose data dir is `data_dir`
/// (restarts on the same dir reuse it); created on first use. `base_url`
/// names a server where the caller may `CREATE DATABASE`.
pub fn database_for(base_url: &str, data_dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    let name = format!("hp_{:016x}", hasher.finish());
    let mut client = postgres::Client::connect(base_url, postgres::NoTls).expect("connect to PostgreSQL");
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .expect("look the database up");
    if exists.is_none() {
        // A name is an identifier, not a value: it cannot be a parameter.
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the database");
    }
    let (prefix, _) = base_url.rsplit_once('/').expect("a database URL has a path");
    format!("{prefix}/{name}")
}

/// A server's store opened directly, with plain SQL that both backends
/// run (`$1`, `$2`, ... in order of appearance).
pub enum Database {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Database {
    /// The rows of `query`, whose columns must all be text (cast the
    /// others); NULL is `None`.
    pub fn rows(&mut self, query: &str) -> Vec<Vec<Option<String>>> {
        self.select(
            query,
            |row| (0..row.as_ref().column_count()).map(|i| row.get(i)).collect(),
            |row| (0..row.len()).map(|i| row.get(i)).collect(),
        )
    }

    /// Each row of `query`, read by the backend's reader.
    fn select<T>(
        &mut self,
        query: &str,
        from_sqlite: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
        from_postgres: impl Fn(&postgres::Row) -> T,
    ) -> Vec<T> {
        match self {
            Database::Sqlite(connection) => {
                let mut statement = connection.prepare(query).expect("prepare");
                statement
                    .query_map([], from_sqlite)
                    .expect("query")
                    .collect::<Result<_, _>>()
                    .expect("read rows")
            }
            Database::Postgres(client) => client
                .query(query, &[])
                .expect("query")
                .iter()
                .map(from_postgres)
                .collect(),
        }
    }

    /// SQL that reads `column`, an audit hash (stored as bytes), as the
    /// lowercase hex everything else shows.
    pub fn hex(&self, column: &str) -> String {
        match self {
            Database::Sqlite(_) => format!("lower(hex({column}))"),
            Database::Postgres(_) => format!("encode({column}, 'hex')"),
        }
    }

    /// SQL for parameter `$n`, a hash in hex, as the store keeps audit
    /// hashes: their bytes.
    pub fn hash_param(&self, n: usize) -> String {
        match self {
            Database::Sqlite(_) => format!("unhex(${n})"),
            Database::Postgres(_) => format!("decode(${n}, 'hex')"),
        }
    }

    /// The first column of every row of `query`, a stored document (a
    /// request record or an audit event's data), as its JSON.
    pub fn documents(&mut self, query: &str) -> Vec<serde_json::Value> {
        let stored: Vec<Vec<u8>> = self.select(
            query,
            |row| {
                Ok(match row.get_ref(0)? {
                    rusqlite::types::ValueRef::Blob(bytes) | rusqlite::types::ValueRef::Text(bytes) => bytes.to_vec(),
                    other => panic!("{query}: a document of type {:?}", other.data_type()),
                })
            },
            |row| row.get(0),
        );
        stored
            .iter()
            .map(|bytes| {
                let json = hallpass_store::stored_document_json(bytes).expect("a readable document");
                serde_json::from_slice(&json).expect("JSON")
            })
            .collect()
    }

    /// Runs `statement` with text `params`; returns the rows it changed.
    pub fn execute(&mut self, statement: &str, params: &[&str]) -> u64 {
        match self {
            Database::Sqlite(connection) => connection
                .execute(statement, rusqlite::params_from_iter(params))
                .expect("execute") as u64,
            Database::Postgres(client) => {
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p as &(dyn postgres::types::ToSql + Sync))
                    .collect();
                client.execute(statement, &params).expect("execute")
            }
        }
    }
}

/// Path of the `hallpass` binary under test: the one Cargo built from this
/// source for this test target, never a stale one from an earlier build.
pub fn hallpass_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hallpass"))
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
    /// The PostgreSQL database, when the backend is PostgreSQL.
    pub database_url: Option<String>,
    pub admin: String,
    pub alice: String,
    pub bob: String,
    /// Everything the server wrote to stderr so far (its log).
    logs: Arc<Mutex<String>>,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// `hallpass server --dev` with its seeded demo data and printed tokens.
    pub fn dev() -> Server {
        Self::dev_with_env(&[])
    }

    /// `hallpass server --data-dir DIR` (not dev): the first start creates
    /// the admin token from HALLPASS_BOOTSTRAP_TOKEN.
    pub fn persistent(data_dir: &Path) -> Server {
        Self::spawn(data_dir, false, Self::suite_database(data_dir))
    }

    /// Like [`Server::persistent`], with extra environment (e.g. `RUST_LOG`).
    pub fn persistent_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::spawn_with(data_dir, false, Self::suite_database(data_dir), env, &[])
    }

    /// Like [`Server::persistent`], with extra arguments (e.g. `--config`).
    pub fn persistent_with_args(data_dir: &Path, args: &[&str]) -> Server {
        Self::spawn_with(data_dir, false, Self::suite_database(data_dir), &[], args)
    }

    /// Like [`Server::replica`], with extra arguments (e.g. `--config`).
    pub fn replica_with_args(database_url: &str, data_dir: &Path, args: &[&str]) -> Server {
        Self::spawn_with(data_dir, false, Some(database_url.to_string()), &[], args)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// One of several servers sharing the PostgreSQL database
    /// `database_url` (not dev), whatever this suite's backend. Like
    /// [`Server::persistent`], the first start on an empty database creates
    /// the admin token; replicas may start together.
    pub fn replica(database_url: &str, data_dir: &Path) -> Server {
        Self::spawn(data_dir, false, Some(database_url.to_string()))
    }

    /// The suite's database for the server of `data_dir`, if on PostgreSQL.
    fn suite_database(data_dir: &Path) -> Option<String> {
        postgres_url().map(|base| database_for(&base, data_dir))
    }

    /// The command that starts a server on `addr` for `data_dir` with this
    /// suite's backend; returns it with the database URL in use.
    pub fn command(data_dir: &Path, addr: &str) -> (Command, Option<String>) {
        let database_url = Self::suite_database(data_dir);
        (Self::command_on(data_dir, addr, database_url.as_deref()), database_url)
    }

    /// The command that starts a server on `addr` for `data_dir`, on
    /// PostgreSQL at `database_url` or else on SQLite.
    fn command_on(data_dir: &Path, addr: &str, database_url: Option<&str>) -> Command {
        let mut command = Command::new(hallpass_bin());
        command
            .arg("server")
            .args(["--listen", addr, "--data-dir"])
            .arg(data_dir);
        if let Some(url) = database_url {
            command.args(["--database-url", url]).env("HALLPASS_SEAL_KEY", SEAL_KEY);
        }
        command.env_remove("HALLPASS_TOKEN").env("RUST_LOG", "warn");
        command
    }

    /// A server (not dev) on `data_dir` with SQLite, or on `database_url`,
    /// with extra environment (e.g. another seal key): for starting a
    /// release's server on data an earlier release wrote.
    pub fn with_env(data_dir: &Path, database_url: Option<String>, env: &[(&str, &str)]) -> Server {
        Self::spawn_with(data_dir, false, database_url, env, &[])
    }

    /// `hallpass server --dev` on this suite's backend with extra
    /// environment, e.g. `RUST_LOG` to log more than warnings.
    pub fn dev_with_env(env: &[(&str, &str)]) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Self::spawn_with(&data_dir, true, Self::suite_database(&data_dir), env, &[]);
        server._temp = Some(temp);
        server
    }

    /// A dev server on SQLite in `data_dir` with extra arguments (the last
    /// `--listen` given wins, so `args` may move it).
    pub fn dev_with_args(data_dir: &Path, args: &[&str]) -> Server {
        Self::spawn_with(data_dir, true, None, &[], args)
    }

    fn spawn(data_dir: &Path, dev: bool, database_url: Option<String>) -> Server {
        Self::spawn_with(data_dir, dev, database_url, &[], &[])
    }

    fn spawn_with(
        data_dir: &Path,
        dev: bool,
        database_url: Option<String>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Server {
        // `--listen` in `args` chooses the address; else a free port.
        let chosen = args
            .windows(2)
            .find(|pair| pair[0] == "--listen")
            .map(|pair| pair[1].to_string());
        let listen = chosen.unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
        let addr = listen.replace("0.0.0.0", "127.0.0.1");
        let mut command = Self::command_on(data_dir, &listen, database_url.as_deref());
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            if *arg == "--listen" {
                rest.next();
            } else {
                command.arg(arg);
            }
        }
        command.envs(env.iter().copied());
        if dev && args.contains(&"--dev-root-token-file") {
            command.arg("--dev");
        } else if dev {
            command.args(["--dev", "--dev-root-token", ROOT_TOKEN]);
        } else {
            command.env("HALLPASS_BOOTSTRAP_TOKEN", ROOT_TOKEN);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hallpass server");
        let stdout = child.stdout.take().expect("stdout");
        let logs = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            // Kept for assertions on what the server logs, and echoed so a
            // failing test still shows it.
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    if let Ok(mut logs) = logs.lock() {
                        logs.push_str(&line);
                        logs.push('\n');
                    }
                }
            });
        }
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
            database_url,
            admin: ROOT_TOKEN.to_string(),
            alice: String::new(),
            bob: String::new(),
            logs,
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
        let Ok(mut stream) = TcpStream::connect(host) else {
            return false;
        };
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200")
    }

    /// Everything the store holds at rest, as text: the SQLite files, or a
    /// `pg_dump` of the PostgreSQL database, and the packed documents
    /// unpacked, as anyone reading the database can. For checking that no
    /// secret is stored in clear.
    pub fn dump_storage(&self) -> String {
        let backend = match &self.database_url {
            Some(url) => hallpass_store::Backend::Postgres { url: url.clone() },
            None => hallpass_store::Backend::Sqlite {
                data_dir: self.data_dir.clone(),
            },
        };
        let documents = hallpass_store::stored_documents(&backend).expect("the stored documents");
        let raw = match &self.database_url {
            Some(url) => {
                let output = Command::new("pg_dump").arg(url).output().expect("run pg_dump");
                assert!(
                    output.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                String::from_utf8_lossy(&output.stdout).into_owned()
            }
            None => std::fs::read_dir(&self.data_dir)
                .expect("data dir")
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name() != "seal.key")
                .map(|entry| String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap_or_default()).into_owned())
                .collect(),
        };
        raw + &documents
    }

    /// A connection of its own to the server's store, as someone with
    /// access to the database (not through the server) has: the SQLite
    /// file or the PostgreSQL database.
    pub fn database(&self) -> Database {
        match &self.database_url {
            Some(url) => {
                Database::Postgres(postgres::Client::connect(url, postgres::NoTls).expect("connect to PostgreSQL"))
            }
            None => Database::Sqlite(
                rusqlite::Connection::open(self.data_dir.join("hallpass.db")).expect("open hallpass.db"),
            ),
        }
    }

    /// What the server has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().map(|logs| logs.clone()).unwrap_or_default()
    }

    /// The logs once `ready` holds for them: the server writes a line
    /// after it answers, and a thread copies its stderr, so a test that
    /// reads right after the answer could miss it. Panics after 10 s.
    pub fn logs_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if ready(&logs) {
                return logs;
            }
            assert!(Instant::now() < deadline, "the awaited log lines never came:\n{logs}");
            std::thread::sleep(Duration::from_millis(20));
        }
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

    /// A `hallpass` CLI command against this server with `token`. The
    /// keys it keeps for SSH grants go next to the server's data, not to
    /// the user's runtime directory.
    pub fn cli(&self, token: &str) -> Command {
        let mut command = Command::new(hallpass_bin());
        command
            .env("HALLPASS_ADDR", &self.addr)
            .env("HALLPASS_TOKEN", token)
            .env("HALLPASS_KEYS_DIR", self.keys_dir())
            .env_remove("HALLPASS_DEV_ROOT_TOKEN");
        command
    }

    /// Where this server's CLI commands keep the private keys of SSH grants.
    pub fn keys_dir(&self) -> PathBuf {
        let mut name = self.data_dir.as_os_str().to_owned();
        name.push("-cli-keys");
        PathBuf::from(name)
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

    /// Creates an API token for `principal` in `groups` (comma-separated).
    pub fn token(&self, principal: &str, groups: &str) -> String {
        let created = self.json(
            &self.admin,
            &["token", "create", "--principal", principal, "--groups", groups],
        );
        created["token"].as_str().expect("token").to_string()
    }

    /// Writes `config` to `DIR/access.hcl` and applies it as the admin.
    pub fn apply(&self, dir: &Path, config: &str) -> Value {
        let file = dir.join("access.hcl");
        std::fs::write(&file, config).expect("write access.hcl");
        self.json(&self.admin, &["apply", "-f", &file.to_string_lossy()])
    }

    /// What token introspection (as the admin) says of a grant's token.
    pub fn introspect(&self, token: &str) -> Value {
        let body = format!("token={token}").into_bytes();
        let (status, answer) = self.http(
            "POST",
            "/v1/introspect",
            Some(&self.admin),
            Some(("application/x-www-form-urlencoded", body)),
        );
        assert_eq!(status, 200, "{answer}");
        answer
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
            let response = http_client()
                .get(format!("{}{path}", self.addr))
                .send()
                .await
                .expect("http request");
            response.text().await.expect("body")
        })
    }

    /// The same POST of JSON `bodies` (one per caller), all sent at once;
    /// returns each (status, body) in order. For races: every call is in
    /// flight before the first answer comes back.
    pub fn post_all(&self, path: &str, token: &str, bodies: Vec<Value>) -> Vec<(u16, Value)> {
        post_all(std::slice::from_ref(&self.addr), path, token, bodies)
    }

    /// A GET; returns (status, body as JSON, the `x-next-cursor` header).
    pub fn http_response(&self, method: &str, path: &str, token: Option<&str>) -> (u16, Value, Option<String>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut request = http_client().request(method, format!("{}{path}", self.addr));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("http request");
            let status = response.status().as_u16();
            let cursor = response
                .headers()
                .get("x-next-cursor")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = response.bytes().await.expect("body");
            (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), cursor)
        })
    }

    /// Raw HTTP call; returns (status, body as JSON or Null).
    pub fn http(&self, method: &str, path: &str, token: Option<&str>, body: Option<(&str, Vec<u8>)>) -> (u16, Value) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = http_client();
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

/// POSTs JSON `bodies` all at once, the i-th to `addrs[i % addrs.len()]`;
/// returns each (status, body) in order. For races: every call is in
/// flight before the first answer comes back.
pub fn post_all(addrs: &[String], path: &str, token: &str, bodies: Vec<Value>) -> Vec<(u16, Value)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = http_client();
        let barrier = Arc::new(tokio::sync::Barrier::new(bodies.len()));
        let calls = bodies.into_iter().enumerate().map(|(index, body)| {
            let (client, barrier) = (client.clone(), Arc::clone(&barrier));
            let url = format!("{}{path}", addrs[index % addrs.len()]);
            let token = token.to_string();
            tokio::spawn(async move {
                let request = client.post(url).bearer_auth(token).json(&body);
                barrier.wait().await;
                let response = request.send().await.expect("http request");
                let status = response.status().as_u16();
                let bytes = response.bytes().await.expect("body");
                (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
            })
        });
        let mut answers = Vec::new();
        for call in calls.collect::<Vec<_>>() {
            answers.push(call.await.expect("call task"));
        }
        answers
    })
}

/// Writes `text` to `DIR/NAME`; returns the path as a string for the CLI.
pub fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.to_string_lossy().into_owned()
}

/// An apply result's changes as `"ACTION KIND NAME"` lines.
pub fn change_actions(result: &Value) -> Vec<String> {
    result["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c["action"].as_str().unwrap_or_default(),
                c["kind"].as_str().unwrap_or_default(),
                c["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
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

/// One call a [`WebhookRecorder`] received.
#[derive(Debug, Clone)]
pub struct WebhookCall {
    /// `event` of the body: `issue` or `revoke`.
    pub event: String,
    pub grant_id: String,
    /// The `Idempotency-Key` header (empty if missing).
    pub idempotency_key: String,
    pub body: Value,
    /// Every header, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body exactly as received (what a signature covers).
    pub raw_body: Vec<u8>,
}

impl WebhookCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 endpoint for `webhook` targets that records every call and
/// answers `200 OK`; one thread per connection, keep-alive honoured.
pub struct WebhookRecorder {
    /// The URL to put in the target's `config.url`.
    pub url: String,
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<WebhookCall>>>,
    stop: Arc<AtomicBool>,
}

impl WebhookRecorder {
    /// Answers each revoke only `delay` after recording it, like a slow
    /// system: the caller holds its work that much longer.
    pub fn with_revoke_delay(delay: Duration) -> WebhookRecorder {
        use Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook endpoint");
        let addr = listener.local_addr().expect("local addr");
        let calls = Arc::default();
        let stop = Arc::<AtomicBool>::default();
        let (recorded, stopped) = (Arc::clone(&calls), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let recorded = Arc::clone(&recorded);
                // A connection the caller drops (or a caller that dies) just
                // ends its thread.
                std::thread::spawn(move || {
                    let _ = Self::serve(stream, &recorded, delay);
                });
            }
        });
        WebhookRecorder {
            url: format!("http://{addr}/hook"),
            addr,
            calls,
            stop,
        }
    }

    /// Answers the requests of one connection until the caller closes it.
    fn serve(stream: TcpStream, calls: &Mutex<Vec<WebhookCall>>, revoke_delay: Duration) -> std::io::Result<()> {
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        while let Some((headers, raw_body)) = read_request(&mut reader)? {
            let key = headers
                .iter()
                .find(|(name, _)| name == "idempotency-key")
                .map(|(_, value)| value.clone())
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&raw_body).unwrap_or(Value::Null);
            let event = body["event"].as_str().unwrap_or_default().to_string();
            let revoke = event == "revoke";
            calls.lock().unwrap().push(WebhookCall {
                event,
                grant_id: body["grant_id"].as_str().unwrap_or_default().to_string(),
                idempotency_key: key,
                body,
                headers,
                raw_body,
            });
            if revoke {
                std::thread::sleep(revoke_delay);
            }
            writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
        }
        Ok(())
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<WebhookCall> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for WebhookRecorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// An HTTP request's headers (names lower-cased) and body.
pub type Request = (Vec<(String, String)>, Vec<u8>);

/// One HTTP/1.1 request read off a connection; `None` when the caller
/// closed the connection.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let (mut length, mut headers) = (0usize, Vec::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            if name == "content-length" {
                length = value.trim().parse().unwrap_or(0);
            }
            headers.push((name, value.trim().to_string()));
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some((headers, body)))
}

/// A plain reqwest client, after installing the one TLS crypto provider
/// (reqwest is built without its own).
pub fn http_client() -> reqwest::Client {
    hallpass_client::install_tls_crypto_provider();
    reqwest::Client::new()
}
