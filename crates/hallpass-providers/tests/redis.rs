//! The redis provider against a real Redis (HALLPASS_TEST_REDIS_URL, its
//! default user) and the real `redis-cli`: issued users work and only for
//! what the role grants, revocation ends open connections and leaves
//! nothing, issuing is idempotent, hostile values are passed as arguments
//! or refused, a weak admin is diagnosed and leaves nothing made, a dead
//! target fails fast, and the admin's password rotates.

mod net;
mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use chrono::Utc;
use hallpass_providers::redis::RedisProvider;
use hallpass_providers::{
    CredentialProvider, GrantContext, SecretCredential, SecretValue, Seed, TargetContext, TargetSecrets, Verification,
};
use redis::{ConnectionAddr, IntoConnectionInfo, Value};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server from HALLPASS_TEST_REDIS_URL.
struct Server {
    host: String,
    port: u16,
    client: redis::Client,
}

fn server() -> Server {
    let info = support::redis_url()
        .into_connection_info()
        .expect("HALLPASS_TEST_REDIS_URL");
    let (host, port) = match info.addr() {
        ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
        other => panic!("HALLPASS_TEST_REDIS_URL must be redis://HOST:PORT, not {other}"),
    };
    Server {
        host,
        port,
        client: redis::Client::open(info).unwrap(),
    }
}

impl Server {
    fn target(&self, name: &str) -> TargetContext {
        self.target_as(name, None, None)
    }

    fn target_as(&self, name: &str, user: Option<&str>, password: Option<&str>) -> TargetContext {
        let mut secrets = TargetSecrets::new();
        if let Some(password) = password {
            secrets.insert("password", SecretValue::new(password));
        }
        let mut config = json!({"host": self.host, "port": self.port})
            .as_object()
            .unwrap()
            .clone();
        if let Some(user) = user {
            config.insert("username".into(), json!(user));
        }
        TargetContext {
            name: name.into(),
            config,
            secrets,
            seed: Seed::for_grant(b"test credential key", name, "-"),
        }
    }

    /// One command as the default user.
    async fn cmd(&self, args: &[&str]) -> Value {
        let mut conn = self.client.get_multiplexed_async_connection().await.unwrap();
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    async fn user_exists(&self, user: &str) -> bool {
        self.cmd(&["ACL", "GETUSER", user]).await != Value::Nil
    }

    async fn connections(&self, user: &str) -> usize {
        let Value::BulkString(list) = self.cmd(&["CLIENT", "LIST"]).await else {
            panic!("CLIENT LIST")
        };
        let needle = format!(" user={user} ");
        String::from_utf8_lossy(&list)
            .lines()
            .filter(|line| line.contains(&needle))
            .count()
    }
}

fn grant(target: &TargetContext, principal: &str, grant_id: &str, acl: &str) -> GrantContext {
    let now = Utc::now();
    let mut grant = GrantContext::new(
        grant_id,
        principal,
        "cache",
        target.clone(),
        Seed::for_grant(b"test credential key", &target.name, grant_id),
        now,
        now + chrono::Duration::minutes(5),
    );
    grant.grant = json!({ "acl": acl }).as_object().unwrap().clone();
    grant
}

/// The real `redis-cli` with the credential's environment: it reads
/// REDISCLI_AUTH; host, port and user are passed as flags.
fn cli(credential: &SecretCredential, args: &[&str]) -> String {
    let output: Output = support::redis_cli(&credential.env, args)
        .output()
        .expect("redis-cli is installed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .trim()
    .to_string()
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n{arg}\r\n", arg.len()).into_bytes());
    }
    out
}

/// A connection logged in with the credential, kept open by the test.
async fn held_session(credential: &SecretCredential, server: &Server) -> tokio::net::TcpStream {
    let env = &credential.env;
    let mut stream = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
        .await
        .unwrap();
    stream
        .write_all(&resp(&["AUTH", &env["REDIS_USER"], &env["REDISCLI_AUTH"]]))
        .await
        .unwrap();
    stream.write_all(&resp(&["PING"])).await.unwrap();
    let mut reply = Vec::new();
    while !reply.ends_with(b"+PONG\r\n") {
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&reply));
        reply.extend_from_slice(&buf[..n]);
    }
    assert!(reply.starts_with(b"+OK\r\n"), "{}", String::from_utf8_lossy(&reply));
    stream
}

fn user_of(metadata: &Json) -> String {
    metadata["user"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn issued_user_works_only_as_granted_and_revoke_ends_it() {
    let server = server();
    let prefix = support::unique("hp_t_k");
    let key = format!("{prefix}:a");
    let other = format!("other:{prefix}");
    server.cmd(&["SET", &key, "hello"]).await;
    server.cmd(&["SET", &other, "no"]).await;
    let provider = RedisProvider::new();
    let target = server.target(&support::unique("t"));
    let grant = grant(
        &target,
        "alice",
        &support::unique("g"),
        &format!("~{prefix}:* +get +ping"),
    );
    provider.validate_grant(&grant.grant).unwrap();

    let metadata = provider.issue(&grant).await.unwrap();
    let user = user_of(&metadata);
    let credential = provider.credential(&grant, &metadata).await.unwrap();
    let password = credential.env["REDISCLI_AUTH"].clone();
    assert_eq!(credential.credential_type, "redis");
    assert_eq!(
        credential.token,
        format!("redis://{user}:{password}@{}:{}", server.host, server.port)
    );
    assert!(!metadata.to_string().contains(&password));
    assert!(!format!("{credential:?}{grant:?}{provider:?}").contains(&password));

    assert_eq!(cli(&credential, &["GET", &key]), "hello");
    assert!(cli(&credential, &["SET", &key, "x"]).contains("NOPERM"));
    assert!(cli(&credential, &["GET", &other]).contains("NOPERM"));

    let mut session = held_session(&credential, &server).await;
    assert_eq!(server.connections(&user).await, 1);
    provider.revoke(&grant, &metadata).await.unwrap();
    let mut buf = [0u8; 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), session.read(&mut buf)).await;
    assert!(
        matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
        "revoke left the session open: {ended:?}"
    );
    assert!(cli(&credential, &["GET", &key]).contains("WRONGPASS"));
    assert_eq!(provider.verify(&grant, &metadata).await.unwrap(), Verification::Gone);
    assert!(!server.user_exists(&user).await, "nothing left on the server");
    assert_eq!(server.connections(&user).await, 0);
    provider
        .revoke(&grant, &metadata)
        .await
        .expect("revoking twice succeeds");
    assert_eq!(provider.verify(&grant, &metadata).await.unwrap(), Verification::Gone);
    server.cmd(&["DEL", &key, &other]).await;
}

#[tokio::test]
async fn issuing_twice_gives_one_user_that_matches_the_grant() {
    let server = server();
    let prefix = support::unique("hp_t_k");
    let key = format!("{prefix}:a");
    server.cmd(&["SET", &key, "v"]).await;
    let provider = RedisProvider::new();
    let target = server.target(&support::unique("t"));
    let mut grant = grant(&target, "bob", &support::unique("g"), &format!("~{prefix}:* +get"));
    let first = provider.issue(&grant).await.unwrap();
    let user = user_of(&first);
    // Someone added a password and a command meanwhile.
    server.cmd(&["ACL", "SETUSER", &user, ">other-password", "+set"]).await;
    let second = provider.issue(&grant).await.unwrap();
    assert_eq!(first, second);
    let Value::Array(users) = server.cmd(&["ACL", "USERS"]).await else {
        panic!("ACL USERS")
    };
    let named = users
        .iter()
        .filter(|u| **u == Value::BulkString(user.clone().into_bytes()))
        .count();
    assert_eq!(named, 1);
    let credential = provider.credential(&grant, &second).await.unwrap();
    assert_eq!(cli(&credential, &["GET", &key]), "v");
    assert!(
        cli(&credential, &["SET", &key, "x"]).contains("NOPERM"),
        "the extra command was taken away"
    );
    let mut other = credential.clone();
    other.env.insert("REDISCLI_AUTH".into(), "other-password".into());
    assert!(
        cli(&other, &["GET", &key]).contains("WRONGPASS"),
        "only Hallpass's password works"
    );

    grant.grant = json!({"acl": format!("~{prefix}:* +set")}).as_object().unwrap().clone();
    provider.issue(&grant).await.unwrap();
    assert_eq!(cli(&credential, &["SET", &key, "x"]), "OK");
    assert!(cli(&credential, &["GET", &key]).contains("NOPERM"));
    let left = provider.verify(&grant, &second).await.unwrap();
    assert!(
        matches!(&left, Verification::Remaining(what) if what.contains(&user)),
        "{left:?}"
    );
    provider.revoke(&grant, &second).await.unwrap();
    assert!(!server.user_exists(&user).await);
    server.cmd(&["DEL", &key]).await;
}

#[tokio::test]
async fn hostile_principals_and_rules_are_arguments_or_refused() {
    let server = server();
    let prefix = format!("{}'\";é", support::unique("hp_t_k"));
    let key = format!("{prefix}:1");
    server.cmd(&["SET", &key, "odd"]).await;
    let provider = RedisProvider::new();
    let target = server.target(&support::unique("t"));
    let principal = format!("o'brien\"; ACL DELUSER default; \\ é {}", "x".repeat(200));
    let grant = grant(
        &target,
        &principal,
        &support::unique("g\r\n"),
        &format!("~{prefix}:* +get"),
    );
    let metadata = provider.issue(&grant).await.unwrap();
    let user = user_of(&metadata);
    assert!(user.len() <= 63 && user.starts_with("hp_o_brien__"), "{user}");
    let credential = provider.credential(&grant, &metadata).await.unwrap();
    assert_eq!(cli(&credential, &["GET", &key]), "odd");
    assert!(server.user_exists("default").await);
    provider.revoke(&grant, &metadata).await.unwrap();
    assert!(!server.user_exists(&user).await);
    server.cmd(&["DEL", &key]).await;

    for rule in [">typed-secret", "#0123", "nopass", "on", "reset", "(~x <typed-secret)"] {
        let block = json!({ "acl": format!("~app:* {rule}") });
        let error = provider
            .validate_grant(block.as_object().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("is refused"), "{rule}: {error}");
        assert!(!error.contains("typed-secret"), "{error}");
        let mut refused = grant.clone();
        refused.grant = block.as_object().unwrap().clone();
        assert!(provider.issue(&refused).await.is_err(), "issue checks the grant too");
    }
}

#[tokio::test]
async fn a_weak_admin_is_diagnosed_and_leaves_nothing_made() {
    let server = server();
    let provider = RedisProvider::new();
    let weak = support::unique("hp_t_w");
    let password = "Weak-Secret-77";
    let rules = ["on", ">Weak-Secret-77", "+ping", "+info", "+acl|dryrun", "+client|list"];
    server
        .cmd(&[&["ACL", "SETUSER", weak.as_str()][..], &rules[..]].concat())
        .await;
    let target = server.target_as(&support::unique("t"), Some(&weak), Some(password));
    let checks = provider.test(&target).await.unwrap();
    let check = |name: &str| {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name}: {checks:?}"))
            .clone()
    };
    assert!(
        check("connect").ok && check("connect").detail.contains("Redis 7"),
        "{checks:?}"
    );
    assert!(check("client|list").ok, "{checks:?}");
    for command in ["acl|setuser", "acl|deluser", "acl|getuser", "client|kill"] {
        let failed = check(command);
        assert!(
            !failed.ok && failed.detail.contains(&format!("ACL SETUSER {weak} +{command}")),
            "{failed:?}"
        );
    }
    let grant = grant(&target, "carol", &support::unique("g"), "~app:* +get");
    let error = provider.issue(&grant).await.unwrap_err().to_string();
    assert!(error.contains(&format!("ACL SETUSER {weak} +acl|setuser")), "{error}");
    assert!(
        !error.contains("deleted") && !error.contains("may have been made"),
        "refused, so nothing made: {error}"
    );
    let user = hallpass_providers::login_name("carol", &grant.grant_id, 63);
    assert!(!server.user_exists(&user).await, "nothing made");
    let derived = provider.credential(&grant, &json!({})).await.unwrap().env["REDISCLI_AUTH"].clone();
    assert!(!error.contains(password) && !error.contains(&derived), "{error}");

    // Without ACL DRYRUN or INFO: each command is tried on a test user.
    let weaker = support::unique("hp_t_w");
    server
        .cmd(&[
            "ACL",
            "SETUSER",
            &weaker,
            "on",
            ">Weak-Secret-77",
            "+ping",
            "+acl|getuser",
        ])
        .await;
    let target = server.target_as(&support::unique("t"), Some(&weaker), Some(password));
    let checks = provider.test(&target).await.unwrap();
    let tried = |name: &str| checks.iter().find(|c| c.name == name).unwrap().clone();
    assert!(tried("acl|getuser").ok, "{checks:?}");
    for command in ["acl|setuser", "acl|deluser", "client|kill", "client|list"] {
        let failed = tried(command);
        assert!(
            !failed.ok && failed.detail.contains(&format!("+{command}")),
            "{failed:?}"
        );
    }
    server.cmd(&["ACL", "DELUSER", &weak, &weaker]).await;
}

#[tokio::test]
async fn a_dead_target_fails_fast_and_clearly_then_a_live_one_works() {
    let server = server();
    let port = net::closed_port();
    let provider = RedisProvider::new();
    let name = support::unique("t");
    let mut target = server.target_as(&name, Some("hallpass"), Some("admin-pw-never-shown"));
    target.config.insert("host".into(), json!("127.0.0.1"));
    target.config.insert("port".into(), json!(port));
    let dead = grant(&target, "dave", &support::unique("g"), "~app:* +get");
    let start = Instant::now();
    let error = provider.issue(&dead).await.unwrap_err().to_string();
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    assert!(
        error.contains(&format!("127.0.0.1:{port}")) && error.contains("check `host`"),
        "{error}"
    );
    assert!(!error.contains("admin-pw-never-shown"), "{error}");
    let checks = provider.test(&target).await.unwrap();
    assert!(
        checks.len() == 1 && !checks[0].ok && checks[0].name == "connect",
        "{checks:?}"
    );

    let live = grant(&server.target(&name), "dave", &dead.grant_id, "~app:* +ping");
    let metadata = provider.issue(&live).await.unwrap();
    let credential = provider.credential(&live, &metadata).await.unwrap();
    assert_eq!(cli(&credential, &["PING"]), "PONG");
    let checks = provider.test(&live.target).await.unwrap();
    assert!(
        checks.iter().all(|c| c.ok) && checks.len() == 6,
        "the default user passes: {checks:?}"
    );
    provider.revoke(&live, &metadata).await.unwrap();
}

#[tokio::test]
async fn rotation_changes_the_admin_password_once_and_keeps_its_rules() {
    let server = server();
    let admin = support::unique("hp_t_r");
    server
        .cmd(&["ACL", "SETUSER", &admin, "on", ">Old-Secret-1", "~*", "&*", "+@all"])
        .await;
    let provider = RedisProvider::new();
    assert_eq!(provider.rotatable_secret(), Some("password"));
    let target = server.target_as(&support::unique("t"), Some(&admin), Some("Old-Secret-1"));
    let new = SecretValue::new("New-Secret-2");
    provider.rotate(&target, &new).await.unwrap();
    let login = |password: &str| {
        let mut credential = SecretCredential::new("redis", String::new(), Default::default());
        for (name, value) in [
            ("REDIS_HOST", server.host.clone()),
            ("REDIS_PORT", server.port.to_string()),
            ("REDIS_USER", admin.clone()),
            ("REDISCLI_AUTH", password.to_string()),
        ] {
            credential.env.insert(name.into(), value);
        }
        cli(&credential, &["PING"])
    };
    assert!(
        login("Old-Secret-1").contains("WRONGPASS"),
        "the old password stopped working"
    );
    assert_eq!(login("New-Secret-2"), "PONG");
    let Value::Array(details) = server.cmd(&["ACL", "GETUSER", &admin]).await else {
        panic!()
    };
    assert!(
        details.contains(&Value::BulkString(b"+@all".to_vec())),
        "rules kept: {details:?}"
    );
    provider.rotate(&target, &new).await.expect("rotating again is a no-op");
    let lost = server.target_as(&target.name, Some(&admin), Some("Wrong-Secret-3"));
    let error = provider
        .rotate(&lost, &SecretValue::new("Other-Secret-4"))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("refused both"), "{error}");
    assert!(!error.contains("Secret-3") && !error.contains("Secret-4"), "{error}");

    // An admin without a password (like `default` out of the box) is not given one.
    let open = support::unique("hp_t_n");
    server
        .cmd(&["ACL", "SETUSER", &open, "on", "nopass", "~*", "+@all"])
        .await;
    let target = server.target_as(&support::unique("t"), Some(&open), Some("anything"));
    let error = provider.rotate(&target, &new).await.unwrap_err().to_string();
    assert!(
        error.contains("has no password (nopass)") && error.contains("lock them all out"),
        "{error}"
    );
    let Value::Array(details) = server.cmd(&["ACL", "GETUSER", &open]).await else {
        panic!()
    };
    assert!(format!("{details:?}").contains("nopass"), "unchanged: {details:?}");
    server.cmd(&["ACL", "DELUSER", &admin, &open]).await;
}

#[tokio::test]
async fn a_wrong_admin_password_is_reported_without_it() {
    let server = server();
    let provider = RedisProvider::new();
    let target = server.target_as(
        &support::unique("t"),
        Some(&support::unique("hp_t_nobody")),
        Some("Never-Print-This-9"),
    );
    let grant = grant(&target, "erin", "g", "~app:* +get");
    let error = provider.issue(&grant).await.unwrap_err();
    let shown = format!("{error} {error:?} {target:?} {grant:?} {provider:?}");
    assert!(shown.contains("refused the admin login"), "{shown}");
    assert!(!shown.contains("Never-Print-This-9"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_target_times_out_without_holding_up_another() {
    let server = server();
    let provider = std::sync::Arc::new(RedisProvider::new());
    let mut silent = server.target(&support::unique("t"));
    silent.config.insert("host".into(), json!("127.0.0.1"));
    silent.config.insert("port".into(), json!(net::silent_port().await));
    silent.config.insert("connect_timeout_seconds".into(), json!(3));
    silent.config.insert("command_timeout_seconds".into(), json!(3));
    let stuck = grant(&silent, "fay", &support::unique("g"), "~app:* +get");
    let start = Instant::now();
    let stuck_issue = {
        let provider = provider.clone();
        tokio::spawn(async move { provider.issue(&stuck).await })
    };

    let live = grant(
        &server.target(&support::unique("t")),
        "fay",
        &support::unique("g"),
        "~app:* +ping",
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
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert!(error.contains("no answer within command_timeout_seconds"), "{error}");
    assert!(
        error.contains("may have been made; revoking the grant deletes it"),
        "{error}"
    );
}
