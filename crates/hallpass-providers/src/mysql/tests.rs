//! Unit tests of the mysql provider: settings, grants, quoting and the
//! reading of `SHOW GRANTS`.

use serde_json::{Map, Value, json};

use super::grant::{GrantSpec, Object, quote_identifier, quote_string};
use super::privileges::Held;
use super::{Config, MysqlProvider, Tls};
use crate::{CredentialProvider, TargetSecrets};

fn map(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn grant_error(value: Value) -> String {
    GrantSpec::parse(&map(value)).unwrap_err().to_string()
}

#[test]
fn settings_have_defaults_and_are_checked() {
    let config = Config::read(&map(json!({"host": "db", "username": "hallpass"}))).unwrap();
    assert_eq!(
        (config.port, config.tls, config.user_host.as_str()),
        (3306, Tls::Disabled, "%")
    );
    assert_eq!(config.timeouts.connect.as_secs(), 5);
    let provider = MysqlProvider::new();
    let secrets = TargetSecrets::new();
    let check = |value: Value| {
        provider
            .validate_config(&map(value), &secrets)
            .map_err(|e| e.to_string())
    };
    assert!(
        check(json!({"host": "db"}))
            .unwrap_err()
            .contains("`username` is required")
    );
    assert!(
        check(json!({"host": "db", "username": "u", "tls": "on"}))
            .unwrap_err()
            .contains("verify-full")
    );
    let ca_alone = check(json!({"host": "db", "username": "u", "ca_file": "/ca.pem"})).unwrap_err();
    assert!(ca_alone.contains("set `tls` too"), "{ca_alone}");
    assert!(check(json!({"host": "db", "username": "u", "tls": "verify-ca", "ca_file": "/ca.pem"})).is_ok());
    let hostile_host = check(json!({"host": "db", "username": "u", "user_host": "%'; DROP USER root; --"}));
    assert!(hostile_host.unwrap_err().contains("`user_host` must be a host pattern"));
    assert!(check(json!({"host": "db", "username": "u", "user_host": "10.0.0.0/255.0.0.0"})).is_ok());
    assert!(check(json!({"host": "db", "username": "u", "statement_timeout_seconds": 0})).is_err());
    assert!(
        check(json!({"host": "db", "username": "u", "passwd": "x"}))
            .unwrap_err()
            .contains("unknown setting")
    );
}

#[test]
fn grants_parse_privileges_and_objects() {
    let spec = GrantSpec::parse(&map(json!({
        "privileges": ["select", " show   view ", "SELECT"],
        "on": ["app.*", "`my.db`.`order``s`", "shop.orders"],
    })))
    .unwrap();
    assert_eq!(spec.privileges, ["SELECT", "SHOW VIEW"]);
    let objects: Vec<String> = spec.objects.iter().map(|o| o.sql(false)).collect();
    assert_eq!(objects, ["`app`.*", "`my.db`.`order``s`", "`shop`.`orders`"]);
    let statements = spec.statements("'u'@'%'", true);
    assert_eq!(statements[0], "GRANT SELECT, SHOW VIEW ON `app`.* TO 'u'@'%'");
    let single = GrantSpec::parse(&map(json!({"privileges": ["EXECUTE"], "on": "app.*"}))).unwrap();
    assert_eq!(single.objects.len(), 1);
}

#[test]
fn database_wildcards_are_made_literal() {
    let object = Object {
        database: "app_1%".into(),
        table: None,
    };
    assert_eq!(object.sql(true), "`app\\_1\\%`.*");
    assert_eq!(object.sql(false), "`app_1%`.*");
    let table = Object {
        database: "app_1".into(),
        table: Some("t_1".into()),
    };
    assert_eq!(table.sql(true), "`app_1`.`t_1`", "table grants are not patterns");
}

#[test]
fn dangerous_or_malformed_grants_are_refused_clearly() {
    let on = |on: Value| grant_error(json!({"privileges": ["SELECT"], "on": on}));
    assert!(grant_error(json!({"privileges": ["ALL"], "on": "app.*"})).contains("ALL is refused"));
    assert!(grant_error(json!({"privileges": ["grant option"], "on": "app.*"})).contains("GRANT OPTION is refused"));
    assert!(grant_error(json!({"privileges": ["FILE"], "on": "app.*"})).contains("unknown privilege \"FILE\""));
    assert!(
        grant_error(json!({"privileges": ["SELECT; DROP DATABASE app"], "on": "app.*"})).contains("unknown privilege")
    );
    assert!(grant_error(json!({"privileges": [], "on": "app.*"})).contains("non-empty list"));
    assert!(grant_error(json!({"privileges": ["SELECT"]})).contains("`on` must be"));
    assert!(grant_error(json!({"privileges": ["SELECT"], "on": "app.*", "to": "x"})).contains("unknown setting `to`"));
    assert!(
        grant_error(json!({"privileges": ["EXECUTE"], "on": "app.orders"})).contains("cannot be granted on a table")
    );
    assert!(on(json!("*.*")).contains("\"*.*\" (every database) is refused"));
    assert!(on(json!("mysql.*")).contains("server's own"));
    assert!(on(json!("MySQL.user")).contains("server's own"));
    assert!(on(json!("app")).contains("is not a database or table"));
    assert!(on(json!("a.b.c")).contains("is not a database or table"));
    assert!(on(json!("`app.*")).contains("is not a database or table"));
    assert!(on(json!("app.*.*")).contains("is not a database or table"));
    assert!(on(json!([])).contains("`on` must be"));
    assert!(on(json!(format!("{}.*", "d".repeat(200)))).contains("at most 64 characters"));
    assert!(on(json!("a\\b.*")).contains("backslashes"));
    assert!(on(json!("`a\u{1F600}`.*")).contains("beyond U+FFFF"));
    assert!(on(json!("`app `.*")).contains("ends with a space"));
}

#[test]
fn hostile_names_are_quoted() {
    let spec = GrantSpec::parse(&map(json!({
        "privileges": ["SELECT"],
        "on": "`x`` ; DROP USER root; -- 'é\"`.t",
    })))
    .unwrap();
    assert_eq!(spec.objects[0].database, "x` ; DROP USER root; -- 'é\"");
    assert_eq!(spec.objects[0].sql(false), "`x`` ; DROP USER root; -- 'é\"`.`t`");
    assert_eq!(quote_identifier("a`b"), "`a``b`");
    assert_eq!(quote_string("o'brien\\"), "'o''brien\\\\'");
}

#[test]
fn show_grants_is_read_for_global_privileges_and_grant_option() {
    let mariadb = [
        "GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO `hallpass`@`%` IDENTIFIED BY PASSWORD '*0123'"
            .to_string(),
        "GRANT SELECT, INSERT ON `app`.* TO `hallpass`@`%` WITH GRANT OPTION".to_string(),
        "GRANT PROXY ON ''@'%' TO 'hallpass'@'%' WITH GRANT OPTION".to_string(),
    ];
    let held = Held::parse(&mariadb);
    assert_eq!(held.holds(&["PROCESS"]), Some(true));
    assert_eq!(held.holds(&["CONNECTION ADMIN", "SUPER"]), Some(true));
    assert_eq!(held.holds(&["SUPER"]), Some(false));
    assert!(!held.grant_option_global);
    assert_eq!(held.grant_option_on, ["`app`.*"]);
    let root = Held::parse(&["GRANT ALL PRIVILEGES ON *.* TO `root`@`%` WITH GRANT OPTION".to_string()]);
    assert_eq!(root.holds(&["CONNECTION_ADMIN"]), Some(true));
    assert!(root.grant_option_global);
    let mysql8 = Held::parse(&[
        "GRANT USAGE ON *.* TO `h`@`%`".to_string(),
        "GRANT BACKUP_ADMIN,CONNECTION_ADMIN ON *.* TO `h`@`%`".to_string(),
        "GRANT `dba`@`%` TO `h`@`%`".to_string(),
    ]);
    assert_eq!(mysql8.holds(&["CONNECTION_ADMIN"]), Some(true));
    assert_eq!(mysql8.holds(&["PROCESS"]), None, "a role may give it");
}

#[test]
fn debug_shows_no_secret() {
    let provider = MysqlProvider::new();
    assert_eq!(format!("{provider:?}"), "MysqlProvider { pools: 0 target pool(s) }");
}
