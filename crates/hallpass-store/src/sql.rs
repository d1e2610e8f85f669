//! The small SQL surface the store needs, over SQLite and PostgreSQL alike.
//!
//! Statements are written once, with `$1, $2, ...` placeholders and
//! TEXT and BIGINT values (times are fixed-width RFC 3339 text, documents are
//! JSON text, or packed bytes for request records and audit data), so the
//! same SQL runs on both. The few statements that differ
//! (locking, claims, an index SQLite must be told) ask [`Dialect`].

use chrono::{DateTime, Utc};

use crate::{StoreError, parse_time};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Starts a write transaction that holds the write lock from the start.
    pub fn begin(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// Row locking for claim and head queries; SQLite's writer is exclusive.
    pub fn for_update(self, skip_locked: bool) -> &'static str {
        match (self, skip_locked) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, false) => " FOR UPDATE",
            (Dialect::Postgres, true) => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Names the index a query must use (it follows the table name):
    /// SQLite keeps no statistics (no `ANALYZE`), so its planner judges
    /// indexes by shape alone and may pick one that reads every row; a
    /// statement that names an index it cannot use fails to prepare rather
    /// than scanning. PostgreSQL's planner has statistics: nothing.
    pub fn indexed_by(self, index: &str) -> String {
        match self {
            Dialect::Sqlite => format!(" INDEXED BY {index}"),
            Dialect::Postgres => String::new(),
        }
    }
}

/// A parameter or column value.
#[derive(Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Text(String),
    /// A packed document (see `packed_json`): BLOB on SQLite, BYTEA on
    /// PostgreSQL.
    Bytes(Vec<u8>),
}

/// Bytes show as their length: a packed document in an error message
/// would be noise at best.
impl std::fmt::Debug for SqlValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlValue::Null => f.write_str("Null"),
            SqlValue::Int(value) => f.debug_tuple("Int").field(value).finish(),
            SqlValue::Text(text) => f.debug_tuple("Text").field(text).finish(),
            SqlValue::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
        }
    }
}

impl From<&str> for SqlValue {
    fn from(text: &str) -> Self {
        SqlValue::Text(text.to_string())
    }
}

impl From<String> for SqlValue {
    fn from(text: String) -> Self {
        SqlValue::Text(text)
    }
}

impl From<&String> for SqlValue {
    fn from(text: &String) -> Self {
        SqlValue::Text(text.clone())
    }
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        SqlValue::Int(value)
    }
}

impl From<u64> for SqlValue {
    fn from(value: u64) -> Self {
        SqlValue::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<bool> for SqlValue {
    fn from(value: bool) -> Self {
        SqlValue::Int(i64::from(value))
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(SqlValue::Null, Into::into)
    }
}

/// `[a.into(), b.into(), ...]` as a parameter list.
#[macro_export]
macro_rules! sql_params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::sql::SqlValue::from($value)),*][..]
    };
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<SqlValue>);

impl Row {
    fn value(&self, index: usize) -> Result<&SqlValue, StoreError> {
        self.0
            .get(index)
            .ok_or_else(|| StoreError::Corrupt(format!("missing column {index}")))
    }

    pub fn is_null(&self, index: usize) -> Result<bool, StoreError> {
        Ok(matches!(self.value(index)?, SqlValue::Null))
    }

    pub fn text(&self, index: usize) -> Result<String, StoreError> {
        match self.value(index)? {
            SqlValue::Text(text) => Ok(text.clone()),
            other => Err(StoreError::Corrupt(format!(
                "column {index}: expected text, found {other:?}"
            ))),
        }
    }

    pub fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        match self.value(index)? {
            SqlValue::Null => Ok(None),
            _ => self.text(index).map(Some),
        }
    }

    pub fn int(&self, index: usize) -> Result<i64, StoreError> {
        match self.value(index)? {
            SqlValue::Int(value) => Ok(*value),
            other => Err(StoreError::Corrupt(format!(
                "column {index}: expected an integer, found {other:?}"
            ))),
        }
    }

    pub fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        match self.value(index)? {
            SqlValue::Null => Ok(None),
            _ => self.int(index).map(Some),
        }
    }

    pub fn time(&self, index: usize) -> Result<DateTime<Utc>, StoreError> {
        parse_time(&self.text(index)?)
    }

    pub fn opt_time(&self, index: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_text(index)?.as_deref().map(parse_time).transpose()
    }

    /// An audit hash as lowercase hex: stored as 32 bytes, or as the hex
    /// text rows of SQLite stores written before kept.
    pub fn hash(&self, index: usize) -> Result<String, StoreError> {
        match self.value(index)? {
            SqlValue::Bytes(bytes) => Ok(hex::encode(bytes)),
            _ => self.text(index),
        }
    }

    /// A JSON document, stored as text or packed (see `packed_json`).
    pub fn json<T: serde::de::DeserializeOwned>(&self, index: usize) -> Result<T, StoreError> {
        let parsed = match self.value(index)? {
            SqlValue::Text(text) => serde_json::from_str(text),
            SqlValue::Bytes(stored) => serde_json::from_slice(&crate::packed_json::unpack(stored)?),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "column {index}: expected a document, found {other:?}"
                )));
            }
        };
        parsed.map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))
    }
}

/// One database connection, used by one thread at a time.
pub trait Conn: Send {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; returns the number of rows changed.
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, StoreError>;
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, StoreError>;
    /// Runs statements without parameters (transaction control, DDL).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
    /// True when the connection is unusable and must be replaced.
    fn is_broken(&self) -> bool {
        false
    }
}

impl dyn Conn + '_ {
    pub fn query_one(&mut self, sql: &str, params: &[SqlValue]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}
