//! Calls to AWS's query APIs (STS and IAM): a form-encoded POST signed with
//! SigV4 by the `aws-sigv4` crate, whose XML answer or error is read with
//! `roxmltree`. Errors carry AWS's code and message with the admin's keys
//! scrubbed out, and never a response body that could hold a session's keys.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Client, redirect};

use super::config::{AwsSecrets, Endpoint};
use crate::ProviderError;

/// Longest time spent establishing a connection, whatever the call timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read; STS and IAM answers are a few kilobytes.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// Longest AWS error message repeated (they can quote the request).
const MAX_MESSAGE_CHARS: usize = 400;
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// RFC 3986 unreserved characters stay; everything else is escaped.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// An AWS query API and its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Sts,
    Iam,
}

impl Service {
    /// The SigV4 signing name.
    fn signing_name(self) -> &'static str {
        match self {
            Self::Sts => "sts",
            Self::Iam => "iam",
        }
    }

    fn version(self) -> &'static str {
        match self {
            Self::Sts => "2011-06-15",
            Self::Iam => "2010-05-08",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Sts => "STS",
            Self::Iam => "IAM",
        }
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// AWS answered with an error.
    Api { status: u16, code: String, message: String },
    /// No answer, or one that could not be read.
    Transport(String),
}

impl CallError {
    /// AWS's error code, if AWS answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            Self::Transport(_) => None,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Api { status, code, message } if message.is_empty() => write!(f, "{code} (HTTP {status})"),
            Self::Api { status, code, message } => write!(f, "{code}: {message} (HTTP {status})"),
            Self::Transport(message) => f.write_str(message),
        }
    }
}

/// One call: service, action and parameters.
pub struct Call<'a> {
    pub service: Service,
    pub action: &'static str,
    pub params: Vec<(&'static str, &'a str)>,
}

impl Call<'_> {
    /// `Action=...&Version=...&Name=value...`, form-encoded.
    fn body(&self) -> String {
        let pairs = [("Action", self.action), ("Version", self.service.version())];
        pairs
            .iter()
            .chain(self.params.iter())
            .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY_VALUE)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// The HTTP client for STS and IAM.
#[derive(Clone)]
pub struct QueryClient {
    client: Client,
}

impl fmt::Debug for QueryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryClient").finish_non_exhaustive()
    }
}

impl QueryClient {
    /// rustls on aws-lc-rs, no redirects (a redirect could carry signed
    /// calls elsewhere), a connect timeout.
    pub fn new() -> Result<Self, ProviderError> {
        crate::webhook::install_tls_crypto_provider();
        let client = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(redirect::Policy::none())
            .user_agent(concat!("hallpass/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Credential(format!("cannot build the AWS HTTP client: {e}")))?;
        Ok(Self { client })
    }

    /// Sends `call` to `endpoint` signed with `keys`; the answer's XML.
    pub async fn call(
        &self,
        keys: &AwsSecrets,
        endpoint: &Endpoint,
        timeout: Duration,
        call: &Call<'_>,
    ) -> Result<String, CallError> {
        let body = call.body();
        let headers = signed_headers(keys, endpoint, call.service, &body)?;
        let mut request = self
            .client
            .post(endpoint.url.clone())
            .timeout(timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static(FORM));
        for (name, mut value) in headers {
            value.set_sensitive(true);
            request = request.header(name, value);
        }
        let where_ = format!("{} at {}", call.service.label(), endpoint.url);
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| CallError::Transport(describe_send_error(&e, &where_, timeout)))?;
        let status = response.status();
        let answer = response
            .bytes()
            .await
            .map_err(|e| CallError::Transport(describe_send_error(&e, &where_, timeout)))?;
        if answer.len() > MAX_ANSWER_BYTES {
            return Err(CallError::Transport(format!("{where_} answered with over 1 MiB")));
        }
        let text = String::from_utf8_lossy(&answer).into_owned();
        if status.is_success() {
            Ok(text)
        } else {
            Err(api_error(status.as_u16(), &text, keys))
        }
    }
}

/// The SigV4 headers (`authorization`, `x-amz-date`) for a POST of `body`.
fn signed_headers(
    keys: &AwsSecrets,
    endpoint: &Endpoint,
    service: Service,
    body: &str,
) -> Result<Vec<(&'static str, HeaderValue)>, CallError> {
    let unsigned =
        |e: &dyn fmt::Display| CallError::Transport(format!("cannot sign the {} call: {e}", service.label()));
    let identity = Credentials::new(
        keys.access_key_id.expose(),
        keys.secret_access_key.expose(),
        None,
        None,
        "hallpass-target-secrets",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&endpoint.signing_region)
        .name(service.signing_name())
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| unsigned(&e))?
        .into();
    let request = SignableRequest::new(
        "POST",
        endpoint.url.as_str(),
        [("content-type", FORM)].into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| unsigned(&e))?;
    let (instructions, _signature) = sign(request, &params).map_err(|e| unsigned(&e))?.into_parts();
    let (headers, _params) = instructions.into_parts();
    headers
        .iter()
        .map(|header| {
            HeaderValue::from_str(header.value())
                .map(|value| (header.name(), value))
                .map_err(|e| unsigned(&e))
        })
        .collect()
}

/// AWS's `<Error><Code>...</Code><Message>...</Message></Error>`, keys
/// scrubbed, the message cut short.
pub(super) fn api_error(status: u16, text: &str, keys: &AwsSecrets) -> CallError {
    let parsed = roxmltree::Document::parse(text).ok();
    let field = |name: &str| parsed.as_ref().and_then(|doc| xml_text(doc, name)).unwrap_or_default();
    let code = match field("Code") {
        code if code.is_empty() => format!("HTTP{status}"),
        code => code,
    };
    let mut message: String = keys.scrub(&field("Message")).chars().take(MAX_MESSAGE_CHARS).collect();
    if message.is_empty() && parsed.is_none() {
        message = "the answer was not AWS's XML: is the endpoint an AWS API?".into();
    }
    CallError::Api {
        status,
        code: keys.scrub(&code),
        message,
    }
}

/// The text of the first element called `name`, anywhere in `doc`.
pub fn xml_text(doc: &roxmltree::Document<'_>, name: &str) -> Option<String> {
    doc.descendants()
        .find(|node| node.is_element() && node.tag_name().name() == name)
        .map(|node| node.text().unwrap_or_default().trim().to_string())
}

/// Parses an answer; `what` names it in the error.
pub fn parse_answer<'a>(text: &'a str, what: &str) -> Result<roxmltree::Document<'a>, CallError> {
    roxmltree::Document::parse(text).map_err(|e| CallError::Transport(format!("{what}: the answer is not XML: {e}")))
}

/// Why a request got no answer: the endpoint (which holds no credential)
/// and the innermost cause.
fn describe_send_error(error: &reqwest::Error, where_: &str, timeout: Duration) -> String {
    if error.is_timeout() {
        let limit = if error.is_connect() {
            CONNECT_TIMEOUT.min(timeout)
        } else {
            timeout
        };
        return format!("{where_} did not answer within {}s", limit.as_secs());
    }
    let root = std::iter::successors(std::error::Error::source(error), |inner| inner.source()).last();
    let cause = root.map_or_else(|| error.to_string(), ToString::to_string);
    if error.is_connect() {
        format!("{where_} is unreachable: {cause}")
    } else {
        format!("call to {where_} failed: {cause}")
    }
}
