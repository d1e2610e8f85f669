//! Data sources: one module each, all behind [`DataSource`], so that the
//! provider service can list their schemas and dispatch by type name.

mod audit_public_key;
mod configured;
mod role;

use futures::future::BoxFuture;

use crate::api::Api;
use crate::proto::tfplugin6::{Diagnostic, DynamicValue};
use crate::resources;
use crate::schema::Block;
use crate::value::Object;

/// What the provider needs of a data source.
pub trait DataSource: Send + Sync {
    /// The name in configurations, e.g. `hallpass_audit_public_key`.
    fn type_name(&self) -> &'static str;

    fn schema(&self) -> Block;

    /// Checks the configuration before anything is read; values may still
    /// be unknown here.
    fn validate(&self, config: &Object) -> Vec<Diagnostic>;

    /// Reads the data: the whole object (configured attributes as given,
    /// computed ones filled in), or the diagnostics saying why not.
    fn read<'a>(&'a self, api: &'a Api, config: &'a Object) -> BoxFuture<'a, Result<DynamicValue, Vec<Diagnostic>>>;
}

/// Every data source of the provider.
pub fn all() -> Vec<Box<dyn DataSource>> {
    vec![
        Box::new(audit_public_key::AuditPublicKey),
        Box::new(role::Role),
        Box::new(configured::ConfiguredData(resources::target::TargetKind)),
        Box::new(configured::ConfiguredData(resources::notifier::NotifierKind)),
    ]
}
