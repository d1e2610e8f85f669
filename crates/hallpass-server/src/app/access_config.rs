//! Validation and normalisation of targets, roles and approval flows: API
//! specs in, stored documents and domain rules out.
//!
//! Documents are normalised before they are stored (durations in their
//! shortest form, subjects re-printed and sorted, defaults filled in) so
//! that applying the same file twice, or `60m` after `1h`, is recognised as
//! "unchanged".

use hallpass_api::{ApprovalFlowSpec, ApprovalSpec, ErrorCode, MAX_ROLE_LABELS, RoleSpec, TargetSpec};
use hallpass_core::documents::{ApprovalDocument, FlowDocument, RoleDocument, StageDocument, TargetDocument};
use hallpass_core::flow::{DEFAULT_PENDING_TTL_SECONDS, FlowRules, StageRules, check_stage, check_stage_count};
use hallpass_core::role::{RoleApproval, RoleRules};
use hallpass_core::subject::is_valid_name;
use hallpass_core::{Subject, format_duration, parse_duration};
use hallpass_providers::{Registry, TargetSecrets, check_secret_names};

use crate::app::{AppError, AppResult};

/// Default duration when a role names none: one hour, or less if the role's
/// maximum is shorter. Short by default is the safe side.
const DEFAULT_DURATION_SECONDS: u64 = 3600;

pub fn check_name(kind: &str, name: &str) -> AppResult<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(AppError::invalid(
            ErrorCode::InvalidName,
            format!(
                "{kind} name {name:?} is not valid: use 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit"
            ),
        ))
    }
}

fn parse_subjects(whose: &str, field: &str, subjects: &[String]) -> AppResult<Vec<Subject>> {
    subjects
        .iter()
        .map(|s| {
            s.parse::<Subject>()
                .map_err(|e| AppError::invalid(ErrorCode::InvalidSubject, format!("{whose}, {field}: {e}")))
        })
        .collect()
}

fn canonical_subjects(whose: &str, field: &str, subjects: &[String]) -> AppResult<Vec<String>> {
    let mut canonical: Vec<String> = parse_subjects(whose, field, subjects)?
        .iter()
        .map(ToString::to_string)
        .collect();
    canonical.sort();
    canonical.dedup();
    Ok(canonical)
}

fn duration(whose: &str, field: &str, text: &str) -> AppResult<u64> {
    parse_duration(text).map_err(|e| AppError::invalid(ErrorCode::InvalidDuration, format!("{whose}, {field}: {e}")))
}

/// Checks a target's type, settings and secrets. Secret values only pass
/// through; they are sealed by the caller.
pub fn normalize_target(spec: &TargetSpec, secrets: &TargetSecrets, registry: &Registry) -> AppResult<TargetDocument> {
    check_name("target", &spec.name)?;
    let target_type = spec.target_type.trim().to_string();
    let provider = registry.get(&target_type).ok_or_else(|| {
        AppError::invalid(
            ErrorCode::UnsupportedTargetType,
            format!(
                "target {:?}: type {:?} is not supported by this server; supported types: {}",
                spec.name,
                target_type,
                registry.types().join(", ")
            ),
        )
    })?;
    let invalid = |e: hallpass_providers::ProviderError| {
        AppError::invalid(ErrorCode::InvalidTargetConfig, format!("target {:?}: {e}", spec.name))
    };
    check_secret_names(&target_type, provider.secrets(), secrets).map_err(invalid)?;
    provider.validate_config(&spec.config, secrets).map_err(invalid)?;
    Ok(TargetDocument {
        name: spec.name.clone(),
        target_type,
        config: spec.config.clone(),
    })
}

/// Checks a role and returns its stored form and its rules.
pub fn normalize_role(spec: &RoleSpec) -> AppResult<(RoleDocument, RoleRules)> {
    check_name("role", &spec.name)?;
    check_name("target", &spec.target)?;
    let whose = format!("role {:?}", spec.name);
    let max = duration(&whose, "max_duration", &spec.max_duration)?;
    let default = match &spec.default_duration {
        Some(text) => duration(&whose, "default_duration", text)?,
        None => DEFAULT_DURATION_SECONDS.min(max),
    };
    if default > max {
        return Err(AppError::invalid(
            ErrorCode::InvalidDuration,
            format!(
                "{whose}: default_duration {} is longer than max_duration {}",
                format_duration(default),
                format_duration(max)
            ),
        ));
    }
    let total = match &spec.max_total_duration {
        Some(text) => duration(&whose, "max_total_duration", text)?,
        None => RoleRules::default_total_seconds(max),
    };
    if total < max {
        return Err(AppError::invalid(
            ErrorCode::InvalidDuration,
            format!(
                "{whose}: max_total_duration {} is shorter than max_duration {}; it bounds a grant with all its extensions",
                format_duration(total),
                format_duration(max)
            ),
        ));
    }
    if spec.requestable_by.is_empty() {
        return Err(AppError::invalid(
            ErrorCode::InvalidRole,
            format!("{whose}: requestable_by is empty, so nobody could request it; add e.g. \"group:dev\""),
        ));
    }
    if spec.labels.len() > MAX_ROLE_LABELS {
        return Err(AppError::invalid(
            ErrorCode::InvalidRole,
            format!("{whose}: at most {MAX_ROLE_LABELS} labels"),
        ));
    }
    check_one_approval_way(&whose, spec)?;
    if let Some(flow) = &spec.approval_flow {
        check_name("approval flow", flow)?;
    }
    let approval = spec
        .approval
        .as_ref()
        .map(|a| normalize_approval(&whose, a))
        .transpose()?;
    let document = RoleDocument {
        name: spec.name.clone(),
        target: spec.target.clone(),
        description: spec.description.trim().to_string(),
        default_duration: Some(format_duration(default)),
        max_duration: format_duration(max),
        max_total_duration: spec.max_total_duration.as_ref().map(|_| format_duration(total)),
        requestable_by: canonical_subjects(&whose, "requestable_by", &spec.requestable_by)?,
        labels: spec.labels.clone(),
        approval,
        approval_flow: spec.approval_flow.clone(),
        auto_approve: spec.auto_approve,
        emergency_access: spec.emergency_access,
        extension_requires_approval: spec.extension_requires_approval,
        grant: spec.grant.clone(),
    };
    let rules = role_rules(&document)?;
    Ok((document, rules))
}

fn check_one_approval_way(whose: &str, spec: &RoleSpec) -> AppResult<()> {
    let ways = usize::from(spec.approval.is_some())
        + usize::from(spec.approval_flow.is_some())
        + usize::from(spec.auto_approve);
    if ways == 1 {
        return Ok(());
    }
    let problem = if ways == 0 {
        "does not say how requests are approved"
    } else {
        "says more than once how requests are approved"
    };
    Err(AppError::invalid(
        ErrorCode::InvalidRole,
        format!(
            "{whose} {problem}: give exactly one of an approval block (approvers, required), \
             approval_flow = \"NAME\", or auto_approve = true"
        ),
    ))
}

fn normalize_approval(whose: &str, approval: &ApprovalSpec) -> AppResult<ApprovalDocument> {
    check_stage(approval.approvers.len(), approval.required, false, 0)
        .map_err(|problem| AppError::invalid(ErrorCode::InvalidRole, format!("{whose}: approval.{problem}")))?;
    Ok(ApprovalDocument {
        approvers: canonical_subjects(whose, "approval.approvers", &approval.approvers)?,
        required: approval.required,
    })
}

fn flow_error(flow: &str, message: impl std::fmt::Display) -> AppError {
    AppError::invalid(
        ErrorCode::InvalidApprovalFlow,
        format!("approval flow {flow:?}: {message}"),
    )
}

/// Checks an approval flow and returns its stored form and its rules.
pub fn normalize_flow(spec: &ApprovalFlowSpec) -> AppResult<(FlowDocument, FlowRules)> {
    check_name("approval flow", &spec.name)?;
    let name = spec.name.as_str();
    let ttl = match &spec.pending_ttl {
        Some(text) => parse_duration(text).map_err(|e| flow_error(name, format!("pending_ttl: {e}")))?,
        None => DEFAULT_PENDING_TTL_SECONDS,
    };
    check_stage_count(spec.stages.len()).map_err(|problem| flow_error(name, problem))?;
    let mut stages = Vec::with_capacity(spec.stages.len());
    for (index, stage) in spec.stages.iter().enumerate() {
        let field = |what: &str| format!("stage {}, {what}", index + 1);
        let timeout = match &stage.timeout {
            Some(text) => {
                Some(parse_duration(text).map_err(|e| flow_error(name, format!("{}: {e}", field("timeout"))))?)
            }
            None => None,
        };
        check_stage(
            stage.approvers.len(),
            stage.required,
            timeout.is_some(),
            stage.escalate_to.len(),
        )
        .map_err(|problem| flow_error(name, format!("stage {}, {problem}", index + 1)))?;
        let subjects = |what: &str, list: &[String]| {
            canonical_subjects(&format!("approval flow {name:?}"), &field(what), list)
                .map_err(|e| AppError::invalid(ErrorCode::InvalidApprovalFlow, e.message))
        };
        stages.push(StageDocument {
            approvers: subjects("approvers", &stage.approvers)?,
            required: stage.required,
            timeout: timeout.map(format_duration),
            escalate_to: subjects("escalate_to", &stage.escalate_to)?,
        });
    }
    let document = FlowDocument {
        name: spec.name.clone(),
        description: spec.description.trim().to_string(),
        pending_ttl: Some(format_duration(ttl)),
        stages,
        distinct_approvers: spec.distinct_approvers,
        allow_self_approval: spec.allow_self_approval,
    };
    let rules = flow_rules(&document)?;
    Ok((document, rules))
}

/// The rules of a stored (already normalised) flow.
pub fn flow_rules(document: &FlowDocument) -> AppResult<FlowRules> {
    let whose = format!("approval flow {:?}", document.name);
    let mut stages = Vec::with_capacity(document.stages.len());
    for (index, stage) in document.stages.iter().enumerate() {
        let field = |what: &str| format!("stage {}, {what}", index + 1);
        stages.push(StageRules {
            approvers: parse_subjects(&whose, &field("approvers"), &stage.approvers)?,
            required: stage.required,
            timeout_seconds: stage
                .timeout
                .as_deref()
                .map(|t| duration(&whose, &field("timeout"), t))
                .transpose()?,
            escalate_to: parse_subjects(&whose, &field("escalate_to"), &stage.escalate_to)?,
        });
    }
    Ok(FlowRules {
        name: Some(document.name.clone()),
        pending_ttl_seconds: match &document.pending_ttl {
            Some(text) => duration(&whose, "pending_ttl", text)?,
            None => DEFAULT_PENDING_TTL_SECONDS,
        },
        stages,
        distinct_approvers: document.distinct_approvers,
        allow_self_approval: document.allow_self_approval,
    })
}

/// The rules of a stored (already normalised) role.
pub fn role_rules(document: &RoleDocument) -> AppResult<RoleRules> {
    let whose = format!("role {:?}", document.name);
    let max = duration(&whose, "max_duration", &document.max_duration)?;
    let default = match &document.default_duration {
        Some(text) => duration(&whose, "default_duration", text)?,
        None => DEFAULT_DURATION_SECONDS.min(max),
    };
    let total = match &document.max_total_duration {
        Some(text) => duration(&whose, "max_total_duration", text)?,
        None => RoleRules::default_total_seconds(max),
    };
    let approval = match (&document.approval, &document.approval_flow) {
        (Some(approval), _) => RoleApproval::Inline(FlowRules::single_stage(
            parse_subjects(&whose, "approval.approvers", &approval.approvers)?,
            approval.required,
        )),
        (None, Some(flow)) => RoleApproval::Named(flow.clone()),
        (None, None) => RoleApproval::Auto,
    };
    Ok(RoleRules {
        name: document.name.clone(),
        target: document.target.clone(),
        default_duration_seconds: default,
        max_duration_seconds: max,
        max_total_duration_seconds: total,
        requestable_by: parse_subjects(&whose, "requestable_by", &document.requestable_by)?,
        approval,
        emergency_access: document.emergency_access,
        extension_requires_approval: document.extension_requires_approval,
    })
}

/// Top-level fields that differ between two JSON objects.
pub fn changed_fields(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return vec!["*".into()];
    };
    let mut fields: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|key| *key != "v" && old.get(*key) != new.get(*key))
        .cloned()
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

#[cfg(test)]
mod tests;
