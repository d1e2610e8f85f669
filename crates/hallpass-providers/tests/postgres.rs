//! The postgres provider against a real PostgreSQL server (a superuser at
//! HALLPASS_TEST_POSTGRES_URL sets each test up; the provider works as a
//! non-superuser CREATEROLE admin) and the real `psql` client.

mod support;

#[path = "postgres/fixture.rs"]
mod fixture;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fixture::{Fixture, psql, psql_command, quote, stderr, stdout};
use hallpass_providers::postgres::PostgresProvider;
use hallpass_providers::{CredentialProvider, ProviderError, SecretValue, TestCheck, Verification};
use serde_json::{Value, json};

fn username(metadata: &Value) -> String {
    metadata["username"].as_str().unwrap().to_string()
}

fn check<'a>(checks: &'a [TestCheck], name: &str) -> &'a TestCheck {
    checks
        .iter()
        .find(|check| check.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn an_issued_login_runs_what_its_roles_allow_and_nothing_else() {
    let fx = Fixture::new("hpdb_").await;
    let provider = PostgresProvider::new();
    let grant = fx.read_grant("alice@example.com");
    let metadata = provider.issue(&grant).await.unwrap();
    let login = username(&metadata);
    assert!(login.starts_with("hp_alice_example_com_"), "{login}");
    assert_eq!(metadata["roles"], json!([fx.app_read]));
    assert_eq!(metadata["database"], json!(fx.database));
    assert_eq!(metadata["sslmode"], json!("disable"));
    assert_eq!(metadata["valid_until"], json!(grant.expires_at.to_rfc3339()));

    let credential = provider.credential(&grant, &metadata).await.unwrap();
    let password = grant.derive_secret("password");
    assert_eq!(credential.env["PGPASSWORD"], password.expose());
    assert!(!metadata.to_string().contains(password.expose()));
    assert!(fx.password_matches(&login, password.expose()).await);
    let valid_until: String = fx
        .su
        .query_one(
            "SELECT to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM pg_roles WHERE rolname = $1",
            &[&login],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(valid_until, grant.expires_at.format("%Y-%m-%d %H:%M:%S").to_string());

    let read = psql(&credential, &[], "SELECT count(*) FROM orders").await;
    assert!(read.status.success(), "{}", stderr(&read));
    assert_eq!(stdout(&read), "3");
    let who = psql(&credential, &[], "SELECT current_user").await;
    assert_eq!(stdout(&who), login);
    // The URI alone (no PG* variables) works too.
    let by_uri = psql_command(&Default::default(), &[], "SELECT count(*) FROM orders")
        .arg(&credential.token)
        .output()
        .await
        .unwrap();
    assert_eq!(stdout(&by_uri), "3", "{}", stderr(&by_uri));

    for forbidden in [
        "INSERT INTO orders VALUES (4)",
        "SELECT * FROM secrets",
        "CREATE TABLE mine (x int)",
    ] {
        let output = psql(&credential, &[], forbidden).await;
        assert!(!output.status.success(), "{forbidden} was allowed");
        assert!(
            stderr(&output).contains("permission denied"),
            "{forbidden}: {}",
            stderr(&output)
        );
    }

    provider.revoke(&grant, &metadata).await.unwrap();
    assert_eq!(fx.roles_named(&login).await, 0);
    fx.cleanup().await;
}

#[tokio::test]
async fn revoke_ends_open_sessions_and_leaves_nothing() {
    let fx = Fixture::new("hpdb_").await;
    let provider = PostgresProvider::new();
    let grant = fx.read_grant("bob");
    let metadata = provider.issue(&grant).await.unwrap();
    let login = username(&metadata);
    let credential = provider.credential(&grant, &metadata).await.unwrap();

    let sleeper = psql_command(&credential.env, &[], "SELECT pg_sleep(60)")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut config = fixture::superuser_config();
    config
        .user(&login)
        .password(grant.derive_secret("password").expose())
        .dbname(&fx.database);
    let held = fixture::connect(&config).await;
    let waited = Instant::now();
    while fx.sessions_of(&login).await < 2 {
        assert!(
            waited.elapsed() < Duration::from_secs(15),
            "the sessions never showed up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    provider.revoke(&grant, &metadata).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), sleeper.wait_with_output())
        .await
        .expect("psql's session was not ended by the revoke")
        .unwrap();
    assert!(!ended.status.success());
    assert!(
        stderr(&ended).contains("terminating connection due to administrator command"),
        "{}",
        stderr(&ended)
    );
    assert!(
        held.simple_query("SELECT 1").await.is_err(),
        "the held session still answers"
    );
    assert_eq!(fx.sessions_of(&login).await, 0);
    assert_eq!(fx.roles_named(&login).await, 0);

    let again = psql(&credential, &[], "SELECT 1").await;
    assert!(!again.status.success());
    // A server that trusts local logins says the role is gone; one that
    // checks passwords does not say whether a role exists.
    assert!(
        ["does not exist", "password authentication failed"]
            .iter()
            .any(|refusal| stderr(&again).contains(refusal)),
        "{}",
        stderr(&again)
    );
    assert_eq!(provider.verify(&grant, &metadata).await.unwrap(), Verification::Gone);
    fx.cleanup().await;
}

#[tokio::test]
async fn a_drop_that_fails_still_takes_the_login_its_sessions_and_its_roles() {
    let fx = Fixture::new("hpdb_").await;
    let provider = PostgresProvider::new();
    let grant = fx.read_grant("erin");
    let metadata = provider.issue(&grant).await.unwrap();
    let login = username(&metadata);
    let mut config = fixture::superuser_config();
    config
        .user(&login)
        .password(grant.derive_secret("password").expose())
        .dbname(&fx.database);
    let held = fixture::connect(&config).await;
    // An object of the login's in another database: DROP OWNED in the
    // target's database cannot reach it, so the drop fails.
    let elsewhere = fixture::connect(&fixture::superuser_config()).await;
    let table = support::unique("hp_owned_");
    elsewhere
        .batch_execute(&format!(
            "CREATE TABLE {t} (x int); ALTER TABLE {t} OWNER TO {l}",
            t = quote(&table),
            l = quote(&login)
        ))
        .await
        .unwrap();

    let error = provider.revoke(&grant, &metadata).await.unwrap_err().to_string();
    assert!(error.contains("outside database"), "{error}");
    assert!(error.contains("REASSIGN OWNED BY"), "{error}");
    // Everything before the drop was committed, in its own transactions.
    let can_login: bool = fx
        .su
        .query_one("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", &[&login])
        .await
        .unwrap()
        .get(0);
    assert!(!can_login, "the login can still log in");
    assert_eq!(fx.memberships(&login).await, Vec::<String>::new());
    assert!(
        held.simple_query("SELECT 1").await.is_err(),
        "the held session still answers"
    );
    assert_eq!(fx.sessions_of(&login).await, 0);
    assert!(matches!(
        provider.verify(&grant, &metadata).await.unwrap(),
        Verification::Remaining(left) if left.contains("NOLOGIN") && !left.contains("session")
    ));

    // Once the object is gone, the retry drops the login.
    elsewhere
        .batch_execute(&format!("DROP TABLE {}", quote(&table)))
        .await
        .unwrap();
    provider.revoke(&grant, &metadata).await.unwrap();
    assert_eq!(fx.roles_named(&login).await, 0);
    assert_eq!(provider.verify(&grant, &metadata).await.unwrap(), Verification::Gone);
    fx.cleanup().await;
}

#[tokio::test]
async fn sessions_of_a_login_dropped_by_hand_are_found_by_its_recorded_oid() {
    let fx = Fixture::new("hpdb_").await;
    let provider = PostgresProvider::new();
    let grant = fx.read_grant("grace");
    let metadata = provider.issue(&grant).await.unwrap();
    let login = username(&metadata);
    let mut config = fixture::superuser_config();
    config
        .user(&login)
        .password(grant.derive_secret("password").expose())
        .dbname(&fx.database);
    let held = fixture::connect(&config).await;
    // PostgreSQL drops a role with sessions open; they stay, nameless.
    fx.su
        .batch_execute(&format!("DROP OWNED BY {0}; DROP ROLE {0}", quote(&login)))
        .await
        .unwrap();
    assert!(held.simple_query("SELECT 1").await.is_ok());
    assert!(matches!(
        provider.verify(&grant, &metadata).await.unwrap(),
        Verification::Remaining(left) if left == "1 session(s) of it are still open"
    ));

    provider.revoke(&grant, &metadata).await.unwrap();
    assert!(
        held.simple_query("SELECT 1").await.is_err(),
        "the held session still answers"
    );
    assert_eq!(provider.verify(&grant, &metadata).await.unwrap(), Verification::Gone);
    fx.cleanup().await;
}

#[tokio::test]
async fn the_drop_never_runs_after_a_membership_revoke_failed() {
    let fx = Fixture::new("hpdb_").await;
    let provider = PostgresProvider::new();
    let grant = fx.read_grant("frank");
    let metadata = provider.issue(&grant).await.unwrap();
    let login = username(&metadata);
    // A membership the admin may not take away: in a superuser role, given
    // by a superuser.
    let mighty = support::unique("hp_mighty_");
    fx.su
        .batch_execute(&format!(
            "CREATE ROLE {m} NOLOGIN SUPERUSER; GRANT {m} TO {l}",
            m = quote(&mighty),
            l = quote(&login)
        ))
        .await
        .unwrap();

    let error = provider.revoke(&grant, &metadata).await.unwrap_err().to_string();
    assert!(error.contains("revoking the login's roles"), "{error}");
    // The statements sent after the failed one did not run: the login is
    // still there, NOLOGIN, with all its roles.
    assert_eq!(fx.roles_named(&login).await, 1);
    let mut roles = vec![fx.app_read.clone(), mighty.clone()];
    roles.sort();
    assert_eq!(fx.memberships(&login).await, roles);
    assert!(matches!(
        provider.verify(&grant, &metadata).await.unwrap(),
        Verification::Remaining(left) if left.contains("NOLOGIN")
    ));

    fx.su
        .batch_execute(&format!(
            "REVOKE {m} FROM {l}; DROP ROLE {m}",
            m = quote(&mighty),
            l = quote(&login)
        ))
        .await
        .unwrap();
    provider.revoke(&grant, &metadata).await.unwrap();
    assert_eq!(fx.roles_named(&login).await, 0);
    fx.cleanup().await;
}

#[tokio::test]
async fn issuing_again_makes_the_login_match_and_revoking_twice_succeeds() {
    let fx = Fixture::new("hpdb_").await;
    let provider = PostgresProvider::new();
    let mut grant = fx.read_grant("carol");
    let first = provider.issue(&grant).await.unwrap();
    let second = provider.issue(&grant).await.unwrap();
    let login = username(&first);
    assert_eq!(first, second);
    assert_eq!(fx.roles_named(&login).await, 1);
    let credential = provider.credential(&grant, &second).await.unwrap();
    assert_eq!(
        credential.token,
        provider.credential(&grant, &first).await.unwrap().token
    );
    assert_eq!(
        stdout(&psql(&credential, &[], "SELECT count(*) FROM orders").await),
        "3"
    );

    // Someone changed the login by hand, and the grant's block changed:
    // issuing again puts everything back as the grant says.
    let app_write = support::unique("app_write_");
    fx.su
        .batch_execute(&format!(
            "CREATE ROLE {w} NOLOGIN; GRANT INSERT ON orders TO {w};
             ALTER ROLE {l} NOLOGIN PASSWORD 'changed' VALID UNTIL '2001-01-01' CONNECTION LIMIT 50;
             GRANT pg_read_all_settings TO {l};",
            w = quote(&app_write),
            l = quote(&login)
        ))
        .await
        .unwrap();
    fx.let_admin_grant(&app_write).await;
    fx.let_admin_grant("pg_read_all_settings").await;
    grant.grant = json!({"roles": [fx.app_read, app_write], "connection_limit": 2})
        .as_object()
        .unwrap()
        .clone();
    let third = provider.issue(&grant).await.unwrap();
    assert_eq!(third["connection_limit"], json!(2));
    let mut expected = vec![fx.app_read.clone(), app_write.clone()];
    expected.sort();
    assert_eq!(fx.memberships(&login).await, expected);
    assert!(
        fx.password_matches(&login, grant.derive_secret("password").expose())
            .await
    );
    let row = fx
        .su
        .query_one(
            "SELECT rolcanlogin, rolconnlimit, rolvaliduntil > now() FROM pg_roles WHERE rolname = $1",
            &[&login],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, bool>(0), row.get::<_, i32>(1), row.get::<_, bool>(2)),
        (true, 2, true)
    );
    let insert = psql(&credential, &[], "INSERT INTO orders VALUES (9)").await;
    assert!(insert.status.success(), "{}", stderr(&insert));

    provider.revoke(&grant, &third).await.unwrap();
    provider.revoke(&grant, &third).await.unwrap();
    assert_eq!(provider.verify(&grant, &third).await.unwrap(), Verification::Gone);
    assert_eq!(fx.roles_named(&login).await, 0);
    fx.su
        .batch_execute(&format!("DROP OWNED BY {0}; DROP ROLE {0}", quote(&app_write)))
        .await
        .unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn a_role_hallpass_did_not_create_is_left_alone() {
    let fx = Fixture::new("hpdb_").await;
    let provider = PostgresProvider::new();
    let grant = fx.read_grant("mallory");
    let login = hallpass_providers::login_name(&grant.principal, &grant.grant_id, 63);
    fx.su
        .batch_execute(&format!("CREATE ROLE {} LOGIN", quote(&login)))
        .await
        .unwrap();
    let refused = provider.issue(&grant).await.unwrap_err().to_string();
    assert!(refused.contains("Hallpass did not create"), "{refused}");
    let refused = provider.revoke(&grant, &json!({})).await.unwrap_err().to_string();
    assert!(refused.contains("leaves it untouched"), "{refused}");
    let can_login: bool = fx
        .su
        .query_one("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", &[&login])
        .await
        .unwrap()
        .get(0);
    assert!(can_login, "the foreign role was changed");
    assert!(matches!(
        provider.verify(&grant, &json!({})).await.unwrap(),
        Verification::Remaining(left) if left.contains("still exists")
    ));
    fx.su
        .batch_execute(&format!("DROP ROLE {}", quote(&login)))
        .await
        .unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn hostile_names_are_quoted_never_executed() {
    // The database's own name is hostile too: it is in the admin's
    // connection, the credential's URI and REASSIGN OWNED's database.
    let fx = Fixture::new("hp db'\"; \\ ").await;
    let provider = PostgresProvider::new();
    let canary = support::unique("canary_");
    let hostile: Vec<String> = [
        format!("r\"; DROP ROLE {}; --", quote(&canary)),
        "o'brien\\'; DROP TABLE orders; --".to_string(),
        "rôle ünïcødé ☃ $$ $x$".to_string(),
    ]
    .into_iter()
    .map(|name| format!("{name} {}", support::unique("")).chars().take(40).collect())
    .collect();
    fx.su
        .batch_execute(&format!("CREATE ROLE {} NOLOGIN", quote(&canary)))
        .await
        .unwrap();
    for role in &hostile {
        fx.su
            .batch_execute(&format!(
                "CREATE ROLE {0} NOLOGIN; GRANT SELECT ON orders TO {0}",
                quote(role)
            ))
            .await
            .unwrap();
        fx.let_admin_grant(role).await;
    }
    let principal = format!("o'brien\"; DROP ROLE {}; -- \\ é☃ {}", quote(&canary), "x".repeat(200));
    let roles: Vec<&str> = hostile.iter().map(String::as_str).collect();
    let grant = fx.grant(fx.target(), &principal, "grant-'\";--", &roles);
    let metadata = provider.issue(&grant).await.unwrap();
    let login = username(&metadata);
    assert!(login.len() <= 63 && login.starts_with("hp_o_brien"), "{login}");
    let mut expected = hostile.clone();
    expected.sort();
    assert_eq!(fx.memberships(&login).await, expected);
    let comment: String = fx
        .su
        .query_one(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&login],
        )
        .await
        .unwrap()
        .get(0);
    assert!(comment.contains(&principal), "{comment}");
    let credential = provider.credential(&grant, &metadata).await.unwrap();
    let read = psql(&credential, &[], "SELECT count(*) FROM orders").await;
    assert_eq!(stdout(&read), "3", "{}", stderr(&read));
    let by_uri = psql_command(&Default::default(), &[], "SELECT current_database()")
        .arg(&credential.token)
        .output()
        .await
        .unwrap();
    assert_eq!(stdout(&by_uri), fx.database, "{}", stderr(&by_uri));

    provider.revoke(&grant, &metadata).await.unwrap();
    assert_eq!(fx.roles_named(&login).await, 0);
    assert_eq!(fx.roles_named(&canary).await, 1, "an injection dropped the canary");
    for role in &hostile {
        assert_eq!(fx.roles_named(role).await, 1, "{role} was dropped");
    }

    // Longer than PostgreSQL keeps: refused, not cut into another name.
    let long = "x".repeat(200);
    let mut too_long = fx.grant(fx.target(), "dave", &support::unique("g"), &[&long]);
    let error = provider.validate_grant(&too_long.grant).unwrap_err().to_string();
    assert!(error.contains("at most 63 bytes"), "{error}");
    too_long.grant.insert("roles".into(), json!([long]));
    let error = provider.issue(&too_long).await.unwrap_err().to_string();
    assert!(error.contains("at most 63 bytes"), "{error}");
    let none = hallpass_providers::login_name("dave", &too_long.grant_id, 63);
    assert_eq!(fx.roles_named(&none).await, 0);

    fx.su
        .batch_execute(&format!("DROP ROLE {}", quote(&canary)))
        .await
        .unwrap();
    for role in &hostile {
        fx.su
            .batch_execute(&format!("DROP OWNED BY {0}; DROP ROLE {0}", quote(role)))
            .await
            .unwrap();
    }
    fx.cleanup().await;
}

#[tokio::test]
async fn an_admin_without_createrole_is_reported_and_issue_leaves_nothing() {
    let fx = Fixture::new("hpdb_").await;
    let provider = PostgresProvider::new();
    let all_ok = provider.test(&fx.target()).await.unwrap();
    assert!(all_ok.iter().all(|check| check.ok), "{all_ok:?}");
    assert_eq!(
        all_ok.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["settings", "connect", "createrole", "terminate_sessions", "database"]
    );

    fx.su
        .batch_execute(&format!(
            "ALTER ROLE {0} NOCREATEROLE; REVOKE pg_signal_backend FROM {0}",
            quote(&fx.admin)
        ))
        .await
        .unwrap();
    let checks = provider.test(&fx.target()).await.unwrap();
    assert!(check(&checks, "connect").ok, "{checks:?}");
    let createrole = check(&checks, "createrole");
    assert!(!createrole.ok);
    let admin = quote(&fx.admin);
    assert_eq!(
        createrole.detail,
        format!("user {admin} lacks CREATEROLE: ALTER ROLE {admin} CREATEROLE (as a superuser)")
    );
    let terminate = check(&checks, "terminate_sessions");
    assert!(
        !terminate.ok
            && terminate
                .detail
                .contains(&format!("GRANT pg_signal_backend TO {admin}"))
    );

    let grant = fx.read_grant("erin");
    let login = hallpass_providers::login_name(&grant.principal, &grant.grant_id, 63);
    let error = provider.issue(&grant).await.unwrap_err().to_string();
    assert!(
        error.contains(&format!("lacks CREATEROLE: ALTER ROLE {admin} CREATEROLE")),
        "{error}"
    );
    assert!(error.contains("rolled back"), "{error}");
    assert_eq!(fx.roles_named(&login).await, 0);

    // With CREATEROLE back, a grant whose second role is missing fails at
    // that GRANT and leaves no login behind: one transaction.
    fx.su
        .batch_execute(&format!("ALTER ROLE {admin} CREATEROLE"))
        .await
        .unwrap();
    let missing = support::unique("missing_");
    let broken = fx.grant(fx.target(), "erin", &grant.grant_id, &[&fx.app_read, &missing]);
    let error = provider.issue(&broken).await.unwrap_err().to_string();
    assert!(
        error.contains(&format!("role {} does not exist", quote(&missing))),
        "{error}"
    );
    assert!(error.contains("nothing was created"), "{error}");
    assert_eq!(fx.roles_named(&login).await, 0);
    let metadata = provider.issue(&grant).await.unwrap();
    provider.revoke(&grant, &metadata).await.unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn a_dead_target_fails_fast_and_a_silent_one_blocks_no_other() {
    let fx = Fixture::new("hpdb_").await;
    let provider = PostgresProvider::new();
    let live = fx.read_grant("frank");
    let metadata = provider.issue(&live).await.unwrap();
    let login = username(&metadata);

    // Nothing listens: refused at once, the revoke says where and what.
    let port = closed_port();
    let mut dead_config = fx.config();
    dead_config.insert("port".into(), json!(port));
    let mut dead = live.clone();
    dead.target = fx.target_with(dead_config, Some(&fx.admin_password));
    let started = Instant::now();
    let error = provider.revoke(&dead, &metadata).await.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(error.contains("check `host` and `port`"), "{error}");
    assert!(provider.issue(&dead).await.is_err());

    // Accepts TCP but never answers: the connect timeout ends the wait,
    // and meanwhile another target is served at once.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut silent_config = fx.config();
    silent_config.insert("port".into(), json!(silent.local_addr().unwrap().port()));
    silent_config.insert("connect_timeout_seconds".into(), json!(3));
    let mut stuck = fx.read_grant("grace");
    stuck.target = fx.target_with(silent_config, None);
    stuck.target.name = support::unique("silent-");
    let other = fx.read_grant("heidi");
    let started = Instant::now();
    let (stuck_result, other_result) = tokio::join!(provider.issue(&stuck), async {
        let result = provider.issue(&other).await;
        (result, started.elapsed())
    });
    let stuck_error = stuck_result.unwrap_err().to_string();
    let waited = started.elapsed();
    assert!(stuck_error.contains("no answer within 3 s"), "{stuck_error}");
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    let (other_metadata, other_took) = other_result;
    let other_metadata = other_metadata.unwrap();
    assert!(
        other_took < Duration::from_millis(2500),
        "the other target waited {other_took:?}"
    );
    provider.revoke(&other, &other_metadata).await.unwrap();

    // Pointed at the live server again, the earlier revoke goes through.
    assert_eq!(fx.roles_named(&login).await, 1);
    provider.revoke(&live, &metadata).await.unwrap();
    assert_eq!(fx.roles_named(&login).await, 0);
    assert_eq!(provider.verify(&live, &metadata).await.unwrap(), Verification::Gone);
    drop(silent);
    fx.cleanup().await;
}

#[tokio::test]
async fn rotating_the_admin_password() {
    let fx = Fixture::new("hpdb_").await;
    let provider = PostgresProvider::new();
    assert_eq!(provider.rotatable_secret(), Some("password"));
    let old = fx.target();
    // Warm the pool with the old secrets.
    let before = fx.read_grant("ivan");
    let before_metadata = provider.issue(&before).await.unwrap();

    let new_password = format!("N3w-{}-Pass", support::unique("pw"));
    let new = SecretValue::new(new_password.clone());
    provider.rotate(&old, &new).await.unwrap();
    assert!(fx.password_matches(&fx.admin, &new_password).await);
    assert!(!fx.password_matches(&fx.admin, &fx.admin_password).await);

    let rotated = fx.target_with(fx.config(), Some(&new_password));
    let checks = provider.test(&rotated).await.unwrap();
    assert!(checks.iter().all(|check| check.ok), "{checks:?}");
    let mut after = fx.read_grant("judy");
    after.target = rotated.clone();
    let metadata = provider.issue(&after).await.unwrap();
    provider.revoke(&after, &metadata).await.unwrap();
    let mut before_rotated = before.clone();
    before_rotated.target = rotated.clone();
    provider.revoke(&before_rotated, &before_metadata).await.unwrap();

    // Again (a retry after a crash, with either secret): still fine.
    provider.rotate(&rotated, &new).await.unwrap();
    provider.rotate(&old, &new).await.unwrap();
    assert!(fx.password_matches(&fx.admin, &new_password).await);
    fx.cleanup().await;
}

fn assert_hidden(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "a secret leaked into: {text}");
    }
    assert!(!text.contains("SCRAM-SHA-256$"), "a verifier leaked into: {text}");
}

#[tokio::test]
async fn secrets_never_appear_in_errors_or_debug_output() {
    let fx = Fixture::new("hpdb_").await;
    let provider = PostgresProvider::new();
    let grant = fx.read_grant("kim");
    let grant_password = grant.derive_secret("password");
    let secrets = [fx.admin_password.as_str(), grant_password.expose()];
    let mut seen: Vec<String> = Vec::new();

    let mut wrong_db = fx.config();
    wrong_db.insert("database".into(), json!(support::unique("nodb_")));
    let mut failing = grant.clone();
    failing.target = fx.target_with(wrong_db, Some(&fx.admin_password));
    let error = provider.issue(&failing).await.unwrap_err();
    assert!(error.to_string().contains("check `database`"), "{error}");
    seen.push(format!("{error} {error:?}"));
    let checks = provider.test(&failing.target).await.unwrap();
    assert!(!check(&checks, "connect").ok);
    seen.push(format!("{checks:?}"));

    let mut closed = fx.config();
    closed.insert("port".into(), json!(closed_port()));
    let target = fx.target_with(closed, Some(&fx.admin_password));
    let error = provider
        .rotate(&target, &SecretValue::new("An0ther-Secret-Value"))
        .await
        .unwrap_err();
    seen.push(format!("{error} {error:?}"));
    assert_hidden(&error.to_string(), &["An0ther-Secret-Value"]);

    let mut missing = grant.clone();
    missing.grant = json!({"roles": [support::unique("missing_")]})
        .as_object()
        .unwrap()
        .clone();
    let error = provider.issue(&missing).await.unwrap_err();
    seen.push(format!("{error} {error:?}"));

    let metadata = provider.issue(&grant).await.unwrap();
    let credential = provider.credential(&grant, &metadata).await.unwrap();
    seen.push(format!(
        "{metadata} {credential:?} {grant:?} {provider:?} {:?}",
        fx.target()
    ));
    seen.push(format!("{:?}", provider.test(&fx.target()).await.unwrap()));
    provider.revoke(&grant, &metadata).await.unwrap();

    for text in &seen {
        assert_hidden(text, &secrets);
    }
    let error = ProviderError::Credential(String::new());
    assert_hidden(&format!("{error:?}"), &secrets);
    fx.cleanup().await;
}

#[tokio::test]
async fn sslmodes_check_the_servers_certificate() {
    let fx = Fixture::new("hpdb_").await;
    let provider = PostgresProvider::new();
    let (ca_pem, certificate, key) = fixture::certificates();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let (other_ca, _, _) = fixture::certificates();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca).unwrap();
    let upstream: SocketAddr = format!("{}:{}", fx.host, fx.port).parse().unwrap();
    let port = fixture::tls_proxy(upstream, certificate, key).await;

    let target = |host: &str, sslmode: &str, ca: Option<&std::path::Path>| {
        let mut config = fx.config();
        config.insert("host".into(), json!(host));
        config.insert("port".into(), json!(port));
        config.insert("sslmode".into(), json!(sslmode));
        if let Some(ca) = ca {
            config.insert("ca_file".into(), json!(ca));
        }
        fx.target_with(config, Some(&fx.admin_password))
    };
    let connects = async |target| {
        let checks = provider.test(&target).await.unwrap();
        let connect = check(&checks, "connect");
        (connect.ok, connect.detail.clone())
    };
    for (host, sslmode, ca, ok) in [
        ("localhost", "verify-full", Some(ca_file.as_path()), true),
        ("127.0.0.1", "verify-full", Some(ca_file.as_path()), false),
        ("127.0.0.1", "verify-ca", Some(ca_file.as_path()), true),
        ("localhost", "verify-full", Some(other_ca_file.as_path()), false),
        ("localhost", "verify-ca", Some(other_ca_file.as_path()), false),
        ("localhost", "verify-full", None, false),
        ("127.0.0.1", "require", None, true),
    ] {
        let (connected, detail) = connects(target(host, sslmode, ca)).await;
        assert_eq!(connected, ok, "{host} {sslmode} {ca:?}: {detail}");
        if !ok {
            assert!(detail.contains("certificate"), "{detail}");
        }
    }

    let mut plain = fx.config();
    plain.insert("port".into(), json!(fixture::server_without_tls().await));
    plain.insert("sslmode".into(), json!("require"));
    let checks = provider.test(&fx.target_with(plain, None)).await.unwrap();
    let connect = check(&checks, "connect");
    assert!(!connect.ok);
    assert!(connect.detail.contains("the server has TLS off"), "{}", connect.detail);

    // A whole grant over verified TLS, used by psql with the CA.
    let mut grant = fx.read_grant("liam");
    grant.target = target("localhost", "verify-full", Some(&ca_file));
    let metadata = provider.issue(&grant).await.unwrap();
    assert_eq!(metadata["sslmode"], json!("verify-full"));
    let credential = provider.credential(&grant, &metadata).await.unwrap();
    assert_eq!(credential.env["PGSSLMODE"], "verify-full");
    let ca = ca_file.to_str().unwrap();
    let read = psql(&credential, &[("PGSSLROOTCERT", ca)], "SELECT count(*) FROM orders").await;
    assert_eq!(stdout(&read), "3", "{}", stderr(&read));
    let untrusted = psql(
        &credential,
        &[("PGSSLROOTCERT", other_ca_file.to_str().unwrap())],
        "SELECT 1",
    )
    .await;
    assert!(!untrusted.status.success());
    provider.revoke(&grant, &metadata).await.unwrap();
    assert_eq!(provider.verify(&grant, &metadata).await.unwrap(), Verification::Gone);
    fx.cleanup().await;
}
