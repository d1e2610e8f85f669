//! One `hallpass server --dev` child process per benchmark run.
//!
//! [`ServerProcess::start`] picks a free loopback port, creates a temp dir
//! holding the data dir and the server's log, spawns the release binary with a
//! fixed random admin token (and no inherited `HALLPASS_*` settings: the
//! store is always the embedded SQLite), and waits for `/healthz`. [`ServerProcess::stop`]
//! sends SIGTERM (graceful shutdown) and falls back to SIGKILL. Dropping the
//! handle without `stop` (an error, Ctrl-C) kills the child at once, and the
//! child is also told to die with the benchmark (`PR_SET_PDEATHSIG`), so no
//! server or data dir outlives a run.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hallpass_client::Client;

use crate::procfs::{self, Memory, Snapshot};

/// How long the server gets to answer `/healthz` after spawning.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at finding a port nobody grabs between our probe and the bind.
const START_ATTEMPTS: usize = 3;

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

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port to probe")?;
    Ok(listener.local_addr().context("probe socket has no address")?.port())
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("hp_bench_{hex}"))
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
    pub async fn start(binary: &Path) -> Result<Self> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(binary).await {
                Ok(server) => return Ok(server),
                // Someone took the port between probe and bind: try another.
                Err(error) if format!("{error:#}").contains("cannot listen") => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("could not start the server")))
    }

    async fn start_once(binary: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("hallpass-bench-")
            .tempdir()
            .context("cannot create a temp dir for the server")?;
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("server.log");
        let log = File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("cannot reopen {}", log_path.display()))?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let root_token = random_token()?;
        let mut command = Command::new(binary);
        command
            .arg("server")
            .arg("--dev")
            .arg("--listen")
            .arg(&addr)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--dev-root-token")
            .arg(&root_token)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // Only the flags above configure the server: an inherited
        // HALLPASS_DATABASE_URL would silently switch it to PostgreSQL.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HALLPASS_") {
                command.env_remove(name);
            }
        }
        // SAFETY: the closure runs in the forked child before exec and only
        // makes one async-signal-safe system call.
        unsafe {
            command.pre_exec(|| {
                // If the benchmark dies (even by SIGKILL), the server dies too.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id();
        let mut server = ServerProcess {
            child: Some(child),
            pid,
            addr,
            root_token,
            data_dir,
            log_path,
            _dir: dir,
        };
        server.wait_healthy().await?;
        // For watching it with top/perf while the benchmark runs.
        eprintln!(
            "  server pid {} on http://{} (data dir {})",
            server.pid,
            server.addr,
            server.data_dir.display()
        );
        Ok(server)
    }

    async fn wait_healthy(&mut self) -> Result<()> {
        let client = Client::new(&self.addr, None)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("cannot poll the server process")?
            {
                self.child = None;
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

    /// A client authenticated as the dev admin.
    pub fn admin(&self) -> Result<Client> {
        Ok(Client::new(&self.addr, Some(self.root_token.clone()))?)
    }

    /// VmRSS and VmHWM of the server process.
    pub fn memory(&self) -> Result<Memory> {
        procfs::memory(self.pid)
    }

    /// CPU counters of the server, this benchmark and the machine.
    pub fn cpu_snapshot(&self) -> Result<Snapshot> {
        Snapshot::take(self.pid)
    }

    /// Bytes used by the SQLite files (database, WAL, shared memory).
    pub fn database_bytes(&self) -> u64 {
        ["hallpass.db", "hallpass.db-wal", "hallpass.db-shm"]
            .iter()
            .filter_map(|name| std::fs::metadata(self.data_dir.join(name)).ok())
            .map(|meta| meta.len())
            .sum()
    }

    /// Graceful stop: SIGTERM, wait, then SIGKILL. Fails when the server did
    /// not exit cleanly (its log tail is in the message).
    pub async fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: plain kill(2) on our own child's pid, which is not reaped yet.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
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
