//! mysql targets with the `mariadb` client: an account per grant with the
//! role's privileges only, killed and dropped on revoke.

use std::process::Command;
use std::time::Duration;

use super::support::mariadb;
use super::{Proxy, Session, World, host_port, printed, run, support, wait_until};

/// What the test made as root: a database with one table, and an admin
/// account with (or without) the privileges docs/targets.md lists.
struct Mysql {
    host: String,
    port: u16,
    admin: String,
    password: String,
    database: String,
}

impl Mysql {
    fn new(world: &World, privileged: bool) -> Mysql {
        let (host, port) = host_port(&support::mysql_url());
        let name = &world.name;
        let fixture = Mysql {
            host,
            port,
            admin: format!("{name}_admin"),
            password: format!("{name}-Adm'in\\Pw"),
            database: name.clone(),
        };
        let (admin, db) = (&fixture.admin, &fixture.database);
        let password = fixture.password.replace('\\', "\\\\").replace('\'', "''");
        let mut setup = format!(
            "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.items (v VARCHAR(20)); \
             INSERT INTO `{db}`.items VALUES ('widget'); \
             CREATE USER '{admin}'@'%' IDENTIFIED BY '{password}'; \
             GRANT SELECT ON `{db}`.* TO '{admin}'@'%' WITH GRANT OPTION;"
        );
        if privileged {
            setup.push_str(&format!(
                "GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '{admin}'@'%';"
            ));
        }
        fixture.root(&setup);
        fixture
    }

    /// Runs `sql` as root; its tab-separated output.
    fn root(&self, sql: &str) -> String {
        let url = support::mysql_url();
        let user = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .map_or("root", |(user, _)| user);
        let output = run(Command::new("mariadb")
            .args([
                "--protocol=TCP",
                "-N",
                "-B",
                "-h",
                &self.host,
                "-P",
                &self.port.to_string(),
            ])
            .args(["-u", user, "-e", sql]));
        assert!(output.status.success(), "{sql}: {}", printed(&output));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn target(&self, port: u16) -> String {
        self.target_with(port, &self.password)
    }

    /// The target's HCL body with `password` as the admin's.
    fn target_with(&self, port: u16, password: &str) -> String {
        format!(
            "  type = \"mysql\"\n  config = {{ host = \"{}\", port = {port}, username = \"{}\", tls = \"disabled\" }}\n  \
             secrets = {{ password = {} }}",
            self.host,
            self.admin,
            serde_json::to_string(password).expect("json")
        )
    }

    fn grant(&self) -> String {
        format!("{{ privileges = [\"SELECT\"], on = [\"{}.*\"] }}", self.database)
    }

    fn accounts_like(&self, pattern: &str) -> u64 {
        let count = self.root(&format!("SELECT COUNT(*) FROM mysql.user WHERE User LIKE '{pattern}'"));
        count.parse().expect("a count")
    }

    fn sessions_of(&self, user: &str) -> u64 {
        let count = self.root(&format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'"
        ));
        count.parse().expect("a count")
    }
}

impl Drop for Mysql {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            self.root(&format!(
                "DROP DATABASE IF EXISTS `{}`; DROP USER IF EXISTS '{}'@'%';",
                self.database, self.admin
            ))
        });
    }
}

#[test]
fn a_mysql_account_works_in_mariadb_until_revoked_then_its_session_ends_and_nothing_is_left() {
    let world = World::new("my");
    let my = Mysql::new(&world, true);
    world.apply(&my.target(my.port), &my.grant());
    let (code, report) = world.target_test();
    assert_eq!(code, Some(0), "{report}");

    let grant = world.request();
    let user = grant.env["MYSQL_USER"].clone();
    let read = run(&mut mariadb(
        &grant.env,
        &format!("SELECT v FROM `{}`.items", my.database),
    ));
    assert_eq!(printed(&read).trim(), "widget", "the granted SELECT runs");
    let write = run(&mut mariadb(
        &grant.env,
        &format!("DELETE FROM `{}`.items", my.database),
    ));
    assert!(!write.status.success(), "a DELETE the grant does not give is refused");
    assert!(printed(&write).contains("command denied"), "{}", printed(&write));
    world.assert_not_stored(&grant.env["MYSQL_PWD"]);
    world.assert_not_stored(&my.password);

    let mut session = Session::start(&mut mariadb(&grant.env, "SELECT SLEEP(600)"));
    wait_until("the session to open", Duration::from_secs(10), || {
        my.sessions_of(&user) == 1
    });

    world.revoke_verified(&grant.id);
    assert!(!session.ended_within(Duration::from_secs(10)).success());
    let again = run(&mut mariadb(&grant.env, "SELECT 1"));
    assert!(!again.status.success(), "the credential no longer logs in");
    assert!(printed(&again).contains("Access denied"), "{}", printed(&again));
    assert_eq!(my.accounts_like(&user), 0, "the account is dropped");
    assert_eq!(my.sessions_of(&user), 0, "no session is left");
}

#[test]
fn a_revoke_while_mysql_is_down_is_revoke_failed_until_it_is_back() {
    let world = World::new("mydown");
    let my = Mysql::new(&world, true);
    let proxy = Proxy::start((my.host.clone(), my.port));
    world.apply(&my.target(proxy.port), &my.grant());
    let grant = world.request();
    let user = grant.env["MYSQL_USER"].clone();
    world.revoke_while_down(&proxy, &grant.id, || my.accounts_like(&user) == 1);
}

#[test]
fn an_admin_without_create_user_fails_target_test_and_activation_creating_nothing() {
    let world = World::new("myweak");
    let my = Mysql::new(&world, false);
    world.apply(&my.target(my.port), &my.grant());
    let (code, report) = world.target_test();
    assert_eq!(code, Some(1), "{report}");
    let fix = format!("GRANT CREATE USER ON *.* TO '{}'@'%'", my.admin);
    assert!(report.contains(&fix), "{report}");

    let error = world.request_fails();
    assert!(error.contains(&fix), "{error}");
    // Account names hold the first 12 characters of the principal.
    let slug: String = world.name.chars().take(12).collect();
    assert_eq!(my.accounts_like(&format!("hp\\_{slug}%")), 0, "nothing half made");
}

#[test]
fn a_rotated_admin_password_locks_out_the_old_one_and_survives_applying_the_file_again() {
    let world = World::new("myrot");
    let my = Mysql::new(&world, true);
    world.apply(&my.target(my.port), &my.grant());
    let server = &world.server;
    let rotated = server.json(&server.admin, &["target", "rotate", &world.name]);
    assert_eq!(rotated["secret"], "password", "{rotated}");

    let old = run(Command::new("mariadb")
        .env("MYSQL_PWD", &my.password)
        .args([
            "--protocol=TCP",
            "-h",
            &my.host,
            "-P",
            &my.port.to_string(),
            "-u",
            &my.admin,
        ])
        .args(["-e", "SELECT 1"]));
    assert!(printed(&old).contains("Access denied"), "{}", printed(&old));
    let (code, report) = world.target_test();
    assert_eq!(code, Some(0), "Hallpass logs in with the new one: {report}");

    // The file still holds the replaced password: applying it again
    // changes nothing, and grants keep working.
    let again = world.apply(&my.target(my.port), &my.grant());
    assert_eq!(again["changes"][0]["action"], "unchanged", "{again}");
    let grant = world.request();
    let read = run(&mut mariadb(
        &grant.env,
        &format!("SELECT v FROM `{}`.items", my.database),
    ));
    assert_eq!(printed(&read).trim(), "widget");
    world.revoke_verified(&grant.id);

    // A different value is an admin's deliberate choice: it replaces the
    // rotated password (here one that does not work, which the test says).
    let replaced = world.apply(&my.target_with(my.port, "an-admin-chose-this"), &my.grant());
    assert_eq!(replaced["changes"][0]["secrets"][0], "password", "{replaced}");
    let (code, report) = world.target_test();
    assert_eq!(code, Some(1), "{report}");
}
