//! Validation and normalisation of targets and roles, and the diff behind
//! `hallpass apply`.
//!
//! Specs are normalised before they are stored (durations in their shortest
//! form, subjects re-printed, defaults filled in) so that applying the same
//! file twice, or `60m` after `1h`, is recognised as "unchanged".

use hallpass_api::{ApprovalSpec, RoleSpec, TargetSpec};
use hallpass_core::request::{ApprovalRule, RoleRules};
use hallpass_core::subject::is_valid_name;
use hallpass_core::{Subject, format_duration, parse_duration};
use hallpass_providers::Registry;

use crate::error::{ApiError, ApiResult};

/// Default duration when a role names none: one hour, or less if the role's
/// maximum is shorter. Short by default is the safe side.
const DEFAULT_DURATION_SECONDS: u64 = 3600;
const MAX_APPROVALS: u32 = 100;
const MAX_LABELS: usize = 64;

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
        .validate_config(&spec.config)
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
    match (&mut spec.approval, spec.auto_approve) {
        (Some(_), true) => {
            return Err(invalid(
                "invalid_role",
                format!("role {name:?}: set either auto_approve = true or an approval block, not both"),
            ));
        }
        (None, false) => {
            return Err(invalid(
                "invalid_role",
                format!("role {name:?}: add an approval block (approvers, required) or set auto_approve = true"),
            ));
        }
        (Some(approval), false) => normalize_approval(&name, approval)?,
        (None, true) => {}
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
    if approval.required == 0 || approval.required > MAX_APPROVALS {
        return Err(invalid(
            "invalid_role",
            format!("role {role:?}: approval.required must be between 1 and {MAX_APPROVALS}"),
        ));
    }
    Ok(())
}

/// The rules of a stored (already normalised) role.
pub fn role_rules(spec: &RoleSpec) -> ApiResult<RoleRules> {
    let (spec, default, max) = normalize_role(spec.clone())?;
    let approval = match &spec.approval {
        Some(approval) => ApprovalRule::Required {
            approvers: parse_subjects(&spec.name, "approval.approvers", &approval.approvers)?,
            required: approval.required,
        },
        None => ApprovalRule::Auto,
    };
    Ok(RoleRules {
        name: spec.name.clone(),
        target: spec.target.clone(),
        default_duration_seconds: default,
        max_duration_seconds: max,
        requestable_by: parse_subjects(&spec.name, "requestable_by", &spec.requestable_by)?,
        approval,
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
            auto_approve: false,
        }
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
