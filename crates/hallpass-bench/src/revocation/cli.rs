//! The command-line clients a person would use with a credential: `psql`,
//! `mariadb`, `redis-cli` (and `ssh`, in [`super::ssh`]).
//!
//! They serve twice. The revocation scenario logs in with them and keeps a
//! session of each open on a few grants, next to the Rust protocol clients,
//! so that what is reported is what a requester's own tools see. And the
//! services' set-up and clean-up run SQL and commands through them
//! synchronously, with the statements on stdin (so no password shows in a
//! process list), which also works from `Drop` when the benchmark is
//! interrupted.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use super::probe::Outcome;
use super::{Kind, Login};

/// How long a command-line login or one session round trip may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `program args` with `env` and `input` on stdin; its stdout, or an
/// error with its stderr, in which each of `hide` is replaced (a client may
/// quote the statement that failed, password and all).
pub fn script(program: &str, args: &[String], env: &[(&str, &str)], input: &str, hide: &[&str]) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program} (is its client installed?)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .with_context(|| format!("cannot write to {program}"))?;
    }
    let output = child
        .wait_with_output()
        .with_context(|| format!("cannot wait for {program}"))?;
    if !output.status.success() {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        for secret in hide.iter().filter(|s| !s.is_empty()) {
            stderr = stderr.replace(secret, "[redacted]");
        }
        bail!("{program} failed ({}): {stderr}", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The command that logs in with `login` and reads statements from stdin,
/// one answer line per statement; with the credential's own environment,
/// as its documentation says to use it.
fn command(kind: Kind, login: &Login) -> tokio::process::Command {
    let mut command = match kind {
        Kind::Postgres => {
            let mut command = tokio::process::Command::new("psql");
            command
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
                .env("PGCONNECT_TIMEOUT", "10");
            command
        }
        Kind::Mysql => {
            let mut command = tokio::process::Command::new("mariadb");
            command.args([
                "--no-defaults",
                "--protocol=TCP",
                "--connect-timeout=10",
                "--skip-reconnect",
                "-N",
                "-B",
                "-n",
                "-u",
                &login.user,
            ]);
            command
        }
        // ssh has its own client code (super::ssh); never asked here.
        Kind::Redis | Kind::Ssh => {
            let mut command = tokio::process::Command::new("redis-cli");
            command.args([
                "--no-auth-warning",
                "-h",
                &login.host,
                "-p",
                &login.port.to_string(),
                "--user",
                &login.user,
            ]);
            command
        }
    };
    command
        .envs(&login.env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// What each client is asked, and what it answers while the session holds.
fn probe_line(kind: Kind, login: &Login) -> (&'static str, String) {
    match kind {
        Kind::Postgres | Kind::Mysql => ("SELECT 1;\n", "1".into()),
        // Who the connection is logged in as: after a lost connection
        // redis-cli would carry on as the default user.
        Kind::Redis | Kind::Ssh => ("ACL WHOAMI\n", login.user.clone()),
    }
}

/// Whether a failed command-line login is the server refusing the
/// credential (rather than, say, too many connections).
fn is_refusal(kind: Kind, output: &str) -> bool {
    let patterns: &[&str] = match kind {
        Kind::Postgres => &[
            "password authentication failed",
            "is not permitted to log in",
            "does not exist",
        ],
        Kind::Mysql => &["ERROR 1045", "ERROR 4151", "ERROR 3118", "Access denied"],
        Kind::Redis | Kind::Ssh => &["WRONGPASS", "AUTH failed", "NOAUTH"],
    };
    patterns.iter().any(|p| output.contains(p))
}

/// One new login with the command-line client, which runs one statement
/// and exits.
pub async fn try_login(kind: Kind, login: &Login) -> Outcome {
    let (line, expect) = probe_line(kind, login);
    let mut command = command(kind, login);
    let run = async {
        let mut child = command.spawn().map_err(|e| format!("cannot start the client: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A client that already failed to log in may have closed stdin.
            let _ = stdin.write_all(line.as_bytes()).await;
        }
        child
            .wait_with_output()
            .await
            .map_err(|e| format!("cannot wait for the client: {e}"))
    };
    match tokio::time::timeout(TIMEOUT, run).await {
        Err(_) => Outcome::Failed("the command-line login timed out".into()),
        Ok(Err(message)) => Outcome::Failed(message),
        Ok(Ok(output)) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let all = format!("{stdout}\n{stderr}");
            if is_refusal(kind, &all) {
                Outcome::Ended(None)
            } else if output.status.success() && stdout.lines().next().map(str::trim) == Some(expect.as_str()) {
                Outcome::Live
            } else {
                Outcome::Failed(format!("{}: {}", output.status, stderr.trim()))
            }
        }
    }
}

/// A command-line session kept open, asked one statement per check.
pub struct CliSession {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Where the clients say the connection was lost; redis-cli then
    /// answers nothing on stdout for that command, and reconnects for the
    /// next one.
    stderr: Lines<BufReader<ChildStderr>>,
    line: &'static str,
    expect: String,
}

impl CliSession {
    /// Starts the client and waits for its first answer.
    pub async fn open(kind: Kind, login: &Login) -> Result<CliSession> {
        let (line, expect) = probe_line(kind, login);
        let mut child = command(kind, login)
            .spawn()
            .with_context(|| format!("cannot start the {} client", kind.cli()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            bail!("the {} client has no stdin, stdout or stderr", kind.cli());
        };
        let mut session = CliSession {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            stderr: BufReader::new(stderr).lines(),
            line,
            expect,
        };
        match session.check().await {
            Outcome::Live => Ok(session),
            Outcome::Ended(_) => bail!("the {} session ended at once", kind.cli()),
            Outcome::Failed(message) => bail!("the {} session did not answer: {message}", kind.cli()),
        }
    }

    /// Sends the statement; the session holds if the expected line comes
    /// back. Anything else (an error message, end of output, the client
    /// exiting) means it is over.
    pub async fn check(&mut self) -> Outcome {
        let round_trip = async {
            if self.stdin.write_all(self.line.as_bytes()).await.is_err() || self.stdin.flush().await.is_err() {
                return Outcome::Ended(None);
            }
            // Both reads are cancel safe: the one not taken loses nothing.
            tokio::select! {
                line = self.stdout.next_line() => match line {
                    Ok(Some(line)) if line.trim() == self.expect => Outcome::Live,
                    _ => Outcome::Ended(None),
                },
                _ = self.stderr.next_line() => Outcome::Ended(None),
            }
        };
        match tokio::time::timeout(TIMEOUT, round_trip).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failed("no answer within 10 s".into()),
        }
    }

    pub async fn close(mut self) {
        let _ = self.child.kill().await;
    }
}
