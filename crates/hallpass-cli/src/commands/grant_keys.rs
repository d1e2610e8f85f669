//! Where the CLI keeps the private keys Hallpass makes for SSH grants.
//!
//! The server hands such a key out once, on the credential's first fetch
//! (see `one_time` in the credential), so whichever command receives it —
//! `hallpass ssh`, `hallpass request --wait`, `hallpass credentials` —
//! saves it here, in a private directory per grant, and later `hallpass
//! ssh` runs on the same grant use it from there. A grant's directory goes
//! once the grant has expired, at the next run that looks.
//!
//! The place: `$HALLPASS_KEYS_DIR`, else `$XDG_RUNTIME_DIR/hallpass/keys`
//! (a per-user tmpfs, gone at logout, where most Linux desktops have one),
//! else `~/.local/state/hallpass/keys`.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use hallpass_api::Credential;

/// Overrides where grant keys are kept.
pub const KEYS_DIR_ENV: &str = "HALLPASS_KEYS_DIR";
/// The certificate line in an ssh credential's environment.
pub const CERTIFICATE_ENV: &str = "HALLPASS_SSH_CERTIFICATE";
/// The private key, when Hallpass made the pair (first fetch only).
pub const PRIVATE_KEY_ENV: &str = "HALLPASS_SSH_PRIVATE_KEY";

const KEY_FILE: &str = "id";
const CERTIFICATE_FILE: &str = "id-cert.pub";
/// The grant's expiry (RFC 3339), which says when the directory may go.
const EXPIRES_FILE: &str = "expires";

/// The private keys of this user's grants, one directory per grant.
pub struct KeyStore {
    root: PathBuf,
}

/// The files `ssh -i KEY -o CertificateFile=CERT` needs for one grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantKey {
    pub key: PathBuf,
    pub certificate: PathBuf,
}

impl KeyStore {
    /// The store at its configured place, created (0700) if missing.
    pub fn open() -> anyhow::Result<Self> {
        let root = match std::env::var_os(KEYS_DIR_ENV).filter(|dir| !dir.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => match std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
                Some(runtime) => PathBuf::from(runtime).join("hallpass").join("keys"),
                None => match std::env::var_os("HOME").filter(|home| !home.is_empty()) {
                    Some(home) => PathBuf::from(home).join(".local/state/hallpass/keys"),
                    None => bail!(
                        "nowhere to keep the grant's private key: set {KEYS_DIR_ENV} (or HOME) to a directory of yours"
                    ),
                },
            },
        };
        Self::at(root)
    }

    /// The store in `root`, created (0700) if missing.
    pub fn at(root: PathBuf) -> anyhow::Result<Self> {
        private_dir(&root, true)?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of grant `id`; an id that is not a plain name (a
    /// server sending `../x`) is refused rather than followed.
    fn grant_dir(&self, id: &str) -> anyhow::Result<PathBuf> {
        let plain = !id.is_empty()
            && id.len() <= 128
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !id.starts_with('-');
        if !plain {
            bail!("the server sent a grant id that is not a plain name: {id:?}");
        }
        Ok(self.root.join(id))
    }

    /// Saves what a credential's first fetch carried: the private key, the
    /// certificate and the expiry. Returns `None` when the credential holds
    /// no private key.
    pub fn keep(&self, credential: &Credential) -> anyhow::Result<Option<GrantKey>> {
        let Some(private) = credential.env.get(PRIVATE_KEY_ENV) else {
            return Ok(None);
        };
        let dir = self.grant_dir(&credential.request_id)?;
        private_dir(&dir, false)?;
        write_private(&dir.join(EXPIRES_FILE), &credential.expires_at.to_rfc3339())?;
        let mut text = private.trim_end().to_string();
        text.push('\n');
        write_private(&dir.join(KEY_FILE), &text)?;
        self.refresh(credential).map(Some)
    }

    /// The saved key of the credential's grant, with the certificate and
    /// expiry of this fetch written beside it (an extension moves both);
    /// `None` when this store does not have it.
    pub fn refresh(&self, credential: &Credential) -> anyhow::Result<GrantKey> {
        let dir = self.grant_dir(&credential.request_id)?;
        let key = dir.join(KEY_FILE);
        if !key.is_file() {
            bail!("no key for grant {} in {}", credential.request_id, self.root.display());
        }
        let Some(certificate) = credential.env.get(CERTIFICATE_ENV) else {
            bail!("the grant's credential holds no SSH certificate: is the role on an ssh target?");
        };
        let certificate_path = dir.join(CERTIFICATE_FILE);
        write_private(&certificate_path, &format!("{}\n", certificate.trim()))?;
        write_private(&dir.join(EXPIRES_FILE), &credential.expires_at.to_rfc3339())?;
        Ok(GrantKey {
            key,
            certificate: certificate_path,
        })
    }

    /// Whether the key of grant `id` is here.
    pub fn has(&self, id: &str) -> bool {
        self.grant_dir(id).is_ok_and(|dir| dir.join(KEY_FILE).is_file())
    }

    /// Removes the directories of grants expired by `now`; returns how many.
    /// One whose expiry cannot be read is left alone: it is not this
    /// store's to judge.
    pub fn sweep(&self, now: DateTime<Utc>) -> usize {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let dir = entry.path();
            let expired = fs::read_to_string(dir.join(EXPIRES_FILE))
                .ok()
                .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
                .is_some_and(|expires| expires.to_utc() <= now);
            if expired && fs::remove_dir_all(&dir).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// Creates `dir` owner-only, or checks an existing one: a directory others
/// can read would give the keys away.
fn private_dir(dir: &Path, parents: bool) -> anyhow::Result<()> {
    if !dir.exists() {
        if parents && let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        match DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    let meta = fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory; grant keys need a directory of their own",
            dir.display()
        );
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("{} is readable by others and cannot be made private", dir.display()))?;
    }
    Ok(())
}

/// Writes `text` to `path` (0600) through a temporary file and a rename,
/// so a reader never sees half a key.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp{}", std::process::id()));
    let temporary = PathBuf::from(name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn credential(id: &str, expires_at: DateTime<Utc>, private: Option<&str>) -> Credential {
        let mut env = std::collections::BTreeMap::new();
        env.insert(
            CERTIFICATE_ENV.to_string(),
            "ssh-ed25519-cert-v01@openssh.com AAAA cert".to_string(),
        );
        if let Some(private) = private {
            env.insert(PRIVATE_KEY_ENV.to_string(), private.to_string());
        }
        Credential {
            request_id: id.into(),
            credential_type: "ssh".into(),
            expires_at,
            token: String::new(),
            env,
            one_time: None,
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_kept_key_is_private_and_found_again_for_the_same_grant() {
        let temp = tempfile::tempdir().unwrap();
        let store = KeyStore::at(temp.path().join("keys")).unwrap();
        assert_eq!(mode(store.root()), 0o700);
        let later = Utc::now() + Duration::minutes(30);
        let kept = store
            .keep(&credential(
                "g-1",
                later,
                Some("-----BEGIN KEY-----\nbody\n-----END KEY-----"),
            ))
            .unwrap()
            .expect("a key");
        assert_eq!(
            fs::read_to_string(&kept.key).unwrap(),
            "-----BEGIN KEY-----\nbody\n-----END KEY-----\n"
        );
        assert_eq!(mode(&kept.key), 0o600);
        assert_eq!(mode(kept.key.parent().unwrap()), 0o700);
        assert!(store.has("g-1"));
        // A later fetch carries no key: the saved one is used, with the
        // fresh certificate.
        let again = store.refresh(&credential("g-1", later, None)).unwrap();
        assert_eq!(again, kept);
        assert!(
            fs::read_to_string(&again.certificate)
                .unwrap()
                .starts_with("ssh-ed25519-cert")
        );
        // Another grant has nothing here.
        assert!(store.refresh(&credential("g-2", later, None)).is_err());
        assert!(store.keep(&credential("g-3", later, None)).unwrap().is_none());
    }

    #[test]
    fn expired_grants_are_swept_and_live_ones_kept() {
        let temp = tempfile::tempdir().unwrap();
        let store = KeyStore::at(temp.path().to_path_buf()).unwrap();
        let now = Utc::now();
        store
            .keep(&credential("old", now - Duration::seconds(1), Some("k")))
            .unwrap();
        store
            .keep(&credential("live", now + Duration::minutes(5), Some("k")))
            .unwrap();
        fs::create_dir(temp.path().join("unknown")).unwrap();
        assert_eq!(store.sweep(now), 1);
        assert!(!store.has("old") && !temp.path().join("old").exists());
        assert!(store.has("live"));
        assert!(temp.path().join("unknown").exists(), "not the store's to judge");
    }

    #[test]
    fn ids_that_are_not_plain_names_are_refused() {
        let temp = tempfile::tempdir().unwrap();
        let store = KeyStore::at(temp.path().join("keys")).unwrap();
        for id in ["../escape", "a/b", "", ".", "-rf", "x y"] {
            let error = store
                .keep(&credential(id, Utc::now(), Some("k")))
                .unwrap_err()
                .to_string();
            assert!(error.contains("not a plain name"), "{id}: {error}");
        }
        assert!(!temp.path().join("escape").exists());
    }

    #[test]
    fn a_store_readable_by_others_is_made_private() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("keys");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        KeyStore::at(root.clone()).unwrap();
        assert_eq!(mode(&root), 0o700);
    }
}
