//! The subcommands, grouped by area. Each takes the shared [`Ctx`] and
//! returns the process exit code, or an error that `main` prints.

pub mod audit;
pub mod config;
pub mod detail;
pub mod exec;
pub mod extend;
pub mod extension;
pub mod flows;
pub mod grant_keys;
pub mod grants;
pub mod identity;
pub mod login;
pub mod notifications;
pub mod policy;
pub mod requests;
pub mod reviews;
pub mod server;
pub mod ssh;
pub mod terraform;
pub mod watch;

use std::process::ExitCode;

use hallpass_client::Client;

use crate::output::OutputFormat;

/// Exit code for "the command worked but access was not obtained" (a request
/// refused by policy, a waited-on request or extension that ended without
/// access) and for a failed audit verification.
pub const EXIT_NO_ACCESS: u8 = 3;
/// Exit code when the user interrupts a wait with Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Server-side long-poll timeout for `--wait`, in seconds.
pub const WAIT_POLL_SECONDS: u64 = 25;

pub type CmdResult = anyhow::Result<ExitCode>;

/// Global flags, shared by every client subcommand.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub addr: String,
    pub token: Option<String>,
    pub output: OutputFormat,
}

impl Ctx {
    /// A client for `--addr` with `--token`. Built lazily so that commands
    /// that need no server (offline audit verification) never touch it.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.addr, self.token.clone())?)
    }

    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}

pub fn ok() -> CmdResult {
    Ok(ExitCode::SUCCESS)
}

/// API objects for the rendering tests.
#[cfg(test)]
pub mod fixtures {
    use chrono::{DateTime, TimeZone, Utc};
    use hallpass_api::{
        AccessRequest, ApprovalRecord, ExtensionRecord, ExtensionState, FlowProgress, RequestState, StageProgress,
        StageState,
    };

    /// 2026-12-01T09:00:00Z, the "now" of the tests.
    pub fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()
    }

    pub fn minutes(m: i64) -> chrono::Duration {
        chrono::Duration::minutes(m)
    }

    /// A pending request by alice for `prod-db`, created five minutes ago.
    pub fn request() -> AccessRequest {
        let created = now() - minutes(5);
        AccessRequest {
            id: "r1".into(),
            role: "prod-db".into(),
            target: "db".into(),
            requester: "alice".into(),
            state: RequestState::Pending,
            duration_seconds: 3600,
            capped_from_seconds: None,
            reason: "INC-7 failover".into(),
            ticket: None,
            created_at: created,
            updated_at: created,
            activated_at: None,
            expires_at: None,
            ended_at: None,
            auto_approved: false,
            required_approvals: 1,
            approvers: vec!["group:dev-leads".into()],
            approvals: Vec::new(),
            decision: None,
            ended_by: None,
            credential: None,
            revoke_error: None,
            revoke_attempts: 0,
            next_revoke_at: None,
            emergency: false,
            scheduled_start: None,
            pending_expires_at: None,
            approval: None,
            policy: None,
            extensions: Vec::new(),
            review: None,
            plan: None,
            version: 3,
        }
    }

    /// The same request, made active a minute after it was created.
    pub fn active() -> AccessRequest {
        let mut r = request();
        r.state = RequestState::Active;
        r.activated_at = Some(r.created_at + minutes(1));
        r.expires_at = Some(r.created_at + minutes(61));
        r
    }

    /// `active()`, ending in 90 minutes, with one extension (+30m) in `state`.
    pub fn with_extension(state: ExtensionState) -> AccessRequest {
        let mut grant = active();
        grant.expires_at = Some(now() + minutes(90));
        grant.extensions.push(ExtensionRecord {
            number: 1,
            by_seconds: 1800,
            reason: "more".into(),
            ticket: None,
            requested_at: now(),
            state,
            auto_approved: false,
            approval: None,
            decision: None,
            policy: None,
        });
        grant
    }

    /// Two stages: dev-leads ×1 (approved by bob), then security ×2 (open,
    /// one approval from carol, escalating to group:ciso at 09:15Z).
    pub fn two_stage_flow() -> FlowProgress {
        FlowProgress {
            flow: Some("two-step".into()),
            stages: vec![
                StageProgress {
                    number: 1,
                    state: StageState::Approved,
                    approvers: vec!["group:dev-leads".into()],
                    required: 1,
                    approvals: vec![ApprovalRecord {
                        approver: "bob".into(),
                        comment: Some("ok".into()),
                        at: now() - minutes(4),
                    }],
                    escalate_to: Vec::new(),
                    opened_at: Some(now() - minutes(5)),
                    escalates_at: None,
                    escalated: false,
                    may_approve: Vec::new(),
                },
                StageProgress {
                    number: 2,
                    state: StageState::Open,
                    approvers: vec!["group:security".into()],
                    required: 2,
                    approvals: vec![ApprovalRecord {
                        approver: "carol".into(),
                        comment: None,
                        at: now() - minutes(2),
                    }],
                    escalate_to: vec!["group:ciso".into()],
                    opened_at: Some(now() - minutes(4)),
                    escalates_at: Some(now() + minutes(15)),
                    escalated: false,
                    may_approve: vec!["group:security".into()],
                },
            ],
            distinct_approvers: true,
            allow_self_approval: false,
        }
    }
}
