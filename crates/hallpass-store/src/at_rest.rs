//! What someone who reads the database gets, for the checks that no secret
//! is kept in clear: the packed documents (see `packed_json`) unpacked.

use crate::sql::Conn;
use crate::{Backend, StoreError, pg, sqlite};

/// Every request record and audit event's data in the database at
/// `backend`, as JSON text, one per line: what someone who reads the
/// database (and knows this format) gets. For checks that no secret is
/// kept in clear, which packing must not fool. Runs on a thread of its
/// own (the PostgreSQL client must not run on an async runtime's).
pub fn stored_documents(backend: &Backend) -> Result<String, StoreError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut conn: Box<dyn Conn> = match backend {
                    Backend::Sqlite { data_dir } => Box::new(sqlite::open_reader(&data_dir.join("hallpass.db"))?),
                    Backend::Postgres { url } => Box::new(pg::connect(url)?),
                };
                let mut text = String::new();
                for sql in ["SELECT record FROM requests", "SELECT data FROM audit"] {
                    for row in conn.query(sql, &[])? {
                        let document: serde_json::Value = row.json(0)?;
                        text.push_str(&document.to_string());
                        text.push('\n');
                    }
                }
                Ok(text)
            })
            .join()
            .unwrap_or_else(|_| Err(StoreError::Corrupt("reading the stored documents panicked".into())))
    })
}
