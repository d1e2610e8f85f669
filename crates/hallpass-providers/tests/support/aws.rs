//! moto (AWS STS and IAM on one local port) driven with boto3, AWS's own
//! Python SDK: the admin's keys, IAM roles to assume, and what IAM holds.
//! Shared by the aws provider's tests and the end-to-end suite.

use std::process::Command;

use serde_json::Value;

pub const ADMIN_KEY_ID: &str = "AKIAHALLPASSTEST0001";
pub const ADMIN_SECRET: &str = "hallpass/test+SECRET0123456789abcdefghij";
pub const ACCOUNT: &str = "123456789012";

/// Runs `script` with boto3's interpreter, no AWS configuration of the
/// machine, and `env`; its standard output.
pub fn python(script: &str, env: &[(&str, &str)]) -> String {
    let output = Command::new(super::aws_python())
        .arg("-c")
        .arg(script)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("python3 with boto3 (scripts/test installs it)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python failed: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// The same, as the admin, with `HP_ENDPOINT` set; parses JSON output.
pub fn admin_python(script: &str, env: &[(&str, &str)]) -> Value {
    let endpoint = super::aws_endpoint();
    let mut all = vec![
        ("AWS_ACCESS_KEY_ID", ADMIN_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", ADMIN_SECRET),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("HP_ENDPOINT", endpoint.as_str()),
    ];
    all.extend_from_slice(env);
    serde_json::from_str(&python(script, &all)).unwrap()
}

/// A new IAM role in moto; its name and id.
pub fn create_role() -> (String, String) {
    let name = super::unique("hp-aws-");
    let created = admin_python(
        r#"
import boto3, json, os
iam = boto3.client("iam", endpoint_url=os.environ["HP_ENDPOINT"])
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
         "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"]}]}
role = iam.create_role(RoleName=os.environ["HP_ROLE"], AssumeRolePolicyDocument=json.dumps(trust))["Role"]
print(json.dumps(role["RoleId"]))
"#,
        &[("HP_ROLE", &name)],
    );
    (name, created.as_str().unwrap().to_string())
}

/// The role's inline policy `policy` as boto3 reads it (`null`: none).
pub fn revocation_policy(role: &str, policy: &str) -> Value {
    admin_python(
        r#"
import boto3, json, os
iam = boto3.client("iam", endpoint_url=os.environ["HP_ENDPOINT"])
try:
    document = iam.get_role_policy(RoleName=os.environ["HP_ROLE"], PolicyName=os.environ["HP_POLICY"])["PolicyDocument"]
except iam.exceptions.NoSuchEntityException:
    document = None
print(json.dumps(document if not isinstance(document, str) else json.loads(document)))
"#,
        &[("HP_ROLE", role), ("HP_POLICY", policy)],
    )
}
