//! Validation and normalisation of targets, roles and approval flows, and the
//! diff behind `hallpass apply`.
//!
//! Specs are normalised before they are stored (durations in their shortest
//! form, subjects re-printed, defaults filled in) so that applying the same
//! file twice, or `60m` after `1h`, is recognised as "unchanged".

use hallpass_api::{ApprovalFlowSpec, ApprovalSpec, RoleSpec, TargetSpec};
use hallpass_core::flow::{DEFAULT_PENDING_TTL_SECONDS, FlowRules, MAX_STAGE_REQUIRED, StageRules};
use hallpass_core::request::{RoleApproval, RoleRules};
use hallpass_core::subject::is_valid_name;
use hallpass_core::{Subject, format_duration, parse_duration};
use hallpass_providers::Registry;

use crate::error::{ApiError, ApiResult};

/// Default duration when a role names none: one hour, or less if the role's
/// maximum is shorter. Short by default is the safe side.
const DEFAULT_DURATION_SECONDS: u64 = 3600;
const MAX_LABELS: usize = 64;
/// More stages than this is a configuration mistake, not a process.
const MAX_STAGES: usize = 10;

fn invalid(code: &'static str, message: String) -> ApiError {
    ApiError::bad_request(code, message)
}

pub fn check_name(kind: &str, name: &str) -> ApiResult<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(invalid(
            "invalid_name",
            format!(
                "{kind} name {name:?} is not valid: use 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit"
            ),
        ))
    }
}

fn parse_subjects(role: &str, field: &str, subjects: &[String]) -> ApiResult<Vec<Subject>> {
    subjects
        .iter()
        .map(|s| {
            s.parse::<Subject>()
                .map_err(|e| invalid("invalid_subject", format!("role {role:?}, {field}: {e}")))
        })
        .collect()
}

fn role_duration(role: &str, field: &str, text: &str) -> ApiResult<u64> {
    parse_duration(text).map_err(|e| invalid("invalid_duration", format!("role {role:?}, {field}: {e}")))
}

pub fn normalize_target(mut spec: TargetSpec, registry: &Registry) -> ApiResult<TargetSpec> {
    check_name("target", &spec.name)?;
    spec.target_type = spec.target_type.trim().to_string();
    let provider = registry.get(&spec.target_type).ok_or_else(|| {
        invalid(
            "unsupported_target_type",
            format!(
                "target {:?}: type {:?} is not supported by this server; supported types: {}",
                spec.name,
                spec.target_type,
                registry.types().join(", ")
            ),
        )
    })?;
    provider
        .validate_config(&spec.config, &hallpass_providers::TargetSecrets::new())
        .map_err(|e| invalid("invalid_target_config", format!("target {:?}: {e}", spec.name)))?;
    Ok(spec)
}

/// Checks a role and returns it in canonical form with its durations.
pub fn normalize_role(mut spec: RoleSpec) -> ApiResult<(RoleSpec, u64, u64)> {
    check_name("role", &spec.name)?;
    check_name("target", &spec.target)?;
    let name = spec.name.clone();
    let max = role_duration(&name, "max_duration", &spec.max_duration)?;
    let default = match &spec.default_duration {
        Some(text) => role_duration(&name, "default_duration", text)?,
        None => DEFAULT_DURATION_SECONDS.min(max),
    };
    if default > max {
        return Err(invalid(
            "invalid_duration",
            format!(
                "role {name:?}: default_duration {} is longer than max_duration {}",
                format_duration(default),
                format_duration(max)
            ),
        ));
    }
    spec.max_duration = format_duration(max);
    spec.default_duration = Some(format_duration(default));
    if spec.requestable_by.is_empty() {
        return Err(invalid(
            "invalid_role",
            format!("role {name:?}: requestable_by is empty, so nobody could request it; add e.g. \"group:dev\""),
        ));
    }
    spec.requestable_by = canonical_subjects(&name, "requestable_by", &spec.requestable_by)?;
    if spec.labels.len() > MAX_LABELS {
        return Err(invalid(
            "invalid_role",
            format!("role {name:?}: at most {MAX_LABELS} labels"),
        ));
    }
    spec.description = spec.description.trim().to_string();
    if let Some(flow) = &spec.approval_flow {
        check_name("approval flow", flow)?;
    }
    let ways = usize::from(spec.approval.is_some())
        + usize::from(spec.approval_flow.is_some())
        + usize::from(spec.auto_approve);
    if ways != 1 {
        let problem = if ways == 0 {
            "does not say how requests are approved"
        } else {
            "says more than once how requests are approved"
        };
        return Err(invalid(
            "invalid_role",
            format!(
                "role {name:?} {problem}: give exactly one of an approval block (approvers, required), \
                 approval_flow = \"NAME\", or auto_approve = true"
            ),
        ));
    }
    if let Some(approval) = &mut spec.approval {
        normalize_approval(&name, approval)?;
    }
    Ok((spec, default, max))
}

fn canonical_subjects(role: &str, field: &str, subjects: &[String]) -> ApiResult<Vec<String>> {
    let mut canonical: Vec<String> = parse_subjects(role, field, subjects)?
        .iter()
        .map(ToString::to_string)
        .collect();
    canonical.sort();
    canonical.dedup();
    Ok(canonical)
}

fn normalize_approval(role: &str, approval: &mut ApprovalSpec) -> ApiResult<()> {
    if approval.approvers.is_empty() {
        return Err(invalid(
            "invalid_role",
            format!("role {role:?}: approval.approvers is empty; name who may approve"),
        ));
    }
    approval.approvers = canonical_subjects(role, "approval.approvers", &approval.approvers)?;
    if approval.required == 0 || approval.required > MAX_STAGE_REQUIRED {
        return Err(invalid(
            "invalid_role",
            format!("role {role:?}: approval.required must be between 1 and {MAX_STAGE_REQUIRED}"),
        ));
    }
    Ok(())
}

fn flow_error(flow: &str, message: String) -> ApiError {
    invalid("invalid_approval_flow", format!("approval flow {flow:?}: {message}"))
}

fn flow_duration(flow: &str, field: &str, text: &str) -> ApiResult<u64> {
    parse_duration(text).map_err(|e| flow_error(flow, format!("{field}: {e}")))
}

fn flow_subjects(flow: &str, field: &str, subjects: &[String]) -> ApiResult<Vec<String>> {
    canonical_subjects(flow, field, subjects).map_err(|e| flow_error(flow, e.message))
}

/// Checks an approval flow and returns it in canonical form with its rules.
pub fn normalize_flow(mut spec: ApprovalFlowSpec) -> ApiResult<(ApprovalFlowSpec, FlowRules)> {
    check_name("approval flow", &spec.name)?;
    let name = spec.name.clone();
    spec.description = spec.description.trim().to_string();
    let ttl = match &spec.pending_ttl {
        Some(text) => flow_duration(&name, "pending_ttl", text)?,
        None => DEFAULT_PENDING_TTL_SECONDS,
    };
    spec.pending_ttl = Some(format_duration(ttl));
    if spec.stages.is_empty() {
        return Err(flow_error(
            &name,
            "has no stage; add stage { approvers = [...] }".into(),
        ));
    }
    if spec.stages.len() > MAX_STAGES {
        return Err(flow_error(
            &name,
            format!("has {} stages; at most {MAX_STAGES}", spec.stages.len()),
        ));
    }
    let mut stages = Vec::with_capacity(spec.stages.len());
    for (index, stage) in spec.stages.iter_mut().enumerate() {
        let field = |what: &str| format!("stage {}, {what}", index + 1);
        if stage.approvers.is_empty() {
            return Err(flow_error(
                &name,
                format!("{} is empty; name who may approve", field("approvers")),
            ));
        }
        stage.approvers = flow_subjects(&name, &field("approvers"), &stage.approvers)?;
        stage.escalate_to = flow_subjects(&name, &field("escalate_to"), &stage.escalate_to)?;
        if stage.required == 0 || stage.required > MAX_STAGE_REQUIRED {
            return Err(flow_error(
                &name,
                format!("{} must be between 1 and {MAX_STAGE_REQUIRED}", field("required")),
            ));
        }
        let timeout = match &stage.timeout {
            Some(text) => Some(flow_duration(&name, &field("timeout"), text)?),
            None => None,
        };
        stage.timeout = timeout.map(format_duration);
        match (timeout.is_some(), stage.escalate_to.is_empty()) {
            (true, true) => {
                return Err(flow_error(
                    &name,
                    format!(
                        "{} has no effect without escalate_to; add escalate_to or remove it",
                        field("timeout")
                    ),
                ));
            }
            (false, false) => {
                return Err(flow_error(
                    &name,
                    format!(
                        "{} needs a timeout: after how long may they approve?",
                        field("escalate_to")
                    ),
                ));
            }
            _ => {}
        }
        stages.push(StageRules {
            approvers: parse_subjects(&name, &field("approvers"), &stage.approvers)?,
            required: stage.required,
            timeout_seconds: timeout,
            escalate_to: parse_subjects(&name, &field("escalate_to"), &stage.escalate_to)?,
        });
    }
    let rules = FlowRules {
        name: Some(name),
        pending_ttl_seconds: ttl,
        stages,
        distinct_approvers: spec.distinct_approvers,
        allow_self_approval: spec.allow_self_approval,
    };
    Ok((spec, rules))
}

/// The rules of a stored (already normalised) role.
pub fn role_rules(spec: &RoleSpec) -> ApiResult<RoleRules> {
    let (spec, default, max) = normalize_role(spec.clone())?;
    let approval = match (&spec.approval, &spec.approval_flow) {
        (Some(approval), _) => RoleApproval::Inline(FlowRules::single_stage(
            parse_subjects(&spec.name, "approval.approvers", &approval.approvers)?,
            approval.required,
        )),
        (None, Some(flow)) => RoleApproval::Named(flow.clone()),
        (None, None) => RoleApproval::Auto,
    };
    Ok(RoleRules {
        name: spec.name.clone(),
        target: spec.target.clone(),
        default_duration_seconds: default,
        max_duration_seconds: max,
        requestable_by: parse_subjects(&spec.name, "requestable_by", &spec.requestable_by)?,
        approval,
        emergency_access: spec.emergency_access,
        extension_requires_approval: spec.extension_requires_approval,
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
        .filter(|key| old.get(*key) != new.get(*key))
        .cloned()
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role() -> RoleSpec {
        RoleSpec {
            name: "r".into(),
            target: "t".into(),
            description: " d ".into(),
            default_duration: None,
            max_duration: "240m".into(),
            requestable_by: vec!["group:dev".into(), "group:dev".into()],
            labels: Default::default(),
            approval: Some(ApprovalSpec {
                approvers: vec!["user:carol".into(), "group:approvers".into()],
                required: 1,
            }),
            approval_flow: None,
            auto_approve: false,
            emergency_access: false,
            extension_requires_approval: true,
        }
    }

    fn flow() -> ApprovalFlowSpec {
        ApprovalFlowSpec {
            name: "peer-then-security".into(),
            description: String::new(),
            pending_ttl: Some("120m".into()),
            stages: vec![
                hallpass_api::StageSpec {
                    approvers: vec!["group:dev-leads".into()],
                    required: 1,
                    timeout: Some("900s".into()),
                    escalate_to: vec!["group:security".into()],
                },
                hallpass_api::StageSpec {
                    approvers: vec!["group:security".into()],
                    required: 2,
                    timeout: None,
                    escalate_to: vec![],
                },
            ],
            distinct_approvers: true,
            allow_self_approval: false,
        }
    }

    #[test]
    fn flows_normalise_and_carry_their_rules() {
        let (spec, rules) = normalize_flow(flow()).unwrap();
        assert_eq!(spec.pending_ttl.as_deref(), Some("2h"));
        assert_eq!(spec.stages[0].timeout.as_deref(), Some("15m"));
        assert_eq!(rules.pending_ttl_seconds, 7200);
        assert_eq!(rules.stages[0].timeout_seconds, Some(900));
        assert_eq!(rules.total_required(), 3);
        let mut none = flow();
        none.pending_ttl = None;
        assert_eq!(
            normalize_flow(none).unwrap().1.pending_ttl_seconds,
            DEFAULT_PENDING_TTL_SECONDS
        );
    }

    #[test]
    fn broken_flows_are_refused_with_the_stage_named() {
        type Breaks = Box<dyn Fn(&mut ApprovalFlowSpec)>;
        let cases: Vec<(Breaks, &str)> = vec![
            (Box::new(|f| f.stages.clear()), "has no stage"),
            (
                Box::new(|f| f.stages[1].approvers.clear()),
                "stage 2, approvers is empty",
            ),
            (
                Box::new(|f| f.stages[1].required = 0),
                "stage 2, required must be between 1 and 100",
            ),
            (
                Box::new(|f| f.stages[0].timeout = None),
                "stage 1, escalate_to needs a timeout",
            ),
            (
                Box::new(|f| f.stages[0].escalate_to.clear()),
                "stage 1, timeout has no effect without escalate_to",
            ),
            (
                Box::new(|f| f.stages[0].timeout = Some("soon".into())),
                "stage 1, timeout",
            ),
            (
                Box::new(|f| f.stages[1].approvers = vec!["security".into()]),
                "stage 2, approvers",
            ),
            (Box::new(|f| f.pending_ttl = Some("0s".into())), "pending_ttl"),
        ];
        for (breaks, expected) in cases {
            let mut spec = flow();
            breaks(&mut spec);
            let error = normalize_flow(spec).unwrap_err();
            assert_eq!(error.code, "invalid_approval_flow", "{}", error.message);
            assert!(
                error.message.contains(expected),
                "{:?} lacks {expected:?}",
                error.message
            );
        }
    }

    #[test]
    fn roles_choose_exactly_one_way_to_approve() {
        let mut named = role();
        named.approval = None;
        named.approval_flow = Some("peer-then-security".into());
        let rules = role_rules(&named).unwrap();
        assert_eq!(rules.approval, RoleApproval::Named("peer-then-security".into()));
        let mut two = role();
        two.approval_flow = Some("x".into());
        assert!(normalize_role(two).unwrap_err().message.contains("more than once"));
        let mut none = role();
        none.approval = None;
        assert!(normalize_role(none).unwrap_err().message.contains("does not say"));
    }

    #[test]
    fn normalises_to_a_canonical_form() {
        let (spec, default, max) = normalize_role(role()).unwrap();
        assert_eq!((default, max), (3600, 14400));
        assert_eq!(spec.max_duration, "4h");
        assert_eq!(spec.default_duration.as_deref(), Some("1h"));
        assert_eq!(spec.requestable_by, vec!["group:dev"]);
        assert_eq!(spec.approval.unwrap().approvers, vec!["group:approvers", "user:carol"]);
        assert_eq!(spec.description, "d");
    }

    #[test]
    fn rejects_contradictions() {
        let mut both = role();
        both.auto_approve = true;
        assert_eq!(normalize_role(both).unwrap_err().code, "invalid_role");
        let mut long_default = role();
        long_default.default_duration = Some("5h".into());
        assert_eq!(normalize_role(long_default).unwrap_err().code, "invalid_duration");
        let mut zero = role();
        zero.approval = Some(ApprovalSpec {
            approvers: vec!["group:a".into()],
            required: 0,
        });
        assert_eq!(normalize_role(zero).unwrap_err().code, "invalid_role");
        let mut bad_subject = role();
        bad_subject.requestable_by = vec!["dev".into()];
        assert_eq!(normalize_role(bad_subject).unwrap_err().code, "invalid_subject");
    }
}
