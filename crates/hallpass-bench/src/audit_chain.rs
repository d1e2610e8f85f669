//! The server's own check of its audit chain, `GET /v1/audit/verify`, at
//! the end of a scenario: with several replicas appending to one database,
//! the log must still be one chain that verifies (issue #14), and under
//! overload nothing acknowledged may be missing from it.
//!
//! A call that fails counts as a chain that did not verify, with the error
//! as its problem, so the report still says what happened.

use std::time::Instant;

use serde::Serialize;

use crate::server::Deployment;

/// What `GET /v1/audit/verify` said.
#[derive(Debug, Clone, Serialize)]
pub struct ChainCheck {
    /// The whole chain verified.
    pub ok: bool,
    /// Signed checkpoints prove nothing is missing up to the head.
    pub complete: bool,
    pub events_checked: u64,
    pub problem: Option<String>,
    /// How long the call took.
    pub seconds: f64,
}

/// Has replica 0 verify the whole chain.
pub async fn verify(deployment: &Deployment) -> ChainCheck {
    let started = Instant::now();
    let answer = match deployment.admin(0) {
        Ok(admin) => admin.audit_verify().await.map_err(|error| error.to_string()),
        Err(error) => Err(format!("{error:#}")),
    };
    let seconds = started.elapsed().as_secs_f64();
    let check = match answer {
        Ok(report) => ChainCheck {
            ok: report.ok,
            complete: report.complete,
            events_checked: report.events_checked,
            problem: report.problem,
            seconds,
        },
        Err(problem) => ChainCheck {
            ok: false,
            complete: false,
            events_checked: 0,
            problem: Some(format!("GET /v1/audit/verify failed: {problem}")),
            seconds,
        },
    };
    eprintln!("  audit chain: {}", check.describe());
    check
}

impl ChainCheck {
    /// `verified (12345 events)` or `NOT verified: <problem>`.
    pub fn describe(&self) -> String {
        if self.ok {
            format!(
                "verified ({} events{})",
                self.events_checked,
                if self.complete { ", complete" } else { "" }
            )
        } else {
            format!("NOT verified: {}", self.problem.as_deref().unwrap_or("no reason given"))
        }
    }
}

/// All checks together: every one verified, and the events they covered.
pub fn summarize<'a>(checks: impl IntoIterator<Item = &'a ChainCheck>) -> Option<(usize, Option<&'a ChainCheck>)> {
    let checks: Vec<&ChainCheck> = checks.into_iter().collect();
    if checks.is_empty() {
        return None;
    }
    Some((checks.len(), checks.iter().copied().find(|check| !check.ok)))
}
