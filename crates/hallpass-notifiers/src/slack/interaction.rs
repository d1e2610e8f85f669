//! What Slack sends back when someone clicks a button: a form with one
//! field, `payload`, holding the `block_actions` JSON, signed with the
//! app's signing secret. This module checks the signature and reads the
//! payload; the server decides what the click may do.
//!
//! The signature is `X-Slack-Signature: v0=<hex HMAC-SHA256>` keyed with
//! the signing secret over `v0:{X-Slack-Request-Timestamp}:{raw body}`,
//! compared in constant time. A `response_url` is only trusted on
//! `https://hooks.slack.com` or on the notifier's own `api_url` host, so a
//! signed but odd payload cannot make Hallpass call anywhere else.

use aws_lc_rs::hmac;
use hallpass_providers::SecretValue;
use reqwest::Url;
use serde::Deserialize;

use super::message::Decision;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The header that carries the Unix time the signature was made at.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// How far (either way) a signature's time may be from the server's.
pub const SIGNATURE_WINDOW_SECONDS: i64 = 300;
/// The host Slack's `response_url`s are on.
pub const RESPONSE_HOST: &str = "hooks.slack.com";
const VERSION: &str = "v0";

fn signed_text(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(body.len() + timestamp.len() + 4);
    text.extend_from_slice(format!("{VERSION}:{timestamp}:").as_bytes());
    text.extend_from_slice(body);
    text
}

fn key(secret: &SecretValue) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.expose().trim().as_bytes())
}

/// The signature Slack sends for `body` at `timestamp`: `v0=` and hex.
pub fn sign(secret: &SecretValue, timestamp: &str, body: &[u8]) -> String {
    let tag = hmac::sign(&key(secret), &signed_text(timestamp, body));
    format!("{VERSION}={}", hex::encode(tag.as_ref()))
}

/// Whether `signature` is `secret`'s over `timestamp` and `body`, compared
/// in constant time.
pub fn signature_matches(secret: &SecretValue, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(tag) = signature
        .trim()
        .strip_prefix("v0=")
        .and_then(|text| hex::decode(text).ok())
    else {
        return false;
    };
    hmac::verify(&key(secret), &signed_text(timestamp, body), &tag).is_ok()
}

/// `X-Slack-Request-Timestamp` as Unix seconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The part of Slack's interaction payload Hallpass reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Interaction {
    /// `block_actions` for a button.
    #[serde(rename = "type")]
    pub kind: String,
    pub user: SlackUser,
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default)]
    pub response_url: Option<String>,
    #[serde(default)]
    pub message: Option<MessageRef>,
    #[serde(default)]
    pub channel: Option<ChannelRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SlackUser {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub action_id: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MessageRef {
    #[serde(default)]
    pub ts: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChannelRef {
    pub id: String,
}

#[derive(Deserialize)]
struct Form {
    payload: String,
}

impl Interaction {
    /// Reads the form Slack posts (`payload=<JSON>`). The message says what
    /// is wrong, never repeating the body.
    pub fn from_form(body: &[u8]) -> Result<Interaction, String> {
        let form: Form = serde_urlencoded::from_bytes(body)
            .map_err(|_| "the body is not a form with a `payload` field, as Slack sends".to_string())?;
        serde_json::from_str(&form.payload).map_err(|e| format!("`payload` is not Slack's interaction JSON: {e}"))
    }

    /// The decision a Hallpass button asks for, and the request it is for;
    /// `None` for anything else (another app's action, a dialog).
    pub fn decision(&self) -> Option<(Decision, &str)> {
        if self.kind != "block_actions" {
            return None;
        }
        self.actions.iter().find_map(|action| {
            let decision = Decision::of_action(&action.action_id)?;
            let id = action.value.as_deref().map(str::trim).filter(|v| !v.is_empty())?;
            Some((decision, id))
        })
    }

    /// The `response_url` to answer on, if it is one Hallpass may call:
    /// `https://hooks.slack.com/...`, or the scheme, host and port of one of
    /// `api_urls` (the notifiers' `api_url`). `Ok(None)`: none was sent.
    pub fn response_url(&self, api_urls: &[Url]) -> Result<Option<Url>, String> {
        let Some(text) = self.response_url.as_deref() else {
            return Ok(None);
        };
        let url = Url::parse(text).map_err(|_| "`response_url` is not a URL".to_string())?;
        let slack = url.scheme() == "https" && url.host_str() == Some(RESPONSE_HOST) && url.port().is_none();
        let same_api = api_urls.iter().any(|api| {
            api.scheme() == url.scheme()
                && api.host_str() == url.host_str()
                && api.port_or_known_default() == url.port_or_known_default()
        });
        if (slack || same_api) && url.username().is_empty() && url.password().is_none() {
            Ok(Some(url))
        } else {
            Err(format!(
                "`response_url` is not on https://{RESPONSE_HOST} nor on a slack notifier's `api_url` host"
            ))
        }
    }
}
