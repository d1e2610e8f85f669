//! Unit tests of the postgres target's settings and grant checks: each
//! refusal names the setting and what would be right.

use serde_json::{Value, json};

use super::*;
use crate::SecretValue;

fn config(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn minimal() -> Map<String, Value> {
    config(json!({"host": "db.internal", "database": "app", "username": "hallpass_admin"}))
}

fn refusal(value: Value) -> String {
    Settings::parse(&config(value)).unwrap_err().to_string()
}

fn with(key: &str, value: Value) -> String {
    let mut settings = minimal();
    settings.insert(key.into(), value);
    Settings::parse(&settings).unwrap_err().to_string()
}

#[test]
fn defaults_are_safe() {
    let settings = Settings::parse(&minimal()).unwrap();
    assert_eq!(settings.port, 5432);
    assert_eq!(settings.sslmode, SslMode::VerifyFull);
    assert_eq!(settings.ca_file, None);
    assert_eq!(settings.connect_timeout, Duration::from_secs(5));
    assert_eq!(settings.statement_timeout, Duration::from_secs(15));
    assert_eq!(settings.address(), "db.internal:5432");
}

#[test]
fn unknown_settings_are_refused_naming_the_allowed_ones() {
    let message = with("pasword", json!("x"));
    assert!(message.contains("unknown setting `pasword`"), "{message}");
    for name in SETTINGS {
        assert!(message.contains(&format!("`{name}`")), "{message}");
    }
    assert!(message.contains("secret `password`"), "{message}");
}

#[test]
fn required_settings_are_named() {
    let message = refusal(json!({"database": "app", "username": "a"}));
    assert!(message.contains("`host` is required"), "{message}");
    let message = refusal(json!({"host": "h", "username": "a"}));
    assert!(message.contains("`database` is required"), "{message}");
    let message = refusal(json!({"host": "h", "database": "d"}));
    assert!(message.contains("`username` is required"), "{message}");
    let message = refusal(json!({"host": "", "database": "d", "username": "a"}));
    assert!(message.contains("`host` must be a non-empty string"), "{message}");
    let message = refusal(json!({"host": "a b", "database": "d", "username": "a"}));
    assert!(message.contains("`host`"), "{message}");
    let message = refusal(json!({"host": "h", "database": "d", "username": "x".repeat(64)}));
    assert!(message.contains("`username` is 64 bytes long"), "{message}");
}

#[test]
fn numbers_are_bounded() {
    assert!(with("port", json!(0)).contains("`port` must be a whole number from 1 to 65535, found 0"));
    assert!(with("port", json!("5432")).contains("`port` must be a whole number"));
    assert!(with("port", json!(70000)).contains("found 70000"));
    assert!(
        with("connect_timeout_seconds", json!(0))
            .contains("`connect_timeout_seconds` must be a whole number from 1 to 60")
    );
    assert!(with("statement_timeout_seconds", json!(301)).contains("from 1 to 300"));
    assert!(with("statement_timeout_seconds", json!(1.5)).contains("found 1.5"));
    let mut settings = minimal();
    settings.insert("port".into(), json!(6432.0));
    settings.insert("statement_timeout_seconds".into(), json!(30));
    let settings = Settings::parse(&settings).unwrap();
    assert_eq!(
        (settings.port, settings.statement_timeout),
        (6432, Duration::from_secs(30))
    );
}

#[test]
fn sslmodes_and_ca_files() {
    let message = with("sslmode", json!("prefer"));
    assert!(
        message.contains("`sslmode` must be one of \"disable\", \"require\", \"verify-ca\", \"verify-full\""),
        "{message}"
    );
    assert!(message.contains("the default is \"verify-full\""), "{message}");
    let mut plain = minimal();
    plain.insert("sslmode".into(), json!("disable"));
    plain.insert("ca_file".into(), json!("/etc/ssl/ca.pem"));
    let message = Settings::parse(&plain).unwrap_err().to_string();
    assert!(message.contains("`ca_file` is used only with sslmode"), "{message}");
    assert!(with("ca_file", json!("ca.pem")).contains("absolute path"));
    assert!(with("ca_file", json!("/nonexistent/ca.pem")).contains("cannot read `ca_file` /nonexistent/ca.pem"));

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    assert!(with("ca_file", json!(empty)).contains("holds no certificate"));
    let good = dir.path().join("ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertificateParams::new(vec!["ca.test".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&good, ca.pem()).unwrap();
    let mut settings = minimal();
    settings.insert("ca_file".into(), json!(good));
    settings.insert("sslmode".into(), json!("verify-ca"));
    let settings = Settings::parse(&settings).unwrap();
    assert_eq!(settings.ca_certificates().unwrap().unwrap().len(), 1);
}

#[test]
fn unix_sockets_take_no_tls() {
    let message = refusal(json!({"host": "/run/postgresql", "database": "d", "username": "a"}));
    assert!(message.contains("Unix socket directory"), "{message}");
    assert!(message.contains("sslmode = \"disable\""), "{message}");
    let settings = Settings::parse(&config(
        json!({"host": "/run/postgresql", "database": "d", "username": "a", "sslmode": "disable"}),
    ))
    .unwrap();
    assert!(settings.is_unix_socket());
}

#[test]
fn secrets_are_checked_without_showing_them() {
    let mut secrets = TargetSecrets::new();
    assert!(check_secrets(&secrets).is_ok(), "the password is optional");
    secrets.insert(PASSWORD, SecretValue::new(""));
    assert!(
        check_secrets(&secrets)
            .unwrap_err()
            .to_string()
            .contains("secret `password` is empty")
    );
    secrets.insert(PASSWORD, SecretValue::new("abc\0def-secret"));
    let message = check_secrets(&secrets).unwrap_err().to_string();
    assert!(message.contains("NUL") && !message.contains("def-secret"), "{message}");
}

fn grant_refusal(value: Value) -> String {
    Grant::parse(&config(value)).unwrap_err().to_string()
}

#[test]
fn grants_are_checked() {
    let grant = Grant::parse(&config(
        json!({"roles": ["app_read", "o'brien \"x\"; é"], "connection_limit": 3}),
    ))
    .unwrap();
    assert_eq!(grant.roles, ["app_read", "o'brien \"x\"; é"]);
    assert_eq!(grant.connection_limit, Some(3));
    assert_eq!(
        Grant::parse(&config(json!({"roles": ["r"]}))).unwrap().connection_limit,
        None
    );

    let message = grant_refusal(json!({"roles": ["r"], "privileges": ["SELECT"]}));
    assert!(
        message.starts_with("invalid postgres role grant: unknown setting `privileges`"),
        "{message}"
    );
    assert!(
        message.contains("`roles`") && message.contains("`connection_limit`"),
        "{message}"
    );
    assert!(grant_refusal(json!({})).contains("`roles` is required"));
    assert!(grant_refusal(json!({"roles": []})).contains("`roles` is required"));
    assert!(grant_refusal(json!({"roles": "app_read"})).contains("`roles` must be a list"));
    assert!(grant_refusal(json!({"roles": [1]})).contains("must list role names"));
    assert!(grant_refusal(json!({"roles": [""]})).contains("is empty"));
    let long = grant_refusal(json!({"roles": ["x".repeat(200)]}));
    assert!(
        long.contains("is 200 bytes long; PostgreSQL names have at most 63 bytes"),
        "{long}"
    );
    assert!(grant_refusal(json!({"roles": ["a\nb"]})).contains("control character"));
    assert!(grant_refusal(json!({"roles": ["a", "a"]})).contains("listed twice"));
    assert!(grant_refusal(json!({"roles": ["hp_alice_0123"]})).contains("looks like a login Hallpass created"));
    let many: Vec<String> = (0..33).map(|i| format!("r{i}")).collect();
    assert!(grant_refusal(json!({"roles": many})).contains("at most 32"));
    let message = grant_refusal(json!({"roles": ["r"], "connection_limit": 0}));
    assert!(
        message.contains("`connection_limit` must be a whole number from 1 to 1000, found 0"),
        "{message}"
    );
    assert!(message.starts_with("invalid postgres role grant"), "{message}");
    assert!(grant_refusal(json!({"roles": ["r"], "connection_limit": -1})).contains("found -1"));
}
