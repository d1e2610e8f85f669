//! Domain records and stored documents to wire types: the one place the
//! server maps what `hallpass-core` keeps onto the JSON shape
//! `hallpass-api` defines.

use chrono::{DateTime, Utc};
use hallpass_api as api;
use hallpass_core::documents::{Document, FlowDocument, PolicyDocument, RoleDocument, TargetDocument};
use hallpass_core::flow::{ApprovalProgress, StageState};
use hallpass_core::format_duration;
use hallpass_core::request::{Approval, Decision, Extension, PolicyRecord, RequestRecord};
use hallpass_store::{ConfigRow, SecretRow};

use crate::app::AppResult;
use crate::app::access_config::{flow_rules, role_rules};

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

/// The policy decision as recorded with the request.
pub fn policy(record: &PolicyRecord) -> api::PolicyDecision {
    api::PolicyDecision {
        policy_hash: record.policy_hash.clone(),
        deny: record.deny.clone(),
        auto_approve: record.auto_approve,
        approval_flow: record.approval_flow.clone(),
        max_duration_seconds: record.max_duration_seconds,
        error: record.error.clone(),
    }
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
                    StageState::Waiting => api::StageState::Waiting,
                    StageState::Open => api::StageState::Open,
                    StageState::Approved => api::StageState::Approved,
                },
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
        state: ext.state,
        auto_approved: ext.auto_approved,
        approval: ext.approval.as_ref().map(|p| flow_progress(p, now)),
        decision: ext.decision.as_ref().map(decision),
        policy: ext.policy.as_ref().map(policy),
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
        state: record.state,
        duration_seconds: record.duration_seconds,
        capped_from_seconds: record.capped_from_seconds,
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
        policy: record.policy.as_ref().map(policy),
        extensions: record.extensions.iter().map(|e| extension(e, now)).collect(),
        review: record.review.as_ref().map(|r| api::ReviewRecord {
            state: if r.acknowledged.is_some() {
                api::ReviewState::Acknowledged
            } else {
                api::ReviewState::Open
            },
            opened_at: r.opened_at,
            acknowledged: r.acknowledged.as_ref().map(decision),
        }),
        plan: record.plan.clone(),
        version,
    }
}

/// A stored target with the names of its secrets (never their values).
pub fn target_to_api(row: &ConfigRow, document: &TargetDocument, secrets: &[SecretRow]) -> api::Target {
    api::Target {
        name: document.name.clone(),
        target_type: document.target_type.clone(),
        config: document.config.clone(),
        secrets: secrets
            .iter()
            .map(|s| api::SecretInfo {
                name: s.name.clone(),
                updated_at: s.updated_at,
            })
            .collect(),
        ca_public_key: None,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

pub fn role_to_api(row: &ConfigRow) -> AppResult<api::Role> {
    let document = RoleDocument::decode(&row.document)?;
    let rules = role_rules(&document)?;
    Ok(api::Role {
        name: document.name,
        target: document.target,
        description: document.description,
        default_duration: format_duration(rules.default_duration_seconds),
        max_duration: format_duration(rules.max_duration_seconds),
        max_total_duration: format_duration(rules.max_total_duration_seconds),
        requestable_by: document.requestable_by,
        labels: document.labels,
        approval: document.approval.map(|a| api::ApprovalSpec {
            approvers: a.approvers,
            required: a.required,
        }),
        approval_flow: document.approval_flow,
        auto_approve: document.auto_approve,
        emergency_access: document.emergency_access,
        extension_requires_approval: document.extension_requires_approval,
        grant: document.grant,
        default_duration_seconds: rules.default_duration_seconds,
        max_duration_seconds: rules.max_duration_seconds,
        max_total_duration_seconds: rules.max_total_duration_seconds,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub fn flow_to_api(row: &ConfigRow) -> AppResult<api::ApprovalFlow> {
    let document = FlowDocument::decode(&row.document)?;
    let rules = flow_rules(&document)?;
    Ok(api::ApprovalFlow {
        name: document.name,
        description: document.description,
        pending_ttl: format_duration(rules.pending_ttl_seconds),
        stages: document
            .stages
            .into_iter()
            .map(|s| api::StageSpec {
                approvers: s.approvers,
                required: s.required,
                timeout: s.timeout,
                escalate_to: s.escalate_to,
            })
            .collect(),
        distinct_approvers: document.distinct_approvers,
        allow_self_approval: document.allow_self_approval,
        pending_ttl_seconds: rules.pending_ttl_seconds,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub fn policy_to_api(row: &ConfigRow) -> AppResult<api::Policy> {
    let document = PolicyDocument::decode(&row.document)?;
    Ok(api::Policy {
        name: document.name,
        source: document.source,
        source_hash: row.reference.clone(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}
