//! Principals (who is asking) and subjects (`user:alice`, `group:dev`: who may).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An authenticated caller: a user or a service, with its groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub groups: Vec<String>,
}

/// The group whose members administer Hallpass itself.
pub const ADMIN_GROUP: &str = "admins";

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.in_group(ADMIN_GROUP)
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// True when any of `subjects` names this principal or one of its groups.
    pub fn matches_any(&self, subjects: &[Subject]) -> bool {
        subjects.iter().any(|s| s.matches(self))
    }
}

/// `user:a, group:b`, or `nobody` for an empty list: for messages.
pub fn join_subjects(subjects: &[Subject]) -> String {
    if subjects.is_empty() {
        return "nobody".to_string();
    }
    subjects.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// A reference to a principal or a group, written `user:NAME` or `group:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    User(String),
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a subject: write user:NAME or group:NAME")]
pub struct SubjectError(pub String);

impl Subject {
    pub fn matches(&self, principal: &Principal) -> bool {
        match self {
            Subject::User(name) => *name == principal.name,
            Subject::Group(group) => principal.in_group(group),
        }
    }
}

impl FromStr for Subject {
    type Err = SubjectError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || SubjectError(text.to_string());
        let (kind, name) = text.split_once(':').ok_or_else(bad)?;
        if !is_valid_name(name) {
            return Err(bad());
        }
        match kind {
            "user" => Ok(Subject::User(name.to_string())),
            "group" => Ok(Subject::Group(name.to_string())),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Subject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(name) => write!(f, "user:{name}"),
            Subject::Group(name) => write!(f, "group:{name}"),
        }
    }
}

/// Names of principals, groups, targets and roles: 1–64 characters from
/// `[A-Za-z0-9._@-]`, starting with a letter or digit. Keeps names safe to
/// print, to put in URLs and (later) to use as database identifiers.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    name.len() <= 64 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            name: "alice".into(),
            groups: vec!["dev".into()],
        }
    }

    #[test]
    fn parses_and_matches_subjects() {
        let group: Subject = "group:dev".parse().unwrap();
        let user: Subject = "user:bob".parse().unwrap();
        assert!(group.matches(&alice()));
        assert!(!user.matches(&alice()));
        assert_eq!(group.to_string(), "group:dev");
    }

    #[test]
    fn rejects_malformed_subjects() {
        for bad in ["dev", "team:dev", "group:", "user:a b", "group:-x"] {
            assert!(bad.parse::<Subject>().is_err(), "{bad} should be refused");
        }
    }
}
