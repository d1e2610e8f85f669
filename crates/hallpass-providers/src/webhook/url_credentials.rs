//! Credentials inside a webhook URL (`user:password@`, `?token=...`): finding
//! them, so such a `url` is refused, and moving them into secrets, so targets
//! stored by earlier releases keep working without them in `config`.

use reqwest::Url;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::signing::SigningKey;
use super::{BASIC_AUTH, BEARER_TOKEN, HMAC_SECRET, URL_QUERY};
use crate::{LegacyUpgrade, SecretValue, TargetSecrets};

/// Query parameter names that are credentials whatever surrounds them.
const CREDENTIAL_NAMES: &[&str] = &[
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "access_key",
    "private_key",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "auth",
    "authorization",
    "sig",
    "signature",
    "session",
    "session_id",
    "sessionid",
    "jwt",
    "bearer",
    "credential",
    "credentials",
];

/// Parts that make any parameter name a credential (`x_api_key`, `oauth_token`).
const CREDENTIAL_FRAGMENTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "api_key",
    "signature",
    "credential",
];

/// Whether a query parameter called `name` (already percent-decoded) looks
/// like it carries a credential. Case and `-`/`_` do not matter.
pub fn looks_like_credential(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase().replace('-', "_");
    CREDENTIAL_NAMES.contains(&name.as_str()) || CREDENTIAL_FRAGMENTS.iter().any(|part| name.contains(part))
}

/// The credentials found in one URL, by where they are, without their values.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct UrlCredentials {
    pub user_info: bool,
    /// Names of credential-looking query parameters, in order, each once.
    pub query_names: Vec<String>,
    /// Credential-looking parameters without `=`: their "name" may be the
    /// credential itself, so it is never repeated.
    pub valueless: bool,
}

impl UrlCredentials {
    pub fn find(url: &Url) -> Self {
        let mut found = Self {
            user_info: !url.username().is_empty() || url.password().is_some(),
            ..Self::default()
        };
        for pair in url.query().unwrap_or_default().split('&') {
            let (raw_name, has_value) = match pair.split_once('=') {
                Some((name, _)) => (name, true),
                None => (pair, false),
            };
            let name = percent_decode(&raw_name.replace('+', " "))
                .map_or_else(|| raw_name.to_string(), |name| name.to_string());
            if !looks_like_credential(&name) {
                continue;
            }
            if !has_value {
                found.valueless = true;
            } else if !found.query_names.contains(&name) {
                found.query_names.push(name);
            }
        }
        found
    }

    pub fn is_clean(&self) -> bool {
        !self.user_info && self.query_names.is_empty() && !self.valueless
    }

    fn has_query(&self) -> bool {
        !self.query_names.is_empty() || self.valueless
    }

    /// "parameters `token`, `sig`" (names only).
    fn describe_query(&self) -> String {
        let mut names: Vec<String> = self.query_names.iter().map(|name| format!("`{name}`")).collect();
        if self.valueless {
            names.push("one without a value".into());
        }
        let noun = if names.len() == 1 { "parameter" } else { "parameters" };
        format!("query {noun} {}", names.join(", "))
    }

    /// Why a `url` holding these is refused and where each part goes
    /// instead; `None` when there is nothing to refuse.
    pub fn refusal(&self) -> Option<String> {
        let mut found = Vec::new();
        let mut moves = Vec::new();
        if self.user_info {
            found.push("its user-info (`user:password@`)".to_string());
            moves.push(format!("the user-info as `{BASIC_AUTH}` (\"user:password\")"));
        }
        if self.has_query() {
            found.push(format!("its {}", self.describe_query()));
            moves.push(format!(
                "the query string as `{URL_QUERY}` (\"name=value&...\"), or the token as `{BEARER_TOKEN}` if your \
                 endpoint accepts `Authorization: Bearer`"
            ));
        }
        if found.is_empty() {
            return None;
        }
        let (example, variable) = if self.user_info {
            (BASIC_AUTH, "PANEL_BASIC_AUTH")
        } else {
            (URL_QUERY, "PANEL_URL_QUERY")
        };
        Some(format!(
            "`url` carries credentials, which anyone who can read targets would see: {}. Move them into the \
             target's `secrets`, which are sealed and never shown: {}; e.g. \
             secrets = {{ {HMAC_SECRET} = env(\"PANEL_HMAC_SECRET\"), {example} = env(\"{variable}\") }}",
            found.join(" and "),
            moves.join("; "),
        ))
    }
}

/// For a target stored by an earlier release: the `config` with the
/// credentials taken out of `url`, those credentials as the secrets
/// `basic_auth` and `url_query` (sent exactly as before), and a new
/// `hmac_secret`. `None` when `url` holds no credentials (or is not a URL,
/// which validation reports on its own).
pub(super) fn upgrade(config: &Map<String, Value>) -> Option<LegacyUpgrade> {
    let Some(Value::String(text)) = config.get("url") else {
        return None;
    };
    let mut url = Url::parse(text.trim()).ok()?;
    let found = UrlCredentials::find(&url);
    if found.is_clean() {
        return None;
    }
    let mut secrets = TargetSecrets::new();
    let mut moved = Vec::new();
    if found.user_info {
        // Decoded as the previous release's HTTP client did before sending
        // them as basic auth; if that failed it sent none, and so will we.
        match basic_auth_of(&url) {
            Some(basic) => {
                secrets.insert(BASIC_AUTH, basic);
                moved.push(format!("the user-info of `url` moved into the secret `{BASIC_AUTH}`"));
            }
            None => moved.push("the user-info of `url` removed (it was not UTF-8, so it was never sent)".into()),
        }
        // Cannot fail: a URL with user-info has a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    if found.has_query() {
        // The whole query moves, untouched, so the endpoint receives the
        // same request line as before.
        secrets.insert(URL_QUERY, SecretValue::new(url.query().unwrap_or_default()));
        url.set_query(None);
        moved.push(format!(
            "the query of `url` (with {}) moved into the secret `{URL_QUERY}`",
            found.describe_query()
        ));
    }
    match SigningKey::generate() {
        Ok(key) => {
            secrets.insert(HMAC_SECRET, key);
            moved.push(format!(
                "a new random `{HMAC_SECRET}` now signs every call; secrets cannot be read back, so to verify \
                 signatures set one of your own"
            ));
        }
        Err(_) => moved.push(format!(
            "no `{HMAC_SECRET}` could be generated: set one, or calls will fail"
        )),
    }
    let mut config = config.clone();
    config.insert("url".into(), Value::String(url.into()));
    Some(LegacyUpgrade { config, secrets, moved })
}

fn basic_auth_of(url: &Url) -> Option<SecretValue> {
    let user = percent_decode(url.username())?;
    let password = match url.password() {
        Some(password) => percent_decode(password)?,
        None => Zeroizing::default(),
    };
    Some(SecretValue::new(format!("{}:{}", *user, *password)))
}

/// `%XX` decoding; `None` when the result is not UTF-8. A `%` without two
/// hex digits stays as it is.
fn percent_decode(text: &str) -> Option<Zeroizing<String>> {
    let mut decoded = Zeroizing::new(Vec::with_capacity(text.len()));
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        let escaped = match tail {
            [high, low, after @ ..] if first == b'%' => hex_digit(*high).zip(hex_digit(*low)).map(|pair| (pair, after)),
            _ => None,
        };
        match escaped {
            Some(((high, low), after)) => {
                decoded.push(high << 4 | low);
                rest = after;
            }
            None => {
                decoded.push(first);
                rest = tail;
            }
        }
    }
    std::str::from_utf8(&decoded)
        .ok()
        .map(|text| Zeroizing::new(text.to_owned()))
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|digit| u8::try_from(digit).ok())
}
