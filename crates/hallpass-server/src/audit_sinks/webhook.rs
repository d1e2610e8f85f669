//! The `webhook` sink: each batch as one POST of JSON Lines
//! (`application/x-ndjson`, one export line per event), signed the way
//! webhook targets sign their calls (Standard Webhooks, the same
//! [`SigningKey`]). The batch's `webhook-id` is `audit-FIRST-LAST`, its
//! first and last seq, so a batch sent again carries the id it had; any
//! 2xx answer acknowledges it.

use chrono::Utc;
use hallpass_config::WebhookSink;
use hallpass_core::audit::AuditEvent;
use hallpass_providers::webhook::{
    CONNECT_TIMEOUT, ID_HEADER, SIGNATURE_HEADER, SigningKey, TIMESTAMP_HEADER, WebhookConfig,
    install_tls_crypto_provider,
};
use hallpass_providers::{ProviderError, SecretValue};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Client, redirect};

use super::lines;

/// POSTs batches to one URL.
pub(super) struct WebhookSender {
    client: Client,
    /// The checked URL (no credentials in it) and the timeout.
    config: WebhookConfig,
    key: SigningKey,
}

fn setting_error(error: ProviderError) -> anyhow::Error {
    match error {
        // Without the provider's "invalid webhook target settings": this is a sink.
        ProviderError::InvalidConfig { message, .. } => anyhow::anyhow!("{message}"),
        other => anyhow::anyhow!("{other}"),
    }
}

impl WebhookSender {
    /// Checks the URL and the key, and builds the client (trusting only
    /// `ca_file` when one is given).
    pub(super) fn new(config: &WebhookSink) -> anyhow::Result<Self> {
        let settings = serde_json::Map::from_iter([("url".to_string(), config.url.clone().into())]);
        let mut checked = WebhookConfig::parse(&settings).map_err(setting_error)?;
        checked.timeout = config.timeout;
        let key = SigningKey::parse(&SecretValue::new(config.hmac_secret.expose())).map_err(setting_error)?;
        install_tls_crypto_provider();
        let mut builder = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(redirect::Policy::none())
            .user_agent(concat!("hallpass/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("ca_file {}: {e}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("ca_file {}: {e}", path.display()))?;
            if certificates.is_empty() {
                anyhow::bail!(
                    "ca_file {} holds no certificate; it should hold PEM blocks starting with -----BEGIN CERTIFICATE-----",
                    path.display()
                );
            }
            builder = certificates
                .into_iter()
                .fold(builder.tls_built_in_root_certs(false), |builder, certificate| {
                    builder.add_root_certificate(certificate)
                });
        }
        let client = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            config: checked,
            key,
        })
    }

    /// POSTs the batch; Ok once the receiver answered 2xx.
    pub(super) async fn send(&self, events: &[AuditEvent]) -> Result<(), String> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let url = self.config.redacted_url();
        let webhook_id = batch_id(first.seq, last.seq);
        let body = lines(events);
        let timestamp = Utc::now().timestamp();
        let signature = self.key.sign(&webhook_id, timestamp, &body);
        let response = self
            .client
            .post(self.config.url.clone())
            .timeout(self.config.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"))
            .header(ID_HEADER, webhook_id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            // Without the URL: the error would print it whole.
            .map_err(|e| format!("POST {url}: {}", with_causes(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST {url} answered {status}"))
        }
    }
}

/// An error and what caused it, `: `-separated (reqwest's own message
/// alone says only "error sending request").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(&format!(": {next}"));
        cause = next.source();
    }
    text
}

/// The `webhook-id` of the batch from `first` to `last`.
pub(super) fn batch_id(first: u64, last: u64) -> String {
    format!("audit-{first}-{last}")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use hallpass_api::WriteOnly;

    use super::*;

    fn sink(url: &str, secret: &str, ca_file: Option<PathBuf>) -> WebhookSink {
        WebhookSink {
            url: url.into(),
            hmac_secret: WriteOnly::new(secret),
            timeout: Duration::from_secs(5),
            ca_file,
        }
    }

    const SECRET: &str = "whsec_aGFsbHBhc3MtZTJlLXdlYmhvb2stc2lnbmluZy1rZXk=";

    #[test]
    fn urls_and_keys_are_checked_without_echoing_secrets() {
        assert!(WebhookSender::new(&sink("https://siem.internal/h", SECRET, None)).is_ok());
        let error = WebhookSender::new(&sink("https://siem.internal/h", "whsec_c2hvcnQ=", None))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("hmac_secret") && !error.contains("c2hvcnQ"), "{error}");
        let error = WebhookSender::new(&sink("https://siem.internal/h?token=s3cret", SECRET, None))
            .err()
            .unwrap()
            .to_string();
        assert!(!error.contains("s3cret") && error.contains("`url`"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "").unwrap();
        let error = WebhookSender::new(&sink("https://siem.internal/h", SECRET, Some(empty)))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("holds no certificate"), "{error}");
    }

    #[test]
    fn batch_ids_name_the_first_and_last_seq() {
        assert_eq!(batch_id(1, 500), "audit-1-500");
    }
}
