//! Deciding a request: approvals, denials, cancellation, what Hallpass
//! decides on its own (time-outs, escalations, scheduled starts, refusals
//! when a request takes effect) and activation.

use chrono::{DateTime, Utc};

use super::{Action, AuditKind, Decision, ExtensionState, RequestRecord, RequestState, rfc3339, seconds};
use crate::error::RuleError;
use crate::flow::{ApprovalOutcome, ApprovalProgress};
use crate::role::RoleRules;
use crate::subject::{Principal, Subject, join_subjects};
use crate::text::{self, TextField};

fn not_a_denier(principal: &Principal, id: &str, progress: Option<&ApprovalProgress>, now: DateTime<Utc>) -> RuleError {
    let allowed = progress.map(|p| p.may_approve(now)).unwrap_or_default();
    RuleError::NotAnApprover {
        principal: principal.name.clone(),
        id: id.to_string(),
        approvers: format!("it may be denied by admins and {}", join_subjects(&allowed)),
    }
}

/// Why a request could not take effect under its role as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleCheck {
    /// The role still allows it (possibly with a shorter duration).
    Allowed,
    /// The role was deleted: the request is withdrawn.
    RoleGone,
    /// The requester is no longer in `requestable_by`: the request is refused.
    NotRequestable(String),
}

impl RequestRecord {
    /// Records one approval: of the request while it is pending, or of the
    /// grant's pending extension while it is active. Returns the event kind.
    /// `role` is the role as it is now: an extension reaching its quorum is
    /// fitted to it (see `approve_extension`); a request reaching quorum is
    /// checked against it when it takes effect, by [`Self::check_role`].
    pub fn approve(
        &mut self,
        approver: &Principal,
        comment: Option<String>,
        role: Option<&RoleRules>,
        now: DateTime<Utc>,
    ) -> Result<AuditKind, RuleError> {
        self.require(Action::Approve)?;
        if self.state == RequestState::Active {
            if self.pending_extension().is_none() {
                return Err(self.wrong_state(Action::Approve));
            }
            return self.approve_extension(approver, comment, role, now);
        }
        self.check_not_timed_out(now)?;
        let (id, requester) = (self.id.clone(), self.requester.name.clone());
        let progress = self
            .approval
            .as_mut()
            .ok_or_else(|| RuleError::AlreadyDecided(id.clone()))?;
        let outcome = progress.approve(approver, &requester, &id, comment, now)?;
        self.updated_at = now;
        if outcome == ApprovalOutcome::Approved {
            self.state = self.approved_state(now);
        }
        Ok(AuditKind::RequestApproved)
    }

    /// A denial from an approver of the open stage (or an admin) ends the
    /// request, or refuses the grant's pending extension.
    pub fn deny(
        &mut self,
        approver: &Principal,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<AuditKind, RuleError> {
        self.require(Action::Deny)?;
        if self.state == RequestState::Active && self.pending_extension().is_none() {
            return Err(self.wrong_state(Action::Deny));
        }
        if approver.name == self.requester.name {
            return Err(RuleError::SelfDenial(self.id.clone()));
        }
        let comment = text::optional(TextField::Comment, &comment)?;
        let decision = Decision {
            by: approver.name.clone(),
            comment,
            at: now,
        };
        if self.state == RequestState::Active {
            let id = self.id.clone();
            let Some(extension) = self.pending_extension_mut() else {
                return Err(RuleError::AlreadyDecided(id));
            };
            if !extension.approval.as_ref().is_some_and(|p| p.may_deny(approver, now)) {
                return Err(not_a_denier(approver, &id, extension.approval.as_ref(), now));
            }
            extension.state = ExtensionState::Denied;
            extension.decision = Some(decision);
            self.updated_at = now;
            return Ok(AuditKind::GrantExtensionDenied);
        }
        if !self.approval.as_ref().is_some_and(|p| p.may_deny(approver, now)) {
            return Err(not_a_denier(approver, &self.id, self.approval.as_ref(), now));
        }
        self.close(RequestState::Denied, decision, now);
        Ok(AuditKind::RequestDenied)
    }

    /// The requester (or an admin) withdraws a request that is not active yet.
    pub fn cancel(&mut self, caller: &Principal, now: DateTime<Utc>) -> Result<AuditKind, RuleError> {
        self.require(Action::Cancel)?;
        if caller.name != self.requester.name && !caller.is_admin() {
            return Err(RuleError::NotRequester {
                requester: self.requester.name.clone(),
                id: self.id.clone(),
                action: "cancel",
            });
        }
        let decision = Decision {
            by: caller.name.clone(),
            comment: None,
            at: now,
        };
        self.close(RequestState::Cancelled, decision, now);
        Ok(AuditKind::RequestCancelled)
    }

    /// Hallpass withdraws a request that has not become a grant, because
    /// what it depended on is gone; `why` is recorded.
    pub fn withdraw(&mut self, by: &str, why: String, now: DateTime<Utc>) -> Result<AuditKind, RuleError> {
        self.require(Action::Withdraw)?;
        let decision = Decision {
            by: by.to_string(),
            comment: Some(why),
            at: now,
        };
        self.close(RequestState::Cancelled, decision, now);
        Ok(AuditKind::RequestCancelled)
    }

    /// Hallpass refuses a request when it was to take effect (the requester
    /// may no longer request the role, or the policies now deny it).
    pub fn refuse(&mut self, by: &str, messages: &[String], now: DateTime<Utc>) -> Result<AuditKind, RuleError> {
        self.require(Action::Refuse)?;
        let decision = Decision {
            by: by.to_string(),
            comment: Some(messages.join("\n")),
            at: now,
        };
        self.close(RequestState::Denied, decision, now);
        Ok(AuditKind::RequestDenied)
    }

    fn close(&mut self, state: RequestState, decision: Decision, now: DateTime<Utc>) {
        self.state = state;
        self.decision = Some(decision);
        self.ended_at = Some(now);
        self.updated_at = now;
    }

    /// Pending TTL reached without a decision.
    pub fn time_out(&mut self, by: &str, now: DateTime<Utc>) -> Result<AuditKind, RuleError> {
        self.require(Action::TimeOut)?;
        let Some(at) = self.pending_expires_at.filter(|at| *at <= now) else {
            return Err(RuleError::WrongState {
                id: self.id.clone(),
                state: self.state,
                action: "time out (its pending TTL has not passed)",
            });
        };
        let decision = Decision {
            by: by.to_string(),
            comment: Some(format!("no decision by {}", rfc3339(at))),
            at: now,
        };
        self.close(RequestState::TimedOut, decision, now);
        Ok(AuditKind::RequestTimedOut)
    }

    /// Records that the open stage's escalation time came; returns the event
    /// kind and the stage number and the subjects who may now approve too.
    pub fn escalate(&mut self, now: DateTime<Utc>) -> Option<(AuditKind, usize, Vec<Subject>)> {
        self.require(Action::Escalate).ok()?;
        let (stage, to) = self.approval.as_mut()?.mark_escalated(now)?;
        self.updated_at = now;
        Some((AuditKind::RequestEscalated, stage, to))
    }

    /// A scheduled request's start came: it is approved now and is issued next.
    pub fn start_scheduled(&mut self, now: DateTime<Utc>) -> Result<AuditKind, RuleError> {
        self.require(Action::StartScheduled)?;
        self.state = RequestState::Approved;
        self.updated_at = now;
        Ok(AuditKind::RequestStartReached)
    }

    /// Checks the request against its role as it is now, when it is about
    /// to take effect (approval, activation). A shorter `max_duration` is
    /// not a refusal: [`RequestRecord::activate`] caps the grant.
    pub fn check_role(&self, role: Option<&RoleRules>) -> RoleCheck {
        match role {
            None => RoleCheck::RoleGone,
            Some(role) if !self.requester.matches_any(&role.requestable_by) => RoleCheck::NotRequestable(format!(
                "{} may no longer request role {:?}: it is requestable by {}",
                self.requester.name,
                role.name,
                join_subjects(&role.requestable_by)
            )),
            Some(_) => RoleCheck::Allowed,
        }
    }

    /// Credentials were issued: access time starts now. When the role's
    /// maximum was lowered since the request was made, the grant gets the
    /// new maximum (`capped_from_seconds` keeps what was asked).
    pub fn activate(
        &mut self,
        credential: serde_json::Value,
        role_max_seconds: u64,
        now: DateTime<Utc>,
    ) -> Result<AuditKind, RuleError> {
        self.require(Action::Activate)?;
        if self.duration_seconds > role_max_seconds {
            self.capped_from_seconds = Some(self.duration_seconds);
            self.duration_seconds = role_max_seconds;
        }
        self.state = RequestState::Active;
        self.activated_at = Some(now);
        self.expires_at = Some(now + seconds(self.duration_seconds));
        self.credential = Some(credential);
        self.updated_at = now;
        Ok(AuditKind::GrantActivated)
    }

    fn check_not_timed_out(&self, now: DateTime<Utc>) -> Result<(), RuleError> {
        match self.pending_expires_at {
            Some(at) if self.state == RequestState::Pending && at <= now => Err(RuleError::TimedOut {
                id: self.id.clone(),
                at: rfc3339(at),
            }),
            _ => Ok(()),
        }
    }
}
