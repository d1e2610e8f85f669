//! `hallpass exec ROLE --reason TEXT -- COMMAND [ARGS]`: run one command
//! with just-in-time access. Requests the role, waits for approval (progress
//! on stderr), runs the command with the credential in the environment its
//! tools read (`PGPASSWORD`, `AWS_SESSION_TOKEN`, `HALLPASS_TOKEN`, ...),
//! forwards signals to it, and gives the access back when it ends.
//!
//! The grant is released when the command exits, fails to start, or is
//! stopped by a signal; a request still waiting for approval when the user
//! interrupts is cancelled. A grant the user already held before (one
//! grant per principal and role) is used and left as it was: it is not
//! this command's to end.

use std::process::{ExitCode, Stdio};

use anyhow::Context as _;
use clap::Args;
use hallpass_api::{AccessRequest, RequestOutcome, RequestState};
use hallpass_client::Client;
use tokio::signal::unix::{SignalKind, signal};

use super::requests::{RoleRequest, ended_without_access, wait_settled};
use super::{CmdResult, Ctx, EXIT_INTERRUPTED, EXIT_NO_ACCESS};
use crate::output::eprint_message;

/// The grant's id, for the command (e.g. to put in its own logs).
pub const GRANT_ID_ENV: &str = "HALLPASS_GRANT_ID";
/// The grant's end (RFC 3339), for a command that wants to stop before it.
pub const GRANT_EXPIRES_ENV: &str = "HALLPASS_GRANT_EXPIRES_AT";
/// Exit status when the command cannot be found (as POSIX shells use).
const EXIT_NOT_FOUND: u8 = 127;
/// Exit status when the command exists but cannot be run.
const EXIT_CANNOT_RUN: u8 = 126;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The role, and the request made for it.
    #[command(flatten)]
    pub ask: RoleRequest,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: ExecArgs) -> CmdResult {
    let client = ctx.client()?;
    // Listening from the start: a signal that comes while the request is
    // made or waits still cancels it, and none meant for the command is
    // lost before it runs.
    let mut signals = Signals::listen()?;
    let response = client.create_request(&args.ask.body(None)).await?;
    // Only a request this run made is this run's to end.
    let ours = response.outcome == RequestOutcome::Created;
    let created = response.request;
    if !ours {
        eprint_message(&format!(
            "using request {} for {} that you already had; it is left as it is when the command ends",
            created.id, created.role
        ));
    }
    let settled = tokio::select! {
        settled = wait_settled(&client, created.clone()) => settled?,
        signal = signals.next() => {
            if ours {
                give_back(&client, &created).await;
            }
            return Ok(ExitCode::from(signal_exit(signal)));
        }
    };
    let Some(grant) = settled else {
        if ours {
            give_back(&client, &created).await;
        }
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    };
    if grant.state != RequestState::Active {
        eprint_message(&ended_without_access(&grant));
        return Ok(ExitCode::from(EXIT_NO_ACCESS));
    }
    let status = run_with_grant(&client, &grant, &args.command, &mut signals).await;
    if ours {
        give_back(&client, &grant).await;
    }
    Ok(ExitCode::from(status?))
}

/// Fetches the credential and runs the command with it; returns the exit
/// status to pass on.
async fn run_with_grant(
    client: &Client,
    grant: &AccessRequest,
    command: &[String],
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    let Some((program, arguments)) = command.split_first() else {
        anyhow::bail!("no command given: put it after `--`, e.g. `hallpass exec ROLE --reason TEXT -- psql`");
    };
    let mut child = tokio::process::Command::new(program);
    child.args(arguments);
    run_with_credential(client, grant, child, signals).await
}

/// Runs `child` with the grant's credential in its environment, passing on
/// signals; returns its exit status as a shell reports it (127 when it is
/// not found, 126 when it cannot be run).
pub(super) async fn run_with_credential(
    client: &Client,
    grant: &AccessRequest,
    mut child: tokio::process::Command,
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    let credential = client.credentials(&grant.id).await?;
    let program = child.as_std().get_program().to_string_lossy().into_owned();
    child
        .envs(&credential.env)
        .env(GRANT_ID_ENV, &grant.id)
        .env(GRANT_EXPIRES_ENV, credential.expires_at.to_rfc3339())
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    eprint_message(&format!(
        "grant {} of {} on {} until {}: running {program}",
        grant.id,
        grant.role,
        grant.target,
        crate::output::time(&credential.expires_at)
    ));
    let mut child = match child.spawn() {
        Ok(child) => child,
        Err(error) => {
            let status = match error.kind() {
                std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                _ => EXIT_CANNOT_RUN,
            };
            eprint_message(&format!("cannot run {program}: {error}"));
            return Ok(status);
        }
    };
    let pid = child.id().context("the command has no process id")?;
    let status = wait_forwarding_signals(&mut child, pid, signals).await?;
    Ok(exit_code_of(status))
}

/// The signals `exec` passes on, listened to for its whole run.
pub(super) struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    pub(super) fn listen() -> anyhow::Result<Self> {
        let listen = |kind| signal(kind).context("cannot listen for signals");
        Ok(Self {
            term: listen(SignalKind::terminate())?,
            hup: listen(SignalKind::hangup())?,
            usr1: listen(SignalKind::user_defined1())?,
            usr2: listen(SignalKind::user_defined2())?,
            int: listen(SignalKind::interrupt())?,
            quit: listen(SignalKind::quit())?,
        })
    }

    /// The next signal received.
    pub(super) async fn next(&mut self) -> rustix::process::Signal {
        use rustix::process::Signal;
        loop {
            tokio::select! {
                Some(()) = self.term.recv() => return Signal::TERM,
                Some(()) = self.hup.recv() => return Signal::HUP,
                Some(()) = self.usr1.recv() => return Signal::USR1,
                Some(()) = self.usr2.recv() => return Signal::USR2,
                Some(()) = self.int.recv() => return Signal::INT,
                Some(()) = self.quit.recv() => return Signal::QUIT,
                // Signal streams do not end; should they, wait for ever.
                else => std::future::pending::<()>().await,
            }
        }
    }
}

/// The status for a signal that stopped `exec` while it waited: 128 + N.
pub(super) fn signal_exit(signal: rustix::process::Signal) -> u8 {
    u8::try_from(128 + signal.as_raw()).unwrap_or(EXIT_INTERRUPTED)
}

/// Waits for the child, passing on the signals sent to this process. A
/// Ctrl-C typed at the terminal reaches the child directly (it is in the
/// terminal's foreground process group with this process), so SIGINT and
/// SIGQUIT are passed on only when they cannot have come that way.
async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
    pid: u32,
    signals: &mut Signals,
) -> anyhow::Result<std::process::ExitStatus> {
    use rustix::process::Signal;
    let target = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(0))
        .context("the command's process id is not usable")?;
    loop {
        let sent = tokio::select! {
            status = child.wait() => return Ok(status?),
            sent = signals.next() => sent,
        };
        let from_terminal = matches!(sent, Signal::INT | Signal::QUIT) && in_terminal_foreground();
        if !from_terminal {
            // The child may have just exited; then there is no one to tell.
            let _ = rustix::process::kill_process(target, sent);
        }
    }
}

/// Whether this process is in the foreground process group of a terminal
/// on stdin, where the terminal's own signals reach the child as well.
fn in_terminal_foreground() -> bool {
    let stdin = std::io::stdin();
    rustix::termios::tcgetpgrp(&stdin).is_ok_and(|group| group == rustix::process::getpgrp())
}

/// The status to exit with: the command's, or 128 + the signal that
/// stopped it, as shells report it.
fn exit_code_of(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        (None, None) => 1,
    }
}

/// Ends what this run asked for: releases the grant, or cancels the
/// request still waiting. A failure is said loudly: the access may remain.
pub(super) async fn give_back(client: &Client, request: &AccessRequest) {
    let id = &request.id;
    let outcome = match request.state {
        RequestState::Active => client.release(id).await.map(|ended| (ended, "released")),
        _ => client.cancel(id).await.map(|ended| (ended, "cancelled")),
    };
    match outcome {
        Ok((ended, _)) if ended.state == RequestState::RevokeFailed => eprint_message(&format!(
            "warning: grant {id} could not be ended on its target ({}); the access may still work, and \
             Hallpass keeps retrying",
            ended.revoke_error.as_deref().unwrap_or("no detail")
        )),
        Ok((_, done)) => eprint_message(&format!("request {id} {done}")),
        Err(error) => eprint_message(&format!(
            "warning: could not end request {id}: {error}; end it with `hallpass release {id}` (or \
             `hallpass cancel {id}`), or it lasts until it expires"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code_of(std::process::ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code_of(std::process::ExitStatus::from_raw(7 << 8)), 7);
        // Killed by SIGTERM (15): 143.
        assert_eq!(exit_code_of(std::process::ExitStatus::from_raw(15)), 143);
    }
}
