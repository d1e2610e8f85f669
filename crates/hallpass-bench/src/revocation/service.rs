//! The target types behind one interface: the service set up for a type,
//! the sessions opened on it and the watcher of its accounts, each call
//! dispatched to the type's module.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result};
use hallpass_api::{Credential, TargetSpec};
use serde_json::{Map, Value};

use super::cli::CliSession;
use super::probe::Outcome;
use super::{Kind, Login, Services, mysql, pg, redis, ssh};

/// The service behind one target type, set up for the run.
pub enum Service {
    Postgres(pg::Pg),
    Mysql(mysql::My),
    Redis(redis::Rd),
    Ssh(ssh::Ssh),
}

/// An open session of a grant.
pub enum Session {
    Postgres(pg::PgSession),
    Mysql(mysql_async::Conn),
    Redis(redis::RdSession),
    Ssh(tokio::process::Child),
}

impl Session {
    /// Whether the session still holds.
    pub async fn check(&mut self) -> Outcome {
        match self {
            Session::Postgres(session) => session.check().await,
            Session::Mysql(conn) => mysql::My::check(conn).await,
            Session::Redis(session) => session.check().await,
            Session::Ssh(child) => {
                if ssh::session_alive(child) {
                    Outcome::Live
                } else {
                    Outcome::Ended(None)
                }
            }
        }
    }

    pub async fn close(self) {
        match self {
            Session::Postgres(session) => drop(session),
            Session::Mysql(conn) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), conn.disconnect()).await;
            }
            Session::Redis(session) => drop(session),
            Session::Ssh(mut child) => {
                let _ = child.kill().await;
            }
        }
    }
}

/// Lists which of the run's accounts the server still has.
pub enum Watcher {
    Postgres(pg::PgWatcher),
    Mysql(mysql::MyWatcher),
    Redis(redis::RdWatcher),
}

impl Watcher {
    /// Which of `names` the server still has.
    pub async fn present(&mut self, names: &[String]) -> Result<HashSet<String>> {
        match self {
            Watcher::Postgres(w) => w.present(names).await,
            Watcher::Mysql(w) => w.present(names).await,
            Watcher::Redis(w) => w.present(names).await,
        }
    }
}

impl Service {
    /// Sets up the service of `kind` for `sessions` connections.
    pub async fn create(kind: Kind, services: &Services, sessions: usize) -> Result<Service> {
        let url = |url: &Option<String>, flag: &str, var: &str| {
            url.clone()
                .with_context(|| format!("--target {kind} needs --{flag} URL (or {var})"))
        };
        Ok(match kind {
            Kind::Postgres => Service::Postgres(pg::Pg::create(
                &url(&services.postgres, "postgres-url", "HALLPASS_TEST_POSTGRES_URL")?,
                sessions,
            )?),
            Kind::Mysql => Service::Mysql(
                mysql::My::create(&url(&services.mysql, "mysql-url", "HALLPASS_TEST_MYSQL_URL")?, sessions).await?,
            ),
            Kind::Redis => Service::Redis(
                redis::Rd::create(&url(&services.redis, "redis-url", "HALLPASS_TEST_REDIS_URL")?, sessions).await?,
            ),
            Kind::Ssh => Service::Ssh(ssh::Ssh::create(&services.sshd)?),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Service::Postgres(_) => Kind::Postgres,
            Service::Mysql(_) => Kind::Mysql,
            Service::Redis(_) => Kind::Redis,
            Service::Ssh(_) => Kind::Ssh,
        }
    }

    /// The target Hallpass is given for this service.
    pub fn target(&self, name: &str) -> TargetSpec {
        match self {
            Service::Postgres(s) => s.target(name),
            Service::Mysql(s) => s.target(name),
            Service::Redis(s) => s.target(name),
            Service::Ssh(s) => s.target(name),
        }
    }

    /// What the scenario's role grants on the target.
    pub fn grant(&self) -> Map<String, Value> {
        match self {
            Service::Postgres(s) => s.grant(),
            Service::Mysql(s) => s.grant(),
            Service::Redis(s) => s.grant(),
            Service::Ssh(s) => s.grant(),
        }
    }

    /// What a credential gives to log in with.
    pub fn login(&self, credential: &Credential) -> Result<Login> {
        match self {
            Service::Postgres(s) => s.login(credential),
            Service::Mysql(s) => s.login(credential),
            Service::Redis(s) => s.login(credential),
            Service::Ssh(s) => s.login(credential),
        }
    }

    /// A session opened with `login`, kept open.
    pub async fn open(&self, login: &Login) -> Result<Session> {
        Ok(match self {
            Service::Postgres(_) => Session::Postgres(pg::Pg::open(login).await?),
            Service::Mysql(_) => Session::Mysql(mysql::My::open(login).await?),
            Service::Redis(_) => Session::Redis(redis::Rd::open(login).await?),
            Service::Ssh(_) => Session::Ssh(ssh::Ssh::open(login).await?),
        })
    }

    /// A watcher of the run's accounts; ssh creates none.
    pub async fn watcher(&self) -> Result<Option<Watcher>> {
        Ok(match self {
            Service::Postgres(s) => Some(Watcher::Postgres(s.watcher().await?)),
            Service::Mysql(s) => Some(Watcher::Mysql(s.watcher().await?)),
            Service::Redis(s) => Some(Watcher::Redis(s.watcher().await?)),
            Service::Ssh(_) => None,
        })
    }

    /// Undoes the service's set-up.
    pub fn remove(self) -> Result<()> {
        match self {
            Service::Postgres(s) => s.remove(),
            Service::Mysql(s) => s.remove(),
            Service::Redis(s) => s.remove(),
            Service::Ssh(s) => s.remove(),
        }
    }
}

/// One new login with the type's Rust client (ssh: `ssh`).
pub async fn try_login(kind: Kind, login: &Login) -> Outcome {
    match kind {
        Kind::Postgres => pg::Pg::try_login(login).await,
        Kind::Mysql => mysql::My::try_login(login).await,
        Kind::Redis => redis::Rd::try_login(login).await,
        Kind::Ssh => ssh::Ssh::try_login(login).await,
    }
}

/// What the session probes ask an open session, whichever client holds it.
pub trait Check: Send + 'static {
    /// Whether the session still holds.
    fn check(&mut self) -> impl Future<Output = Outcome> + Send;
}

impl Check for Session {
    fn check(&mut self) -> impl Future<Output = Outcome> + Send {
        Session::check(self)
    }
}

impl Check for CliSession {
    fn check(&mut self) -> impl Future<Output = Outcome> + Send {
        CliSession::check(self)
    }
}
