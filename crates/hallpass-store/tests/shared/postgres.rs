//! Where tests find PostgreSQL: `HALLPASS_TEST_POSTGRES_URL`, a server on
//! which they may `CREATE DATABASE`. `scripts/test` sets it, and so does the
//! nextest setup script `scripts/lib/nextest-postgres` when it is unset.
//!
//! Shared by the store tests and the end-to-end harness (which includes this
//! file by path), so both fail the same way when PostgreSQL is missing.

/// The one line a test that needs PostgreSQL fails with when there is none.
pub const POSTGRES_NEEDED: &str = "PostgreSQL is needed for this test: run scripts/test (it installs and starts it) \
                                   or set HALLPASS_TEST_POSTGRES_URL";

/// The base URL of the test PostgreSQL server, or the test fails at once
/// with [`POSTGRES_NEEDED`] as its whole output.
pub fn postgres_base_url() -> String {
    match std::env::var("HALLPASS_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            eprintln!("{POSTGRES_NEEDED}");
            // Not `panic!`: its hook would add a "panicked at" line pointing
            // here, which says nothing the message does not.
            std::panic::resume_unwind(Box::new(POSTGRES_NEEDED))
        }
    }
}
