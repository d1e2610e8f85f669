//! Key material at rest: sealed with AES-256-GCM under the seal key (the
//! key-encryption key from the configuration or `HALLPASS_SEAL_KEY`), so a
//! database dump alone reveals no secret and every replica that shares the
//! seal key shares the keys.
//!
//! Each sealed value is `base64(nonce || ciphertext+tag)` with the value's
//! name as associated data, so a sealed value cannot be swapped for another.
//! A known value (`seal_check`) is sealed at first start: a server started
//! with a different seal key fails on it before it changes anything.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hallpass_config::SealKey;
use hallpass_store::Store;
use zeroize::Zeroizing;

use crate::app::AppError;
use crate::app::tokens::random_bytes;

pub const SEAL_KEY_ENV: &str = "HALLPASS_SEAL_KEY";
const CHECK_NAME: &str = "seal_check";
const CHECK_PLAINTEXT: &[u8] = b"hallpass seal check v1";
const JWT_KEY_NAME: &str = "jwt_signing_key";
const AUDIT_KEY_NAME: &str = "audit_signing_key";
const CREDENTIAL_KEY_NAME: &str = "credential_key";

pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    pub fn new(key: &SealKey) -> anyhow::Result<Self> {
        let unbound = UnboundKey::new(&AES_256_GCM, key.bytes()).map_err(|_| anyhow::anyhow!("bad seal key"))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    pub fn seal(&self, name: &str, plaintext: &[u8]) -> anyhow::Result<String> {
        let nonce_bytes = random_bytes::<NONCE_LEN>().map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut buffer = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(name.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| anyhow::anyhow!("sealing {name} failed"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buffer);
        Ok(STANDARD.encode(out))
    }

    /// `None` when the value was sealed under another key (or altered).
    pub fn open(&self, name: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = STANDARD.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut buffer)
            .ok()?;
        Some(plaintext.to_vec())
    }
}

/// The seal key: from the configuration file, else `HALLPASS_SEAL_KEY`, else
/// (SQLite only) a key file created in the data directory.
pub fn resolve_key(configured: Option<SealKey>, data_dir: Option<&Path>) -> anyhow::Result<SealKey> {
    if let Some(key) = configured {
        return Ok(key);
    }
    if let Ok(text) = std::env::var(SEAL_KEY_ENV) {
        return SealKey::parse(&text).map_err(|message| anyhow::anyhow!("{SEAL_KEY_ENV}: {message}"));
    }
    let Some(dir) = data_dir else {
        bail!(
            "a seal key is required with PostgreSQL: set {SEAL_KEY_ENV} (e.g. `openssl rand -base64 32`) or seal_key in the config file, the same on every replica"
        );
    };
    let path = dir.join("seal.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => SealKey::parse(&text).map_err(|message| anyhow::anyhow!("{}: {message}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let bytes = random_bytes::<32>().map_err(|e| anyhow::anyhow!("{e}"))?;
            let text = STANDARD.encode(bytes);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            SealKey::parse(&text).map_err(|message| anyhow::anyhow!("{message}"))
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

async fn init_meta(store: &Store, name: &'static str, value: String) -> anyhow::Result<String> {
    let stored = store
        .write(move |w| -> Result<String, AppError> { Ok(w.init_meta(name, &value)?) })
        .await?;
    Ok(stored)
}

/// The server's keys, unsealed.
pub struct Keys {
    /// Signs grant JWTs (Ed25519, PKCS#8).
    pub jwt: Vec<u8>,
    /// Signs audit checkpoints (Ed25519, PKCS#8).
    pub audit: Vec<u8>,
    /// 32 random bytes from which every issued password and key pair and
    /// every target's own key material (an SSH CA) are derived, so none of
    /// them is stored.
    pub credential: Zeroizing<Vec<u8>>,
}

fn ed25519_pkcs8() -> anyhow::Result<Vec<u8>> {
    let document =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| anyhow::anyhow!("no random key pair"))?;
    Ok(document.as_ref().to_vec())
}

fn random_key() -> anyhow::Result<Vec<u8>> {
    Ok(random_bytes::<32>().map_err(|e| anyhow::anyhow!("{e}"))?.to_vec())
}

/// Checks the seal key against the store (sealing the check value on first
/// start) and returns the signing keys, creating them if needed. A wrong
/// seal key fails here, before anything is changed.
pub async fn unseal_keys(store: &Store, sealer: &Sealer) -> anyhow::Result<Keys> {
    check_seal_key(store, sealer).await?;
    Ok(Keys {
        jwt: unseal_or_create(store, sealer, JWT_KEY_NAME, "JWT signing key", ed25519_pkcs8).await?,
        audit: unseal_or_create(store, sealer, AUDIT_KEY_NAME, "audit signing key", ed25519_pkcs8).await?,
        credential: Zeroizing::new(
            unseal_or_create(store, sealer, CREDENTIAL_KEY_NAME, "credential key", random_key).await?,
        ),
    })
}

async fn check_seal_key(store: &Store, sealer: &Sealer) -> anyhow::Result<()> {
    let existing = store
        .read(|r| -> Result<_, AppError> { Ok(r.meta(CHECK_NAME)?) })
        .await?;
    let check = match existing {
        Some(check) => check,
        None => init_meta(store, CHECK_NAME, sealer.seal(CHECK_NAME, CHECK_PLAINTEXT)?).await?,
    };
    if sealer.open(CHECK_NAME, &check).as_deref() != Some(CHECK_PLAINTEXT) {
        bail!(
            "the seal key does not match the one this database was sealed with; start with the original seal key ({SEAL_KEY_ENV} or seal_key). Nothing was changed"
        );
    }
    Ok(())
}

/// The key stored sealed under `name`, made by `make` on first start.
/// Replicas racing to make it all end up with the first one stored.
async fn unseal_or_create(
    store: &Store,
    sealer: &Sealer,
    name: &'static str,
    what: &str,
    make: fn() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    let existing = store
        .read(move |r| -> Result<_, AppError> { Ok(r.meta(name)?) })
        .await?;
    let sealed = match existing {
        Some(sealed) => sealed,
        None => {
            let key = Zeroizing::new(make().with_context(|| format!("cannot generate the {what}"))?);
            init_meta(store, name, sealer.seal(name, &key)?).await?
        }
    };
    sealer
        .open(name, &sealed)
        .with_context(|| format!("the stored {what} cannot be unsealed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SealKey {
        SealKey::parse(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn seals_and_opens_only_with_the_same_key_and_name() {
        let sealer = Sealer::new(&key(1)).unwrap();
        let sealed = sealer.seal("a", b"secret").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(sealer.open("a", &sealed).as_deref(), Some(&b"secret"[..]));
        assert_eq!(sealer.open("b", &sealed), None, "bound to its name");
        assert_eq!(
            Sealer::new(&key(2)).unwrap().open("a", &sealed),
            None,
            "bound to its key"
        );
        assert_ne!(sealer.seal("a", b"secret").unwrap(), sealed, "fresh nonce each time");
    }
}
