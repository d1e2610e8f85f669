//! Where the providers' integration tests find the real services they issue
//! credentials on. `scripts/test` starts throwaway PostgreSQL, MariaDB,
//! Redis, OpenSSH and moto (STS and IAM) servers and exports their
//! coordinates; a test whose service is missing fails at once with one line
//! saying how to get it, never skips.

#![allow(dead_code)] // Each test binary uses the services it needs.

pub mod aws;
pub mod sshd;

/// The value of `variable`, or the test fails with one line naming `what`.
pub fn service(variable: &str, what: &str) -> String {
    match std::env::var(variable) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => {
            let message = format!(
                "{what} is needed for this test: run scripts/test (it installs and starts it) or set {variable}"
            );
            eprintln!("{message}");
            // Not `panic!`: its hook would add a "panicked at" line that
            // says nothing the message does not.
            std::panic::resume_unwind(Box::new(message))
        }
    }
}

/// `postgres://postgres@127.0.0.1:PORT/postgres`: a superuser.
pub fn postgres_url() -> String {
    service("HALLPASS_TEST_POSTGRES_URL", "PostgreSQL")
}

/// `mysql://root@127.0.0.1:PORT/`: MariaDB's root, no password.
pub fn mysql_url() -> String {
    service("HALLPASS_TEST_MYSQL_URL", "MariaDB")
}

/// `redis://127.0.0.1:PORT`: the default user, no password.
pub fn redis_url() -> String {
    service("HALLPASS_TEST_REDIS_URL", "Redis")
}

/// `http://127.0.0.1:PORT`: moto, serving STS and IAM on one port; it
/// takes any keys and does not evaluate IAM policies.
pub fn aws_endpoint() -> String {
    service("HALLPASS_TEST_AWS_ENDPOINT", "moto (AWS STS and IAM)")
}

/// The Python interpreter that has boto3, AWS's own SDK, for checking
/// issued sessions with a real client: scripts/test's (it installs moto
/// and boto3 together), else `python3`.
pub fn aws_python() -> String {
    std::env::var("HALLPASS_TEST_AWS_PYTHON")
        .ok()
        .filter(|python| !python.trim().is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// `redis-cli ARGS` as an issued user: the credential's environment
/// (REDIS_HOST, REDIS_PORT, REDIS_USER, and the password in REDISCLI_AUTH).
pub fn redis_cli(env: &std::collections::BTreeMap<String, String>, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new("redis-cli");
    command
        .envs(env)
        .args([
            "-h",
            &env["REDIS_HOST"],
            "-p",
            &env["REDIS_PORT"],
            "--user",
            &env["REDIS_USER"],
        ])
        .arg("--no-auth-warning")
        .args(args);
    command
}

/// `mariadb -e SQL` as an issued account: the credential's environment
/// (MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_PWD) and user; tab-separated output.
pub fn mariadb(env: &std::collections::BTreeMap<String, String>, sql: &str) -> std::process::Command {
    let mut command = std::process::Command::new("mariadb");
    command
        .envs(env)
        .args(["--protocol=TCP", "-N", "-B", "-u", &env["MYSQL_USER"], "-e", sql]);
    command
}

/// A unique suffix for names a test creates, so tests running in parallel
/// against one server never meet.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}{}x{nanos:x}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
