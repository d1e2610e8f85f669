//! `data "hallpass_target"` and `data "hallpass_notifier"`: one object of a
//! [`Kind`] by name (`GET /v1/{collection}/{name}`): its type, settings,
//! the *names* of its secrets (values are never returned), and what the
//! kind adds (a target's CA public key).

use futures::future::BoxFuture;
use rmpv::Value;

use super::DataSource;
use crate::api::Api;
use crate::diag;
use crate::proto::tfplugin6::{Diagnostic, DynamicValue};
use crate::resources::configured::{Kind, Texts};
use crate::schema::{Attribute, Block, Presence, Type};
use crate::value::{Known, Object, dynamic_from_json};

/// The data source of a [`Kind`].
pub struct ConfiguredData<K>(pub K);

impl<K: Kind> DataSource for ConfiguredData<K> {
    fn type_name(&self) -> &'static str {
        K::TEXTS.type_name
    }

    fn schema(&self) -> Block {
        use Presence::{Computed, Required};
        let texts = &K::TEXTS;
        let attribute = Attribute::new;
        let mut attributes = vec![
            attribute("name", Type::String, Required, texts.id),
            attribute("id", Type::String, Computed, texts.id),
            attribute("type", Type::String, Computed, texts.data_type),
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
            attribute("created_at", Type::String, Computed, "When it was created (RFC 3339)."),
            attribute("updated_at", Type::String, Computed, "When it last changed (RFC 3339)."),
        ];
        attributes.extend(K::data_attributes());
        Block {
            version: 0,
            description: texts.data_source,
            attributes,
            blocks: Vec::new(),
        }
    }

    fn validate(&self, _config: &Object) -> Vec<Diagnostic> {
        Vec::new()
    }

    fn read<'a>(&'a self, api: &'a Api, config: &'a Object) -> BoxFuture<'a, Result<DynamicValue, Vec<Diagnostic>>> {
        Box::pin(async move {
            let Texts { noun, collection, .. } = K::TEXTS;
            let Ok(Known::Value(name)) = config.string("name") else {
                return Err(vec![diag::attribute_error(
                    "name",
                    format!("Missing {noun} name"),
                    format!("Name the {noun} to read."),
                )]);
            };
            let cannot = |detail: String| vec![diag::error(format!("Cannot read {noun} {name:?}"), detail)];
            match api.get_named::<K::Stored>(collection, &name).await {
                Ok(Some(stored)) => Ok(self.schema().encode(values::<K>(&stored))),
                Ok(None) => Err(cannot(format!(
                    "The server has no {noun} of that name; see `hallpass {noun} list`."
                ))),
                Err(error) => Err(cannot(error.to_string())),
            }
        })
    }
}

fn values<K: Kind>(stored: &K::Stored) -> Vec<(&'static str, Value)> {
    let parts = K::stored(stored);
    let mut names: Vec<&str> = parts.secrets.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    let mut values = vec![
        ("name", Value::from(parts.name)),
        ("id", Value::from(parts.name)),
        ("type", Value::from(parts.kind)),
        (
            "config",
            dynamic_from_json(&serde_json::Value::Object(parts.config.clone())),
        ),
        (
            "secret_names",
            Value::Array(names.into_iter().map(Value::from).collect()),
        ),
        ("created_at", Value::from(parts.created_at.to_rfc3339())),
        ("updated_at", Value::from(parts.updated_at.to_rfc3339())),
    ];
    values.extend(K::data_values(stored));
    values
}
