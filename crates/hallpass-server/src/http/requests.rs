//! Routes for requests, grants, extensions, reviews, credentials and token
//! introspection.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hallpass_api::{self as api, ErrorCode, RequestOutcome, RequestState};
use serde::Deserialize;

use super::error::{HttpError, HttpResult};
use super::extract::{JsonBody, QueryOf, Segment, optional_body};
use crate::app::listing::{ListQuery, Page};
use crate::app::{App, AppError, Caller};

/// The header that carries the next page's cursor.
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

#[utoipa::path(post, path = "/v1/requests", tag = "requests", request_body = api::CreateRequest,
    responses((status = 201, description = "a new request (`outcome` = created)", body = api::CreateRequestResponse),
              (status = 200, description = "the caller's open request or grant of the role, extended if asked; `outcome` says which", body = api::CreateRequestResponse)))]
pub async fn create_request(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<api::CreateRequest>,
) -> HttpResult<(StatusCode, Json<api::CreateRequestResponse>)> {
    let response = app.create_request(&caller, body).await?;
    let status = if response.outcome == RequestOutcome::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(response)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only requests in this state.
    state: Option<RequestState>,
    /// Only the caller's own requests.
    #[serde(default)]
    mine: bool,
    /// Only grants still holding access (active or revoke_failed).
    #[serde(default)]
    active: bool,
    /// Page size (default 200, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Where to continue: the `x-next-cursor` header of the previous page.
    cursor: Option<String>,
}

impl ListParams {
    fn query(self, grants_only: bool) -> ListQuery {
        ListQuery {
            state: self.state,
            mine: self.mine,
            holding_access: self.active,
            grants_only,
            limit: self.limit,
            cursor: self.cursor,
        }
    }
}

fn page_response(page: Page<api::AccessRequest>) -> Response {
    let mut response = Json(page.items).into_response();
    if let Some(cursor) = page.next_cursor.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(NEXT_CURSOR_HEADER, cursor);
    }
    response
}

#[utoipa::path(get, path = "/v1/requests", tag = "requests", params(ListParams),
    responses((status = 200, description = "Requests the caller may see, newest first", body = Vec<api::AccessRequest>,
               headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last page")))))]
pub async fn list_requests(
    State(app): State<App>,
    caller: Caller,
    QueryOf(params): QueryOf<ListParams>,
) -> HttpResult<Response> {
    Ok(page_response(app.list_requests(&caller, params.query(false)).await?))
}

#[utoipa::path(get, path = "/v1/grants", tag = "grants", params(ListParams),
    responses((status = 200, description = "Requests that became grants, newest first", body = Vec<api::AccessRequest>,
               headers(("x-next-cursor" = String, description = "Cursor of the next page; absent on the last page")))))]
pub async fn list_grants(
    State(app): State<App>,
    caller: Caller,
    QueryOf(params): QueryOf<ListParams>,
) -> HttpResult<Response> {
    Ok(page_response(app.list_requests(&caller, params.query(true)).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// Long-poll: answer once the request's version is greater than this.
    wait_version: Option<u64>,
    /// Longest wait in seconds (default 25, at most 60).
    #[param(maximum = 60)]
    timeout: Option<u64>,
}

#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "Request id"), WaitParams),
    responses((status = 200, body = api::AccessRequest)))]
pub async fn get_request(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
    QueryOf(query): QueryOf<WaitParams>,
) -> HttpResult<Json<api::AccessRequest>> {
    let request = match query.wait_version {
        Some(after) => {
            app.wait_request(&caller, id, after, query.timeout.unwrap_or(25))
                .await?
        }
        None => app.get_request(&caller, id).await?.0,
    };
    Ok(Json(request))
}

#[utoipa::path(post, path = "/v1/requests/{id}/approve", tag = "requests", request_body = api::DecisionBody,
    params(("id" = String, Path, description = "Request id")), responses((status = 200, body = api::AccessRequest)))]
pub async fn approve(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
    body: Bytes,
) -> HttpResult<Json<api::AccessRequest>> {
    let body: api::DecisionBody = optional_body(&body)?;
    Ok(Json(app.approve(&caller, id, body.comment).await?))
}

#[utoipa::path(post, path = "/v1/requests/{id}/deny", tag = "requests", request_body = api::DecisionBody,
    params(("id" = String, Path, description = "Request id")), responses((status = 200, body = api::AccessRequest)))]
pub async fn deny(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
    body: Bytes,
) -> HttpResult<Json<api::AccessRequest>> {
    let body: api::DecisionBody = optional_body(&body)?;
    Ok(Json(app.deny(&caller, id, body.comment).await?))
}

#[utoipa::path(post, path = "/v1/requests/{id}/cancel", tag = "requests",
    params(("id" = String, Path, description = "Request id")), responses((status = 200, body = api::AccessRequest)))]
pub async fn cancel(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
) -> HttpResult<Json<api::AccessRequest>> {
    Ok(Json(app.cancel(&caller, id).await?))
}

#[utoipa::path(post, path = "/v1/requests/{id}/extend", tag = "grants", request_body = api::ExtendBody,
    params(("id" = String, Path, description = "Grant id")),
    responses((status = 200, description = "the grant with its new extension last in `extensions`", body = api::AccessRequest)))]
pub async fn extend(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
    JsonBody(body): JsonBody<api::ExtendBody>,
) -> HttpResult<Json<api::AccessRequest>> {
    Ok(Json(app.extend(&caller, id, body).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReviewParams {
    /// Include acknowledged reviews.
    #[serde(default)]
    all: bool,
}

#[utoipa::path(get, path = "/v1/reviews", tag = "grants", params(ReviewParams),
    responses((status = 200, description = "break-glass grants with their reviews", body = Vec<api::AccessRequest>)))]
pub async fn list_reviews(
    State(app): State<App>,
    caller: Caller,
    QueryOf(query): QueryOf<ReviewParams>,
) -> HttpResult<Json<Vec<api::AccessRequest>>> {
    Ok(Json(app.list_reviews(&caller, query.all).await?))
}

#[utoipa::path(post, path = "/v1/reviews/{id}/ack", tag = "grants", request_body = api::ReviewAckBody,
    params(("id" = String, Path, description = "Grant id")), responses((status = 200, body = api::AccessRequest)))]
pub async fn ack_review(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
    JsonBody(body): JsonBody<api::ReviewAckBody>,
) -> HttpResult<Json<api::AccessRequest>> {
    Ok(Json(app.ack_review(&caller, id, body.comment).await?))
}

#[utoipa::path(get, path = "/v1/requests/{id}/credentials", tag = "credentials",
    params(("id" = String, Path, description = "Grant id")),
    responses((status = 200, body = api::Credential, headers(("cache-control" = String, description = "no-store")))))]
pub async fn credentials(State(app): State<App>, caller: Caller, Segment(id): Segment) -> HttpResult<Response> {
    let credential = app.credentials(&caller, id).await?;
    // Secrets must not linger in caches.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(credential)).into_response())
}

#[utoipa::path(post, path = "/v1/grants/{id}/revoke", tag = "grants", request_body = api::RevokeBody,
    params(("id" = String, Path, description = "Grant id")), responses((status = 200, body = api::AccessRequest)))]
pub async fn revoke(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
    JsonBody(body): JsonBody<api::RevokeBody>,
) -> HttpResult<Json<api::AccessRequest>> {
    Ok(Json(app.revoke_grant(&caller, id, body.reason).await?))
}

#[utoipa::path(post, path = "/v1/grants/{id}/release", tag = "grants",
    params(("id" = String, Path, description = "Grant id")), responses((status = 200, body = api::AccessRequest)))]
pub async fn release(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
) -> HttpResult<Json<api::AccessRequest>> {
    Ok(Json(app.release_grant(&caller, id).await?))
}

#[utoipa::path(post, path = "/v1/introspect", tag = "credentials",
    request_body(content = api::IntrospectBody, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = api::Introspection)))]
pub async fn introspect(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResult<Json<api::Introspection>> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let parsed: api::IntrospectBody = if is_json {
        serde_json::from_slice(&body).map_err(|e| {
            HttpError(AppError::invalid(
                ErrorCode::InvalidJson,
                format!("invalid JSON body: {e}"),
            ))
        })?
    } else {
        serde_urlencoded::from_bytes(&body).map_err(|e| {
            HttpError(AppError::invalid(
                ErrorCode::InvalidForm,
                format!("expected form field `token`: {e}"),
            ))
        })?
    };
    Ok(Json(app.introspect(&caller, &parsed.token).await?))
}
