//! Approval flows: ordered stages, each with approvers, a quorum, and an
//! optional escalation after a timeout.
//!
//! [`FlowRules`] is what the configuration says; [`ApprovalProgress`] is one
//! request's (or one extension's) way through it. A copy of the rules travels
//! with the progress, so editing a flow never changes requests in flight;
//! their serde form is the stored record's lean one (`request::stored`).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::RuleError;
use crate::subject::{Principal, Subject, join_subjects};
use crate::text::{self, TextField};

/// One person's approval of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// How long a request may stay pending when its flow names no `pending_ttl`.
pub const DEFAULT_PENDING_TTL_SECONDS: u64 = 24 * 3600;
/// Largest quorum a stage may ask for. Larger numbers are typos, not
/// quorums anyone could gather while a request is pending.
pub const MAX_STAGE_REQUIRED: u32 = 100;
/// More stages than this is a configuration mistake, not a process.
pub const MAX_STAGES: usize = 10;

/// Why a flow cannot work, whichever way it was written (HCL, API,
/// Terraform): the one place these rules live. Front ends add where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowProblem {
    #[error("has no stage; add at least one stage with approvers")]
    NoStage,
    #[error("has {0} stages; at most {MAX_STAGES}")]
    TooManyStages(usize),
    #[error("approvers is empty; name who may approve")]
    NoApprovers,
    #[error("required must be between 1 and {MAX_STAGE_REQUIRED}")]
    RequiredOutOfRange,
    #[error(
        "timeout has no effect without escalate_to; add escalate_to (who may also approve once the stage has been open that long) or remove timeout"
    )]
    TimeoutWithoutEscalation,
    #[error("escalate_to needs a timeout: escalation approvers may approve once the stage has been open that long")]
    EscalationWithoutTimeout,
}

/// Checks the number of stages.
pub fn check_stage_count(stages: usize) -> Result<(), FlowProblem> {
    match stages {
        0 => Err(FlowProblem::NoStage),
        n if n > MAX_STAGES => Err(FlowProblem::TooManyStages(n)),
        _ => Ok(()),
    }
}

/// Checks one stage: someone may approve it, its quorum is sane, and a
/// timeout and escalation approvers come together (the timeout only says
/// when they join in).
pub fn check_stage(approvers: usize, required: u32, has_timeout: bool, escalate_to: usize) -> Result<(), FlowProblem> {
    if approvers == 0 {
        return Err(FlowProblem::NoApprovers);
    }
    if required == 0 || required > MAX_STAGE_REQUIRED {
        return Err(FlowProblem::RequiredOutOfRange);
    }
    match (has_timeout, escalate_to > 0) {
        (true, false) => Err(FlowProblem::TimeoutWithoutEscalation),
        (false, true) => Err(FlowProblem::EscalationWithoutTimeout),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRules {
    pub approvers: Vec<Subject>,
    pub required: u32,
    /// After this long open, `escalate_to` may approve the stage too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate_to: Vec<Subject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRules {
    /// `None` for a role's inline one-stage `approval` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub pending_ttl_seconds: u64,
    pub stages: Vec<StageRules>,
    pub distinct_approvers: bool,
    pub allow_self_approval: bool,
}

impl FlowRules {
    /// A role's inline `approval { approvers, required }` block.
    pub fn single_stage(approvers: Vec<Subject>, required: u32) -> Self {
        FlowRules {
            name: None,
            pending_ttl_seconds: DEFAULT_PENDING_TTL_SECONDS,
            stages: vec![StageRules {
                approvers,
                required,
                timeout_seconds: None,
                escalate_to: Vec::new(),
            }],
            distinct_approvers: true,
            allow_self_approval: false,
        }
    }

    /// Everyone who may approve some stage, escalation included: these may
    /// also revoke grants of the role and acknowledge its break-glass reviews.
    pub fn all_approvers(&self) -> Vec<Subject> {
        let mut all: Vec<Subject> = Vec::new();
        for stage in &self.stages {
            for subject in stage.approvers.iter().chain(&stage.escalate_to) {
                if !all.contains(subject) {
                    all.push(subject.clone());
                }
            }
        }
        all
    }

    pub fn total_required(&self) -> u32 {
        self.stages.iter().map(|s| s.required).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StageProgress {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<DateTime<Utc>>,
    /// When the escalation was recorded (the `request.escalated` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<DateTime<Utc>>,
}

/// One request's progress through its flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalProgress {
    pub flow: FlowRules,
    pub stages: Vec<StageProgress>,
    /// Index of the open stage; equals `stages.len()` once all are approved.
    pub current: usize,
}

/// What one approval achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// Counted; the open stage still needs more.
    Counted,
    /// The open stage reached its quorum and the next one opened.
    StageApproved,
    /// The last stage reached its quorum.
    Approved,
}

/// The open stage's state, as shown to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    Waiting,
    Open,
    Approved,
}

fn seconds(value: u64) -> Duration {
    Duration::seconds(i64::try_from(value).unwrap_or(i64::MAX / 1000))
}

impl ApprovalProgress {
    /// Opens the first stage.
    pub fn start(flow: FlowRules, now: DateTime<Utc>) -> Self {
        let mut stages = vec![StageProgress::default(); flow.stages.len()];
        if let Some(first) = stages.first_mut() {
            first.opened_at = Some(now);
        }
        ApprovalProgress {
            flow,
            stages,
            current: 0,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.current >= self.flow.stages.len()
    }

    pub fn stage_state(&self, index: usize) -> StageState {
        match index.cmp(&self.current) {
            std::cmp::Ordering::Less => StageState::Approved,
            std::cmp::Ordering::Equal => StageState::Open,
            std::cmp::Ordering::Greater => StageState::Waiting,
        }
    }

    /// When `escalate_to` may approve stage `index`: its timeout after it opened.
    pub fn escalates_at(&self, index: usize) -> Option<DateTime<Utc>> {
        let rules = self.flow.stages.get(index)?;
        if rules.escalate_to.is_empty() {
            return None;
        }
        let opened = self.stages.get(index)?.opened_at?;
        Some(opened + seconds(rules.timeout_seconds?))
    }

    fn is_escalated(&self, index: usize, now: DateTime<Utc>) -> bool {
        self.escalates_at(index).is_some_and(|at| at <= now)
    }

    /// Who may approve the open stage right now.
    pub fn may_approve(&self, now: DateTime<Utc>) -> Vec<Subject> {
        let Some(rules) = self.flow.stages.get(self.current) else {
            return Vec::new();
        };
        let mut subjects = rules.approvers.clone();
        if self.is_escalated(self.current, now) {
            subjects.extend(rules.escalate_to.iter().cloned());
        }
        subjects
    }

    /// The escalation of the open stage that has not been recorded yet.
    pub fn next_escalation(&self) -> Option<DateTime<Utc>> {
        let progress = self.stages.get(self.current)?;
        if progress.escalated_at.is_some() {
            return None;
        }
        self.escalates_at(self.current)
    }

    /// Records that the open stage escalated; returns its 1-based number and
    /// who may now approve it too, or `None` when nothing is due.
    pub fn mark_escalated(&mut self, now: DateTime<Utc>) -> Option<(usize, Vec<Subject>)> {
        let due = self.next_escalation()?;
        if due > now {
            return None;
        }
        let index = self.current;
        let stage = self.stages.get_mut(index)?;
        stage.escalated_at = Some(now);
        let escalate_to = self.flow.stages.get(index)?.escalate_to.clone();
        Some((index + 1, escalate_to))
    }

    /// Whether `principal` may deny now: an approver of the open stage
    /// (escalation included) or an admin.
    pub fn may_deny(&self, principal: &Principal, now: DateTime<Utc>) -> bool {
        principal.is_admin() || principal.matches_any(&self.may_approve(now))
    }

    /// Counts one approval for the open stage, after checking that the
    /// approver may give it; opens the next stage at quorum.
    pub fn approve(
        &mut self,
        approver: &Principal,
        requester: &str,
        id: &str,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<ApprovalOutcome, RuleError> {
        let index = self.current;
        let Some(rules) = self.flow.stages.get(index) else {
            return Err(RuleError::AlreadyDecided(id.to_string()));
        };
        if approver.name == requester && !self.flow.allow_self_approval {
            return Err(RuleError::SelfApproval(id.to_string()));
        }
        let allowed = self.may_approve(now);
        if !approver.matches_any(&allowed) {
            let escalation = match (self.escalates_at(index), rules.escalate_to.is_empty()) {
                (Some(at), false) if at > now => format!(
                    "; {} may approve it too from {}",
                    join_subjects(&rules.escalate_to),
                    at.format("%Y-%m-%dT%H:%M:%SZ")
                ),
                _ => String::new(),
            };
            return Err(RuleError::NotAnApprover {
                principal: approver.name.clone(),
                id: id.to_string(),
                approvers: format!("stage {} needs {}{escalation}", index + 1, join_subjects(&allowed)),
            });
        }
        let progress = &self.stages[index];
        if progress.approvals.iter().any(|a| a.approver == approver.name) {
            return Err(RuleError::AlreadyApproved {
                approver: approver.name.clone(),
                id: id.to_string(),
            });
        }
        if self.flow.distinct_approvers
            && let Some(earlier) = self.stages[..index]
                .iter()
                .position(|s| s.approvals.iter().any(|a| a.approver == approver.name))
        {
            return Err(RuleError::NotDistinct {
                approver: approver.name.clone(),
                id: id.to_string(),
                stage: earlier + 1,
            });
        }
        let comment = text::optional(TextField::Comment, &comment)?;
        let required = rules.required;
        let stage = &mut self.stages[index];
        stage.approvals.push(Approval {
            approver: approver.name.clone(),
            comment,
            at: now,
        });
        if (stage.approvals.len() as u64) < u64::from(required) {
            return Ok(ApprovalOutcome::Counted);
        }
        self.current += 1;
        match self.stages.get_mut(self.current) {
            Some(next) => {
                next.opened_at = Some(now);
                Ok(ApprovalOutcome::StageApproved)
            }
            None => Ok(ApprovalOutcome::Approved),
        }
    }

    /// Every approval in stage order.
    pub fn all_approvals(&self) -> Vec<Approval> {
        self.stages.iter().flat_map(|s| s.approvals.iter().cloned()).collect()
    }

    /// How many more approvals the whole flow needs.
    pub fn approvals_missing(&self) -> u32 {
        self.flow
            .stages
            .iter()
            .zip(&self.stages)
            .map(|(rules, progress)| {
                let have = u32::try_from(progress.approvals.len()).unwrap_or(u32::MAX);
                rules.required.saturating_sub(have)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn who(name: &str, groups: &[&str]) -> Principal {
        Principal {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn subject(text: &str) -> Subject {
        text.parse().expect("valid subject")
    }

    /// The example: peer (dev-leads ×1, escalating to security after
    /// 15m), then security ×2.
    fn peer_then_security() -> FlowRules {
        FlowRules {
            name: Some("peer-then-security".into()),
            pending_ttl_seconds: 2 * 3600,
            stages: vec![
                StageRules {
                    approvers: vec![subject("group:dev-leads")],
                    required: 1,
                    timeout_seconds: Some(15 * 60),
                    escalate_to: vec![subject("group:security")],
                },
                StageRules {
                    approvers: vec![subject("group:security")],
                    required: 2,
                    timeout_seconds: None,
                    escalate_to: vec![],
                },
            ],
            distinct_approvers: true,
            allow_self_approval: false,
        }
    }

    #[test]
    fn stages_open_in_order_and_need_their_quorum() {
        let mut progress = ApprovalProgress::start(peer_then_security(), t0());
        let sec1 = who("sam", &["security"]);
        // Stage 1 is open: security may not approve it before escalation.
        let early = progress.approve(&sec1, "alice", "r1", None, t0()).unwrap_err();
        assert!(matches!(early, RuleError::NotAnApprover { .. }), "{early}");
        assert!(early.to_string().contains("stage 1"), "{early}");
        assert!(early.to_string().contains("2026-11-21T10:15:00Z"), "{early}");
        let lead = who("lee", &["dev-leads"]);
        let outcome = progress.approve(&lead, "alice", "r1", None, t0()).unwrap();
        assert_eq!(outcome, ApprovalOutcome::StageApproved);
        assert_eq!(progress.current, 1);
        assert_eq!(progress.stages[1].opened_at, Some(t0()));
        assert_eq!(progress.stage_state(0), StageState::Approved);
        assert_eq!(progress.stage_state(1), StageState::Open);
        // A lead may not approve stage 2.
        assert!(
            progress
                .approve(&who("lou", &["dev-leads"]), "alice", "r1", None, t0())
                .is_err()
        );
        assert_eq!(
            progress.approve(&sec1, "alice", "r1", None, t0()).unwrap(),
            ApprovalOutcome::Counted
        );
        assert_eq!(progress.approvals_missing(), 1);
        assert!(matches!(
            progress.approve(&sec1, "alice", "r1", None, t0()),
            Err(RuleError::AlreadyApproved { .. })
        ));
        let sec2 = who("sue", &["security"]);
        assert_eq!(
            progress.approve(&sec2, "alice", "r1", None, t0()).unwrap(),
            ApprovalOutcome::Approved
        );
        assert!(progress.is_complete());
        assert_eq!(progress.all_approvals().len(), 3);
        assert!(matches!(
            progress.approve(&who("sid", &["security"]), "alice", "r1", None, t0()),
            Err(RuleError::AlreadyDecided(_))
        ));
    }

    #[test]
    fn distinct_approvers_count_in_one_stage_only() {
        let mut flow = peer_then_security();
        flow.stages[1].approvers.push(subject("group:dev-leads"));
        let mut progress = ApprovalProgress::start(flow.clone(), t0());
        let both = who("bea", &["dev-leads", "security"]);
        progress.approve(&both, "alice", "r1", None, t0()).unwrap();
        let err = progress.approve(&both, "alice", "r1", None, t0()).unwrap_err();
        assert!(matches!(err, RuleError::NotDistinct { stage: 1, .. }), "{err}");

        flow.distinct_approvers = false;
        let mut lenient = ApprovalProgress::start(flow, t0());
        lenient.approve(&both, "alice", "r1", None, t0()).unwrap();
        assert_eq!(
            lenient.approve(&both, "alice", "r1", None, t0()).unwrap(),
            ApprovalOutcome::Counted
        );
    }

    #[test]
    fn requester_approves_own_request_only_when_the_flow_allows() {
        let mut flow = peer_then_security();
        let alice = who("alice", &["dev-leads"]);
        let mut progress = ApprovalProgress::start(flow.clone(), t0());
        assert!(matches!(
            progress.approve(&alice, "alice", "r1", None, t0()),
            Err(RuleError::SelfApproval(_))
        ));
        flow.allow_self_approval = true;
        let mut progress = ApprovalProgress::start(flow, t0());
        assert_eq!(
            progress.approve(&alice, "alice", "r1", None, t0()).unwrap(),
            ApprovalOutcome::StageApproved
        );
    }

    #[test]
    fn escalation_opens_the_stage_to_escalate_to_after_the_timeout() {
        let mut progress = ApprovalProgress::start(peer_then_security(), t0());
        let at = t0() + Duration::minutes(15);
        assert_eq!(progress.escalates_at(0), Some(at));
        assert_eq!(progress.next_escalation(), Some(at));
        assert_eq!(progress.mark_escalated(at - Duration::seconds(1)), None, "not yet due");
        let sam = who("sam", &["security"]);
        assert!(!progress.may_deny(&sam, at - Duration::seconds(1)));
        assert!(progress.may_deny(&sam, at));
        let (stage, to) = progress.mark_escalated(at).unwrap();
        assert_eq!((stage, to), (1, vec![subject("group:security")]));
        assert_eq!(progress.next_escalation(), None, "recorded once");
        assert_eq!(progress.mark_escalated(at + Duration::hours(1)), None);
        // sam approves stage 1 by escalation; distinct approvers then keep
        // sam out of stage 2.
        assert_eq!(
            progress.approve(&sam, "alice", "r1", None, at).unwrap(),
            ApprovalOutcome::StageApproved
        );
        assert!(matches!(
            progress.approve(&sam, "alice", "r1", None, at),
            Err(RuleError::NotDistinct { .. })
        ));
        // Stage 2 has no escalation of its own.
        assert_eq!(progress.next_escalation(), None);
    }

    #[test]
    fn escalation_timer_starts_when_the_stage_opens() {
        let mut flow = peer_then_security();
        flow.stages[1].timeout_seconds = Some(600);
        flow.stages[1].escalate_to = vec![subject("user:ciso")];
        let mut progress = ApprovalProgress::start(flow, t0());
        let later = t0() + Duration::hours(1);
        progress
            .approve(&who("lee", &["dev-leads"]), "alice", "r1", None, later)
            .unwrap();
        assert_eq!(progress.escalates_at(1), Some(later + Duration::minutes(10)));
    }

    #[test]
    fn shorthand_is_one_stage_with_the_default_ttl() {
        let flow = FlowRules::single_stage(vec![subject("group:approvers")], 2);
        assert_eq!(flow.pending_ttl_seconds, DEFAULT_PENDING_TTL_SECONDS);
        assert_eq!(flow.total_required(), 2);
        assert_eq!(
            peer_then_security().all_approvers(),
            vec![subject("group:dev-leads"), subject("group:security")]
        );
    }
}
