//! Persistence for Hallpass: the source of truth.
//!
//! One SQLite database in WAL mode with `synchronous = FULL`, so an
//! acknowledged write survives a crash or power loss. All writes go through a
//! single writer thread ([`Store::write`]) that runs each caller's closure in
//! its own savepoint and commits whole batches at once (group commit): under
//! load many requests share one fsync, and a failing closure rolls back only
//! its own changes. Each closure sees a [`WriteTx`] whose audit appends chain
//! onto the in-memory head, so a state change and its audit event always
//! commit together. Reads run on a small pool of read-only connections.
//!
//! Records are stored as JSON documents beside a few indexed columns; the
//! store does not interpret targets or roles, it only keeps them.

mod schema;
mod sqlite;

pub use sqlite::{ReadTx, Store, WriteTx};

use chrono::{DateTime, SecondsFormat, Utc};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot open the data directory {path}: {message}")]
    Io { path: String, message: String },
    #[error("the store is shut down")]
    Closed,
}

/// A token row. Only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub secret_hash: String,
    pub principal: String,
    pub groups: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A configuration document (target or role) as the server wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRow {
    pub name: String,
    /// For roles, the target they point at; for targets, their type.
    pub reference: String,
    pub document: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Target,
    Role,
}

impl ConfigKind {
    fn table(self) -> &'static str {
        match self {
            ConfigKind::Target => "targets",
            ConfigKind::Role => "roles",
        }
    }
}

/// Filters for listing requests.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub state: Option<hallpass_core::RequestState>,
    pub requester: Option<String>,
    /// Only requests that became grants (were activated at some point).
    pub grants_only: bool,
    /// Only grants that may still hold access (`active`, `revoke_failed`).
    pub holding_access: bool,
    pub limit: u32,
}

/// Timestamps are stored as fixed-width RFC 3339 UTC strings with
/// microseconds, so text order is time order and indexes work.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp {text:?}: {e}")))
}
