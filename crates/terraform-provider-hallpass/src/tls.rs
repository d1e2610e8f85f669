//! Mutual TLS between Terraform and the provider.
//!
//! Each start makes a fresh self-signed P-256 server certificate
//! (`localhost`, serverAuth) and sends it in the handshake line; Terraform
//! trusts exactly that certificate. In the other direction Terraform
//! presents the certificate it put in `PLUGIN_CLIENT_CERT`, and the
//! provider accepts exactly that one.
//!
//! Terraform's client certificate is a self-signed ECDSA P-521 certificate
//! with `CA:TRUE`. WebPKI path validation (rustls's stock client verifier)
//! refuses a CA certificate as an end entity, so [`PinnedClientCert`]
//! compares the DER bytes instead and checks only the handshake signature,
//! with aws-lc-rs (which, unlike ring, verifies P-521/SHA-512).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// What can go wrong setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make the provider's TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("Terraform's client certificate (PLUGIN_CLIENT_CERT) is not a PEM certificate: {0}")]
    ClientCertificate(String),
    #[error("cannot set up TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// The provider's certificate and key for one process lifetime.
pub struct ServerIdentity {
    pub cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl ServerIdentity {
    /// A new P-256 key and a self-signed certificate for `localhost`, the
    /// name Terraform checks. The key never leaves the process.
    pub fn generate() -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

/// The TLS server configuration: TLS 1.3 and 1.2 on aws-lc-rs, ALPN `h2`
/// (gRPC), and only `client_cert_pem` accepted as the client.
pub fn server_config(identity: &ServerIdentity, client_cert_pem: &str) -> Result<ServerConfig, TlsError> {
    let expected = CertificateDer::from_pem_slice(client_cert_pem.as_bytes())
        .map_err(|e| TlsError::ClientCertificate(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinnedClientCert::new(expected, &provider));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Accepts one client certificate, byte for byte, and checks that the
/// client holds its key.
#[derive(Debug)]
pub struct PinnedClientCert {
    expected: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedClientCert {
    pub fn new(expected: CertificateDer<'static>, provider: &CryptoProvider) -> Self {
        Self {
            expected,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for PinnedClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No CA to name: the one acceptable certificate is pinned.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Pinning replaces path validation: the certificate came from the
        // process that started us, through the environment. Its validity
        // period is Terraform's business (it made it moments ago).
        if end_entity.as_ref() == self.expected.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A client certificate like Terraform's: self-signed P-521, CA:TRUE.
    fn terraform_like_client() -> (CertificateDer<'static>, PrivateKeyDer<'static>, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
            rcgen::KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key, pem)
    }

    /// Runs a TLS handshake over an in-memory pipe, the client presenting
    /// `client`; returns the server's result and the negotiated ALPN.
    async fn handshake(
        server: ServerConfig,
        trusted: CertificateDer<'static>,
        client: (CertificateDer<'static>, PrivateKeyDer<'static>),
    ) -> Result<Option<Vec<u8>>, std::io::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(trusted).unwrap();
        let mut client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![client.0], client.1)
            .unwrap();
        client_config.alpn_protocols = vec![b"h2".to_vec()];
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let client_side = tokio::spawn(async move {
            let name = ServerName::try_from("localhost").unwrap();
            let mut stream = connector.connect(name, client_io).await?;
            stream.write_all(b"ping").await?;
            stream.flush().await?;
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(())
        });
        let mut stream = acceptor.accept(server_io).await?;
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        stream.write_all(b"pong").await?;
        stream.flush().await?;
        client_side.await.unwrap()?;
        Ok(alpn)
    }

    #[tokio::test]
    async fn terraforms_kind_of_client_certificate_is_accepted() {
        let identity = ServerIdentity::generate().unwrap();
        let (cert, key, pem) = terraform_like_client();
        let config = server_config(&identity, &pem).unwrap();
        let alpn = handshake(config, identity.cert.clone(), (cert, key)).await.unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    }

    #[tokio::test]
    async fn any_other_client_certificate_is_refused() {
        let identity = ServerIdentity::generate().unwrap();
        let (_, _, pinned_pem) = terraform_like_client();
        let (other_cert, other_key, _) = terraform_like_client();
        let config = server_config(&identity, &pinned_pem).unwrap();
        let error = handshake(config, identity.cert.clone(), (other_cert, other_key))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("certificate"), "{error}");
    }

    #[test]
    fn a_client_certificate_that_is_not_pem_is_refused() {
        let identity = ServerIdentity::generate().unwrap();
        let error = server_config(&identity, "not a certificate").unwrap_err();
        assert!(matches!(error, TlsError::ClientCertificate(_)), "{error}");
    }
}
