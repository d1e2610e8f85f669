//! `resource "hallpass_token"`: a bearer token for a service principal
//! (`POST /v1/tokens` to create, `DELETE /v1/tokens/{id}` to revoke).
//!
//! The server shows a token's secret once, in the answer to its creation:
//! the provider keeps it in the (sensitive) `token` attribute. A token
//! cannot change, so every configured attribute forces a new one, and it
//! cannot be imported (its secret cannot be read back). A refresh finds a
//! token revoked or expired outside Terraform gone, and the next plan
//! creates a new one.

use chrono::Utc;
use futures::future::BoxFuture;
use hallpass_api::{CreateToken, CreatedToken, TokenInfo};
use rmpv::Value;

use super::common::{self, deleted, replaced, required};
use super::{Planned, Resource};
use crate::api::Api;
use crate::diag;
use crate::proto::tfplugin6::Diagnostic;
use crate::schema::{Attribute, Block, Presence, Type};
use crate::value::{Object, ValueError};

pub struct TokenResource;

/// What the configuration sets; a change of any replaces the token.
const CONFIGURED: [&str; 3] = ["principal", "groups", "ttl"];
/// What the server decides at creation.
const DECIDED: [&str; 4] = ["id", "token", "created_at", "expires_at"];

pub fn schema() -> Block {
    use Presence::{Computed, Optional, Required};
    let attribute = Attribute::new;
    Block {
        version: 0,
        description: "A Hallpass bearer token for a service principal (a pipeline, a bot). Every change \
                      replaces it: a new token is made and the old one revoked.",
        attributes: vec![
            attribute(
                "principal",
                Type::String,
                Required,
                "The principal the token acts as, e.g. `ci-deploy`; not one of Hallpass's own names \
                 (`hallpass`, `policy`, `system`, `bootstrap`, `dev`). Changing it replaces the token.",
            ),
            attribute(
                "groups",
                Type::List(Box::new(Type::String)),
                Optional,
                "Groups the principal is in, for roles' `requestable_by` and policies. Changing them \
                 replaces the token.",
            ),
            attribute(
                "ttl",
                Type::String,
                Optional,
                "Lifetime, e.g. `30d`; without it the token never expires. Changing it replaces the token.",
            ),
            attribute(
                "id",
                Type::String,
                Computed,
                "The token's id (`tok_...`), as `hallpass token list` shows it.",
            ),
            attribute(
                "token",
                Type::String,
                Computed,
                "The secret bearer token (`hp_...`). Known only to the state: protect the state.",
            )
            .sensitive(),
            attribute(
                "created_at",
                Type::String,
                Computed,
                "When the token was made (RFC 3339).",
            ),
            attribute(
                "expires_at",
                Type::String,
                Computed,
                "When it expires (RFC 3339); null when it never does.",
            ),
        ],
        blocks: Vec::new(),
    }
}

impl Resource for TokenResource {
    fn type_name(&self) -> &'static str {
        "hallpass_token"
    }

    fn schema(&self) -> Block {
        schema()
    }

    fn validate(&self, config: &Object) -> Vec<Diagnostic> {
        common::duration_problem(config, "ttl")
            .map(|problem| diag::attribute_error("ttl", "Invalid duration", problem))
            .into_iter()
            .collect()
    }

    fn plan(&self, prior: &Object, proposed: &Object) -> Planned {
        if proposed.is_null() {
            return deleted();
        }
        let requires_replace = replaced(prior, proposed, &CONFIGURED);
        if !prior.is_null() && requires_replace.is_empty() {
            return Planned {
                state: prior.to_value(),
                requires_replace,
            };
        }
        let unknown = || Value::Ext(0, vec![0]);
        let planned = DECIDED
            .iter()
            .fold(proposed.clone(), |planned, name| planned.with(name, unknown()));
        Planned {
            state: planned.to_value(),
            requires_replace,
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
                let id = required(prior, "id", "token")?;
                api.delete_named("tokens", &id)
                    .await
                    .map_err(|e| vec![diag::error(format!("Cannot revoke token {id}"), e.to_string())])?;
                return Ok(Value::Nil);
            }
            let request = request(planned).map_err(|e| vec![diag::error("Unusable token configuration", e)])?;
            let created = api.create_token(&request).await.map_err(|e| {
                vec![diag::error(
                    format!("Cannot create a token for {:?}", request.principal),
                    e.to_string(),
                )]
            })?;
            Ok(with_created(planned, &created))
        })
    }

    fn read<'a>(&'a self, api: &'a Api, state: &'a Object) -> BoxFuture<'a, Result<Value, Vec<Diagnostic>>> {
        Box::pin(async move {
            let id = required(state, "id", "token")?;
            let tokens = api
                .list_tokens()
                .await
                .map_err(|e| vec![diag::error(format!("Cannot read token {id}"), e.to_string())])?;
            Ok(match tokens.iter().find(|token| token.id == id) {
                Some(token) if live(token) => state.to_value(),
                _ => Value::Nil,
            })
        })
    }

    fn import(&self, _id: &str) -> Result<Value, Vec<Diagnostic>> {
        Err(vec![diag::error(
            "hallpass_token cannot be imported",
            "Hallpass shows a token's secret only when it is made, so an existing token cannot be brought \
             under Terraform. Let Terraform make a new one, then revoke the old one with `hallpass token \
             revoke ID`.",
        )])
    }
}

/// Neither revoked nor expired.
fn live(token: &TokenInfo) -> bool {
    token.revoked_at.is_none() && token.expires_at.is_none_or(|at| at > Utc::now())
}

fn request(planned: &Object) -> Result<CreateToken, String> {
    let error = |e: ValueError| e.to_string();
    Ok(CreateToken {
        principal: planned.string("principal").map_err(error)?.value().unwrap_or_default(),
        groups: planned.strings("groups").map_err(error)?.value().unwrap_or_default(),
        ttl: planned.string("ttl").map_err(error)?.value(),
    })
}

/// The planned state with what the server decided filled in.
fn with_created(planned: &Object, created: &CreatedToken) -> Value {
    planned
        .clone()
        .with("id", Value::from(created.id.as_str()))
        .with("token", Value::from(created.token.as_str()))
        .with("created_at", Value::from(created.created_at.to_rfc3339()))
        .with(
            "expires_at",
            created.expires_at.map_or(Value::Nil, |at| Value::from(at.to_rfc3339())),
        )
        .to_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Known, to_dynamic};

    fn object(values: Vec<(&str, Value)>) -> Object {
        Object::decode(Some(&to_dynamic(&schema().object(values)))).unwrap()
    }

    #[test]
    fn any_change_replaces_and_no_change_keeps_the_token() {
        let prior = object(vec![
            ("principal", Value::from("ci")),
            ("id", Value::from("tok_1")),
            ("token", Value::from("hp_x")),
        ]);
        let same = TokenResource.plan(&prior, &prior);
        assert!(same.requires_replace.is_empty());
        assert_eq!(same.state, prior.to_value());
        let other = prior.clone().with("ttl", Value::from("1d"));
        let planned = TokenResource.plan(&prior, &other);
        assert_eq!(planned.requires_replace, [diag::path(&["ttl"])]);
        let state = Object::decode(Some(&to_dynamic(&planned.state))).unwrap();
        assert_eq!(state.string("token").unwrap(), Known::Unknown);
        assert!(TokenResource.import("tok_1").is_err());
        let bad = TokenResource.validate(&object(vec![("ttl", Value::from("a month"))]));
        assert_eq!(bad[0].attribute, Some(diag::path(&["ttl"])));
    }
}
