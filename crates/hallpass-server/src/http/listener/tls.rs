//! TLS for `hallpass server --tls-cert/--tls-key`, for deployments without a
//! proxy in front.
//!
//! rustls with the aws-lc-rs provider, passed explicitly: the project has one
//! crypto backend, and naming it here keeps it so even when another crate in
//! the build switches on rustls' `ring` feature (where rustls' implicit
//! process-wide provider would become ambiguous). TLS 1.2 and 1.3; ALPN
//! offers `http/1.1` only, because the listener speaks HTTP/1.1 only.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// A certificate chain and its private key, ready to accept TLS connections.
///
/// `Debug` shows nothing of the key.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConfig { .. }")
    }
}

/// Why the certificate or key could not be used. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read the TLS {what} file {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--tls-cert {}: {reason}; it should hold the server certificate, then any intermediates, as PEM blocks starting with -----BEGIN CERTIFICATE-----",
        path.display()
    )]
    Certificate { path: PathBuf, reason: String },
    #[error(
        "--tls-key {}: {reason}; it should hold one PEM private key: -----BEGIN PRIVATE KEY----- (PKCS#8), -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----",
        path.display()
    )]
    Key { path: PathBuf, reason: String },
    #[error(
        "the private key in {} does not belong to the first certificate in {}: pass the key that was issued with that certificate (and put the server certificate first in the chain)",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot set up TLS with {} and {}: {reason}", cert.display(), key.display())]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

impl TlsConfig {
    /// Loads a PEM certificate chain (server certificate first) and a PEM
    /// private key (PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519).
    pub fn from_pem_files(cert_path: impl AsRef<Path>, key_path: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
        let (cert_path, key_path) = (cert_path.as_ref(), key_path.as_ref());
        let certs = read_certificates(cert_path)?;
        let key = read_private_key(key_path)?;
        let rejected = |reason: String| TlsConfigError::Rejected {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            reason,
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| rejected(error.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|error| match error {
                rustls::Error::InconsistentKeys(_) => TlsConfigError::KeyMismatch {
                    cert: cert_path.to_path_buf(),
                    key: key_path.to_path_buf(),
                },
                // The provider's message names the key types it tried, not the key.
                other => rejected(other.to_string()),
            })?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig {
            server: Arc::new(server),
        })
    }

    pub(super) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server.clone())
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let text = read_file("certificate", path)?;
    let invalid = |reason: String| TlsConfigError::Certificate {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("not valid PEM ({error})")))?;
    if certs.is_empty() {
        let reason = if PrivateKeyDer::from_pem_slice(&text).is_ok() {
            "holds a private key but no certificate (are --tls-cert and --tls-key swapped?)"
        } else {
            "holds no certificate"
        };
        return Err(invalid(reason.to_string()));
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let text = read_file("private key", path)?;
    // The PEM error's own text is left out: it may quote bytes of the key.
    PrivateKeyDer::from_pem_slice(&text).map_err(|error| {
        let reason = match error {
            pem::Error::NoItemsFound if CertificateDer::pem_slice_iter(&text).any(|c| c.is_ok()) => {
                "holds a certificate but no private key (are --tls-cert and --tls-key swapped?)"
            }
            pem::Error::NoItemsFound => "holds no private key",
            _ => "is not valid PEM",
        };
        TlsConfigError::Key {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    })
}
