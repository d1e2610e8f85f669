//! Values a client sends but never gets back (target secrets): plain
//! strings on the wire, redacted in `Debug` so a logged request never shows
//! them.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A write-only string: sent by clients, never returned, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Password)]
pub struct WriteOnly(String);

impl WriteOnly {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that seals it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WriteOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
