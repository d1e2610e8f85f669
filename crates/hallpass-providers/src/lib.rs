//! Credential providers: how Hallpass creates and removes access on a target.
//!
//! The contract is deliberately small, after Vault's database plugins: check a
//! target's settings, issue a credential for a grant, hand the secret to its
//! requester, revoke it. `issue` and `revoke` are idempotent — issuing twice
//! for one grant yields one credential, revoking something already gone
//! succeeds — because the scheduler retries them after crashes and failures.
//! Providers never write the secret anywhere; what they return as metadata is
//! stored and audited, so it must not contain one.
//!
//! A target has readable `config` and write-only `secrets` (its admin
//! password, an HMAC key...). Each provider declares the secrets it takes
//! ([`CredentialProvider::secrets`]); the server seals them at rest and hands
//! them over in [`GrantContext::target_secrets`] only for the call that needs them.
//! [`SecretValue`] and [`TargetSecrets`] never print a value.

pub mod aws;
pub mod jwt;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod ssh;
pub mod webhook;

mod admin;

mod context;
mod naming;
pub mod secrets;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use serde_json::{Map, Value};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProviderError {
    #[error("invalid {target_type} target settings: {message}")]
    InvalidConfig { target_type: String, message: String },
    #[error("target {target}: {message}")]
    Target { target: String, message: String },
    #[error("invalid {target_type} role grant: {message}")]
    InvalidGrant { target_type: String, message: String },
    #[error("credential error: {0}")]
    Credential(String),
    #[error("{0}")]
    Unsupported(String),
}

impl ProviderError {
    /// A target's `config` (or `secrets`) refused by its type.
    pub fn invalid_config(target_type: &str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            target_type: target_type.to_string(),
            message: message.into(),
        }
    }

    /// A role's `grant` block refused by its target's type.
    pub fn invalid_grant(target_type: &str, message: impl Into<String>) -> Self {
        Self::InvalidGrant {
            target_type: target_type.to_string(),
            message: message.into(),
        }
    }
}

/// A whole number in `range` from a setting's value, written `5` or, as
/// HCL may hand numbers over, `5.0`; the message names `key` and says what
/// was found.
pub(crate) fn whole_number(value: &Value, key: &str, range: &std::ops::RangeInclusive<u64>) -> Result<u64, String> {
    let number = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u32::MAX as f64)
            .map(|f| f as u64)
    });
    number.filter(|n| range.contains(n)).ok_or_else(|| {
        format!(
            "`{key}` must be a whole number from {} to {}, found {value}",
            range.start(),
            range.end()
        )
    })
}

/// Waits between looks at whether ended sessions are gone: 2 ms, then
/// doubling up to 100 ms. A terminated session is usually gone within a
/// few milliseconds, and a revoke waiting a fixed 100 ms per look capped a
/// target at about 25 revocations a second on its few admin connections
/// (docs/benchmarks.md).
#[derive(Debug)]
pub(crate) struct SessionPoll(std::time::Duration);

impl SessionPoll {
    pub(crate) fn new() -> Self {
        Self(std::time::Duration::from_millis(2))
    }

    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(std::time::Duration::from_millis(100));
    }
}

pub use secrets::{SecretSpec, SecretValue, TargetSecrets, check_secret_names, check_secret_names_of};

pub use context::{GrantContext, RevokedGrant, Seed, TargetContext};
pub use naming::login_name;

/// A target stored by an earlier release with credentials inside its
/// `config` (e.g. a webhook URL with `user:password@`), split into the
/// config to keep and the secrets to seal. `moved` says, for the log, what
/// was moved where.
#[derive(Debug, Clone)]
pub struct LegacyUpgrade {
    pub config: Map<String, Value>,
    pub secrets: TargetSecrets,
    pub moved: Vec<String>,
}

/// The secret handed to the requester; never stored or logged.
#[derive(Clone)]
pub struct SecretCredential {
    pub credential_type: String,
    pub token: String,
    pub env: BTreeMap<String, String>,
    /// Secrets for the environment that the requester gets on the first
    /// fetch of the credential only (a private key Hallpass made for the
    /// grant), named as in `env`. Hallpass records that first fetch with
    /// its audit event and withholds them from every later one.
    pub once: BTreeMap<String, String>,
}

impl SecretCredential {
    /// A credential with nothing handed out once (most types).
    pub fn new(credential_type: impl Into<String>, token: impl Into<String>, env: BTreeMap<String, String>) -> Self {
        Self {
            credential_type: credential_type.into(),
            token: token.into(),
            env,
            once: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for SecretCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCredential")
            .field("credential_type", &self.credential_type)
            .finish_non_exhaustive()
    }
}

pub trait CredentialProvider: Send + Sync {
    /// The target `type` this provider serves.
    fn target_type(&self) -> &'static str;

    /// The secrets a target of this type takes; any other name is refused.
    fn secrets(&self) -> &'static [SecretSpec] {
        &[]
    }

    /// Checks a target's `config` and `secrets` before they are stored. The
    /// names were already checked against [`CredentialProvider::secrets`].
    fn validate_config(&self, config: &Map<String, Value>, secrets: &TargetSecrets) -> Result<(), ProviderError>;

    /// Checks a role's `grant` block (what to give on the target: database
    /// roles, privileges, ACL rules, SSH principals...). Types that give
    /// nothing role-specific take none.
    fn validate_grant(&self, grant: &Map<String, Value>) -> Result<(), ProviderError> {
        match grant.keys().next() {
            None => Ok(()),
            Some(key) => Err(ProviderError::InvalidGrant {
                target_type: self.target_type().to_string(),
                message: format!(
                    "unknown setting `{key}`; roles on {} targets take no `grant` block",
                    self.target_type()
                ),
            }),
        }
    }

    /// Checks a public key a requester sent to be certified (SSH). `Err`
    /// for types that certify nothing.
    fn validate_public_key(&self, _public_key: &str) -> Result<(), ProviderError> {
        Err(ProviderError::Credential(format!(
            "{} targets do not take a public key; send none",
            self.target_type()
        )))
    }

    /// For a target stored by an earlier release: moves credentials found in
    /// its `config` into secrets. `None` when there is nothing to move.
    fn upgrade_legacy_config(&self, _config: &Map<String, Value>) -> Option<LegacyUpgrade> {
        None
    }

    /// True when issuing creates nothing outside Hallpass (the credential is
    /// minted locally, as a signed token): then issuing may happen before the
    /// request is recorded, since a crash in between leaves nothing behind.
    fn issues_locally(&self) -> bool {
        false
    }

    /// Creates the credential on the target. Returns non-secret metadata.
    fn issue<'a>(&'a self, grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>>;

    /// The secret for an issued grant, for its requester.
    /// May call the target (AWS mints a session per call); most types
    /// derive the secret again from the grant's seed.
    fn credential<'a>(
        &'a self,
        grant: &'a GrantContext,
        metadata: &'a Value,
    ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>>;

    /// Removes the access, and ends the sessions opened with it. Succeeds
    /// when already gone.
    fn revoke<'a>(&'a self, grant: &'a GrantContext, metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>>;

    /// After a revoke: is any access of this grant left on the target (the
    /// login, a session, a certificate not yet in the revocation list)?
    /// `Err` when the target cannot be asked; the server then retries.
    fn verify<'a>(
        &'a self,
        _grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<Verification, ProviderError>> {
        async { Ok(Verification::NotObservable) }.boxed()
    }

    /// Checks that the target's admin credentials can do what issuing and
    /// revoking need. Each check says what is missing, e.g. "user
    /// hallpass_admin lacks CREATEROLE".
    fn test<'a>(&'a self, target: &'a TargetContext) -> BoxFuture<'a, Result<Vec<TestCheck>, ProviderError>> {
        async move {
            self.validate_config(&target.config, &target.secrets)?;
            Ok(vec![TestCheck::passed("settings", "the target's settings are valid")])
        }
        .boxed()
    }

    /// The secret [`CredentialProvider::rotate`] replaces, for types whose
    /// admin password Hallpass can change (`None`: rotation unsupported).
    fn rotatable_secret(&self) -> Option<&'static str> {
        None
    }

    /// Changes the admin password on the target to `new`, using the current
    /// secrets. Idempotent: when the target already accepts `new`, succeed.
    fn rotate<'a>(
        &'a self,
        _target: &'a TargetContext,
        _new: &'a SecretValue,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        let target_type = self.target_type();
        async move {
            Err(ProviderError::Unsupported(format!(
                "{target_type} targets have no admin password Hallpass can rotate"
            )))
        }
        .boxed()
    }

    /// True when revoking needs the target's list of grants ended early
    /// ([`GrantContext::revoked`], e.g. for an SSH key revocation list).
    fn uses_revocation_list(&self) -> bool {
        false
    }

    /// The target's revocation list for clients that check it themselves
    /// (an OpenSSH KRL), built from its grants ended before their expiry.
    /// `None` for types without one.
    fn revocation_list(
        &self,
        _target: &TargetContext,
        _revoked: &[RevokedGrant],
    ) -> Option<Result<Vec<u8>, ProviderError>> {
        None
    }

    /// A line for `target show`: the public half of a key the target must
    /// trust (an SSH CA's `TrustedUserCAKeys` line). `None` for most types.
    fn trust_anchor(&self, _target: &TargetContext) -> Option<Result<String, ProviderError>> {
        None
    }

    /// Drops what the provider holds for a target that was deleted: its
    /// admin connections and the secrets they were made with.
    fn forget_target(&self, _name: &str) {}
}

/// What [`CredentialProvider::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Nothing of the grant is left: no login, no session, no valid key.
    Gone,
    /// Something is left, described (no secret in it).
    Remaining(String),
    /// The type cannot observe the target (a signed token, a webhook's own
    /// system): the revoke's own answer is all there is.
    NotObservable,
}

/// One line of a target test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCheck {
    /// What was checked, e.g. `connect` or `createrole`.
    pub name: String,
    pub ok: bool,
    /// What was found; on failure, what is missing and how to fix it.
    pub detail: String,
}

impl TestCheck {
    pub fn passed(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn failed(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Providers by target type.
#[derive(Clone, Default)]
pub struct Registry {
    providers: HashMap<&'static str, Arc<dyn CredentialProvider>>,
}

impl Registry {
    pub fn with(mut self, provider: Arc<dyn CredentialProvider>) -> Self {
        self.providers.insert(provider.target_type(), provider);
        self
    }

    pub fn get(&self, target_type: &str) -> Option<&Arc<dyn CredentialProvider>> {
        self.providers.get(target_type)
    }

    /// Tells every provider that target `name` is gone.
    pub fn forget_target(&self, name: &str) {
        for provider in self.providers.values() {
            provider.forget_target(name);
        }
    }

    pub fn types(&self) -> Vec<&'static str> {
        let mut types: Vec<_> = self.providers.keys().copied().collect();
        types.sort_unstable();
        types
    }
}
