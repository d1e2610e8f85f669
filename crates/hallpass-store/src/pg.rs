//! PostgreSQL connections, for production and for several replicas sharing
//! one database. Uses the synchronous `postgres` client: the store's writer
//! and readers are plain threads that each own a connection, so no async
//! runtime is involved.

use std::collections::HashMap;
use std::error::Error;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};

use crate::StoreError;
use crate::sql::{Conn, Dialect, Row, SqlValue};

/// Channel on which every committed batch announces the newest audit seq.
pub const CHANGES_CHANNEL: &str = "hallpass_changes";

impl ToSql for SqlValue {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Int(value) if *ty == Type::INT4 => i32::try_from(*value)?.to_sql(ty, out),
            SqlValue::Int(value) => value.to_sql(ty, out),
            SqlValue::Text(text) => text.as_str().to_sql(ty, out),
            SqlValue::Bytes(bytes) => bytes.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT8 | Type::INT4 | Type::TEXT | Type::VARCHAR | Type::BYTEA)
    }

    to_sql_checked!();
}

pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// Describes a connection failure without echoing the URL (it may hold a
/// password).
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut message = error.to_string();
            if let Some(source) = error.source() {
                message = format!("{message}: {source}");
            }
            message
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) if *db.code() == postgres::error::SqlState::UNIQUE_VIOLATION => {
                StoreError::Conflict(db.constraint().unwrap_or("unique constraint").to_string())
            }
            _ => StoreError::Postgres(describe(&error)),
        }
    }
}

/// Connects to `url` (`postgres://user:password@host:port/db`).
pub fn connect(url: &str) -> Result<PgConn, StoreError> {
    let config: postgres::Config = url.parse().map_err(|_| {
        StoreError::Config("the PostgreSQL URL is not valid; expected postgres://user@host:5432/database".into())
    })?;
    let client = config
        .connect(NoTls)
        .map_err(|e| StoreError::Postgres(format!("cannot connect to PostgreSQL: {}", describe(&e))))?;
    Ok(PgConn {
        client,
        statements: HashMap::new(),
    })
}

impl PgConn {
    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// Blocks until a notification arrives on a channel this connection
    /// LISTENs on; returns its payload.
    pub fn next_notification(&mut self) -> Result<Option<String>, StoreError> {
        let mut notifications = self.client.notifications();
        let mut iter = notifications.blocking_iter();
        use fallible_iterator::FallibleIterator;
        Ok(iter.next()?.map(|n| n.payload().to_string()))
    }
}

fn params(values: &[SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|value| value as &(dyn ToSql + Sync)).collect()
}

impl Conn for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, values: &[SqlValue]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        Ok(self.client.execute(&statement, &params(values))?)
    }

    fn query(&mut self, sql: &str, values: &[SqlValue]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        let rows = self.client.query(&statement, &params(values))?;
        rows.iter()
            .map(|row| {
                let mut out = Vec::with_capacity(row.len());
                for (index, column) in row.columns().iter().enumerate() {
                    let value = match *column.type_() {
                        Type::INT8 => row.try_get::<_, Option<i64>>(index)?.map(SqlValue::Int),
                        Type::INT4 => row.try_get::<_, Option<i32>>(index)?.map(|v| SqlValue::Int(v.into())),
                        Type::BOOL => row.try_get::<_, Option<bool>>(index)?.map(|v| SqlValue::Int(v.into())),
                        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                            row.try_get::<_, Option<String>>(index)?.map(SqlValue::Text)
                        }
                        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(index)?.map(SqlValue::Bytes),
                        // Nothing the store selects has another type; `void`
                        // results (e.g. of functions) read as NULL.
                        _ => None,
                    };
                    out.push(value.unwrap_or(SqlValue::Null));
                }
                Ok(Row(out))
            })
            .collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.client.batch_execute(sql)?)
    }

    fn is_broken(&self) -> bool {
        self.client.is_closed()
    }
}
