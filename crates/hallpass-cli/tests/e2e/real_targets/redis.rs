//! redis targets with `redis-cli`: an ACL user per grant with the role's
//! rules, deleted and its connections killed on revoke.

use std::process::Command;
use std::time::Duration;

use super::support::redis_cli;
use super::{Proxy, Session, World, host_port, printed, run, support, wait_until};

/// An admin ACL user the test made as the default user: with every
/// command, or with only a few.
struct Redis {
    host: String,
    port: u16,
    admin: String,
    password: String,
    prefix: String,
}

impl Redis {
    fn new(world: &World, privileged: bool) -> Redis {
        let (host, port) = host_port(&support::redis_url());
        let name = &world.name;
        let fixture = Redis {
            host,
            port,
            admin: format!("{name}_admin"),
            password: format!("{name}-Admin\"Pw"),
            prefix: format!("{name}:"),
        };
        let rules: &[&str] = if privileged {
            &["~*", "&*", "+@all"]
        } else {
            &["+ping", "+info", "+acl|dryrun", "+client|list"]
        };
        let secret = format!(">{}", fixture.password);
        let mut args = vec!["ACL", "SETUSER", fixture.admin.as_str(), "on", secret.as_str()];
        args.extend_from_slice(rules);
        assert_eq!(fixture.admin_cli(&args), "OK");
        fixture
    }

    /// `redis-cli ARGS` as the default user; what it printed.
    fn admin_cli(&self, args: &[&str]) -> String {
        let output = run(Command::new("redis-cli")
            .args(["-h", &self.host, "-p", &self.port.to_string()])
            .args(args));
        assert!(output.status.success(), "{args:?}: {}", printed(&output));
        printed(&output).trim().to_string()
    }

    fn target(&self, port: u16) -> String {
        format!(
            "  type = \"redis\"\n  config = {{ host = \"{}\", port = {port}, username = \"{}\" }}\n  \
             secrets = {{ password = {} }}",
            self.host,
            self.admin,
            serde_json::to_string(&self.password).expect("json")
        )
    }

    fn grant(&self) -> String {
        format!("{{ acl = \"~{}* resetchannels +get +set +blpop +ping\" }}", self.prefix)
    }

    fn user_exists(&self, user: &str) -> bool {
        self.admin_cli(&["ACL", "USERS"])
            .lines()
            .any(|line| line.trim() == user)
    }

    fn users_starting(&self, prefix: &str) -> usize {
        let users = self.admin_cli(&["ACL", "USERS"]);
        users.lines().filter(|line| line.trim().starts_with(prefix)).count()
    }

    fn sessions_of(&self, user: &str) -> usize {
        let clients = self.admin_cli(&["CLIENT", "LIST"]);
        let field = format!(" user={user} ");
        clients.lines().filter(|line| line.contains(&field)).count()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.admin_cli(&["ACL", "DELUSER", &self.admin]));
    }
}

#[test]
fn a_redis_user_works_in_redis_cli_until_revoked_then_its_connection_ends_and_nothing_is_left() {
    let world = World::new("rd");
    let redis = Redis::new(&world, true);
    world.apply(&redis.target(redis.port), &redis.grant());
    let (code, report) = world.target_test();
    assert_eq!(code, Some(0), "{report}");

    let grant = world.request();
    let user = grant.env["REDIS_USER"].clone();
    let key = format!("{}greeting", redis.prefix);
    let set = run(&mut redis_cli(&grant.env, &["SET", &key, "hello"]));
    assert_eq!(printed(&set).trim(), "OK");
    let get = run(&mut redis_cli(&grant.env, &["GET", &key]));
    assert_eq!(printed(&get).trim(), "hello", "the granted commands run");
    let other = run(&mut redis_cli(&grant.env, &["SET", "elsewhere", "x"]));
    assert!(printed(&other).contains("NOPERM"), "{}", printed(&other));
    let flush = run(&mut redis_cli(&grant.env, &["FLUSHALL"]));
    assert!(printed(&flush).contains("NOPERM"), "{}", printed(&flush));
    world.assert_not_stored(&grant.env["REDISCLI_AUTH"]);
    world.assert_not_stored(&redis.password);

    let queue = format!("{}queue", redis.prefix);
    let mut session = Session::start(&mut redis_cli(&grant.env, &["BLPOP", &queue, "600"]));
    wait_until("the session to open", Duration::from_secs(10), || {
        redis.sessions_of(&user) == 1
    });

    world.revoke_verified(&grant.id);
    session.ended_within(Duration::from_secs(10));
    let again = run(&mut redis_cli(&grant.env, &["PING"]));
    assert!(printed(&again).contains("WRONGPASS"), "{}", printed(&again));
    assert!(!redis.user_exists(&user), "the ACL user is deleted");
    assert_eq!(redis.sessions_of(&user), 0, "no connection is left");
    redis.admin_cli(&["DEL", &key]);
}

#[test]
fn a_revoke_while_redis_is_down_is_revoke_failed_until_it_is_back() {
    let world = World::new("rddown");
    let redis = Redis::new(&world, true);
    let proxy = Proxy::start((redis.host.clone(), redis.port));
    world.apply(&redis.target(proxy.port), &redis.grant());
    let grant = world.request();
    let user = grant.env["REDIS_USER"].clone();
    world.revoke_while_down(&proxy, &grant.id, || redis.user_exists(&user));
}

#[test]
fn an_admin_without_acl_setuser_fails_target_test_and_activation_creating_nothing() {
    let world = World::new("rdweak");
    let redis = Redis::new(&world, false);
    world.apply(&redis.target(redis.port), &redis.grant());
    let (code, report) = world.target_test();
    assert_eq!(code, Some(1), "{report}");
    let fix = format!("ACL SETUSER {} +acl|setuser", redis.admin);
    assert!(report.contains(&fix), "{report}");

    let error = world.request_fails();
    assert!(error.contains(&fix), "{error}");
    assert_eq!(redis.users_starting(&format!("hp_{}", world.name)), 0, "nothing made");
}
