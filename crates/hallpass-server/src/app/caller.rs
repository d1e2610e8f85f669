//! Who is calling, and what they may do: the one place that says who is an
//! admin, who may read the audit log and who may see a request. Every [`App`]
//! operation takes the [`Caller`] and asks here before it acts, so a new
//! front end (the Terraform provider, a job, a UI) cannot skip a check.
//!
//! [`App`]: crate::app::App

use chrono::{DateTime, Utc};
use hallpass_core::Principal;
use hallpass_core::request::RequestRecord;

use super::error::{AppError, AppResult};

/// Members may read and verify the audit log (and see every request)
/// without being admins.
pub const AUDITOR_GROUP: &str = "auditors";
/// The actor recorded for what Hallpass does on its own (expiry, retries).
pub const SYSTEM_ACTOR: &str = "hallpass";
/// Names the audit log uses for actors that are not principals; no token
/// may be made for them, so no person can act under their name.
pub const RESERVED_PRINCIPALS: [&str; 5] = [
    SYSTEM_ACTOR,
    hallpass_core::request::POLICY_ACTOR,
    "system",
    "bootstrap",
    "dev",
];

/// The authenticated caller of one operation.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub token_id: String,
    pub token_expires_at: Option<DateTime<Utc>>,
}

impl Caller {
    pub fn name(&self) -> &str {
        &self.principal.name
    }

    pub fn is_admin(&self) -> bool {
        self.principal.is_admin()
    }

    pub fn is_auditor(&self) -> bool {
        self.is_admin() || self.principal.in_group(AUDITOR_GROUP)
    }

    pub fn require_admin(&self) -> AppResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "{} is not an admin; this needs a token of group `admins`",
                self.principal.name
            )))
        }
    }

    pub fn require_auditor(&self) -> AppResult<()> {
        if self.is_auditor() {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "the audit log is for groups `admins` and `{AUDITOR_GROUP}`"
            )))
        }
    }

    /// Requests (with their reasons and tickets) are seen by their
    /// requester, by whoever may approve them (role or flow, escalation
    /// included), and by admins and auditors.
    pub fn may_see(&self, record: &RequestRecord) -> bool {
        self.is_auditor() || record.requester.name == self.principal.name || record.is_approver(&self.principal)
    }
}
