//! Managed resources: one module each, all behind [`Resource`], so that
//! the provider service can list their schemas and dispatch by type name.
//!
//! The protocol's rules the provider service relies on: a plan keeps every
//! configured value; an apply returns a wholly known object, or null after
//! a delete; a read returns null when the object is gone (Terraform then
//! plans to create it again).

pub mod approval_flow;
pub mod common;
pub mod configured;
pub mod notifier;
pub mod policy;
pub mod role;
pub mod role_state;
pub mod target;
pub mod token;

use futures::future::BoxFuture;
use rmpv::Value;

use crate::api::Api;
use crate::proto::tfplugin6::{AttributePath, Diagnostic};
use crate::schema::Block;
use crate::value::Object;

/// A planned change: the new state (null to delete) and the attributes
/// whose change replaces the object.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub state: Value,
    pub requires_replace: Vec<AttributePath>,
}

/// What the provider needs of a managed resource.
pub trait Resource: Send + Sync {
    /// The name in configurations, e.g. `hallpass_role`.
    fn type_name(&self) -> &'static str;

    fn schema(&self) -> Block;

    /// Checks the configuration; values may still be unknown here.
    fn validate(&self, config: &Object) -> Vec<Diagnostic>;

    /// The planned state for `proposed` (Terraform's merge of the
    /// configuration and the prior state); `prior` is null on create,
    /// `proposed` null on destroy.
    fn plan(&self, prior: &Object, proposed: &Object) -> Planned;

    /// Warnings about a planned (non-null) state that only the server can
    /// give, e.g. a role naming a flow the server does not have; none by
    /// default. They never fail the plan.
    fn plan_warnings<'a>(&'a self, _api: &'a Api, _planned: &'a Object) -> BoxFuture<'a, Vec<Diagnostic>> {
        Box::pin(async { Vec::new() })
    }

    /// Carries out a plan: the new state, or null once deleted. `config`
    /// is the configuration (null on delete): the only place Terraform
    /// puts the values of write-only attributes.
    fn apply<'a>(
        &'a self,
        api: &'a Api,
        prior: &'a Object,
        planned: &'a Object,
        config: &'a Object,
    ) -> BoxFuture<'a, Result<Value, Vec<Diagnostic>>>;

    /// The state as the server has it now, or null when the object is gone.
    fn read<'a>(&'a self, api: &'a Api, state: &'a Object) -> BoxFuture<'a, Result<Value, Vec<Diagnostic>>>;

    /// The stub state `terraform import` starts from (a read follows), or
    /// why the resource cannot be imported.
    fn import(&self, id: &str) -> Result<Value, Vec<Diagnostic>>;
}

/// Every managed resource of the provider.
pub fn all() -> Vec<Box<dyn Resource>> {
    vec![
        Box::new(role::Role),
        Box::new(approval_flow::ApprovalFlowResource),
        Box::new(policy::PolicyResource),
        Box::new(configured::Configured(target::TargetKind)),
        Box::new(configured::Configured(notifier::NotifierKind)),
        Box::new(token::TokenResource),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Presence;

    fn described(block: &Block, owner: &str) {
        assert!(!block.description.is_empty(), "{owner} has no description");
        for attribute in &block.attributes {
            assert!(
                !attribute.description.is_empty(),
                "{owner}.{} has no description",
                attribute.name
            );
        }
        for nested in &block.blocks {
            described(&nested.block, &format!("{owner}.{}", nested.name));
        }
    }

    #[test]
    fn every_attribute_is_described_and_only_secrets_are_write_only() {
        let mut write_only = Vec::new();
        for resource in all() {
            let schema = resource.schema();
            described(&schema, resource.type_name());
            for attribute in schema.attributes.iter().filter(|a| a.write_only) {
                assert_ne!(
                    attribute.presence,
                    Presence::Computed,
                    "write-only is set by the configuration"
                );
                assert!(attribute.sensitive);
                write_only.push(format!("{}.{}", resource.type_name(), attribute.name));
            }
        }
        for source in crate::data_sources::all() {
            described(&source.schema(), source.type_name());
        }
        assert_eq!(write_only, ["hallpass_target.secrets", "hallpass_notifier.secrets"]);
    }
}
