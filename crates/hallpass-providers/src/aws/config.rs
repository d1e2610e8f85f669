//! An `aws` target's settings, secrets and role `grant` block, read and
//! checked: the IAM role's ARN, the region and where STS and IAM answer, the
//! admin keys, and what a session may do and for how long.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use reqwest::Url;
use serde_json::{Map, Value};

use crate::{ProviderError, SecretSpec, SecretValue, TargetSecrets, check_secret_names, whole_number};

/// The target `type` served by [`super::AwsProvider`].
pub const TARGET_TYPE: &str = "aws";
/// The settings an aws target accepts in `config`.
pub const SETTINGS: [&str; 6] = [
    "region",
    "role_arn",
    "endpoint_url",
    "sts_endpoint_url",
    "iam_endpoint_url",
    "timeout_seconds",
];
/// The settings a role's `grant` block on an aws target accepts.
pub const GRANT_SETTINGS: [&str; 2] = ["session_policy", "max_session_duration"];

/// The admin's access key id.
pub const ACCESS_KEY_ID: &str = "access_key_id";
/// The admin's secret access key.
pub const SECRET_ACCESS_KEY: &str = "secret_access_key";

/// The secrets an aws target takes.
pub const SECRETS: &[SecretSpec] = &[
    SecretSpec {
        name: ACCESS_KEY_ID,
        required: true,
        description: "access key id of the IAM identity that may assume the role and edit its inline policies",
    },
    SecretSpec {
        name: SECRET_ACCESS_KEY,
        required: true,
        description: "secret access key of that IAM identity",
    },
];

/// Per-call timeout when `timeout_seconds` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Allowed values of `timeout_seconds`.
pub const TIMEOUT_RANGE_SECONDS: RangeInclusive<u64> = 1..=60;
/// STS's limits on `DurationSeconds`: 15 minutes to 12 hours.
pub const SESSION_SECONDS: RangeInclusive<u64> = 900..=43_200;
/// A role's `MaxSessionDuration` unless its owner raised it.
pub const DEFAULT_MAX_SESSION_SECONDS: u64 = 3_600;
/// STS's limit on an inline session policy, in characters.
pub const SESSION_POLICY_MAX_CHARS: usize = 2_048;

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_config(TARGET_TYPE, message)
}

fn invalid_grant(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_grant(TARGET_TYPE, message)
}

/// The AWS partitions whose endpoints Hallpass knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Aws,
    China,
    GovCloud,
}

impl Partition {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "aws" => Some(Self::Aws),
            "aws-cn" => Some(Self::China),
            "aws-us-gov" => Some(Self::GovCloud),
            _ => None,
        }
    }

    /// Whether `region` belongs to this partition.
    fn holds(self, region: &str) -> bool {
        match self {
            Self::Aws => !region.starts_with("cn-") && !region.starts_with("us-gov-"),
            Self::China => region.starts_with("cn-"),
            Self::GovCloud => region.starts_with("us-gov-"),
        }
    }

    fn sts(self, region: &str) -> String {
        match self {
            Self::China => format!("https://sts.{region}.amazonaws.com.cn/"),
            Self::Aws | Self::GovCloud => format!("https://sts.{region}.amazonaws.com/"),
        }
    }

    /// IAM is global to a partition: one endpoint, one signing region.
    fn iam(self) -> (&'static str, &'static str) {
        match self {
            Self::Aws => ("https://iam.amazonaws.com/", "us-east-1"),
            Self::China => ("https://iam.cn-north-1.amazonaws.com.cn/", "cn-north-1"),
            Self::GovCloud => ("https://iam.us-gov.amazonaws.com/", "us-gov-west-1"),
        }
    }
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn {
    pub arn: String,
    /// `None` for a partition Hallpass has no endpoints for.
    pub partition: Option<Partition>,
    pub account: String,
    /// The role's name, which IAM's role-policy calls take.
    pub name: String,
}

impl RoleArn {
    pub fn parse(text: &str) -> Result<Self, ProviderError> {
        let example = "e.g. arn:aws:iam::123456789012:role/hallpass-dev";
        let refuse = |why: &str| invalid(format!("`role_arn` is not the ARN of an IAM role: {why} ({example})"));
        let parts: Vec<&str> = text.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts.as_slice() else {
            return Err(refuse("it has fewer than six `:`-separated parts"));
        };
        if *arn != "arn" || *service != "iam" || !region.is_empty() {
            return Err(refuse("it must start with `arn:<partition>:iam::`"));
        }
        let partition_ok = partition.len() >= 3
            && partition.starts_with("aws")
            && partition.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
        if !partition_ok {
            return Err(refuse("its partition must be aws, aws-cn or aws-us-gov"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse("its account id must be 12 digits"));
        }
        let Some(path_and_name) = resource.strip_prefix("role/") else {
            return Err(refuse("its resource must be `role/<name>`"));
        };
        let (path, name) = path_and_name.rsplit_once('/').unwrap_or(("", path_and_name));
        if name.is_empty() || name.len() > 64 || !name.chars().all(is_iam_name_char) {
            return Err(refuse(
                "the role name must be 1 to 64 letters, digits or any of _+=,.@-",
            ));
        }
        if path.len() > 510 || !path.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(refuse("the role path must be printable ASCII, at most 512 characters"));
        }
        Ok(Self {
            arn: text.to_string(),
            partition: Partition::parse(partition),
            account: account.to_string(),
            name: name.to_string(),
        })
    }
}

/// A character IAM and STS allow in names (`[\w+=,.@-]`).
pub fn is_iam_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// Where one service answers, and the region its calls are signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: Url,
    pub signing_region: String,
}

/// An aws target's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub region: String,
    pub role: RoleArn,
    /// The one endpoint for every service (a local emulator, a proxy), also
    /// handed to the requester as `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<Url>,
    pub sts: Endpoint,
    pub iam: Endpoint,
    pub timeout: Duration,
}

impl AwsConfig {
    /// Reads and checks a target's `config` object.
    pub fn parse(config: &Map<String, Value>) -> Result<Self, ProviderError> {
        if let Some(unknown) = config.keys().find(|key| !SETTINGS.contains(&key.as_str())) {
            return Err(invalid(format!(
                "unknown setting `{unknown}`; aws targets take `region` and `role_arn` (required), \
                 `endpoint_url`, `sts_endpoint_url`, `iam_endpoint_url` and `timeout_seconds` in `config`, \
                 and the admin keys in `secrets`"
            )));
        }
        let region = parse_region(required_string(config, "region", "\"eu-west-1\"")?)?;
        let role = RoleArn::parse(required_string(
            config,
            "role_arn",
            "\"arn:aws:iam::123456789012:role/dev\"",
        )?)?;
        let endpoint_url = optional_url(config, "endpoint_url")?;
        let sts_url = optional_url(config, "sts_endpoint_url")?.or_else(|| endpoint_url.clone());
        let iam_url = optional_url(config, "iam_endpoint_url")?.or_else(|| endpoint_url.clone());
        let (sts, iam) = endpoints(&region, &role, sts_url, iam_url)?;
        let timeout = match config.get("timeout_seconds") {
            None => DEFAULT_TIMEOUT,
            Some(value) => {
                Duration::from_secs(whole_number(value, "timeout_seconds", &TIMEOUT_RANGE_SECONDS).map_err(invalid)?)
            }
        };
        Ok(Self {
            region,
            role,
            endpoint_url,
            sts,
            iam,
            timeout,
        })
    }
}

/// STS and IAM endpoints: the ones set, else the partition's own.
fn endpoints(
    region: &str,
    role: &RoleArn,
    sts_url: Option<Url>,
    iam_url: Option<Url>,
) -> Result<(Endpoint, Endpoint), ProviderError> {
    let Some(partition) = role.partition else {
        return match (sts_url, iam_url) {
            (Some(sts), Some(iam)) => Ok((
                Endpoint {
                    url: sts,
                    signing_region: region.to_string(),
                },
                Endpoint {
                    url: iam,
                    signing_region: region.to_string(),
                },
            )),
            _ => Err(invalid(
                "the partition of `role_arn` is not aws, aws-cn or aws-us-gov: set `endpoint_url`, or both \
                 `sts_endpoint_url` and `iam_endpoint_url`",
            )),
        };
    };
    if !partition.holds(region) {
        return Err(invalid(format!(
            "`region` {region} is not in the partition of `role_arn` ({}); use a region of that partition",
            role.arn.split(':').nth(1).unwrap_or_default()
        )));
    }
    let sts_url = match sts_url {
        Some(url) => url,
        None => {
            Url::parse(&partition.sts(region)).map_err(|e| invalid(format!("`region` gives no valid STS URL: {e}")))?
        }
    };
    let (iam_default, iam_region) = partition.iam();
    let iam_url = match iam_url {
        Some(url) => url,
        None => Url::parse(iam_default).map_err(|e| invalid(format!("no valid IAM URL: {e}")))?,
    };
    Ok((
        Endpoint {
            url: sts_url,
            signing_region: region.to_string(),
        },
        Endpoint {
            url: iam_url,
            signing_region: iam_region.to_string(),
        },
    ))
}

fn required_string<'a>(config: &'a Map<String, Value>, name: &str, example: &str) -> Result<&'a str, ProviderError> {
    match config.get(name) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.trim()),
        Some(Value::String(_)) | None => Err(invalid(format!("`{name}` is required, e.g. {name} = {example}"))),
        Some(_) => Err(invalid(format!("`{name}` must be a string, e.g. {name} = {example}"))),
    }
}

fn parse_region(region: &str) -> Result<String, ProviderError> {
    let shaped = (4..=32).contains(&region.len())
        && region.starts_with(|c: char| c.is_ascii_lowercase())
        && region.ends_with(|c: char| c.is_ascii_digit())
        && region.contains('-')
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if shaped {
        Ok(region.to_string())
    } else {
        Err(invalid(format!(
            "`region` must be an AWS region name such as eu-west-1, found {:?}",
            region.chars().take(40).collect::<String>()
        )))
    }
}

fn optional_url(config: &Map<String, Value>, name: &str) -> Result<Option<Url>, ProviderError> {
    match config.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => parse_endpoint_url(name, text).map(Some),
        Some(_) => Err(invalid(format!("`{name}` must be a string"))),
    }
}

/// An https URL, or http on a loopback address (a local emulator): the
/// admin's signed calls and the sessions' keys travel over it.
fn parse_endpoint_url(name: &str, text: &str) -> Result<Url, ProviderError> {
    // The parse error never repeats the input.
    let url = Url::parse(text.trim()).map_err(|e| invalid(format!("`{name}` is not a valid URL: {e}")))?;
    let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
        return Err(invalid(format!("`{name}` must name a host")));
    };
    // IPv6 hosts come in brackets.
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(invalid(format!(
                "`{name}` must use https: plain http is allowed only on a loopback address (127.0.0.1, ::1, \
                 localhost), for a local emulator"
            )));
        }
        other => return Err(invalid(format!("`{name}` must use https, not `{other}`"))),
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "`{name}` must be a plain endpoint, without user-info, query or fragment: the keys go in `secrets`"
        )));
    }
    Ok(url)
}

/// The admin's keys, checked. Never prints a value.
pub struct AwsSecrets {
    pub access_key_id: SecretValue,
    pub secret_access_key: SecretValue,
}

impl fmt::Debug for AwsSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSecrets").finish_non_exhaustive()
    }
}

impl AwsSecrets {
    pub fn parse(secrets: &TargetSecrets) -> Result<Self, ProviderError> {
        check_secret_names(TARGET_TYPE, SECRETS, secrets)?;
        let get = |name: &str| {
            secrets
                .get(name)
                .map(|value| SecretValue::new(value.expose().trim()))
                .ok_or_else(|| invalid(format!("secret `{name}` is required")))
        };
        let access_key_id = get(ACCESS_KEY_ID)?;
        let secret_access_key = get(SECRET_ACCESS_KEY)?;
        let id = access_key_id.expose();
        if !(16..=128).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid(format!(
                "secret `{ACCESS_KEY_ID}` must be an access key id: 16 to 128 letters and digits, such as AKIA..."
            )));
        }
        let secret = secret_access_key.expose();
        if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(format!(
                "secret `{SECRET_ACCESS_KEY}` must be a secret access key: visible ASCII characters without spaces"
            )));
        }
        Ok(Self {
            access_key_id,
            secret_access_key,
        })
    }

    /// `text` with every key replaced by `[redacted]`: AWS error messages
    /// may quote what they were sent.
    pub fn scrub(&self, text: &str) -> String {
        [&self.access_key_id, &self.secret_access_key]
            .iter()
            .map(|secret| secret.expose())
            .filter(|secret| !secret.is_empty())
            .fold(text.to_string(), |text, secret| text.replace(secret, "[redacted]"))
    }
}

/// A role's `grant` block on an aws target, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsGrant {
    /// The session policy, compact JSON, sent as `Policy`.
    pub session_policy: Option<String>,
    /// The longest session STS is asked for (the role's own limit may be lower).
    pub max_session_seconds: u64,
}

impl AwsGrant {
    pub fn parse(grant: &Map<String, Value>) -> Result<Self, ProviderError> {
        if let Some(unknown) = grant.keys().find(|key| !GRANT_SETTINGS.contains(&key.as_str())) {
            return Err(invalid_grant(format!(
                "unknown setting `{unknown}`; roles on aws targets take `session_policy` (an IAM policy \
                 document) and `max_session_duration` (seconds)"
            )));
        }
        let session_policy = grant.get("session_policy").map(parse_session_policy).transpose()?;
        let max_session_seconds = match grant.get("max_session_duration") {
            None => DEFAULT_MAX_SESSION_SECONDS,
            Some(value) => whole_number(value, "max_session_duration", &SESSION_SECONDS).map_err(|message| {
                invalid_grant(format!(
                    "{message}: STS gives sessions of 15 minutes to 12 hours, and the role's own \
                     MaxSessionDuration must allow it"
                ))
            })?,
        };
        Ok(Self {
            session_policy,
            max_session_seconds,
        })
    }

    /// `DurationSeconds` for a session with `remaining` seconds of grant
    /// left: that, raised to STS's minimum and cut to the grant's maximum.
    pub fn duration_seconds(&self, remaining: i64) -> u64 {
        u64::try_from(remaining)
            .unwrap_or(0)
            .clamp(*SESSION_SECONDS.start(), self.max_session_seconds)
    }
}

/// A JSON policy document (an object, or a string holding one), compacted.
fn parse_session_policy(value: &Value) -> Result<String, ProviderError> {
    let document = match value {
        Value::Object(_) => value.clone(),
        Value::String(text) => serde_json::from_str::<Value>(text)
            .map_err(|e| invalid_grant(format!("`session_policy` is not valid JSON: {e}")))?,
        _ => {
            return Err(invalid_grant(
                "`session_policy` must be an IAM policy document (an object or JSON text)",
            ));
        }
    };
    let Value::Object(fields) = &document else {
        return Err(invalid_grant(
            "`session_policy` must be a JSON object, an IAM policy document",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|key| !["Version", "Id", "Statement"].contains(&key.as_str()))
    {
        return Err(invalid_grant(format!(
            "`session_policy` has `{unknown}`; a policy document has only `Version`, `Id` and `Statement`"
        )));
    }
    if let Some(version) = fields.get("Version")
        && !matches!(version.as_str(), Some("2012-10-17" | "2008-10-17"))
    {
        return Err(invalid_grant("`session_policy`'s `Version` must be \"2012-10-17\""));
    }
    let statements = match fields.get("Statement") {
        Some(Value::Array(list)) if !list.is_empty() => list.iter().collect::<Vec<_>>(),
        Some(statement @ Value::Object(_)) => vec![statement],
        _ => {
            return Err(invalid_grant(
                "`session_policy` needs a `Statement`: one statement object or a list of them",
            ));
        }
    };
    if !statements
        .iter()
        .all(|s| matches!(s.get("Effect").and_then(Value::as_str), Some("Allow" | "Deny")))
    {
        return Err(invalid_grant(
            "every statement of `session_policy` must be an object with `Effect` \"Allow\" or \"Deny\"",
        ));
    }
    let packed = document.to_string();
    let length = packed.chars().count();
    if length > SESSION_POLICY_MAX_CHARS {
        return Err(invalid_grant(format!(
            "`session_policy` is {length} characters without spaces; STS takes at most {SESSION_POLICY_MAX_CHARS}: \
             shorten it, or put the permissions in the role's own policies"
        )));
    }
    Ok(packed)
}
