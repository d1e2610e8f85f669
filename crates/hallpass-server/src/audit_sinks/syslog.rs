//! The `syslog` sink: each event as one RFC 5424 message, framed by octet
//! counting (RFC 6587 section 3.4.1, `LEN SP MSG`), over TCP or over TLS
//! (RFC 5425):
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME hallpass PROCID MSGID [hallpass@32473 seq="N" kind="K" actor="A" request="R"] BOM{"seq":N,...}
//! ```
//!
//! PRI is the configured facility × 8 + a severity by kind (see
//! [`severity`]); TIMESTAMP is the event's time; MSGID its kind; the
//! message is the event's export line (after a UTF-8 byte-order mark, as
//! RFC 5424 asks of UTF-8 messages). `32473` is the private enterprise
//! number RFC 5612 sets aside for examples: Hallpass has none of its own.
//!
//! A batch counts as delivered once its bytes are written and flushed to
//! the connection: syslog has no acknowledgement. A receiver that closed
//! the connection is noticed before the next batch and the connection is
//! made again.

use std::sync::Arc;

use futures::FutureExt;
use hallpass_config::SyslogSink;
use hallpass_core::audit::AuditEvent;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// `hallpass@` and RFC 5612's example enterprise number.
const SD_ID: &str = "hallpass@32473";
const APP_NAME: &str = "hallpass";
const BOM: &str = "\u{feff}";
/// RFC 5424 severities.
const WARNING: u8 = 4;
const NOTICE: u8 = 5;
const INFORMATIONAL: u8 = 6;

/// A connection, plain or TLS.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// Sends batches to one syslog receiver over one connection, made again
/// when it breaks.
pub(super) struct SyslogSender {
    config: SyslogSink,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    hostname: String,
    procid: u32,
    connection: Option<Box<dyn Connection>>,
}

impl SyslogSender {
    pub(super) fn new(config: &SyslogSink) -> anyhow::Result<Self> {
        let tls = match config.tls {
            false => None,
            true => {
                let connector = tls_connector(config)?;
                let name = ServerName::try_from(config.host.clone())
                    .map_err(|e| anyhow::anyhow!("{} is not a host name TLS can check: {e}", config.host))?;
                Some((connector, name))
            }
        };
        Ok(Self {
            config: config.clone(),
            tls,
            hostname: hostname(),
            procid: std::process::id(),
            connection: None,
        })
    }

    /// Writes one frame per event and flushes.
    pub(super) async fn send(&mut self, events: &[AuditEvent]) -> Result<(), String> {
        let mut frames = Vec::with_capacity(events.len() * 600);
        for event in events {
            frames.extend(frame(&message(
                event,
                self.config.facility,
                &self.hostname,
                self.procid,
            )));
        }
        let timeout = self.config.timeout;
        let sent = tokio::time::timeout(timeout, async {
            let connection = self.connection().await?;
            connection.write_all(&frames).await.map_err(|e| e.to_string())?;
            connection.flush().await.map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", timeout.as_secs())));
        sent.map_err(|error| {
            self.connection = None;
            format!("syslog {}:{}: {error}", self.config.host, self.config.port)
        })
    }

    /// The open connection, or a new one when there is none or the
    /// receiver closed it (a write to a closed socket may still "succeed").
    async fn connection(&mut self) -> Result<&mut Box<dyn Connection>, String> {
        if let Some(connection) = self.connection.as_mut() {
            let mut byte = [0u8; 1];
            // A receiver never sends; end of stream or an error means it is gone.
            if let Some(Ok(0) | Err(_)) = connection.read(&mut byte).now_or_never() {
                self.connection = None;
            }
        }
        if self.connection.is_none() {
            let stream = TcpStream::connect((self.config.host.as_str(), self.config.port))
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let connection: Box<dyn Connection> = match &self.tls {
                None => Box::new(stream),
                Some((connector, name)) => Box::new(
                    connector
                        .connect(name.clone(), stream)
                        .await
                        .map_err(|e| format!("TLS handshake failed: {e}"))?,
                ),
            };
            self.connection = Some(connection);
        }
        self.connection.as_mut().ok_or_else(|| "no connection".to_string())
    }
}

/// TLS trusting `ca_file`, or the public web roots without one.
fn tls_connector(config: &SyslogSink) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow::anyhow!("ca_file {}: {e}", path.display()))?;
            let (_, ignored) = roots.add_parsable_certificates(certificates);
            if roots.is_empty() {
                anyhow::bail!(
                    "ca_file {}: no usable CA certificate ({ignored} could not be parsed); it should hold PEM blocks \
                     starting with -----BEGIN CERTIFICATE-----",
                    path.display()
                );
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// This machine's name for the HOSTNAME field, `-` when unknown.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    header_field(name.trim(), 255)
}

/// `LEN SP MSG`: octet-counting framing.
pub(super) fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = format!("{} ", message.len()).into_bytes();
    framed.extend_from_slice(message);
    framed
}

/// The RFC 5424 message for `event`.
pub(super) fn message(event: &AuditEvent, facility: u8, hostname: &str, procid: u32) -> Vec<u8> {
    let pri = u16::from(facility) * 8 + u16::from(severity(event));
    let timestamp = chrono::DateTime::parse_from_rfc3339(&event.time)
        .map(|time| {
            time.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string()
        })
        .unwrap_or_else(|_| "-".to_string());
    let msgid = header_field(&event.kind, 32);
    let mut sd = format!(
        "[{SD_ID} seq=\"{}\" kind=\"{}\" actor=\"{}\"",
        event.seq,
        sd_escape(&event.kind),
        sd_escape(&event.actor)
    );
    if let Some(request) = &event.request_id {
        sd.push_str(&format!(" request=\"{}\"", sd_escape(request)));
    }
    sd.push(']');
    let mut message = format!("<{pri}>1 {timestamp} {hostname} {APP_NAME} {procid} {msgid} {sd} {BOM}").into_bytes();
    // Serialising a parsed event cannot fail; an empty message would still
    // carry the seq in its structured data.
    message.extend(serde_json::to_vec(event).unwrap_or_default());
    message
}

/// Warning for what someone should look at (a failed revocation, a lock,
/// break-glass access, moved credentials), informational for checkpoints,
/// notice for everything else.
pub(super) fn severity(event: &AuditEvent) -> u8 {
    let emergency = event.data.get("emergency").and_then(Value::as_bool) == Some(true);
    match event.kind.as_str() {
        "grant.revoke_failed" | "principal.locked" | "principal.unlocked" | "target.secrets_upgraded" => WARNING,
        _ if emergency => WARNING,
        "audit.checkpoint" => INFORMATIONAL,
        _ => NOTICE,
    }
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped with a backslash.
pub(super) fn sd_escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A header field: printable US-ASCII only, at most `max` characters, `-`
/// (the NILVALUE) when nothing is left.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if field.is_empty() { "-".to_string() } else { field }
}

#[cfg(test)]
mod tests {
    use hallpass_core::audit::AuditDraft;
    use rustls::pki_types::pem::PemObject;
    use serde_json::json;

    use super::*;

    fn event(kind: &str, request: Option<&str>, data: Value) -> AuditEvent {
        AuditDraft::new("ali\"ce]", kind, request.map(str::to_string), data).seal(
            42,
            "2026-11-21T10:10:16.012345Z".into(),
            &"0".repeat(64),
        )
    }

    #[test]
    fn messages_follow_rfc_5424() {
        let event = event("grant.activated", Some("01a1fd95-x"), json!({"emergency": false}));
        let text = String::from_utf8(message(&event, 10, "broker-1", 4242)).unwrap();
        let (head, json) = text.split_once(BOM).unwrap();
        assert_eq!(
            head,
            "<85>1 2026-11-21T10:10:16.012345Z broker-1 hallpass 4242 grant.activated \
             [hallpass@32473 seq=\"42\" kind=\"grant.activated\" actor=\"ali\\\"ce\\]\" request=\"01a1fd95-x\"] "
        );
        assert_eq!(serde_json::from_str::<AuditEvent>(json).unwrap(), event);
        // No request: no parameter; a time in another offset is given in UTC.
        let mut quiet = self::event("token.created", None, json!({}));
        quiet.time = "2026-11-21T12:10:16+02:00".into();
        let text = String::from_utf8(message(&quiet, 4, "-", 1)).unwrap();
        assert!(
            text.starts_with(
                "<37>1 2026-11-21T10:10:16.000000Z - hallpass 1 token.created \
                 [hallpass@32473 seq=\"42\" kind=\"token.created\" actor=\"ali\\\"ce\\]\"] \u{feff}{"
            ),
            "{text}"
        );
    }

    #[test]
    fn severity_follows_the_kind() {
        assert_eq!(severity(&event("grant.revoke_failed", None, json!({}))), WARNING);
        assert_eq!(severity(&event("principal.locked", None, json!({}))), WARNING);
        assert_eq!(
            severity(&event("request.created", None, json!({"emergency": true}))),
            WARNING
        );
        assert_eq!(
            severity(&event("request.created", None, json!({"emergency": false}))),
            NOTICE
        );
        assert_eq!(severity(&event("audit.checkpoint", None, json!({}))), INFORMATIONAL);
        assert_eq!(severity(&event("role.updated", None, json!([1]))), NOTICE);
    }

    #[test]
    fn values_and_header_fields_are_escaped_or_cut() {
        assert_eq!(sd_escape(r#"a"b\c]d[e"#), r#"a\"b\\c\]d[e"#);
        assert_eq!(sd_escape("plain é"), "plain é");
        assert_eq!(header_field("", 32), "-");
        assert_eq!(header_field("a b\tc\u{e9}", 32), "abc");
        assert_eq!(header_field(&"k".repeat(40), 32), "k".repeat(32));
        // A kind from a newer release, too long for MSGID, is cut there
        // and whole in the structured data.
        let long = "x".repeat(40);
        let text = String::from_utf8(message(&event(&long, None, json!({})), 10, "h", 1)).unwrap();
        assert!(text.contains(&format!(" {} [", "x".repeat(32))), "{text}");
        assert!(text.contains(&format!("kind=\"{long}\"")), "{text}");
    }

    #[test]
    fn frames_count_octets_not_characters() {
        assert_eq!(frame(b"abc"), b"3 abc");
        let message = "é\u{feff}".as_bytes();
        assert_eq!(frame(message), [b"5 ".as_slice(), message].concat());
        assert_eq!(frame(b""), b"0 ");
    }

    /// A TLS syslog receiver for `localhost` with a self-signed
    /// certificate: hands each connection's bytes over when it ends, and
    /// closes the first connection after `first_frames` frames' worth.
    struct TlsReceiver {
        port: u16,
        ca_file: std::path::PathBuf,
        received: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
        _dir: tempfile::TempDir,
    }

    async fn tls_receiver(first_bytes: usize) -> TlsReceiver {
        use rustls::pki_types::PrivateKeyDer;
        let dir = tempfile::tempdir().unwrap();
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(signing_key.serialize_pem().as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut limit = Some(first_bytes);
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    continue;
                };
                let mut bytes = Vec::new();
                match limit.take() {
                    Some(limit) => {
                        bytes.resize(limit, 0);
                        tls.read_exact(&mut bytes).await.unwrap();
                        tls.shutdown().await.unwrap();
                    }
                    None => {
                        let _ = tls.read_to_end(&mut bytes).await;
                    }
                }
                tx.send(bytes).unwrap();
            }
        });
        TlsReceiver {
            port,
            ca_file,
            received,
            _dir: dir,
        }
    }

    fn tls_sink(port: u16, ca_file: std::path::PathBuf) -> SyslogSink {
        SyslogSink {
            host: "localhost".into(),
            port,
            tls: true,
            ca_file: Some(ca_file),
            facility: 10,
            timeout: std::time::Duration::from_secs(5),
        }
    }

    /// The seqs in octet-counted frames.
    fn seqs(mut bytes: &[u8]) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Some(space) = bytes.iter().position(|b| *b == b' ') {
            let length: usize = std::str::from_utf8(&bytes[..space]).unwrap().parse().unwrap();
            let message = std::str::from_utf8(&bytes[space + 1..space + 1 + length]).unwrap();
            let (_, json) = message.split_once(BOM).unwrap();
            seqs.push(serde_json::from_str::<AuditEvent>(json).unwrap().seq);
            bytes = &bytes[space + 1 + length..];
        }
        seqs
    }

    #[tokio::test]
    async fn tls_delivers_frames_and_connects_again_after_the_receiver_hung_up() {
        let first = [
            event("token.created", None, json!({})),
            event("role.created", None, json!({})),
        ];
        let mut numbered = first.clone();
        numbered[1].seq = 43;
        let sent_bytes: usize = numbered
            .iter()
            .map(|e| frame(&message(e, 10, &hostname(), std::process::id())).len())
            .sum();
        let mut receiver = tls_receiver(sent_bytes).await;
        let mut sender = SyslogSender::new(&tls_sink(receiver.port, receiver.ca_file.clone())).unwrap();
        sender.send(&numbered).await.unwrap();
        assert_eq!(seqs(&receiver.received.recv().await.unwrap()), [42, 43]);
        // The receiver closed that connection: the next batch takes a new one.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut next = event("grant.activated", None, json!({}));
        next.seq = 44;
        sender.send(std::slice::from_ref(&next)).await.unwrap();
        drop(sender);
        assert_eq!(seqs(&receiver.received.recv().await.unwrap()), [44]);
    }

    #[tokio::test]
    async fn tls_refuses_a_receiver_the_ca_file_does_not_vouch_for() {
        let receiver = tls_receiver(1).await;
        let other = tls_receiver(1).await;
        let mut sender = SyslogSender::new(&tls_sink(receiver.port, other.ca_file.clone())).unwrap();
        let error = sender
            .send(&[event("token.created", None, json!({}))])
            .await
            .unwrap_err();
        assert!(error.contains("TLS handshake failed"), "{error}");
    }
}
