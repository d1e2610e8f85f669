//! Unit tests of the aws provider: settings, grant blocks and durations,
//! error messages and what never prints. The calls to STS and IAM are
//! tested against moto in tests/aws.rs.

use super::*;
use crate::{Registry, Seed};
use std::sync::Arc;

const KEY_ID: &str = "AKIAHALLPASSUNIT0001";
const SECRET: &str = "unit/secret+KEY0123456789abcdefghijklmnop";

fn config(pairs: &[(&str, Value)]) -> Map<String, Value> {
    let mut config = Map::new();
    config.insert("region".into(), json!("eu-west-1"));
    config.insert("role_arn".into(), json!("arn:aws:iam::123456789012:role/dev"));
    for (name, value) in pairs {
        if value.is_null() {
            config.remove(*name);
        } else {
            config.insert((*name).into(), value.clone());
        }
    }
    config
}

fn secrets() -> TargetSecrets {
    [(ACCESS_KEY_ID, KEY_ID), (SECRET_ACCESS_KEY, SECRET)]
        .into_iter()
        .map(|(name, value)| (name.to_string(), SecretValue::new(value)))
        .collect()
}

fn config_error(pairs: &[(&str, Value)]) -> String {
    AwsConfig::parse(&config(pairs)).unwrap_err().to_string()
}

fn grant_error(grant: Value) -> String {
    let Value::Object(grant) = grant else { panic!() };
    AwsProvider::new()
        .unwrap()
        .validate_grant(&grant)
        .unwrap_err()
        .to_string()
}

#[test]
fn default_endpoints_follow_region_and_partition() {
    let parsed = AwsConfig::parse(&config(&[])).unwrap();
    assert_eq!(parsed.sts.url.as_str(), "https://sts.eu-west-1.amazonaws.com/");
    assert_eq!(parsed.sts.signing_region, "eu-west-1");
    assert_eq!(parsed.iam.url.as_str(), "https://iam.amazonaws.com/");
    assert_eq!(parsed.iam.signing_region, "us-east-1");
    assert_eq!(parsed.role.name, "dev");
    assert_eq!(parsed.role.account, "123456789012");
    assert_eq!(parsed.timeout, DEFAULT_TIMEOUT);
    assert_eq!(parsed.endpoint_url, None);

    let china = AwsConfig::parse(&config(&[
        ("region", json!("cn-northwest-1")),
        ("role_arn", json!("arn:aws-cn:iam::123456789012:role/team/sub/ops")),
    ]))
    .unwrap();
    assert_eq!(china.sts.url.as_str(), "https://sts.cn-northwest-1.amazonaws.com.cn/");
    assert_eq!(china.iam.signing_region, "cn-north-1");
    assert_eq!(china.role.name, "ops");

    let local = AwsConfig::parse(&config(&[
        ("endpoint_url", json!("http://127.0.0.1:5000")),
        ("iam_endpoint_url", json!("https://iam.proxy.internal/")),
        ("timeout_seconds", json!(3)),
    ]))
    .unwrap();
    assert_eq!(local.sts.url.as_str(), "http://127.0.0.1:5000/");
    assert_eq!(local.iam.url.as_str(), "https://iam.proxy.internal/");
    assert_eq!(local.timeout, std::time::Duration::from_secs(3));
    for loopback in ["http://localhost:1", "http://[::1]:5000/", "http://127.0.0.2/"] {
        assert!(
            AwsConfig::parse(&config(&[("endpoint_url", json!(loopback))])).is_ok(),
            "{loopback}"
        );
    }
}

#[test]
fn bad_settings_say_what_and_how() {
    let cases: &[(&[(&str, Value)], &str)] = &[
        (&[("region", Value::Null)], "`region` is required"),
        (&[("region", json!("Europe"))], "AWS region name"),
        (&[("region", json!("cn-north-1"))], "not in the partition"),
        (&[("role_arn", Value::Null)], "`role_arn` is required"),
        (&[("role_arn", json!("arn:aws:iam::123:role/x"))], "12 digits"),
        (
            &[("role_arn", json!("arn:aws:iam::123456789012:user/x"))],
            "`role/<name>`",
        ),
        (&[("role_arn", json!("arn:aws:s3:::bucket"))], "`arn:<partition>:iam::`"),
        (
            &[("role_arn", json!("arn:aws:iam::123456789012:role/a b"))],
            "role name",
        ),
        (
            &[(
                "role_arn",
                json!(format!("arn:aws:iam::123456789012:role/{}", "r".repeat(65))),
            )],
            "role name",
        ),
        (
            &[("role_arn", json!("arn:aws-iso:iam::123456789012:role/x"))],
            "set `endpoint_url`",
        ),
        (&[("endpoint_url", json!("http://sts.example.com"))], "loopback"),
        (&[("endpoint_url", json!("ftp://127.0.0.1"))], "must use https"),
        (
            &[("endpoint_url", json!("https://u:p@sts.example.com"))],
            "without user-info",
        ),
        (
            &[("endpoint_url", json!("https://sts.example.com/?X-Amz-Security-Token=t"))],
            "without user-info",
        ),
        (&[("endpoint_url", json!("not a url"))], "not a valid URL"),
        (&[("timeout_seconds", json!(0))], "from 1 to 60"),
        (&[("role", json!("x"))], "unknown setting `role`"),
    ];
    for (pairs, expected) in cases {
        let error = config_error(pairs);
        assert!(error.contains(expected), "{pairs:?}: {error}");
        assert!(error.starts_with("invalid aws target settings"), "{error}");
    }
    // A URL refused for its credentials is never repeated.
    let error = config_error(&[("endpoint_url", json!("https://AKIAXX:s3cr3t@sts.example.com"))]);
    assert!(!error.contains("s3cr3t") && !error.contains("AKIAXX"), "{error}");
}

#[test]
fn secrets_are_required_checked_and_never_repeated() {
    let provider = AwsProvider::new().unwrap();
    assert!(provider.validate_config(&config(&[]), &secrets()).is_ok());
    let missing = provider
        .validate_config(&config(&[]), &TargetSecrets::new())
        .unwrap_err()
        .to_string();
    assert!(missing.contains("secret `access_key_id` is required"), "{missing}");
    for (name, bad) in [
        (ACCESS_KEY_ID, "short"),
        (ACCESS_KEY_ID, "AKIA HALLPASS 0001 x"),
        (SECRET_ACCESS_KEY, "has space s3cr3t"),
    ] {
        let mut secrets = secrets();
        secrets.insert(name, SecretValue::new(bad));
        let error = provider
            .validate_config(&config(&[]), &secrets)
            .unwrap_err()
            .to_string();
        assert!(error.contains(&format!("secret `{name}`")), "{error}");
        assert!(!error.contains(bad) && !error.contains("s3cr3t"), "{error}");
    }
    let parsed = AwsSecrets::parse(&secrets()).unwrap();
    assert_eq!(format!("{parsed:?}"), "AwsSecrets { .. }");
    assert_eq!(
        parsed.scrub(&format!("key {KEY_ID} and {SECRET} here")),
        "key [redacted] and [redacted] here"
    );
}

#[test]
fn grant_blocks_are_checked() {
    let provider = AwsProvider::new().unwrap();
    let policy =
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
    let Value::Object(grant) = json!({"session_policy": policy, "max_session_duration": 7200}) else {
        panic!()
    };
    provider.validate_grant(&grant).unwrap();
    let parsed = AwsGrant::parse(&grant).unwrap();
    assert_eq!(parsed.session_policy.as_deref(), Some(policy.to_string().as_str()));
    assert_eq!(parsed.max_session_seconds, 7200);
    // The same policy as JSON text, with spaces, is packed the same.
    let Value::Object(text) = json!({"session_policy": serde_json::to_string_pretty(&policy).unwrap()}) else {
        panic!()
    };
    assert_eq!(AwsGrant::parse(&text).unwrap().session_policy, parsed.session_policy);
    assert_eq!(
        AwsGrant::parse(&Map::new()).unwrap().max_session_seconds,
        DEFAULT_MAX_SESSION_SECONDS
    );

    let huge = json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "x".repeat(2100)}]});
    let cases = [
        (json!({"max_session_duration": 899}), "from 900 to 43200"),
        (json!({"max_session_duration": 43201}), "from 900 to 43200"),
        (
            json!({"max_session_duration": "1h"}),
            "`max_session_duration` must be a whole number from 900 to 43200",
        ),
        (json!({"session_policy": "{not json"}), "not valid JSON"),
        (json!({"session_policy": 5}), "IAM policy document"),
        (json!({"session_policy": "[1]"}), "JSON object"),
        (
            json!({"session_policy": {"Version": "2012-10-17"}}),
            "needs a `Statement`",
        ),
        (json!({"session_policy": {"Statement": [{"Action": "*"}]}}), "`Effect`"),
        (
            json!({"session_policy": {"Version": "2020", "Statement": {"Effect": "Allow"}}}),
            "`Version`",
        ),
        (
            json!({"session_policy": {"Statement": {"Effect": "Allow"}, "Extra": 1}}),
            "has `Extra`",
        ),
        (json!({"session_policy": huge}), "at most 2048"),
        (json!({"duration": 900}), "unknown setting `duration`"),
    ];
    for (grant, expected) in cases {
        let error = grant_error(grant.clone());
        assert!(error.contains(expected), "{grant}: {error}");
        assert!(error.starts_with("invalid aws role grant"), "{error}");
    }
}

#[test]
fn durations_are_the_grants_remaining_time_within_sts_limits() {
    let grant = AwsGrant {
        session_policy: None,
        max_session_seconds: 7200,
    };
    assert_eq!(grant.duration_seconds(3000), 3000);
    assert_eq!(grant.duration_seconds(60), 900, "STS's minimum");
    assert_eq!(grant.duration_seconds(-5), 900);
    assert_eq!(grant.duration_seconds(86_400), 7200, "the grant block's maximum");
}

fn grant_context(principal: &str) -> GrantContext {
    let target = TargetContext {
        name: "prod-aws".into(),
        config: config(&[]),
        secrets: secrets(),
        seed: Seed::for_grant(b"k", "prod-aws", "-"),
    };
    let now = Utc::now();
    GrantContext::new(
        "0192-grant",
        principal,
        "readonly",
        target,
        Seed::for_grant(b"k", "prod-aws", "0192-grant"),
        now,
        now + chrono::Duration::hours(1),
    )
}

#[test]
fn revocations_match_the_role_id_from_the_metadata_or_any() {
    let grant = grant_context("alice");
    let session = session_name("alice", "0192-grant");
    let metadata = json!({"assumed_role_id": format!("AROA3XFRBF535PLBIFPI4:{session}")});
    assert_eq!(
        revoked_user_id(&grant, &metadata),
        format!("AROA3XFRBF535PLBIFPI4:{session}")
    );
    // Missing, or not this grant's session, or not a role id: any role id.
    for metadata in [
        json!({}),
        json!({"assumed_role_id": "AROA3XFRBF535PLBIFPI4:hp_bob_1"}),
        json!({"assumed_role_id": format!("AROA*:{session}")}),
        json!({"assumed_role_id": format!(":{session}")}),
    ] {
        assert_eq!(revoked_user_id(&grant, &metadata), format!("*:{session}"), "{metadata}");
    }
}

#[test]
fn credentials_carry_the_session_for_every_aws_tool_and_never_print() {
    let session = Session {
        access_key_id: SecretValue::new("ASIASESSIONKEY000001"),
        secret_access_key: SecretValue::new("session-secret"),
        session_token: SecretValue::new("session-token"),
        expiration: "2026-03-01T11:00:00Z".into(),
        assumed_role_id: "AROA3XFRBF535PLBIFPI4:hp_alice_1".into(),
        assumed_role_arn: "arn:aws:sts::123456789012:assumed-role/dev/hp_alice_1".into(),
    };
    assert!(!format!("{session:?}").contains("session-secret"));
    assert!(!format!("{session:?}").contains("session-token"));
    let local = AwsConfig::parse(&config(&[("endpoint_url", json!("http://127.0.0.1:5000"))])).unwrap();
    let credential = credential_of(&local, session);
    assert_eq!(credential.credential_type, "aws");
    assert_eq!(credential.token, "session-token");
    let names: Vec<&str> = credential.env.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec![
            "AWS_ACCESS_KEY_ID",
            "AWS_CREDENTIAL_EXPIRATION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN"
        ]
    );
    assert_eq!(credential.env["AWS_ENDPOINT_URL"], "http://127.0.0.1:5000/");
    assert_eq!(credential.env["AWS_REGION"], "eu-west-1");
    assert!(!format!("{credential:?}").contains("session"));
    assert!(!format!("{:?}", grant_context("alice")).contains(SECRET));
    assert_eq!(format!("{:?}", AwsProvider::new().unwrap()), "AwsProvider { .. }");
}

#[test]
fn aws_errors_keep_code_and_message_without_keys() {
    let keys = AwsSecrets::parse(&secrets()).unwrap();
    let answer = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>The request \
         signature we calculated does not match for {KEY_ID} with {SECRET}</Message></Error></ErrorResponse>"
    );
    let error = client::api_error(403, &answer, &keys);
    assert_eq!(error.code(), Some("SignatureDoesNotMatch"));
    let text = error.to_string();
    assert!(
        text.starts_with("SignatureDoesNotMatch: The request signature"),
        "{text}"
    );
    assert!(!text.contains(KEY_ID) && !text.contains(SECRET), "{text}");
    let long = format!("<Error><Code>X</Code><Message>{}</Message></Error>", "m".repeat(5000));
    assert!(client::api_error(400, &long, &keys).to_string().len() < 500);
    assert_eq!(
        client::api_error(502, "<html>bad gateway</html>", &keys).to_string(),
        "HTTP502 (HTTP 502)"
    );
    assert!(
        client::api_error(502, "not xml", &keys)
            .to_string()
            .contains("not AWS's XML")
    );

    let target = TargetContext {
        name: "prod-aws".into(),
        config: config(&[]),
        secrets: secrets(),
        seed: Seed::for_grant(b"k", "prod-aws", "-"),
    };
    let target = Target::parse(&target).unwrap();
    let denied = target
        .failed(
            "STS AssumeRole",
            &client::api_error(
                403,
                "<Error><Code>AccessDenied</Code><Message>no</Message></Error>",
                &keys,
            ),
        )
        .to_string();
    assert!(denied.contains("sts:AssumeRole and sts:SetSourceIdentity"), "{denied}");
    assert!(
        denied.starts_with("target prod-aws: STS AssumeRole failed: AccessDenied: no (HTTP 403)"),
        "{denied}"
    );
    let duration = target
        .failed(
            "STS AssumeRole",
            &client::api_error(
                400,
                "<Error><Code>ValidationError</Code><Message>The requested DurationSeconds exceeds the \
                 MaxSessionDuration set for this role.</Message></Error>",
                &keys,
            ),
        )
        .to_string();
    assert!(duration.contains("lower `max_session_duration`"), "{duration}");
}

#[test]
fn the_provider_fits_the_registry() {
    let registry = Registry::default().with(Arc::new(AwsProvider::new().unwrap()));
    let provider = registry.get("aws").unwrap();
    let secrets: Vec<_> = provider.secrets().iter().map(|s| (s.name, s.required)).collect();
    assert_eq!(secrets, vec![(ACCESS_KEY_ID, true), (SECRET_ACCESS_KEY, true)]);
    assert!(!provider.issues_locally());
    assert!(!provider.uses_revocation_list());
    assert!(provider.rotatable_secret().is_none());
}
