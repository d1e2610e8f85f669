//! Routes for the audit log: pages, the JSON Lines export, verification.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hallpass_api as api;
use serde::Deserialize;

use super::error::HttpResult;
use super::extract::{QueryOf, int64};
use crate::app::audit::AuditQuery;
use crate::app::{App, Caller};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only events with a sequence number greater than this.
    #[serde(default, deserialize_with = "int64")]
    since: Option<u64>,
    /// Only events of this request.
    request: Option<String>,
    /// At most this many: 1000 when absent; larger values count as 10000,
    /// and 0 as 1.
    #[param(value_type = Option<u64>, maximum = 4294967295u64)]
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// Only events with a sequence number greater than this.
    #[serde(default, deserialize_with = "int64")]
    since: Option<u64>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = Vec<api::AuditEvent>)))]
pub async fn audit_list(
    State(app): State<App>,
    caller: Caller,
    QueryOf(query): QueryOf<AuditParams>,
) -> HttpResult<Json<Vec<api::AuditEvent>>> {
    let query = AuditQuery {
        since: query.since.unwrap_or(0),
        request: query.request,
        limit: query.limit.unwrap_or(1000),
    };
    Ok(Json(app.audit_page(&caller, query).await?))
}

#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", params(ExportParams),
    responses((status = 200, description = "One audit event per line (JSON Lines)", content_type = "application/x-ndjson", body = String)))]
pub async fn audit_export(
    State(app): State<App>,
    caller: Caller,
    QueryOf(query): QueryOf<ExportParams>,
) -> HttpResult<Response> {
    export_response(&app, &caller, query.since.unwrap_or(0)).await
}

/// The log from `since` on as JSON Lines, streamed page by page.
pub async fn export_response(app: &App, caller: &Caller, since: u64) -> HttpResult<Response> {
    let pages = app.audit_export(caller, since).await?;
    let chunks = pages.map(|page| {
        let events = page.map_err(|error| std::io::Error::other(error.message))?;
        let mut chunk = Vec::with_capacity(events.len() * 400);
        for event in &events {
            serde_json::to_writer(&mut chunk, event).map_err(std::io::Error::other)?;
            chunk.push(b'\n');
        }
        Ok::<_, std::io::Error>(Bytes::from(chunk))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(chunks),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/audit/public-key", tag = "audit", security(()),
    responses((status = 200, description = "The key that signs audit checkpoints (JWK and PEM)", body = api::AuditPublicKey)))]
pub async fn audit_public_key(State(app): State<App>) -> Json<api::AuditPublicKey> {
    Json(app.audit_public_key())
}

#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", responses((status = 200, body = api::VerifyReport)))]
pub async fn audit_verify(State(app): State<App>, caller: Caller) -> HttpResult<Json<api::VerifyReport>> {
    Ok(Json(app.audit_verify(&caller).await?))
}
