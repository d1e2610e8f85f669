//! `resource "hallpass_role"`: a role (`PUT/GET/DELETE /v1/roles/{name}`),
//! with the attribute names of `hallpass apply`'s `role` blocks.
//!
//! The server normalises what it stores (`240m` becomes `4h`, subjects are
//! sorted, a missing `description` is `""`). Terraform wants the
//! configuration's values kept, so the state holds what the configuration
//! said, and a read replaces a value only when the server's differs in
//! meaning (see [`super::role_state`]). The grant is the attribute `grant`,
//! typed `dynamic` (any object HCL writes), sent as the JSON object it is.

use futures::future::BoxFuture;
use hallpass_api::{ApprovalSpec, RoleSpec};
use rmpv::Value;

use super::role_state::{self, from_role};
use super::{Planned, Resource};
use crate::api::Api;
use crate::diag;
use crate::proto::tfplugin6::Diagnostic;
use crate::schema::{Attribute, Block, NestedBlock, Presence, Type};
use crate::value::{Known, Object, ValueError};

pub struct Role;

/// The attributes whose values are durations.
const DURATIONS: [&str; 3] = ["default_duration", "max_duration", "max_total_duration"];

fn strings() -> Type {
    Type::List(Box::new(Type::String))
}

/// The resource's schema; `data "hallpass_role"` derives its own from it.
pub fn schema() -> Block {
    Block {
        version: 0,
        description: "A Hallpass role: a requestable bundle of access on one target, as a `role` block of \
                      `hallpass apply` declares it.",
        attributes: what_and_how_long().into_iter().chain(who_and_how()).collect(),
        blocks: vec![approval_block()],
    }
}

/// Name, target and durations.
fn what_and_how_long() -> Vec<Attribute> {
    use Presence::{Computed, Optional, Required};
    let attribute = Attribute::new;
    vec![
        attribute("id", Type::String, Computed, "The role's name."),
        attribute(
            "name",
            Type::String,
            Required,
            "The role's name; changing it replaces the role.",
        ),
        attribute(
            "target",
            Type::String,
            Required,
            "The target the role grants access on.",
        ),
        attribute("description", Type::String, Optional, "Shown in `hallpass role list`."),
        attribute(
            "default_duration",
            Type::String,
            Optional,
            "Duration used when a request names none, e.g. `1h`; at most `max_duration`. The server's \
             default is 1h, or `max_duration` if shorter.",
        ),
        attribute(
            "max_duration",
            Type::String,
            Required,
            "Longest access a request (or one extension) may ask for, e.g. `4h`.",
        ),
        attribute(
            "max_total_duration",
            Type::String,
            Optional,
            "Longest a grant may last with all its extensions; at least `max_duration`. The server's \
             default is three times `max_duration`.",
        ),
    ]
}

/// Who may request it, how it is approved, what it grants.
fn who_and_how() -> Vec<Attribute> {
    use Presence::Optional;
    let attribute = Attribute::new;
    vec![
        attribute(
            "requestable_by",
            strings(),
            Presence::Required,
            "Subjects that may request the role: `user:NAME`, `group:NAME`.",
        ),
        attribute(
            "labels",
            Type::Map(Box::new(Type::String)),
            Optional,
            "Free-form strings, for grouping and for policies.",
        ),
        attribute(
            "approval_flow",
            Type::String,
            Optional,
            "Name of the approval flow requests go through. Exactly one of `approval`, `approval_flow` \
             and `auto_approve = true`.",
        ),
        attribute(
            "auto_approve",
            Type::Bool,
            Optional,
            "Grant requests at once, with no approval.",
        ),
        attribute(
            "emergency_access",
            Type::Bool,
            Optional,
            "Allow break-glass requests (`--emergency`). Default `false`.",
        ),
        attribute(
            "extension_requires_approval",
            Type::Bool,
            Optional,
            "Whether extending a grant needs approval again. Default `true`.",
        ),
        attribute(
            "grant",
            Type::Dynamic,
            Optional,
            "What the role gives on its target, by target type, as an object, exactly as in the HCL of \
             `hallpass apply`: `grant = { roles = [\"app_read\"] }`. Checked against the target's type when \
             applied.",
        ),
    ]
}

/// `approval { approvers, required }`.
fn approval_block() -> NestedBlock {
    use Presence::{Optional, Required};
    let attribute = Attribute::new;
    NestedBlock {
        name: "approval",
        block: Block {
            version: 0,
            description: "One-stage approval: `required` approvals from distinct `approvers`.",
            attributes: vec![
                attribute("approvers", strings(), Required, "Subjects who may approve."),
                attribute("required", Type::Number, Optional, "Approvals needed. Default 1."),
            ],
            blocks: Vec::new(),
        },
        list: false,
        min_items: 0,
    }
}

impl Resource for Role {
    fn type_name(&self) -> &'static str {
        "hallpass_role"
    }

    fn schema(&self) -> Block {
        schema()
    }

    fn validate(&self, config: &Object) -> Vec<Diagnostic> {
        let mut diagnostics = Vec::new();
        for name in DURATIONS {
            match config.string(name) {
                Ok(Known::Value(text)) => {
                    if let Err(error) = hallpass_core::parse_duration(&text) {
                        diagnostics.push(diag::attribute_error(name, "Invalid duration", error.to_string()));
                    }
                }
                Ok(_) => {}
                Err(error) => diagnostics.push(diag::attribute_error(name, "Invalid value", error.to_string())),
            }
        }
        match config.json("grant") {
            Ok(Known::Value(json)) => {
                if let Err(problem) = grant(json) {
                    diagnostics.push(diag::attribute_error("grant", "Invalid grant", problem));
                }
            }
            Ok(_) => {}
            Err(error) => diagnostics.push(diag::attribute_error("grant", "Invalid grant", error.to_string())),
        }
        diagnostics
    }

    fn plan(&self, prior: &Object, proposed: &Object) -> Planned {
        if proposed.is_null() {
            return Planned {
                state: Value::Nil,
                requires_replace: Vec::new(),
            };
        }
        let replace = !prior.is_null() && prior.raw("name") != proposed.raw("name");
        let mut planned = proposed.clone().with("id", proposed.raw("name"));
        // A value rewritten to the same meaning (`4h` for `240m`) keeps the
        // prior one: Terraform allows it, and there is nothing to change.
        for name in role_state::SPELLED_FREELY {
            if role_state::same_meaning(prior, proposed, name) {
                planned = planned.with(name, prior.raw(name));
            }
        }
        Planned {
            state: planned.to_value(),
            requires_replace: if replace {
                vec![diag::path(&["name"])]
            } else {
                Vec::new()
            },
        }
    }

    /// A `target` or `approval_flow` the server does not have: the apply
    /// fails unless the same run creates it first, which the provider
    /// cannot tell (its name is known at plan time either way).
    fn plan_warnings<'a>(&'a self, api: &'a Api, planned: &'a Object) -> BoxFuture<'a, Vec<Diagnostic>> {
        Box::pin(async move {
            let mut warnings = Vec::new();
            for (attribute, collection, what) in [
                ("target", "targets", "target"),
                ("approval_flow", "approval-flows", "approval flow"),
            ] {
                let Ok(Known::Value(name)) = planned.string(attribute) else {
                    continue;
                };
                // Any other answer (no permission, unreachable) says nothing.
                if let Ok(None) = api.get_named::<serde_json::Value>(collection, &name).await {
                    warnings.push(diag::attribute_warning(
                        attribute,
                        format!("No {what} {name:?} on the server"),
                        format!(
                            "The server has no {what} named {name:?}. The apply will fail unless the same run \
                             creates it before this role (e.g. a resource of this configuration that the role \
                             refers to)."
                        ),
                    ));
                }
            }
            warnings
        })
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
                let name = required(prior, "name")?;
                api.delete_role(&name)
                    .await
                    .map_err(|e| vec![diag::error(format!("Cannot delete role {name:?}"), e.to_string())])?;
                return Ok(Value::Nil);
            }
            let spec = spec(planned).map_err(|e| vec![diag::error("Unusable role configuration", e)])?;
            api.put_role(&spec)
                .await
                .map_err(|e| vec![diag::error(format!("Cannot store role {:?}", spec.name), e.to_string())])?;
            Ok(planned.to_value())
        })
    }

    fn read<'a>(&'a self, api: &'a Api, state: &'a Object) -> BoxFuture<'a, Result<Value, Vec<Diagnostic>>> {
        Box::pin(async move {
            let name = required(state, "id").or_else(|_| required(state, "name"))?;
            let role = api
                .get_role(&name)
                .await
                .map_err(|e| vec![diag::error(format!("Cannot read role {name:?}"), e.to_string())])?;
            Ok(match role {
                Some(role) => schema().object(from_role(&role, state)),
                None => Value::Nil,
            })
        })
    }

    fn import(&self, id: &str) -> Result<Value, Vec<Diagnostic>> {
        Ok(schema().object(vec![("id", Value::from(id)), ("name", Value::from(id))]))
    }
}

/// A string attribute that must be known and set.
fn required(object: &Object, name: &str) -> Result<String, Vec<Diagnostic>> {
    object
        .string(name)
        .ok()
        .and_then(Known::value)
        .ok_or_else(|| vec![diag::error("Missing value", format!("The role's {name} is not known."))])
}

/// The `grant` object of a `grant` value.
fn grant(json: serde_json::Value) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match json {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err("grant must be an object, e.g. grant = { roles = [\"app_read\"] }".into()),
    }
}

/// The role to `PUT` for a planned state (every value known).
fn spec(planned: &Object) -> Result<RoleSpec, String> {
    let text = |name: &str| planned.string(name).map(Known::value);
    let flag = |name: &str, default: bool| planned.bool(name).map(|v| v.value().unwrap_or(default));
    let error = |e: ValueError| e.to_string();
    let approval = match planned.object("approval").map_err(error)? {
        Known::Value(block) if !block.is_null() => Some(ApprovalSpec {
            approvers: block.strings("approvers").map_err(error)?.value().unwrap_or_default(),
            required: match block.integer("required").map_err(error)?.value() {
                Some(n) => u32::try_from(n).map_err(|_| format!("approval.required {n} is out of range"))?,
                None => 1,
            },
        }),
        _ => None,
    };
    Ok(RoleSpec {
        name: text("name").map_err(error)?.unwrap_or_default(),
        target: text("target").map_err(error)?.unwrap_or_default(),
        description: text("description").map_err(error)?.unwrap_or_default(),
        default_duration: text("default_duration").map_err(error)?,
        max_duration: text("max_duration").map_err(error)?.unwrap_or_default(),
        max_total_duration: text("max_total_duration").map_err(error)?,
        requestable_by: planned
            .strings("requestable_by")
            .map_err(error)?
            .value()
            .unwrap_or_default(),
        labels: planned
            .string_map("labels")
            .map_err(error)?
            .value()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        approval,
        approval_flow: text("approval_flow").map_err(error)?,
        auto_approve: flag("auto_approve", false).map_err(error)?,
        emergency_access: flag("emergency_access", false).map_err(error)?,
        extension_requires_approval: flag("extension_requires_approval", true).map_err(error)?,
        grant: match planned.json("grant").map_err(error)?.value() {
            Some(json) => grant(json)?,
            None => serde_json::Map::new(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{dynamic_from_json, to_dynamic};

    fn config(values: Vec<(&str, Value)>) -> Object {
        Object::decode(Some(&to_dynamic(&schema().object(values)))).unwrap()
    }

    #[test]
    fn bad_durations_name_their_attribute() {
        let diagnostics = Role.validate(&config(vec![
            ("max_duration", Value::from("4 hours")),
            ("default_duration", Value::from("1h")),
            ("grant", dynamic_from_json(&serde_json::json!([1]))),
        ]));
        let paths: Vec<_> = diagnostics.iter().map(|d| d.attribute.clone().unwrap()).collect();
        assert_eq!(paths, [diag::path(&["max_duration"]), diag::path(&["grant"])]);
    }

    #[test]
    fn a_spec_from_a_plan() {
        let approval = Value::Map(vec![
            (Value::from("approvers"), Value::Array(vec![Value::from("user:carol")])),
            (Value::from("required"), Value::Nil),
        ]);
        let spec = spec(&config(vec![
            ("name", Value::from("r")),
            ("max_duration", Value::from("240m")),
            ("approval", approval),
            ("grant", dynamic_from_json(&serde_json::json!({"roles": ["x"]}))),
        ]))
        .unwrap();
        assert_eq!(spec.max_duration, "240m");
        assert_eq!(spec.approval.unwrap().required, 1);
        assert!(spec.extension_requires_approval);
        assert_eq!(spec.grant["roles"][0], "x");
    }

    #[test]
    fn a_name_change_replaces() {
        let prior = config(vec![("name", Value::from("a"))]);
        let proposed = config(vec![("name", Value::from("b"))]);
        let planned = Role.plan(&prior, &proposed);
        assert_eq!(planned.requires_replace, [diag::path(&["name"])]);
        assert!(Role.plan(&proposed, &proposed).requires_replace.is_empty());
        let rewritten = Role.plan(
            &config(vec![("name", Value::from("a")), ("max_duration", Value::from("240m"))]),
            &config(vec![("name", Value::from("a")), ("max_duration", Value::from("4h"))]),
        );
        let planned = Object::decode(Some(&to_dynamic(&rewritten.state))).unwrap();
        assert_eq!(planned.string("max_duration").unwrap(), Known::Value("240m".into()));
        let deleted = Role.plan(&prior, &Object::default());
        assert_eq!(deleted.state, Value::Nil);
    }
}
