//! `data "hallpass_role"`: one role by name (`GET /v1/roles/{name}`), with
//! the server's values, defaults spelled out.

use futures::future::BoxFuture;

use super::DataSource;
use crate::api::Api;
use crate::diag;
use crate::proto::tfplugin6::{Diagnostic, DynamicValue};
use crate::resources::{role, role_state};
use crate::schema::{Block, Presence, Type};
use crate::value::{Known, Object};

pub struct Role;

impl DataSource for Role {
    fn type_name(&self) -> &'static str {
        "hallpass_role"
    }

    /// The resource's attributes, all computed but `name`; `approval` is an
    /// object attribute here (a block cannot be computed).
    fn schema(&self) -> Block {
        let mut block = role::schema();
        block.description = "A Hallpass role, read by name, with the server's values (defaults filled in).";
        for attribute in &mut block.attributes {
            attribute.presence = if attribute.name == "name" {
                Presence::Required
            } else {
                Presence::Computed
            };
        }
        block.blocks.clear();
        block.attributes.push(crate::schema::Attribute::new(
            "approval",
            Type::Object(vec![
                ("approvers", Type::List(Box::new(Type::String))),
                ("required", Type::Number),
            ]),
            Presence::Computed,
            "One-stage approval as an object `{ approvers, required }`, or null when the role uses an \
             approval flow or auto-approval.",
        ));
        block
    }

    fn validate(&self, _config: &Object) -> Vec<Diagnostic> {
        Vec::new()
    }

    fn read<'a>(&'a self, api: &'a Api, config: &'a Object) -> BoxFuture<'a, Result<DynamicValue, Vec<Diagnostic>>> {
        Box::pin(async move {
            let Ok(Known::Value(name)) = config.string("name") else {
                return Err(vec![diag::attribute_error(
                    "name",
                    "Missing role name",
                    "Name the role to read.",
                )]);
            };
            let cannot = |detail: String| vec![diag::error(format!("Cannot read role {name:?}"), detail)];
            match api.get_role(&name).await {
                Ok(Some(role)) => Ok(self.schema().encode(role_state::server_values(&role))),
                Ok(None) => Err(cannot(
                    "The server has no role of that name; see `hallpass role list`.".into(),
                )),
                Err(error) => Err(cannot(error.to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_name_is_given_and_every_attribute_is_described() {
        let data = Role.schema();
        let given: Vec<_> = data
            .attributes
            .iter()
            .filter(|a| a.presence != Presence::Computed)
            .map(|a| a.name)
            .collect();
        assert_eq!(given, ["name"]);
        let resource = role::schema();
        let nested = resource.blocks.iter().flat_map(|b| b.block.attributes.iter());
        for attribute in data.attributes.iter().chain(&resource.attributes).chain(nested) {
            assert!(
                !attribute.description.is_empty(),
                "{} has no description",
                attribute.name
            );
        }
        // The same names as the resource, `approval` an attribute here.
        let mut names: Vec<_> = data.attributes.iter().map(|a| a.name).collect();
        let mut expected: Vec<_> = resource.attributes.iter().map(|a| a.name).collect();
        expected.push("approval");
        names.sort_unstable();
        expected.sort_unstable();
        assert_eq!(names, expected);
    }
}
