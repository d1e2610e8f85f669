//! The `aws` target: short STS sessions of one IAM role per grant.
//!
//! ```hcl
//! target "prod-aws" {
//!   type    = "aws"
//!   config  = { region = "eu-west-1", role_arn = "arn:aws:iam::123456789012:role/prod-readonly" }
//!   secrets = { access_key_id = env("HP_AWS_KEY_ID"), secret_access_key = env("HP_AWS_SECRET") }
//! }
//! ```
//!
//! Issuing calls STS `AssumeRole` on `role_arn` with the admin's keys: the
//! `RoleSessionName` is derived from the principal and the grant id (so
//! every session of a grant has the same name, see [`session_name`]), the
//! `SourceIdentity` is the principal ([`source_identity`]), the duration the
//! grant's remaining time (15 minutes at least, the grant block's
//! `max_session_duration` at most), and the grant block's `session_policy`
//! narrows what the session may do. The metadata keeps the role, the
//! session's name and its `AROA…:name` id, never keys. Every time the
//! requester fetches the credential, `AssumeRole` runs again: fresh keys,
//! nothing stored.
//!
//! STS sessions cannot be deleted. Revoking puts a statement into the
//! role's inline policy `hallpass-revocations` that denies everything to
//! sessions with the grant's `aws:userid` issued before the revocation (see
//! [`revocations`]); verifying reads it back. Calls are signed with the
//! `aws-sigv4` crate and sent over rustls with aws-lc-rs.

mod client;
mod config;
mod names;
pub mod revocations;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::{BoxFuture, FutureExt};
use futures::lock::Mutex;
use serde_json::{Map, Value, json};

use crate::{
    CredentialProvider, GrantContext, ProviderError, SecretCredential, SecretSpec, SecretValue, TargetContext,
    TargetSecrets, TestCheck, Verification,
};
use client::{Call, CallError, QueryClient, Service, parse_answer, xml_text};
use revocations::{POLICY_NAME, POLICY_SIZE_LIMIT, RevocationPolicy, Revoked};

pub use client::CONNECT_TIMEOUT;
pub use config::{
    ACCESS_KEY_ID, AwsConfig, AwsGrant, AwsSecrets, DEFAULT_MAX_SESSION_SECONDS, DEFAULT_TIMEOUT, Endpoint,
    GRANT_SETTINGS, Partition, RoleArn, SECRET_ACCESS_KEY, SECRETS, SESSION_POLICY_MAX_CHARS, SESSION_SECONDS,
    SETTINGS, TARGET_TYPE, TIMEOUT_RANGE_SECONDS,
};
pub use names::{session_name, source_identity};

/// The inline policy `test` puts on the role and deletes again.
pub const TEST_POLICY_NAME: &str = "hallpass-target-test";
/// The session name and source identity of `test`'s `AssumeRole`.
pub const TEST_SESSION_NAME: &str = "hallpass-target-test";

/// A target's settings and keys, read once per call.
struct Target<'a> {
    name: &'a str,
    config: AwsConfig,
    keys: AwsSecrets,
}

impl<'a> Target<'a> {
    fn parse(target: &'a TargetContext) -> Result<Self, ProviderError> {
        Ok(Self {
            name: &target.name,
            config: AwsConfig::parse(&target.config)?,
            keys: AwsSecrets::parse(&target.secrets)?,
        })
    }

    /// A failed call as the target's error: what failed, AWS's answer, and
    /// how to fix it when the code says.
    fn failed(&self, what: &str, error: &CallError) -> ProviderError {
        let hint = hint(error, &self.config)
            .map(|hint| format!("; {hint}"))
            .unwrap_or_default();
        ProviderError::Target {
            target: self.name.to_string(),
            message: format!("{what} failed: {error}{hint}"),
        }
    }
}

/// How to fix what AWS's error code says is wrong.
fn hint(error: &CallError, config: &AwsConfig) -> Option<String> {
    let role = &config.role;
    let (code, message) = match error {
        CallError::Api { code, message, .. } => (code.as_str(), message.as_str()),
        CallError::Transport(_) => {
            return Some("check the target's region and endpoint settings and the network".into());
        }
    };
    Some(match code {
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "IncompleteSignature"
        | "ExpiredToken"
        | "AuthFailure" => format!(
            "the target's `{ACCESS_KEY_ID}` and `{SECRET_ACCESS_KEY}` are not working keys of an IAM identity: set \
             valid ones in its secrets"
        ),
        "AccessDenied" | "AccessDeniedException" => format!(
            "the admin identity needs sts:AssumeRole and sts:SetSourceIdentity on {} (allowed by its own policies \
             and the role's trust policy) and iam:GetRolePolicy, iam:PutRolePolicy and iam:DeleteRolePolicy on the \
             role",
            role.arn
        ),
        "NoSuchEntity" => format!(
            "role {} does not exist in account {}: check `role_arn`",
            role.name, role.account
        ),
        "ValidationError" if message.contains("DurationSeconds") || message.contains("MaxSessionDuration") => {
            "raise the role's MaxSessionDuration (at most 43200 seconds) or set a lower `max_session_duration` in \
             the role's grant block"
                .into()
        }
        "PackedPolicyTooLarge" | "MalformedPolicyDocument" => {
            "shorten or correct the `session_policy` in the role's grant block".into()
        }
        "RegionDisabledException" => format!(
            "activate STS in {} (IAM account settings), or use another `region`",
            config.region
        ),
        "LimitExceeded" | "LimitExceededException" => format!(
            "the inline policies of role {} exceed IAM's {POLICY_SIZE_LIMIT} characters: move other inline \
             policies into managed ones",
            role.name
        ),
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => "AWS throttled the call; it is retried".into(),
        _ => return None,
    })
}

/// One STS session's keys and names. Never prints a key.
struct Session {
    access_key_id: SecretValue,
    secret_access_key: SecretValue,
    session_token: SecretValue,
    expiration: String,
    assumed_role_id: String,
    assumed_role_arn: String,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("assumed_role_id", &self.assumed_role_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

impl Session {
    fn parse(answer: &str) -> Result<Self, CallError> {
        let doc = parse_answer(answer, "AssumeRole")?;
        let field = |name: &str| {
            xml_text(&doc, name)
                .filter(|text| !text.is_empty())
                .ok_or_else(|| CallError::Transport(format!("the AssumeRole answer has no {name}")))
        };
        Ok(Self {
            access_key_id: SecretValue::new(field("AccessKeyId")?),
            secret_access_key: SecretValue::new(field("SecretAccessKey")?),
            session_token: SecretValue::new(field("SessionToken")?),
            expiration: field("Expiration")?,
            assumed_role_id: field("AssumedRoleId")?,
            assumed_role_arn: field("Arn")?,
        })
    }
}

/// What `AssumeRole` is asked for.
struct SessionRequest<'a> {
    session_name: &'a str,
    source_identity: &'a str,
    duration_seconds: u64,
    policy: Option<&'a str>,
}

/// Issues STS sessions of a target's IAM role and revokes them with the
/// role's inline deny policy.
pub struct AwsProvider {
    client: QueryClient,
    /// Serialises this process's read-modify-writes of revocation policies.
    policy_lock: Mutex<()>,
}

impl fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsProvider").finish_non_exhaustive()
    }
}

impl AwsProvider {
    /// Builds the shared HTTP client (rustls on aws-lc-rs, no redirects).
    pub fn new() -> Result<Self, ProviderError> {
        Ok(Self {
            client: QueryClient::new()?,
            policy_lock: Mutex::new(()),
        })
    }

    async fn call(&self, target: &Target<'_>, call: &Call<'_>) -> Result<String, CallError> {
        let endpoint = match call.service {
            Service::Sts => &target.config.sts,
            Service::Iam => &target.config.iam,
        };
        self.client
            .call(&target.keys, endpoint, target.config.timeout, call)
            .await
    }

    async fn assume_role(&self, target: &Target<'_>, request: &SessionRequest<'_>) -> Result<Session, CallError> {
        let duration = request.duration_seconds.to_string();
        let mut params = vec![
            ("RoleArn", target.config.role.arn.as_str()),
            ("RoleSessionName", request.session_name),
            ("SourceIdentity", request.source_identity),
            ("DurationSeconds", duration.as_str()),
        ];
        if let Some(policy) = request.policy {
            params.push(("Policy", policy));
        }
        let call = Call {
            service: Service::Sts,
            action: "AssumeRole",
            params,
        };
        Session::parse(&self.call(target, &call).await?)
    }

    /// A new session of `grant`, for the grant's remaining time.
    async fn grant_session(&self, target: &Target<'_>, grant: &GrantContext) -> Result<Session, ProviderError> {
        let limits = AwsGrant::parse(&grant.grant)?;
        let remaining = (grant.expires_at - Utc::now()).num_seconds();
        if remaining <= 0 {
            return Err(ProviderError::Credential(
                "the grant has expired: no new AWS session is issued for it".into(),
            ));
        }
        let session_name = session_name(&grant.principal, &grant.grant_id);
        let source_identity = source_identity(&grant.principal);
        let request = SessionRequest {
            session_name: &session_name,
            source_identity: &source_identity,
            duration_seconds: limits.duration_seconds(remaining),
            policy: limits.session_policy.as_deref(),
        };
        let what = format!("STS AssumeRole of {} as session {session_name}", target.config.role.arn);
        self.assume_role(target, &request)
            .await
            .map_err(|error| target.failed(&what, &error))
    }

    /// The role's revocation policy; none yet is an empty one.
    async fn read_policy(&self, target: &Target<'_>) -> Result<RevocationPolicy, ProviderError> {
        let call = Call {
            service: Service::Iam,
            action: "GetRolePolicy",
            params: vec![("RoleName", &target.config.role.name), ("PolicyName", POLICY_NAME)],
        };
        let what = format!("IAM GetRolePolicy {POLICY_NAME} of role {}", target.config.role.name);
        let answer = match self.call(target, &call).await {
            Ok(answer) => answer,
            Err(error) if error.code() == Some("NoSuchEntity") => return Ok(RevocationPolicy::default()),
            Err(error) => return Err(target.failed(&what, &error)),
        };
        let doc = parse_answer(&answer, "GetRolePolicy").map_err(|error| target.failed(&what, &error))?;
        RevocationPolicy::parse(xml_text(&doc, "PolicyDocument").as_deref()).map_err(|message| ProviderError::Target {
            target: target.name.to_string(),
            message: format!("{message}: fix or delete it on role {}", target.config.role.name),
        })
    }

    /// Puts `policy` on the role, or deletes it when it has no statement.
    async fn write_policy(&self, target: &Target<'_>, policy: &RevocationPolicy) -> Result<(), CallError> {
        let role = target.config.role.name.as_str();
        let document = policy.document();
        let call = match &document {
            Some(document) => Call {
                service: Service::Iam,
                action: "PutRolePolicy",
                params: vec![
                    ("RoleName", role),
                    ("PolicyName", POLICY_NAME),
                    ("PolicyDocument", document),
                ],
            },
            None => Call {
                service: Service::Iam,
                action: "DeleteRolePolicy",
                params: vec![("RoleName", role), ("PolicyName", POLICY_NAME)],
            },
        };
        match self.call(target, &call).await {
            Err(error) if document.is_none() && error.code() == Some("NoSuchEntity") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Adds the grant's deny statement (see [`RevocationPolicy::revoke`]).
    /// When IAM finds the role's inline policies too large, writes the
    /// smallest fallback instead.
    async fn revoke_sessions(&self, target: &Target<'_>, user_id: &str) -> Result<Revoked, ProviderError> {
        let _guard = self.policy_lock.lock().await;
        let now = Utc::now();
        let mut policy = self.read_policy(target).await?;
        let revoked = policy.revoke(user_id, now, POLICY_SIZE_LIMIT);
        if revoked == Revoked::Unchanged {
            return Ok(revoked);
        }
        let what = format!("IAM PutRolePolicy {POLICY_NAME} on role {}", target.config.role.name);
        match self.write_policy(target, &policy).await {
            Ok(()) => Ok(revoked),
            Err(error) if matches!(error.code(), Some("LimitExceeded" | "LimitExceededException")) => {
                // Other inline policies of the role take room: the smallest form.
                policy.fall_back(user_id, now, 0);
                self.write_policy(target, &policy)
                    .await
                    .map_err(|error| target.failed(&what, &error))?;
                Ok(Revoked::RoleWide)
            }
            Err(error) => Err(target.failed(&what, &error)),
        }
    }
}

/// The grant's sessions' `aws:userid`: `<role id>:<session name>` from the
/// metadata, or `*:<session name>` when the metadata lacks the role id (the
/// policy is on the role, so only its own sessions can match either way).
fn revoked_user_id(grant: &GrantContext, metadata: &Value) -> String {
    let session = session_name(&grant.principal, &grant.grant_id);
    let role_id = metadata
        .get("assumed_role_id")
        .and_then(Value::as_str)
        .and_then(|id| id.strip_suffix(&format!(":{session}")))
        .filter(|role_id| !role_id.is_empty() && role_id.bytes().all(|b| b.is_ascii_alphanumeric()));
    format!("{}:{session}", role_id.unwrap_or("*"))
}

fn metadata(target: &Target<'_>, grant: &GrantContext, session: &Session) -> Value {
    json!({
        "type": TARGET_TYPE,
        "role_arn": target.config.role.arn,
        "region": target.config.region,
        "session_name": session_name(&grant.principal, &grant.grant_id),
        "source_identity": source_identity(&grant.principal),
        "assumed_role_id": session.assumed_role_id,
        "assumed_role_arn": session.assumed_role_arn,
    })
}

fn credential_of(config: &AwsConfig, session: Session) -> SecretCredential {
    let mut env = BTreeMap::new();
    env.insert(
        "AWS_ACCESS_KEY_ID".to_string(),
        session.access_key_id.expose().to_string(),
    );
    env.insert(
        "AWS_SECRET_ACCESS_KEY".to_string(),
        session.secret_access_key.expose().to_string(),
    );
    env.insert(
        "AWS_SESSION_TOKEN".to_string(),
        session.session_token.expose().to_string(),
    );
    env.insert("AWS_REGION".to_string(), config.region.clone());
    env.insert("AWS_DEFAULT_REGION".to_string(), config.region.clone());
    env.insert("AWS_CREDENTIAL_EXPIRATION".to_string(), session.expiration.clone());
    if let Some(endpoint) = &config.endpoint_url {
        env.insert("AWS_ENDPOINT_URL".to_string(), endpoint.to_string());
    }
    SecretCredential::new(TARGET_TYPE, session.session_token.expose().to_string(), env)
}

/// The harmless policy `test` puts and deletes: it denies sessions issued
/// before 2000, of which there are none.
fn test_policy() -> String {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "HallpassTargetTest", "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2000-01-01T00:00:00Z"}},
    }]})
    .to_string()
}

impl AwsProvider {
    async fn check_keys(&self, target: &Target<'_>) -> TestCheck {
        let call = Call {
            service: Service::Sts,
            action: "GetCallerIdentity",
            params: Vec::new(),
        };
        let answer = self.call(target, &call).await.and_then(|answer| {
            let doc = parse_answer(&answer, "GetCallerIdentity")?;
            Ok(xml_text(&doc, "Arn").unwrap_or_default())
        });
        match answer {
            Ok(arn) => TestCheck::passed("admin-keys", format!("the admin keys work: they are {arn}")),
            Err(error) => TestCheck::failed("admin-keys", target.failed("STS GetCallerIdentity", &error).to_string()),
        }
    }

    async fn check_assume_role(&self, target: &Target<'_>) -> TestCheck {
        let request = SessionRequest {
            session_name: TEST_SESSION_NAME,
            source_identity: TEST_SESSION_NAME,
            duration_seconds: *SESSION_SECONDS.start(),
            policy: None,
        };
        let role = &target.config.role.arn;
        match self.assume_role(target, &request).await {
            Ok(session) => TestCheck::passed(
                "assume-role",
                format!(
                    "the admin may assume {role} with a source identity ({})",
                    session.assumed_role_arn
                ),
            ),
            Err(error) => TestCheck::failed(
                "assume-role",
                target.failed(&format!("STS AssumeRole of {role}"), &error).to_string(),
            ),
        }
    }

    /// Reads the revocation policy, then puts and deletes a harmless one.
    async fn check_role_policies(&self, target: &Target<'_>) -> Vec<TestCheck> {
        let role = target.config.role.name.as_str();
        let mut checks = vec![match self.read_policy(target).await {
            Ok(policy) => TestCheck::passed(
                "get-role-policy",
                format!(
                    "iam:GetRolePolicy works on role {role} ({} revocation statements)",
                    policy.len()
                ),
            ),
            Err(error) => TestCheck::failed("get-role-policy", error.to_string()),
        }];
        let document = test_policy();
        let calls = [
            ("put-role-policy", "PutRolePolicy", Some(document.as_str())),
            ("delete-role-policy", "DeleteRolePolicy", None),
        ];
        for (name, action, document) in calls {
            let mut params = vec![("RoleName", role), ("PolicyName", TEST_POLICY_NAME)];
            params.extend(document.map(|document| ("PolicyDocument", document)));
            let call = Call {
                service: Service::Iam,
                action,
                params,
            };
            checks.push(match self.call(target, &call).await {
                Ok(_) => TestCheck::passed(name, format!("iam:{action} works on role {role}")),
                Err(error) => TestCheck::failed(
                    name,
                    target
                        .failed(&format!("IAM {action} {TEST_POLICY_NAME} on role {role}"), &error)
                        .to_string(),
                ),
            });
        }
        checks
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl CredentialProvider for AwsProvider {
    fn target_type(&self) -> &'static str {
        TARGET_TYPE
    }

    fn secrets(&self) -> &'static [SecretSpec] {
        SECRETS
    }

    fn validate_config(&self, config: &Map<String, Value>, secrets: &TargetSecrets) -> Result<(), ProviderError> {
        AwsConfig::parse(config)?;
        AwsSecrets::parse(secrets).map(|_| ())
    }

    fn validate_grant(&self, grant: &Map<String, Value>) -> Result<(), ProviderError> {
        AwsGrant::parse(grant).map(|_| ())
    }

    fn issue<'a>(&'a self, grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
        async move {
            let target = Target::parse(&grant.target)?;
            let session = self.grant_session(&target, grant).await?;
            Ok(metadata(&target, grant, &session))
        }
        .boxed()
    }

    fn credential<'a>(
        &'a self,
        grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>> {
        async move {
            let target = Target::parse(&grant.target)?;
            let session = self.grant_session(&target, grant).await?;
            Ok(credential_of(&target.config, session))
        }
        .boxed()
    }

    fn revoke<'a>(&'a self, grant: &'a GrantContext, metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>> {
        async move {
            let target = Target::parse(&grant.target)?;
            self.revoke_sessions(&target, &revoked_user_id(grant, metadata))
                .await
                .map(|_| ())
        }
        .boxed()
    }

    fn verify<'a>(
        &'a self,
        grant: &'a GrantContext,
        metadata: &'a Value,
    ) -> BoxFuture<'a, Result<Verification, ProviderError>> {
        async move {
            let target = Target::parse(&grant.target)?;
            let user_id = revoked_user_id(grant, metadata);
            let policy = self.read_policy(&target).await?;
            if policy.covers(&user_id, grant.expires_at) {
                return Ok(Verification::Gone);
            }
            Ok(Verification::Remaining(format!(
                "the inline policy {POLICY_NAME} of role {} denies nothing to sessions {user_id}: they may work \
                 until they expire (at most 12 hours after {})",
                target.config.role.name,
                rfc3339(grant.expires_at.min(Utc::now()))
            )))
        }
        .boxed()
    }

    fn test<'a>(&'a self, target: &'a TargetContext) -> BoxFuture<'a, Result<Vec<TestCheck>, ProviderError>> {
        async move {
            let target = Target::parse(target)?;
            let mut checks = vec![TestCheck::passed("settings", "the target's settings are valid")];
            checks.push(self.check_keys(&target).await);
            checks.push(self.check_assume_role(&target).await);
            checks.extend(self.check_role_policies(&target).await);
            Ok(checks)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
