//! `resource "hallpass_approval_flow"`: a multi-stage approval flow
//! (`PUT/GET/DELETE /v1/approval-flows/{name}`), with the attribute names
//! of `hallpass apply`'s `approval_flow` blocks and one `stage` block per
//! stage, in order.
//!
//! As for roles, the state keeps the configuration's spelling: a plan or a
//! read compares the whole flow *in meaning* (durations in seconds,
//! subjects as sorted sets, defaults filled in) and keeps the prior state
//! when nothing differs; otherwise the server's values go into the state.

use futures::future::BoxFuture;
use hallpass_api::{ApprovalFlow, ApprovalFlowSpec, StageSpec};
use hallpass_core::flow::{check_stage, check_stage_count};
use rmpv::Value;
use serde_json::{Value as Json, json};

use super::common::{self, deleted, replaced, required, seconds, strings_or_null, text_or_null};
use super::role_state::subject_set;
use super::{Planned, Resource};
use crate::api::Api;
use crate::diag;
use crate::proto::tfplugin6::Diagnostic;
use crate::schema::{Attribute, Block, NestedBlock, Presence, Type};
use crate::value::{Known, Object, ValueError};

pub struct ApprovalFlowResource;

/// The server's `pending_ttl` when a flow names none.
const DEFAULT_PENDING_TTL_SECONDS: u64 = 24 * 3600;
const COLLECTION: &str = "approval-flows";

fn strings() -> Type {
    Type::List(Box::new(Type::String))
}

pub fn schema() -> Block {
    use Presence::{Computed, Optional, Required};
    let attribute = Attribute::new;
    Block {
        version: 0,
        description: "A Hallpass approval flow: ordered approval stages a role's requests go through, as an \
                      `approval_flow` block of `hallpass apply` declares it.",
        attributes: vec![
            attribute("id", Type::String, Computed, "The flow's name."),
            attribute(
                "name",
                Type::String,
                Required,
                "The flow's name, as roles' `approval_flow` names it; changing it replaces the flow.",
            ),
            attribute("description", Type::String, Optional, "Shown with the flow."),
            attribute(
                "pending_ttl",
                Type::String,
                Optional,
                "A request still pending this long after it was made times out, e.g. `2h`. Default `24h`.",
            ),
            attribute(
                "distinct_approvers",
                Type::Bool,
                Optional,
                "One person's approval counts in one stage only. Default `true`.",
            ),
            attribute(
                "allow_self_approval",
                Type::Bool,
                Optional,
                "Whether requesters may approve their own requests. Default `false`.",
            ),
        ],
        blocks: vec![stage_block()],
    }
}

fn stage_block() -> NestedBlock {
    use Presence::{Optional, Required};
    let attribute = Attribute::new;
    NestedBlock {
        name: "stage",
        block: Block {
            version: 0,
            description: "One approval stage; at least one, at most 10, run in the order written.",
            attributes: vec![
                attribute(
                    "approvers",
                    strings(),
                    Required,
                    "Subjects who may approve this stage: `user:NAME`, `group:NAME`.",
                ),
                attribute(
                    "required",
                    Type::Number,
                    Optional,
                    "Distinct approvals the stage needs, 1 to 100. Default 1.",
                ),
                attribute(
                    "timeout",
                    Type::String,
                    Optional,
                    "How long after the stage opens `escalate_to` may approve it too, e.g. `15m`. Given if and \
                     only if `escalate_to` is.",
                ),
                attribute(
                    "escalate_to",
                    strings(),
                    Optional,
                    "Subjects who may approve the stage once `timeout` has passed.",
                ),
            ],
            blocks: Vec::new(),
        },
        list: true,
        min_items: 1,
    }
}

impl Resource for ApprovalFlowResource {
    fn type_name(&self) -> &'static str {
        "hallpass_approval_flow"
    }

    fn schema(&self) -> Block {
        schema()
    }

    fn validate(&self, config: &Object) -> Vec<Diagnostic> {
        let mut diagnostics = Vec::new();
        if let Some(problem) = common::duration_problem(config, "pending_ttl") {
            diagnostics.push(diag::attribute_error("pending_ttl", "Invalid duration", problem));
        }
        if let Ok(Known::Value(stages)) = config.objects("stage") {
            if let Err(problem) = check_stage_count(stages.len()) {
                diagnostics.push(diag::attribute_error(
                    "stage",
                    "Invalid stages",
                    format!("The flow {problem}."),
                ));
            }
            for (index, stage) in stages.iter().enumerate() {
                diagnostics.extend(validate_stage(index, stage));
            }
        }
        diagnostics
    }

    fn plan(&self, prior: &Object, proposed: &Object) -> Planned {
        if proposed.is_null() {
            return deleted();
        }
        // The same flow written differently (`120m` for `2h`) keeps the
        // prior state: there is nothing to change.
        let state = match (meaning(prior), meaning(proposed)) {
            (Some(a), Some(b)) if a == b => prior.to_value(),
            _ => proposed.clone().with("id", proposed.raw("name")).to_value(),
        };
        Planned {
            state,
            requires_replace: replaced(prior, proposed, &["name"]),
        }
    }

    fn apply<'a>(
        &'a self,
        api: &'a Api,
        prior: &'a Object,
        planned: &'a Object,
        _config: &'a Object,
    ) -> BoxFuture<'a, Result<Value, Vec<Diagnostic>>> {
        Box::pin(async move {
            if planned.is_null() {
                let name = required(prior, "name", "approval flow")?;
                api.delete_named(COLLECTION, &name).await.map_err(|e| {
                    vec![diag::error(
                        format!("Cannot delete approval flow {name:?}"),
                        e.to_string(),
                    )]
                })?;
                return Ok(Value::Nil);
            }
            let spec = spec(planned).map_err(|e| vec![diag::error("Unusable approval flow configuration", e)])?;
            api.put_named::<_, ApprovalFlow>(COLLECTION, &spec.name, &spec)
                .await
                .map_err(|e| {
                    vec![diag::error(
                        format!("Cannot store approval flow {:?}", spec.name),
                        e.to_string(),
                    )]
                })?;
            Ok(planned.to_value())
        })
    }

    fn read<'a>(&'a self, api: &'a Api, state: &'a Object) -> BoxFuture<'a, Result<Value, Vec<Diagnostic>>> {
        Box::pin(async move {
            let name = required(state, "id", "approval flow").or_else(|_| required(state, "name", "approval flow"))?;
            let flow: Option<ApprovalFlow> = api.get_named(COLLECTION, &name).await.map_err(|e| {
                vec![diag::error(
                    format!("Cannot read approval flow {name:?}"),
                    e.to_string(),
                )]
            })?;
            Ok(match flow {
                None => Value::Nil,
                Some(flow) if meaning(state) == Some(flow_meaning(&flow)) => state.to_value(),
                Some(flow) => from_flow(&flow),
            })
        })
    }

    fn import(&self, id: &str) -> Result<Value, Vec<Diagnostic>> {
        Ok(schema().object(vec![("id", Value::from(id)), ("name", Value::from(id))]))
    }
}

fn validate_stage(index: usize, stage: &Object) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let at = |attribute: &str| diag::element_path("stage", index, attribute);
    if let Some(problem) = common::duration_problem(stage, "timeout") {
        diagnostics.push(diag::path_error(at("timeout"), "Invalid duration", problem));
    }
    let count = |name: &str| match stage.strings(name) {
        Ok(Known::Value(items)) => Some(items.len()),
        Ok(Known::Null) => Some(0),
        _ => None,
    };
    let required = match stage.integer("required") {
        Ok(Known::Value(n)) => u32::try_from(n).ok().or(Some(0)),
        Ok(Known::Null) => Some(1),
        _ => None,
    };
    let timeout = match stage.string("timeout") {
        Ok(Known::Unknown) | Err(_) => None,
        Ok(known) => Some(known.value().is_some()),
    };
    if let (Some(approvers), Some(required), Some(timeout), Some(escalate_to)) =
        (count("approvers"), required, timeout, count("escalate_to"))
        && let Err(problem) = check_stage(approvers, required, timeout, escalate_to)
    {
        let attribute = match problem {
            hallpass_core::flow::FlowProblem::NoApprovers => "approvers",
            hallpass_core::flow::FlowProblem::RequiredOutOfRange => "required",
            hallpass_core::flow::FlowProblem::TimeoutWithoutEscalation => "timeout",
            _ => "escalate_to",
        };
        diagnostics.push(diag::path_error(at(attribute), "Invalid stage", problem.to_string()));
    }
    diagnostics
}

/// What a flow means, defaults filled in; `None` when some of it is not
/// known or set (no stages yet: an import's stub).
fn meaning(object: &Object) -> Option<Json> {
    if object.is_null() || object.has_unknowns() {
        return None;
    }
    let stages = object.objects("stage").ok()?.value()?;
    let stages: Vec<Json> = stages
        .iter()
        .map(|stage| {
            json!({
                "approvers": subject_set(&stage.strings("approvers").ok()?.value().unwrap_or_default()),
                "required": stage.integer("required").ok()?.value().unwrap_or(1),
                "timeout": seconds(stage, "timeout"),
                "escalate_to": subject_set(&stage.strings("escalate_to").ok()?.value().unwrap_or_default()),
            })
            .into()
        })
        .collect::<Option<_>>()?;
    Some(json!({
        "name": object.string("name").ok()?.value(),
        "description": object.string("description").ok()?.value().unwrap_or_default().trim(),
        "pending_ttl": seconds(object, "pending_ttl").unwrap_or(DEFAULT_PENDING_TTL_SECONDS),
        "distinct_approvers": object.bool("distinct_approvers").ok()?.value().unwrap_or(true),
        "allow_self_approval": object.bool("allow_self_approval").ok()?.value().unwrap_or(false),
        "stages": stages,
    }))
}

fn flow_meaning(flow: &ApprovalFlow) -> Json {
    let stages: Vec<Json> = flow
        .stages
        .iter()
        .map(|stage| {
            json!({
                "approvers": subject_set(&stage.approvers),
                "required": stage.required,
                "timeout": stage.timeout.as_deref().and_then(|t| hallpass_core::parse_duration(t).ok()),
                "escalate_to": subject_set(&stage.escalate_to),
            })
        })
        .collect();
    json!({
        "name": flow.name,
        "description": flow.description,
        "pending_ttl": flow.pending_ttl_seconds,
        "distinct_approvers": flow.distinct_approvers,
        "allow_self_approval": flow.allow_self_approval,
        "stages": stages,
    })
}

/// The state for a flow as the server has it (defaults as null).
fn from_flow(flow: &ApprovalFlow) -> Value {
    let stage_block = stage_block().block;
    let stages = flow
        .stages
        .iter()
        .map(|stage| {
            stage_block.object(vec![
                (
                    "approvers",
                    Value::Array(stage.approvers.iter().map(|s| Value::from(s.as_str())).collect()),
                ),
                (
                    "required",
                    if stage.required == 1 {
                        Value::Nil
                    } else {
                        Value::from(stage.required)
                    },
                ),
                ("timeout", stage.timeout.as_deref().map_or(Value::Nil, Value::from)),
                ("escalate_to", strings_or_null(&stage.escalate_to)),
            ])
        })
        .collect();
    let pending_ttl = if flow.pending_ttl_seconds == DEFAULT_PENDING_TTL_SECONDS {
        Value::Nil
    } else {
        Value::from(flow.pending_ttl.as_str())
    };
    schema().object(vec![
        ("id", Value::from(flow.name.as_str())),
        ("name", Value::from(flow.name.as_str())),
        ("description", text_or_null(&flow.description)),
        ("pending_ttl", pending_ttl),
        (
            "distinct_approvers",
            if flow.distinct_approvers {
                Value::Nil
            } else {
                Value::from(false)
            },
        ),
        (
            "allow_self_approval",
            if flow.allow_self_approval {
                Value::from(true)
            } else {
                Value::Nil
            },
        ),
        ("stage", Value::Array(stages)),
    ])
}

/// The flow to `PUT` for a planned state (every value known).
fn spec(planned: &Object) -> Result<ApprovalFlowSpec, String> {
    let error = |e: ValueError| e.to_string();
    let mut stages = Vec::new();
    for stage in planned.objects("stage").map_err(error)?.value().unwrap_or_default() {
        let required = stage.integer("required").map_err(error)?.value().unwrap_or(1);
        stages.push(StageSpec {
            approvers: stage.strings("approvers").map_err(error)?.value().unwrap_or_default(),
            required: u32::try_from(required).map_err(|_| format!("stage required {required} is out of range"))?,
            timeout: stage.string("timeout").map_err(error)?.value(),
            escalate_to: stage.strings("escalate_to").map_err(error)?.value().unwrap_or_default(),
        });
    }
    Ok(ApprovalFlowSpec {
        name: planned.string("name").map_err(error)?.value().unwrap_or_default(),
        description: planned
            .string("description")
            .map_err(error)?
            .value()
            .unwrap_or_default(),
        pending_ttl: planned.string("pending_ttl").map_err(error)?.value(),
        stages,
        distinct_approvers: planned
            .bool("distinct_approvers")
            .map_err(error)?
            .value()
            .unwrap_or(true),
        allow_self_approval: planned
            .bool("allow_self_approval")
            .map_err(error)?
            .value()
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::to_dynamic;

    fn object(values: Vec<(&str, Value)>) -> Object {
        Object::decode(Some(&to_dynamic(&schema().object(values)))).unwrap()
    }

    fn stage(values: Vec<(&str, Value)>) -> Value {
        stage_block().block.object(values)
    }

    fn approvers(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::from(*s)).collect())
    }

    #[test]
    fn stage_problems_point_into_the_stage() {
        let config = object(vec![
            ("pending_ttl", Value::from("two hours")),
            (
                "stage",
                Value::Array(vec![
                    stage(vec![("approvers", approvers(&["group:a"]))]),
                    stage(vec![
                        ("approvers", approvers(&["group:a"])),
                        ("timeout", Value::from("15m")),
                    ]),
                ]),
            ),
        ]);
        let diagnostics = ApprovalFlowResource.validate(&config);
        let paths: Vec<_> = diagnostics.iter().map(|d| d.attribute.clone().unwrap()).collect();
        assert_eq!(
            paths,
            [diag::path(&["pending_ttl"]), diag::element_path("stage", 1, "timeout")]
        );
    }

    #[test]
    fn a_respelled_flow_plans_no_change_and_specs_fill_defaults() {
        let flow = |ttl: &str, who: &[&str]| {
            object(vec![
                ("name", Value::from("f")),
                ("pending_ttl", Value::from(ttl)),
                ("stage", Value::Array(vec![stage(vec![("approvers", approvers(who))])])),
            ])
        };
        let prior = flow("120m", &["user:a", "group:b"]).with("id", Value::from("f"));
        let planned = ApprovalFlowResource.plan(&prior, &flow("2h", &["group:b", "user:a"]));
        assert_eq!(planned.state, prior.to_value());
        let changed = ApprovalFlowResource.plan(&prior, &flow("3h", &["group:b"]));
        assert_ne!(changed.state, prior.to_value());
        let spec = spec(&prior).unwrap();
        assert_eq!(spec.stages[0].required, 1);
        assert!(spec.distinct_approvers);
    }
}
