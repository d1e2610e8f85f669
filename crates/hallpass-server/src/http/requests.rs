//! Routes for requests, grants, extensions, reviews, credentials and token
//! introspection.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hallpass_api::{self as api, RequestOutcome, RequestState};
use serde::Deserialize;

use super::error::HttpResult;
use super::extract::{FormOrJson, JsonBody, OptionalJsonBody, QueryOf, Segment, int64};
use crate::app::listing::{ListQuery, Page};
use crate::app::{App, Caller};

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
    /// Page size: 200 when absent; larger values count as 1000, and 0 as 1.
    #[param(value_type = Option<u64>, maximum = 4294967295u64)]
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
    #[serde(default, deserialize_with = "int64")]
    wait_version: Option<u64>,
    /// Longest wait in seconds with `wait_version`: 25 when absent; longer
    /// waits are cut to 60.
    #[serde(default, deserialize_with = "int64")]
    timeout: Option<u64>,
}

#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests",
    params(("id" = api::formats::RequestId, Path, description = "Request id"), WaitParams),
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

#[utoipa::path(post, path = "/v1/requests/{id}/approve", tag = "requests",
    request_body(content = Option<api::DecisionBody>, description = "Optional; an empty body means no comment"),
    params(("id" = api::formats::RequestId, Path, description = "Request id")), responses((status = 200, body = api::AccessRequest)))]
pub async fn approve(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
    OptionalJsonBody(body): OptionalJsonBody<api::DecisionBody>,
) -> HttpResult<Json<api::AccessRequest>> {
    Ok(Json(app.approve(&caller, id, body.comment).await?))
}

#[utoipa::path(post, path = "/v1/requests/{id}/deny", tag = "requests",
    request_body(content = Option<api::DecisionBody>, description = "Optional; an empty body means no comment"),
    params(("id" = api::formats::RequestId, Path, description = "Request id")), responses((status = 200, body = api::AccessRequest)))]
pub async fn deny(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
    OptionalJsonBody(body): OptionalJsonBody<api::DecisionBody>,
) -> HttpResult<Json<api::AccessRequest>> {
    Ok(Json(app.deny(&caller, id, body.comment).await?))
}

#[utoipa::path(post, path = "/v1/requests/{id}/cancel", tag = "requests",
    params(("id" = api::formats::RequestId, Path, description = "Request id")), responses((status = 200, body = api::AccessRequest)))]
pub async fn cancel(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
) -> HttpResult<Json<api::AccessRequest>> {
    Ok(Json(app.cancel(&caller, id).await?))
}

#[utoipa::path(post, path = "/v1/requests/{id}/extend", tag = "grants", request_body = api::ExtendBody,
    params(("id" = api::formats::RequestId, Path, description = "Grant id")),
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
    params(("id" = api::formats::RequestId, Path, description = "Grant id")), responses((status = 200, body = api::AccessRequest)))]
pub async fn ack_review(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
    JsonBody(body): JsonBody<api::ReviewAckBody>,
) -> HttpResult<Json<api::AccessRequest>> {
    Ok(Json(app.ack_review(&caller, id, body.comment).await?))
}

/// The credential of an active grant, for its requester only. A part
/// handed out once (the private key Hallpass made for an SSH grant) is in
/// the first answer's `env` only, and that first fetch is recorded in the
/// audit log (`grant.secret_delivered`); `one_time` says which part and when.
#[utoipa::path(get, path = "/v1/requests/{id}/credentials", tag = "credentials",
    params(("id" = api::formats::RequestId, Path, description = "Grant id")),
    responses((status = 200, body = api::Credential, headers(("cache-control" = String, description = "no-store")))))]
pub async fn credentials(State(app): State<App>, caller: Caller, Segment(id): Segment) -> HttpResult<Response> {
    let credential = app.credentials(&caller, id).await?;
    // Secrets must not linger in caches.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(credential)).into_response())
}

#[utoipa::path(post, path = "/v1/grants/{id}/revoke", tag = "grants", request_body = api::RevokeBody,
    params(("id" = api::formats::RequestId, Path, description = "Grant id")), responses((status = 200, body = api::AccessRequest)))]
pub async fn revoke(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
    JsonBody(body): JsonBody<api::RevokeBody>,
) -> HttpResult<Json<api::AccessRequest>> {
    Ok(Json(app.revoke_grant(&caller, id, body.reason).await?))
}

#[utoipa::path(post, path = "/v1/grants/{id}/release", tag = "grants",
    params(("id" = api::formats::RequestId, Path, description = "Grant id")), responses((status = 200, body = api::AccessRequest)))]
pub async fn release(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
) -> HttpResult<Json<api::AccessRequest>> {
    Ok(Json(app.release_grant(&caller, id).await?))
}

#[utoipa::path(post, path = "/v1/introspect", tag = "credentials",
    request_body(description = "RFC 7662: a form; JSON is accepted too",
        content((api::IntrospectBody = "application/x-www-form-urlencoded"), (api::IntrospectBody = "application/json"))),
    responses((status = 200, body = api::Introspection)))]
pub async fn introspect(
    State(app): State<App>,
    caller: Caller,
    FormOrJson(body): FormOrJson<api::IntrospectBody>,
) -> HttpResult<Json<api::Introspection>> {
    Ok(Json(app.introspect(&caller, &body.token).await?))
}
