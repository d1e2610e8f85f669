//! Persistence for Hallpass: the source of truth.
//!
//! Two backends behind one API: embedded SQLite (WAL, `synchronous = FULL`,
//! the default) and PostgreSQL (for production and several replicas). All
//! writes go through a writer thread ([`Store::write`]) that runs each
//! caller's closure in its own savepoint and commits whole batches at once
//! (group commit): under load many requests share one fsync, and a failing
//! closure rolls back only its own changes. Each closure sees a [`WriteTx`]
//! whose audit appends chain onto the locked `audit_head` row, so a state
//! change and its audit event always commit together and replicas share one
//! chain. Reads run on reader threads with their own connections.
//!
//! Records are stored as JSON documents beside a few indexed columns; the
//! store does not interpret targets or roles, it only keeps them. Request
//! records and audit event data, the documents every grant writes, are
//! kept compressed ([`stored_document_json`] reads them back).

mod at_rest;
mod context_sql;
mod engine;
mod outbox;
mod packed_json;
mod pg;
mod requests_sql;
mod schema;
mod sessions;
pub mod sql;
mod sqlite;
mod sqlite_page_cache;
mod token_cache;
mod tx;

pub use at_rest::stored_documents;
pub use context_sql::{RequestWithRole, RoleWithContext};
pub use engine::{Backend, Store};
pub use outbox::{DeliveryOutcome, DeliveryRow, NewDelivery};
pub use packed_json::unpack as stored_document_json;
pub use sessions::SsoSessionRow;
pub use sqlite::prepare_data_dir;
pub use token_cache::TokenForAuth;
pub use tx::{DecisionFacts, ReadTx, WriteTx, open_key};

use chrono::{DateTime, SecondsFormat, Utc};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// A unique key refused a write (e.g. a second open request for one
    /// requester and role); the transaction's other writes stand.
    #[error("conflicting write: {0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot open the data directory {path}: {message}")]
    Io { path: String, message: String },
    #[error("the store is shut down")]
    Closed,
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("the transaction could not be committed: {0}")]
    Commit(String),
    #[error("{0}")]
    Config(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        match &error {
            rusqlite::Error::SqliteFailure(code, message)
                if matches!(
                    code.extended_code,
                    ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
            {
                StoreError::Conflict(message.clone().unwrap_or_else(|| "unique constraint".into()))
            }
            _ => StoreError::Sqlite(error),
        }
    }
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

/// A configuration document (target, role, approval flow or policy) as the
/// server wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRow {
    pub name: String,
    /// For roles, the target they point at; for targets, their type; for
    /// policies, the SHA-256 of the source; for flows, empty.
    pub reference: String,
    pub document: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The audit sequence number of its last change: decisions made on it
    /// check in their transaction that it has not moved.
    pub version: u64,
}

/// One sealed secret of a target (or a notifier). `sealed` is ciphertext;
/// the store never sees the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// The target's or notifier's name.
    pub target: String,
    pub name: String,
    pub sealed: String,
    pub updated_at: DateTime<Utc>,
}

/// A grant ended before its expiry on a target with a revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRow {
    pub target: String,
    pub grant_id: String,
    pub expires_at: DateTime<Utc>,
    /// What its issue returned (non-secret), e.g. a certificate serial.
    pub metadata: serde_json::Value,
}

/// An admin's emergency stop for one principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRow {
    pub principal: String,
    pub reason: String,
    pub locked_by: String,
    pub locked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Target,
    Role,
    ApprovalFlow,
    Policy,
    Notifier,
}

impl ConfigKind {
    fn table(self) -> &'static str {
        match self {
            ConfigKind::Target => "targets",
            ConfigKind::Role => "roles",
            ConfigKind::ApprovalFlow => "approval_flows",
            ConfigKind::Policy => "policies",
            ConfigKind::Notifier => "notifiers",
        }
    }
}

/// Whose secrets: a target's or a notifier's (each kind in its own table;
/// the owner's name is in the `target` column of both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOwner {
    Target,
    Notifier,
}

impl SecretOwner {
    fn table(self) -> &'static str {
        match self {
            SecretOwner::Target => "target_secrets",
            SecretOwner::Notifier => "notifier_secrets",
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
    /// Only break-glass grants: with an open review, or (`false`) any review.
    pub review_open: Option<bool>,
    /// Only records older than this one (newest-first paging): its
    /// `created_at` and id.
    pub before: Option<(DateTime<Utc>, String)>,
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
