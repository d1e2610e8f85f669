//! The aws provider against moto (STS and IAM on one local port), checked
//! with boto3, AWS's own Python SDK: issued sessions work in a real client,
//! each fetch mints fresh keys, revoking writes the deny statement the
//! role's sessions are then refused by, and calls are signed exactly as
//! botocore signs them.
//!
//! moto does not evaluate IAM policies (nor check signatures), so a revoked
//! session still works against it: the tests assert the revocation policy's
//! content precisely instead (the statement AWS evaluates), and the
//! signature against botocore's own computation.

mod support;

use support::aws::{ACCOUNT, ADMIN_KEY_ID, ADMIN_SECRET, admin_python, create_role, python, revocation_policy};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hallpass_providers::aws::{AwsProvider, revocations::POLICY_NAME, session_name};
use hallpass_providers::{
    CredentialProvider, GrantContext, SecretCredential, SecretValue, Seed, TargetContext, TargetSecrets, Verification,
};
use serde_json::{Map, Value, json};

/// `sts get-caller-identity` with nothing but each credential's
/// environment, in one Python run.
fn caller_identities(credentials: &[&SecretCredential]) -> Vec<Value> {
    let envs: Vec<_> = credentials.iter().map(|credential| &credential.env).collect();
    let output = python(
        r#"
import boto3, json, os
answers = []
for env in json.loads(os.environ["HP_ENVS"]):
    os.environ.update(env)
    answers.append(boto3.session.Session().client("sts").get_caller_identity())
print(json.dumps(answers))
"#,
        &[("HP_ENVS", &serde_json::to_string(&envs).unwrap())],
    );
    serde_json::from_str(&output).unwrap()
}

fn target(role: &str, endpoint: &str) -> TargetContext {
    let mut config = Map::new();
    config.insert("region".into(), json!("us-east-1"));
    config.insert("role_arn".into(), json!(format!("arn:aws:iam::{ACCOUNT}:role/{role}")));
    config.insert("endpoint_url".into(), json!(endpoint));
    config.insert("timeout_seconds".into(), json!(5));
    let secrets: TargetSecrets = [("access_key_id", ADMIN_KEY_ID), ("secret_access_key", ADMIN_SECRET)]
        .into_iter()
        .map(|(name, value)| (name.to_string(), SecretValue::new(value)))
        .collect();
    TargetContext {
        name: "prod-aws".into(),
        config,
        secrets,
        seed: Seed::for_grant(b"test key", "prod-aws", "-"),
    }
}

fn grant(target: TargetContext, principal: &str, lasts: chrono::Duration) -> GrantContext {
    let grant_id = support::unique("grant-");
    let now = Utc::now();
    let seed = Seed::for_grant(b"test key", "prod-aws", &grant_id);
    GrantContext::new(grant_id, principal, "readonly", target, seed, now, now + lasts)
}

fn moto_grant(role: &str, principal: &str) -> GrantContext {
    grant(
        target(role, &support::aws_endpoint()),
        principal,
        chrono::Duration::hours(1),
    )
}

/// Nothing secret in `text`: neither the admin's keys nor the session's.
fn assert_no_secret(text: &str, credential: Option<&SecretCredential>) {
    assert!(!text.contains(ADMIN_SECRET) && !text.contains(ADMIN_KEY_ID), "{text}");
    if let Some(credential) = credential {
        for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
            assert!(!text.contains(&credential.env[name]), "{name} in {text}");
        }
    }
}

#[tokio::test]
async fn issued_sessions_work_in_a_real_client_and_are_fresh_on_every_fetch() {
    let (role, role_id) = create_role();
    let provider = AwsProvider::new().unwrap();
    let grant = moto_grant(&role, "alice@example.com");
    let metadata = provider.issue(&grant).await.unwrap();
    let session = session_name("alice@example.com", &grant.grant_id);
    assert_eq!(
        metadata,
        json!({
            "type": "aws",
            "role_arn": format!("arn:aws:iam::{ACCOUNT}:role/{role}"),
            "region": "us-east-1",
            "session_name": session,
            "source_identity": "alice@example.com",
            "assumed_role_id": format!("{role_id}:{session}"),
            "assumed_role_arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}"),
        })
    );

    let first = provider.credential(&grant, &metadata).await.unwrap();
    let second = provider.credential(&grant, &metadata).await.unwrap();
    assert_eq!(first.credential_type, "aws");
    assert_eq!(first.token, first.env["AWS_SESSION_TOKEN"]);
    assert_eq!(first.env["AWS_ENDPOINT_URL"], format!("{}/", support::aws_endpoint()));
    assert_eq!(first.env["AWS_DEFAULT_REGION"], "us-east-1");
    assert_ne!(first.env["AWS_ACCESS_KEY_ID"], second.env["AWS_ACCESS_KEY_ID"]);
    assert_ne!(first.env["AWS_SESSION_TOKEN"], second.env["AWS_SESSION_TOKEN"]);
    let identities = caller_identities(&[&first, &second]);
    for (credential, identity) in [&first, &second].into_iter().zip(identities) {
        assert_eq!(
            identity["Arn"],
            format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}")
        );
        assert_eq!(identity["UserId"], format!("{role_id}:{session}"));
        assert_eq!(identity["Account"], ACCOUNT);
        assert_no_secret(&metadata.to_string(), Some(credential));
        assert_no_secret(&format!("{credential:?} {grant:?} {provider:?}"), Some(credential));
    }
}

#[tokio::test]
async fn sessions_last_the_grants_remaining_time_within_sts_limits() {
    let (role, _) = create_role();
    let provider = AwsProvider::new().unwrap();
    let expiry_in = |credential: &SecretCredential| {
        let expiration = DateTime::parse_from_rfc3339(&credential.env["AWS_CREDENTIAL_EXPIRATION"]).unwrap();
        (expiration.with_timezone(&Utc) - Utc::now()).num_seconds()
    };
    let endpoint = support::aws_endpoint();
    // 40 minutes left: the session lasts that long.
    let forty = grant(target(&role, &endpoint), "bob", chrono::Duration::minutes(40));
    let seconds = expiry_in(&provider.credential(&forty, &json!({})).await.unwrap());
    assert!((2390..=2400).contains(&seconds), "{seconds}");
    // Five minutes left: STS's minimum, 15.
    let five = grant(target(&role, &endpoint), "bob", chrono::Duration::minutes(5));
    let seconds = expiry_in(&provider.credential(&five, &json!({})).await.unwrap());
    assert!((890..=900).contains(&seconds), "{seconds}");
    // A day left: the role's default maximum, one hour, unless the grant
    // block allows more.
    let mut day = grant(target(&role, &endpoint), "bob", chrono::Duration::days(1));
    let seconds = expiry_in(&provider.credential(&day, &json!({})).await.unwrap());
    assert!((3590..=3600).contains(&seconds), "{seconds}");
    day.grant.insert("max_session_duration".into(), json!(7200));
    let seconds = expiry_in(&provider.credential(&day, &json!({})).await.unwrap());
    assert!((7190..=7200).contains(&seconds), "{seconds}");
    // Expired: no session at all.
    let mut expired = grant(target(&role, &endpoint), "bob", chrono::Duration::minutes(5));
    expired.expires_at = Utc::now() - chrono::Duration::seconds(1);
    let error = provider.credential(&expired, &json!({})).await.unwrap_err().to_string();
    assert!(error.contains("the grant has expired"), "{error}");
}

/// The grant's statement in `policy`: exactly one, with the right
/// `aws:userid`; its `aws:TokenIssueTime`.
fn grant_statement(policy: &Value, user_id: &str) -> DateTime<Utc> {
    let statements: Vec<&Value> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Condition"]["StringLike"]["aws:userid"] == user_id)
        .collect();
    let [statement] = statements.as_slice() else {
        panic!("expected one statement for {user_id}: {policy}")
    };
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(statement["Action"], "*");
    assert_eq!(statement["Resource"], "*");
    assert_eq!(statement["Condition"].as_object().unwrap().len(), 2, "{statement}");
    let time = statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        .as_str()
        .unwrap();
    DateTime::parse_from_rfc3339(time).unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn revoking_denies_exactly_the_grants_sessions_and_verify_sees_it() {
    let (role, role_id) = create_role();
    let provider = AwsProvider::new().unwrap();
    let alice = moto_grant(&role, "alice");
    let bob = moto_grant(&role, "bob");
    let alice_metadata = provider.issue(&alice).await.unwrap();
    let bob_metadata = provider.issue(&bob).await.unwrap();
    let alice_user = format!("{role_id}:{}", session_name("alice", &alice.grant_id));
    let bob_user = format!("{role_id}:{}", session_name("bob", &bob.grant_id));
    assert_eq!(revocation_policy(&role, POLICY_NAME), Value::Null);
    let remaining = provider.verify(&alice, &alice_metadata).await.unwrap();
    let Verification::Remaining(why) = remaining else {
        panic!("{remaining:?}")
    };
    assert!(why.contains(&alice_user) && why.contains(POLICY_NAME), "{why}");

    let before = Utc::now();
    provider.revoke(&alice, &alice_metadata).await.unwrap();
    let after = Utc::now();
    let policy = revocation_policy(&role, POLICY_NAME);
    assert_eq!(policy["Statement"].as_array().unwrap().len(), 1, "{policy}");
    // Sessions issued until the revocation, plus five minutes for clocks
    // that disagree, are denied.
    let until = grant_statement(&policy, &alice_user);
    let margin = chrono::Duration::minutes(5);
    assert!(
        until >= before + margin - chrono::Duration::seconds(1) && until <= after + margin,
        "{until}"
    );
    assert_eq!(
        provider.verify(&alice, &alice_metadata).await.unwrap(),
        Verification::Gone
    );
    assert!(matches!(
        provider.verify(&bob, &bob_metadata).await.unwrap(),
        Verification::Remaining(_)
    ));

    // Again: the same single statement, untouched.
    provider.revoke(&alice, &alice_metadata).await.unwrap();
    assert_eq!(revocation_policy(&role, POLICY_NAME), policy);
    // Another grant gets its own statement; Alice's stays as it was.
    provider.revoke(&bob, &bob_metadata).await.unwrap();
    let both = revocation_policy(&role, POLICY_NAME);
    assert_eq!(both["Statement"].as_array().unwrap().len(), 2, "{both}");
    assert_eq!(grant_statement(&both, &alice_user), until);
    grant_statement(&both, &bob_user);
    assert_eq!(provider.verify(&bob, &bob_metadata).await.unwrap(), Verification::Gone);
    assert_no_secret(&both.to_string(), None);
}

#[tokio::test]
async fn a_revoke_without_metadata_denies_the_session_name_on_any_role_id() {
    let (role, _) = create_role();
    let provider = AwsProvider::new().unwrap();
    let grant = moto_grant(&role, "carol");
    provider.revoke(&grant, &json!({})).await.unwrap();
    let user_id = format!("*:{}", session_name("carol", &grant.grant_id));
    grant_statement(&revocation_policy(&role, POLICY_NAME), &user_id);
    assert_eq!(provider.verify(&grant, &json!({})).await.unwrap(), Verification::Gone);
}

#[tokio::test]
async fn concurrent_revokes_on_one_role_lose_no_statement() {
    let (role, _) = create_role();
    let provider = AwsProvider::new().unwrap();
    let grants: Vec<GrantContext> = (0..6).map(|n| moto_grant(&role, &format!("user{n}"))).collect();
    let no_metadata = json!({});
    let revokes = grants.iter().map(|grant| provider.revoke(grant, &no_metadata));
    for result in futures::future::join_all(revokes).await {
        result.unwrap();
    }
    let policy = revocation_policy(&role, POLICY_NAME);
    for grant in &grants {
        grant_statement(
            &policy,
            &format!("*:{}", session_name(&grant.principal, &grant.grant_id)),
        );
    }
}

#[tokio::test]
async fn hostile_principals_get_session_names_sts_takes() {
    let (role, role_id) = create_role();
    let provider = AwsProvider::new().unwrap();
    let long = "é".repeat(200);
    let mut issued = Vec::new();
    for principal in [
        "o'brien\"; DROP ROLE x; --",
        "zoë@exämple.com",
        "${aws:username}*",
        "a",
        long.as_str(),
    ] {
        let grant = moto_grant(&role, principal);
        let metadata = provider.issue(&grant).await.unwrap();
        for field in ["session_name", "source_identity"] {
            let name = metadata[field].as_str().unwrap();
            assert!(
                (2..=64).contains(&name.len())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)),
                "{principal:?}: {field} {name:?}"
            );
        }
        let credential = provider.credential(&grant, &metadata).await.unwrap();
        provider.revoke(&grant, &metadata).await.unwrap();
        issued.push((metadata["session_name"].as_str().unwrap().to_string(), credential));
    }
    let credentials: Vec<&SecretCredential> = issued.iter().map(|(_, credential)| credential).collect();
    let identities = caller_identities(&credentials);
    let policy = revocation_policy(&role, POLICY_NAME);
    for ((session, _), identity) in issued.iter().zip(identities) {
        assert_eq!(identity["UserId"], format!("{role_id}:{session}"));
        grant_statement(&policy, &format!("{role_id}:{session}"));
    }
}

#[tokio::test]
async fn iam_errors_name_the_role_and_how_to_fix_it_but_no_key() {
    let provider = AwsProvider::new().unwrap();
    let grant = moto_grant("hp-aws-no-such-role", "alice");
    let error = provider.revoke(&grant, &json!({})).await.unwrap_err().to_string();
    assert!(
        error.starts_with("target prod-aws: IAM PutRolePolicy hallpass-revocations on role"),
        "{error}"
    );
    assert!(error.contains("NoSuchEntity"), "{error}");
    assert!(
        error.contains("does not exist in account 123456789012: check `role_arn`"),
        "{error}"
    );
    assert_no_secret(&error, None);
}

#[tokio::test]
async fn the_target_test_checks_each_permission_and_says_what_is_missing() {
    let (role, _) = create_role();
    let provider = AwsProvider::new().unwrap();
    let checks = provider.test(&target(&role, &support::aws_endpoint())).await.unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "settings",
            "admin-keys",
            "assume-role",
            "get-role-policy",
            "put-role-policy",
            "delete-role-policy"
        ]
    );
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
    assert!(
        checks[2]
            .detail
            .contains(&format!("assumed-role/{role}/hallpass-target-test")),
        "{checks:?}"
    );
    // The test policy is gone again.
    let leftover = admin_python(
        r#"
import boto3, json, os
iam = boto3.client("iam", endpoint_url=os.environ["HP_ENDPOINT"])
print(json.dumps(iam.list_role_policies(RoleName=os.environ["HP_ROLE"])["PolicyNames"]))
"#,
        &[("HP_ROLE", &role)],
    );
    assert_eq!(leftover, json!([]));

    let missing = provider
        .test(&target("hp-aws-no-such-role", &support::aws_endpoint()))
        .await
        .unwrap();
    let failed: Vec<&str> = missing.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
    assert_eq!(failed, ["put-role-policy", "delete-role-policy"], "{missing:?}");
    assert!(missing[4].detail.contains("check `role_arn`"), "{missing:?}");
    for check in &missing {
        assert_no_secret(&check.detail, None);
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_fast_and_clearly() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let provider = AwsProvider::new().unwrap();
    let grant = grant(
        target("dev", &format!("http://{closed}")),
        "alice",
        chrono::Duration::hours(1),
    );
    let started = Instant::now();
    let error = provider.issue(&grant).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(
        error.contains(&format!("STS at http://{closed}/ is unreachable")) && error.contains("endpoint settings"),
        "{error}"
    );
    assert_no_secret(&error, None);

    // An endpoint that accepts and never answers: the target's timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut target = target("dev", &format!("http://{}", silent.local_addr().unwrap()));
    target.config.insert("timeout_seconds".into(), json!(1));
    let started = Instant::now();
    let error = provider
        .revoke(&grant_on(target), &json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(error.contains("did not answer within 1s"), "{error}");
    drop(silent);
}

fn grant_on(target: TargetContext) -> GrantContext {
    grant(target, "alice", chrono::Duration::hours(1))
}

/// What the recorder saw of one call.
#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Recorded {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }
}

/// An HTTP server on a thread that records each request and answers every
/// one like GetCallerIdentity.
fn recorder() -> (SocketAddr, Arc<Mutex<Vec<Recorded>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut data = Vec::new();
            let mut buffer = [0u8; 4096];
            let request = loop {
                let n = stream.read(&mut buffer).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                data.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&data).into_owned();
                let Some((head, body)) = text.split_once("\r\n\r\n") else {
                    continue;
                };
                let mut lines = head.lines();
                let path = lines
                    .next()
                    .unwrap_or_default()
                    .split(' ')
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|line| line.split_once(':'))
                    .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                    .collect();
                let recorded = Recorded {
                    path,
                    headers,
                    body: body.to_string(),
                };
                if recorded.body.len() >= recorded.header("content-length").parse().unwrap_or(0) {
                    break Some(recorded);
                }
            };
            let Some(request) = request else { continue };
            record.lock().unwrap().push(request);
            let body = "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/rec</Arn>\
                        </GetCallerIdentityResult></GetCallerIdentityResponse>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn calls_are_signed_exactly_as_botocore_signs_them() {
    let (addr, seen) = recorder();
    let mut target = target("dev", &format!("http://{addr}"));
    target.config.insert("region".into(), json!("us-west-2"));
    let checks = AwsProvider::new().unwrap().test(&target).await.unwrap();
    assert!(checks[1].ok, "{checks:?}");
    let requests = seen.lock().unwrap().clone();
    let actions: Vec<String> = requests
        .iter()
        .map(|r| r.body.split('&').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        actions,
        [
            "Action=GetCallerIdentity",
            "Action=AssumeRole",
            "Action=GetRolePolicy",
            "Action=PutRolePolicy",
            "Action=DeleteRolePolicy"
        ]
    );
    // STS is signed for the target's region, IAM for its partition's.
    let calls: Vec<Value> = requests
        .iter()
        .map(|r| {
            let sts = r.body.contains("GetCallerIdentity") || r.body.contains("AssumeRole");
            json!({
                "url": format!("http://{addr}{}", r.path),
                "body": r.body,
                "content_type": r.header("content-type"),
                "amz_date": r.header("x-amz-date"),
                "authorization": r.header("authorization"),
                "service": if sts { "sts" } else { "iam" },
                "region": if sts { "us-west-2" } else { "us-east-1" },
            })
        })
        .collect();
    let verdicts = python(
        r#"
import json, os, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
credentials = Credentials(os.environ["HP_KEY_ID"], os.environ["HP_SECRET"])
for call in json.loads(os.environ["HP_CALLS"]):
    request = AWSRequest(method="POST", url=call["url"], data=call["body"].encode(),
                         headers={"Content-Type": call["content_type"]})
    request.context["timestamp"] = call["amz_date"]
    signer = SigV4Auth(credentials, call["service"], call["region"])
    signer._modify_request_before_signing(request)
    string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    expected = "AWS4-HMAC-SHA256 Credential={}, SignedHeaders={}, Signature={}".format(
        signer.scope(request), signer.signed_headers(signer.headers_to_sign(request)),
        signer.signature(string_to_sign, request))
    print(expected == call["authorization"], expected, call["authorization"])
"#,
        &[
            ("HP_KEY_ID", ADMIN_KEY_ID),
            ("HP_SECRET", ADMIN_SECRET),
            ("HP_CALLS", &serde_json::to_string(&calls).unwrap()),
        ],
    );
    assert_eq!(verdicts.lines().count(), 5, "{verdicts}");
    assert!(verdicts.lines().all(|line| line.starts_with("True ")), "{verdicts}");
    assert!(requests.iter().all(|r| !r.body.contains(ADMIN_SECRET)));
}
