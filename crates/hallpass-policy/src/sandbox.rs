//! Policy evaluation in worker processes, with a wall-clock limit that also
//! stops a builtin in the middle of its work, and a memory bound.
//!
//! regorus checks its time limit between evaluation steps, so one builtin
//! call that runs long (`numbers.range(1, 1000000000)` reserves the whole
//! array, then fills it) is not stopped by it, and in the server's process
//! it would hold a thread and the memory. A [`PolicySandbox`] evaluates in
//! `hallpass __policy-worker` processes instead:
//!
//! - the worker runs regorus's own timer at the time limit, which stops
//!   ordinary loops with a clear error and keeps the worker;
//! - the parent waits for the answer until the time limit plus a grace (half
//!   the limit, at least [`MIN_KILL_GRACE`]), then SIGKILLs the worker, reaps
//!   it, and starts a replacement on the next use of its slot;
//! - the worker bounds its own address space with RLIMIT_AS at start-up, so
//!   an allocation past the limit fails and aborts it; that death is
//!   reported as the memory limit. RLIMIT_CPU is a backstop should the parent
//!   not kill a worker.
//!
//! All the workers start with the sandbox: a wrong program or a binary of
//! another version is reported when the server starts, not as a denial on
//! the first request, and no request pays for a process start unless a
//! worker had to be replaced. Callers wait for a free worker at most
//! `queue_timeout`, so a flood of slow evaluations is refused, not queued
//! without bound. The API blocks: call it from `spawn_blocking`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::process::{Broken, Ending, StartError, WorkerProcess, ending};
use crate::set::EVALUATION_TIME_LIMIT;
use crate::wire::{Limits, Module, Request, Response};
use crate::worker::WORKER_SUBCOMMAND;
use crate::{PolicyDecision, PolicyError, PolicySet};

/// The memory bound of [`SandboxConfig::new`].
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 256 << 20;

/// The queue wait of [`SandboxConfig::new`].
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);

/// The least time between the time limit and the kill, so a worker whose
/// own timer fires on time is not killed for the pipe's latency or a busy
/// machine's scheduling.
pub const MIN_KILL_GRACE: Duration = Duration::from_millis(20);

/// How long a worker may take to start and to compile a set it is sent.
/// Compiling happens once per set and worker, and the same set has already
/// compiled in the server, so this only guards against a wedged worker.
const START_AND_COMPILE_LIMIT: Duration = Duration::from_secs(10);

/// How a [`PolicySandbox`] runs its workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The `hallpass` binary; a server passes `std::env::current_exe()`.
    pub program: PathBuf,
    /// Arguments that make `program` a worker: `["__policy-worker"]`.
    pub args: Vec<OsString>,
    /// Worker processes, so evaluations that run at once; at least 1.
    pub workers: usize,
    /// Wall-clock time one evaluation may take.
    pub time_limit: Duration,
    /// Memory a worker may allocate beyond what it uses idle, in bytes.
    pub memory_limit_bytes: u64,
    /// How long a caller waits for a free worker before getting an error.
    pub queue_timeout: Duration,
}

impl SandboxConfig {
    /// Workers of `program __policy-worker`, one per available CPU, with a
    /// 100 ms time limit, 256 MiB of memory each and a 1 s queue wait.
    pub fn new(program: impl Into<PathBuf>) -> SandboxConfig {
        SandboxConfig {
            program: program.into(),
            args: vec![WORKER_SUBCOMMAND.into()],
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            time_limit: EVALUATION_TIME_LIMIT,
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
        }
    }

    /// When the parent kills a worker that has not answered.
    fn kill_after(&self) -> Duration {
        self.time_limit + (self.time_limit / 2).max(MIN_KILL_GRACE)
    }

    fn limits(&self) -> Limits {
        let longest = START_AND_COMPILE_LIMIT.max(self.kill_after());
        Limits {
            time_limit_ms: u64::try_from(self.time_limit.as_millis()).unwrap_or(u64::MAX),
            memory_limit_bytes: self.memory_limit_bytes,
            // Twice the longest a request may run, in whole seconds: only
            // reached when the parent did not kill the worker.
            cpu_backstop_seconds: 2 * longest.as_secs() + 1,
        }
    }

    fn check(&self) -> Result<(), PolicyError> {
        let problem = if self.workers == 0 {
            "workers is 0; at least one worker is needed"
        } else if self.time_limit.as_millis() == 0 {
            "time_limit is under 1 ms; evaluations need at least a millisecond"
        } else if self.memory_limit_bytes < 1 << 20 {
            "memory_limit_bytes is under 1 MiB; a policy engine needs more"
        } else {
            return Ok(());
        };
        Err(PolicyError::Evaluation(format!(
            "invalid policy sandbox configuration: {problem}"
        )))
    }
}

/// A pool of policy worker processes. Cheap to clone (the clones share the
/// workers); the workers are killed when the last clone is dropped.
#[derive(Clone)]
pub struct PolicySandbox {
    shared: Arc<Shared>,
}

struct Shared {
    config: SandboxConfig,
    limits: Limits,
    /// Workers not in use. `None` is a slot whose worker was killed or
    /// failed to start, to be started by its next user; they are kept at the
    /// front so live workers are taken first.
    idle: Mutex<Vec<Option<WorkerProcess>>>,
    freed: Condvar,
}

impl std::fmt::Debug for PolicySandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySandbox")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl PolicySandbox {
    /// Starts `config.workers` workers and waits until each is ready.
    pub fn new(config: SandboxConfig) -> Result<PolicySandbox, PolicyError> {
        config.check()?;
        let limits = config.limits();
        let mut idle = Vec::with_capacity(config.workers);
        for _ in 0..config.workers {
            let deadline = Instant::now() + START_AND_COMPILE_LIMIT;
            let worker = WorkerProcess::start(&config.program, &config.args, limits, deadline)
                .map_err(|error| start_error(&error))?;
            idle.push(Some(worker));
        }
        Ok(PolicySandbox {
            shared: Arc::new(Shared {
                config,
                limits,
                idle: Mutex::new(idle),
                freed: Condvar::new(),
            }),
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.shared.config
    }

    /// Decides about one request like [`PolicySet::evaluate`], in a worker.
    /// Blocks until a worker is free (at most `queue_timeout`) and it has
    /// answered (at most the time limit and its grace).
    pub fn evaluate(&self, set: &PolicySet, input: &serde_json::Value) -> Result<PolicyDecision, PolicyError> {
        if set.decides_nothing() {
            return Ok(PolicyDecision::default());
        }
        let mut lease = self.shared.lease()?;
        let shared = &*self.shared;
        let worker = match &mut lease.worker {
            Some(worker) => worker,
            empty => {
                let deadline = Instant::now() + START_AND_COMPILE_LIMIT;
                let started =
                    WorkerProcess::start(&shared.config.program, &shared.config.args, shared.limits, deadline)
                        .map_err(|error| start_error(&error))?;
                empty.insert(started)
            }
        };
        match decide(worker, set, input, &shared.config) {
            Ok(outcome) => outcome,
            Err(broken) => {
                // Dropping the worker kills and reaps it; its slot restarts
                // on next use.
                lease.worker = None;
                Err(shared.broken_error(broken))
            }
        }
    }

    /// Process ids of the workers that are alive and not evaluating now.
    pub fn idle_worker_pids(&self) -> Vec<u32> {
        self.shared
            .lock_idle()
            .iter()
            .flatten()
            .map(WorkerProcess::pid)
            .collect()
    }
}

/// Runs one evaluation in `worker`, first sending it the set's modules if it
/// does not have them. The outer error means the worker is broken.
fn decide(
    worker: &mut WorkerProcess,
    set: &PolicySet,
    input: &serde_json::Value,
    config: &SandboxConfig,
) -> Result<Result<PolicyDecision, PolicyError>, Broken> {
    let evaluate = Request::Evaluate {
        set: set.hash().into(),
        input: std::borrow::Cow::Borrowed(input),
    };
    match worker.exchange(&evaluate, Instant::now() + config.kill_after())? {
        Response::UnknownSet => {}
        answer => return answer_to_evaluate(answer),
    }
    let load = Request::Load {
        set: set.hash().into(),
        modules: set
            .sources()
            .iter()
            .map(|module| Module {
                name: module.name.as_str().into(),
                source: module.source.as_str().into(),
            })
            .collect(),
    };
    match worker.exchange(&load, Instant::now() + START_AND_COMPILE_LIMIT)? {
        Response::Loaded => {}
        Response::Error(error) => return Ok(Err(error)),
        other => return Err(unexpected(&other)),
    }
    answer_to_evaluate(worker.exchange(&evaluate, Instant::now() + config.kill_after())?)
}

fn answer_to_evaluate(answer: Response) -> Result<Result<PolicyDecision, PolicyError>, Broken> {
    match answer {
        Response::Decision(decision) => Ok(Ok(decision)),
        Response::Error(error) => Ok(Err(error)),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(answer: &Response) -> Broken {
    Broken::Protocol(format!("unexpected answer {answer:?}"))
}

fn start_error(error: &StartError) -> PolicyError {
    PolicyError::Evaluation(format!("cannot start a policy worker: {error}"))
}

impl Shared {
    fn lock_idle(&self) -> MutexGuard<'_, Vec<Option<WorkerProcess>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a worker (or an empty slot), waiting at most `queue_timeout`.
    fn lease(&self) -> Result<Lease<'_>, PolicyError> {
        let deadline = Instant::now() + self.config.queue_timeout;
        let mut idle = self.lock_idle();
        loop {
            if let Some(worker) = idle.pop() {
                return Ok(Lease { shared: self, worker });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PolicyError::Evaluation(format!(
                    "no policy worker became free within {} ms: all {} are busy (slow policies, or more \
                     requests at once than workers); the evaluation is refused rather than queued longer",
                    self.config.queue_timeout.as_millis(),
                    self.config.workers
                )));
            }
            idle = self
                .freed
                .wait_timeout(idle, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn broken_error(&self, broken: Broken) -> PolicyError {
        let config = &self.config;
        PolicyError::Evaluation(match broken {
            Broken::TimedOut => format!(
                "stopped at the time limit of {} ms (a loop over too much data, or a builtin such as \
                 numbers.range given a huge range?)",
                config.time_limit.as_millis()
            ),
            Broken::Ended(status) => match ending(status) {
                Ending::OutOfMemory => format!(
                    "exceeded the memory limit of {} (a huge array, set or string?)",
                    bytes(config.memory_limit_bytes)
                ),
                Ending::OutOfCpuTime => format!(
                    "the policy worker used up its CPU time backstop of {} s",
                    self.limits.cpu_backstop_seconds
                ),
                Ending::Other => format!("the policy worker ended unexpectedly ({status})"),
            },
            Broken::Protocol(reason) => format!("the policy worker failed: {reason}"),
        })
    }
}

/// "256 MiB", or the bytes when not a whole number of MiB.
fn bytes(count: u64) -> String {
    if count.is_multiple_of(1 << 20) {
        format!("{} MiB", count >> 20)
    } else {
        format!("{count} bytes")
    }
}

/// A worker slot taken from the pool; given back, and a waiter woken, on drop.
struct Lease<'a> {
    shared: &'a Shared,
    worker: Option<WorkerProcess>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut idle = self.shared.lock_idle();
        match self.worker.take() {
            Some(worker) => idle.push(Some(worker)),
            None => idle.insert(0, None),
        }
        drop(idle);
        self.shared.freed.notify_one();
    }
}

/// What the server holds to evaluate policies: in worker processes, or in
/// its own process.
#[derive(Debug, Clone)]
pub enum Evaluator {
    /// In worker processes: every limit applies.
    Sandbox(PolicySandbox),
    /// In the calling thread, for embedding and tests where no worker binary
    /// exists. Only regorus's cooperative timer applies: a builtin call that
    /// runs long is not interrupted, and memory is not bounded.
    InProcess { time_limit: Duration },
}

impl Default for Evaluator {
    /// In-process, with the default 100 ms time limit.
    fn default() -> Evaluator {
        Evaluator::InProcess {
            time_limit: EVALUATION_TIME_LIMIT,
        }
    }
}

impl Evaluator {
    /// How many evaluations can run at once: the sandbox's workers; `None`
    /// in-process, where each runs on a thread of its own.
    pub fn parallelism(&self) -> Option<usize> {
        match self {
            Evaluator::Sandbox(sandbox) => Some(sandbox.shared.config.workers),
            Evaluator::InProcess { .. } => None,
        }
    }

    /// Decides about one request; see [`PolicySandbox::evaluate`].
    pub fn evaluate(&self, set: &PolicySet, input: &serde_json::Value) -> Result<PolicyDecision, PolicyError> {
        match self {
            Evaluator::Sandbox(sandbox) => sandbox.evaluate(set, input),
            Evaluator::InProcess { time_limit } => set.evaluate_with_limit(input, *time_limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_and_evaluator_are_send_sync_and_cheap_to_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<PolicySandbox>();
        check::<Evaluator>();
    }

    #[test]
    fn the_kill_comes_a_grace_after_the_limit() {
        let mut config = SandboxConfig::new("hallpass");
        assert_eq!(config.kill_after(), Duration::from_millis(150));
        config.time_limit = Duration::from_millis(10);
        assert_eq!(config.kill_after(), Duration::from_millis(30));
        assert_eq!(config.limits().cpu_backstop_seconds, 21);
    }

    #[test]
    fn bad_configurations_say_which_field_is_wrong() {
        let mut config = SandboxConfig::new("hallpass");
        config.workers = 0;
        let error = PolicySandbox::new(config).unwrap_err();
        assert!(error.to_string().contains("workers is 0"), "{error}");
    }

    #[test]
    fn a_missing_program_is_reported_at_construction() {
        let error = PolicySandbox::new(SandboxConfig::new("/nonexistent/hallpass")).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("cannot start a policy worker: cannot run /nonexistent/hallpass"),
            "{text}"
        );
    }

    #[test]
    fn a_program_that_is_not_a_worker_is_refused() {
        let mut config = SandboxConfig::new("/bin/sh");
        config.args = vec!["-c".into(), "exit 3".into()];
        let error = PolicySandbox::new(config).unwrap_err().to_string();
        assert!(
            error.contains("/bin/sh did not start as a policy worker (it ended: exit status: 3)"),
            "{error}"
        );
    }

    #[test]
    fn in_process_evaluation_uses_its_time_limit() {
        let modules = [crate::PolicyModule {
            name: "slow.rego".into(),
            // Nine million steps of a loop, which the cooperative timer stops.
            source: "package hallpass.request\n\ndeny contains \"x\" if {\n\tsome i in numbers.range(1, 3000)\n\t\
                     some j in numbers.range(1, 3000)\n\ti * j < 0\n}\n"
                .into(),
        }];
        let set = PolicySet::compile(&modules).unwrap();
        let started = Instant::now();
        let error = Evaluator::InProcess {
            time_limit: Duration::from_millis(5),
        }
        .evaluate(&set, &serde_json::json!({}))
        .unwrap_err();
        assert!(error.to_string().contains("time limit of 5 ms"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn sizes_are_shown_in_mib() {
        assert_eq!(bytes(256 << 20), "256 MiB");
        assert_eq!(bytes(1000), "1000 bytes");
    }
}
