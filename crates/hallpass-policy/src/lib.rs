//! Rego policies that decide about access requests, evaluated with regorus,
//! in-process or in sandboxed worker processes.
//!
//! A [`PolicySet`] is compiled from [`PolicyModule`]s (Rego v1). Its rules in
//! `package hallpass.request` decide about each request and extension:
//! `deny` (a set of messages), `auto_approve`, `approval_flow` and
//! `max_duration_seconds`; [`PolicySet::evaluate`] returns them as a
//! [`PolicyDecision`]. [`load_dir`] and [`run_tests`] are what
//! `hallpass policy test DIR` runs. A [`PolicySandbox`] evaluates in worker
//! processes (`hallpass __policy-worker`, [`run_worker`]) under a wall-clock
//! and a memory limit; [`Evaluator`] is either way. The user documentation,
//! with the input document, is `docs/policies.md`.

mod ast;
mod decision;
mod error;
mod frame;
mod input;
mod load;
mod process;
mod sandbox;
mod set;
mod testing;
mod wire;
mod worker;

pub use decision::PolicyDecision;
pub use error::{LoadError, PolicyError};
pub use load::load_dir;
pub use sandbox::{
    DEFAULT_MEMORY_LIMIT_BYTES, DEFAULT_QUEUE_TIMEOUT, Evaluator, MIN_KILL_GRACE, PolicySandbox, SandboxConfig,
};
pub use set::{PolicyModule, PolicySet, set_hash};
pub use testing::{TestReport, TestResult, run_tests};
pub use worker::{WORKER_SUBCOMMAND, WorkerError, run_worker};
#[cfg(test)]
mod tests;
