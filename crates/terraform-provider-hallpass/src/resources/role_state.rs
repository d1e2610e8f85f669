//! A role as the server holds it, turned into `hallpass_role` state.
//!
//! Each attribute is compared *in meaning* with the state Terraform has:
//! `240m` and `4h` are the same duration, subjects are a sorted set to the
//! server, a null `description` is `""`, a null `default_duration` is the
//! server's default. When the meaning is the same, the state's value stays
//! (Terraform requires the configuration's spelling to be kept); when it
//! differs (someone changed the role outside Terraform), the server's value
//! goes into the state and the next plan shows the difference. A value the
//! server holds at its default reads as null, so that an imported role
//! matches a configuration that leaves the default out.

use std::collections::BTreeMap;

use hallpass_api::Role;
use hallpass_core::parse_duration;
use hallpass_core::role::RoleRules;
use rmpv::Value;
use serde_json::Value as Json;

use crate::value::{Known, Object, dynamic_from_json};

/// The server's `default_duration` when a role names none, at most
/// `max_duration`.
const DEFAULT_DURATION_SECONDS: u64 = 3600;

/// The state's values after reading `role`, keeping `prior`'s values where
/// the server's mean the same.
pub fn from_role(role: &Role, prior: &Object) -> Vec<(&'static str, Value)> {
    let name = Value::from(role.name.as_str());
    let mut values = vec![("id", name.clone()), ("name", name)];
    for (attribute, server) in compared(role, prior) {
        let value = if server.prior_meaning.as_ref() == Some(&server.meaning) {
            prior.raw(attribute)
        } else {
            server.value
        };
        values.push((attribute, value));
    }
    values
}

/// One attribute as the server has it.
struct Server {
    /// What the prior state's value means (`None`: it has none).
    prior_meaning: Option<Json>,
    /// What the server's value means, comparable with `prior_meaning`.
    meaning: Json,
    /// The server's value in state form (null at the server's default).
    value: Value,
}

fn text(value: &str) -> Value {
    if value.is_empty() {
        Value::Nil
    } else {
        Value::from(value)
    }
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|item| Value::from(item.as_str())).collect())
}

/// Subjects as the server stores them: canonical spelling, sorted, once.
pub fn subject_set(items: &[String]) -> Json {
    let mut canonical: Vec<String> = items
        .iter()
        .map(|item| {
            item.parse::<hallpass_core::Subject>()
                .map_or_else(|_| item.trim().to_string(), |s| s.to_string())
        })
        .collect();
    canonical.sort();
    canonical.dedup();
    Json::from(canonical)
}

/// The attributes a plan compares in meaning rather than spelling.
pub const SPELLED_FREELY: [&str; 5] = [
    "default_duration",
    "max_duration",
    "max_total_duration",
    "requestable_by",
    "grant",
];

/// Whether `name` is set in both objects, known, and means the same in
/// each (one of [`SPELLED_FREELY`]).
pub fn same_meaning(a: &Object, b: &Object, name: &str) -> bool {
    let meaning = |object: &Object| -> Option<Json> {
        match name {
            "requestable_by" => Some(subject_set(&object.strings(name).ok()?.value()?)),
            "grant" => object.json(name).ok()?.value(),
            _ => seconds(object, name).map(Json::from),
        }
    };
    match (meaning(a), meaning(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn seconds(prior: &Object, name: &str) -> Option<u64> {
    let text = prior.string(name).ok()?.value()?;
    parse_duration(&text).ok()
}

fn compared(role: &Role, prior: &Object) -> Vec<(&'static str, Server)> {
    let mut all = vec![
        ("target", exact(prior, "target", Some(&role.target))),
        ("description", description(role, prior)),
        (
            "approval_flow",
            exact(prior, "approval_flow", role.approval_flow.as_deref()),
        ),
        ("requestable_by", requestable_by(role, prior)),
        ("labels", labels(role, prior)),
        ("approval", approval(role, prior)),
        ("grant", grant(role, prior)),
        ("auto_approve", flag(prior, "auto_approve", role.auto_approve, false)),
        (
            "emergency_access",
            flag(prior, "emergency_access", role.emergency_access, false),
        ),
        (
            "extension_requires_approval",
            flag(
                prior,
                "extension_requires_approval",
                role.extension_requires_approval,
                true,
            ),
        ),
    ];
    all.extend(durations(role, prior));
    all
}

fn exact(prior: &Object, name: &str, server: Option<&str>) -> Server {
    let prior = prior.string(name).ok().and_then(Known::value);
    Server {
        prior_meaning: Some(Json::from(prior)),
        meaning: Json::from(server.map(str::to_string)),
        value: server.map_or(Value::Nil, Value::from),
    }
}

fn description(role: &Role, prior: &Object) -> Server {
    let prior = prior.string("description").ok().and_then(Known::value);
    Server {
        prior_meaning: Some(Json::from(prior.unwrap_or_default().trim())),
        meaning: Json::from(role.description.as_str()),
        value: text(&role.description),
    }
}

fn flag(prior: &Object, name: &str, server: bool, default: bool) -> Server {
    let prior = prior.bool(name).ok().and_then(Known::value);
    Server {
        prior_meaning: Some(Json::from(prior.unwrap_or(default))),
        meaning: Json::from(server),
        value: if server == default {
            Value::Nil
        } else {
            Value::from(server)
        },
    }
}

fn requestable_by(role: &Role, prior: &Object) -> Server {
    let prior = prior.strings("requestable_by").ok().and_then(Known::value);
    Server {
        prior_meaning: prior.map(|items| subject_set(&items)),
        meaning: subject_set(&role.requestable_by),
        value: strings(&role.requestable_by),
    }
}

fn labels(role: &Role, prior: &Object) -> Server {
    let prior: BTreeMap<String, String> = prior
        .string_map("labels")
        .ok()
        .and_then(Known::value)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let value = if role.labels.is_empty() {
        Value::Nil
    } else {
        Value::Map(
            role.labels
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str())))
                .collect(),
        )
    };
    Server {
        prior_meaning: Some(serde_json::json!(prior)),
        meaning: serde_json::json!(role.labels),
        value,
    }
}

fn approval(role: &Role, prior: &Object) -> Server {
    let prior = match prior.object("approval").ok().and_then(Known::value) {
        Some(block) if !block.is_null() => {
            let approvers = block
                .strings("approvers")
                .ok()
                .and_then(Known::value)
                .unwrap_or_default();
            let required = block.integer("required").ok().and_then(Known::value).unwrap_or(1);
            serde_json::json!({"approvers": subject_set(&approvers), "required": required})
        }
        _ => Json::Null,
    };
    let (meaning, value) = match &role.approval {
        Some(approval) => (
            serde_json::json!({"approvers": subject_set(&approval.approvers), "required": approval.required}),
            Value::Map(vec![
                (Value::from("approvers"), strings(&approval.approvers)),
                (Value::from("required"), Value::from(approval.required)),
            ]),
        ),
        None => (Json::Null, Value::Nil),
    };
    Server {
        prior_meaning: Some(prior),
        meaning,
        value,
    }
}

fn grant(role: &Role, prior: &Object) -> Server {
    let prior = match prior.json("grant").ok().and_then(Known::value) {
        Some(json) => json,
        None => Json::Object(serde_json::Map::new()),
    };
    let server = Json::Object(role.grant.clone());
    let value = if role.grant.is_empty() {
        Value::Nil
    } else {
        dynamic_from_json(&server)
    };
    Server {
        prior_meaning: Some(prior),
        meaning: crate::value::json_meaning(&server),
        value,
    }
}

/// The three durations, compared in seconds; an unset one means the
/// server's default, computed from the prior `max_duration`.
fn durations(role: &Role, prior: &Object) -> Vec<(&'static str, Server)> {
    let prior_max = seconds(prior, "max_duration");
    let max_basis = prior_max.unwrap_or(role.max_duration_seconds);
    let unset = |name: &str| matches!(prior.string(name), Ok(Known::Null));
    let duration =
        |name: &str, server_seconds: u64, server_text: &str, default: Option<u64>, prior_default: Option<u64>| {
            let prior_meaning = seconds(prior, name).or(if unset(name) { prior_default } else { None });
            Server {
                prior_meaning: prior_meaning.map(Json::from),
                meaning: Json::from(server_seconds),
                value: if Some(server_seconds) == default {
                    Value::Nil
                } else {
                    Value::from(server_text)
                },
            }
        };
    vec![
        (
            "max_duration",
            duration(
                "max_duration",
                role.max_duration_seconds,
                &role.max_duration,
                None,
                None,
            ),
        ),
        (
            "default_duration",
            duration(
                "default_duration",
                role.default_duration_seconds,
                &role.default_duration,
                Some(DEFAULT_DURATION_SECONDS.min(role.max_duration_seconds)),
                Some(DEFAULT_DURATION_SECONDS.min(max_basis)),
            ),
        ),
        (
            "max_total_duration",
            duration(
                "max_total_duration",
                role.max_total_duration_seconds,
                &role.max_total_duration,
                Some(RoleRules::default_total_seconds(role.max_duration_seconds)),
                Some(RoleRules::default_total_seconds(max_basis)),
            ),
        ),
    ]
}

/// A role's values as they are, for `data "hallpass_role"`: defaults
/// spelled out, `approval` as an object.
pub fn server_values(role: &Role) -> Vec<(&'static str, Value)> {
    let approval = role.approval.as_ref().map_or(Value::Nil, |approval| {
        Value::Map(vec![
            (Value::from("approvers"), strings(&approval.approvers)),
            (Value::from("required"), Value::from(approval.required)),
        ])
    });
    let labels = role
        .labels
        .iter()
        .map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str())))
        .collect();
    vec![
        ("id", Value::from(role.name.as_str())),
        ("name", Value::from(role.name.as_str())),
        ("target", Value::from(role.target.as_str())),
        ("description", Value::from(role.description.as_str())),
        ("default_duration", Value::from(role.default_duration.as_str())),
        ("max_duration", Value::from(role.max_duration.as_str())),
        ("max_total_duration", Value::from(role.max_total_duration.as_str())),
        ("requestable_by", strings(&role.requestable_by)),
        ("labels", Value::Map(labels)),
        ("approval", approval),
        (
            "approval_flow",
            role.approval_flow.as_deref().map_or(Value::Nil, Value::from),
        ),
        ("auto_approve", Value::from(role.auto_approve)),
        ("emergency_access", Value::from(role.emergency_access)),
        (
            "extension_requires_approval",
            Value::from(role.extension_requires_approval),
        ),
        ("grant", dynamic_from_json(&Json::Object(role.grant.clone()))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::to_dynamic;

    fn role() -> Role {
        serde_json::from_value(serde_json::json!({
            "name": "r", "target": "demo", "description": "",
            "default_duration": "1h", "max_duration": "4h", "max_total_duration": "12h",
            "requestable_by": ["group:dev", "user:alice"], "labels": {},
            "approval": {"approvers": ["group:a"], "required": 1}, "approval_flow": null,
            "auto_approve": false, "emergency_access": false, "extension_requires_approval": true,
            "grant": {}, "default_duration_seconds": 3600, "max_duration_seconds": 14400,
            "max_total_duration_seconds": 43200,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    fn state(values: Vec<(&str, Value)>) -> Object {
        Object::decode(Some(&to_dynamic(&super::super::role::schema().object(values)))).unwrap()
    }

    fn value<'a>(values: &'a [(&str, Value)], name: &str) -> &'a Value {
        &values.iter().find(|(n, _)| *n == name).unwrap().1
    }

    #[test]
    fn the_configurations_spelling_stays_when_the_meaning_is_the_same() {
        let approval = Value::Map(vec![
            (Value::from("approvers"), Value::Array(vec![Value::from("group:a")])),
            (Value::from("required"), Value::Nil),
        ]);
        let prior = state(vec![
            ("max_duration", Value::from("240m")),
            (
                "requestable_by",
                Value::Array(vec![Value::from("user:alice"), Value::from("group:dev")]),
            ),
            ("approval", approval.clone()),
        ]);
        let values = from_role(&role(), &prior);
        assert_eq!(value(&values, "max_duration"), &Value::from("240m"));
        assert_eq!(value(&values, "requestable_by"), &prior.raw("requestable_by"));
        assert_eq!(value(&values, "approval"), &approval);
        for unset in [
            "description",
            "default_duration",
            "max_total_duration",
            "labels",
            "auto_approve",
        ] {
            assert_eq!(value(&values, unset), &Value::Nil, "{unset}");
        }
    }

    #[test]
    fn a_different_meaning_takes_the_servers_value() {
        let prior = state(vec![
            ("max_duration", Value::from("2h")),
            ("description", Value::from("old")),
            ("default_duration", Value::from("30m")),
        ]);
        let values = from_role(&role(), &prior);
        assert_eq!(value(&values, "max_duration"), &Value::from("4h"));
        assert_eq!(
            value(&values, "description"),
            &Value::Nil,
            "the server's empty description"
        );
        // The server's 1h is its default for a 4h maximum: null.
        assert_eq!(value(&values, "default_duration"), &Value::Nil);
    }

    #[test]
    fn an_import_reads_defaults_as_null() {
        let values = from_role(&role(), &state(vec![("id", Value::from("r"))]));
        assert_eq!(value(&values, "target"), &Value::from("demo"));
        assert_eq!(value(&values, "max_duration"), &Value::from("4h"));
        assert_eq!(value(&values, "max_total_duration"), &Value::Nil);
        assert_eq!(value(&values, "extension_requires_approval"), &Value::Nil);
        assert_eq!(value(&values, "grant"), &Value::Nil);
    }
}
