//! The provider's HTTP client for the Hallpass server.
//!
//! A thin client of its own rather than `hallpass-client`, for one reason:
//! the provider's `ca_file` must be able to name the CA to trust, and
//! `hallpass-client` builds its `reqwest` client with the public web roots
//! only, with no way to pass another. The wire types are `hallpass-api`'s
//! and the error body is read the same way, so moving to `hallpass-client`
//! once it takes a CA is a change inside this file.

use std::sync::Arc;
use std::time::Duration;

use hallpass_api::{
    AccessRequest, AuditPublicKey, CreateRequest, CreateRequestResponse, CreateToken, CreatedToken, Credential,
    ErrorBody, ErrorCode, ExtendBody, Role, RoleSpec, TokenInfo,
};
use reqwest::{Method, StatusCode, Url};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::de::DeserializeOwned;

/// Time allowed for one call, from connecting to the end of the body.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed to open the TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong talking to Hallpass.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "{0:?} is not a Hallpass address: {1}; use something like https://hallpass.example.com or http://127.0.0.1:7070"
    )]
    InvalidAddress(String, String),
    #[error("{0}")]
    CaFile(String),
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("cannot reach Hallpass at {addr}: {cause}")]
    Transport { addr: String, cause: String },
    /// The server answered with an error status; `message` is its own.
    #[error("{message}")]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    #[error("unexpected answer from Hallpass for {what}: {cause}")]
    Decode { what: String, cause: String },
}

/// Parses a server address: a URL with `http` or `https`, or a bare
/// `host:port`, which means `http://host:port`.
pub fn parse_address(addr: &str) -> Result<Url, ApiError> {
    let invalid = |why: &str| ApiError::InvalidAddress(addr.to_string(), why.to_string());
    let trimmed = addr.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it names no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it may not have a query or fragment"));
    }
    Ok(url)
}

/// The certificates of a PEM file's text; an error when there are none.
pub fn parse_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ApiError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::CaFile(format!("it is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ApiError::CaFile("it holds no PEM CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// A handle on one Hallpass server with a bearer token.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: String,
}

impl Api {
    /// `ca` replaces the public web roots as the only CAs trusted for an
    /// `https` address.
    pub fn new(address: &str, token: String, ca: Option<Vec<CertificateDer<'static>>>) -> Result<Self, ApiError> {
        let base = parse_address(address)?;
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(certs) => {
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| ApiError::CaFile(format!("a certificate in it is unusable: {e}")))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        // The provider names aws-lc-rs itself rather than relying on a
        // process-wide default: the project's one crypto backend.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ApiError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TIMEOUT)
            .user_agent(concat!("terraform-provider-hallpass/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Setup(root_cause(&e)))?;
        Ok(Self { http, base, token })
    }

    /// The key that signs the server's audit checkpoints (needs no token).
    pub async fn audit_public_key(&self) -> Result<AuditPublicKey, ApiError> {
        self.get(&["v1", "audit", "public-key"]).await
    }

    /// A role, or `None` when the server has none of that name.
    pub async fn get_role(&self, name: &str) -> Result<Option<Role>, ApiError> {
        self.get_named("roles", name).await
    }

    /// Creates or replaces a role; the server answers with it normalised.
    pub async fn put_role(&self, spec: &RoleSpec) -> Result<Role, ApiError> {
        self.put_named("roles", &spec.name, spec).await
    }

    /// Deletes a role; one already gone counts as deleted.
    pub async fn delete_role(&self, name: &str) -> Result<(), ApiError> {
        self.delete_named("roles", name).await
    }

    /// `GET /v1/{collection}/{name}`, or `None` on 404 (`collection` is
    /// e.g. `approval-flows`).
    pub async fn get_named<T: DeserializeOwned>(&self, collection: &str, name: &str) -> Result<Option<T>, ApiError> {
        match self.get(&["v1", collection, name]).await {
            Ok(found) => Ok(Some(found)),
            Err(ApiError::Api { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `PUT /v1/{collection}/{name}`: creates or replaces; the server
    /// answers with what it stored.
    pub async fn put_named<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        collection: &str,
        name: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let answer = self.call(Method::PUT, &["v1", collection, name], Some(body)).await?;
        self.decode(&format!("PUT /v1/{collection}"), &answer)
    }

    /// `DELETE /v1/{collection}/{name}`; one already gone counts as deleted.
    pub async fn delete_named(&self, collection: &str, name: &str) -> Result<(), ApiError> {
        match self.call::<()>(Method::DELETE, &["v1", collection, name], None).await {
            Ok(_) | Err(ApiError::Api { status: 404, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Creates a token (`POST /v1/tokens`): the only answer with its secret.
    pub async fn create_token(&self, request: &CreateToken) -> Result<CreatedToken, ApiError> {
        let answer = self.call(Method::POST, &["v1", "tokens"], Some(request)).await?;
        self.decode("POST /v1/tokens", &answer)
    }

    /// Every token the server knows, revoked ones included.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ApiError> {
        self.get(&["v1", "tokens"]).await
    }

    /// Asks for a role (`POST /v1/requests`): a new request, or the
    /// caller's open request or grant for the role (`outcome` says which).
    pub async fn create_request(&self, body: &CreateRequest) -> Result<CreateRequestResponse, ApiError> {
        let answer = self.call(Method::POST, &["v1", "requests"], Some(body)).await?;
        self.decode("POST /v1/requests", &answer)
    }

    /// A request as it is now.
    pub async fn get_request(&self, id: &str) -> Result<AccessRequest, ApiError> {
        self.get(&["v1", "requests", id]).await
    }

    /// Long-polls a request: answers once its `version` passes
    /// `after_version`, or after `seconds` (at most 25) with it unchanged.
    pub async fn wait_request(&self, id: &str, after_version: u64, seconds: u64) -> Result<AccessRequest, ApiError> {
        let mut url = self.url(&["v1", "requests", id])?;
        url.query_pairs_mut()
            .append_pair("wait_version", &after_version.to_string())
            .append_pair("timeout", &seconds.min(25).to_string());
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport(&e))?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        self.decode("GET /v1/requests/{id}", &body)
    }

    /// The secret credential of an active grant (the requester's only).
    pub async fn credentials(&self, id: &str) -> Result<Credential, ApiError> {
        self.get(&["v1", "requests", id, "credentials"]).await
    }

    /// Gives an active grant back before it expires.
    pub async fn release(&self, id: &str) -> Result<AccessRequest, ApiError> {
        let answer = self
            .call(
                Method::POST,
                &["v1", "grants", id, "release"],
                Some(&serde_json::json!({})),
            )
            .await?;
        self.decode("POST /v1/grants/release", &answer)
    }

    /// Asks for more time on an active grant (`POST /v1/requests/{id}/extend`):
    /// the grant with the extension last in `extensions`, extended at once,
    /// awaiting approval or denied by policy.
    pub async fn extend(&self, id: &str, body: &ExtendBody) -> Result<AccessRequest, ApiError> {
        let answer = self
            .call(Method::POST, &["v1", "requests", id, "extend"], Some(body))
            .await?;
        self.decode("POST /v1/requests/extend", &answer)
    }

    /// Withdraws a request still waiting for approval.
    pub async fn cancel(&self, id: &str) -> Result<AccessRequest, ApiError> {
        let answer = self
            .call(
                Method::POST,
                &["v1", "requests", id, "cancel"],
                Some(&serde_json::json!({})),
            )
            .await?;
        self.decode("POST /v1/requests/cancel", &answer)
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, ApiError> {
        let body = self.call::<()>(Method::GET, segments, None).await?;
        self.decode(&segments.join("/"), &body)
    }

    fn decode<T: DeserializeOwned>(&self, what: &str, body: &[u8]) -> Result<T, ApiError> {
        serde_json::from_slice(body).map_err(|e| ApiError::Decode {
            what: what.to_string(),
            cause: e.to_string(),
        })
    }

    /// One call; the body of a 2xx answer, else the server's error.
    async fn call<B: serde::Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<Vec<u8>, ApiError> {
        let url = self.url(segments)?;
        let mut request = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport(&e))?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        Ok(body.to_vec())
    }

    /// The server's base address with `segments` appended, each escaped.
    fn url(&self, segments: &[&str]) -> Result<Url, ApiError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ApiError::InvalidAddress(self.base.to_string(), "it cannot carry a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn transport(&self, error: &reqwest::Error) -> ApiError {
        ApiError::Transport {
            addr: self.base.as_str().trim_end_matches('/').to_string(),
            cause: root_cause(error),
        }
    }
}

/// The error of a non-2xx answer: the server's `{"error": {...}}` body
/// when it has one, else the status and the start of the text.
fn api_error(status: StatusCode, body: &[u8]) -> ApiError {
    if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
        return ApiError::Api {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
        };
    }
    let text: String = String::from_utf8_lossy(body).trim().chars().take(300).collect();
    ApiError::Api {
        status: status.as_u16(),
        code: ErrorCode::Other(format!("http_{}", status.as_u16())),
        message: format!("Hallpass answered {status}: {text}"),
    }
}

/// The innermost cause: reqwest's outer messages ("error sending request")
/// say less than the I/O or TLS error underneath.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("127.0.0.1:7070").unwrap().as_str(),
            "http://127.0.0.1:7070/"
        );
        assert_eq!(
            parse_address(" https://hallpass.example.com/base/ ").unwrap().as_str(),
            "https://hallpass.example.com/base/"
        );
        for bad in ["", "ftp://h", "http://h/?q=1", "http://"] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ca_files_must_hold_certificates() {
        assert!(parse_ca_pem(b"nothing here").is_err());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(parse_ca_pem(cert.pem().as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn error_bodies_are_read() {
        let body = br#"{"error":{"code":"not_found","message":"no role \"x\""}}"#;
        let error = api_error(StatusCode::NOT_FOUND, body);
        assert_eq!(error.to_string(), "no role \"x\"");
        let plain = api_error(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(plain.to_string(), "Hallpass answered 502 Bad Gateway: upstream down");
    }
}
