//! Ending a grant: who may release or revoke it, the end once the target
//! confirmed, and failed revocations retried with backoff.

use chrono::{DateTime, Duration, Utc};

use super::{Action, AuditKind, Decision, EndKind, ExtensionState, RequestRecord, RequestState};
use crate::error::RuleError;
use crate::subject::{Principal, join_subjects};

/// Backoff between revoke attempts: 1s, 2s, 4s ... capped at 5 minutes.
pub fn revoke_backoff(attempts: u32) -> Duration {
    let exponent = attempts.min(9);
    Duration::seconds((1i64 << exponent).min(300))
}

impl RequestRecord {
    /// The requester fetches the credential's one-time part at `now`:
    /// `Ok(None)` the first time (the record now says when), `Ok(Some(at))`
    /// when it already went out at `at` and must be withheld. Only an
    /// active grant hands out anything.
    pub fn deliver_one_time(&mut self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, RuleError> {
        if self.state != RequestState::Active || self.expires_at.is_none_or(|expires| expires <= now) {
            return Err(RuleError::WrongState {
                id: self.id.clone(),
                state: self.state,
                action: "hand out credentials for",
            });
        }
        if let Some(at) = self.one_time_delivered_at {
            return Ok(Some(at));
        }
        self.one_time_delivered_at = Some(now);
        self.updated_at = now;
        Ok(None)
    }

    /// Who may end this grant early, and how: the requester releases; admins
    /// and the role's approvers revoke.
    pub fn check_may_end(&self, caller: &Principal, kind: EndKind) -> Result<(), RuleError> {
        if !matches!(self.state, RequestState::Active | RequestState::RevokeFailed) {
            return Err(RuleError::WrongState {
                id: self.id.clone(),
                state: self.state,
                action: kind.as_str(),
            });
        }
        match kind {
            EndKind::Expire => Ok(()),
            EndKind::Release if caller.name == self.requester.name => Ok(()),
            EndKind::Release => Err(RuleError::NotRequester {
                requester: self.requester.name.clone(),
                id: self.id.clone(),
                action: "release",
            }),
            EndKind::Revoke if caller.is_admin() || caller.matches_any(&self.role_approvers) => Ok(()),
            EndKind::Revoke => Err(RuleError::NotAnApprover {
                principal: caller.name.clone(),
                id: self.id.clone(),
                approvers: format!(
                    "grants of role {:?} are revoked by admins and {}",
                    self.role,
                    join_subjects(&self.role_approvers)
                ),
            }),
        }
    }

    /// The provider removed the access: the grant reaches its terminal state.
    /// If an earlier attempt failed, the original intent (expire, revoke,
    /// release) decides the state, not the retry. A pending extension lapses.
    pub fn finish_end(&mut self, kind: EndKind, by: Decision, now: DateTime<Utc>) -> Result<AuditKind, RuleError> {
        self.require(Action::End)?;
        let kind = self.end.unwrap_or(kind);
        if let Some(extension) = self.pending_extension_mut() {
            extension.state = ExtensionState::Lapsed;
            extension.decision = Some(Decision {
                by: by.by.clone(),
                comment: Some("the grant ended before the extension was approved".into()),
                at: now,
            });
        }
        self.state = kind.final_state();
        self.end = Some(kind);
        if self.ended_by.is_none() {
            self.ended_by = Some(by);
        }
        self.ended_at = Some(now);
        self.revoke_error = None;
        self.next_revoke_at = None;
        self.updated_at = now;
        Ok(match kind {
            EndKind::Expire => AuditKind::GrantExpired,
            EndKind::Revoke => AuditKind::GrantRevoked,
            EndKind::Release => AuditKind::GrantReleased,
        })
    }

    /// The provider failed to remove the access; try again at `retry_at`.
    pub fn record_end_failure(
        &mut self,
        kind: EndKind,
        by: Decision,
        error: String,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<AuditKind, RuleError> {
        self.require(Action::EndFailed)?;
        if self.end.is_none() {
            self.end = Some(kind);
            self.ended_by = Some(by);
        }
        self.state = RequestState::RevokeFailed;
        self.revoke_error = Some(error);
        self.revoke_attempts = self.revoke_attempts.saturating_add(1);
        self.next_revoke_at = Some(retry_at);
        self.updated_at = now;
        Ok(AuditKind::GrantRevokeFailed)
    }
}
