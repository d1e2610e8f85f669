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

pub mod jwt;
pub mod webhook;

pub mod secrets;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProviderError {
    #[error("invalid {target_type} target settings: {message}")]
    InvalidConfig { target_type: String, message: String },
    #[error("target {target}: {message}")]
    Target { target: String, message: String },
    #[error("credential error: {0}")]
    Credential(String),
}

pub use secrets::{SecretSpec, SecretValue, TargetSecrets, check_secret_names};

/// Everything a provider needs to know about one grant.
#[derive(Debug, Clone)]
pub struct GrantContext {
    pub grant_id: String,
    pub principal: String,
    pub role: String,
    pub target: String,
    pub target_config: Map<String, Value>,
    /// The target's secrets, unsealed for this call only.
    pub target_secrets: TargetSecrets,
    pub activated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

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
    fn credential(&self, grant: &GrantContext, metadata: &Value) -> Result<SecretCredential, ProviderError>;

    /// Removes the access and checks it is gone. Succeeds when already gone.
    fn revoke<'a>(&'a self, grant: &'a GrantContext, metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>>;
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

    pub fn types(&self) -> Vec<&'static str> {
        let mut types: Vec<_> = self.providers.keys().copied().collect();
        types.sort_unstable();
        types
    }
}
