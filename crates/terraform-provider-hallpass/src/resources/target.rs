//! `resource "hallpass_target"`: a target (`PUT/GET/DELETE
//! /v1/targets/{name}`), with its settings as the JSON string
//! `config` (typed `dynamic`) and its credentials as the **write-only** map `secrets`.
//!
//! Terraform never puts a write-only value in a plan or a state: it sends
//! `secrets` only in the configuration, at validate, plan and apply. The
//! provider sends them with the `PUT` when the target is created and when
//! `secrets_version` changes; any other update leaves them out, which the
//! server reads as "keep the stored secrets" (`TargetSpec::secrets` is
//! `None`). Planned, applied, read and imported states hold null there.

use futures::future::BoxFuture;
use hallpass_api::{Target, TargetSpec, WriteOnly};
use rmpv::Value;

use super::common::{deleted, replaced, required};
use super::{Planned, Resource};
use crate::api::Api;
use crate::diag;
use crate::proto::tfplugin6::Diagnostic;
use crate::schema::{Attribute, Block, Presence, Type};
use crate::value::{Known, Object, ValueError, dynamic_from_json, json_meaning};

pub struct TargetResource;

const COLLECTION: &str = "targets";

pub fn schema() -> Block {
    use Presence::{Computed, Optional, Required};
    let attribute = Attribute::new;
    Block {
        version: 0,
        description: "A Hallpass target: a system Hallpass issues credentials on, as a `target` block of \
                      `hallpass apply` declares it.",
        attributes: vec![
            attribute("id", Type::String, Computed, "The target's name."),
            attribute(
                "name",
                Type::String,
                Required,
                "The target's name; changing it replaces the target.",
            ),
            attribute(
                "type",
                Type::String,
                Required,
                "The kind of system: `postgres`, `mysql`, `redis`, `ssh`, `aws`, `jwt`, `webhook`, ...; \
                 changing it replaces the target.",
            ),
            attribute(
                "config",
                Type::Dynamic,
                Optional,
                "The type's settings as an object, as in the HCL of `hallpass apply`: \
                 `config = { host = \"db\", port = 5432 }`. Readable by anyone who may read targets; no \
                 credentials here.",
            ),
            attribute(
                "secrets",
                Type::Map(Box::new(Type::String)),
                Optional,
                "Credentials the type takes (e.g. a webhook's `hmac_secret`). Write-only: never in the plan or \
                 the state. Sent when the target is created and when `secrets_version` changes; exactly these \
                 secrets are then kept.",
            )
            .sensitive()
            .write_only(),
            attribute(
                "secrets_version",
                Type::String,
                Optional,
                "Any value (a number or a string); changing it sends `secrets` again. Without a change, an \
                 update leaves the stored secrets as they are.",
            ),
        ],
        blocks: Vec::new(),
    }
}

impl Resource for TargetResource {
    fn type_name(&self) -> &'static str {
        "hallpass_target"
    }

    fn schema(&self) -> Block {
        schema()
    }

    fn validate(&self, config: &Object) -> Vec<Diagnostic> {
        let mut diagnostics = Vec::new();
        match config.json("config") {
            Ok(Known::Value(json)) => {
                if let Err(problem) = settings(json) {
                    diagnostics.push(diag::attribute_error("config", "Invalid config", problem));
                }
            }
            Ok(_) => {}
            Err(error) => diagnostics.push(diag::attribute_error("config", "Invalid config", error.to_string())),
        }
        if let Err(error) = config.string_map("secrets") {
            diagnostics.push(diag::attribute_error("secrets", "Invalid secrets", error.to_string()));
        }
        diagnostics
    }

    fn plan(&self, prior: &Object, proposed: &Object) -> Planned {
        if proposed.is_null() {
            return deleted();
        }
        let mut planned = proposed
            .clone()
            .with("id", proposed.raw("name"))
            .with("secrets", Value::Nil);
        if same_settings(prior, proposed) {
            planned = planned.with("config", prior.raw("config"));
        }
        Planned {
            state: planned.to_value(),
            requires_replace: replaced(prior, proposed, &["name", "type"]),
        }
    }

    fn apply<'a>(
        &'a self,
        api: &'a Api,
        prior: &'a Object,
        planned: &'a Object,
        config: &'a Object,
    ) -> BoxFuture<'a, Result<Value, Vec<Diagnostic>>> {
        Box::pin(async move {
            if planned.is_null() {
                let name = required(prior, "name", "target")?;
                api.delete_named(COLLECTION, &name)
                    .await
                    .map_err(|e| vec![diag::error(format!("Cannot delete target {name:?}"), e.to_string())])?;
                return Ok(Value::Nil);
            }
            let send_secrets = prior.is_null() || prior.raw("secrets_version") != planned.raw("secrets_version");
            let spec = spec(planned, config, send_secrets)
                .map_err(|e| vec![diag::error("Unusable target configuration", e)])?;
            api.put_named::<_, Target>(COLLECTION, &spec.name, &spec)
                .await
                .map_err(|e| {
                    vec![diag::error(
                        format!("Cannot store target {:?}", spec.name),
                        e.to_string(),
                    )]
                })?;
            Ok(planned.clone().with("secrets", Value::Nil).to_value())
        })
    }

    fn read<'a>(&'a self, api: &'a Api, state: &'a Object) -> BoxFuture<'a, Result<Value, Vec<Diagnostic>>> {
        Box::pin(async move {
            let name = required(state, "id", "target").or_else(|_| required(state, "name", "target"))?;
            let target: Option<Target> = api
                .get_named(COLLECTION, &name)
                .await
                .map_err(|e| vec![diag::error(format!("Cannot read target {name:?}"), e.to_string())])?;
            Ok(match target {
                None => Value::Nil,
                Some(target) => from_target(&target, state),
            })
        })
    }

    fn import(&self, id: &str) -> Result<Value, Vec<Diagnostic>> {
        Ok(schema().object(vec![("id", Value::from(id)), ("name", Value::from(id))]))
    }
}

/// The state after reading `target`: the prior `config` while it means
/// the same as the server's settings; never a secret.
fn from_target(target: &Target, prior: &Object) -> Value {
    let server = serde_json::Value::Object(target.config.clone());
    let prior_settings = prior.json("config").ok().and_then(Known::value);
    let config = match prior_settings {
        Some(prior_settings) if prior_settings == json_meaning(&server) => prior.raw("config"),
        // An empty config reads as unset, so that an import matches a
        // configuration without `config`.
        None if target.config.is_empty() => Value::Nil,
        _ => dynamic_from_json(&server),
    };
    schema().object(vec![
        ("id", Value::from(target.name.as_str())),
        ("name", Value::from(target.name.as_str())),
        ("type", Value::from(target.target_type.as_str())),
        ("config", config),
        ("secrets_version", prior.raw("secrets_version")),
    ])
}

/// Whether both objects have a `config` meaning the same settings.
fn same_settings(a: &Object, b: &Object) -> bool {
    let parsed = |object: &Object| object.json("config").ok().and_then(Known::value);
    matches!((parsed(a), parsed(b)), (Some(a), Some(b)) if a == b)
}

/// The settings object of a `config` value.
fn settings(json: serde_json::Value) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match json {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err("config must be an object, e.g. config = { audience = \"demo\" }".into()),
    }
}

/// The target to `PUT`; `secrets` from the configuration when
/// `send_secrets` (all of them: the server keeps exactly those given).
fn spec(planned: &Object, config: &Object, send_secrets: bool) -> Result<TargetSpec, String> {
    let error = |e: ValueError| e.to_string();
    let secrets = if send_secrets {
        match config.string_map("secrets").map_err(error)? {
            Known::Value(map) => Some(map.into_iter().map(|(k, v)| (k, WriteOnly::new(v))).collect()),
            _ if config.is_null() => None,
            // Secrets removed from the configuration with a new version:
            // the server drops them all.
            _ if planned.raw("secrets_version") != Value::Nil => Some(Default::default()),
            _ => None,
        }
    } else {
        None
    };
    Ok(TargetSpec {
        name: planned.string("name").map_err(error)?.value().unwrap_or_default(),
        target_type: planned.string("type").map_err(error)?.value().unwrap_or_default(),
        config: match planned.json("config").map_err(error)?.value() {
            Some(json) => settings(json)?,
            None => serde_json::Map::new(),
        },
        secrets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::to_dynamic;

    fn object(values: Vec<(&str, Value)>) -> Object {
        Object::decode(Some(&to_dynamic(&schema().object(values)))).unwrap()
    }

    fn secrets() -> Value {
        Value::Map(vec![(Value::from("hmac_secret"), Value::from("whsec_x"))])
    }

    #[test]
    fn secrets_are_never_planned_and_sent_only_on_create_or_a_new_version() {
        let config = object(vec![
            ("name", Value::from("t")),
            ("type", Value::from("webhook")),
            ("secrets", secrets()),
            ("secrets_version", Value::from("1")),
        ]);
        let planned = TargetResource.plan(&Object::default(), &config);
        let planned = Object::decode(Some(&to_dynamic(&planned.state))).unwrap();
        assert_eq!(planned.raw("secrets"), Value::Nil);
        let sent = spec(&planned, &config, true).unwrap().secrets.unwrap();
        assert_eq!(sent["hmac_secret"].expose(), "whsec_x");
        assert!(spec(&planned, &config, false).unwrap().secrets.is_none());
    }

    #[test]
    fn name_and_type_replace_and_config_is_compared_in_meaning() {
        let prior = object(vec![
            ("name", Value::from("t")),
            ("type", Value::from("jwt")),
            (
                "config",
                dynamic_from_json(&serde_json::json!({"audience": "a", "port": 5432.0})),
            ),
        ]);
        let proposed = object(vec![
            ("name", Value::from("t")),
            ("type", Value::from("webhook")),
            (
                "config",
                dynamic_from_json(&serde_json::json!({"audience": "a", "port": 5432})),
            ),
        ]);
        let planned = TargetResource.plan(&prior, &proposed);
        assert_eq!(planned.requires_replace, [diag::path(&["type"])]);
        let state = Object::decode(Some(&to_dynamic(&planned.state))).unwrap();
        assert_eq!(state.raw("config"), prior.raw("config"));
        let bad = TargetResource.validate(&object(vec![("config", dynamic_from_json(&serde_json::json!("x")))]));
        assert_eq!(bad[0].attribute, Some(diag::path(&["config"])));
    }
}
