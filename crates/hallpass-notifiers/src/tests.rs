//! Routing settings and the webhook notifier's checks.

use serde_json::{Map, Value, json};

use crate::webhook::WebhookNotifier;
use crate::{NotifierTypes, NotifyError};
use hallpass_api::NotificationTopic;
use hallpass_providers::{SecretValue, TargetSecrets};
use std::sync::Arc;

fn config(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn types() -> NotifierTypes {
    NotifierTypes::default().with(Arc::new(WebhookNotifier::new().unwrap()))
}

fn signing() -> TargetSecrets {
    let mut secrets = TargetSecrets::new();
    secrets.insert(
        "signing_secret",
        SecretValue::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    );
    secrets
}

fn refusal(value: Value, secrets: &TargetSecrets) -> String {
    match types().validate("webhook", &config(value), secrets) {
        Err(NotifyError::InvalidConfig { message, .. }) => message,
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_valid_webhook_notifier_reads_its_routing() {
    let routing = types()
        .validate(
            "webhook",
            &config(json!({
                "url": "https://bot.example.com/hook",
                "roles": ["prod-db"],
                "topics": ["request.pending", "security.locked"],
                "security": true,
                "expiry_warning": "5m",
                "recipients": {"user:alice": "a@example.com", "group:sre": "sre@example.com"}
            })),
            &signing(),
        )
        .unwrap();
    assert_eq!(routing.expiry_warning_seconds, 300);
    assert!(routing.hears(NotificationTopic::RequestPending, Some("prod-db")));
    assert!(!routing.hears(NotificationTopic::RequestPending, Some("other")));
    assert!(!routing.hears(NotificationTopic::RequestDenied, Some("prod-db")));
    assert!(routing.hears(NotificationTopic::SecurityLocked, None));
    assert_eq!(
        routing.addresses(&["group:sre".into(), "user:bob".into(), "user:alice".into()]),
        vec!["sre@example.com".to_string(), "a@example.com".to_string()]
    );
    assert_eq!(routing.principal_of("a@example.com"), Some("alice"));
    assert_eq!(routing.principal_of("sre@example.com"), None);
}

#[test]
fn security_topics_need_a_security_notifier() {
    let routing = types()
        .validate("webhook", &config(json!({"url": "https://x.example.com/"})), &signing())
        .unwrap();
    assert!(!routing.hears(NotificationTopic::SecurityRevokeFailed, Some("r")));
    assert!(routing.hears(NotificationTopic::GrantExpiring, Some("r")));
    let message = refusal(
        json!({"url": "https://x.example.com/", "topics": ["security.break_glass"]}),
        &signing(),
    );
    assert!(message.contains("security = true"), "{message}");
}

#[test]
fn bad_settings_are_refused_with_what_to_fix() {
    let cases = [
        (json!({}), "`url` is required"),
        (json!({"url": "ftp://x"}), "http:// or https://"),
        (json!({"url": "https://u:p@x.example.com/"}), "user name or password"),
        (
            json!({"url": "https://x.example.com/?token=abc"}),
            "looks like a credential",
        ),
        (
            json!({"url": "https://x.example.com/", "timeout_seconds": 0}),
            "1 to 60",
        ),
        (
            json!({"url": "https://x.example.com/", "colour": "red"}),
            "unknown setting `colour`",
        ),
        (
            json!({"url": "https://x.example.com/", "topics": ["request.nope"]}),
            "unknown topic",
        ),
        (
            json!({"url": "https://x.example.com/", "roles": "prod"}),
            "list of names",
        ),
        (json!({"url": "https://x.example.com/", "expiry_warning": "2d"}), "24h"),
        (
            json!({"url": "https://x.example.com/", "recipients": {"alice": "a"}}),
            "user:NAME",
        ),
        (
            json!({"url": "https://x.example.com/", "recipients": {"user:a": "U1", "user:b": "U1"}}),
            "same address",
        ),
    ];
    for (value, expected) in cases {
        let message = refusal(value.clone(), &signing());
        assert!(message.contains(expected), "{value}: {message}");
    }
}

#[test]
fn secrets_are_checked_by_name_and_form_without_echoing_values() {
    let url = json!({"url": "https://x.example.com/"});
    let message = refusal(url.clone(), &TargetSecrets::new());
    assert!(message.contains("`signing_secret` is required"), "{message}");
    let mut bad = TargetSecrets::new();
    bad.insert("signing_secret", SecretValue::new("not-a-key-SECRETVALUE"));
    let message = refusal(url.clone(), &bad);
    assert!(
        message.contains("signing_secret") && !message.contains("SECRETVALUE"),
        "{message}"
    );
    let mut extra = signing();
    extra.insert("password", SecretValue::new("x"));
    let message = refusal(url, &extra);
    assert!(message.contains("unknown secret `password`"), "{message}");
    assert!(message.contains("webhook notifiers take"), "{message}");
}

#[test]
fn unknown_types_are_named() {
    match types().validate("pager", &Map::new(), &TargetSecrets::new()) {
        Err(NotifyError::InvalidConfig { message, .. }) => assert!(message.contains("known types: webhook")),
        other => panic!("{:?}", other.map(|_| ())),
    }
}
