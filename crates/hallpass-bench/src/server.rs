//! The `hallpass server --dev` child processes of one benchmark run.
//!
//! [`ServerProcess::start`] picks a free loopback port, creates a temp dir
//! holding the data dir and the server's log, spawns the release binary with a
//! fixed random admin token (and no inherited `HALLPASS_*` settings: only the
//! flags chosen here configure it), and waits for `/healthz`. [`ServerProcess::stop`]
//! sends SIGTERM (graceful shutdown) and falls back to SIGKILL. Dropping the
//! handle without `stop` (an error, Ctrl-C) kills the child at once, and the
//! child is also told to die with the benchmark (`PR_SET_PDEATHSIG`), so no
//! server or data dir outlives a run.
//!
//! A [`Deployment`] is what a scenario runs against: one server on embedded
//! SQLite, or N replicas sharing a fresh PostgreSQL database (created for it
//! and dropped after the replicas stopped) with one random seal key.
//!
//! [`Deployment::terminate`] and [`Deployment::respawn`] stop every replica
//! with SIGTERM and start it again on the same data (the same SQLite data
//! dir, the same database and seal key, the same admin token; a new free
//! port; the log continues in the same file), for the restart measurement
//! of `million`. The temp dirs and the database stay owned by the
//! deployment meanwhile, so the cleanup guarantees above still hold.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hallpass_client::Client;

use crate::postgres::Database;
use crate::procfs::{self, Memory, Snapshot};
use crate::random::{random_hex, random_seal_key};

/// How long the server gets to answer `/healthz` after spawning.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at finding a port nobody grabs between our probe and the bind.
const START_ATTEMPTS: usize = 3;

/// Where the servers keep their state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// One server, embedded SQLite in its temp dir.
    Sqlite,
    /// `replicas` servers on one fresh database of the PostgreSQL server at
    /// `server_url` (where the benchmark may CREATE DATABASE).
    Postgres { server_url: String, replicas: usize },
}

impl Backend {
    pub fn replicas(&self) -> usize {
        match self {
            Backend::Sqlite => 1,
            Backend::Postgres { replicas, .. } => *replicas,
        }
    }

    /// `SQLite`, `PostgreSQL, 1 replica`, `PostgreSQL, 3 replicas`.
    pub fn label(&self) -> String {
        match self {
            Backend::Sqlite => "SQLite".into(),
            Backend::Postgres { replicas: 1, .. } => "PostgreSQL, 1 replica".into(),
            Backend::Postgres { replicas, .. } => format!("PostgreSQL, {replicas} replicas"),
        }
    }
}

/// Serialized without the server URL, which may hold a password.
impl serde::Serialize for Backend {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Backend", 2)?;
        out.serialize_field("store", if *self == Backend::Sqlite { "sqlite" } else { "postgres" })?;
        out.serialize_field("replicas", &self.replicas())?;
        out.end()
    }
}

/// How one server process finds its store.
#[derive(Clone, Copy)]
enum Storage<'a> {
    Sqlite,
    Postgres { url: &'a str, seal_key: &'a str },
}

/// A running `hallpass server --dev` and its temp dir.
pub struct ServerProcess {
    child: Option<Child>,
    pid: u32,
    addr: String,
    root_token: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    // Declared last: removed only after `Drop` has killed the child.
    _dir: tempfile::TempDir,
}

/// Finds the `hallpass` binary: the given path, else `target/release/hallpass`
/// under the current directory, else the `hallpass` next to this benchmark.
pub fn resolve_binary(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = given {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!(
            "--hallpass {}: no such file; build it with `cargo build --release -p hallpass-cli`",
            path.display()
        );
    }
    let default = PathBuf::from("target/release/hallpass");
    if default.is_file() {
        return Ok(default);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(sibling) = exe.parent().map(|dir| dir.join("hallpass"))
        && sibling.is_file()
    {
        return Ok(sibling);
    }
    bail!(
        "cannot find the hallpass binary at target/release/hallpass or next to hallpass-bench; \
         build it with `cargo build --release -p hallpass-cli` or pass --hallpass PATH"
    )
}

/// Has the process `command` starts killed when the benchmark dies (even
/// by SIGKILL), so that no server it started outlives it.
pub(crate) fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only
    // makes one async-signal-safe system call.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The exit status of the process in `child` once it has exited, and then
/// `child` emptied (there is nothing left to stop).
pub(crate) fn exited(child: &mut Option<Child>) -> std::io::Result<Option<std::process::ExitStatus>> {
    let Some(process) = child.as_mut() else {
        return Ok(None);
    };
    let status = process.try_wait()?;
    if status.is_some() {
        *child = None;
    }
    Ok(status)
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port to probe")?;
    Ok(listener.local_addr().context("probe socket has no address")?.port())
}

fn random_token() -> Result<String> {
    Ok(format!("hp_bench_{}", random_hex::<24>()?))
}

/// The last `lines` lines of a log file, for error messages.
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

impl ServerProcess {
    /// Spawns `binary` and waits until it answers `/healthz`.
    async fn start(binary: &Path, storage: &Storage<'_>, root_token: &str) -> Result<Self> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(binary, storage, root_token).await {
                Ok(server) => return Ok(server),
                // Someone took the port between probe and bind: try another.
                Err(error) if format!("{error:#}").contains("cannot listen") => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("could not start the server")))
    }

    async fn start_once(binary: &Path, storage: &Storage<'_>, root_token: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("hallpass-bench-")
            .tempdir()
            .context("cannot create a temp dir for the server")?;
        let mut server = ServerProcess {
            child: None,
            pid: 0,
            addr: String::new(),
            root_token: root_token.to_string(),
            data_dir: dir.path().join("data"),
            log_path: dir.path().join("server.log"),
            _dir: dir,
        };
        server.spawn(binary, storage)?;
        server.wait_healthy().await?;
        // For watching it with top/perf while the benchmark runs.
        let store = match storage {
            Storage::Sqlite => format!("data dir {}", server.data_dir.display()),
            Storage::Postgres { .. } => format!("log {}", server.log_path.display()),
        };
        eprintln!("  server pid {} on http://{} ({store})", server.pid, server.addr);
        Ok(server)
    }

    /// Starts the binary on a free port, on this server's data dir (or
    /// `storage`'s database), appending to its log; does not wait for it.
    fn spawn(&mut self, binary: &Path, storage: &Storage<'_>) -> Result<()> {
        if self.child.is_some() {
            bail!("server pid {} is still running", self.pid);
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open {}", self.log_path.display()))?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("cannot reopen {}", self.log_path.display()))?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let mut command = Command::new(binary);
        command
            .arg("server")
            .arg("--dev")
            .arg("--listen")
            .arg(&addr)
            .arg("--dev-root-token")
            .arg(&self.root_token)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // Only the flags and variables set here configure the server: an
        // inherited HALLPASS_DATABASE_URL would silently switch the store.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HALLPASS_") {
                command.env_remove(name);
            }
        }
        match storage {
            Storage::Sqlite => command.arg("--data-dir").arg(&self.data_dir),
            Storage::Postgres { url, seal_key } => command
                .arg("--database-url")
                .arg(url)
                .env("HALLPASS_SEAL_KEY", seal_key),
        };
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        self.pid = child.id();
        self.child = Some(child);
        self.addr = addr;
        Ok(())
    }

    /// Fails (with the log's tail) when the server process has exited.
    fn check_running(&mut self) -> Result<()> {
        if self.child.is_none() {
            bail!("server pid {} is not running", self.pid);
        }
        if let Some(status) = exited(&mut self.child).context("cannot poll the server process")? {
            bail!(
                "hallpass server exited ({status}); its log ends with:\n{}",
                log_tail(&self.log_path, 20)
            );
        }
        Ok(())
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let client = Client::new(&self.addr, None)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = exited(&mut self.child).context("cannot poll the server process")? {
                bail!(
                    "hallpass server exited ({status}) before it was ready; its log ends with:\n{}",
                    log_tail(&self.log_path, 20)
                );
            }
            if client.health().await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "hallpass server did not answer /healthz within {}s; its log ends with:\n{}",
                    START_TIMEOUT.as_secs(),
                    log_tail(&self.log_path, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Graceful stop: SIGTERM, wait, then SIGKILL. Fails when the server did
    /// not exit cleanly (its log tail is in the message).
    pub async fn stop(mut self) -> Result<()> {
        self.terminate().await
    }

    /// [`ServerProcess::stop`] that keeps the temp dir (and so the data dir)
    /// for [`ServerProcess::spawn`] to start the server again on it.
    async fn terminate(&mut self) -> Result<()> {
        self.signal_term();
        self.wait_stopped().await
    }

    /// Sends SIGTERM, if the process is still ours to signal.
    fn signal_term(&self) {
        if self.child.is_some() {
            // SAFETY: plain kill(2) on our own child's pid, which is not reaped yet.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }

    /// Waits for the process to exit after [`ServerProcess::signal_term`];
    /// SIGKILL after [`STOP_TIMEOUT`].
    async fn wait_stopped(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("cannot poll the server process")? {
                if status.success() {
                    return Ok(());
                }
                bail!(
                    "hallpass server exited with {status} on SIGTERM; its log ends with:\n{}",
                    log_tail(&self.log_path, 20)
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "hallpass server did not stop within {}s of SIGTERM and was killed",
                    STOP_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The servers one scenario runs against, and their database.
pub struct Deployment {
    backend: Backend,
    replicas: Vec<ServerProcess>,
    /// The PostgreSQL replicas' `HALLPASS_SEAL_KEY`, for starting them again.
    seal_key: Option<String>,
    /// Declared after the replicas: dropped (DROP DATABASE) once they are gone.
    database: Option<Database>,
}

impl Deployment {
    /// Starts the servers. With several replicas the first one starts alone
    /// and seeds the dev data; the others start once it is healthy.
    pub async fn start(binary: &Path, backend: &Backend) -> Result<Self> {
        let root_token = random_token()?;
        match backend {
            Backend::Sqlite => {
                let server = ServerProcess::start(binary, &Storage::Sqlite, &root_token).await?;
                Ok(Deployment {
                    backend: backend.clone(),
                    replicas: vec![server],
                    seal_key: None,
                    database: None,
                })
            }
            Backend::Postgres { server_url, replicas } => {
                let database = Database::create(server_url)?;
                eprintln!("  database {} created", database.name());
                let seal_key = random_seal_key()?;
                let mut deployment = Deployment {
                    backend: backend.clone(),
                    replicas: Vec::with_capacity(*replicas),
                    seal_key: None,
                    database: None,
                };
                let storage = Storage::Postgres {
                    url: database.url(),
                    seal_key: &seal_key,
                };
                let started = async {
                    for _ in 0..*replicas {
                        let server = ServerProcess::start(binary, &storage, &root_token).await?;
                        deployment.replicas.push(server);
                    }
                    anyhow::Ok(())
                }
                .await;
                deployment.database = Some(database);
                deployment.seal_key = Some(seal_key);
                started?;
                Ok(deployment)
            }
        }
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// Process ids of the replicas.
    pub fn pids(&self) -> Vec<u32> {
        self.replicas.iter().map(|server| server.pid).collect()
    }

    /// A client authenticated as the dev admin, on replica `replica`.
    pub fn admin(&self, replica: usize) -> Result<Client> {
        let server = &self.replicas[replica % self.replicas.len()];
        Ok(Client::new(&server.addr, Some(server.root_token.clone()))?)
    }

    /// `http://127.0.0.1:PORT` of replica `replica` (as it is now: a
    /// respawned replica has a new port).
    pub fn base_url(&self, replica: usize) -> String {
        format!("http://{}", self.replicas[replica % self.replicas.len()].addr)
    }

    /// The dev admin token every replica accepts, for raw HTTP probes.
    pub fn admin_token(&self) -> &str {
        &self.replicas[0].root_token
    }

    /// VmRSS and VmHWM of each replica.
    pub fn memory(&self) -> Result<Vec<Memory>> {
        self.replicas.iter().map(|server| procfs::memory(server.pid)).collect()
    }

    /// CPU counters of the replicas, PostgreSQL (when local), this benchmark
    /// and the machine.
    pub fn cpu_snapshot(&self) -> Result<Snapshot> {
        let pids = self.pids();
        let postmaster = self.database.as_ref().and_then(Database::postmaster_pid);
        Snapshot::take(&pids, postmaster)
    }

    /// What the store holds on disk: the SQLite files (database, WAL, shared
    /// memory), or `pg_database_size`.
    pub fn database_bytes(&self) -> Result<u64> {
        match &self.database {
            Some(database) => database.size_bytes(),
            None => Ok(self.sqlite_files().iter().map(|(_, bytes)| bytes).sum()),
        }
    }

    /// On SQLite, each file's size (database, WAL, shared memory) by name;
    /// nothing on PostgreSQL.
    pub fn sqlite_files(&self) -> Vec<(&'static str, u64)> {
        if self.database.is_some() {
            return Vec::new();
        }
        ["hallpass.db", "hallpass.db-wal", "hallpass.db-shm"]
            .into_iter()
            .filter_map(|name| {
                let meta = std::fs::metadata(self.replicas[0].data_dir.join(name)).ok()?;
                Some((name, meta.len()))
            })
            .collect()
    }

    /// Stops every replica gracefully (SIGTERM to all at once, then waits
    /// for each) and keeps their data for [`Deployment::respawn`]. Fails when
    /// a replica did not exit cleanly.
    pub async fn terminate(&mut self) -> Result<()> {
        self.replicas.iter().for_each(ServerProcess::signal_term);
        let mut first_error = None;
        for server in &mut self.replicas {
            if let Err(error) = server.wait_stopped().await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Starts every replica again on the data they had, all at once, each on
    /// a new free port; does not wait for them (see [`Deployment::check_running`]).
    pub fn respawn(&mut self, binary: &Path) -> Result<()> {
        let storage = match (&self.database, &self.seal_key) {
            (Some(database), Some(seal_key)) => Storage::Postgres {
                url: database.url(),
                seal_key,
            },
            _ => Storage::Sqlite,
        };
        for server in &mut self.replicas {
            server.spawn(binary, &storage)?;
        }
        Ok(())
    }

    /// Fails when a replica has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.replicas.iter_mut().try_for_each(ServerProcess::check_running)
    }

    /// Stops every replica gracefully, then drops the database. Fails when a
    /// replica did not exit cleanly.
    pub async fn stop(self) -> Result<()> {
        let Deployment { replicas, database, .. } = self;
        let mut first_error = None;
        for server in replicas {
            if let Err(error) = server.stop().await {
                first_error.get_or_insert(error);
            }
        }
        if let Some(database) = database
            && let Err(error) = database.remove()
        {
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }
}
