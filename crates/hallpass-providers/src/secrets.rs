//! Secret values of targets: write-only credentials a provider needs to talk
//! to its target. They never print (`Debug` shows `[redacted]` or just the
//! names), are compared in constant time, and are wiped from memory when
//! dropped.

use std::collections::BTreeMap;
use std::fmt;

use zeroize::Zeroizing;

use crate::ProviderError;

/// One secret value.
#[derive(Clone)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The value itself, for the one call that must send or use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `other` in time that does not depend on where they
    /// differ (only on their lengths).
    pub fn matches(&self, other: &SecretValue) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.as_bytes(), other.0.as_bytes()).is_ok()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A target's secrets by name.
#[derive(Clone, Default)]
pub struct TargetSecrets(BTreeMap<String, SecretValue>);

impl TargetSecrets {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: SecretValue) {
        self.0.insert(name.into(), value);
    }

    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.0.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretValue)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl FromIterator<(String, SecretValue)> for TargetSecrets {
    fn from_iter<I: IntoIterator<Item = (String, SecretValue)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Debug for TargetSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A secret a target type takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretSpec {
    pub name: &'static str,
    pub required: bool,
    /// One line for errors and docs, e.g. "HMAC key that signs every call".
    pub description: &'static str,
}

/// Refuses secret names the target type does not take, and missing
/// required ones. Messages name secrets, never values.
pub fn check_secret_names(
    target_type: &str,
    specs: &[SecretSpec],
    secrets: &TargetSecrets,
) -> Result<(), ProviderError> {
    check_secret_names_of("target", target_type, specs, secrets).map_err(|message| ProviderError::InvalidConfig {
        target_type: target_type.to_string(),
        message,
    })
}

/// [`check_secret_names`] for anything with secrets (`owner`: "target",
/// "notifier"); the message names the owner's kind.
pub fn check_secret_names_of(
    owner: &str,
    owner_type: &str,
    specs: &[SecretSpec],
    secrets: &TargetSecrets,
) -> Result<(), String> {
    let known = || {
        if specs.is_empty() {
            "none".to_string()
        } else {
            specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        }
    };
    if let Some(unknown) = secrets.names().find(|name| !specs.iter().any(|s| s.name == *name)) {
        return Err(format!(
            "unknown secret `{unknown}`; {owner_type} {owner}s take these secrets: {}",
            known()
        ));
    }
    if let Some(missing) = specs.iter().find(|s| s.required && secrets.get(s.name).is_none()) {
        return Err(format!(
            "secret `{}` is required ({}); set it in the {owner}'s `secrets`",
            missing.name, missing.description
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[SecretSpec] = &[
        SecretSpec {
            name: "key",
            required: true,
            description: "the key",
        },
        SecretSpec {
            name: "extra",
            required: false,
            description: "optional",
        },
    ];

    fn secrets(pairs: &[(&str, &str)]) -> TargetSecrets {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretValue::new(*v)))
            .collect()
    }

    #[test]
    fn debug_never_shows_values() {
        let all = secrets(&[("key", "s3cr3t-value")]);
        assert_eq!(format!("{all:?}"), r#"{"key"}"#);
        assert_eq!(format!("{:?}", SecretValue::new("s3cr3t-value")), "[redacted]");
    }

    #[test]
    fn names_are_checked_against_the_specs() {
        assert!(check_secret_names("t", SPECS, &secrets(&[("key", "a")])).is_ok());
        let error = check_secret_names("t", SPECS, &secrets(&[("key", "a"), ("nope", "zzz")])).unwrap_err();
        assert!(error.to_string().contains("unknown secret `nope`"), "{error}");
        assert!(!error.to_string().contains("zzz"));
        let error = check_secret_names("t", SPECS, &secrets(&[("extra", "a")])).unwrap_err();
        assert!(error.to_string().contains("secret `key` is required"), "{error}");
    }

    #[test]
    fn comparison_is_by_value() {
        assert!(SecretValue::new("abc").matches(&SecretValue::new("abc")));
        assert!(!SecretValue::new("abc").matches(&SecretValue::new("abd")));
        assert!(!SecretValue::new("abc").matches(&SecretValue::new("abcd")));
    }
}
