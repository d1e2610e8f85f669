//! Break-glass reviews: a grant taken in an emergency is acknowledged
//! afterwards by an approver of its role or an admin, never its requester.

use chrono::{DateTime, Utc};

use super::{Action, AuditKind, Decision, RequestRecord};
use crate::error::RuleError;
use crate::subject::{Principal, join_subjects};
use crate::text::{self, TextField};

impl RequestRecord {
    /// An approver of the role (or an admin) acknowledges a break-glass
    /// grant's review.
    pub fn acknowledge_review(
        &mut self,
        reviewer: &Principal,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<AuditKind, RuleError> {
        if !self.review_open() {
            return Err(RuleError::NoOpenReview(self.id.clone()));
        }
        self.require(Action::AcknowledgeReview)?;
        if reviewer.name == self.requester.name {
            return Err(RuleError::SelfReview(self.id.clone()));
        }
        if !reviewer.is_admin() && !reviewer.matches_any(&self.role_approvers) {
            return Err(RuleError::NotAReviewer {
                principal: reviewer.name.clone(),
                id: self.id.clone(),
                approvers: join_subjects(&self.role_approvers),
            });
        }
        let comment = text::required(TextField::Comment, comment)?;
        if let Some(review) = self.review.as_mut() {
            review.acknowledged = Some(Decision {
                by: reviewer.name.clone(),
                comment: Some(comment),
                at: now,
            });
        }
        self.updated_at = now;
        Ok(AuditKind::ReviewAcknowledged)
    }
}
