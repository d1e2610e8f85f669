//! Admin connections to postgres targets: a small pool per target, keyed
//! by the target's fingerprint (new settings or secrets get a new pool and
//! the old one is dropped), with a connect timeout, a server-side
//! statement timeout and a client-side deadline on every statement.
//!
//! The one lock shared by all targets guards only the map of pools and is
//! never held across I/O; each target's connections are bounded by its own
//! semaphore, so a slow or dead target makes only its own callers wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};

use super::errors::{Failures, connect_failure, describe, is_auth_failure};
use super::settings::{PASSWORD, Settings};
use super::tls::MakeTls;
use crate::{ProviderError, SecretValue, TargetContext};

/// Admin connections open at once to one target, at most.
pub const POOL_SIZE: usize = 4;
/// An idle connection older than this is closed rather than reused: the
/// server or a firewall may have dropped it meanwhile, and a target no
/// longer used should hold no connection.
const MAX_IDLE: Duration = Duration::from_secs(300);
/// How long past `statement_timeout` the client waits for the server to
/// report that it cancelled a statement before giving up on the connection.
const GRACE: Duration = Duration::from_secs(2);

/// Every target's pool, by target name.
#[derive(Default)]
pub(super) struct Pools {
    targets: Mutex<HashMap<String, Arc<TargetPool>>>,
}

struct TargetPool {
    fingerprint: [u8; 32],
    settings: Settings,
    password: Option<SecretValue>,
    tls: MakeTls,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<(Client, Instant)>>,
}

impl Pools {
    /// How many targets have a pool, for `Debug`.
    pub(super) fn len(&self) -> usize {
        self.targets.lock().map_or(0, |targets| targets.len())
    }

    /// Drops `target`'s pool: its idle connections close, and busy ones
    /// when their operation ends.
    pub(super) fn forget(&self, target: &str) {
        if let Ok(mut targets) = self.targets.lock() {
            targets.remove(target);
        }
    }

    fn pool(&self, target: &TargetContext, settings: &Settings) -> Result<Arc<TargetPool>, ProviderError> {
        let fingerprint = target.fingerprint();
        let current = |targets: &HashMap<String, Arc<TargetPool>>| {
            targets
                .get(&target.name)
                .filter(|pool| pool.fingerprint == fingerprint)
                .cloned()
        };
        if let Some(pool) = self.targets.lock().ok().as_ref().and_then(|t| current(t)) {
            return Ok(pool);
        }
        // Built outside the lock: it reads `ca_file`.
        let fresh = Arc::new(TargetPool {
            fingerprint,
            settings: settings.clone(),
            password: target.secrets.get(PASSWORD).cloned(),
            tls: MakeTls::new(settings)?,
            permits: Arc::new(Semaphore::new(POOL_SIZE)),
            idle: Mutex::new(Vec::new()),
        });
        let mut targets = self
            .targets
            .lock()
            .map_err(|_| ProviderError::Credential("the postgres connection pools are unusable".into()))?;
        if let Some(pool) = current(&targets) {
            return Ok(pool);
        }
        // Replacing the entry drops the old pool's idle connections; those
        // in use close when their callers finish.
        targets.insert(target.name.clone(), fresh.clone());
        Ok(fresh)
    }

    /// An admin connection to `target`, from its pool or new.
    pub(super) async fn admin<'a>(
        &self,
        target: &'a TargetContext,
        settings: &Settings,
        failures: Failures<'a>,
    ) -> Result<Admin<'a>, ProviderError> {
        let pool = self.pool(target, settings)?;
        let wait = settings.connect_timeout + settings.statement_timeout;
        let permit = match tokio::time::timeout(wait, pool.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(failures.error(format!(
                    "all {POOL_SIZE} admin connections to {} stayed busy for {} s; the server is slow to answer",
                    settings.address(),
                    wait.as_secs()
                )));
            }
        };
        let reused = pool.take_idle();
        let client = match reused {
            Some(client) => client,
            None => connect(&pool.settings, pool.password.as_ref(), &pool.tls)
                .await
                .map_err(|failure| failures.error(failure.message))?,
        };
        Ok(Admin {
            client: Some(client),
            pool: Some((pool, permit)),
            statement_timeout: settings.statement_timeout,
            failures,
        })
    }
}

impl TargetPool {
    fn take_idle(&self) -> Option<Client> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((client, since)) = idle.pop() {
            if !client.is_closed() && since.elapsed() < MAX_IDLE {
                return Some(client);
            }
        }
        None
    }
}

/// Why an admin connection could not be opened.
pub(super) struct ConnectFailure {
    /// What happened and how to fix it.
    pub message: String,
    /// The server refused the login itself (wrong password, no such user,
    /// pg_hba.conf), as opposed to the network or TLS failing.
    pub auth: bool,
}

/// Opens one admin connection.
pub(super) async fn connect(
    settings: &Settings,
    password: Option<&SecretValue>,
    tls: &MakeTls,
) -> Result<Client, ConnectFailure> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&settings.host)
        .port(settings.port)
        .dbname(&settings.database)
        .user(&settings.username)
        .application_name("hallpass")
        .connect_timeout(settings.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .ssl_mode(match settings.sslmode {
            super::settings::SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            _ => tokio_postgres::config::SslMode::Require,
        })
        .options(format!(
            "-c statement_timeout={0} -c idle_in_transaction_session_timeout={0}",
            settings.statement_timeout.as_millis()
        ));
    if let Some(password) = password {
        config.password(password.expose());
    }
    // The whole login (TCP, TLS, authentication) within the connect
    // timeout, not just the TCP part tokio-postgres times.
    match tokio::time::timeout(settings.connect_timeout, config.connect(tls.clone())).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                // Its error reaches the client as a closed connection.
                let _ = connection.await;
            });
            Ok(client)
        }
        Ok(Err(error)) => Err(ConnectFailure {
            message: connect_failure(settings, &error),
            auth: is_auth_failure(&error),
        }),
        Err(_) => Err(ConnectFailure {
            message: format!(
                "cannot log in to {}: no answer within {} s (`connect_timeout_seconds`); check `host`, `port`, \
                 firewalls and that the server is up",
                settings.address(),
                settings.connect_timeout.as_secs()
            ),
            auth: false,
        }),
    }
}

/// A bind parameter and its type.
pub(super) type Param<'p> = (&'p (dyn ToSql + Sync), Type);

/// One admin connection in use. Returned to its pool only by
/// [`Admin::release`]; dropped otherwise (after an error or a timeout),
/// which closes it, so the server rolls back whatever was half done.
pub(super) struct Admin<'a> {
    client: Option<Client>,
    pool: Option<(Arc<TargetPool>, OwnedSemaphorePermit)>,
    statement_timeout: Duration,
    failures: Failures<'a>,
}

impl<'a> Admin<'a> {
    /// A connection outside any pool (to test or rotate with given secrets).
    pub(super) fn single(client: Client, settings: &Settings, failures: Failures<'a>) -> Self {
        Self {
            client: Some(client),
            pool: None,
            statement_timeout: settings.statement_timeout,
            failures,
        }
    }

    pub(super) fn failures(&self) -> &Failures<'a> {
        &self.failures
    }

    fn client(&self) -> Result<&Client, ProviderError> {
        self.client
            .as_ref()
            .ok_or_else(|| self.failures.error("the admin connection is gone"))
    }

    /// Runs `work` within the statement deadline; the server's error comes
    /// back as is, for callers that explain particular errors.
    async fn within_deadline<T>(
        &self,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<Result<T, tokio_postgres::Error>, ProviderError> {
        tokio::time::timeout(self.statement_timeout + GRACE, work)
            .await
            .map_err(|_| {
                self.failures.error(format!(
                    "no answer within {} s (`statement_timeout_seconds`)",
                    self.statement_timeout.as_secs()
                ))
            })
    }

    /// Runs statements without results; `what` names the step for errors.
    pub(super) async fn execute(&self, what: &str, sql: &str) -> Result<(), ProviderError> {
        self.try_execute(sql)
            .await?
            .map_err(|error| self.failures.error(format!("{what} failed: {}", describe(&error))))
    }

    pub(super) async fn try_execute(&self, sql: &str) -> Result<Result<(), tokio_postgres::Error>, ProviderError> {
        self.within_deadline(self.client()?.batch_execute(sql)).await
    }

    /// Runs one query with its parameters' types given, in one round trip
    /// (no separate prepare); `what` names the step for errors.
    pub(super) async fn query(&self, what: &str, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, ProviderError> {
        self.try_query(sql, params)
            .await?
            .map_err(|error| self.failures.error(format!("{what} failed: {}", describe(&error))))
    }

    /// `Client::query` would prepare the statement first, a round trip of
    /// its own; with the types given, parse, bind and execute go out
    /// together. Requests on one connection are answered in the order they
    /// were sent, so a caller may have several in flight at once
    /// (`tokio::join!`) and still rely on that order.
    pub(super) async fn try_query(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Result<Vec<Row>, tokio_postgres::Error>, ProviderError> {
        self.within_deadline(self.client()?.query_typed(sql, params)).await
    }

    /// Puts the connection back in its pool for the next call, and has it
    /// closed if it is still idle after [`MAX_IDLE`], so a target no longer
    /// used keeps no connection open.
    pub(super) fn release(mut self) {
        let Some((pool, _permit)) = self.pool.take() else {
            return;
        };
        if let Some(client) = self.client.take().filter(|client| !client.is_closed())
            && let Ok(mut idle) = pool.idle.lock()
        {
            idle.push((client, Instant::now()));
            let pool = Arc::downgrade(&pool);
            tokio::spawn(async move {
                tokio::time::sleep(MAX_IDLE).await;
                if let Some(pool) = pool.upgrade()
                    && let Ok(mut idle) = pool.idle.lock()
                {
                    idle.retain(|(client, since)| !client.is_closed() && since.elapsed() < MAX_IDLE);
                }
            });
        }
    }
}
