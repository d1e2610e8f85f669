//! What a provider is told about a target and a grant: the target's
//! settings and unsealed secrets, the role's `grant` block, and a seed only
//! the server can compute, from which a provider derives the grant's
//! password or key pair again on every call, so no issued secret is stored.

use std::fmt;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{SecretValue, TargetSecrets};

/// One target: its name, readable `config` and write-only `secrets`.
#[derive(Debug, Clone)]
pub struct TargetContext {
    pub name: String,
    pub config: Map<String, Value>,
    /// Unsealed for this call only.
    pub secrets: TargetSecrets,
    /// Key material of this target that only the server can compute, from
    /// its credential key, the target's name and its creation time: a
    /// target deleted and made again gets a new one (an SSH CA key...).
    pub seed: Seed,
}

impl TargetContext {
    /// Changes whenever the settings or a secret value change: the key under
    /// which a provider keeps a pool of admin connections, so an updated
    /// target gets new connections. A digest, never printed.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.name.as_bytes());
        hash.update([0]);
        hash.update(serde_json::to_vec(&self.config).unwrap_or_default());
        for (name, value) in self.secrets.iter() {
            hash.update([0]);
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(value.expose().as_bytes());
        }
        hash.finalize().into()
    }
}

/// A grant of the target that ended before its expiry, for revocation lists.
#[derive(Debug, Clone)]
pub struct RevokedGrant {
    pub grant_id: String,
    /// The metadata its issue returned.
    pub metadata: Value,
    pub expires_at: DateTime<Utc>,
}

/// Everything a provider needs to know about one grant.
#[derive(Clone)]
pub struct GrantContext {
    pub grant_id: String,
    pub principal: String,
    pub role: String,
    pub target: TargetContext,
    /// The role's `grant` block, checked by
    /// [`crate::CredentialProvider::validate_grant`].
    pub grant: Map<String, Value>,
    /// A public key the requester sent to be certified (SSH), as an OpenSSH
    /// `authorized_keys` line.
    pub public_key: Option<String>,
    /// 32 bytes only the server can compute, the same on every call for
    /// this grant; see [`GrantContext::derive_secret`].
    pub seed: Seed,
    pub activated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The target's grants ended before their expiry and not yet expired,
    /// this one included when it is being revoked; filled only for
    /// providers that [use a revocation list](crate::CredentialProvider::uses_revocation_list).
    pub revoked: Vec<RevokedGrant>,
}

impl fmt::Debug for GrantContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantContext")
            .field("grant_id", &self.grant_id)
            .field("principal", &self.principal)
            .field("role", &self.role)
            .field("target", &self.target)
            .field("grant", &self.grant)
            .field("activated_at", &self.activated_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Secret key material of a target or a grant, derived from the server's
/// sealed credential key. Never printed.
#[derive(Clone)]
pub struct Seed(Zeroizing<[u8; 32]>);

impl Seed {
    /// The seed of grant `grant_id` on `target`.
    pub fn for_grant(credential_key: &[u8], target: &str, grant_id: &str) -> Self {
        Self::derive(
            credential_key,
            &[b"hallpass grant seed v1", target.as_bytes(), grant_id.as_bytes()],
        )
    }

    /// The seed of target `name` created at `created_at`.
    pub fn for_target(credential_key: &[u8], name: &str, created_at: DateTime<Utc>) -> Self {
        let created = created_at.timestamp_micros().to_be_bytes();
        Self::derive(credential_key, &[b"hallpass target seed v1", name.as_bytes(), &created])
    }

    fn derive(credential_key: &[u8], parts: &[&[u8]]) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, credential_key);
        let mut context = hmac::Context::with_key(&key);
        for part in parts {
            // Length-prefixed, so no two lists of parts hash alike.
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(context.sign().as_ref());
        Self(seed)
    }

    /// 32 bytes for `purpose` (e.g. `"ed25519"`), independent of every other
    /// purpose's.
    pub fn bytes(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.0.as_slice());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(hmac::sign(&key, purpose.as_bytes()).as_ref());
        out
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl GrantContext {
    /// A grant with no `grant` block, public key or revocation list; set
    /// those fields when they matter.
    pub fn new(
        grant_id: impl Into<String>,
        principal: impl Into<String>,
        role: impl Into<String>,
        target: TargetContext,
        seed: Seed,
        activated_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            grant_id: grant_id.into(),
            principal: principal.into(),
            role: role.into(),
            target,
            grant: Map::new(),
            public_key: None,
            seed,
            activated_at,
            expires_at,
            revoked: Vec::new(),
        }
    }

    /// The grant's password for `purpose`: 43 characters of URL-safe base64
    /// (256 bits), the same on every call, so issuing twice gives one
    /// credential and the requester's secret is derived again, never stored.
    pub fn derive_secret(&self, purpose: &str) -> SecretValue {
        SecretValue::new(URL_SAFE_NO_PAD.encode(self.seed.bytes(purpose).as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_by_key_target_and_grant_and_never_print() {
        let a = Seed::for_grant(b"key-one", "db", "g1");
        assert_eq!(a.bytes("p"), Seed::for_grant(b"key-one", "db", "g1").bytes("p"));
        assert_ne!(a.bytes("p"), Seed::for_grant(b"key-two", "db", "g1").bytes("p"));
        assert_ne!(a.bytes("p"), Seed::for_grant(b"key-one", "db2", "g1").bytes("p"));
        assert_ne!(a.bytes("p"), Seed::for_grant(b"key-one", "db", "g2").bytes("p"));
        assert_ne!(a.bytes("p"), Seed::for_grant(b"key-one", "d", "bg2").bytes("p"));
        assert_ne!(a.bytes("p"), a.bytes("q"));
        assert_eq!(format!("{a:?}"), "[redacted]");
        let at = chrono::Utc::now();
        let t = Seed::for_target(b"key-one", "db", at);
        assert_ne!(
            t.bytes("p"),
            Seed::for_target(b"key-one", "db", at + chrono::Duration::seconds(1)).bytes("p")
        );
    }

    #[test]
    fn fingerprints_follow_config_and_secret_values() {
        let mut target = TargetContext {
            name: "db".into(),
            config: Map::new(),
            secrets: TargetSecrets::new(),
            seed: Seed::for_grant(b"k", "db", "-"),
        };
        let empty = target.fingerprint();
        target.secrets.insert("password", SecretValue::new("a"));
        let with_a = target.fingerprint();
        target.secrets.insert("password", SecretValue::new("b"));
        assert_ne!(empty, with_a);
        assert_ne!(with_a, target.fingerprint());
    }
}
