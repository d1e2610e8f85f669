//! The mysql provider against a real MariaDB (HALLPASS_TEST_MYSQL_URL, its
//! root) and the real `mariadb` client: issued credentials work and only
//! for what the role grants, revocation ends open sessions and leaves
//! nothing, issuing is idempotent, hostile values are quoted or refused, a
//! weak admin is diagnosed and leaves nothing half made, a dead target
//! fails fast, and the admin's password rotates.

mod net;
mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use hallpass_providers::mysql::MysqlProvider;
use hallpass_providers::{
    CredentialProvider, GrantContext, SecretCredential, SecretValue, Seed, TargetContext, TargetSecrets, Verification,
};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

/// The server from HALLPASS_TEST_MYSQL_URL: host, port, root user and
/// password.
struct Server {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
}

fn server() -> Server {
    let opts = mysql_async::Opts::from_url(&support::mysql_url()).expect("HALLPASS_TEST_MYSQL_URL");
    Server {
        host: opts.ip_or_hostname().to_string(),
        port: opts.tcp_port(),
        user: opts.user().unwrap_or("root").to_string(),
        password: opts.pass().map(str::to_string),
    }
}

impl Server {
    fn target(&self, name: &str) -> TargetContext {
        self.target_as(name, &self.user, self.password.as_deref())
    }

    fn target_as(&self, name: &str, user: &str, password: Option<&str>) -> TargetContext {
        let mut secrets = TargetSecrets::new();
        if let Some(password) = password {
            secrets.insert("password", SecretValue::new(password));
        }
        TargetContext {
            name: name.into(),
            config: json!({"host": self.host, "port": self.port, "username": user, "tls": "disabled"})
                .as_object()
                .unwrap()
                .clone(),
            secrets,
            seed: Seed::for_grant(b"test credential key", name, "-"),
        }
    }

    async fn root(&self) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(self.password.clone());
        mysql_async::Conn::new(opts).await.unwrap()
    }

    /// Runs statements as root.
    async fn sql(&self, statements: &[&str]) {
        let mut conn = self.root().await;
        for statement in statements {
            conn.query_drop(*statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        conn.disconnect().await.unwrap();
    }

    async fn count(&self, query: &str, param: &str) -> u64 {
        let mut conn = self.root().await;
        let n: Option<u64> = conn.exec_first(query, (param,)).await.unwrap();
        conn.disconnect().await.unwrap();
        n.unwrap_or(0)
    }

    async fn accounts(&self, user: &str) -> u64 {
        self.count("SELECT COUNT(*) FROM mysql.user WHERE User = ?", user).await
    }

    async fn connections(&self, user: &str) -> u64 {
        self.count(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
            user,
        )
        .await
    }

    /// A database with a table `items` holding one row `v = 'hello'`.
    async fn database(&self, name: &str) {
        let db = format!("`{}`", name.replace('`', "``"));
        self.sql(&[
            &format!("CREATE DATABASE {db}"),
            &format!("CREATE TABLE {db}.items (v VARCHAR(20))"),
            &format!("INSERT INTO {db}.items VALUES ('hello')"),
        ])
        .await;
    }

    async fn drop_database(&self, name: &str) {
        self.sql(&[&format!("DROP DATABASE IF EXISTS `{}`", name.replace('`', "``"))])
            .await;
    }
}

fn grant(target: &TargetContext, principal: &str, grant_id: &str, block: Value) -> GrantContext {
    let now = Utc::now();
    let mut grant = GrantContext::new(
        grant_id,
        principal,
        "reader",
        target.clone(),
        Seed::for_grant(b"test credential key", &target.name, grant_id),
        now,
        now + chrono::Duration::minutes(5),
    );
    grant.grant = block.as_object().unwrap().clone();
    grant
}

fn select_grant(database: &str) -> Value {
    json!({"privileges": ["SELECT"], "on": format!("`{}`.*", database.replace('`', "``"))})
}

/// The real `mariadb` client with the credential's environment: it reads
/// MYSQL_HOST, MYSQL_TCP_PORT and MYSQL_PWD, and takes the user with `-u`.
fn client(credential: &SecretCredential, sql: &str) -> Command {
    support::mariadb(&credential.env, sql)
}

fn run(credential: &SecretCredential, sql: &str) -> Output {
    client(credential, sql)
        .output()
        .expect("the mariadb client is installed")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn user_of(metadata: &Value) -> String {
    metadata["user"].as_str().unwrap().to_string()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn issued_account_works_only_as_granted_and_revoke_ends_it() {
    let server = server();
    let db = support::unique("hp_t_db_");
    let lookalike = db.replacen("hp_t_db_", "hp_t_dbx", 1);
    server.database(&db).await;
    server.database(&lookalike).await;
    let provider = MysqlProvider::new();
    let target = server.target(&support::unique("t"));
    let grant = grant(&target, "alice", &support::unique("g"), select_grant(&db));
    provider.validate_grant(&grant.grant).unwrap();

    let metadata = provider.issue(&grant).await.unwrap();
    let user = user_of(&metadata);
    let credential = provider.credential(&grant, &metadata).await.unwrap();
    let password = credential.env["MYSQL_PWD"].clone();
    assert!(!metadata.to_string().contains(&password), "metadata holds no password");
    assert_eq!(credential.credential_type, "mysql");
    assert_eq!(
        credential.token,
        format!("mysql://{user}:{password}@{}:{}/", server.host, server.port)
    );
    assert!(!format!("{credential:?}{grant:?}").contains(&password));

    let selected = run(&credential, &format!("SELECT v FROM `{db}`.items"));
    assert!(selected.status.success(), "{}", text(&selected));
    assert_eq!(String::from_utf8_lossy(&selected.stdout).trim(), "hello");
    let insert = run(&credential, &format!("INSERT INTO `{db}`.items VALUES ('x')"));
    assert!(
        !insert.status.success() && text(&insert).contains("denied"),
        "{}",
        text(&insert)
    );
    // `_` in the granted name is literal: the look-alike database is not granted.
    let other = run(&credential, &format!("SELECT v FROM `{lookalike}`.items"));
    assert!(
        !other.status.success() && text(&other).contains("denied"),
        "{}",
        text(&other)
    );

    // A session opened during the grant, still running when it is revoked.
    let mut session = client(&credential, "SELECT SLEEP(60)")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the session to start", async || server.connections(&user).await == 1).await;

    provider.revoke(&grant, &metadata).await.unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = session.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "revoke left the session running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "the session was ended, not finished");
    let after = run(&credential, "SELECT 1");
    assert!(!after.status.success(), "the credential still works: {}", text(&after));
    assert_eq!(provider.verify(&grant, &metadata).await.unwrap(), Verification::Gone);
    assert_eq!(server.accounts(&user).await, 0, "nothing left on the server");
    assert_eq!(server.connections(&user).await, 0);
    provider
        .revoke(&grant, &metadata)
        .await
        .expect("revoking twice succeeds");
    assert_eq!(provider.verify(&grant, &metadata).await.unwrap(), Verification::Gone);
    server.drop_database(&db).await;
    server.drop_database(&lookalike).await;
}

#[tokio::test]
async fn issuing_twice_gives_one_account_that_matches_the_grant() {
    let server = server();
    let db = support::unique("hp_t_db_");
    server.database(&db).await;
    let provider = MysqlProvider::new();
    let target = server.target(&support::unique("t"));
    let mut grant = grant(&target, "bob", &support::unique("g"), select_grant(&db));
    let first = provider.issue(&grant).await.unwrap();
    let user = user_of(&first);
    // Someone changed the password and added a privilege meanwhile.
    server
        .sql(&[
            &format!("ALTER USER '{user}'@'%' IDENTIFIED BY 'changed-Aa1'"),
            &format!("GRANT INSERT ON `{db}`.* TO '{user}'@'%'"),
        ])
        .await;
    let second = provider.issue(&grant).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(server.accounts(&user).await, 1);
    let credential = provider.credential(&grant, &second).await.unwrap();
    let selected = run(&credential, &format!("SELECT v FROM `{db}`.items"));
    assert!(selected.status.success(), "{}", text(&selected));
    let insert = run(&credential, &format!("INSERT INTO `{db}`.items VALUES ('x')"));
    assert!(!insert.status.success(), "the extra privilege was taken away");

    // The role's grant changed: issuing again gives exactly the new one.
    grant.grant = json!({"privileges": ["INSERT"], "on": format!("{db}.items")})
        .as_object()
        .unwrap()
        .clone();
    provider.issue(&grant).await.unwrap();
    let insert = run(&credential, &format!("INSERT INTO `{db}`.items VALUES ('x')"));
    assert!(insert.status.success(), "{}", text(&insert));
    let selected = run(&credential, &format!("SELECT v FROM `{db}`.items"));
    assert!(!selected.status.success());
    let left = provider.verify(&grant, &second).await.unwrap();
    assert!(
        matches!(&left, Verification::Remaining(what) if what.contains(&user)),
        "{left:?}"
    );
    provider.revoke(&grant, &second).await.unwrap();
    assert_eq!(server.accounts(&user).await, 0);
    server.drop_database(&db).await;
}

#[tokio::test]
async fn hostile_principals_and_names_are_quoted_or_refused() {
    let server = server();
    let db = format!("{}`'; DROP USER root; -- \"é", support::unique("hp_t_"));
    server.database(&db).await;
    let provider = MysqlProvider::new();
    let target = server.target(&support::unique("t"));
    let principal = format!("o'brien\"; DROP USER root; -- \\ é {}", "x".repeat(200));
    let grant = grant(&target, &principal, &support::unique("g';--"), select_grant(&db));
    let metadata = provider.issue(&grant).await.unwrap();
    let user = user_of(&metadata);
    assert!(user.len() <= 32 && user.starts_with("hp_o_brien__"), "{user}");
    let credential = provider.credential(&grant, &metadata).await.unwrap();
    let selected = run(&credential, &format!("SELECT v FROM `{}`.items", db.replace('`', "``")));
    assert!(selected.status.success(), "{}", text(&selected));
    assert!(server.accounts(&server.user).await > 0, "root is still there");
    provider.revoke(&grant, &metadata).await.unwrap();
    assert_eq!(server.accounts(&user).await, 0);
    server.drop_database(&db).await;

    let refused = |block: Value| {
        provider
            .validate_grant(block.as_object().unwrap())
            .unwrap_err()
            .to_string()
    };
    let long = refused(json!({"privileges": ["SELECT"], "on": format!("{}.*", "d".repeat(200))}));
    assert!(long.contains("at most 64 characters"), "{long}");
    let backslash = refused(json!({"privileges": ["SELECT"], "on": "a\\'b.*"}));
    assert!(backslash.contains("backslashes"), "{backslash}");
    let injected = refused(json!({"privileges": ["SELECT ON *.* TO root; --"], "on": "app.*"}));
    assert!(injected.contains("unknown privilege"), "{injected}");
    let mut hostile_target = server.target("hostile");
    hostile_target.config.insert("user_host".into(), json!("%' OR 1=1; --"));
    let host = provider
        .validate_config(&hostile_target.config, &hostile_target.secrets)
        .unwrap_err();
    assert!(host.to_string().contains("`user_host`"), "{host}");
}

#[tokio::test]
async fn a_weak_admin_is_diagnosed_and_leaves_nothing_half_made() {
    let server = server();
    let db = support::unique("hp_t_db_");
    server.database(&db).await;
    let weak = support::unique("hp_t_w");
    let password = "weak-admin-Secret-1";
    server
        .sql(&[
            &format!("CREATE USER '{weak}'@'%' IDENTIFIED BY '{password}'"),
            &format!("GRANT SELECT ON `{db}`.* TO '{weak}'@'%'"),
        ])
        .await;
    let provider = MysqlProvider::new();
    let target = server.target_as(&support::unique("t"), &weak, Some(password));
    let checks = provider.test(&target).await.unwrap();
    let failed = |name: &str| {
        let check = checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name}: {checks:?}"));
        assert!(!check.ok, "{check:?}");
        check.detail.clone()
    };
    assert!(checks[0].ok, "{checks:?}");
    let fix = |privilege: &str| format!("GRANT {privilege} ON *.* TO '{weak}'@'%'");
    assert!(failed("create user").contains(&fix("CREATE USER")), "{checks:?}");
    assert!(failed("process").contains(&fix("PROCESS")), "{checks:?}");
    assert!(
        failed("connection admin").contains(&fix("CONNECTION ADMIN")),
        "{checks:?}"
    );
    assert!(failed("grant option").contains("WITH GRANT OPTION"), "{checks:?}");

    let grant = grant(&target, "carol", &support::unique("g"), select_grant(&db));
    let error = provider.issue(&grant).await.unwrap_err().to_string();
    assert!(
        error.contains("CREATE USER") && error.contains(&fix("CREATE USER")),
        "{error}"
    );
    let user = hallpass_providers::login_name("carol", &grant.grant_id, 32);
    assert_eq!(server.accounts(&user).await, 0);

    // It may create accounts but not grant: the account is removed again.
    server
        .sql(&[&format!("GRANT CREATE USER ON *.* TO '{weak}'@'%'")])
        .await;
    let target = server.target_as(&support::unique("t"), &weak, Some(password));
    let grant = self::grant(&target, "carol", &grant.grant_id, select_grant(&db));
    let error = provider.issue(&grant).await.unwrap_err().to_string();
    assert!(
        error.contains("WITH GRANT OPTION") && error.contains("The account") && error.contains("was removed."),
        "{error}"
    );
    assert_eq!(server.accounts(&user).await, 0, "nothing half made");
    let derived = provider.credential(&grant, &json!({})).await.unwrap().env["MYSQL_PWD"].clone();
    assert!(!error.contains(password) && !error.contains(&derived), "{error}");

    // Revoking without PROCESS still drops the account, then says what is missing.
    server
        .sql(&[&format!("GRANT SELECT ON `{db}`.* TO '{weak}'@'%' WITH GRANT OPTION")])
        .await;
    let metadata = provider.issue(&grant).await.unwrap();
    let error = provider.revoke(&grant, &metadata).await.unwrap_err().to_string();
    assert!(error.contains(&fix("PROCESS")), "{error}");
    assert_eq!(server.accounts(&user).await, 0);
    server.sql(&[&format!("DROP USER '{weak}'@'%'")]).await;
    server.drop_database(&db).await;
}

#[tokio::test]
async fn a_dead_target_fails_fast_and_clearly_then_a_live_one_works() {
    let server = server();
    let port = net::closed_port();
    let provider = MysqlProvider::new();
    let name = support::unique("t");
    let mut target = server.target(&name);
    target.config.insert("host".into(), json!("127.0.0.1"));
    target.config.insert("port".into(), json!(port));
    target
        .secrets
        .insert("password", SecretValue::new("admin-pw-never-shown"));
    let dead = grant(
        &target,
        "dave",
        &support::unique("g"),
        json!({"privileges": ["SELECT"], "on": "x.*"}),
    );
    let start = Instant::now();
    let error = provider.issue(&dead).await.unwrap_err().to_string();
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    assert!(
        error.contains(&format!("cannot connect to 127.0.0.1:{port}")) && error.contains("check `host` and `port`"),
        "{error}"
    );
    assert!(!error.contains("admin-pw-never-shown"), "{error}");
    let checks = provider.test(&target).await.unwrap();
    assert!(
        checks.len() == 1 && !checks[0].ok && checks[0].name == "connect",
        "{checks:?}"
    );

    // The same target, fixed: a new pool for the new settings.
    let db = support::unique("hp_t_db_");
    server.database(&db).await;
    let live = grant(&server.target(&name), "dave", &dead.grant_id, select_grant(&db));
    let metadata = provider.issue(&live).await.unwrap();
    let credential = provider.credential(&live, &metadata).await.unwrap();
    assert!(
        run(&credential, &format!("SELECT v FROM `{db}`.items"))
            .status
            .success()
    );
    let checks = provider.test(&live.target).await.unwrap();
    assert!(checks.iter().all(|c| c.ok), "root passes every check: {checks:?}");
    provider.revoke(&live, &metadata).await.unwrap();
    server.drop_database(&db).await;
}

#[tokio::test]
async fn rotation_changes_the_admin_password_once() {
    let server = server();
    let admin = support::unique("hp_t_r");
    server
        .sql(&[
            &format!("CREATE USER '{admin}'@'%' IDENTIFIED BY 'old-Secret-1'"),
            &format!("GRANT CREATE USER ON *.* TO '{admin}'@'%'"),
        ])
        .await;
    let provider = MysqlProvider::new();
    assert_eq!(provider.rotatable_secret(), Some("password"));
    let target = server.target_as(&support::unique("t"), &admin, Some("old-Secret-1"));
    let new = SecretValue::new("new-Secret-2");
    provider.rotate(&target, &new).await.unwrap();
    let login = |password: &str| {
        Command::new("mariadb")
            .env("MYSQL_PWD", password)
            .args([
                "--protocol=TCP",
                "-h",
                &server.host,
                "-P",
                &server.port.to_string(),
                "-u",
                &admin,
            ])
            .args(["-N", "-e", "SELECT 1"])
            .output()
            .unwrap()
    };
    assert!(
        !login("old-Secret-1").status.success(),
        "the old password stopped working"
    );
    assert!(login("new-Secret-2").status.success());
    provider.rotate(&target, &new).await.expect("rotating again is a no-op");
    let lost = server.target_as(&target.name, &admin, Some("wrong-Secret-3"));
    let error = provider
        .rotate(&lost, &SecretValue::new("other-Secret-4"))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("refused both"), "{error}");
    assert!(!error.contains("Secret-3") && !error.contains("Secret-4"), "{error}");
    server.sql(&[&format!("DROP USER '{admin}'@'%'")]).await;
}

#[tokio::test]
async fn a_wrong_admin_password_is_reported_without_it() {
    let server = server();
    let provider = MysqlProvider::new();
    let mut target = server.target(&support::unique("t"));
    target
        .config
        .insert("username".into(), json!(support::unique("hp_t_nobody")));
    target
        .secrets
        .insert("password", SecretValue::new("Never-Print-This-9"));
    let grant = grant(&target, "erin", "g", json!({"privileges": ["SELECT"], "on": "x.*"}));
    let error = provider.issue(&grant).await.unwrap_err();
    let shown = format!("{error} {error:?} {target:?} {grant:?} {provider:?}");
    assert!(shown.contains("refused the admin login"), "{shown}");
    assert!(!shown.contains("Never-Print-This-9"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_target_times_out_without_holding_up_another() {
    let server = server();
    let provider = std::sync::Arc::new(MysqlProvider::new());
    let mut silent = server.target(&support::unique("t"));
    silent.config.insert("host".into(), json!("127.0.0.1"));
    silent.config.insert("port".into(), json!(net::silent_port().await));
    silent.config.insert("connect_timeout_seconds".into(), json!(3));
    let stuck = grant(
        &silent,
        "fay",
        &support::unique("g"),
        json!({"privileges": ["SELECT"], "on": "x.*"}),
    );
    let start = Instant::now();
    let stuck_issue = {
        let provider = provider.clone();
        tokio::spawn(async move { provider.issue(&stuck).await })
    };

    let db = support::unique("hp_t_db_");
    server.database(&db).await;
    let live = grant(
        &server.target(&support::unique("t")),
        "fay",
        &support::unique("g"),
        select_grant(&db),
    );
    let metadata = provider.issue(&live).await.unwrap();
    provider.revoke(&live, &metadata).await.unwrap();
    assert!(
        !stuck_issue.is_finished(),
        "the live target did not wait for the silent one"
    );

    let error = stuck_issue.await.unwrap().unwrap_err().to_string();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert!(error.contains("within 3 s (connect_timeout_seconds)"), "{error}");
    server.drop_database(&db).await;
}
