//! `data "hallpass_target"`: one target by name (`GET /v1/targets/{name}`):
//! its type, settings, the *names* of its secrets (values are never
//! returned) and, for `ssh` targets, the CA's public key line.

use futures::future::BoxFuture;
use hallpass_api::Target;
use rmpv::Value;

use super::DataSource;
use crate::api::Api;
use crate::diag;
use crate::proto::tfplugin6::{Diagnostic, DynamicValue};
use crate::schema::{Attribute, Block, Presence, Type};
use crate::value::{Known, Object};

pub struct TargetData;

impl DataSource for TargetData {
    fn type_name(&self) -> &'static str {
        "hallpass_target"
    }

    fn schema(&self) -> Block {
        use Presence::{Computed, Required};
        let attribute = Attribute::new;
        Block {
            version: 0,
            description: "A Hallpass target, read by name, with the server's values; secrets by name only.",
            attributes: vec![
                attribute("name", Type::String, Required, "The target's name."),
                attribute("id", Type::String, Computed, "The target's name."),
                attribute("type", Type::String, Computed, "The kind of system, e.g. `ssh`."),
                attribute(
                    "config",
                    Type::Dynamic,
                    Computed,
                    "The settings as an object (`{}` for none), as in the HCL of `hallpass apply`.",
                ),
                attribute(
                    "secret_names",
                    Type::List(Box::new(Type::String)),
                    Computed,
                    "The names of the stored secrets, sorted; their values are never returned.",
                ),
                attribute(
                    "ca_public_key",
                    Type::String,
                    Computed,
                    "For an `ssh` target, the CA's public key line for sshd's `TrustedUserCAKeys`; else null.",
                ),
                attribute(
                    "created_at",
                    Type::String,
                    Computed,
                    "When the target was created (RFC 3339).",
                ),
                attribute("updated_at", Type::String, Computed, "When it last changed (RFC 3339)."),
            ],
            blocks: Vec::new(),
        }
    }

    fn validate(&self, _config: &Object) -> Vec<Diagnostic> {
        Vec::new()
    }

    fn read<'a>(&'a self, api: &'a Api, config: &'a Object) -> BoxFuture<'a, Result<DynamicValue, Vec<Diagnostic>>> {
        Box::pin(async move {
            let Ok(Known::Value(name)) = config.string("name") else {
                return Err(vec![diag::attribute_error(
                    "name",
                    "Missing target name",
                    "Name the target to read.",
                )]);
            };
            let cannot = |detail: String| vec![diag::error(format!("Cannot read target {name:?}"), detail)];
            match api.get_named::<Target>("targets", &name).await {
                Ok(Some(target)) => Ok(self.schema().encode(values(&target))),
                Ok(None) => Err(cannot(
                    "The server has no target of that name; see `hallpass target list`.".into(),
                )),
                Err(error) => Err(cannot(error.to_string())),
            }
        })
    }
}

fn values(target: &Target) -> Vec<(&'static str, Value)> {
    let mut names: Vec<&str> = target.secrets.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    vec![
        ("name", Value::from(target.name.as_str())),
        ("id", Value::from(target.name.as_str())),
        ("type", Value::from(target.target_type.as_str())),
        (
            "config",
            crate::value::dynamic_from_json(&serde_json::Value::Object(target.config.clone())),
        ),
        (
            "secret_names",
            Value::Array(names.into_iter().map(Value::from).collect()),
        ),
        (
            "ca_public_key",
            target.ca_public_key.as_deref().map_or(Value::Nil, Value::from),
        ),
        ("created_at", Value::from(target.created_at.to_rfc3339())),
        ("updated_at", Value::from(target.updated_at.to_rfc3339())),
    ]
}
