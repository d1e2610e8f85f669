//! HTTP routes: thin handlers that authenticate, decode, call [`App`] and
//! encode. The only module that knows URLs; the OpenAPI document is derived
//! from the annotations here.

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hallpass_api as api;
use hallpass_core::request::EndKind;
use hallpass_store::{ConfigKind, RequestFilter};
use serde::Deserialize;
use utoipa::OpenApi;

use crate::app::App;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// JSON body extractor whose rejections use the API's error shape and say
/// what was wrong (serde reports the field, line and column).
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => {
                let status = rejection.status();
                let (code, message) = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => (
                        "payload_too_large",
                        "request body is larger than the server's limit".to_string(),
                    ),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                        "unsupported_media_type",
                        "send the body as JSON with `Content-Type: application/json`".to_string(),
                    ),
                    _ => ("invalid_json", format!("invalid JSON body: {}", rejection.body_text())),
                };
                Err(ApiError::new(status, code, message))
            }
        }
    }
}

pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/v1/openapi.json", get(openapi))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/whoami", get(whoami))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/v1/targets", get(list_targets))
        .route(
            "/v1/targets/{name}",
            get(get_target).put(put_target).delete(delete_target),
        )
        .route("/v1/roles", get(list_roles))
        .route("/v1/roles/{name}", get(get_role).put(put_role).delete(delete_role))
        .route("/v1/approval-flows", get(list_flows))
        .route(
            "/v1/approval-flows/{name}",
            get(get_flow).put(put_flow).delete(delete_flow),
        )
        .route("/v1/policies", get(list_policies))
        .route("/v1/policies/eval", post(eval_policy))
        .route(
            "/v1/policies/{name}",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .route("/v1/apply", post(apply))
        .route("/v1/requests", get(list_requests).post(create_request))
        .route("/v1/requests/{id}", get(get_request))
        .route("/v1/requests/{id}/approve", post(approve))
        .route("/v1/requests/{id}/deny", post(deny))
        .route("/v1/requests/{id}/cancel", post(cancel))
        .route("/v1/requests/{id}/extend", post(extend))
        .route("/v1/reviews", get(list_reviews))
        .route("/v1/reviews/{id}/ack", post(ack_review))
        .route("/v1/requests/{id}/credentials", get(credentials))
        .route("/v1/grants", get(list_grants))
        .route("/v1/grants/{id}/revoke", post(revoke))
        .route("/v1/grants/{id}/release", post(release))
        .route("/v1/introspect", post(introspect))
        .route("/v1/audit", get(audit_list))
        .route("/v1/audit/export", get(audit_export))
        .route("/v1/audit/verify", get(audit_verify))
        .fallback(not_found)
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such API route; the routes are listed at /v1/openapi.json")
}

#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = api::Health)))]
async fn health() -> Json<api::Health> {
    Json(api::Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "credentials",
    responses((status = 200, description = "JSON Web Key Set of the grant-token signing key", body = Object)))]
async fn jwks(State(app): State<App>) -> Json<serde_json::Value> {
    Json(app.signer().jwks())
}

#[utoipa::path(get, path = "/v1/whoami", tag = "identity", responses((status = 200, body = api::WhoAmI), (status = 401, body = api::ErrorBody)))]
async fn whoami(caller: Caller) -> Json<api::WhoAmI> {
    Json(api::WhoAmI {
        admin: caller.principal.is_admin(),
        principal: caller.principal.name,
        groups: caller.principal.groups,
        token_id: caller.token_id,
        token_expires_at: caller.token_expires_at,
    })
}

#[utoipa::path(post, path = "/v1/tokens", tag = "identity", request_body = api::CreateToken,
    responses((status = 201, body = api::CreatedToken), (status = 403, body = api::ErrorBody)))]
async fn create_token(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<api::CreateToken>,
) -> ApiResult<(StatusCode, Json<api::CreatedToken>)> {
    caller.require_admin()?;
    Ok((
        StatusCode::CREATED,
        Json(app.create_token(&caller.principal.name, body, None).await?),
    ))
}

#[utoipa::path(get, path = "/v1/tokens", tag = "identity", responses((status = 200, body = Vec<api::TokenInfo>)))]
async fn list_tokens(State(app): State<App>, caller: Caller) -> ApiResult<Json<Vec<api::TokenInfo>>> {
    caller.require_admin()?;
    Ok(Json(app.list_tokens().await?))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "identity", responses((status = 204), (status = 404, body = api::ErrorBody)))]
async fn revoke_token(State(app): State<App>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    app.revoke_token(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/targets", tag = "configuration", responses((status = 200, body = Vec<api::Target>)))]
async fn list_targets(State(app): State<App>, _caller: Caller) -> ApiResult<Json<Vec<api::Target>>> {
    Ok(Json(app.list_targets().await?))
}

#[utoipa::path(get, path = "/v1/targets/{name}", tag = "configuration", responses((status = 200, body = api::Target), (status = 404, body = api::ErrorBody)))]
async fn get_target(State(app): State<App>, _caller: Caller, Path(name): Path<String>) -> ApiResult<Json<api::Target>> {
    Ok(Json(app.get_target(name).await?))
}

fn check_path_name(path: &str, body: &str) -> ApiResult<()> {
    if path == body {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "name_mismatch",
            format!("the URL names {path:?} but the body names {body:?}"),
        ))
    }
}

#[utoipa::path(put, path = "/v1/targets/{name}", tag = "configuration", request_body = api::TargetSpec,
    responses((status = 200, body = api::Target), (status = 400, body = api::ErrorBody)))]
async fn put_target(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(spec): JsonBody<api::TargetSpec>,
) -> ApiResult<Json<api::Target>> {
    check_path_name(&name, &spec.name)?;
    Ok(Json(app.put_target(&caller, spec).await?))
}

#[utoipa::path(delete, path = "/v1/targets/{name}", tag = "configuration", responses((status = 204), (status = 409, body = api::ErrorBody)))]
async fn delete_target(State(app): State<App>, caller: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    app.delete_config(&caller, ConfigKind::Target, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/roles", tag = "configuration", responses((status = 200, body = Vec<api::Role>)))]
async fn list_roles(State(app): State<App>, _caller: Caller) -> ApiResult<Json<Vec<api::Role>>> {
    Ok(Json(app.list_roles().await?))
}

#[utoipa::path(get, path = "/v1/roles/{name}", tag = "configuration", responses((status = 200, body = api::Role), (status = 404, body = api::ErrorBody)))]
async fn get_role(State(app): State<App>, _caller: Caller, Path(name): Path<String>) -> ApiResult<Json<api::Role>> {
    Ok(Json(app.get_role(name).await?))
}

#[utoipa::path(put, path = "/v1/roles/{name}", tag = "configuration", request_body = api::RoleSpec,
    responses((status = 200, body = api::Role), (status = 400, body = api::ErrorBody)))]
async fn put_role(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(spec): JsonBody<api::RoleSpec>,
) -> ApiResult<Json<api::Role>> {
    check_path_name(&name, &spec.name)?;
    Ok(Json(app.put_role(&caller, spec).await?))
}

#[utoipa::path(delete, path = "/v1/roles/{name}", tag = "configuration", responses((status = 204), (status = 404, body = api::ErrorBody)))]
async fn delete_role(State(app): State<App>, caller: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    app.delete_config(&caller, ConfigKind::Role, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/approval-flows", tag = "configuration", responses((status = 200, body = Vec<api::ApprovalFlow>)))]
async fn list_flows(State(app): State<App>, _caller: Caller) -> ApiResult<Json<Vec<api::ApprovalFlow>>> {
    Ok(Json(app.list_flows().await?))
}

#[utoipa::path(get, path = "/v1/approval-flows/{name}", tag = "configuration",
    responses((status = 200, body = api::ApprovalFlow), (status = 404, body = api::ErrorBody)))]
async fn get_flow(
    State(app): State<App>,
    _caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<api::ApprovalFlow>> {
    Ok(Json(app.get_flow(name).await?))
}

#[utoipa::path(put, path = "/v1/approval-flows/{name}", tag = "configuration", request_body = api::ApprovalFlowSpec,
    responses((status = 200, body = api::ApprovalFlow), (status = 400, body = api::ErrorBody), (status = 403, body = api::ErrorBody)))]
async fn put_flow(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(spec): JsonBody<api::ApprovalFlowSpec>,
) -> ApiResult<Json<api::ApprovalFlow>> {
    check_path_name(&name, &spec.name)?;
    Ok(Json(app.put_flow(&caller, spec).await?))
}

#[utoipa::path(delete, path = "/v1/approval-flows/{name}", tag = "configuration",
    responses((status = 204), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn delete_flow(State(app): State<App>, caller: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    app.delete_config(&caller, ConfigKind::ApprovalFlow, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/policies", tag = "policies", responses((status = 200, body = Vec<api::Policy>)))]
async fn list_policies(State(app): State<App>, _caller: Caller) -> ApiResult<Json<Vec<api::Policy>>> {
    Ok(Json(app.list_policies().await?))
}

#[utoipa::path(get, path = "/v1/policies/{name}", tag = "policies",
    responses((status = 200, body = api::Policy), (status = 404, body = api::ErrorBody)))]
async fn get_policy(State(app): State<App>, _caller: Caller, Path(name): Path<String>) -> ApiResult<Json<api::Policy>> {
    Ok(Json(app.get_policy(name).await?))
}

#[utoipa::path(put, path = "/v1/policies/{name}", tag = "policies", request_body = api::PolicyBody,
    responses((status = 200, body = api::Policy), (status = 400, description = "the policy set would not compile", body = api::ErrorBody),
              (status = 403, body = api::ErrorBody)))]
async fn put_policy(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<api::PolicyBody>,
) -> ApiResult<Json<api::Policy>> {
    let spec = api::PolicySpec {
        name,
        source: body.source,
    };
    Ok(Json(app.put_policy(&caller, spec).await?))
}

#[utoipa::path(delete, path = "/v1/policies/{name}", tag = "policies", responses((status = 204), (status = 404, body = api::ErrorBody)))]
async fn delete_policy(State(app): State<App>, caller: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    app.delete_config(&caller, ConfigKind::Policy, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/policies/eval", tag = "policies", request_body = api::PolicyEvalBody,
    responses((status = 200, description = "what the stored policies decide for this input", body = api::PolicyDecision)))]
async fn eval_policy(
    State(app): State<App>,
    _caller: Caller,
    JsonBody(body): JsonBody<api::PolicyEvalBody>,
) -> ApiResult<Json<api::PolicyDecision>> {
    Ok(Json(app.eval_policy(body.input).await?))
}

#[utoipa::path(post, path = "/v1/apply", tag = "configuration", request_body = api::ApplyRequest,
    responses((status = 200, body = api::ApplyResponse), (status = 400, body = api::ErrorBody)))]
async fn apply(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<api::ApplyRequest>,
) -> ApiResult<Json<api::ApplyResponse>> {
    Ok(Json(app.apply(&caller, body).await?))
}

#[utoipa::path(post, path = "/v1/requests", tag = "requests", request_body = api::CreateRequest,
    responses((status = 201, description = "a new request", body = api::AccessRequest),
              (status = 200, description = "the caller already holds the role: that grant, with the extension this asked for, if any", body = api::AccessRequest), (status = 400, body = api::ErrorBody), (status = 403, body = api::ErrorBody)))]
async fn create_request(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<api::CreateRequest>,
) -> ApiResult<(StatusCode, Json<api::AccessRequest>)> {
    let (request, new) = app.create_request(&caller, body).await?;
    // 200 instead of 201: the caller already held the role; this is that grant.
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(request)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only requests in this state.
    state: Option<String>,
    /// Only the caller's own requests.
    #[serde(default)]
    mine: bool,
    /// Only grants still holding access (for /v1/grants).
    #[serde(default)]
    active: bool,
    /// At most this many, newest first (default 1000).
    limit: Option<u32>,
}

fn query_error(error: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", error.body_text())
}

impl ListQuery {
    fn filter(&self, caller: &Caller) -> ApiResult<RequestFilter> {
        let state = self
            .state
            .as_deref()
            .map(|text| {
                text.parse().map_err(|e: hallpass_core::request::UnknownState| {
                    ApiError::bad_request("invalid_state", e.to_string())
                })
            })
            .transpose()?;
        Ok(RequestFilter {
            state,
            requester: self.mine.then(|| caller.principal.name.clone()),
            grants_only: false,
            holding_access: self.active,
            review_open: None,
            limit: self.limit.unwrap_or(1000).min(10_000),
        })
    }
}

#[utoipa::path(get, path = "/v1/requests", tag = "requests", params(ListQuery), responses((status = 200, body = Vec<api::AccessRequest>)))]
async fn list_requests(
    State(app): State<App>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<api::AccessRequest>>> {
    let Query(query) = query.map_err(query_error)?;
    Ok(Json(app.list_requests(query.filter(&caller)?).await?))
}

#[utoipa::path(get, path = "/v1/grants", tag = "grants", params(ListQuery), responses((status = 200, body = Vec<api::AccessRequest>)))]
async fn list_grants(
    State(app): State<App>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<api::AccessRequest>>> {
    let Query(query) = query.map_err(query_error)?;
    let mut filter = query.filter(&caller)?;
    filter.grants_only = true;
    Ok(Json(app.list_requests(filter).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    /// Long-poll: answer once the request's version is greater than this.
    wait_version: Option<u64>,
    /// Longest wait in seconds (default 25, at most 60).
    timeout: Option<u64>,
}

#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests", params(WaitQuery),
    responses((status = 200, body = api::AccessRequest), (status = 404, body = api::ErrorBody)))]
async fn get_request(
    State(app): State<App>,
    _caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<api::AccessRequest>> {
    let Query(query) = query.map_err(query_error)?;
    let request = match query.wait_version {
        Some(after) => app.wait_request(id, after, query.timeout.unwrap_or(25)).await?,
        None => app.get_request(id).await?.0,
    };
    Ok(Json(request))
}

/// Reads an optional JSON body: empty means the default.
async fn optional_body<T: serde::de::DeserializeOwned + Default>(bytes: Bytes) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))
}

#[utoipa::path(post, path = "/v1/requests/{id}/approve", tag = "requests", request_body = api::DecisionBody,
    responses((status = 200, body = api::AccessRequest), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn approve(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<api::AccessRequest>> {
    let body: api::DecisionBody = optional_body(body).await?;
    Ok(Json(app.approve(&caller, id, body.comment).await?))
}

#[utoipa::path(post, path = "/v1/requests/{id}/deny", tag = "requests", request_body = api::DecisionBody,
    responses((status = 200, body = api::AccessRequest), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn deny(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<api::AccessRequest>> {
    let body: api::DecisionBody = optional_body(body).await?;
    Ok(Json(app.deny(&caller, id, body.comment).await?))
}

#[utoipa::path(post, path = "/v1/requests/{id}/extend", tag = "grants", request_body = api::ExtendBody,
    responses((status = 200, description = "the grant with its new extension last in `extensions`", body = api::AccessRequest),
              (status = 400, body = api::ErrorBody), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn extend(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<api::ExtendBody>,
) -> ApiResult<Json<api::AccessRequest>> {
    Ok(Json(app.extend(&caller, id, body).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ReviewQuery {
    /// Include acknowledged reviews.
    #[serde(default)]
    all: bool,
}

#[utoipa::path(get, path = "/v1/reviews", tag = "grants", params(ReviewQuery),
    responses((status = 200, description = "break-glass grants with their reviews", body = Vec<api::AccessRequest>)))]
async fn list_reviews(
    State(app): State<App>,
    caller: Caller,
    query: Result<Query<ReviewQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<api::AccessRequest>>> {
    let Query(query) = query.map_err(query_error)?;
    Ok(Json(app.list_reviews(&caller, query.all).await?))
}

#[utoipa::path(post, path = "/v1/reviews/{id}/ack", tag = "grants", request_body = api::ReviewAckBody,
    responses((status = 200, body = api::AccessRequest), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn ack_review(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<api::ReviewAckBody>,
) -> ApiResult<Json<api::AccessRequest>> {
    Ok(Json(app.ack_review(&caller, id, body.comment).await?))
}

#[utoipa::path(post, path = "/v1/requests/{id}/cancel", tag = "requests",
    responses((status = 200, body = api::AccessRequest), (status = 409, body = api::ErrorBody)))]
async fn cancel(State(app): State<App>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<api::AccessRequest>> {
    Ok(Json(app.cancel(&caller, id).await?))
}

#[utoipa::path(get, path = "/v1/requests/{id}/credentials", tag = "credentials",
    responses((status = 200, body = api::Credential), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn credentials(State(app): State<App>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let credential = app.credentials(&caller, id).await?;
    // Secrets must not linger in caches.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(credential)).into_response())
}

#[utoipa::path(post, path = "/v1/grants/{id}/revoke", tag = "grants", request_body = api::RevokeBody,
    responses((status = 200, body = api::AccessRequest), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn revoke(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<api::RevokeBody>,
) -> ApiResult<Json<api::AccessRequest>> {
    let reason = body.reason.trim().to_string();
    if reason.is_empty() {
        return Err(ApiError::bad_request(
            "reason_required",
            "say why the grant is revoked, e.g. --reason \"left the incident\"",
        ));
    }
    Ok(Json(
        app.end_grant(Some(caller.principal), id, EndKind::Revoke, Some(reason))
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/grants/{id}/release", tag = "grants",
    responses((status = 200, body = api::AccessRequest), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
async fn release(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<api::AccessRequest>> {
    Ok(Json(
        app.end_grant(Some(caller.principal), id, EndKind::Release, None)
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/introspect", tag = "credentials",
    request_body(content = api::IntrospectBody, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = api::Introspection)))]
async fn introspect(
    State(app): State<App>,
    _caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<api::Introspection>> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let parsed: api::IntrospectBody = if is_json {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))?
    } else {
        serde_urlencoded::from_bytes(&body)
            .map_err(|e| ApiError::bad_request("invalid_form", format!("expected form field `token`: {e}")))?
    };
    Ok(Json(app.introspect(&parsed.token).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Only events with a sequence number greater than this.
    since: Option<u64>,
    /// Only events of this request.
    request: Option<String>,
    /// At most this many (default 1000, at most 10000).
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery), responses((status = 200, body = Vec<api::AuditEvent>)))]
async fn audit_list(
    State(app): State<App>,
    caller: Caller,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<api::AuditEvent>>> {
    App::require_auditor(&caller)?;
    let Query(query) = query.map_err(query_error)?;
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    Ok(Json(
        app.audit_page(query.since.unwrap_or(0), query.request, limit).await?,
    ))
}

#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "One audit event per line (JSON Lines)", content_type = "application/x-ndjson")))]
async fn audit_export(
    State(app): State<App>,
    caller: Caller,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    App::require_auditor(&caller)?;
    let Query(query) = query.map_err(query_error)?;
    let start = query.since.unwrap_or(0);
    // Stream page by page so memory stays flat however long the log is.
    let pages = futures::stream::unfold(Some(start), move |cursor| {
        let app = app.clone();
        async move {
            let since = cursor?;
            match app.store().read(move |r| r.audit(since, None, 2000)).await {
                Ok(events) if events.is_empty() => None,
                Ok(events) => {
                    let next = events.last().map(|e| e.seq);
                    let mut chunk = Vec::with_capacity(events.len() * 400);
                    for event in events {
                        if serde_json::to_writer(&mut chunk, &event).is_err() {
                            return Some((Err(std::io::Error::other("cannot encode audit event")), None));
                        }
                        chunk.push(b'\n');
                    }
                    Some((Ok(Bytes::from(chunk)), next))
                }
                Err(error) => {
                    tracing::error!(%error, "audit export failed");
                    Some((Err(std::io::Error::other("audit export failed")), None))
                }
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(pages),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", responses((status = 200, body = api::VerifyReport)))]
async fn audit_verify(State(app): State<App>, caller: Caller) -> ApiResult<Json<api::VerifyReport>> {
    App::require_auditor(&caller)?;
    Ok(Json(app.audit_verify().await?))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hallpass API",
        description = "Just-in-time access broker. Authenticate with `Authorization: Bearer hp_...`."
    ),
    paths(
        health,
        jwks,
        whoami,
        create_token,
        list_tokens,
        revoke_token,
        list_targets,
        get_target,
        put_target,
        delete_target,
        list_roles,
        get_role,
        put_role,
        delete_role,
        list_flows,
        get_flow,
        put_flow,
        delete_flow,
        list_policies,
        get_policy,
        put_policy,
        delete_policy,
        eval_policy,
        apply,
        create_request,
        list_requests,
        get_request,
        approve,
        deny,
        cancel,
        extend,
        list_reviews,
        ack_review,
        credentials,
        list_grants,
        revoke,
        release,
        introspect,
        audit_list,
        audit_export,
        audit_verify
    ),
    components(schemas(api::ErrorBody, api::ErrorDetail))
)]
pub struct ApiDoc;
