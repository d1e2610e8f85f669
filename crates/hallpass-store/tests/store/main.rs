//! The store's API tested directly, each behaviour on SQLite and on
//! PostgreSQL (`NAME::sqlite`, `NAME::postgres`), with a manual clock so
//! deadlines and leases move only when a test says so.
//!
//! PostgreSQL comes from `HALLPASS_TEST_POSTGRES_URL` (scripts/test, or the
//! nextest setup script when it is unset); each test gets a database of its
//! own on that server.

#[path = "../shared/postgres.rs"]
mod postgres;
#[macro_use]
mod support;

mod audit;
mod claims;
mod config_meta;
mod contexts;
mod data_dir;
mod migrations;
mod outbox;
mod queries;
mod records;
mod sessions;
mod tokens;
