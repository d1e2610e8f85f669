//! The role's inline deny policy that ends revoked grants' sessions, which
//! STS cannot delete: one statement per revoked grant denies everything to
//! sessions named like the grant's and issued before the revocation, pruned
//! once every such session has expired; when IAM's size limit leaves no room,
//! one role-wide statement ends every session issued until now instead (the
//! console's "Revoke active sessions"). Pure: reading and writing the
//! document is the provider's job.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The inline policy's name on the role.
pub const POLICY_NAME: &str = "hallpass-revocations";
/// IAM's limit on a role's inline policies, in characters without spaces
/// (all of them together; other inline policies leave less room).
pub const POLICY_SIZE_LIMIT: usize = 10_240;
/// The longest any STS session lives: a session issued before a statement's
/// time has surely expired this long after it, and the statement can go.
pub const MAX_SESSION_LIFETIME: Duration = Duration::hours(12);
/// A grant's statement denies sessions issued up to this long after the
/// revocation, so a clock of Hallpass's behind AWS's cannot leave a session
/// issued just before the revocation out.
pub const CLOCK_SKEW_MARGIN: Duration = Duration::minutes(5);
/// `Sid` of a grant's statement: this, then 16 hex digits of its `aws:userid`.
const GRANT_SID_PREFIX: &str = "HallpassRevokedGrant";
/// `Sid` of the role-wide statement.
pub const ROLE_WIDE_SID: &str = "HallpassRevokedAllSessionsBefore";

/// One statement of the policy, as understood.
#[derive(Debug, Clone, PartialEq)]
enum Statement {
    /// Denies sessions whose `aws:userid` is `user_id` issued before `before`.
    Grant { user_id: String, before: DateTime<Utc> },
    /// Denies every session of the role issued before `before`.
    RoleWide { before: DateTime<Utc> },
    /// Anything else (edited by hand): kept as it is, never pruned.
    Other(Value),
}

impl Statement {
    fn to_json(&self) -> Value {
        match self {
            Self::Grant { user_id, before } => json!({
                "Sid": grant_sid(user_id),
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {
                    "StringLike": {"aws:userid": user_id},
                    "DateLessThan": {"aws:TokenIssueTime": rfc3339(*before)},
                },
            }),
            Self::RoleWide { before } => json!({
                "Sid": ROLE_WIDE_SID,
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": rfc3339(*before)}},
            }),
            Self::Other(value) => value.clone(),
        }
    }

    fn from_json(value: &Value) -> Self {
        let condition = |operator: &str, key: &str| {
            value
                .pointer(&format!("/Condition/{operator}/{}", key.replace('/', "~1")))
                .and_then(Value::as_str)
        };
        let before = condition("DateLessThan", "aws:TokenIssueTime")
            .and_then(|time| DateTime::parse_from_rfc3339(time).ok())
            .map(|time| time.with_timezone(&Utc));
        let sid = value.get("Sid").and_then(Value::as_str).unwrap_or_default();
        let denies_all = value.get("Effect").and_then(Value::as_str) == Some("Deny")
            && value.get("Action").and_then(Value::as_str) == Some("*")
            && value.get("Resource").and_then(Value::as_str) == Some("*");
        match (before, condition("StringLike", "aws:userid")) {
            (Some(before), Some(user_id)) if denies_all && sid.starts_with(GRANT_SID_PREFIX) => Self::Grant {
                user_id: user_id.to_string(),
                before,
            },
            (Some(before), None) if denies_all && sid == ROLE_WIDE_SID => Self::RoleWide { before },
            _ => Self::Other(value.clone()),
        }
    }

    /// Whether every session this statement denies has expired by `now`.
    fn expired(&self, now: DateTime<Utc>) -> bool {
        match self {
            Self::Grant { before, .. } | Self::RoleWide { before } => *before + MAX_SESSION_LIFETIME < now,
            Self::Other(_) => false,
        }
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `HallpassRevokedGrant<16 hex digits>`: IAM wants `Sid`s alphanumeric and
/// unique within the policy.
fn grant_sid(user_id: &str) -> String {
    format!(
        "{GRANT_SID_PREFIX}{}",
        &hex::encode(Sha256::digest(user_id.as_bytes()))[..16]
    )
}

/// What [`RevocationPolicy::revoke`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The grant's statement was there already and nothing was pruned.
    Unchanged,
    /// The grant got its own statement.
    Statement,
    /// No room: a role-wide statement now ends every session issued until
    /// now, other grants' included.
    RoleWide,
}

/// The revocation policy document of one role.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RevocationPolicy {
    statements: Vec<Statement>,
}

impl RevocationPolicy {
    /// Reads the document IAM returned (`None`: the role has none). IAM
    /// sends it URL-encoded; an emulator may not.
    pub fn parse(document: Option<&str>) -> Result<Self, String> {
        let Some(text) = document.map(str::trim).filter(|text| !text.is_empty()) else {
            return Ok(Self::default());
        };
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => {
                let decoded = percent_encoding::percent_decode_str(text)
                    .decode_utf8()
                    .map_err(|_| format!("the inline policy `{POLICY_NAME}` is not UTF-8"))?;
                serde_json::from_str(&decoded)
                    .map_err(|e| format!("the inline policy `{POLICY_NAME}` is not JSON: {e}"))?
            }
        };
        let statements = match value.get("Statement") {
            Some(Value::Array(list)) => list.iter().map(Statement::from_json).collect(),
            Some(one @ Value::Object(_)) => vec![Statement::from_json(one)],
            _ => Vec::new(),
        };
        Ok(Self { statements })
    }

    /// The document to put, compact; `None` when no statement is left (then
    /// the policy is deleted: IAM refuses an empty one).
    pub fn document(&self) -> Option<String> {
        if self.statements.is_empty() {
            return None;
        }
        let statements: Vec<Value> = self.statements.iter().map(Statement::to_json).collect();
        Some(json!({"Version": "2012-10-17", "Statement": statements}).to_string())
    }

    fn size(&self) -> usize {
        self.document().map_or(0, |document| document.chars().count())
    }

    /// Adds a statement denying sessions whose `aws:userid` is `user_id`
    /// (`<role id>:<session name>`) issued before `now` plus the clock-skew
    /// margin, after pruning statements whose sessions have all expired.
    /// A grant already present keeps its statement. When the document would
    /// exceed `limit` characters, it becomes the role-wide statement (issued
    /// before `now`), the grant's own, and the grants' statements the
    /// role-wide one does not cover.
    pub fn revoke(&mut self, user_id: &str, now: DateTime<Utc>, limit: usize) -> Revoked {
        let before_pruning = self.statements.len();
        self.statements.retain(|statement| !statement.expired(now));
        let pruned = self.statements.len() != before_pruning;
        if self.grant_statement(user_id).is_some() {
            return if pruned { Revoked::Statement } else { Revoked::Unchanged };
        }
        self.statements.push(Statement::Grant {
            user_id: user_id.to_string(),
            before: now + CLOCK_SKEW_MARGIN,
        });
        if self.size() <= limit {
            return Revoked::Statement;
        }
        self.fall_back(user_id, now, limit);
        Revoked::RoleWide
    }

    /// The role-wide statement at `now`, keeping what it does not cover;
    /// if even that is too large, only it, the grant's statement and what
    /// was edited by hand.
    pub fn fall_back(&mut self, user_id: &str, now: DateTime<Utc>, limit: usize) {
        let keep = |statement: &Statement, all: bool| match statement {
            Statement::Grant { user_id: other, before } => other == user_id || (all && *before > now),
            Statement::RoleWide { .. } => false,
            Statement::Other(_) => true,
        };
        let mut kept: Vec<Statement> = self.statements.iter().filter(|s| keep(s, true)).cloned().collect();
        kept.insert(0, Statement::RoleWide { before: now });
        self.statements = kept;
        if self.size() > limit {
            self.statements
                .retain(|s| matches!(s, Statement::RoleWide { .. }) || keep(s, false));
        }
    }

    fn grant_statement(&self, user_id: &str) -> Option<DateTime<Utc>> {
        self.statements.iter().find_map(|statement| match statement {
            Statement::Grant { user_id: other, before } if other == user_id => Some(*before),
            _ => None,
        })
    }

    /// The time before which the role-wide statement ends sessions.
    pub fn role_wide(&self) -> Option<DateTime<Utc>> {
        self.statements.iter().find_map(|statement| match statement {
            Statement::RoleWide { before } => Some(*before),
            _ => None,
        })
    }

    /// Whether the sessions of `user_id`, all issued before `issued_until`,
    /// are denied: by the grant's statement, or the role-wide one when it
    /// reaches past `issued_until`.
    pub fn covers(&self, user_id: &str, issued_until: DateTime<Utc>) -> bool {
        self.grant_statement(user_id).is_some() || self.role_wide().is_some_and(|before| before >= issued_until)
    }

    /// How many statements the document holds.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }
}

#[cfg(test)]
mod tests;
