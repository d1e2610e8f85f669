//! TLS for admin connections: rustls with aws-lc-rs (the project's one
//! crypto backend), libpq's `sslmode` meanings, and `tls-server-end-point`
//! channel binding so that SCRAM authentication is tied to the TLS session
//! (a man in the middle who terminates TLS cannot relay the login).
//!
//! Written here rather than taken from tokio-postgres-rustls: that crate
//! brings a second SHA-2 and an X.509 parser for the one field channel
//! binding needs, and its callers still build the verifiers themselves.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_lc_rs::digest;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::TlsConnector;

use super::settings::{Settings, SslMode, invalid};
use crate::ProviderError;

/// Makes TLS connectors for one target; `None` inside when `sslmode` is
/// `disable` (tokio-postgres then never asks for one).
#[derive(Clone)]
pub(super) struct MakeTls(Option<Arc<ClientConfig>>);

impl fmt::Debug for MakeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "MakeTls(rustls)"
        } else {
            "MakeTls(disabled)"
        })
    }
}

impl MakeTls {
    /// The connector `settings` ask for: which certificates are trusted
    /// (`ca_file`, else the public web roots) and what is checked.
    pub(super) fn new(settings: &Settings) -> Result<Self, ProviderError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match settings.sslmode {
            SslMode::Disable => return Ok(Self(None)),
            SslMode::Require => Arc::new(AnyCertificate(provider.clone())),
            SslMode::VerifyCa => Arc::new(CaOnly(webpki_verifier(settings, &provider)?)),
            SslMode::VerifyFull => webpki_verifier(settings, &provider)?,
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("cannot set up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // PostgreSQL 17 checks the protocol name when the client sends one;
        // older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Self(Some(Arc::new(config))))
    }
}

fn webpki_verifier(
    settings: &Settings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, ProviderError> {
    let mut roots = RootCertStore::empty();
    match settings.ca_certificates()? {
        Some(certificates) => {
            let (_, ignored) = roots.add_parsable_certificates(certificates);
            if roots.is_empty() {
                return Err(invalid(format!(
                    "no usable CA certificate in `ca_file` ({ignored} could not be parsed)"
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| invalid(format!("cannot use the CA certificates: {e}")))
}

/// `sslmode=require`: encryption without checking who answers.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root, whatever
/// names the certificate holds.
#[derive(Debug)]
struct CaOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for CaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl<S> MakeTlsConnect<S> for MakeTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = Connect;
    type Error = io::Error;

    /// Called for every connection, TLS or not; `domain` is empty for a
    /// Unix socket, which only `sslmode = "disable"` allows.
    fn make_tls_connect(&mut self, domain: &str) -> io::Result<Connect> {
        let Some(config) = &self.0 else {
            return Ok(Connect(None));
        };
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("host {domain:?}: {e}")))?;
        Ok(Connect(Some((TlsConnector::from(config.clone()), name))))
    }
}

/// One TLS handshake to come (`None`: TLS is off for this target).
pub(super) struct Connect(Option<(TlsConnector, ServerName<'static>)>);

type Handshake<S> = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Handshake<S>;

    fn connect(self, stream: S) -> Handshake<S> {
        Box::pin(async move {
            let (connector, name) = self
                .0
                .ok_or_else(|| io::Error::other("TLS is disabled for this target (sslmode \"disable\")"))?;
            connector.connect(name, stream).await.map(PgTlsStream)
        })
    }
}

/// A TLS connection to the server.
pub(super) struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        session
            .peer_certificates()
            .and_then(|certificates| certificates.first())
            .and_then(|leaf| server_end_point(leaf.as_ref()))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// RFC 5929 `tls-server-end-point`: the hash of the server's certificate,
/// with the hash of its signature algorithm (SHA-256 for MD5 and SHA-1).
/// `None` for algorithms without one (Ed25519, RSA-PSS): the login then
/// goes without channel binding, as with libpq.
pub(super) fn server_end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    const RSA: [u8; 8] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: [u8; 6] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let oid = signature_algorithm(certificate)?;
    let algorithm = match oid {
        [rsa @ .., last] if rsa == RSA => match last {
            0x04 | 0x05 | 0x0b => &digest::SHA256,
            0x0c => &digest::SHA384,
            0x0d => &digest::SHA512,
            _ => return None,
        },
        [ecdsa @ .., 0x01] if ecdsa == ECDSA => &digest::SHA256,
        [ecdsa @ .., 0x03, last] if ecdsa == ECDSA => match last {
            0x02 => &digest::SHA256,
            0x03 => &digest::SHA384,
            0x04 => &digest::SHA512,
            _ => return None,
        },
        _ => return None,
    };
    Some(digest::digest(algorithm, certificate).as_ref().to_vec())
}

/// The OID of `Certificate.signatureAlgorithm`, read from the DER.
fn signature_algorithm(certificate: &[u8]) -> Option<&[u8]> {
    let (0x30, certificate, _) = der_element(certificate)? else {
        return None;
    };
    let (0x30, _tbs, rest) = der_element(certificate)? else {
        return None;
    };
    let (0x30, algorithm, _) = der_element(rest)? else {
        return None;
    };
    match der_element(algorithm)? {
        (0x06, oid, _) => Some(oid),
        _ => None,
    }
}

/// One DER element: its tag, its contents and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count].iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (length, &rest[count..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_sockets_get_a_connector_only_without_tls() {
        let settings = |sslmode: SslMode| Settings {
            host: "/run/postgresql".into(),
            port: 5432,
            database: "d".into(),
            username: "u".into(),
            sslmode,
            ca_file: None,
            connect_timeout: std::time::Duration::from_secs(1),
            statement_timeout: std::time::Duration::from_secs(1),
        };
        // tokio-postgres asks with an empty name for a socket.
        let mut plain = MakeTls::new(&settings(SslMode::Disable)).unwrap();
        assert!(MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(&mut plain, "").is_ok());
        let mut tls = MakeTls::new(&settings(SslMode::Require)).unwrap();
        assert!(MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(&mut tls, "").is_err());
        assert!(MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(&mut tls, "db.internal").is_ok());
    }

    #[test]
    fn channel_binding_follows_the_signature_hash() {
        for (algorithm, length) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, 32),
            (&rcgen::PKCS_ECDSA_P384_SHA384, 48),
        ] {
            let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["db.test".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let binding = server_end_point(cert.der()).unwrap();
            assert_eq!(binding.len(), length);
            let expected = if length == 32 { &digest::SHA256 } else { &digest::SHA384 };
            assert_eq!(binding, digest::digest(expected, cert.der()).as_ref());
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(
            server_end_point(cert.der()),
            None,
            "Ed25519 has no channel binding hash"
        );
        assert_eq!(server_end_point(b"\x30\x84\xff\xff\xff\xff"), None);
        assert_eq!(server_end_point(b""), None);
    }
}
