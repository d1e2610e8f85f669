//! The worker process of the sandbox: `hallpass __policy-worker`, started by
//! [`crate::PolicySandbox`], never by hand.
//!
//! It reads requests on stdin and answers on stdout (see [`crate::wire`]),
//! until stdin closes. The first request sets its limits, which it applies
//! to itself with `setrlimit`: an address-space bound (an allocation beyond
//! it fails, and Rust aborts the process), a CPU-time backstop in case the
//! parent fails to kill it, and no core dumps. Compiled sets are kept by
//! hash, a few at a time, so modules cross the pipe once.
//!
//! Its fd 1 is pointed at stderr once the protocol has its own copy of the
//! pipe, so a stray `println!` cannot corrupt an answer.

use std::fs::File;
use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use rustix::time::{ClockId, clock_gettime};

use crate::frame;
use crate::wire::{Limits, Module, PROTOCOL_VERSION, Request, Response};
use crate::{PolicyError, PolicyModule, PolicySet};

/// The hidden `hallpass` subcommand that runs [`run_worker`].
pub const WORKER_SUBCOMMAND: &str = "__policy-worker";

/// Compiled sets a worker keeps: the live set, and room for the sets that
/// `POST /v1/policies/eval` and a change of policies bring.
const CACHED_SETS: usize = 8;

/// Why a worker stopped other than by the end of its input.
#[derive(Debug, thiserror::Error)]
#[error("policy worker: {0}; this command serves `hallpass server` over a pipe and is not meant to be run by hand")]
pub struct WorkerError(String);

impl WorkerError {
    fn new(what: &str, error: impl std::fmt::Display) -> WorkerError {
        WorkerError(format!("{what}: {error}"))
    }
}

/// Serves the sandbox's requests on stdin and stdout until stdin closes.
pub fn run_worker() -> Result<(), WorkerError> {
    let stdout = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|error| WorkerError::new("cannot take over stdout", error))?;
    rustix::stdio::dup2_stdout(std::io::stderr())
        .map_err(|error| WorkerError::new("cannot point fd 1 at stderr", error))?;
    Worker::new(File::from(stdout)).serve(&mut std::io::stdin().lock())
}

struct Worker {
    answers: File,
    request: Vec<u8>,
    answer: Vec<u8>,
    /// Least recently used first.
    sets: Vec<PolicySet>,
    /// Set by the first request.
    limits: Option<Limits>,
    /// The soft CPU limit in force, in seconds of process CPU time.
    cpu_armed_until: u64,
}

impl Worker {
    fn new(answers: File) -> Worker {
        Worker {
            answers,
            request: Vec::new(),
            answer: Vec::new(),
            sets: Vec::new(),
            limits: None,
            cpu_armed_until: 0,
        }
    }

    fn serve(&mut self, input: &mut impl BufRead) -> Result<(), WorkerError> {
        loop {
            let more = frame::read_blocking(input, &mut self.request)
                .map_err(|error| WorkerError::new("cannot read a request", error))?;
            if !more {
                return Ok(());
            }
            let request: Request = serde_json::from_slice(frame::body(&self.request))
                .map_err(|error| WorkerError::new("cannot parse a request", error))?;
            let response = self.handle(request)?;
            frame::encode(&mut self.answer, &response)
                .map_err(|error| WorkerError::new("cannot encode an answer", error))?;
            self.answers
                .write_all(&self.answer)
                .map_err(|error| WorkerError::new("cannot send an answer", error))?;
        }
    }

    fn handle(&mut self, request: Request) -> Result<Response, WorkerError> {
        match request {
            Request::Setup(limits) => self.set_up(limits),
            Request::Load { set, modules } => {
                self.ready()?;
                Ok(self.load(&set, modules))
            }
            Request::Evaluate { set, input } => {
                let limits = self.ready()?;
                Ok(self.evaluate(&set, &input, Duration::from_millis(limits.time_limit_ms)))
            }
        }
    }

    fn set_up(&mut self, limits: Limits) -> Result<Response, WorkerError> {
        if self.limits.is_some() {
            return Err(WorkerError("the limits were sent twice".into()));
        }
        apply_limits(&limits)?;
        self.limits = Some(limits);
        Ok(Response::Ready {
            protocol: PROTOCOL_VERSION,
        })
    }

    /// The limits, once set up, with the CPU backstop re-armed for the
    /// request about to run.
    fn ready(&mut self) -> Result<Limits, WorkerError> {
        let limits = self
            .limits
            .ok_or_else(|| WorkerError("a request came before the limits".into()))?;
        self.rearm_cpu_backstop(limits.cpu_backstop_seconds)?;
        Ok(limits)
    }

    fn load(&mut self, hash: &str, modules: Vec<Module>) -> Response {
        let modules: Vec<PolicyModule> = modules
            .into_iter()
            .map(|module| PolicyModule {
                name: module.name.into_owned(),
                source: module.source.into_owned(),
            })
            .collect();
        match PolicySet::compile(&modules) {
            Ok(set) if set.hash() == hash => {
                self.sets.retain(|cached| cached.hash() != hash);
                if self.sets.len() >= CACHED_SETS {
                    self.sets.remove(0);
                }
                self.sets.push(set);
                Response::Loaded
            }
            Ok(set) => Response::Error(PolicyError::Evaluation(format!(
                "the policy worker was sent modules of set {}, not of set {hash}",
                set.hash()
            ))),
            Err(error) => Response::Error(error),
        }
    }

    fn evaluate(&mut self, hash: &str, input: &serde_json::Value, limit: Duration) -> Response {
        let Some(at) = self.sets.iter().position(|set| set.hash() == hash) else {
            return Response::UnknownSet;
        };
        self.sets[at..].rotate_left(1);
        let set = &self.sets[self.sets.len() - 1];
        // A panic in the engine answers like any other failed evaluation
        // instead of ending the worker, which the parent would have to
        // guess about.
        match catch_unwind(AssertUnwindSafe(|| set.evaluate_with_limit(input, limit))) {
            Ok(Ok(decision)) => Response::Decision(decision),
            Ok(Err(error)) => Response::Error(error),
            Err(panic) => Response::Error(PolicyError::Evaluation(format!(
                "the policy engine failed unexpectedly: {}",
                panic_text(panic.as_ref())
            ))),
        }
    }

    /// Keeps at least `seconds` of CPU time between now and the soft
    /// RLIMIT_CPU (the kernel then stops the worker with SIGXCPU). The limit
    /// counts the process's whole life, so it is pushed forward as the
    /// worker works; only rarely, since it is moved by twice the margin.
    fn rearm_cpu_backstop(&mut self, seconds: u64) -> Result<(), WorkerError> {
        let used = clock_gettime(ClockId::ProcessCPUTime);
        let used = u64::try_from(used.tv_sec).unwrap_or(0) + 1;
        if self.cpu_armed_until >= used + seconds {
            return Ok(());
        }
        let hard = getrlimit(Resource::Cpu).maximum;
        let soft = (used + 2 * seconds).min(hard.unwrap_or(u64::MAX));
        setrlimit(
            Resource::Cpu,
            Rlimit {
                current: Some(soft),
                maximum: hard,
            },
        )
        .map_err(|error| WorkerError::new("cannot set the CPU time limit", error))?;
        self.cpu_armed_until = soft;
        Ok(())
    }
}

/// No core dumps (a worker stopped at its memory limit would write one of
/// that size every time), then the address-space bound: what the process
/// maps now (the binary, its libraries, thread stacks) plus the limit, so
/// the limit is what evaluation may add, whatever the binary's size.
fn apply_limits(limits: &Limits) -> Result<(), WorkerError> {
    let no_core = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    setrlimit(Resource::Core, no_core).map_err(|error| WorkerError::new("cannot turn off core dumps", error))?;
    let mapped = address_space_bytes()?;
    let bound = mapped.saturating_add(limits.memory_limit_bytes);
    let bound = getrlimit(Resource::As).maximum.map_or(bound, |hard| bound.min(hard));
    // The hard limit too, so nothing in the worker can raise it again.
    let memory = Rlimit {
        current: Some(bound),
        maximum: Some(bound),
    };
    setrlimit(Resource::As, memory).map_err(|error| WorkerError::new("cannot set the memory limit", error))
}

/// The process's virtual size: the first field of /proc/self/statm, in pages.
fn address_space_bytes() -> Result<u64, WorkerError> {
    let statm = std::fs::read_to_string("/proc/self/statm")
        .map_err(|error| WorkerError::new("cannot read /proc/self/statm", error))?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| WorkerError(format!("/proc/self/statm has no size: {statm:?}")))?;
    Ok(pages * rustix::param::page_size() as u64)
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_space_is_read_from_proc() {
        let bytes = address_space_bytes().unwrap();
        assert!(bytes > 1 << 20, "{bytes}");
    }

    #[test]
    fn the_cpu_backstop_keeps_its_margin_ahead_of_the_time_used() {
        let mut worker = Worker::new(File::open("/dev/null").unwrap());
        worker.rearm_cpu_backstop(30).unwrap();
        let armed = worker.cpu_armed_until;
        assert_eq!(getrlimit(Resource::Cpu).current, Some(armed));
        let used = clock_gettime(ClockId::ProcessCPUTime).tv_sec as u64;
        assert!(armed >= used + 60, "armed until {armed} s with {used} s used");
        // Still far enough ahead: no system call, no change.
        worker.rearm_cpu_backstop(30).unwrap();
        assert_eq!(worker.cpu_armed_until, armed);
    }

    #[test]
    fn sets_are_cached_by_hash_least_recently_used_first() {
        let mut worker = Worker::new(File::open("/dev/null").unwrap());
        let limit = Duration::from_secs(1);
        let input = serde_json::json!({});
        let mut hashes = Vec::new();
        for i in 0..=CACHED_SETS {
            let source = format!("package hallpass.request\n\ndeny contains \"{i}\" if true\n");
            let modules = vec![Module {
                name: "p.rego".into(),
                source: source.clone().into(),
            }];
            let hash = crate::set_hash(&[PolicyModule {
                name: "p.rego".into(),
                source,
            }]);
            assert!(matches!(worker.evaluate(&hash, &input, limit), Response::UnknownSet));
            assert!(matches!(worker.load(&hash, modules), Response::Loaded));
            if i == 0 {
                // Used again, so the second set is the oldest when the cache is full.
                hashes.push(hash.clone());
            }
            hashes.push(hash);
            worker.evaluate(&hashes[0], &input, limit);
        }
        assert_eq!(worker.sets.len(), CACHED_SETS);
        assert!(matches!(worker.evaluate(&hashes[0], &input, limit), Response::Decision(d) if d.deny == ["0"]));
        assert!(matches!(
            worker.evaluate(&hashes[2], &input, limit),
            Response::UnknownSet
        ));
    }

    #[test]
    fn modules_that_do_not_match_the_hash_are_refused() {
        let mut worker = Worker::new(File::open("/dev/null").unwrap());
        let modules = vec![Module {
            name: "p.rego".into(),
            source: "package hallpass.request\n".into(),
        }];
        let Response::Error(error) = worker.load("0000", modules) else {
            panic!("accepted")
        };
        assert!(error.to_string().contains("not of set 0000"), "{error}");
    }
}
