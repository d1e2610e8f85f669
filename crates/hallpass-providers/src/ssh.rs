//! The `ssh` target: Hallpass as the OpenSSH user certificate authority of
//! a group of hosts. A grant is a short-lived certificate for the
//! requester's public key (or for a key pair Hallpass generates), good for
//! the role's login names until the grant expires.
//!
//! ```hcl
//! target "web" {
//!   type   = "ssh"
//!   config = { krl_path = "/etc/ssh/hallpass-web.krl" }
//! }
//! role "web-deploy" {
//!   target = "web"
//!   grant  = { principals = ["deploy"], source_address = "10.0.0.0/8" }
//! }
//! ```
//!
//! Nothing is stored: the CA key is Ed25519 derived from the target's seed
//! (a new one when the target is recreated), a generated key pair from the
//! grant's seed (its private half handed out on the credential's first
//! fetch only, see [`SecretCredential::once`]), and the certificate — nonce from the grant's seed, Ed25519
//! signatures being deterministic — is the same bytes on every call, so it
//! is signed again whenever the requester asks for it. Hosts trust the CA
//! through `TrustedUserCAKeys` ([`CredentialProvider::trust_anchor`]).
//!
//! Revoking puts the certificate's serial in an OpenSSH key revocation list
//! (see [`krl`]) of the target's ended-early, unexpired grants: written to
//! `krl_path` (sshd's `RevokedKeys`) when set, and always served by Hallpass
//! ([`CredentialProvider::revocation_list`]) for hosts that fetch it. sshd
//! checks certificates when a session opens only: a revocation stops new
//! logins, not sessions already open.

pub mod grant;
pub mod issued;
pub mod keys;
pub mod krl;

use std::path::{Path, PathBuf};

use chrono::Utc;
use futures::future::{BoxFuture, FutureExt, ready};
use serde_json::{Map, Value};
use ssh_key::{LineEnding, PrivateKey};

use crate::{
    CredentialProvider, GrantContext, ProviderError, RevokedGrant, SecretCredential, TargetContext, TargetSecrets,
    TestCheck, Verification,
};
use grant::GrantSpec;
use issued::{Issued, metadata_serial};

/// The target `type` served by [`SshProvider`].
pub const TARGET_TYPE: &str = "ssh";
/// The settings an ssh target accepts.
pub const SETTINGS: [&str; 2] = ["krl_path", "backdate_seconds"];
/// How far before a grant's activation its certificate becomes valid when
/// `backdate_seconds` is not set: covers hosts whose clock runs behind.
pub const DEFAULT_BACKDATE_SECONDS: u64 = 60;
/// Largest `backdate_seconds`.
pub const MAX_BACKDATE_SECONDS: u64 = 3600;
/// Longest `krl_path`.
const MAX_PATH_LEN: usize = 4096;

/// Environment variable with the certificate line.
pub const CERTIFICATE_ENV: &str = "HALLPASS_SSH_CERTIFICATE";
/// Environment variable with the generated private key (OpenSSH PEM).
pub const PRIVATE_KEY_ENV: &str = "HALLPASS_SSH_PRIVATE_KEY";

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_config(TARGET_TYPE, message)
}

fn invalid_grant(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_grant(TARGET_TYPE, message)
}

fn on_target(target: &TargetContext, message: impl Into<String>) -> ProviderError {
    ProviderError::Target {
        target: target.name.clone(),
        message: message.into(),
    }
}

/// An ssh target's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    /// Where sshd's `RevokedKeys` reads the KRL; `None`: only served.
    pub krl_path: Option<PathBuf>,
    pub backdate_seconds: u64,
}

impl SshConfig {
    pub fn parse(config: &Map<String, Value>) -> Result<Self, ProviderError> {
        if let Some(unknown) = config.keys().find(|key| !SETTINGS.contains(&key.as_str())) {
            return Err(invalid(format!(
                "unknown setting {unknown:?}; ssh targets take only `krl_path` and `backdate_seconds`"
            )));
        }
        let krl_path = match config.get("krl_path") {
            None | Some(Value::Null) => None,
            Some(Value::String(path)) => Some(krl_path(path)?),
            Some(_) => return Err(invalid("`krl_path` must be a string")),
        };
        let backdate_seconds = match config.get("backdate_seconds") {
            None | Some(Value::Null) => DEFAULT_BACKDATE_SECONDS,
            Some(value) => value
                .as_u64()
                .filter(|seconds| *seconds <= MAX_BACKDATE_SECONDS)
                .ok_or_else(|| {
                    invalid(format!(
                        "`backdate_seconds` must be a whole number from 0 to {MAX_BACKDATE_SECONDS}"
                    ))
                })?,
        };
        Ok(Self {
            krl_path,
            backdate_seconds,
        })
    }
}

fn krl_path(path: &str) -> Result<PathBuf, ProviderError> {
    let shown = grant::shorten(path);
    if path.len() > MAX_PATH_LEN || path.chars().any(char::is_control) {
        return Err(invalid(format!("`krl_path` {shown:?} is not a usable file path")));
    }
    let buf = PathBuf::from(path);
    if !buf.is_absolute() || path.ends_with('/') || buf.file_name().is_none() {
        return Err(invalid(format!(
            "`krl_path` {shown:?} must be the absolute path of a file, e.g. /etc/ssh/hallpass.krl"
        )));
    }
    if buf.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(invalid(format!("`krl_path` {shown:?} must not contain `..`")));
    }
    Ok(buf)
}

/// Issues OpenSSH user certificates; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct SshProvider;

impl SshProvider {
    pub fn new() -> Self {
        Self
    }

    /// The target's CA key; it lives only for the call.
    fn ca(target: &TargetContext) -> Result<PrivateKey, ProviderError> {
        keys::ca_key(&target.seed, &target.name).map_err(ProviderError::Credential)
    }

    fn ca_blob(ca: &PrivateKey) -> Result<Vec<u8>, ProviderError> {
        ca.public_key()
            .to_bytes()
            .map_err(|e| ProviderError::Credential(format!("cannot encode the CA key: {e}")))
    }

    /// The CA's public key line, for the hosts' `TrustedUserCAKeys`.
    fn anchor(target: &TargetContext) -> Result<String, ProviderError> {
        Self::ca(target)?
            .public_key()
            .to_openssh()
            .map_err(|e| ProviderError::Credential(format!("cannot encode the CA key: {e}")))
    }

    /// What `test` reports: the CA line to install, and the KRL's state.
    fn checks(target: &TargetContext) -> Result<Vec<TestCheck>, ProviderError> {
        let config = SshConfig::parse(&target.config)?;
        let anchor = Self::anchor(target)?;
        let krl = match &config.krl_path {
            Some(path) => krl_check(path, &Self::ca_blob(&Self::ca(target)?)?),
            None => TestCheck::passed(
                "krl",
                "no krl_path: hosts must fetch the target's KRL from Hallpass for their RevokedKeys",
            ),
        };
        Ok(vec![
            TestCheck::passed("settings", "the target's settings are valid"),
            TestCheck::passed("ca", format!("hosts must list this CA in TrustedUserCAKeys: {anchor}")),
            krl,
        ])
    }

    /// The fields of a new grant's certificate, checked end to end.
    fn new_issue(grant: &GrantContext) -> Result<Issued, ProviderError> {
        let config = SshConfig::parse(&grant.target.config)?;
        let spec = GrantSpec::parse(&grant.grant).map_err(invalid_grant)?;
        let ca = Self::ca(&grant.target)?;
        let key_id = keys::key_id(&grant.grant_id).map_err(ProviderError::Credential)?;
        let (user_key, key_generated) = match &grant.public_key {
            Some(text) => (keys::parse_public_key(text).map_err(ProviderError::Credential)?, false),
            None => (
                keys::generated_key(&grant.seed, &key_id)
                    .map_err(ProviderError::Credential)?
                    .public_key()
                    .clone(),
                true,
            ),
        };
        let activated = u64::try_from(grant.activated_at.timestamp()).unwrap_or(0);
        let valid_before = u64::try_from(grant.expires_at.timestamp()).unwrap_or(0);
        if valid_before <= activated {
            return Err(ProviderError::Credential(
                "the grant expires before it starts; no certificate issued".into(),
            ));
        }
        let issued = Issued {
            serial: keys::serial(&grant.grant_id),
            key_id,
            spec,
            valid_after: activated.saturating_sub(config.backdate_seconds),
            valid_before,
            ca_fingerprint: keys::fingerprint(ca.public_key().key_data()),
            user_key,
            key_generated,
        };
        // Sign once now, so a certificate that cannot be made fails the
        // issue rather than the requester's first fetch.
        issued
            .certificate(&ca, &grant.seed)
            .map_err(ProviderError::Credential)?;
        Ok(issued)
    }

    fn secret(grant: &GrantContext, metadata: &Value) -> Result<SecretCredential, ProviderError> {
        let issued = Issued::from_metadata(metadata, &grant.seed).map_err(ProviderError::Credential)?;
        let ca = Self::ca(&grant.target)?;
        if keys::fingerprint(ca.public_key().key_data()) != issued.ca_fingerprint {
            return Err(ProviderError::Credential(
                "the target's CA key changed since this grant was issued (the target was recreated); \
                 its certificate can no longer be made"
                    .into(),
            ));
        }
        let certificate = issued
            .certificate(&ca, &grant.seed)
            .map_err(ProviderError::Credential)?;
        let line = certificate
            .to_openssh()
            .map_err(|e| ProviderError::Credential(format!("cannot encode the certificate: {e}")))?;
        let mut env = std::collections::BTreeMap::new();
        env.insert(CERTIFICATE_ENV.to_string(), line.clone());
        // The private key Hallpass made goes to the requester once: a key
        // that can be fetched again is a key anyone holding the requester's
        // token can copy for the rest of the grant.
        let mut once = std::collections::BTreeMap::new();
        if issued.key_generated {
            let private = keys::generated_key(&grant.seed, &issued.key_id)
                .map_err(ProviderError::Credential)?
                .to_openssh(LineEnding::LF)
                .map_err(|e| ProviderError::Credential(format!("cannot encode the grant's private key: {e}")))?;
            once.insert(PRIVATE_KEY_ENV.to_string(), private.to_string());
        }
        Ok(SecretCredential {
            credential_type: TARGET_TYPE.into(),
            token: line,
            env,
            once,
        })
    }

    /// The KRL of the target revoking `serials`.
    fn krl_bytes(target: &TargetContext, serials: &[u64]) -> Result<Vec<u8>, ProviderError> {
        let ca = Self::ca(target)?;
        let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
        let comment = format!("Hallpass CA of ssh target {}", grant::shorten(&target.name));
        krl::encode(&Self::ca_blob(&ca)?, serials, now, &comment).map_err(ProviderError::Credential)
    }

    fn revoke_now(grant: &GrantContext, metadata: &Value) -> Result<(), ProviderError> {
        let config = SshConfig::parse(&grant.target.config)?;
        let Some(path) = config.krl_path else {
            // The list is only served by Hallpass, built on each request.
            return Ok(());
        };
        let mut serials = revoked_serials(&grant.revoked);
        // This grant's serial even if the caller's list missed it.
        serials.push(metadata_serial(metadata).unwrap_or_else(|| keys::serial(&grant.grant_id)));
        let bytes = Self::krl_bytes(&grant.target, &serials)?;
        krl::write_atomically(&path, &bytes)
            .map_err(|e| on_target(&grant.target, format!("cannot write the KRL {}: {e}", path.display())))
    }

    fn verify_now(grant: &GrantContext, metadata: &Value) -> Result<Verification, ProviderError> {
        let serial = metadata_serial(metadata).unwrap_or_else(|| keys::serial(&grant.grant_id));
        let expired = metadata
            .get("valid_before")
            .and_then(Value::as_u64)
            .is_some_and(|before| i64::try_from(before).is_ok_and(|before| before <= Utc::now().timestamp()));
        if expired {
            return Ok(Verification::Gone);
        }
        let config = SshConfig::parse(&grant.target.config)?;
        let Some(path) = config.krl_path else {
            // Nothing to observe here: hosts read the list Hallpass serves,
            // which always holds the grant once it has ended.
            return Ok(Verification::Gone);
        };
        let ca_blob = Self::ca_blob(&Self::ca(&grant.target)?)?;
        let key_id = keys::key_id(&grant.grant_id).unwrap_or_default();
        let shown = path.display();
        let bytes = match krl::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Verification::Remaining(format!("there is no KRL at {shown}")));
            }
            Err(e) => return Err(on_target(&grant.target, format!("cannot read the KRL {shown}: {e}"))),
        };
        Ok(match krl::parse(&bytes) {
            Ok(list) if list.revokes(&ca_blob, serial, &key_id) => Verification::Gone,
            Ok(_) => Verification::Remaining(format!(
                "the KRL at {shown} does not revoke certificate serial {serial} of this target's CA"
            )),
            Err(e) => Verification::Remaining(format!("the file at {shown} is not a valid KRL: {e}")),
        })
    }
}

/// The serials of the grants in a revocation list, from their metadata
/// (or their ids, for a record without one).
fn revoked_serials(revoked: &[RevokedGrant]) -> Vec<u64> {
    revoked
        .iter()
        .map(|r| metadata_serial(&r.metadata).unwrap_or_else(|| keys::serial(&r.grant_id)))
        .collect()
}

/// What `test` says about `krl_path`.
fn krl_check(path: &Path, ca_blob: &[u8]) -> TestCheck {
    let shown = path.display();
    let Some(dir) = path.parent().filter(|dir| dir.is_dir()) else {
        return TestCheck::failed("krl", format!("the directory of {shown} does not exist"));
    };
    // Writing happens through a temporary file in the same directory.
    let probe = dir.join(format!(".hallpass-write-test.{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe)) {
        return TestCheck::failed(
            "krl",
            format!(
                "cannot write in {}: {e}; Hallpass must be able to replace {shown}",
                dir.display()
            ),
        );
    }
    let bytes = match krl::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return TestCheck::failed(
                "krl",
                format!(
                    "{shown} does not exist yet, and sshd refuses every key while its RevokedKeys file is missing; \
                     create an empty list with `ssh-keygen -k -f {shown}`"
                ),
            );
        }
        Err(e) => return TestCheck::failed("krl", format!("cannot read {shown}: {e}")),
    };
    match krl::parse(&bytes) {
        Ok(list) => {
            let count: usize = list
                .certificates
                .iter()
                .filter(|s| s.ca_key == ca_blob)
                .map(|s| s.serials.len())
                .sum();
            TestCheck::passed(
                "krl",
                format!("{shown} is a valid KRL revoking {count} certificates of this CA"),
            )
        }
        Err(e) => TestCheck::failed(
            "krl",
            format!("{shown} is not a valid KRL ({e}); sshd refuses every key while it cannot read it"),
        ),
    }
}

impl CredentialProvider for SshProvider {
    fn target_type(&self) -> &'static str {
        TARGET_TYPE
    }

    fn validate_config(&self, config: &Map<String, Value>, _secrets: &TargetSecrets) -> Result<(), ProviderError> {
        SshConfig::parse(config).map(|_| ())
    }

    fn validate_grant(&self, grant: &Map<String, Value>) -> Result<(), ProviderError> {
        GrantSpec::parse(grant).map(|_| ()).map_err(invalid_grant)
    }

    fn validate_public_key(&self, public_key: &str) -> Result<(), ProviderError> {
        keys::parse_public_key(public_key)
            .map(|_| ())
            .map_err(ProviderError::Credential)
    }

    fn issues_locally(&self) -> bool {
        // A certificate is signed here; nothing is created on the hosts.
        true
    }

    fn issue<'a>(&'a self, grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
        ready(Self::new_issue(grant).and_then(|issued| issued.to_metadata().map_err(ProviderError::Credential))).boxed()
    }

    fn credential<'a>(
        &'a self,
        grant: &'a GrantContext,
        metadata: &'a Value,
    ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>> {
        ready(Self::secret(grant, metadata)).boxed()
    }

    fn revoke<'a>(&'a self, grant: &'a GrantContext, metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>> {
        // A small local file: written in place of spawning a blocking task.
        ready(Self::revoke_now(grant, metadata)).boxed()
    }

    fn verify<'a>(
        &'a self,
        grant: &'a GrantContext,
        metadata: &'a Value,
    ) -> BoxFuture<'a, Result<Verification, ProviderError>> {
        ready(Self::verify_now(grant, metadata)).boxed()
    }

    fn test<'a>(&'a self, target: &'a TargetContext) -> BoxFuture<'a, Result<Vec<TestCheck>, ProviderError>> {
        ready(Self::checks(target)).boxed()
    }

    fn uses_revocation_list(&self) -> bool {
        true
    }

    fn revocation_list(
        &self,
        target: &TargetContext,
        revoked: &[RevokedGrant],
    ) -> Option<Result<Vec<u8>, ProviderError>> {
        Some(Self::krl_bytes(target, &revoked_serials(revoked)))
    }

    fn trust_anchor(&self, target: &TargetContext) -> Option<Result<String, ProviderError>> {
        Some(Self::anchor(target))
    }
}

#[cfg(test)]
mod tests;
