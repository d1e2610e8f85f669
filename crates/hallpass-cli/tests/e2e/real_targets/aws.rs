//! aws targets with boto3 against moto: STS sessions on the target's role,
//! and on revoke the inline deny statement AWS refuses the grant's sessions
//! by. moto evaluates no IAM policy, so a revoked session still works
//! against it; what is checked is the statement AWS would evaluate.

use std::collections::BTreeMap;

use serde_json::Value;

use super::support::aws::{ACCOUNT, ADMIN_KEY_ID, ADMIN_SECRET, create_role, python, revocation_policy};
use super::{Proxy, World, host_port, support};

/// The inline policy revocations go into (docs/targets.md).
const REVOCATIONS: &str = "hallpass-revocations";

fn target(role: &str, endpoint: &str) -> String {
    format!(
        "  type = \"aws\"\n  config = {{ region = \"us-east-1\", role_arn = \"arn:aws:iam::{ACCOUNT}:role/{role}\", \
         endpoint_url = \"{endpoint}\" }}\n  secrets = {{ access_key_id = \"{ADMIN_KEY_ID}\", \
         secret_access_key = {} }}",
        serde_json::to_string(ADMIN_SECRET).expect("json")
    )
}

/// `sts get-caller-identity` with boto3 and nothing but the credential's
/// environment.
fn caller_identity(env: &BTreeMap<String, String>) -> Value {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = python(
        "import boto3, json\nprint(json.dumps(boto3.session.Session().client('sts').get_caller_identity()))",
        &env,
    );
    serde_json::from_str(&output).expect("JSON from boto3")
}

/// The deny statement for the session `user_id` (`ROLEID:SESSION`).
fn deny_for(role: &str, user_id: &str) -> Option<Value> {
    let policy = revocation_policy(role, REVOCATIONS);
    policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|statement| statement["Condition"]["StringLike"]["aws:userid"] == user_id)
        .cloned()
}

#[test]
fn an_aws_session_works_in_boto3_and_a_revoke_denies_it_with_a_verified_statement() {
    let world = World::new("aws");
    let (role, role_id) = create_role();
    world.apply(&target(&role, &support::aws_endpoint()), "{}");
    let (code, report) = world.target_test();
    assert_eq!(code, Some(0), "{report}");

    let grant = world.request();
    let identity = caller_identity(&grant.env);
    let user_id = identity["UserId"].as_str().expect("UserId").to_string();
    assert!(user_id.starts_with(&format!("{role_id}:")), "{identity}");
    assert!(
        identity["Arn"]
            .as_str()
            .is_some_and(|arn| arn.contains(&format!("assumed-role/{role}/"))),
        "{identity}"
    );
    assert_eq!(deny_for(&role, &user_id), None);
    world.assert_not_stored(&grant.env["AWS_SECRET_ACCESS_KEY"]);
    world.assert_not_stored(ADMIN_SECRET);

    world.revoke_verified(&grant.id);
    let statement = deny_for(&role, &user_id).expect("a deny statement for the grant's sessions");
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(statement["Action"], "*");
    assert!(
        statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"].is_string(),
        "{statement}"
    );
}

#[test]
fn a_revoke_while_aws_is_unreachable_is_revoke_failed_until_it_is_back() {
    let world = World::new("awsdown");
    let (role, role_id) = create_role();
    let proxy = Proxy::start(host_port(&support::aws_endpoint()));
    world.apply(&target(&role, &format!("http://127.0.0.1:{}", proxy.port)), "{}");
    let grant = world.request();
    let user_id = caller_identity(&grant.env)["UserId"]
        .as_str()
        .expect("UserId")
        .to_string();
    assert!(user_id.starts_with(&role_id));
    // Access on AWS is there until the deny statement is.
    world.revoke_while_down(&proxy, &grant.id, || deny_for(&role, &user_id).is_none());
}
