//! Rego policies that decide about access requests, evaluated in-process
//! with regorus.
//!
//! A [`PolicySet`] is compiled from [`PolicyModule`]s (Rego v1). Its rules in
//! `package hallpass.request` decide about each request and extension:
//! `deny` (a set of messages), `auto_approve`, `approval_flow` and
//! `max_duration_seconds`; [`PolicySet::evaluate`] returns them as a
//! [`PolicyDecision`]. [`load_dir`] and [`run_tests`] are what
//! `hallpass policy test DIR` runs. The user documentation, with the input
//! document, is `docs/policies.md`.

mod ast;
mod decision;
mod error;
mod input;
mod load;
mod set;
mod testing;

pub use decision::PolicyDecision;
pub use error::{LoadError, PolicyError};
pub use load::load_dir;
pub use set::{PolicyModule, PolicySet, set_hash};
pub use testing::{TestReport, TestResult, run_tests};
#[cfg(test)]
mod tests;
