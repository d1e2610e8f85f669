//! The JSON shape of the Hallpass HTTP API, shared by the server and every
//! client. Nothing else in the workspace defines wire types; the server maps
//! domain records onto these, and the OpenAPI document is generated from them.
//!
//! Input types (`...Spec`, `...Body`, `Create...`) reject unknown fields so
//! typos surface as errors instead of being silently ignored; output types
//! list every field they carry, so a schema generated from them describes
//! exactly what is sent. A few shapes are defined by `hallpass-core` because
//! the domain depends on their exact form (the audit line, which is hashed;
//! request states) and are re-exported here.

mod audit;
mod config;
mod errors;
pub mod formats;
mod identity;
mod notifications;
mod requests;
mod secret;

pub use audit::*;
pub use config::*;
pub use errors::*;
pub use identity::*;
pub use notifications::*;
pub use requests::*;
pub use secret::WriteOnly;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

#[cfg(test)]
mod tests;
