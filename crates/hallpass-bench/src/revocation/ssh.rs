//! The OpenSSH server behind the revocation scenario's `ssh` target.
//!
//! An ssh target is a user CA: nothing is created on the host, so there is
//! no admin to set up. [`Ssh::create`] makes a temp dir for the target's
//! `krl_path`; once the target exists, [`Ssh::start`] runs a throwaway
//! `sshd -D` on a free loopback port there, trusting the target's CA
//! (`TrustedUserCAKeys`) and reading the list Hallpass writes
//! (`RevokedKeys`), as docs/targets.md sets a host up. Grants certify the
//! login of the user running the benchmark (sshd, not being root or being
//! it, can only log that user in). Logins and sessions use the real `ssh`
//! client with the grant's key and certificate. sshd dies with the
//! benchmark (`PR_SET_PDEATHSIG`) and the temp dir goes with the handle.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hallpass_api::{Credential, TargetSpec};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::probe::Outcome;
use super::{Login, env_var};

/// How long sshd gets to listen after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one `ssh` login may take: several at once on two busy cores
/// take seconds each.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Ssh {
    sshd_binary: PathBuf,
    /// The user grants certify, who logs in.
    pub user: String,
    pub krl_path: PathBuf,
    port: u16,
    sshd: Option<Child>,
    files: AtomicUsize,
    // Declared last: removed once sshd has been killed.
    dir: tempfile::TempDir,
}

/// The name of the user running the benchmark.
fn current_user() -> Result<String> {
    let output = Command::new("id").arg("-un").output().context("cannot run `id -un`")?;
    let name = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || name.is_empty() {
        bail!("`id -un` did not name the current user");
    }
    Ok(name)
}

/// Writes `text` to a new file readable by its owner only (ssh refuses a
/// private key others may read).
fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

impl Ssh {
    pub fn create(sshd: &Path) -> Result<Ssh> {
        if !sshd.is_file() {
            bail!(
                "no sshd at {}: install openssh-server, or pass --sshd PATH (the ssh target needs a real sshd)",
                sshd.display()
            );
        }
        // sshd re-executes itself and insists on an absolute path.
        let sshd_binary = sshd
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", sshd.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("hallpass-bench-ssh-")
            .tempdir()
            .context("cannot create a temp dir for sshd")?;
        // sshd (as root) reads its files through this directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .context("cannot open up sshd's temp dir")?;
        Ok(Ssh {
            sshd_binary,
            user: current_user()?,
            krl_path: dir.path().join("hallpass.krl"),
            port: 0,
            sshd: None,
            files: AtomicUsize::new(0),
            dir,
        })
    }

    pub fn target(&self, name: &str) -> TargetSpec {
        let config = json!({ "krl_path": self.krl_path.display().to_string() });
        TargetSpec {
            name: name.into(),
            target_type: "ssh".into(),
            config: config.as_object().cloned().unwrap_or_default(),
            secrets: None,
        }
    }

    /// The user's login only, and no terminal: commands only.
    pub fn grant(&self) -> Map<String, Value> {
        json!({ "principals": [self.user], "extensions": [] })
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    /// Starts sshd trusting `ca_public_key`, with `krl` (the target's list
    /// as served) in place at `krl_path`: sshd refuses everyone while the
    /// file it names is missing.
    pub async fn start(&mut self, ca_public_key: &str, krl: &[u8]) -> Result<()> {
        let host_key = self.write_keys(ca_public_key, krl)?;
        if is_root() {
            privilege_separation_dir()?;
        }
        self.port = crate::server::free_port()?;
        let config = self.write_config(&host_key)?;
        let log = self.dir.path().join("sshd.log");
        self.sshd = Some(self.spawn(&config, &log)?);
        self.wait_listening(&log).await?;
        eprintln!("  sshd on 127.0.0.1:{} (log {})", self.port, log.display());
        Ok(())
    }

    /// Writes the revocation list, the CA's public key and a fresh host
    /// key into the temp dir; the host key's path.
    fn write_keys(&self, ca_public_key: &str, krl: &[u8]) -> Result<PathBuf> {
        let dir = self.dir.path();
        std::fs::write(&self.krl_path, krl).context("cannot write the initial revocation list")?;
        std::fs::write(dir.join("ca.pub"), format!("{}\n", ca_public_key.trim()))
            .context("cannot write the CA's public key")?;
        let host_key = dir.join("host_ed25519");
        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "hallpass-bench-host", "-f"])
            .arg(&host_key)
            .stdin(Stdio::null())
            .output()
            .context("cannot run ssh-keygen (is openssh-client installed?)")?;
        if !keygen.status.success() {
            bail!("ssh-keygen failed: {}", String::from_utf8_lossy(&keygen.stderr).trim());
        }
        Ok(host_key)
    }

    /// Writes an `sshd_config` that sshd accepts; its path.
    fn write_config(&self, host_key: &Path) -> Result<PathBuf> {
        let dir = self.dir.path();
        let config = dir.join("sshd_config");
        let text = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nPidFile {dir}/sshd.pid\n\
             UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nAuthorizedKeysFile none\nPermitRootLogin prohibit-password\n\
             TrustedUserCAKeys {dir}/ca.pub\nRevokedKeys {krl}\n\
             MaxStartups 200:30:400\nMaxSessions 10\nLogLevel VERBOSE\n",
            port = self.port,
            host_key = host_key.display(),
            dir = dir.display(),
            krl = self.krl_path.display(),
        );
        // OpenSSH 9.8 and later would penalise 127.0.0.1 for the refused
        // logins this benchmark makes on purpose; older ones lack the word.
        std::fs::write(&config, format!("{text}PerSourcePenalties no\n")).context("cannot write sshd_config")?;
        if !self.test_config(&config)?.status.success() {
            std::fs::write(&config, &text).context("cannot write sshd_config")?;
            let again = self.test_config(&config)?;
            if !again.status.success() {
                bail!(
                    "sshd refuses its config: {}",
                    String::from_utf8_lossy(&again.stderr).trim()
                );
            }
        }
        Ok(config)
    }

    /// `sshd -t`: sshd's verdict on the config at `config`.
    fn test_config(&self, config: &Path) -> Result<std::process::Output> {
        Command::new(&self.sshd_binary)
            .arg("-t")
            .arg("-f")
            .arg(config)
            .output()
            .context("cannot run sshd -t")
    }

    /// Runs `sshd -D` with `config`, logging to `log`; it dies with the
    /// benchmark.
    fn spawn(&self, config: &Path, log: &Path) -> Result<Child> {
        let mut command = Command::new(&self.sshd_binary);
        command
            .arg("-D")
            .arg("-f")
            .arg(config)
            .arg("-E")
            .arg(log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        crate::server::die_with_parent(&mut command);
        command.spawn().context("cannot start sshd")
    }

    /// Waits until sshd listens on its port; an error with its log when it
    /// exits first, or when it takes longer than `START_TIMEOUT`.
    async fn wait_listening(&mut self, log: &Path) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = crate::server::exited(&mut self.sshd).context("cannot poll sshd")? {
                bail!(
                    "sshd exited ({status}): {}",
                    std::fs::read_to_string(log).unwrap_or_default().trim()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("sshd did not listen on 127.0.0.1:{} within 15 s", self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The grant's key pair and certificate, saved as `ssh -i` wants them.
    pub fn login(&self, credential: &Credential) -> Result<Login> {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        let key = self.dir.path().join(format!("id_{n}"));
        let certificate = self.dir.path().join(format!("id_{n}-cert.pub"));
        write_private(&key, &env_var(credential, "HALLPASS_SSH_PRIVATE_KEY")?)?;
        write_private(
            &certificate,
            &format!("{}\n", env_var(credential, "HALLPASS_SSH_CERTIFICATE")?.trim()),
        )?;
        Ok(Login {
            user: self.user.clone(),
            secret: String::new(),
            host: "127.0.0.1".into(),
            port: self.port,
            database: None,
            env: Default::default(),
            files: Some((key, certificate)),
        })
    }

    fn ssh(login: &Login, remote: &str) -> Result<tokio::process::Command> {
        let Some((key, certificate)) = &login.files else {
            bail!("no key files for this ssh login");
        };
        let mut command = tokio::process::Command::new("ssh");
        command
            .args(["-F", "/dev/null", "-T", "-i"])
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}", certificate.display()))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=10",
                "-p",
            ])
            .arg(login.port.to_string())
            .arg(format!("{}@{}", login.user, login.host))
            .arg(remote)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Ok(command)
    }

    /// One login running `true`: accepted, or refused by sshd.
    pub async fn try_login(login: &Login) -> Outcome {
        let mut command = match Self::ssh(login, "true") {
            Ok(command) => command,
            Err(error) => return Outcome::Failed(error.to_string()),
        };
        match tokio::time::timeout(LOGIN_TIMEOUT, command.output()).await {
            Err(_) => Outcome::Failed("ssh timed out".into()),
            Ok(Err(error)) => Outcome::Failed(format!("cannot run ssh: {error}")),
            Ok(Ok(output)) if output.status.success() => Outcome::Live,
            Ok(Ok(output)) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                if stderr.contains("Permission denied") {
                    Outcome::Ended(None)
                } else {
                    Outcome::Failed(format!("ssh {}: {}", output.status, stderr.trim()))
                }
            }
        }
    }

    /// A session kept open: a remote `sleep`, once it said it started.
    pub async fn open(login: &Login) -> Result<tokio::process::Child> {
        let mut child = Self::ssh(login, "echo ready; exec sleep 86400")?
            .spawn()
            .context("cannot run ssh")?;
        let stdout = child.stdout.take().context("ssh has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        match tokio::time::timeout(LOGIN_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.trim() == "ready" => Ok(child),
            _ => {
                let _ = child.kill().await;
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = tokio::io::AsyncReadExt::read_to_string(&mut err, &mut stderr).await;
                }
                bail!("the ssh session did not start: {}", stderr.trim())
            }
        }
    }

    /// Stops sshd; the temp dir goes with the handle.
    pub fn remove(mut self) -> Result<()> {
        self.stop();
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        self.stop();
    }
}

/// sshd's privilege separation directory, as on a host (sshd run as root
/// insists on it).
fn privilege_separation_dir() -> Result<()> {
    let run = Path::new("/run/sshd");
    if !run.is_dir() {
        std::fs::create_dir_all(run).context("cannot create /run/sshd")?;
        std::fs::set_permissions(run, std::fs::Permissions::from_mode(0o755)).context("cannot set up /run/sshd")?;
    }
    Ok(())
}

/// Whether the benchmark runs as root.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether an open ssh session (its client process) is still there.
pub fn session_alive(child: &mut tokio::process::Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}
