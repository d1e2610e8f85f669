//! postgres targets with `psql`: a login per grant that reads what its role
//! may and nothing else, ended with its sessions on revoke.

use std::process::Command;
use std::time::Duration;

use super::{Proxy, Session, World, host_port, printed, run, support, wait_until};

/// `"name"`, for SQL the test sends itself.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What the test made on the server as its superuser: an admin (with or
/// without CREATEROLE), a NOLOGIN role with a hostile name that may read
/// one table, and the table. Dropped with the fixture.
struct Postgres {
    su: postgres::Client,
    host: String,
    port: u16,
    database: String,
    admin: String,
    password: String,
    reader: String,
    table: String,
}

impl Postgres {
    fn new(world: &World, createrole: bool) -> Postgres {
        let url = support::postgres_url();
        let (host, port) = host_port(&url);
        let database = url.rsplit('/').next().unwrap_or("postgres").to_string();
        let name = &world.name;
        let mut fixture = Postgres {
            su: postgres::Client::connect(&url, postgres::NoTls).expect("connect as the superuser"),
            host,
            port,
            database,
            admin: format!("{name}_admin"),
            password: format!("{name}-Admin'Pw"),
            // Quotes, a semicolon, a backslash and unicode: quoted on the
            // way through HCL, the API and the provider, never executed.
            reader: format!("{name} rea'd\"; --\\ü"),
            table: format!("{name}_items"),
        };
        let (admin, reader, table) = (&fixture.admin, quote(&fixture.reader), &fixture.table);
        let createrole = if createrole { "CREATEROLE" } else { "NOCREATEROLE" };
        let setup = format!(
            "CREATE ROLE {admin} LOGIN {createrole} PASSWORD '{password}';
             GRANT pg_signal_backend TO {admin};
             CREATE ROLE {reader} NOLOGIN;
             GRANT {reader} TO {admin} WITH ADMIN OPTION;
             CREATE TABLE {table} (item text);
             INSERT INTO {table} VALUES ('widget');
             GRANT SELECT ON {table} TO {reader};",
            password = fixture.password.replace('\'', "''"),
        );
        fixture
            .su
            .batch_execute(&setup)
            .expect("set up the admin, the role and the table");
        fixture
    }

    /// The target's HCL body; `port` is the server's or a proxy's.
    fn target(&self, port: u16) -> String {
        format!(
            "  type = \"postgres\"\n  config = {{ host = \"{}\", port = {port}, database = \"{}\", \
             username = \"{}\", sslmode = \"disable\" }}\n  secrets = {{ password = {} }}",
            self.host,
            self.database,
            self.admin,
            serde_json::to_string(&self.password).expect("json")
        )
    }

    fn grant(&self) -> String {
        format!("{{ roles = [{}] }}", serde_json::to_string(&self.reader).expect("json"))
    }

    fn count(&mut self, query: &str, login: &str) -> i64 {
        self.su.query_one(query, &[&login]).expect("query").get(0)
    }

    fn roles_named(&mut self, login: &str) -> i64 {
        self.count("SELECT count(*) FROM pg_roles WHERE rolname = $1", login)
    }

    fn sessions_of(&mut self, login: &str) -> i64 {
        self.count("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", login)
    }

    fn hallpass_logins(&mut self, principal_slug: &str) -> i64 {
        let pattern = format!("hp\\_{principal_slug}%");
        self.count("SELECT count(*) FROM pg_roles WHERE rolname LIKE $1", &pattern)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.su.batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; DROP ROLE IF EXISTS {reader}; \
             DROP OWNED BY {admin}; DROP ROLE IF EXISTS {admin};",
            table = self.table,
            reader = quote(&self.reader),
            admin = self.admin
        ));
    }
}

/// `psql` with the credential's environment (PGHOST, PGUSER, PGPASSWORD...).
fn psql(env: &std::collections::BTreeMap<String, String>, sql: &str) -> Command {
    let mut command = Command::new("psql");
    command
        .envs(env)
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    command
}

#[test]
fn a_postgres_login_works_in_psql_until_revoked_then_its_session_ends_and_nothing_is_left() {
    let world = World::new("pg");
    let mut pg = Postgres::new(&world, true);
    world.apply(&pg.target(pg.port), &pg.grant());
    let (code, report) = world.target_test();
    assert_eq!(code, Some(0), "{report}");

    let grant = world.request();
    let login = grant.env["PGUSER"].clone();
    assert!(login.starts_with(&format!("hp_{}", world.name)), "{login}");
    let read = run(&mut psql(&grant.env, &format!("SELECT item FROM {}", pg.table)));
    assert_eq!(printed(&read).trim(), "widget", "the granted SELECT runs");
    let write = run(&mut psql(&grant.env, &format!("DELETE FROM {}", pg.table)));
    assert!(!write.status.success(), "a DELETE the role does not give is refused");
    assert!(printed(&write).contains("permission denied"), "{}", printed(&write));
    world.assert_not_stored(&grant.env["PGPASSWORD"]);
    world.assert_not_stored(&pg.password);

    let mut session = Session::start(&mut psql(&grant.env, "SELECT pg_sleep(600)"));
    wait_until("the session to open", Duration::from_secs(10), || {
        pg.sessions_of(&login) == 1
    });

    world.revoke_verified(&grant.id);
    assert!(!session.ended_within(Duration::from_secs(10)).success());
    let again = run(&mut psql(&grant.env, "SELECT 1"));
    assert!(!again.status.success(), "the credential no longer logs in");
    assert!(printed(&again).contains(&login), "{}", printed(&again));
    assert_eq!(pg.roles_named(&login), 0, "the login is dropped");
    assert_eq!(pg.sessions_of(&login), 0, "no session is left");
}

#[test]
fn a_revoke_while_postgres_is_down_is_revoke_failed_until_it_is_back() {
    let world = World::new("pgdown");
    let mut pg = Postgres::new(&world, true);
    let proxy = Proxy::start((pg.host.clone(), pg.port));
    world.apply(&pg.target(proxy.port), &pg.grant());
    let grant = world.request();
    let login = grant.env["PGUSER"].clone();
    world.revoke_while_down(&proxy, &grant.id, || pg.roles_named(&login) == 1);
}

#[test]
fn an_admin_without_createrole_fails_target_test_and_activation_creating_nothing() {
    let world = World::new("pgweak");
    let mut pg = Postgres::new(&world, false);
    world.apply(&pg.target(pg.port), &pg.grant());
    let (code, report) = world.target_test();
    assert_eq!(code, Some(1), "{report}");
    let fix = format!("user \"{0}\" lacks CREATEROLE: ALTER ROLE \"{0}\" CREATEROLE", pg.admin);
    assert!(report.contains(&format!("FAIL createrole: {fix}")), "{report}");

    let error = world.request_fails();
    assert!(error.contains(&fix), "{error}");
    assert_eq!(pg.hallpass_logins(&world.name), 0, "nothing half made");
}
