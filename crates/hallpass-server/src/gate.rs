//! Where policies meet requests: the policy input document, evaluation that
//! fails closed, the cache of the compiled policy set, and the route a
//! request (or extension) takes once the role and the policies have spoken.

use std::sync::RwLock;

use chrono::{DateTime, Datelike, Timelike, Utc};
use hallpass_core::Principal;
use hallpass_core::documents::RoleDocument;
use hallpass_core::flow::FlowRules;
use hallpass_core::request::{PolicyOutcome, PolicyRecord, Route, TerraformPlan};
use hallpass_policy::{Evaluator, PolicyModule, PolicySet};
use serde_json::{Value, json};

/// The `meta` key holding the hash of the stored policy set; changed in the
/// same transaction as any policy, so every replica sees when to recompile.
pub const POLICY_SET_HASH_KEY: &str = "policy_set_hash";

/// What is being decided, beside who asks and for which role.
#[derive(Debug, Clone)]
pub struct Asked {
    pub duration_seconds: u64,
    pub reason: String,
    pub ticket: Option<String>,
    pub emergency: bool,
    pub extension: bool,
    pub scheduled_start: Option<DateTime<Utc>>,
    /// The Terraform plan the request is for, if any.
    pub plan: Option<TerraformPlan>,
}

/// What policies are told about the role.
#[derive(Debug, Clone, Copy)]
pub struct RoleFacts<'a> {
    pub role: &'a RoleDocument,
    pub max_duration_seconds: u64,
    pub target_type: &'a str,
}

/// The document policies see as `input`.
pub fn policy_input(
    principal: &Principal,
    role: RoleFacts<'_>,
    asked: &Asked,
    now: DateTime<Utc>,
    active_grants: u64,
) -> Value {
    json!({
        "principal": {"name": principal.name, "kind": "user", "groups": principal.groups},
        "role": {
            "name": role.role.name, "target": role.role.target, "target_type": role.target_type,
            "max_duration_seconds": role.max_duration_seconds, "labels": role.role.labels,
        },
        "request": {
            "duration_seconds": asked.duration_seconds, "reason": asked.reason, "ticket": asked.ticket,
            "emergency": asked.emergency, "extension": asked.extension,
            "scheduled_start": asked.scheduled_start.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "plan": asked.plan,
        },
        "context": {
            "now": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "weekday": now.weekday().to_string(),
            "hour": now.hour(),
            "active_grants": active_grants,
        },
    })
}

/// Evaluates with `evaluator`, failing closed: an evaluation error (a rule
/// that fails, a time or memory limit) becomes a denial that carries it.
pub fn evaluate(evaluator: &Evaluator, set: &PolicySet, input: &Value) -> PolicyRecord {
    match evaluator.evaluate(set, input) {
        Ok(decision) => PolicyRecord {
            policy_hash: set.hash().to_string(),
            deny: decision.deny,
            auto_approve: decision.auto_approve,
            approval_flow: decision.approval_flow,
            max_duration_seconds: decision.max_duration_seconds,
            error: None,
        },
        Err(error) => PolicyRecord {
            policy_hash: set.hash().to_string(),
            error: Some(error.to_string()),
            ..PolicyRecord::default()
        },
    }
}

/// A flow looked up by name: found, or named but missing.
#[derive(Clone)]
pub enum FlowLookup {
    None,
    Found(FlowRules),
    Missing(String),
}

/// The route for a request or extension. `chosen` is the flow the policy
/// picked, looked up; `role_flow` the role's own. `self_service` is true
/// when approval is not needed anyway (an extension of a role that does not
/// require approval for extensions).
pub fn route(decision: &PolicyRecord, chosen: FlowLookup, role_flow: FlowLookup, self_service: bool) -> Route {
    let missing = |name: String, whose: &str| {
        Route::Deny(vec![format!(
            "{whose} approval flow {name:?} does not exist, so the request is denied; an admin must define it"
        )])
    };
    let flow = |lookup: FlowLookup, whose: &str| match lookup {
        FlowLookup::Found(flow) => Route::Flow(flow),
        FlowLookup::Missing(name) => missing(name, whose),
        FlowLookup::None => Route::Approve,
    };
    match decision.outcome() {
        PolicyOutcome::Denied => match &decision.error {
            Some(error) => Route::Deny(vec![format!("{error}; the request is denied (policies fail closed)")]),
            None => Route::Deny(decision.deny.clone()),
        },
        PolicyOutcome::AutoApproved => Route::Approve,
        _ if self_service => Route::Approve,
        // A chosen flow nobody looked up is missing: never approve for it.
        PolicyOutcome::Flow(name) => match chosen {
            FlowLookup::None => missing(name.to_string(), "the policies chose"),
            lookup => flow(lookup, "the policies chose"),
        },
        PolicyOutcome::RoleDefault => flow(role_flow, "the role's"),
    }
}

/// The compiled policy set of the store, recompiled when its hash changes.
#[derive(Default)]
pub struct PolicyCache {
    compiled: RwLock<Option<CompiledPolicies>>,
}

/// A compiled set, and whether any of its modules reads the requester's
/// grant count (`input.context.active_grants`, or the context by a
/// computed key). Only then must a request's transaction re-check that
/// count: it changes with every grant, and re-deciding on each change
/// would serialise one requester's parallel requests for nothing.
#[derive(Clone)]
pub struct CompiledPolicies {
    pub set: PolicySet,
    pub reads_grant_count: bool,
}

impl CompiledPolicies {
    pub fn new(set: PolicySet, sources: &[(String, String)]) -> Self {
        let reads_grant_count = sources
            .iter()
            .any(|(_, source)| source.contains("active_grants") || source.contains("context["));
        Self { set, reads_grant_count }
    }
}

impl PolicyCache {
    /// The cached set if it is the one with `hash`.
    pub fn get(&self, hash: &str) -> Option<CompiledPolicies> {
        let guard = self.compiled.read().ok()?;
        guard.as_ref().filter(|c| c.set.hash() == hash).cloned()
    }

    pub fn put(&self, compiled: CompiledPolicies) {
        if let Ok(mut guard) = self.compiled.write() {
            *guard = Some(compiled);
        }
    }
}

/// The hash of the empty set: what the store holds before any policy.
pub fn empty_set_hash() -> &'static str {
    static EMPTY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| hallpass_policy::set_hash(&[]));
    &EMPTY
}

/// Policy rows to modules, named by policy name.
pub fn modules(rows: &[(String, String)]) -> Vec<PolicyModule> {
    rows.iter()
        .map(|(name, source)| PolicyModule {
            name: name.clone(),
            source: source.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision() -> PolicyRecord {
        PolicyRecord::default()
    }

    fn flow(name: &str) -> FlowRules {
        let mut flow = FlowRules::single_stage(vec!["group:leads".parse().expect("subject")], 1);
        flow.name = Some(name.into());
        flow
    }

    #[test]
    fn routes_follow_deny_then_auto_then_chosen_then_role_flow() {
        let denied = PolicyRecord {
            deny: vec!["no".into()],
            auto_approve: true,
            ..decision()
        };
        assert_eq!(
            route(&denied, FlowLookup::None, FlowLookup::None, false),
            Route::Deny(vec!["no".into()])
        );
        let auto = PolicyRecord {
            auto_approve: true,
            ..decision()
        };
        assert_eq!(
            route(&auto, FlowLookup::None, FlowLookup::Found(flow("r")), false),
            Route::Approve
        );
        let chose_p = PolicyRecord {
            approval_flow: Some("p".into()),
            ..decision()
        };
        assert_eq!(
            route(
                &chose_p,
                FlowLookup::Found(flow("p")),
                FlowLookup::Found(flow("r")),
                false
            ),
            Route::Flow(flow("p"))
        );
        assert_eq!(
            route(&decision(), FlowLookup::None, FlowLookup::Found(flow("r")), false),
            Route::Flow(flow("r"))
        );
        assert_eq!(
            route(&decision(), FlowLookup::None, FlowLookup::Found(flow("r")), true),
            Route::Approve
        );
        assert_eq!(
            route(&decision(), FlowLookup::None, FlowLookup::None, false),
            Route::Approve
        );
    }

    #[test]
    fn errors_and_missing_flows_fail_closed() {
        let failed = PolicyRecord {
            error: Some("boom".into()),
            auto_approve: true,
            ..decision()
        };
        let Route::Deny(messages) = route(&failed, FlowLookup::None, FlowLookup::None, true) else {
            panic!("an evaluation error must deny");
        };
        assert!(messages[0].contains("boom"));
        let chose_x = PolicyRecord {
            approval_flow: Some("x".into()),
            ..decision()
        };
        let Route::Deny(messages) = route(&chose_x, FlowLookup::Missing("x".into()), FlowLookup::None, false) else {
            panic!("a missing flow must deny");
        };
        assert!(messages[0].contains("\"x\""));
        let Route::Deny(messages) = route(&chose_x, FlowLookup::None, FlowLookup::None, false) else {
            panic!("a chosen flow that was not looked up must deny, never approve");
        };
        assert!(messages[0].contains("\"x\""));
    }

    #[test]
    fn input_has_the_documented_shape() {
        let now = DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let role = RoleDocument {
            name: "prod-db".into(),
            target: "prod-pg".into(),
            description: String::new(),
            default_duration: None,
            max_duration: "4h".into(),
            max_total_duration: None,
            requestable_by: vec![],
            labels: [("env".to_string(), "prod".to_string())].into(),
            approval: None,
            approval_flow: None,
            auto_approve: true,
            emergency_access: false,
            extension_requires_approval: true,
            grant: Default::default(),
        };
        let asked = Asked {
            duration_seconds: 3600,
            reason: "INC-1".into(),
            ticket: Some("INC-1".into()),
            emergency: false,
            extension: false,
            scheduled_start: None,
            plan: None,
        };
        let principal = Principal {
            name: "alice".into(),
            groups: vec!["dev".into()],
        };
        let facts = RoleFacts {
            role: &role,
            max_duration_seconds: 14400,
            target_type: "postgres",
        };
        let input = policy_input(&principal, facts, &asked, now, 1);
        let documented = hallpass_doc_examples::example("policies.md", "## The input", "json");
        let documented: serde_json::Value = serde_json::from_str(&documented).expect("the documented input is JSON");
        assert_eq!(input, documented, "docs/policies.md shows the input policies get");
    }
}
