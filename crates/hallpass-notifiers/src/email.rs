//! The `email` notifier: sends each notification as an email over SMTP
//! (lettre), to the addresses `recipients` gives for its audience and to
//! the fixed list `to` (a security mailbox, say).
//!
//! ```hcl
//! notifier "mail" {
//!   type   = "email"
//!   config = {
//!     host       = "smtp.example.com"
//!     tls        = "starttls"              # or "tls" (port 465), or "none" (loopback only)
//!     from       = "Hallpass <hallpass@example.com>"
//!     to         = ["security@example.com"]
//!     recipients = { "user:carol" = "carol@example.com", "group:dba" = "dba@example.com" }
//!   }
//!   secrets = { username = env("SMTP_USER"), password = env("SMTP_PASSWORD") }
//! }
//! ```
//!
//! One message per notification, to all its recipients at once, with a
//! `Message-ID` made from the notification's id: a send the server
//! retries is recognisably the same message. TLS is rustls with
//! aws-lc-rs; the server's certificate is checked against the public web
//! roots, or only against `ca_file` when it is set. Plain SMTP is allowed
//! only to this machine (a local relay), since it would carry the message
//! and the password in clear.

mod message;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use hallpass_api::Notification;
use hallpass_providers::{SecretSpec, TargetSecrets};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Map, Value};

use crate::{NotifierContext, NotifierType, NotifyError, optional_str, required_str, timeout_setting};

pub use message::{build_message, subject};

pub const NOTIFIER_TYPE: &str = "email";
/// The secret holding the SMTP user name.
pub const USERNAME: &str = "username";
/// The secret holding the SMTP password.
pub const PASSWORD: &str = "password";
/// The longest one attempt (connect, TLS, the whole SMTP conversation)
/// takes, when `timeout_seconds` does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const SETTINGS: &[&str] = &["host", "port", "tls", "from", "to", "ca_file", "timeout_seconds"];

const SECRETS: &[SecretSpec] = &[
    SecretSpec {
        name: USERNAME,
        required: false,
        description: "the SMTP user name (with `password`)",
    },
    SecretSpec {
        name: PASSWORD,
        required: false,
        description: "the SMTP password (with `username`)",
    },
];

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP upgraded with STARTTLS, which must succeed (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only to a loopback host.
    None,
}

impl Security {
    fn parse(text: &str) -> Option<Security> {
        match text {
            "starttls" => Some(Security::StartTls),
            "tls" => Some(Security::Tls),
            "none" => Some(Security::None),
            _ => None,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Security::StartTls => 587,
            Security::Tls => 465,
            Security::None => 25,
        }
    }
}

/// An email notifier's settings, checked.
#[derive(Debug)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

fn invalid(message: impl Into<String>) -> NotifyError {
    NotifyError::invalid(NOTIFIER_TYPE, message)
}

/// An address as `Name <user@host>` or `user@host`; `what` names where it
/// was found, for the error.
pub fn parse_mailbox(text: &str, what: &str) -> Result<Mailbox, NotifyError> {
    // Headers are encoded by lettre, but a line break in an address is a
    // mistake (or an attempt) either way: refuse it outright.
    if text.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{what} holds a line break or another control character; give one address such as \"ops@example.com\""
        )));
    }
    text.trim().parse::<Mailbox>().map_err(|e| {
        invalid(format!(
            "{what} {text:?} is not an email address ({e}); write \"user@example.com\" or \"Name <user@example.com>\""
        ))
    })
}

/// Whether `host` is this machine: `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_host(config: &Map<String, Value>) -> Result<String, NotifyError> {
    let host = required_str(NOTIFIER_TYPE, config, "host")?;
    let is_name = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if !is_name && host.parse::<IpAddr>().is_err() {
        return Err(invalid(format!(
            "`host` {host:?} must be a host name or an IP address, without a scheme or port (set `port` apart)"
        )));
    }
    Ok(host.to_string())
}

fn parse_port(config: &Map<String, Value>, security: Security) -> Result<u16, NotifyError> {
    match config.get("port") {
        None | Some(Value::Null) => Ok(security.default_port()),
        Some(value) => value
            .as_u64()
            .and_then(|port| u16::try_from(port).ok())
            .filter(|port| *port > 0)
            .ok_or_else(|| invalid("`port` must be a whole number from 1 to 65535")),
    }
}

fn parse_security(config: &Map<String, Value>, host: &str) -> Result<Security, NotifyError> {
    let Some(text) = optional_str(NOTIFIER_TYPE, config, "tls")? else {
        return Ok(Security::StartTls);
    };
    let security = Security::parse(text)
        .ok_or_else(|| invalid(format!("`tls` {text:?} must be \"starttls\", \"tls\" or \"none\"")))?;
    if security == Security::None && !is_loopback(host) {
        return Err(invalid(format!(
            "`tls = \"none\"` sends mail and the SMTP password in clear, so it is allowed only to this machine \
             (localhost, 127.0.0.1, ::1), not to {host:?}: use \"starttls\" or \"tls\""
        )));
    }
    Ok(security)
}

fn parse_to(config: &Map<String, Value>) -> Result<Vec<Mailbox>, NotifyError> {
    let Some(value) = config.get("to").filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = value
        .as_array()
        .ok_or_else(|| invalid("`to` must be a list of addresses, e.g. [\"security@example.com\"]"))?;
    list.iter()
        .enumerate()
        .map(|(index, item)| {
            let text = item
                .as_str()
                .ok_or_else(|| invalid(format!("`to[{index}]` must be an address string")))?;
            parse_mailbox(text, &format!("`to[{index}]`"))
        })
        .collect()
}

fn parse_ca_file(config: &Map<String, Value>, security: Security) -> Result<Option<PathBuf>, NotifyError> {
    let Some(text) = optional_str(NOTIFIER_TYPE, config, "ca_file")? else {
        return Ok(None);
    };
    if security == Security::None {
        return Err(invalid(
            "`ca_file` is used only with TLS, and `tls` is \"none\": set `tls` to \"starttls\" or \"tls\", or remove `ca_file`",
        ));
    }
    let path = PathBuf::from(text);
    if !path.is_absolute() {
        return Err(invalid(format!(
            "`ca_file` {text:?} must be an absolute path to a PEM file of CA certificates"
        )));
    }
    read_ca_file(&path)?;
    Ok(Some(path))
}

/// The certificates of `ca_file`.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, NotifyError> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| invalid(format!("cannot read `ca_file` {shown}: {e}")))?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("`ca_file` {shown} is not a PEM file of certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(invalid(format!(
            "`ca_file` {shown} holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)"
        )));
    }
    Ok(certificates)
}

/// Every `recipients` value must be an address this type can send to.
fn check_recipients(config: &Map<String, Value>) -> Result<(), NotifyError> {
    let Some(map) = config.get("recipients").and_then(Value::as_object) else {
        return Ok(());
    };
    for (subject, address) in map {
        if let Some(text) = address.as_str() {
            parse_mailbox(text, &format!("`recipients` entry {subject:?}"))?;
        }
    }
    Ok(())
}

impl Settings {
    pub fn parse(config: &Map<String, Value>) -> Result<Settings, NotifyError> {
        let host = parse_host(config)?;
        let security = parse_security(config, &host)?;
        let port = parse_port(config, security)?;
        let from = parse_mailbox(required_str(NOTIFIER_TYPE, config, "from")?, "`from`")?;
        let to = parse_to(config)?;
        let ca_file = parse_ca_file(config, security)?;
        let timeout = timeout_setting(NOTIFIER_TYPE, config, DEFAULT_TIMEOUT)?;
        check_recipients(config)?;
        Ok(Settings {
            host,
            port,
            security,
            from,
            to,
            ca_file,
            timeout,
        })
    }

    /// `host:port`, for messages.
    fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn tls(&self) -> Result<Tls, NotifyError> {
        if self.security == Security::None {
            return Ok(Tls::None);
        }
        let mut builder = TlsParameters::builder(self.host.clone());
        if let Some(path) = &self.ca_file {
            // A private CA replaces the public roots: only it is trusted.
            builder = builder.certificate_store(CertificateStore::None);
            for der in read_ca_file(path)? {
                let certificate = Certificate::from_der(der.to_vec())
                    .map_err(|e| invalid(format!("`ca_file` {}: {e}", path.display())))?;
                builder = builder.add_root_certificate(certificate);
            }
        }
        let parameters = builder
            .build_rustls()
            .map_err(|e| NotifyError::Failed(format!("cannot set up TLS for {}: {e}", self.server())))?;
        Ok(match self.security {
            Security::Tls => Tls::Wrapper(parameters),
            _ => Tls::Required(parameters),
        })
    }
}

/// The SMTP login, if the notifier has one: both secrets or neither.
fn credentials(secrets: &TargetSecrets) -> Result<Option<Credentials>, NotifyError> {
    match (secrets.get(USERNAME), secrets.get(PASSWORD)) {
        (None, None) => Ok(None),
        (Some(username), Some(password)) => Ok(Some(Credentials::new(
            username.expose().trim().to_string(),
            password.expose().to_string(),
        ))),
        (Some(_), None) => Err(invalid(format!(
            "secret `{USERNAME}` is set without `{PASSWORD}`: give both for an SMTP login, or neither"
        ))),
        (None, Some(_)) => Err(invalid(format!(
            "secret `{PASSWORD}` is set without `{USERNAME}`: give both for an SMTP login, or neither"
        ))),
    }
}

/// The recipients of `notification`: the addresses its audience has in
/// `recipients`, then `to`, each once.
pub fn recipients(
    settings: &Settings,
    notifier: &NotifierContext,
    notification: &Notification,
) -> Result<Vec<Mailbox>, NotifyError> {
    let mut out: Vec<Mailbox> = Vec::new();
    for text in notifier.routing.addresses(&notification.audience) {
        out.push(parse_mailbox(&text, "a `recipients` address")?);
    }
    out.extend(settings.to.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|mailbox| seen.insert(mailbox.email.to_string().to_ascii_lowercase()));
    if out.is_empty() {
        return Err(NotifyError::NothingToSend(format!(
            "nobody to email: no one in the audience ({}) has an address in `recipients`, and `to` is empty",
            if notification.audience.is_empty() {
                "none".to_string()
            } else {
                notification.audience.join(", ")
            }
        )));
    }
    Ok(out)
}

/// A failed send, in words that say what to check.
fn describe_send_error(error: &lettre::transport::smtp::Error, settings: &Settings) -> String {
    let text = error.to_string();
    let lower = text.to_lowercase();
    let hint = if error.is_timeout() {
        "the server did not answer in time: check `host`, `port` and firewalls"
    } else if error.is_tls() || lower.contains("certificate") {
        "TLS failed: check `tls` (\"tls\" is for port 465, \"starttls\" for 587), and set `ca_file` if the \
         server's certificate is from a private CA"
    } else if lower.contains("refused") {
        "nothing listens there: check `host` and `port`"
    } else if lower.contains("authentication") || lower.contains("(535)") || lower.contains("(530)") {
        "check the secrets `username` and `password`"
    } else if lower.contains("starttls") {
        "the server does not offer STARTTLS: use `tls = \"tls\"` if it speaks TLS from the start"
    } else {
        ""
    };
    let server = settings.server();
    if hint.is_empty() {
        format!("SMTP {server}: {text}")
    } else {
        format!("SMTP {server}: {text}; {hint}")
    }
}

/// Sends notifications by email.
#[derive(Clone, Default)]
pub struct EmailNotifier;

impl EmailNotifier {
    pub fn new() -> Self {
        Self
    }

    async fn deliver(&self, notifier: &NotifierContext, notification: &Notification) -> Result<(), NotifyError> {
        let settings = Settings::parse(&notifier.config)?;
        let login = credentials(&notifier.secrets)?;
        let to = recipients(&settings, notifier, notification)?;
        let message = build_message(&settings.from, &to, notification)?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
            .port(settings.port)
            .tls(settings.tls()?)
            .timeout(Some(settings.timeout));
        if let Some(login) = login {
            builder = builder.credentials(login);
        }
        let transport = builder.build();
        // lettre's timeout bounds each step; this bounds the attempt, so a
        // server that answers slowly cannot outlast the delivery's lease.
        match tokio::time::timeout(settings.timeout, transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(NotifyError::Failed(describe_send_error(&error, &settings))),
            Err(_) => Err(NotifyError::Failed(format!(
                "SMTP {}: no answer within {}s; check `host`, `port` and firewalls, or raise `timeout_seconds`",
                settings.server(),
                settings.timeout.as_secs()
            ))),
        }
    }
}

impl NotifierType for EmailNotifier {
    fn notifier_type(&self) -> &'static str {
        NOTIFIER_TYPE
    }

    fn secrets(&self) -> &'static [SecretSpec] {
        SECRETS
    }

    fn settings(&self) -> &'static [&'static str] {
        SETTINGS
    }

    fn validate_config(&self, config: &Map<String, Value>, secrets: &TargetSecrets) -> Result<(), NotifyError> {
        Settings::parse(config)?;
        credentials(secrets)?;
        Ok(())
    }

    fn send<'a>(
        &'a self,
        notifier: &'a NotifierContext,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        self.deliver(notifier, notification).boxed()
    }
}

#[cfg(test)]
mod tests;
