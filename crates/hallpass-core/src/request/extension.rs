//! Extensions: asking for more time on an active grant, within the role's
//! limit per extension and its limit on the grant's total time, checked
//! again against the role as it is when an approval completes.

use chrono::{DateTime, Utc};

use super::decisions::RoleCheck;
use super::open::{above_cap, with_cap};
use super::{
    Action, AuditKind, Decision, Extension, ExtensionState, NewExtension, POLICY_ACTOR, RequestRecord, Route,
    SYSTEM_ACTOR, rfc3339, seconds,
};
use crate::duration::format_duration;
use crate::error::RuleError;
use crate::flow::{ApprovalOutcome, ApprovalProgress};
use crate::role::RoleRules;
use crate::subject::Principal;
use crate::text::{self, TextField};

impl RequestRecord {
    /// Asks to lengthen an active grant. `route` says what the role and the
    /// policies decided: extend at once, go through a flow, or refuse.
    pub fn request_extension(
        &mut self,
        caller: &Principal,
        input: NewExtension,
        role: &RoleRules,
        route: Route,
        now: DateTime<Utc>,
    ) -> Result<AuditKind, RuleError> {
        self.require(Action::Extend)?;
        if caller.name != self.requester.name {
            return Err(RuleError::NotRequester {
                requester: self.requester.name.clone(),
                id: self.id.clone(),
                action: "extend",
            });
        }
        self.check_grant_live(now)?;
        if let Some(pending) = self.pending_extension() {
            return Err(RuleError::ExtensionPending {
                id: self.id.clone(),
                number: pending.number,
            });
        }
        self.check_extension_length(input.by_seconds, role)?;
        let reason = text::required(TextField::Reason, &input.reason)?;
        let ticket = text::optional(TextField::Ticket, &input.ticket)?;
        let route = with_cap(
            route,
            above_cap(input.by_seconds, input.policy_cap_seconds, "this extension"),
        );
        let number = u32::try_from(self.extensions.len() + 1).unwrap_or(u32::MAX);
        let mut extension = Extension {
            number,
            by_seconds: input.by_seconds,
            reason,
            ticket,
            requested_at: now,
            state: ExtensionState::Pending,
            auto_approved: false,
            approval: None,
            decision: None,
            policy: input.policy,
            capped_from_seconds: None,
        };
        self.updated_at = now;
        let kind = match route {
            Route::Approve => {
                extension.auto_approved = true;
                AuditKind::GrantExtended
            }
            Route::Flow(flow) => {
                extension.approval = Some(ApprovalProgress::start(flow, now));
                AuditKind::GrantExtensionRequested
            }
            Route::Deny(messages) => {
                extension.state = ExtensionState::Denied;
                extension.decision = Some(Decision {
                    by: POLICY_ACTOR.to_string(),
                    comment: Some(messages.join("\n")),
                    at: now,
                });
                AuditKind::GrantExtensionDenied
            }
        };
        self.extensions.push(extension);
        if kind == AuditKind::GrantExtended {
            self.apply_pending_extension();
        }
        Ok(kind)
    }

    /// An extension may not be empty, longer than the role's maximum
    /// duration, or make the grant last longer in all than the role's
    /// `max_total_duration`.
    fn check_extension_length(&self, by_seconds: u64, role: &RoleRules) -> Result<(), RuleError> {
        if by_seconds == 0 {
            return Err(RuleError::ExtensionEmpty);
        }
        if by_seconds > role.max_duration_seconds {
            return Err(RuleError::DurationAboveMax {
                role: self.role.clone(),
                requested: format_duration(by_seconds),
                max: format_duration(role.max_duration_seconds),
            });
        }
        let granted = self.total_granted_seconds();
        let total = granted.saturating_add(by_seconds);
        if total > role.max_total_duration_seconds {
            let left = role.max_total_duration_seconds.saturating_sub(granted);
            return Err(RuleError::TotalDurationAboveMax {
                id: self.id.clone(),
                role: self.role.clone(),
                total: format_duration(total),
                max: format_duration(role.max_total_duration_seconds),
                left: if left == 0 {
                    "nothing more".into()
                } else {
                    format_duration(left)
                },
            });
        }
        Ok(())
    }

    /// One approval of the pending extension. At quorum the extension is
    /// fitted to `role` as it is now and the expiry moves, or, when the role
    /// no longer allows it, it is denied with the reason.
    pub(super) fn approve_extension(
        &mut self,
        approver: &Principal,
        comment: Option<String>,
        role: Option<&RoleRules>,
        now: DateTime<Utc>,
    ) -> Result<AuditKind, RuleError> {
        self.check_grant_live(now)?;
        let (id, requester) = (self.id.clone(), self.requester.name.clone());
        let Some(extension) = self.pending_extension_mut() else {
            return Err(RuleError::AlreadyDecided(id));
        };
        let progress = extension
            .approval
            .as_mut()
            .ok_or_else(|| RuleError::AlreadyDecided(id.clone()))?;
        let outcome = progress.approve(approver, &requester, &id, comment, now)?;
        self.updated_at = now;
        if outcome != ApprovalOutcome::Approved {
            return Ok(AuditKind::GrantExtensionApproval);
        }
        if let Err(why) = self.fit_pending_extension(role) {
            if let Some(extension) = self.pending_extension_mut() {
                extension.state = ExtensionState::Denied;
                extension.decision = Some(Decision {
                    by: SYSTEM_ACTOR.to_string(),
                    comment: Some(why),
                    at: now,
                });
            }
            return Ok(AuditKind::GrantExtensionDenied);
        }
        self.apply_pending_extension();
        Ok(AuditKind::GrantExtended)
    }

    /// The role may have changed while the extension waited for approval:
    /// deleted, no longer requestable by the requester, or with lower
    /// limits. Shortens the pending extension to what the role allows now,
    /// or says why it cannot take effect at all.
    fn fit_pending_extension(&mut self, role: Option<&RoleRules>) -> Result<(), String> {
        let Some(role) = role else {
            return Err(format!(
                "role {:?} was deleted before the extension took effect",
                self.role
            ));
        };
        if let RoleCheck::NotRequestable(why) = self.check_role(Some(role)) {
            return Err(why);
        }
        let left = role
            .max_total_duration_seconds
            .saturating_sub(self.total_granted_seconds());
        let allowed = role.max_duration_seconds.min(left);
        if allowed == 0 {
            return Err(format!(
                "grant {} has had the {} in all that role {:?} allows (max_total_duration)",
                self.id,
                format_duration(role.max_total_duration_seconds),
                self.role
            ));
        }
        if let Some(extension) = self.pending_extension_mut()
            && extension.by_seconds > allowed
        {
            extension.capped_from_seconds = Some(extension.by_seconds);
            extension.by_seconds = allowed;
        }
        Ok(())
    }

    /// Moves `expires_at` by the pending extension and marks it approved.
    fn apply_pending_extension(&mut self) {
        let Some(extension) = self.pending_extension_mut() else {
            return;
        };
        extension.state = ExtensionState::Approved;
        let by = seconds(extension.by_seconds);
        self.expires_at = self.expires_at.map(|at| at + by);
    }

    fn check_grant_live(&self, now: DateTime<Utc>) -> Result<(), RuleError> {
        match self.expires_at {
            Some(at) if at <= now => Err(RuleError::GrantExpired {
                id: self.id.clone(),
                at: rfc3339(at),
            }),
            _ => Ok(()),
        }
    }
}
