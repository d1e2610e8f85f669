//! One worker process seen from the parent: starting it, one request and
//! its answer under a deadline, and ending it.
//!
//! A worker that misses a deadline, ends, or answers nonsense is of no
//! further use: the caller drops it, and dropping kills (SIGKILL) and reaps
//! it, so no zombie is left whichever way it went.

use std::ffi::OsString;
use std::io::{ErrorKind, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Instant;

use rustix::process::Signal;

use crate::frame::{self, FrameError};
use crate::wire::{Limits, PROTOCOL_VERSION, Request, Response};

/// The only variables a worker inherits: what the dynamic loader and a
/// backtrace need. The server's environment may hold secrets (database
/// URLs, keys), and a worker has no use for them.
const INHERITED_ENV: [&str; 2] = ["LD_LIBRARY_PATH", "RUST_BACKTRACE"];

pub(crate) struct WorkerProcess {
    child: Child,
    requests: ChildStdin,
    answers: ChildStdout,
    request: Vec<u8>,
    answer: Vec<u8>,
}

/// Why a worker cannot be used any more. The worker has been reaped when
/// this says how it ended; otherwise dropping it kills and reaps it.
#[derive(Debug)]
pub(crate) enum Broken {
    /// No answer before the deadline.
    TimedOut,
    /// It ended by itself, this way.
    Ended(ExitStatus),
    /// It answered something that is not an answer to the request, or the
    /// pipe failed in a way that says nothing about the process.
    Protocol(String),
}

/// How a worker process ended, as far as the sandbox tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// SIGABRT (Rust aborts when an allocation fails, here at the
    /// address-space limit), or SIGKILL/SIGSEGV/SIGBUS it did not get from
    /// us (the kernel's OOM killer, a stack overflow).
    OutOfMemory,
    /// SIGXCPU: the CPU-time backstop.
    OutOfCpuTime,
    Other,
}

pub(crate) fn ending(status: ExitStatus) -> Ending {
    match status.signal().and_then(Signal::from_named_raw) {
        Some(Signal::ABORT | Signal::KILL | Signal::SEGV | Signal::BUS) => Ending::OutOfMemory,
        Some(Signal::XCPU) => Ending::OutOfCpuTime,
        _ => Ending::Other,
    }
}

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} did not start as a policy worker ({reason}); is it a hallpass binary of this version?")]
    NotAWorker { program: String, reason: String },
}

impl WorkerProcess {
    /// Starts `program args`, sends it `limits` and waits for it to say it
    /// is ready, until `deadline`.
    pub(crate) fn start(
        program: &Path,
        args: &[OsString],
        limits: Limits,
        deadline: Instant,
    ) -> Result<WorkerProcess, StartError> {
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(
                INHERITED_ENV
                    .iter()
                    .filter_map(|name| Some((name, std::env::var_os(name)?))),
            )
            // One malloc arena: glibc otherwise reserves 64 MiB of address
            // space for each thread that allocates, and a runtime thread
            // starting late would take it out of the evaluation's memory
            // limit, or fail and abort the worker.
            .env("MALLOC_ARENA_MAX", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group: Ctrl-C at the server's terminal stops
            // the server, which then ends its workers, instead of killing
            // workers under evaluations still in flight.
            .process_group(0);
        let shown = || program.display().to_string();
        let mut child = command.spawn().map_err(|source| StartError::Spawn {
            program: shown(),
            source,
        })?;
        let (Some(requests), Some(answers)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::NotAWorker {
                program: shown(),
                reason: "its pipes were not set up".into(),
            });
        };
        let mut worker = WorkerProcess {
            child,
            requests,
            answers,
            request: Vec::new(),
            answer: Vec::new(),
        };
        let not_a_worker = |reason: String| StartError::NotAWorker {
            program: shown(),
            reason,
        };
        match worker.exchange(&Request::Setup(limits), deadline) {
            Ok(Response::Ready { protocol }) if protocol == PROTOCOL_VERSION => Ok(worker),
            Ok(Response::Ready { protocol }) => Err(not_a_worker(format!(
                "it speaks protocol {protocol}, this build {PROTOCOL_VERSION}"
            ))),
            Ok(other) => Err(not_a_worker(format!("it answered {other:?}"))),
            Err(Broken::TimedOut) => Err(not_a_worker("it did not answer in time".into())),
            Err(Broken::Ended(status)) => Err(not_a_worker(format!("it ended: {status}"))),
            Err(Broken::Protocol(reason)) => Err(not_a_worker(reason)),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `request` and reads the answer, until `deadline`.
    pub(crate) fn exchange(&mut self, request: &Request, deadline: Instant) -> Result<Response, Broken> {
        frame::encode(&mut self.request, request).map_err(|error| Broken::Protocol(error.to_string()))?;
        if let Err(error) = self.requests.write_all(&self.request) {
            return Err(match error.kind() {
                ErrorKind::BrokenPipe => self.ended(),
                _ => Broken::Protocol(format!("cannot write to the worker: {error}")),
            });
        }
        match frame::read_before(&mut self.answers, &mut self.answer, deadline) {
            Ok(()) => serde_json::from_slice(frame::body(&self.answer))
                .map_err(|error| Broken::Protocol(format!("unreadable answer: {error}"))),
            Err(FrameError::TimedOut) => Err(Broken::TimedOut),
            Err(FrameError::Closed) => Err(self.ended()),
            Err(error) => Err(Broken::Protocol(error.to_string())),
        }
    }

    /// The pipe closed: the worker ended, or is ending. Reaps it and says how.
    fn ended(&mut self) -> Broken {
        // A worker that closed its stdout but lives on would make `wait`
        // hang; one that already ended keeps its status despite the kill.
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => Broken::Ended(status),
            Err(error) => Broken::Protocol(format!("cannot learn how the worker ended: {error}")),
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // SIGKILL rather than closing stdin and waiting: a worker dropped
        // mid-evaluation would not read its stdin until done.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
