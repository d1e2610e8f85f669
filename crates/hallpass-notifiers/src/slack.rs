//! The `slack` notifier: posts each notification to a Slack channel as a
//! Block Kit message, with Approve / Deny buttons on requests waiting for a
//! decision.
//!
//! ```hcl
//! notifier "slack-ops" {
//!   type    = "slack"
//!   config  = { channel = "C0123456789", recipients = { "group:sre" = "S0123456789" } }
//!   secrets = { bot_token = env("SLACK_BOT_TOKEN"), signing_secret = env("SLACK_SIGNING_SECRET") }
//! }
//! ```
//!
//! Two ways to post, exactly one of them configured: a bot token (secret
//! `bot_token`, `xoxb-...`) with `config.channel`, sent to
//! `{api_url}/chat.postMessage` (Slack answers HTTP 200 with
//! `{"ok": false, "error": "..."}` when it refuses: that is a failure, with
//! Slack's error code in the message), or an incoming webhook (secret
//! `webhook_url`: the URL is itself a credential). `config.api_url`
//! defaults to `https://slack.com/api`. Buttons are shown only when the
//! secret `signing_secret` is set: without it Hallpass could not check the
//! clicks Slack sends back ([`interaction`]). The message itself is built in
//! [`message`].

pub mod interaction;
pub mod message;

use std::net::IpAddr;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use hallpass_api::Notification;
use hallpass_providers::webhook::{describe_send_error, describe_status, webhook_client};
use hallpass_providers::{SecretSpec, SecretValue, TargetSecrets};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, Url};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{NotifierContext, NotifierType, NotifyError, Routing, optional_str, timeout_setting};

pub const NOTIFIER_TYPE: &str = "slack";
/// A bot token (`xoxb-...`), sent as `Authorization: Bearer`.
pub const BOT_TOKEN: &str = "bot_token";
/// An incoming webhook's URL (`https://hooks.slack.com/services/...`).
pub const WEBHOOK_URL: &str = "webhook_url";
/// The Slack app's signing secret, which signs the clicks on buttons.
pub const SIGNING_SECRET: &str = "signing_secret";
pub const DEFAULT_API_URL: &str = "https://slack.com/api";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// What a bot token starts with.
const BOT_TOKEN_PREFIX: &str = "xoxb-";
/// The fewest characters a signing secret may have (Slack's have 32).
const MIN_SIGNING_SECRET_CHARS: usize = 16;
const MAX_CHANNEL_CHARS: usize = 80;

const SECRETS: &[SecretSpec] = &[
    SecretSpec {
        name: BOT_TOKEN,
        required: false,
        description: "a bot token `xoxb-...` with the chat:write scope; needs `channel`",
    },
    SecretSpec {
        name: WEBHOOK_URL,
        required: false,
        description: "an incoming webhook URL, instead of a bot token",
    },
    SecretSpec {
        name: SIGNING_SECRET,
        required: false,
        description: "the Slack app's signing secret; without it no Approve / Deny buttons are shown",
    },
];

/// Sends notifications to Slack.
#[derive(Clone)]
pub struct SlackNotifier {
    client: Client,
}

impl SlackNotifier {
    pub fn new() -> Result<Self, NotifyError> {
        let client = webhook_client().map_err(NotifyError::Failed)?;
        Ok(Self { client })
    }
}

fn invalid(message: impl Into<String>) -> NotifyError {
    NotifyError::invalid(NOTIFIER_TYPE, message)
}

/// A slack notifier's readable settings, checked.
pub struct Settings {
    /// Where Slack's Web API is; also a host `response_url`s may name.
    pub api_url: Url,
    pub channel: Option<String>,
    pub timeout: Duration,
}

/// Whether `url` may carry a credential: https, or http to this machine
/// (a local test server, a tunnel).
fn check_transport(url: &Url, what: &str) -> Result<(), NotifyError> {
    let loopback = url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid(format!(
            "{what} must be https:// (http:// only to this machine), so the token is never sent in clear"
        ))),
    }
}

impl Settings {
    pub fn parse(config: &Map<String, Value>) -> Result<Settings, NotifyError> {
        let text = optional_str(NOTIFIER_TYPE, config, "api_url")?.unwrap_or(DEFAULT_API_URL);
        let api_url = Url::parse(text).map_err(|e| invalid(format!("`api_url` is not a valid URL: {e}")))?;
        check_transport(&api_url, "`api_url`")?;
        if !api_url.username().is_empty() || api_url.password().is_some() || api_url.query().is_some() {
            return Err(invalid(
                "`api_url` must hold no user name, password or query; the bot token goes in the secret `bot_token`",
            ));
        }
        let channel = optional_str(NOTIFIER_TYPE, config, "channel")?.map(str::trim);
        if let Some(channel) = channel
            && (channel.chars().count() > MAX_CHANNEL_CHARS
                || channel.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(invalid(format!(
                "`channel` must be a channel id such as \"C0123456789\" (or a name such as \"#ops\"), \
                 without spaces, at most {MAX_CHANNEL_CHARS} characters"
            )));
        }
        let timeout = timeout_setting(NOTIFIER_TYPE, config, DEFAULT_TIMEOUT)?;
        Ok(Settings {
            api_url,
            channel: channel.map(str::to_string),
            timeout,
        })
    }

    /// `{api_url}/{method}`.
    fn method_url(&self, method: &str) -> Result<Url, NotifyError> {
        let base = self.api_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{method}")).map_err(|e| invalid(format!("`api_url`: {e}")))
    }
}

/// Where a notifier posts.
enum Destination {
    /// `chat.postMessage` with a bot token, to `channel`.
    Bot {
        authorization: HeaderValue,
        channel: String,
    },
    /// An incoming webhook (its channel is part of it).
    Webhook { url: Url },
}

fn bot_authorization(token: &SecretValue) -> Result<HeaderValue, NotifyError> {
    let token = token.expose().trim();
    if !token.starts_with(BOT_TOKEN_PREFIX) {
        return Err(invalid(format!(
            "secret `{BOT_TOKEN}` must be a bot token, starting with `{BOT_TOKEN_PREFIX}` \
             (the app's \"Bot User OAuth Token\")"
        )));
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| invalid(format!("secret `{BOT_TOKEN}` holds characters a header cannot carry")))?;
    value.set_sensitive(true);
    Ok(value)
}

fn webhook_url(secret: &SecretValue) -> Result<Url, NotifyError> {
    // Url's messages never repeat the input, so the secret stays out of them.
    let url = Url::parse(secret.expose().trim())
        .map_err(|e| invalid(format!("secret `{WEBHOOK_URL}` is not a valid URL: {e}")))?;
    check_transport(&url, &format!("secret `{WEBHOOK_URL}`"))?;
    Ok(url)
}

fn destination(settings: &Settings, secrets: &TargetSecrets) -> Result<Destination, NotifyError> {
    match (secrets.get(BOT_TOKEN), secrets.get(WEBHOOK_URL)) {
        (Some(_), Some(_)) => Err(invalid(format!(
            "set either the secret `{BOT_TOKEN}` (with `channel`) or the secret `{WEBHOOK_URL}`, not both"
        ))),
        (None, None) => Err(invalid(format!(
            "set the secret `{BOT_TOKEN}` (a bot token `xoxb-...`, with `channel`) or the secret `{WEBHOOK_URL}` \
             (an incoming webhook)"
        ))),
        (Some(token), None) => {
            let authorization = bot_authorization(token)?;
            let channel = settings.channel.clone().ok_or_else(|| {
                invalid("`channel` is required with a bot token: the channel's id, e.g. \"C0123456789\"")
            })?;
            Ok(Destination::Bot { authorization, channel })
        }
        (None, Some(url)) => {
            if settings.channel.is_some() {
                return Err(invalid(format!(
                    "an incoming webhook posts to the channel it was made for; remove `channel`, \
                     or use the secret `{BOT_TOKEN}` instead of `{WEBHOOK_URL}`"
                )));
            }
            Ok(Destination::Webhook { url: webhook_url(url)? })
        }
    }
}

fn check_signing_secret(secrets: &TargetSecrets) -> Result<(), NotifyError> {
    let Some(secret) = secrets.get(SIGNING_SECRET) else {
        return Ok(());
    };
    let text = secret.expose().trim();
    if text.chars().count() < MIN_SIGNING_SECRET_CHARS || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!(
            "secret `{SIGNING_SECRET}` must be the app's Signing Secret (Basic Information → App Credentials): \
             at least {MIN_SIGNING_SECRET_CHARS} characters, no spaces"
        )));
    }
    Ok(())
}

/// Every user `recipients` names must be a Slack user id (`U...`/`W...`)
/// and every group a user group id (`S...`): they become mentions, and a
/// click is mapped back through them.
fn check_recipients(routing: &Routing) -> Result<(), NotifyError> {
    for (subject, address) in &routing.recipients {
        let user = subject.starts_with("user:");
        let fits = message::is_slack_id(address)
            && if user {
                address.starts_with(['U', 'W'])
            } else {
                address.starts_with('S')
            };
        if !fits {
            let want = if user {
                "a Slack user id such as \"U0123456789\" (profile → ⋮ → Copy member ID)"
            } else {
                "a Slack user group id such as \"S0123456789\""
            };
            return Err(invalid(format!("`recipients` entry {subject:?} must be {want}")));
        }
    }
    Ok(())
}

/// The `signing_secret` of a notifier, when it has one.
pub fn signing_secret(secrets: &TargetSecrets) -> Option<&SecretValue> {
    secrets.get(SIGNING_SECRET)
}

/// What Slack's Web API answers.
#[derive(Deserialize)]
struct ApiAnswer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

/// Slack's error codes are `snake_case` words; anything else is not shown.
fn error_code(text: &str) -> String {
    let code: String = text
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if code.is_empty() { "no error code".into() } else { code }
}

impl SlackNotifier {
    async fn post_message(
        &self,
        settings: &Settings,
        authorization: HeaderValue,
        channel: &str,
        mut body: Value,
    ) -> Result<(), NotifyError> {
        let url = settings.method_url("chat.postMessage")?;
        let failed = |message: String| NotifyError::Failed(format!("{message} (POST {url})"));
        if let Some(object) = body.as_object_mut() {
            object.insert("channel".into(), Value::String(channel.to_string()));
        }
        let response = self
            .client
            .post(url.clone())
            .timeout(settings.timeout)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )
            .header(AUTHORIZATION, authorization)
            .json(&body)
            .send()
            .await
            .map_err(|e| failed(describe_send_error(&e, settings.timeout).replace("webhook", "Slack")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!("Slack answered {}", describe_status(status))));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| failed(describe_send_error(&e, settings.timeout).replace("webhook", "Slack")))?;
        match serde_json::from_slice::<ApiAnswer>(&bytes) {
            Ok(answer) if answer.ok => Ok(()),
            Ok(answer) => Err(failed(format!(
                "Slack refused the message: {}",
                error_code(answer.error.as_deref().unwrap_or_default())
            ))),
            Err(_) => Err(failed("Slack's answer is not the Web API's JSON".into())),
        }
    }

    async fn post_webhook(&self, settings: &Settings, url: Url, body: &Value) -> Result<(), NotifyError> {
        // The URL is the credential: messages name its host only.
        let shown = format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or("?"));
        let failed = |message: String| NotifyError::Failed(format!("{message} (POST {shown})"));
        let response = self
            .client
            .post(url)
            .timeout(settings.timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| failed(describe_send_error(&e, settings.timeout)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(failed(format!(
            "Slack's webhook answered {}: {}",
            describe_status(status),
            error_code(&text)
        )))
    }

    /// Posts `body` to an interaction's `response_url` (checked by the
    /// caller: see [`interaction::Interaction::response_url`]).
    pub async fn respond(&self, url: Url, body: &Value) -> Result<(), NotifyError> {
        let shown = format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or("?"));
        let response = self
            .client
            .post(url)
            .timeout(DEFAULT_TIMEOUT)
            .json(body)
            .send()
            .await
            .map_err(|e| NotifyError::Failed(format!("{} (POST {shown})", describe_send_error(&e, DEFAULT_TIMEOUT))))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(NotifyError::Failed(format!(
                "Slack's response_url answered {} (POST {shown})",
                describe_status(status)
            )))
        }
    }
}

impl NotifierType for SlackNotifier {
    fn notifier_type(&self) -> &'static str {
        NOTIFIER_TYPE
    }

    fn secrets(&self) -> &'static [SecretSpec] {
        SECRETS
    }

    fn settings(&self) -> &'static [&'static str] {
        &["channel", "api_url", "timeout_seconds"]
    }

    fn validate_config(&self, config: &Map<String, Value>, secrets: &TargetSecrets) -> Result<(), NotifyError> {
        let settings = Settings::parse(config)?;
        destination(&settings, secrets)?;
        check_signing_secret(secrets)?;
        check_recipients(&Routing::parse(NOTIFIER_TYPE, config)?)
    }

    fn send<'a>(
        &'a self,
        notifier: &'a NotifierContext,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        async move {
            let settings = Settings::parse(&notifier.config)?;
            let destination = destination(&settings, &notifier.secrets)?;
            let buttons = signing_secret(&notifier.secrets).is_some();
            let body = message::notification_message(notification, &notifier.routing, buttons);
            match destination {
                Destination::Bot { authorization, channel } => {
                    self.post_message(&settings, authorization, &channel, body).await
                }
                Destination::Webhook { url } => self.post_webhook(&settings, url, &body).await,
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
