//! What targets and notifiers share: an object stored by name
//! (`PUT/GET/DELETE /v1/{collection}/{name}`) with a `type` (changing it,
//! or the name, replaces the object), its readable settings as the
//! `dynamic` attribute `config`, and its credentials as the **write-only**
//! map `secrets`. [`Configured`] is the resource for any [`Kind`]; a kind
//! gives its texts and its `hallpass-api` wire types.
//!
//! Terraform never puts a write-only value in a plan or a state: it sends
//! `secrets` only in the configuration, at validate, plan and apply. The
//! provider sends them with the `PUT` when the object is created and when
//! `secrets_version` changes; any other update leaves them out, which the
//! server reads as "keep the stored secrets" (`TargetSpec::secrets` and
//! `NotifierSpec::secrets` are `None`). Planned, applied, read and
//! imported states hold null there.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use hallpass_api::{ErrorCode, SecretInfo, WriteOnly};
use rmpv::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use super::common::{deleted, replaced, required};
use super::{Planned, Resource};
use crate::api::{Api, ApiError};
use crate::diag;
use crate::proto::tfplugin6::Diagnostic;
use crate::schema::{Attribute, Block, Presence, Type};
use crate::value::{Known, Object, ValueError, dynamic_from_json, json_meaning};

/// The words and names of one kind, for schemas and messages.
pub struct Texts {
    /// The resource's and the data source's name, e.g. `hallpass_target`.
    pub type_name: &'static str,
    /// What one is called in messages, e.g. `target`.
    pub noun: &'static str,
    /// The path segment of the API, e.g. `targets`.
    pub collection: &'static str,
    pub resource: &'static str,
    pub data_source: &'static str,
    /// Of `id`, and of `name` in the data source.
    pub id: &'static str,
    pub name: &'static str,
    pub type_: &'static str,
    /// Of `type` in the data source.
    pub data_type: &'static str,
    pub config: &'static str,
    pub secrets: &'static str,
    /// A `config` for the message when one is not an object.
    pub config_example: &'static str,
}

/// The object to `PUT`, before it takes the kind's wire type.
pub struct SpecParts {
    pub name: String,
    pub kind: String,
    pub config: Map<String, Json>,
    pub secrets: Option<BTreeMap<String, WriteOnly>>,
}

/// What the provider reads of a stored object.
pub struct StoredParts<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub config: &'a Map<String, Json>,
    pub secrets: &'a [SecretInfo],
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One kind of typed object with write-only secrets.
pub trait Kind: Send + Sync + 'static {
    /// The body of `PUT /v1/{collection}/{name}`.
    type Spec: Serialize + Send + Sync;
    /// The answer of `GET /v1/{collection}/{name}`.
    type Stored: DeserializeOwned + Send;

    const TEXTS: Texts;

    fn spec(parts: SpecParts) -> Self::Spec;

    fn stored(stored: &Self::Stored) -> StoredParts<'_>;

    /// Attributes the data source has beyond the shared ones; none by
    /// default.
    fn data_attributes() -> Vec<Attribute> {
        Vec::new()
    }

    /// The values of [`Kind::data_attributes`].
    fn data_values(_stored: &Self::Stored) -> Vec<(&'static str, Value)> {
        Vec::new()
    }
}

/// The resource of a [`Kind`].
pub struct Configured<K>(pub K);

impl<K: Kind> Configured<K> {
    pub fn schema() -> Block {
        use Presence::{Computed, Optional, Required};
        let texts = &K::TEXTS;
        let attribute = Attribute::new;
        Block {
            version: 0,
            description: texts.resource,
            attributes: vec![
                attribute("id", Type::String, Computed, texts.id),
                attribute("name", Type::String, Required, texts.name),
                attribute("type", Type::String, Required, texts.type_),
                attribute("config", Type::Dynamic, Optional, texts.config),
                attribute("secrets", Type::Map(Box::new(Type::String)), Optional, texts.secrets)
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
}

impl<K: Kind> Resource for Configured<K> {
    fn type_name(&self) -> &'static str {
        K::TEXTS.type_name
    }

    fn schema(&self) -> Block {
        Self::schema()
    }

    fn validate(&self, config: &Object) -> Vec<Diagnostic> {
        let mut diagnostics = Vec::new();
        let invalid = |detail: String| diag::attribute_error("config", "Invalid config", detail);
        match config.json("config") {
            Ok(Known::Value(json)) => {
                if let Err(problem) = settings(json, K::TEXTS.config_example) {
                    diagnostics.push(invalid(problem));
                }
            }
            Ok(_) => {}
            Err(error) => diagnostics.push(invalid(error.to_string())),
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
            let Texts { noun, collection, .. } = K::TEXTS;
            if planned.is_null() {
                let name = required(prior, "name", noun)?;
                api.delete_named(collection, &name)
                    .await
                    .map_err(|e| vec![diag::error(format!("Cannot delete {noun} {name:?}"), e.to_string())])?;
                return Ok(Value::Nil);
            }
            let send_secrets = prior.is_null() || prior.raw("secrets_version") != planned.raw("secrets_version");
            let parts = spec(planned, config, send_secrets, K::TEXTS.config_example)
                .map_err(|e| vec![diag::error(format!("Unusable {noun} configuration"), e)])?;
            let name = parts.name.clone();
            api.put_named::<_, K::Stored>(collection, &name, &K::spec(parts))
                .await
                .map_err(|e| vec![refused(&e, format!("Cannot store {noun} {name:?}"), noun)])?;
            Ok(planned.clone().with("secrets", Value::Nil).to_value())
        })
    }

    fn read<'a>(&'a self, api: &'a Api, state: &'a Object) -> BoxFuture<'a, Result<Value, Vec<Diagnostic>>> {
        Box::pin(async move {
            let Texts { noun, collection, .. } = K::TEXTS;
            let name = required(state, "id", noun).or_else(|_| required(state, "name", noun))?;
            let stored: Option<K::Stored> = api
                .get_named(collection, &name)
                .await
                .map_err(|e| vec![diag::error(format!("Cannot read {noun} {name:?}"), e.to_string())])?;
            Ok(match stored {
                None => Value::Nil,
                Some(stored) => from_stored::<K>(&K::stored(&stored), state),
            })
        })
    }

    fn import(&self, id: &str) -> Result<Value, Vec<Diagnostic>> {
        Ok(Self::schema().object(vec![("id", Value::from(id)), ("name", Value::from(id))]))
    }
}

/// The state after reading `stored`: the prior `config` while it means
/// the same as the server's settings; never a secret.
fn from_stored<K: Kind>(stored: &StoredParts<'_>, prior: &Object) -> Value {
    let server = Json::Object(stored.config.clone());
    let prior_settings = prior.json("config").ok().and_then(Known::value);
    let config = match prior_settings {
        Some(prior_settings) if prior_settings == json_meaning(&server) => prior.raw("config"),
        // An empty config reads as unset, so that an import matches a
        // configuration without `config`.
        None if stored.config.is_empty() => Value::Nil,
        _ => dynamic_from_json(&server),
    };
    Configured::<K>::schema().object(vec![
        ("id", Value::from(stored.name)),
        ("name", Value::from(stored.name)),
        ("type", Value::from(stored.kind)),
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
fn settings(json: Json, example: &str) -> Result<Map<String, Json>, String> {
    match json {
        Json::Object(map) => Ok(map),
        _ => Err(format!("config must be an object, e.g. {example}")),
    }
}

/// The object to `PUT`; `secrets` from the configuration when
/// `send_secrets` (all of them: the server keeps exactly those given).
fn spec(planned: &Object, config: &Object, send_secrets: bool, example: &str) -> Result<SpecParts, String> {
    let error = |e: ValueError| e.to_string();
    let secrets = if send_secrets {
        match config.string_map("secrets").map_err(error)? {
            Known::Value(map) => Some(map.into_iter().map(|(k, v)| (k, WriteOnly::new(v))).collect()),
            _ if config.is_null() => None,
            // Secrets removed from the configuration with a new version:
            // the server drops them all.
            _ if planned.raw("secrets_version") != Value::Nil => Some(BTreeMap::new()),
            _ => None,
        }
    } else {
        None
    };
    Ok(SpecParts {
        name: planned.string("name").map_err(error)?.value().unwrap_or_default(),
        kind: planned.string("type").map_err(error)?.value().unwrap_or_default(),
        config: match planned.json("config").map_err(error)?.value() {
            Some(json) => settings(json, example)?,
            None => Map::new(),
        },
        secrets,
    })
}

/// The server's refusal of a `PUT`, on the attribute it is about when the
/// server says which (a name, a type, settings or secrets), so that
/// Terraform points at that line.
fn refused(error: &ApiError, summary: String, noun: &str) -> Diagnostic {
    match refused_attribute(error, noun) {
        Some(attribute) => diag::attribute_error(attribute, summary, error.to_string()),
        None => diag::error(summary, error.to_string()),
    }
}

/// The attribute an error answer is about. The server's message for a
/// refused type, settings or secrets reads `<noun> "<name>": invalid
/// <type> <noun> ...: <problem>`; a problem with a secret starts by naming
/// it (`secret `x` is required`, `unknown secret `x``), one with the
/// type says `unknown <noun> type`, any other is about the settings.
fn refused_attribute(error: &ApiError, noun: &str) -> Option<&'static str> {
    let ApiError::Api { code, message, .. } = error else {
        return None;
    };
    match code {
        ErrorCode::InvalidName | ErrorCode::ReservedName => Some("name"),
        ErrorCode::UnsupportedTargetType => Some("type"),
        ErrorCode::InvalidTargetConfig | ErrorCode::InvalidNotifierConfig => {
            let unknown_type = format!("unknown {noun} type");
            let clauses = || message.split(": ").skip(1);
            Some(if clauses().any(|clause| clause.starts_with(&unknown_type)) {
                "type"
            } else if clauses().any(|clause| {
                ["secret `", "unknown secret `", "the secret `"]
                    .iter()
                    .any(|start| clause.starts_with(start))
            }) {
                "secrets"
            } else {
                "config"
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::notifier::NotifierKind;
    use super::super::target::TargetKind;
    use super::*;
    use crate::value::to_dynamic;

    fn object(values: Vec<(&str, Value)>) -> Object {
        Object::decode(Some(&to_dynamic(&Configured::<TargetKind>::schema().object(values)))).unwrap()
    }

    fn secrets() -> Value {
        Value::Map(vec![(Value::from("hmac_secret"), Value::from("whsec_x"))])
    }

    const EXAMPLE: &str = "config = { url = \"https://x\" }";

    #[test]
    fn secrets_are_never_planned_and_sent_only_on_create_or_a_new_version() {
        let config = object(vec![
            ("name", Value::from("t")),
            ("type", Value::from("webhook")),
            ("secrets", secrets()),
            ("secrets_version", Value::from("1")),
        ]);
        let planned = Configured(TargetKind).plan(&Object::default(), &config);
        let planned = Object::decode(Some(&to_dynamic(&planned.state))).unwrap();
        assert_eq!(planned.raw("secrets"), Value::Nil);
        let sent = spec(&planned, &config, true, EXAMPLE).unwrap().secrets.unwrap();
        assert_eq!(sent["hmac_secret"].expose(), "whsec_x");
        assert!(spec(&planned, &config, false, EXAMPLE).unwrap().secrets.is_none());
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
        let planned = Configured(NotifierKind).plan(&prior, &proposed);
        assert_eq!(planned.requires_replace, [diag::path(&["type"])]);
        let state = Object::decode(Some(&to_dynamic(&planned.state))).unwrap();
        assert_eq!(state.raw("config"), prior.raw("config"));
        let bad =
            Configured(NotifierKind).validate(&object(vec![("config", dynamic_from_json(&serde_json::json!("x")))]));
        assert_eq!(bad[0].attribute, Some(diag::path(&["config"])));
        assert!(
            bad[0].detail.contains("url ="),
            "the notifier's example: {}",
            bad[0].detail
        );
    }

    fn answer(code: ErrorCode, message: &str) -> ApiError {
        ApiError::Api {
            status: 400,
            code,
            message: message.into(),
        }
    }

    #[test]
    fn refusals_point_at_the_attribute_they_are_about() {
        let notifier = |problem: &str| {
            let message = format!("notifier \"n\": invalid webhook notifier: {problem}");
            refused_attribute(&answer(ErrorCode::InvalidNotifierConfig, &message), "notifier")
        };
        assert_eq!(notifier("`url` must be http:// or https://"), Some("config"));
        assert_eq!(
            notifier(
                "`url` must not hold a user name or password (it is readable); put a token in the secret `bearer_token`"
            ),
            Some("config"),
            "a settings problem that mentions a secret is still about the settings"
        );
        assert_eq!(notifier("`expiry_warning`: invalid duration \"x\""), Some("config"));
        assert_eq!(
            notifier("secret `signing_secret` is required (the key); set it in the notifier's `secrets`"),
            Some("secrets")
        );
        assert_eq!(
            notifier("unknown secret `token`; webhook notifiers take these secrets: signing_secret"),
            Some("secrets")
        );
        assert_eq!(notifier("unknown notifier type; known types: webhook"), Some("type"));
        let target = answer(
            ErrorCode::InvalidTargetConfig,
            "target \"t\": invalid webhook target settings: secret `hmac_secret` is required",
        );
        assert_eq!(refused_attribute(&target, "target"), Some("secrets"));
        let unsupported = answer(
            ErrorCode::UnsupportedTargetType,
            "target \"t\": type \"x\" is not supported",
        );
        assert_eq!(refused_attribute(&unsupported, "target"), Some("type"));
        assert_eq!(
            refused_attribute(&answer(ErrorCode::InvalidName, "bad name"), "target"),
            Some("name")
        );
        assert_eq!(
            refused_attribute(&answer(ErrorCode::Forbidden, "admins only"), "target"),
            None
        );
        let diagnostic = refused(&target, "Cannot store target \"t\"".into(), "target");
        assert_eq!(diagnostic.attribute, Some(diag::path(&["secrets"])));
        assert!(diagnostic.detail.contains("`hmac_secret` is required"));
    }
}
