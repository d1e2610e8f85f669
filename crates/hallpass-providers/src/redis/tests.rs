//! Unit tests of the redis provider: settings, ACL rules and the reading
//! of `CLIENT LIST`.

use serde_json::{Map, Value, json};

use super::acl::Rules;
use super::users::{client_ids, password_rule};
use super::{Config, RedisProvider};
use crate::{CredentialProvider, SecretValue, TargetSecrets};

fn map(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn rules(acl: &str) -> Result<Vec<String>, String> {
    Rules::parse(&map(json!({ "acl": acl })))
        .map(|rules| rules.0)
        .map_err(|e| e.to_string())
}

#[test]
fn settings_have_defaults_and_are_checked() {
    let config = Config::read(&map(json!({"host": "cache"}))).unwrap();
    assert_eq!(
        (config.port, config.username.as_str(), config.tls),
        (6379, "default", false)
    );
    let provider = RedisProvider::new();
    let none = TargetSecrets::new();
    let check = |value: Value, secrets: &TargetSecrets| {
        provider
            .validate_config(&map(value), secrets)
            .map_err(|e| e.to_string())
    };
    assert!(check(json!({"host": "cache"}), &none).is_ok());
    let needs_password = check(json!({"host": "cache", "username": "hallpass"}), &none).unwrap_err();
    assert!(
        needs_password.contains("secret `password` is required"),
        "{needs_password}"
    );
    let mut secrets = TargetSecrets::new();
    secrets.insert("password", SecretValue::new("s3cret"));
    assert!(check(json!({"host": "cache", "username": "hallpass"}), &secrets).is_ok());
    assert!(
        check(json!({"host": "cache", "tls": "yes"}), &none)
            .unwrap_err()
            .contains("true or false")
    );
    assert!(
        check(json!({"host": "cache", "ca_file": "/ca.pem"}), &none)
            .unwrap_err()
            .contains("tls = true")
    );
    assert!(check(json!({"host": "cache", "tls": true, "ca_file": "/ca.pem"}), &none).is_ok());
    assert!(check(json!({"host": "cache", "username": "a b"}), &secrets).is_err());
    assert!(
        check(json!({"host": "cache", "db": 1}), &none)
            .unwrap_err()
            .contains("unknown setting `db`")
    );
}

#[test]
fn acl_rules_are_split_and_kept() {
    assert_eq!(
        rules("~app:*  +get +set\n-@dangerous").unwrap(),
        ["~app:*", "+get", "+set", "-@dangerous"]
    );
    assert_eq!(
        rules("%R~app:* allchannels (~temp:* +get) resetkeys").unwrap(),
        ["%R~app:*", "allchannels", "(~temp:* +get)", "resetkeys"]
    );
    assert_eq!(
        rules("~é;'\"\\x* +GET").unwrap(),
        ["~é;'\"\\x*", "+GET"],
        "key patterns are arguments, not text"
    );
}

#[test]
fn rules_hallpass_controls_are_refused() {
    for rule in [
        ">secret",
        "<secret",
        "#abc",
        "!abc",
        "nopass",
        "RESETPASS",
        "on",
        "off",
        "reset",
    ] {
        let error = rules(&format!("~app:* {rule}")).unwrap_err();
        assert!(
            error.contains("is refused") && error.contains("Hallpass sets the user's password"),
            "{rule}: {error}"
        );
        assert!(
            !error.contains("secret") && !error.contains("abc"),
            "no password echoed: {error}"
        );
    }
    assert!(
        rules("(~x >pw)").unwrap_err().contains("is refused"),
        "inside a selector too"
    );
    assert!(rules("(~x (+get))").unwrap_err().contains("another selector"));
    assert!(rules("(~x +get").unwrap_err().contains("no closing"));
    assert!(rules("flushall").unwrap_err().contains("unknown ACL rule"));
    assert!(rules("~").unwrap_err().contains("unknown ACL rule"));
    assert!(rules("~a\u{0}b").unwrap_err().contains("control character"));
    assert!(rules("  ").unwrap_err().contains("`acl` is required"));
    let unknown = Rules::parse(&map(json!({"acl": "+get", "keys": "x"})))
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("unknown setting `keys`"), "{unknown}");
}

#[test]
fn client_list_lines_are_matched_by_user() {
    let listing = "id=3 addr=127.0.0.1:1 name=user=hp_a user=default cmd=client\n\
                   id=7 addr=127.0.0.1:2 name= user=hp_a cmd=get\n\
                   id=8 addr=127.0.0.1:3 name= user=hp_ab cmd=get\n";
    assert_eq!(client_ids(listing, "hp_a"), ["7"]);
}

#[test]
fn passwords_travel_as_hashes() {
    let rule = password_rule(&SecretValue::new("pw"));
    assert_eq!(rule.len(), 65);
    assert!(rule.starts_with('#') && !rule.contains("pw"));
}

#[test]
fn debug_shows_no_secret() {
    assert_eq!(
        format!("{:?}", RedisProvider::new()),
        "RedisProvider { pools: 0 target pool(s) }"
    );
}
