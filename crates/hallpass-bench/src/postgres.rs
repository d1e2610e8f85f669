//! A fresh PostgreSQL database per benchmark deployment, through `psql`.
//!
//! [`Database::create`] connects to the server URL given with `--postgres`
//! (a role that may `CREATE DATABASE`), creates `hp_bench_<random>` and hands
//! out its URL for the `hallpass server --database-url` replicas.
//! [`Database::remove`] (or dropping the handle, e.g. on error or Ctrl-C)
//! drops it again with `WITH (FORCE)`, after the replicas have stopped. Only a
//! SIGKILLed benchmark leaves a `hp_bench_*` database behind.
//!
//! When the PostgreSQL server runs on this machine and the role may read
//! `data_directory` (a superuser, as with a throwaway test server), its
//! postmaster pid is found too, so the benchmark can report the CPU used by
//! PostgreSQL beside the servers'.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::random::random_hex;

/// Seconds `psql` may take to connect.
const CONNECT_TIMEOUT_SECONDS: &str = "10";

pub struct Database {
    /// The `--postgres` URL: where CREATE and DROP DATABASE run.
    server_url: String,
    name: String,
    /// The same server, database `name`.
    url: String,
    postmaster_pid: Option<u32>,
    removed: bool,
}

/// Runs one SQL command with `psql` and returns its unaligned output.
fn psql(url: &str, sql: &str) -> Result<String> {
    let output = Command::new("psql")
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECONDS)
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql (is the PostgreSQL client installed?)")?;
    if !output.status.success() {
        bail!(
            "psql `{sql}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> Result<String> {
    let Some(scheme_end) = url.find("://") else {
        bail!("--postgres {url:?} is not a postgres://USER@HOST:PORT/DB URL");
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[authority_end..]
        .find('?')
        .map_or("", |q| &rest[authority_end + q..]);
    Ok(format!(
        "{}{}/{name}{query}",
        &url[..scheme_end + 3],
        &rest[..authority_end]
    ))
}

impl Database {
    pub fn create(server_url: &str) -> Result<Database> {
        if !(server_url.starts_with("postgres://") || server_url.starts_with("postgresql://")) {
            bail!("--postgres must be a URL like postgres://postgres@127.0.0.1:5432/postgres");
        }
        let name = format!("hp_bench_{}", random_hex::<8>()?);
        psql(server_url, &format!("CREATE DATABASE {name}"))
            .with_context(|| format!("cannot create database {name} (--postgres needs a role that may)"))?;
        let url = with_database(server_url, &name)?;
        let postmaster_pid = local_postmaster(server_url);
        Ok(Database {
            server_url: server_url.to_string(),
            name,
            url,
            postmaster_pid,
            removed: false,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PostgreSQL server's postmaster, when it runs on this machine.
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.postmaster_pid
    }

    /// `pg_database_size` of the benchmark's database.
    pub fn size_bytes(&self) -> Result<u64> {
        let text = psql(&self.url, "SELECT pg_database_size(current_database())")?;
        text.parse()
            .with_context(|| format!("unreadable pg_database_size: {text:?}"))
    }

    /// Drops the database; the replicas must have stopped.
    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        psql(
            &self.server_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .with_context(|| format!("cannot drop database {}", self.name))
        .map(drop)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if !self.removed
            && let Err(error) = psql(
                &self.server_url,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            )
        {
            eprintln!("warning: could not drop benchmark database {}: {error:#}", self.name);
        }
    }
}

/// The postmaster pid from `data_directory/postmaster.pid`, if that file is
/// readable here and names a live `postgres` process.
fn local_postmaster(server_url: &str) -> Option<u32> {
    let dir = psql(server_url, "SHOW data_directory").ok()?;
    let text = std::fs::read_to_string(std::path::Path::new(&dir).join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "postgres").then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        let cases = [
            ("postgres://u@127.0.0.1:5432/postgres", "postgres://u@127.0.0.1:5432/x"),
            ("postgres://u@127.0.0.1:5432", "postgres://u@127.0.0.1:5432/x"),
            (
                "postgresql://u:p@h/db?sslmode=disable",
                "postgresql://u:p@h/x?sslmode=disable",
            ),
            ("postgres://h?connect_timeout=5", "postgres://h/x?connect_timeout=5"),
        ];
        for (url, want) in cases {
            assert_eq!(with_database(url, "x").unwrap(), want, "{url}");
        }
    }
}
