//! Routes for notifiers (configuration) and the notification outbox:
//! dead-lettered deliveries and sending one again.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hallpass_api::{self as api, ConfigKind};
use serde::Deserialize;

use super::config::check_path_name;
use super::error::HttpResult;
use super::extract::{JsonBody, QueryOf, Segment};
use crate::app::{App, Caller};

#[utoipa::path(get, path = "/v1/notifiers", tag = "notifications", responses((status = 200, body = Vec<api::Notifier>)))]
pub async fn list_notifiers(State(app): State<App>, caller: Caller) -> HttpResult<Json<Vec<api::Notifier>>> {
    Ok(Json(app.list_notifiers(&caller).await?))
}

#[utoipa::path(get, path = "/v1/notifiers/{name}", tag = "notifications",
    params(("name" = api::formats::Name, Path, description = "Notifier name")), responses((status = 200, body = api::Notifier)))]
pub async fn get_notifier(
    State(app): State<App>,
    caller: Caller,
    Segment(name): Segment,
) -> HttpResult<Json<api::Notifier>> {
    Ok(Json(app.get_notifier(&caller, name).await?))
}

#[utoipa::path(put, path = "/v1/notifiers/{name}", tag = "notifications", request_body = api::NotifierSpec,
    params(("name" = api::formats::Name, Path, description = "Notifier name")), responses((status = 200, body = api::Notifier)))]
pub async fn put_notifier(
    State(app): State<App>,
    caller: Caller,
    Segment(name): Segment,
    JsonBody(spec): JsonBody<api::NotifierSpec>,
) -> HttpResult<Json<api::Notifier>> {
    check_path_name(&name, &spec.name)?;
    Ok(Json(app.put_notifier(&caller, spec).await?))
}

#[utoipa::path(delete, path = "/v1/notifiers/{name}", tag = "notifications",
    params(("name" = api::formats::Name, Path, description = "Notifier name")), responses((status = 204, description = "deleted; its pending deliveries are dropped")))]
pub async fn delete_notifier(State(app): State<App>, caller: Caller, Segment(name): Segment) -> HttpResult<StatusCode> {
    app.delete_config(&caller, ConfigKind::Notifier, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FailedQuery {
    /// At most this many, oldest first: 1000 when absent; larger values
    /// count as 1000, and 0 as 1.
    #[param(value_type = Option<u64>, maximum = 4294967295u64)]
    limit: Option<u32>,
}

/// Deliveries that gave up after their retry budget. Admins and auditors.
#[utoipa::path(get, path = "/v1/notifications/failed", tag = "notifications", params(FailedQuery),
    responses((status = 200, body = api::DeliveryList)))]
pub async fn failed_notifications(
    State(app): State<App>,
    caller: Caller,
    QueryOf(query): QueryOf<FailedQuery>,
) -> HttpResult<Json<api::DeliveryList>> {
    Ok(Json(app.failed_notifications(&caller, query.limit).await?))
}

/// Sends a dead-lettered delivery again, now, with a fresh retry budget
/// and the same id (receivers de-duplicate on it). Admins only.
#[utoipa::path(post, path = "/v1/notifications/{id}/retry", tag = "notifications",
    params(("id" = String, Path, description = "Delivery id")), responses((status = 200, body = api::Delivery)))]
pub async fn retry_notification(
    State(app): State<App>,
    caller: Caller,
    Segment(id): Segment,
) -> HttpResult<Json<api::Delivery>> {
    Ok(Json(app.retry_notification(&caller, id).await?))
}
