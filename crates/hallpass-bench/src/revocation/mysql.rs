//! The MariaDB (or MySQL) server behind the revocation scenario's `mysql`
//! target.
//!
//! [`My::create`] connects with `--mysql-url` (root or another account that
//! may create users and grant), checks that the server takes the sessions
//! the run will open, and creates a database and an admin account with the
//! privileges docs/targets.md lists, named for this run only. Grants give
//! `SELECT` on that database. [`My::remove`], or dropping the handle, drops
//! the account, the database and any account of the run's grants still
//! there.
//!
//! Sessions and logins use mysql_async, a client of the wire protocol. A
//! killed connection is noticed at the next round trip, so sessions are
//! checked with `COM_PING`.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hallpass_api::{Credential, TargetSpec};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use serde_json::{Map, Value, json};

use super::probe::Outcome;
use super::{IssuedAccounts, Login, LoginVars, cli, drop_unless_removed, json_object, open_error, password_target};
use crate::random::random_hex;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The server refusing a login: access denied (wrong password, no such
/// account), and the account locked (MariaDB, MySQL).
const REFUSED: [u16; 4] = [1045, 1698, 4151, 3118];
/// The variables a mysql credential sets.
const LOGIN_VARS: LoginVars = LoginVars {
    user: "MYSQL_USER",
    secret: "MYSQL_PWD",
    host: "MYSQL_HOST",
    port: "MYSQL_TCP_PORT",
    database: None,
};

pub struct My {
    /// The server, as the URL's account.
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    mariadb: bool,
    pub database: String,
    pub admin: String,
    admin_password: String,
    /// Accounts Hallpass issued in this run, dropped at the end if still there.
    logins: IssuedAccounts,
    removed: bool,
}

/// `'text'`, quotes and backslashes escaped.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl My {
    /// Checks the server's capacity for `sessions` more connections and
    /// creates the run's database and admin account.
    pub async fn create(url: &str, sessions: usize) -> Result<My> {
        let opts =
            Opts::from_url(url).with_context(|| "--mysql-url is not a mysql://USER@HOST:PORT/ URL".to_string())?;
        let mut my = My {
            host: opts.ip_or_hostname().to_string(),
            port: opts.tcp_port(),
            user: opts.user().unwrap_or("root").to_string(),
            password: opts.pass().map(str::to_string),
            mariadb: false,
            database: format!("hpbench{}", random_hex::<4>()?),
            admin: format!("hallpass_bench_{}", random_hex::<4>()?),
            admin_password: random_hex::<24>()?,
            logins: IssuedAccounts::default(),
            removed: true,
        };
        let mut conn = my.root().await?;
        let (version, free): (String, i64) = conn
            .query_first(
                "SELECT VERSION(), CAST(@@max_connections AS SIGNED) - (SELECT COUNT(*) FROM information_schema.PROCESSLIST)",
            )
            .await
            .context("cannot read the server's version and max_connections")?
            .context("no answer about max_connections")?;
        let _ = conn.disconnect().await;
        my.mariadb = version.contains("MariaDB");
        if free < sessions as i64 {
            let need = sessions + 100;
            bail!(
                "{version} at {}:{} takes {free} more connections, the run needs {sessions}: \
                 `SET GLOBAL max_connections = {need}` (and max_connections in its config file to keep it), \
                 use fewer --grants, or use a throwaway server (docs/benchmarks.md)",
                my.host,
                my.port
            );
        }
        my.removed = false;
        let admin = format!("{}@'%'", literal(&my.admin));
        let global = if my.mariadb {
            format!("GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO {admin};\n")
        } else {
            format!("GRANT CREATE USER, PROCESS ON *.* TO {admin};\nGRANT CONNECTION_ADMIN ON *.* TO {admin};\n")
        };
        my.run(&format!(
            "CREATE DATABASE `{db}`;\n\
             CREATE USER {admin} IDENTIFIED BY {password};\n\
             {global}\
             GRANT SELECT ON `{db}`.* TO {admin} WITH GRANT OPTION;\n",
            db = my.database,
            password = literal(&my.admin_password),
        ))
        .context("cannot create the benchmark's database and admin account (--mysql-url must be root)")?;
        Ok(my)
    }

    /// A connection as the URL's account.
    async fn root(&self) -> Result<Conn> {
        let opts = OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(self.password.clone())
            .prefer_socket(false);
        tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts))
            .await
            .context("timed out connecting with --mysql-url")?
            .with_context(|| format!("cannot connect with --mysql-url to {}:{}", self.host, self.port))
    }

    /// Runs statements with the `mariadb` client as the URL's account.
    fn run(&self, sql: &str) -> Result<String> {
        let args = [
            "--no-defaults",
            "--protocol=TCP",
            "--connect-timeout=10",
            "-N",
            "-B",
            "-h",
            &self.host,
            "-P",
            &self.port.to_string(),
            "-u",
            &self.user,
        ]
        .map(String::from);
        let env: Vec<(&str, &str)> = self.password.iter().map(|p| ("MYSQL_PWD", p.as_str())).collect();
        // The admin's password is in the statements that create it.
        let hide = [self.admin_password.as_str(), self.password.as_deref().unwrap_or("")];
        cli::script("mariadb", &args, &env, sql, &hide)
    }

    pub fn target(&self, name: &str) -> TargetSpec {
        let config = json!({ "host": self.host, "port": self.port, "username": self.admin });
        password_target(name, "mysql", config, &self.admin_password)
    }

    pub fn grant(&self) -> Map<String, Value> {
        json_object(json!({ "privileges": ["SELECT"], "on": [format!("{}.*", self.database)] }))
    }

    /// The account a credential hands out, from its environment.
    pub fn login(&self, credential: &Credential) -> Result<Login> {
        let login = Login::from_env(credential, &LOGIN_VARS)?;
        self.logins.note(&login.user);
        Ok(login)
    }

    fn opts(login: &Login) -> OptsBuilder {
        OptsBuilder::default()
            .ip_or_hostname(login.host.clone())
            .tcp_port(login.port)
            .user(Some(login.user.clone()))
            .pass(Some(login.secret.clone()))
            .prefer_socket(false)
            .stmt_cache_size(0)
    }

    async fn connect(login: &Login) -> Result<Conn, Outcome> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(Self::opts(login))).await {
            Err(_) => Err(Outcome::Failed("timed out connecting".into())),
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(mysql_async::Error::Server(error))) if REFUSED.contains(&error.code) => Err(Outcome::Ended(None)),
            Ok(Err(error)) => Err(Outcome::Failed(error.to_string())),
        }
    }

    pub async fn open(login: &Login) -> Result<Conn> {
        Self::connect(login)
            .await
            .map_err(|outcome| open_error(outcome, "account"))
    }

    pub async fn try_login(login: &Login) -> Outcome {
        match Self::connect(login).await {
            Ok(conn) => {
                let _ = conn.disconnect().await;
                Outcome::Live
            }
            Err(outcome) => outcome,
        }
    }

    pub async fn check(conn: &mut Conn) -> Outcome {
        match tokio::time::timeout(CONNECT_TIMEOUT, conn.ping()).await {
            Ok(Ok(())) => Outcome::Live,
            Ok(Err(_)) => Outcome::Ended(None),
            Err(_) => Outcome::Failed("no answer to COM_PING within 10 s".into()),
        }
    }

    /// A connection that lists which of the run's accounts exist.
    pub async fn watcher(&self) -> Result<MyWatcher> {
        Ok(MyWatcher {
            conn: self.root().await?,
        })
    }

    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        self.drop_all()
    }

    fn drop_all(&self) -> Result<()> {
        let mut accounts: Vec<String> = self
            .logins
            .all()
            .iter()
            .map(|user| format!("{}@'%'", literal(user)))
            .collect();
        // Accounts with grants on the run's database, whatever their host.
        let listed = self.run(&format!(
            "SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.db WHERE Db = {}",
            literal(&self.database)
        ))?;
        accounts.extend(listed.lines().map(str::to_string));
        accounts.push(format!("{}@'%'", literal(&self.admin)));
        let mut sql: String = accounts.iter().map(|a| format!("DROP USER IF EXISTS {a};\n")).collect();
        sql.push_str(&format!("DROP DATABASE IF EXISTS `{}`;\n", self.database));
        self.run(&sql).map(drop).with_context(|| {
            format!(
                "cannot drop the benchmark's account {} and database {}",
                self.admin, self.database
            )
        })
    }
}

impl Drop for My {
    fn drop(&mut self) {
        drop_unless_removed(self.removed, || self.drop_all());
    }
}

pub struct MyWatcher {
    conn: Conn,
}

impl MyWatcher {
    pub async fn present(&mut self, _names: &[String]) -> Result<HashSet<String>> {
        let users: Vec<String> = self
            .conn
            .query("SELECT User FROM mysql.user WHERE User LIKE 'hp\\_%'")
            .await
            .context("cannot list accounts")?;
        Ok(users.into_iter().collect())
    }
}
