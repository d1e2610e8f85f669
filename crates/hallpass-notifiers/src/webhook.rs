//! The `webhook` notifier: POSTs each notification as JSON to a URL,
//! signed the Standard Webhooks way, as webhook targets are.
//!
//! ```hcl
//! notifier "audit-bot" {
//!   type    = "webhook"
//!   config  = { url = "https://bot.internal/hallpass", timeout_seconds = 5 }
//!   secrets = { signing_secret = env("BOT_SIGNING_SECRET") }
//! }
//! ```
//!
//! Headers: `webhook-id` (the notification's id, the same on every retry:
//! receivers de-duplicate on it), `webhook-timestamp` (Unix seconds of this
//! attempt) and `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{id}.{timestamp}.{body}` keyed with `signing_secret`. Any 2xx answer is
//! success; the body of the answer is not read. Redirects are not followed.

use std::time::Duration;

use chrono::Utc;
use futures::future::{BoxFuture, FutureExt};
use hallpass_api::Notification;
use hallpass_providers::webhook::{
    ID_HEADER, SIGNATURE_HEADER, SigningKey, TIMESTAMP_HEADER, describe_send_error, describe_status,
    looks_like_credential, webhook_client,
};
use hallpass_providers::{ProviderError, SecretSpec, SecretValue, TargetSecrets};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, Url};
use serde_json::{Map, Value};

use crate::{NotifierContext, NotifierType, NotifyError, required_str, timeout_setting};

pub const NOTIFIER_TYPE: &str = "webhook";
/// The secret that signs every call (`whsec_...`).
pub const SIGNING_SECRET: &str = "signing_secret";
/// The secret sent as `Authorization: Bearer <token>`.
pub const BEARER_TOKEN: &str = "bearer_token";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const SECRETS: &[SecretSpec] = &[
    SecretSpec {
        name: SIGNING_SECRET,
        required: true,
        description: "the key that signs every call, `whsec_` and base64 of 24 to 64 random bytes",
    },
    SecretSpec {
        name: BEARER_TOKEN,
        required: false,
        description: "sent as `Authorization: Bearer <token>`",
    },
];

/// Sends notifications to webhooks.
#[derive(Clone)]
pub struct WebhookNotifier {
    client: Client,
}

impl WebhookNotifier {
    pub fn new() -> Result<Self, NotifyError> {
        let client = webhook_client().map_err(NotifyError::Failed)?;
        Ok(Self { client })
    }
}

/// A webhook notifier's settings, checked.
struct Settings {
    url: Url,
    timeout: Duration,
}

impl Settings {
    fn parse(config: &Map<String, Value>) -> Result<Settings, NotifyError> {
        let invalid = |message: String| NotifyError::invalid(NOTIFIER_TYPE, message);
        let text = required_str(NOTIFIER_TYPE, config, "url")?;
        let url = Url::parse(text).map_err(|e| invalid(format!("`url` is not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("`url` must be http:// or https://".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "`url` must not hold a user name or password (it is readable); put a token in the secret `bearer_token`"
                    .into(),
            ));
        }
        if let Some((name, _)) = url.query_pairs().find(|(name, _)| looks_like_credential(name)) {
            return Err(invalid(format!(
                "`url` has a query parameter `{name}` that looks like a credential (the URL is readable); \
                 put it in the secret `bearer_token`"
            )));
        }
        let timeout = timeout_setting(NOTIFIER_TYPE, config, DEFAULT_TIMEOUT)?;
        Ok(Settings { url, timeout })
    }

    /// `scheme://host:port/path`, for messages.
    fn redacted_url(&self) -> String {
        let mut shown = self.url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        shown.to_string()
    }
}

fn signing_key(secrets: &TargetSecrets) -> Result<SigningKey, NotifyError> {
    let secret = secrets
        .get(SIGNING_SECRET)
        .ok_or_else(|| NotifyError::invalid(NOTIFIER_TYPE, format!("secret `{SIGNING_SECRET}` is required")))?;
    // The providers' parser speaks of `hmac_secret`; the rules are the same.
    SigningKey::parse(secret).map_err(|error| {
        let message = match error {
            ProviderError::InvalidConfig { message, .. } => message,
            other => other.to_string(),
        };
        NotifyError::invalid(NOTIFIER_TYPE, message.replace("hmac_secret", SIGNING_SECRET))
    })
}

fn bearer(secret: Option<&SecretValue>) -> Result<Option<HeaderValue>, NotifyError> {
    let Some(secret) = secret else { return Ok(None) };
    let mut value = HeaderValue::from_str(&format!("Bearer {}", secret.expose().trim())).map_err(|_| {
        NotifyError::invalid(
            NOTIFIER_TYPE,
            format!("secret `{BEARER_TOKEN}` holds characters a header cannot carry"),
        )
    })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

impl NotifierType for WebhookNotifier {
    fn notifier_type(&self) -> &'static str {
        NOTIFIER_TYPE
    }

    fn secrets(&self) -> &'static [SecretSpec] {
        SECRETS
    }

    fn settings(&self) -> &'static [&'static str] {
        &["url", "timeout_seconds"]
    }

    fn validate_config(&self, config: &Map<String, Value>, secrets: &TargetSecrets) -> Result<(), NotifyError> {
        Settings::parse(config)?;
        signing_key(secrets)?;
        bearer(secrets.get(BEARER_TOKEN))?;
        Ok(())
    }

    fn send<'a>(
        &'a self,
        notifier: &'a NotifierContext,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        async move {
            let settings = Settings::parse(&notifier.config)?;
            let key = signing_key(&notifier.secrets)?;
            let failed = |message: String| NotifyError::Failed(format!("{message} (POST {})", settings.redacted_url()));
            let body = serde_json::to_vec(notification).map_err(|e| failed(format!("cannot encode: {e}")))?;
            let id = HeaderValue::from_str(&notification.id).map_err(|_| failed("bad notification id".into()))?;
            let timestamp = Utc::now().timestamp();
            let mut request = self
                .client
                .post(settings.url.clone())
                .timeout(settings.timeout)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(ID_HEADER, id)
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, key.sign(&notification.id, timestamp, &body));
            if let Some(authorization) = bearer(notifier.secrets.get(BEARER_TOKEN))? {
                request = request.header(AUTHORIZATION, authorization);
            }
            let response = request
                .body(body)
                .send()
                .await
                .map_err(|e| failed(describe_send_error(&e, settings.timeout)))?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(failed(format!("webhook answered {}", describe_status(status))))
            }
        }
        .boxed()
    }
}
