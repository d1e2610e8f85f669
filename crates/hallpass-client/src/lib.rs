//! Typed async client for the Hallpass HTTP API.
//!
//! One method per route, taking and returning the wire types of
//! [`hallpass_api`]. Every call goes through one private helper that attaches
//! the bearer token, sends the request, and turns non-2xx responses into
//! [`ClientError::Api`] by decoding the server's
//! `{"error": {"code": "...", "message": "..."}}` body. The live audit
//! stream is [`Client::events`] (Server-Sent Events, reconnecting).
//!
//! ```no_run
//! # async fn demo() -> Result<(), hallpass_client::ClientError> {
//! let client = hallpass_client::Client::new("127.0.0.1:7070", Some("hp_...".into()))?;
//! let me = client.whoami().await?;
//! println!("{} ({})", me.principal, me.groups.join(","));
//! # Ok(()) }
//! ```

mod events;

use std::time::Duration;

pub use events::{EventStream, MAX_MESSAGE_BYTES, SseMessage, SseParser};
use hallpass_api::{
    AccessRequest, ApplyRequest, ApplyResponse, ApprovalFlow, ApprovalFlowSpec, AuditEvent, CreateRequest,
    CreateRequestResponse, CreateToken, CreatedToken, Credential, DecisionBody, ErrorBody, ErrorCode, ExtendBody,
    Health, Introspection, LockBody, LockInfo, Policy, PolicyBody, PolicyDecision, PolicyEvalBody, RequestState,
    ReviewAckBody, RevokeBody, Role, RoleSpec, Target, TargetSpec, TokenInfo, VerifyReport, WhoAmI,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Time allowed for an ordinary call, from connecting to the end of the body.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed to open the TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle pooled connection is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack added to a long-poll's server-side timeout before the client gives up.
const LONG_POLL_SLACK: Duration = Duration::from_secs(15);

/// Everything that can go wrong talking to Hallpass.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status. `message` is written for
    /// humans and is the whole `Display`.
    #[error("{message}")]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
        request_id: Option<String>,
    },
    /// The server could not be reached, or the connection broke or timed out.
    #[error("{0}")]
    Transport(String),
    /// The server answered 2xx, but not with the JSON this client expected.
    #[error("{0}")]
    Decode(String),
    /// The address given to [`Client::new`] is not a usable URL.
    #[error("invalid Hallpass address {0}")]
    InvalidAddress(String),
    /// Writing a streamed response (the audit export) to its destination failed.
    #[error("{0}")]
    Io(String),
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The machine-readable code of an API error, e.g. [`ErrorCode::NotFound`].
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Makes aws-lc-rs, the project's one crypto backend, the process's rustls
/// provider unless the program already chose one. reqwest is built without a
/// provider of its own, so every `reqwest::Client` in the process needs this
/// to have run first; [`Client::new`] calls it, and so must code that builds
/// a `reqwest::Client` directly. Idempotent.
pub fn install_tls_crypto_provider() {
    // An error only means a provider is installed already, which is the goal.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A handle on one Hallpass server, with an optional bearer token. Cheap to
/// clone: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Client {
    /// `addr` is a URL such as `http://127.0.0.1:7070`, or a bare
    /// `host:port`, which means `http://host:port`.
    pub fn new(addr: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = parse_address(addr)?;
        install_tls_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // The server closes idle connections after 10 s; reuse them
            // only well within that.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .user_agent(concat!("hallpass-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport(format!("cannot set up the HTTP client: {}", root_cause(&e))))?;
        Ok(Self { http, base, token })
    }

    /// The same server and connection pool, with another token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            token: Some(token.into()),
        }
    }

    /// The server's base URL, as normalised by [`Client::new`].
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The bearer token in use, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    // ------------------------------------------------------------- health

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(self.request(Method::GET, &["healthz"])?).await
    }

    // ----------------------------------------------------------- identity

    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.json(self.request(Method::GET, &["v1", "whoami"])?).await
    }

    pub async fn create_token(&self, body: &CreateToken) -> Result<CreatedToken, ClientError> {
        self.json(self.request(Method::POST, &["v1", "tokens"])?.json(body))
            .await
    }

    /// Exchanges a workload's OIDC token (from its CI system) for a
    /// short-lived API token; needs no token of its own.
    pub async fn exchange_workload_token(&self, jwt: &str) -> Result<CreatedToken, ClientError> {
        let body = hallpass_api::WorkloadTokenExchange { token: jwt.to_string() };
        self.json(self.request(Method::POST, &["v1", "auth", "oidc"])?.json(&body))
            .await
    }

    /// Trades the one-time code of a browser sign-in and the PKCE verifier
    /// it is bound to for a token (`hallpass login`); needs no token.
    pub async fn exchange_cli_code(&self, code: &str, code_verifier: &str) -> Result<CreatedToken, ClientError> {
        let body = hallpass_api::CliTokenExchange {
            code: code.to_string(),
            code_verifier: code_verifier.to_string(),
        };
        self.json(self.request(Method::POST, &["v1", "auth", "cli", "token"])?.json(&body))
            .await
    }

    /// Revokes the client's own token (`hallpass logout`).
    pub async fn sign_out(&self) -> Result<(), ClientError> {
        self.empty(self.request(Method::POST, &["v1", "auth", "logout"])?).await
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.json(self.request(Method::GET, &["v1", "tokens"])?).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.empty(self.request(Method::DELETE, &["v1", "tokens", id])?).await
    }

    // ------------------------------------------------------ configuration

    pub async fn list_targets(&self) -> Result<Vec<Target>, ClientError> {
        self.json(self.request(Method::GET, &["v1", "targets"])?).await
    }

    pub async fn get_target(&self, name: &str) -> Result<Target, ClientError> {
        self.json(self.request(Method::GET, &["v1", "targets", name])?).await
    }

    pub async fn put_target(&self, spec: &TargetSpec) -> Result<Target, ClientError> {
        let req = self.request(Method::PUT, &["v1", "targets", &spec.name])?;
        self.json(req.json(spec)).await
    }

    pub async fn delete_target(&self, name: &str) -> Result<(), ClientError> {
        self.empty(self.request(Method::DELETE, &["v1", "targets", name])?)
            .await
    }

    pub async fn list_notifiers(&self) -> Result<Vec<hallpass_api::Notifier>, ClientError> {
        self.json(self.request(Method::GET, &["v1", "notifiers"])?).await
    }

    pub async fn get_notifier(&self, name: &str) -> Result<hallpass_api::Notifier, ClientError> {
        self.json(self.request(Method::GET, &["v1", "notifiers", name])?).await
    }

    pub async fn put_notifier(&self, spec: &hallpass_api::NotifierSpec) -> Result<hallpass_api::Notifier, ClientError> {
        let req = self.request(Method::PUT, &["v1", "notifiers", &spec.name])?;
        self.json(req.json(spec)).await
    }

    pub async fn delete_notifier(&self, name: &str) -> Result<(), ClientError> {
        self.empty(self.request(Method::DELETE, &["v1", "notifiers", name])?)
            .await
    }

    /// Dead-lettered notification deliveries, oldest first (admins, auditors).
    pub async fn failed_notifications(&self) -> Result<hallpass_api::DeliveryList, ClientError> {
        self.json(self.request(Method::GET, &["v1", "notifications", "failed"])?)
            .await
    }

    /// Sends a dead-lettered delivery again (admins).
    pub async fn retry_notification(&self, id: &str) -> Result<hallpass_api::Delivery, ClientError> {
        self.json(self.request(Method::POST, &["v1", "notifications", id, "retry"])?)
            .await
    }

    /// Checks what the target's admin credentials can do (admins).
    pub async fn test_target(&self, name: &str) -> Result<hallpass_api::TargetTest, ClientError> {
        let req = self.request_untimed(Method::POST, &["v1", "targets", name, "test"])?;
        self.json(req).await
    }

    /// Replaces the target's admin password with one only Hallpass knows.
    pub async fn rotate_target(&self, name: &str) -> Result<hallpass_api::RotateResult, ClientError> {
        let req = self.request_untimed(Method::POST, &["v1", "targets", name, "rotate"])?;
        self.json(req).await
    }

    /// The target's OpenSSH key revocation list (no token needed).
    pub async fn target_krl(&self, name: &str) -> Result<Vec<u8>, ClientError> {
        let response = self
            .send(self.request(Method::GET, &["v1", "targets", name, "krl"])?)
            .await?;
        let body = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        Ok(body.to_vec())
    }

    pub async fn list_roles(&self) -> Result<Vec<Role>, ClientError> {
        self.json(self.request(Method::GET, &["v1", "roles"])?).await
    }

    pub async fn get_role(&self, name: &str) -> Result<Role, ClientError> {
        self.json(self.request(Method::GET, &["v1", "roles", name])?).await
    }

    pub async fn put_role(&self, spec: &RoleSpec) -> Result<Role, ClientError> {
        let req = self.request(Method::PUT, &["v1", "roles", &spec.name])?;
        self.json(req.json(spec)).await
    }

    pub async fn delete_role(&self, name: &str) -> Result<(), ClientError> {
        self.empty(self.request(Method::DELETE, &["v1", "roles", name])?).await
    }

    pub async fn list_flows(&self) -> Result<Vec<ApprovalFlow>, ClientError> {
        self.json(self.request(Method::GET, &["v1", "approval-flows"])?).await
    }

    pub async fn get_flow(&self, name: &str) -> Result<ApprovalFlow, ClientError> {
        self.json(self.request(Method::GET, &["v1", "approval-flows", name])?)
            .await
    }

    pub async fn put_flow(&self, spec: &ApprovalFlowSpec) -> Result<ApprovalFlow, ClientError> {
        let req = self.request(Method::PUT, &["v1", "approval-flows", &spec.name])?;
        self.json(req.json(spec)).await
    }

    pub async fn delete_flow(&self, name: &str) -> Result<(), ClientError> {
        self.empty(self.request(Method::DELETE, &["v1", "approval-flows", name])?)
            .await
    }

    pub async fn list_policies(&self) -> Result<Vec<Policy>, ClientError> {
        self.json(self.request(Method::GET, &["v1", "policies"])?).await
    }

    pub async fn get_policy(&self, name: &str) -> Result<Policy, ClientError> {
        self.json(self.request(Method::GET, &["v1", "policies", name])?).await
    }

    /// Stores the Rego module `name`. The server compiles it with the other
    /// policies first and refuses it (code `policy_compile_error`, message
    /// `NAME:LINE:COL: ...`) when the set would not compile.
    pub async fn put_policy(&self, name: &str, source: impl Into<String>) -> Result<Policy, ClientError> {
        let req = self.request(Method::PUT, &["v1", "policies", name])?;
        self.json(req.json(&PolicyBody { source: source.into() })).await
    }

    pub async fn delete_policy(&self, name: &str) -> Result<(), ClientError> {
        self.empty(self.request(Method::DELETE, &["v1", "policies", name])?)
            .await
    }

    /// What the server's stored policies decide for a hypothetical `input`;
    /// changes nothing.
    pub async fn eval_policy(
        &self,
        input: serde_json::Map<String, serde_json::Value>,
    ) -> Result<PolicyDecision, ClientError> {
        let req = self.request(Method::POST, &["v1", "policies", "eval"])?;
        self.json(req.json(&PolicyEvalBody { input })).await
    }

    pub async fn apply(&self, body: &ApplyRequest) -> Result<ApplyResponse, ClientError> {
        self.json(self.request(Method::POST, &["v1", "apply"])?.json(body))
            .await
    }

    // ----------------------------------------------------------- requests

    /// Makes a request. The answer says what happened (`outcome`): a new
    /// request, or the caller's open request or grant of the role (extended
    /// if they asked for longer than it lasts).
    pub async fn create_request(&self, body: &CreateRequest) -> Result<CreateRequestResponse, ClientError> {
        self.json(self.request(Method::POST, &["v1", "requests"])?.json(body))
            .await
    }

    /// One page of requests (`grants`: of grants) the caller may see, and
    /// the cursor of the next page.
    pub async fn list_page(
        &self,
        grants: bool,
        query: &ListQuery,
        cursor: Option<&str>,
    ) -> Result<(Vec<AccessRequest>, Option<String>), ClientError> {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(state) = query.state {
            pairs.push(("state", state.as_str().to_string()));
        }
        if query.mine {
            pairs.push(("mine", "true".into()));
        }
        if query.active {
            pairs.push(("active", "true".into()));
        }
        if let Some(cursor) = cursor {
            pairs.push(("cursor", cursor.to_string()));
        }
        pairs.push(("limit", query.page_size.clamp(1, MAX_PAGE).to_string()));
        let path = if grants { "grants" } else { "requests" };
        let response = self
            .send(self.request(Method::GET, &["v1", path])?.query(&pairs))
            .await?;
        let next = response
            .headers()
            .get("x-next-cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        let items = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Decode(format!("unexpected response from Hallpass for /v1/{path}: {e}")))?;
        Ok((items, next))
    }

    /// Up to `query.max` requests (grants with `grants`) the caller may see,
    /// newest first, following the server's pages.
    pub async fn list(&self, grants: bool, query: &ListQuery) -> Result<Vec<AccessRequest>, ClientError> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let (items, next) = self.list_page(grants, query, cursor.as_deref()).await?;
            all.extend(items);
            match next {
                Some(next) if all.len() < query.max => cursor = Some(next),
                _ => break,
            }
        }
        all.truncate(query.max);
        Ok(all)
    }

    pub async fn get_request(&self, id: &str) -> Result<AccessRequest, ClientError> {
        self.json(self.request(Method::GET, &["v1", "requests", id])?).await
    }

    /// Long-polls until the request's `version` exceeds `after_version`, or
    /// `timeout_secs` pass on the server; either way returns the current state.
    pub async fn wait_request(
        &self,
        id: &str,
        after_version: u64,
        timeout_secs: u64,
    ) -> Result<AccessRequest, ClientError> {
        let query = [
            ("wait_version", after_version.to_string()),
            ("timeout", timeout_secs.to_string()),
        ];
        let req = self
            .request(Method::GET, &["v1", "requests", id])?
            .query(&query)
            .timeout(Duration::from_secs(timeout_secs) + LONG_POLL_SLACK);
        self.json(req).await
    }

    pub async fn approve(&self, id: &str, comment: Option<String>) -> Result<AccessRequest, ClientError> {
        let req = self.request(Method::POST, &["v1", "requests", id, "approve"])?;
        self.json(req.json(&DecisionBody { comment })).await
    }

    pub async fn deny(&self, id: &str, comment: Option<String>) -> Result<AccessRequest, ClientError> {
        let req = self.request(Method::POST, &["v1", "requests", id, "deny"])?;
        self.json(req.json(&DecisionBody { comment })).await
    }

    pub async fn cancel(&self, id: &str) -> Result<AccessRequest, ClientError> {
        let req = self.request(Method::POST, &["v1", "requests", id, "cancel"])?;
        self.json(req.json(&EmptyBody {})).await
    }

    /// Asks to lengthen an active grant. Returns the grant, with the new
    /// extension (pending, or approved at once) last in `extensions`.
    pub async fn extend(&self, id: &str, body: &ExtendBody) -> Result<AccessRequest, ClientError> {
        let req = self.request(Method::POST, &["v1", "requests", id, "extend"])?;
        self.json(req.json(body)).await
    }

    /// The secret credential of an active grant (requester only).
    pub async fn credentials(&self, id: &str) -> Result<Credential, ClientError> {
        self.json(self.request(Method::GET, &["v1", "requests", id, "credentials"])?)
            .await
    }

    // ------------------------------------------------------------- grants

    pub async fn revoke(&self, id: &str, reason: impl Into<String>) -> Result<AccessRequest, ClientError> {
        let req = self.request(Method::POST, &["v1", "grants", id, "revoke"])?;
        self.json(req.json(&RevokeBody { reason: reason.into() })).await
    }

    pub async fn release(&self, id: &str) -> Result<AccessRequest, ClientError> {
        let req = self.request(Method::POST, &["v1", "grants", id, "release"])?;
        self.json(req.json(&EmptyBody {})).await
    }

    // ------------------------------------------------------------ reviews

    /// Break-glass grants awaiting review; with `all`, acknowledged ones too.
    pub async fn list_reviews(&self, all: bool) -> Result<Vec<AccessRequest>, ClientError> {
        let mut req = self.request(Method::GET, &["v1", "reviews"])?;
        if all {
            req = req.query(&[("all", "true")]);
        }
        self.json(req).await
    }

    /// Acknowledges the review of break-glass grant `id`.
    pub async fn ack_review(&self, id: &str, comment: impl Into<String>) -> Result<AccessRequest, ClientError> {
        let req = self.request(Method::POST, &["v1", "reviews", id, "ack"])?;
        self.json(req.json(&ReviewAckBody {
            comment: comment.into(),
        }))
        .await
    }

    /// RFC 7662 introspection of an issued token (form-encoded).
    pub async fn introspect(&self, token: &str) -> Result<Introspection, ClientError> {
        let req = self.request(Method::POST, &["v1", "introspect"])?;
        self.json(req.form(&[("token", token)])).await
    }

    // -------------------------------------------------------------- audit

    /// Events with `seq > since`, optionally only those of one request.
    pub async fn audit_list(
        &self,
        since: Option<u64>,
        request: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<AuditEvent>, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(since) = since {
            query.push(("since", since.to_string()));
        }
        if let Some(request) = request {
            query.push(("request", request.to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        self.json(self.request(Method::GET, &["v1", "audit"])?.query(&query))
            .await
    }

    /// Streams the NDJSON export (events with `seq > since`) into `out`,
    /// chunk by chunk, without holding it in memory. Returns the number of
    /// bytes written. `out` is flushed at the end.
    pub async fn audit_export<W>(&self, since: Option<u64>, out: &mut W) -> Result<u64, ClientError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut req = self.request_untimed(Method::GET, &["v1", "audit", "export"])?;
        if let Some(since) = since {
            req = req.query(&[("since", since.to_string())]);
        }
        let mut response = self.send(req).await?;
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(&e))? {
            out.write_all(&chunk)
                .await
                .map_err(|e| ClientError::Io(format!("cannot write the audit export: {e}")))?;
            written += chunk.len() as u64;
        }
        out.flush()
            .await
            .map_err(|e| ClientError::Io(format!("cannot write the audit export: {e}")))?;
        Ok(written)
    }

    /// The key that signs the server's audit checkpoints.
    pub async fn audit_public_key(&self) -> Result<hallpass_api::AuditPublicKey, ClientError> {
        self.json(self.request(Method::GET, &["v1", "audit", "public-key"])?)
            .await
    }

    /// Has the server check its whole audit chain.
    pub async fn audit_verify(&self) -> Result<VerifyReport, ClientError> {
        let req = self.request_untimed(Method::GET, &["v1", "audit", "verify"])?;
        self.json(req).await
    }

    // -------------------------------------------------------------- locks

    /// Locks a principal (admins): tokens revoked, requests withdrawn,
    /// grants ended, new requests refused until unlocked.
    pub async fn lock(&self, principal: &str, reason: impl Into<String>) -> Result<LockInfo, ClientError> {
        let req = self.request(Method::POST, &["v1", "principals", principal, "lock"])?;
        self.json(req.json(&LockBody { reason: reason.into() })).await
    }

    pub async fn unlock(&self, principal: &str) -> Result<(), ClientError> {
        self.empty(self.request(Method::DELETE, &["v1", "principals", principal, "lock"])?)
            .await
    }

    pub async fn list_locks(&self) -> Result<Vec<LockInfo>, ClientError> {
        self.json(self.request(Method::GET, &["v1", "locks"])?).await
    }

    // ---------------------------------------------------------- discovery

    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.json(self.request(Method::GET, &["v1", "openapi.json"])?).await
    }

    pub async fn jwks(&self) -> Result<serde_json::Value, ClientError> {
        self.json(self.request(Method::GET, &[".well-known", "jwks.json"])?)
            .await
    }

    // ----------------------------------------------------------- plumbing

    /// A request to the path made of `segments` (each percent-encoded), with
    /// the default timeout.
    fn request(&self, method: Method, segments: &[&str]) -> Result<RequestBuilder, ClientError> {
        Ok(self.request_untimed(method, segments)?.timeout(DEFAULT_TIMEOUT))
    }

    /// Like [`Client::request`] but without an overall deadline, for
    /// responses whose size or duration is unbounded (export, verify).
    fn request_untimed(&self, method: Method, segments: &[&str]) -> Result<RequestBuilder, ClientError> {
        let url = endpoint(&self.base, segments)?;
        let mut req = self.http.request(method, url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        Ok(req)
    }

    /// Sends, and turns any non-2xx answer into [`ClientError::Api`].
    async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let response = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        Err(api_error(status, &body))
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let response = self.send(req).await?;
        let what = response.url().path().to_string();
        let body = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Decode(format!("unexpected response from Hallpass for {what}: {e}")))
    }

    async fn empty(&self, req: RequestBuilder) -> Result<(), ClientError> {
        let response = self.send(req).await?;
        // Drain the body so the connection can be reused.
        response.bytes().await.map_err(|e| self.transport_error(&e))?;
        Ok(())
    }

    fn transport_error(&self, error: &reqwest::Error) -> ClientError {
        let addr = self.base.as_str().trim_end_matches('/');
        let cause = root_cause(error);
        if error.is_timeout() {
            ClientError::Transport(format!("Hallpass at {addr} did not answer in time: {cause}"))
        } else if error.is_decode() {
            ClientError::Decode(format!("unreadable response from Hallpass at {addr}: {cause}"))
        } else {
            ClientError::Transport(format!(
                "cannot reach Hallpass at {addr}: {cause} (is `hallpass server` running? set HALLPASS_ADDR or --addr)"
            ))
        }
    }
}

/// `{}`: the body of `cancel` and `release`.
#[derive(Serialize)]
struct EmptyBody {}

/// Largest page the server serves.
pub const MAX_PAGE: usize = 1000;

/// Which requests to list.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub state: Option<RequestState>,
    /// Only the caller's own.
    pub mine: bool,
    /// Only grants holding access.
    pub active: bool,
    /// Items per page asked of the server.
    pub page_size: usize,
    /// Stop after this many.
    pub max: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            state: None,
            mine: false,
            active: false,
            page_size: 200,
            max: 200,
        }
    }
}

/// Accepts `http(s)://host[:port][/prefix]` or a bare `host:port`.
fn parse_address(addr: &str) -> Result<Url, ClientError> {
    let trimmed = addr.trim();
    if trimmed.is_empty() {
        return Err(ClientError::InvalidAddress(
            "\"\": it is empty; use something like http://127.0.0.1:7070".into(),
        ));
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| ClientError::InvalidAddress(format!("{addr:?}: {e}; use something like http://127.0.0.1:7070")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::InvalidAddress(format!(
            "{addr:?}: the scheme must be http or https"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ClientError::InvalidAddress(format!("{addr:?}: it names no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::InvalidAddress(format!(
            "{addr:?}: it must not contain a query or fragment"
        )));
    }
    Ok(url)
}

/// `base` with `segments` appended as percent-encoded path segments.
fn endpoint(base: &Url, segments: &[&str]) -> Result<Url, ClientError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ClientError::InvalidAddress(format!("{base}: it cannot carry a path")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The error of a non-2xx response, from its `{"error": {...}}` body when it
/// has one, else from the status line and whatever text came back.
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
        return ClientError::Api {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
            request_id: error.request_id,
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let reason = status.canonical_reason().unwrap_or("error");
    let message = if text.is_empty() {
        format!("Hallpass answered {} {reason}", status.as_u16())
    } else {
        let short: String = text.chars().take(300).collect();
        format!("Hallpass answered {} {reason}: {short}", status.as_u16())
    };
    ClientError::Api {
        status: status.as_u16(),
        code: ErrorCode::Other(format!("http_{}", status.as_u16())),
        message,
        request_id: None,
    }
}

/// The innermost cause: reqwest's own message names only the URL.
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn bare_host_port_gets_http() {
        let url = parse_address("127.0.0.1:7070").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:7070/");
        let url = parse_address(" https://hallpass.example.com ").unwrap();
        assert_eq!(url.as_str(), "https://hallpass.example.com/");
    }

    #[test]
    fn bad_addresses_are_rejected() {
        assert!(matches!(parse_address(""), Err(ClientError::InvalidAddress(_))));
        assert!(matches!(
            parse_address("ftp://x:1"),
            Err(ClientError::InvalidAddress(_))
        ));
        assert!(matches!(parse_address("http://"), Err(ClientError::InvalidAddress(_))));
        assert!(matches!(
            parse_address("http://h:7070/?a=b"),
            Err(ClientError::InvalidAddress(_))
        ));
    }

    #[test]
    fn endpoints_encode_segments_and_keep_prefixes() {
        let base = parse_address("http://h:1").unwrap();
        assert_eq!(
            endpoint(&base, &["v1", "roles", "a b/c"]).unwrap().as_str(),
            "http://h:1/v1/roles/a%20b%2Fc"
        );
        let base = parse_address("http://h:1/hallpass/").unwrap();
        assert_eq!(
            endpoint(&base, &["v1", "whoami"]).unwrap().as_str(),
            "http://h:1/hallpass/v1/whoami"
        );
    }

    #[test]
    fn api_errors_use_the_server_message() {
        let err = api_error(
            StatusCode::NOT_FOUND,
            br#"{"error":{"code":"not_found","message":"no role named x; see `hallpass role list`"}}"#,
        );
        assert_eq!(err.to_string(), "no role named x; see `hallpass role list`");
        assert_eq!(err.status(), Some(404));
        assert_eq!(err.code(), Some(&ErrorCode::NotFound));

        let err = api_error(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(err.to_string(), "Hallpass answered 502 Bad Gateway: upstream down");
        assert_eq!(err.code(), Some(&ErrorCode::Other("http_502".into())));
    }

    /// Serves one canned HTTP response and returns the request it received.
    async fn one_shot(response: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let mut received = Vec::new();
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                received.extend_from_slice(&buf[..n]);
                if n == 0 || received.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8_lossy(&received).into_owned()
        });
        (addr, handle)
    }

    #[tokio::test]
    async fn sends_the_bearer_token_and_decodes_errors() {
        let body = r#"{"error":{"code":"unauthorized","message":"token expired"}}"#;
        let response: &'static str = Box::leak(
            format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (addr, server) = one_shot(response).await;
        let client = Client::new(&addr, Some("hp_secret".into())).unwrap();
        let err = client.whoami().await.unwrap_err();
        assert_eq!(err.to_string(), "token expired");
        assert_eq!(err.status(), Some(401));
        let request = server.await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /v1/whoami "), "{request}");
        assert!(request.contains("authorization: bearer hp_secret"), "{request}");
    }

    #[tokio::test]
    async fn export_streams_the_body_verbatim() {
        let (addr, server) = one_shot(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n4\r\n{}\n\n\r\n3\r\n[]\n\r\n0\r\n\r\n",
        )
        .await;
        let client = Client::new(&addr, None).unwrap();
        let mut out = Vec::new();
        let written = client.audit_export(Some(7), &mut out).await.unwrap();
        assert_eq!(out, b"{}\n\n[]\n");
        assert_eq!(written, 7);
        let request = server.await.unwrap();
        assert!(request.starts_with("GET /v1/audit/export?since=7 "), "{request}");
    }

    /// A canned JSON response with the given status line.
    fn json_response(status: &str, body: &str) -> &'static str {
        Box::leak(
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        )
    }

    #[tokio::test]
    async fn new_routes_use_the_documented_paths() {
        let (addr, server) = one_shot(json_response("200 OK", "[]")).await;
        let client = Client::new(&addr, None).unwrap();
        assert!(client.list_reviews(true).await.unwrap().is_empty());
        let request = server.await.unwrap();
        assert!(request.starts_with("GET /v1/reviews?all=true "), "{request}");

        let (addr, server) = one_shot(json_response("204 No Content", "")).await;
        let client = Client::new(&addr, None).unwrap();
        client.delete_flow("two step").await.unwrap();
        let request = server.await.unwrap();
        assert!(
            request.starts_with("DELETE /v1/approval-flows/two%20step "),
            "{request}"
        );

        let decision = r#"{"policy_hash":"ab","deny":["no"],"auto_approve":false,"approval_flow":null,"max_duration_seconds":null,"error":null}"#;
        let (addr, server) = one_shot(json_response("200 OK", decision)).await;
        let client = Client::new(&addr, None).unwrap();
        let got = client
            .eval_policy(serde_json::json!({"role": {"name": "x"}}).as_object().cloned().unwrap())
            .await
            .unwrap();
        assert_eq!(got.deny, ["no"]);
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /v1/policies/eval "), "{request}");
    }

    #[tokio::test]
    async fn policy_compile_errors_keep_their_code() {
        let body = r#"{"error":{"code":"policy_compile_error","message":"limits:3:5: unexpected token"}}"#;
        let (addr, server) = one_shot(json_response("400 Bad Request", body)).await;
        let client = Client::new(&addr, None).unwrap();
        let err = client.put_policy("limits", "package x\n").await.unwrap_err();
        assert_eq!(err.code(), Some(&ErrorCode::PolicyCompileError));
        assert_eq!(err.to_string(), "limits:3:5: unexpected token");
        let request = server.await.unwrap();
        assert!(request.starts_with("PUT /v1/policies/limits "), "{request}");
    }

    #[tokio::test]
    async fn unreachable_server_says_how_to_fix_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let client = Client::new(&addr, None).unwrap();
        let err = client.health().await.unwrap_err();
        assert!(matches!(err, ClientError::Transport(_)));
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot reach Hallpass at http://{addr}")),
            "{text}"
        );
        assert!(text.contains("is `hallpass server` running?"), "{text}");
    }
}
