//! The Redis server behind the revocation scenario's `redis` target.
//!
//! [`Rd::create`] connects with `--redis-url` (a user that may run `ACL
//! SETUSER`, such as `default` out of the box), checks `maxclients`, and
//! creates an ACL user for the target's admin with the commands
//! docs/targets.md lists, named for this run only. Grants get
//! `~bench:* +ping +acl|whoami`. [`Rd::remove`], or dropping the handle,
//! deletes it and any user of the run's grants still there.
//!
//! Sessions and logins use the `redis` crate, a client of the wire
//! protocol; a session is checked with `ACL WHOAMI`, which must still name
//! the grant's user.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hallpass_api::{Credential, TargetSpec};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use serde_json::{Map, Value, json};

use super::probe::Outcome;
use super::{IssuedAccounts, Login, LoginVars, cli, drop_unless_removed, json_object, open_error, password_target};
use crate::random::random_hex;

const TIMEOUT: Duration = Duration::from_secs(10);
/// The variables a redis credential sets.
const LOGIN_VARS: LoginVars = LoginVars {
    user: "REDIS_USER",
    secret: "REDISCLI_AUTH",
    host: "REDIS_HOST",
    port: "REDIS_PORT",
    database: None,
};

pub struct Rd {
    url: String,
    host: String,
    port: u16,
    pub admin: String,
    admin_password: String,
    /// Users Hallpass issued in this run, deleted at the end if still there.
    logins: IssuedAccounts,
    removed: bool,
}

fn limits() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
}

impl Rd {
    /// Checks `maxclients` for `sessions` more connections and creates the
    /// run's admin user.
    pub async fn create(url: &str, sessions: usize) -> Result<Rd> {
        let client = Client::open(url).with_context(|| "--redis-url is not a redis://HOST:PORT URL".to_string())?;
        let (host, port) = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            _ => bail!("--redis-url must be a plain TCP redis://HOST:PORT URL"),
        };
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&limits())
            .await
            .context("cannot connect with --redis-url")?;
        let max: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxclients")
            .query_async(&mut conn)
            .await
            .context("cannot read maxclients (CONFIG GET)")?;
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut conn)
            .await
            .context("cannot read INFO clients")?;
        let connected: i64 = info
            .lines()
            .find_map(|line| line.strip_prefix("connected_clients:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let max: i64 = max.get(1).and_then(|m| m.parse().ok()).unwrap_or(i64::MAX);
        if max - connected < sessions as i64 {
            bail!(
                "Redis at {host}:{port} takes {} more clients, the run needs {sessions}: `CONFIG SET maxclients {}`, \
                 or use fewer --grants",
                max - connected,
                sessions + 100
            );
        }
        let rd = Rd {
            url: url.to_string(),
            host,
            port,
            admin: format!("hallpass_bench_{}", random_hex::<4>()?),
            admin_password: random_hex::<24>()?,
            logins: IssuedAccounts::default(),
            removed: false,
        };
        let rules = "+acl|setuser +acl|deluser +acl|getuser +client|kill +client|list +ping +info +acl|dryrun";
        let mut setuser = redis::cmd("ACL");
        setuser
            .arg("SETUSER")
            .arg(&rd.admin)
            .arg("on")
            .arg(format!(">{}", rd.admin_password));
        for rule in rules.split(' ') {
            setuser.arg(rule);
        }
        // Redis quotes a rule it refuses, the password rule included.
        let created: Result<String, _> = setuser.query_async(&mut conn).await;
        if let Err(error) = created {
            bail!(
                "cannot create the benchmark's admin ACL user (--redis-url must allow ACL SETUSER): {}",
                error.to_string().replace(&rd.admin_password, "[redacted]")
            );
        }
        Ok(rd)
    }

    pub fn target(&self, name: &str) -> TargetSpec {
        let config = json!({ "host": self.host, "port": self.port, "username": self.admin });
        password_target(name, "redis", config, &self.admin_password)
    }

    pub fn grant(&self) -> Map<String, Value> {
        json_object(json!({ "acl": "~bench:* +ping +acl|whoami" }))
    }

    /// The user a credential hands out, from its environment.
    pub fn login(&self, credential: &Credential) -> Result<Login> {
        let login = Login::from_env(credential, &LOGIN_VARS)?;
        self.logins.note(&login.user);
        Ok(login)
    }

    async fn connect(login: &Login) -> Result<MultiplexedConnection, Outcome> {
        let info = ConnectionAddr::Tcp(login.host.clone(), login.port)
            .into_connection_info()
            .map_err(|e| Outcome::Failed(e.to_string()))?
            .set_redis_settings(
                RedisConnectionInfo::default()
                    .set_username(&login.user)
                    .set_password(&login.secret)
                    .set_skip_set_lib_name(),
            );
        let client = Client::open(info).map_err(|e| Outcome::Failed(e.to_string()))?;
        match client.get_multiplexed_async_connection_with_config(&limits()).await {
            Ok(conn) => Ok(conn),
            Err(error)
                if error.kind() == redis::ErrorKind::AuthenticationFailed
                    || matches!(error.code(), Some("WRONGPASS" | "NOAUTH")) =>
            {
                Err(Outcome::Ended(None))
            }
            Err(error) => Err(Outcome::Failed(error.to_string())),
        }
    }

    pub async fn open(login: &Login) -> Result<RdSession> {
        let conn = Self::connect(login)
            .await
            .map_err(|outcome| open_error(outcome, "user"))?;
        Ok(RdSession {
            conn,
            user: login.user.clone(),
        })
    }

    pub async fn try_login(login: &Login) -> Outcome {
        match Self::connect(login).await {
            Ok(_) => Outcome::Live,
            Err(outcome) => outcome,
        }
    }

    /// A connection that lists which of the run's users exist.
    pub async fn watcher(&self) -> Result<RdWatcher> {
        let conn = Client::open(self.url.as_str())
            .context("bad --redis-url")?
            .get_multiplexed_async_connection_with_config(&limits())
            .await
            .context("cannot connect with --redis-url")?;
        Ok(RdWatcher { conn })
    }

    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        self.drop_all()
    }

    fn drop_all(&self) -> Result<()> {
        let mut users = self.logins.all();
        users.push(self.admin.clone());
        let args = ["--no-auth-warning", "-u", &self.url].map(String::from);
        let mut script = String::new();
        for chunk in users.chunks(100) {
            script.push_str(&format!("ACL DELUSER {}\n", chunk.join(" ")));
        }
        cli::script("redis-cli", &args, &[], &script, &[])
            .map(drop)
            .with_context(|| format!("cannot delete the benchmark's ACL user {}", self.admin))
    }
}

impl Drop for Rd {
    fn drop(&mut self) {
        drop_unless_removed(self.removed, || self.drop_all());
    }
}

pub struct RdSession {
    conn: MultiplexedConnection,
    user: String,
}

impl RdSession {
    pub async fn check(&mut self) -> Outcome {
        let whoami: Result<String, _> = redis::cmd("ACL").arg("WHOAMI").query_async(&mut self.conn).await;
        match whoami {
            Ok(user) if user == self.user => Outcome::Live,
            _ => Outcome::Ended(None),
        }
    }
}

pub struct RdWatcher {
    conn: MultiplexedConnection,
}

impl RdWatcher {
    pub async fn present(&mut self, _names: &[String]) -> Result<HashSet<String>> {
        let users: Vec<String> = redis::cmd("ACL")
            .arg("USERS")
            .query_async(&mut self.conn)
            .await
            .context("cannot list ACL users")?;
        Ok(users.into_iter().collect())
    }
}
