//! Domain records to wire types: the one place the server maps what
//! `hallpass-core` keeps onto the JSON shape `hallpass-api` defines.

use chrono::{DateTime, Utc};
use hallpass_api as api;
use hallpass_core::flow::{ApprovalProgress, StageState};
use hallpass_core::request::{Approval, Decision, Extension, RequestRecord};

fn decision(d: &Decision) -> api::DecisionRecord {
    api::DecisionRecord {
        by: d.by.clone(),
        comment: d.comment.clone(),
        at: d.at,
    }
}

fn approvals(list: &[Approval]) -> Vec<api::ApprovalRecord> {
    list.iter()
        .map(|a| api::ApprovalRecord {
            approver: a.approver.clone(),
            comment: a.comment.clone(),
            at: a.at,
        })
        .collect()
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// The policy decision as recorded (stored as JSON in the record).
fn policy(value: &Option<serde_json::Value>) -> Option<api::PolicyDecision> {
    value.as_ref().and_then(|v| serde_json::from_value(v.clone()).ok())
}

pub fn flow_progress(progress: &ApprovalProgress, now: DateTime<Utc>) -> api::FlowProgress {
    let may_approve = strings(&progress.may_approve(now));
    let stages = progress
        .flow
        .stages
        .iter()
        .zip(&progress.stages)
        .enumerate()
        .map(|(index, (rules, state))| {
            let open = progress.stage_state(index) == StageState::Open;
            let escalates_at = progress.escalates_at(index);
            api::StageProgress {
                number: u32::try_from(index + 1).unwrap_or(u32::MAX),
                state: match progress.stage_state(index) {
                    StageState::Waiting => "waiting",
                    StageState::Open => "open",
                    StageState::Approved => "approved",
                }
                .to_string(),
                approvers: strings(&rules.approvers),
                required: rules.required,
                approvals: approvals(&state.approvals),
                escalate_to: strings(&rules.escalate_to),
                opened_at: state.opened_at,
                escalates_at,
                escalated: escalates_at.is_some_and(|at| at <= now),
                may_approve: if open { may_approve.clone() } else { Vec::new() },
            }
        })
        .collect();
    api::FlowProgress {
        flow: progress.flow.name.clone(),
        stages,
        distinct_approvers: progress.flow.distinct_approvers,
        allow_self_approval: progress.flow.allow_self_approval,
    }
}

fn extension(ext: &Extension, now: DateTime<Utc>) -> api::ExtensionRecord {
    api::ExtensionRecord {
        number: ext.number,
        by_seconds: ext.by_seconds,
        reason: ext.reason.clone(),
        ticket: ext.ticket.clone(),
        requested_at: ext.requested_at,
        state: ext.state.as_str().to_string(),
        auto_approved: ext.auto_approved,
        approval: ext.approval.as_ref().map(|p| flow_progress(p, now)),
        decision: ext.decision.as_ref().map(decision),
        policy: policy(&ext.policy),
    }
}

/// Converts a stored record into its wire form; `now` decides who may
/// approve an escalated stage.
pub fn request_to_api(record: &RequestRecord, version: u64, now: DateTime<Utc>) -> api::AccessRequest {
    let (approvers, required_approvals, all_approvals) = match &record.approval {
        Some(progress) => (
            strings(&progress.flow.all_approvers()),
            progress.flow.total_required(),
            progress.all_approvals(),
        ),
        None => (Vec::new(), 0, Vec::new()),
    };
    api::AccessRequest {
        id: record.id.clone(),
        role: record.role.clone(),
        target: record.target.clone(),
        requester: record.requester.name.clone(),
        state: record.state.as_str().to_string(),
        duration_seconds: record.duration_seconds,
        reason: record.reason.clone(),
        ticket: record.ticket.clone(),
        created_at: record.created_at,
        updated_at: record.updated_at,
        activated_at: record.activated_at,
        expires_at: record.expires_at,
        ended_at: record.ended_at,
        auto_approved: record.auto_approved,
        required_approvals,
        approvers,
        approvals: approvals(&all_approvals),
        decision: record.decision.as_ref().map(decision),
        ended_by: record.ended_by.as_ref().map(decision),
        credential: record.credential.clone(),
        revoke_error: record.revoke_error.clone(),
        revoke_attempts: record.revoke_attempts,
        next_revoke_at: record.next_revoke_at,
        emergency: record.emergency,
        scheduled_start: record.scheduled_start,
        pending_expires_at: record.pending_expires_at,
        approval: record.approval.as_ref().map(|p| flow_progress(p, now)),
        policy: policy(&record.policy),
        extensions: record.extensions.iter().map(|e| extension(e, now)).collect(),
        review: record.review.as_ref().map(|r| api::ReviewRecord {
            state: if r.acknowledged.is_some() {
                "acknowledged"
            } else {
                "open"
            }
            .to_string(),
            opened_at: r.opened_at,
            acknowledged: r.acknowledged.as_ref().map(decision),
        }),
        version,
    }
}
