//! `resource "hallpass_policy"`: one Rego module of the policy set
//! (`PUT/GET/DELETE /v1/policies/{name}`).
//!
//! `terraform validate` compiles the module on its own with the server's
//! own compiler (`hallpass-policy`): Rego that does not parse is an error
//! on `source`, with the line and column. Anything else the lone module
//! fails on (say, a call to a function another module defines) is only a
//! warning, since the server compiles it together with the stored
//! policies; a module the server refuses fails the apply with the server's
//! message, also on `source`.

use futures::future::BoxFuture;
use hallpass_api::{ErrorCode, Policy, PolicyBody};
use hallpass_policy::{PolicyModule, PolicySet};
use rmpv::Value;
use sha2::{Digest, Sha256};

use super::common::{deleted, replaced, required};
use super::{Planned, Resource};
use crate::api::{Api, ApiError};
use crate::diag;
use crate::proto::tfplugin6::Diagnostic;
use crate::schema::{Attribute, Block, Presence, Type};
use crate::value::{Known, Object};

pub struct PolicyResource;

const COLLECTION: &str = "policies";

pub fn schema() -> Block {
    use Presence::{Computed, Required};
    let attribute = Attribute::new;
    Block {
        version: 0,
        description: "A Hallpass policy: one Rego module (package under `hallpass`) of the set the server \
                      evaluates for every request.",
        attributes: vec![
            attribute("id", Type::String, Computed, "The policy's name."),
            attribute(
                "name",
                Type::String,
                Required,
                "The module's name; changing it replaces the policy.",
            ),
            attribute(
                "source",
                Type::String,
                Required,
                "The Rego text, e.g. `file(\"${path.module}/oncall.rego\")`. Rego v1; the package must be \
                 under `hallpass`, e.g. `package hallpass.request`.",
            ),
            attribute(
                "source_hash",
                Type::String,
                Computed,
                "Hex SHA-256 of `source`, as the server reports it.",
            ),
        ],
        blocks: Vec::new(),
    }
}

/// The server's hash of a source.
fn source_hash(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

impl Resource for PolicyResource {
    fn type_name(&self) -> &'static str {
        "hallpass_policy"
    }

    fn schema(&self) -> Block {
        schema()
    }

    fn validate(&self, config: &Object) -> Vec<Diagnostic> {
        let Ok(Known::Value(source)) = config.string("source") else {
            return Vec::new();
        };
        let name = config
            .string("name")
            .ok()
            .and_then(Known::value)
            .unwrap_or_else(|| "policy".into());
        check_source(&name, &source).into_iter().collect()
    }

    fn plan(&self, prior: &Object, proposed: &Object) -> Planned {
        if proposed.is_null() {
            return deleted();
        }
        let hash = match proposed.string("source") {
            Ok(Known::Value(source)) => Value::from(source_hash(&source)),
            _ => Value::Ext(0, vec![0]),
        };
        Planned {
            state: proposed
                .clone()
                .with("id", proposed.raw("name"))
                .with("source_hash", hash)
                .to_value(),
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
                let name = required(prior, "name", "policy")?;
                api.delete_named(COLLECTION, &name)
                    .await
                    .map_err(|e| vec![diag::error(format!("Cannot delete policy {name:?}"), e.to_string())])?;
                return Ok(Value::Nil);
            }
            let name = required(planned, "name", "policy")?;
            let source = required(planned, "source", "policy")?;
            let stored: Policy = api
                .put_named(COLLECTION, &name, &PolicyBody { source })
                .await
                .map_err(|e| vec![refusal(&name, &e)])?;
            Ok(planned
                .clone()
                .with("source_hash", Value::from(stored.source_hash))
                .to_value())
        })
    }

    fn read<'a>(&'a self, api: &'a Api, state: &'a Object) -> BoxFuture<'a, Result<Value, Vec<Diagnostic>>> {
        Box::pin(async move {
            let name = required(state, "id", "policy").or_else(|_| required(state, "name", "policy"))?;
            let policy: Option<Policy> = api
                .get_named(COLLECTION, &name)
                .await
                .map_err(|e| vec![diag::error(format!("Cannot read policy {name:?}"), e.to_string())])?;
            Ok(match policy {
                None => Value::Nil,
                Some(policy) => schema().object(vec![
                    ("id", Value::from(policy.name.as_str())),
                    ("name", Value::from(policy.name.as_str())),
                    ("source", Value::from(policy.source)),
                    ("source_hash", Value::from(policy.source_hash)),
                ]),
            })
        })
    }

    fn import(&self, id: &str) -> Result<Value, Vec<Diagnostic>> {
        Ok(schema().object(vec![("id", Value::from(id)), ("name", Value::from(id))]))
    }
}

/// The server's refusal of a module: on `source` when it is about the
/// Rego (the message has the line and column).
fn refusal(name: &str, error: &ApiError) -> Diagnostic {
    let summary = format!("Cannot store policy {name:?}");
    match error {
        ApiError::Api {
            code: ErrorCode::PolicyCompileError | ErrorCode::InvalidPolicy | ErrorCode::PolicyError,
            ..
        } => diag::attribute_error("source", summary, error.to_string()),
        _ => diag::error(summary, error.to_string()),
    }
}

/// What is wrong with a module compiled alone: an error when it does not
/// parse, a warning for what other policies might make right.
fn check_source(name: &str, source: &str) -> Option<Diagnostic> {
    if source.trim().is_empty() {
        return Some(diag::attribute_error(
            "source",
            "Empty policy",
            "Give the policy Rego source.",
        ));
    }
    let module = PolicyModule {
        name: name.to_string(),
        source: source.to_string(),
    };
    let problem = PolicySet::compile(&[module]).err()?.to_string();
    let mut parser = regorus::Engine::new();
    parser.set_rego_v0(false);
    Some(if parser.add_policy(name.to_string(), source.to_string()).is_err() {
        diag::attribute_error("source", "Invalid Rego", problem)
    } else {
        diag::attribute_warning(
            "source",
            "The policy does not compile on its own",
            format!(
                "{problem}. The server compiles it with the other stored policies and refuses it at apply if \
                 the whole set does not compile."
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tfplugin6::diagnostic::Severity;

    const GOOD: &str = "package hallpass.request\n\nimport rego.v1\n\ndeny contains \"no\" if input.x\n";

    #[test]
    fn a_syntax_error_is_an_error_at_source_with_its_place() {
        let diagnostic = check_source("p", "package hallpass.request\n\ndeny contains if {\n").unwrap();
        assert_eq!(diagnostic.severity, i32::from(Severity::Error));
        assert_eq!(diagnostic.attribute, Some(diag::path(&["source"])));
        assert!(diagnostic.detail.starts_with("p:"), "{}", diagnostic.detail);
        assert!(check_source("p", GOOD).is_none());
    }

    #[test]
    fn a_wrong_package_is_only_a_warning_and_hashes_match_the_servers() {
        let diagnostic = check_source("p", "package other\n\nimport rego.v1\n\nx := 1\n").unwrap();
        assert_eq!(diagnostic.severity, i32::from(Severity::Warning));
        assert_eq!(source_hash("").len(), 64);
    }
}
