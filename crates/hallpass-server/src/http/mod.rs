//! The HTTP front end: the only module that knows URLs, status codes and
//! axum. [`router`] lists every route; handlers parse, call the service
//! layer ([`crate::app`]) and map its answer. The OpenAPI document is
//! generated from the handlers' annotations ([`openapi`]).

pub mod audit;
pub mod config;
pub mod error;
pub mod events;
pub mod extract;
pub mod identity;
pub mod listener;
pub mod notifications;
pub mod openapi;
pub mod requests;
pub mod slack;
pub mod web;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, Request};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use hallpass_api as api;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::{App, AppError};
use error::{HttpError, REQUEST_ID_HEADER};

/// How the front end behaves.
#[derive(Clone)]
pub struct HttpSettings {
    pub max_body_bytes: usize,
    /// Longest a request may take before it is answered 408; above the
    /// longest long-poll.
    pub request_timeout: Duration,
    pub metrics: PrometheusHandle,
}

/// Request ids: UUIDv7 (time-ordered), unless the client sent one.
#[derive(Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        uuid::Uuid::now_v7().to_string().parse().ok().map(RequestId::new)
    }
}

/// Every route of the API.
pub fn router(app: App, settings: HttpSettings) -> Router {
    let metrics = settings.metrics.clone();
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let routes = Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(move || std::future::ready(metrics.render())))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/whoami", get(identity::whoami))
        .route("/v1/tokens", get(identity::list_tokens).post(identity::create_token))
        .route("/v1/tokens/{id}", delete(identity::revoke_token))
        .route("/v1/auth/oidc", post(identity::exchange_workload_token))
        .route("/v1/auth/cli/token", post(identity::exchange_cli_code))
        .route("/v1/auth/logout", post(identity::sign_out))
        .route("/v1/locks", get(identity::list_locks))
        .route(
            "/v1/principals/{name}/lock",
            post(identity::lock).delete(identity::unlock),
        )
        .merge(config_routes())
        .route("/v1/apply", post(config::apply))
        .route(
            "/v1/requests",
            get(requests::list_requests).post(requests::create_request),
        )
        .route("/v1/requests/{id}", get(requests::get_request))
        .route("/v1/requests/{id}/approve", post(requests::approve))
        .route("/v1/requests/{id}/deny", post(requests::deny))
        .route("/v1/requests/{id}/cancel", post(requests::cancel))
        .route("/v1/requests/{id}/extend", post(requests::extend))
        .route("/v1/requests/{id}/credentials", get(requests::credentials))
        .route("/v1/reviews", get(requests::list_reviews))
        .route("/v1/reviews/{id}/ack", post(requests::ack_review))
        .route("/v1/grants", get(requests::list_grants))
        .route("/v1/grants/{id}/revoke", post(requests::revoke))
        .route("/v1/grants/{id}/release", post(requests::release))
        .route("/v1/introspect", post(requests::introspect))
        .route("/v1/integrations/slack/interactions", post(slack::interactions))
        .route("/v1/audit", get(audit::audit_list))
        .route("/v1/audit/export", get(audit::audit_export))
        .route("/v1/audit/verify", get(audit::audit_verify))
        .route("/v1/audit/public-key", get(audit::audit_public_key))
        .route("/v1/events", get(events::events))
        .merge(web::routes())
        .fallback(not_found)
        .with_state(app);
    routes
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ))
        .layer(axum::middleware::from_fn(error::shape_layer_errors))
        .layer(axum::middleware::from_fn(error::add_request_id))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(access_log_span)
                .on_response(log_response),
        )
        .layer(SetRequestIdLayer::new(request_id, NewRequestId))
}

/// The access configuration: targets (with their checks, rotation and
/// revocation list), roles, approval flows and policies.
fn config_routes() -> Router<App> {
    Router::new()
        .route("/v1/targets", get(config::list_targets))
        .route(
            "/v1/targets/{name}",
            get(config::get_target)
                .put(config::put_target)
                .delete(config::delete_target),
        )
        .route("/v1/targets/{name}/test", post(config::test_target))
        .route("/v1/targets/{name}/rotate", post(config::rotate_target))
        .route("/v1/targets/{name}/krl", get(config::target_krl))
        .route("/v1/roles", get(config::list_roles))
        .route(
            "/v1/roles/{name}",
            get(config::get_role).put(config::put_role).delete(config::delete_role),
        )
        .route("/v1/approval-flows", get(config::list_flows))
        .route(
            "/v1/approval-flows/{name}",
            get(config::get_flow).put(config::put_flow).delete(config::delete_flow),
        )
        .route("/v1/notifiers", get(notifications::list_notifiers))
        .route(
            "/v1/notifiers/{name}",
            get(notifications::get_notifier)
                .put(notifications::put_notifier)
                .delete(notifications::delete_notifier),
        )
        .route("/v1/notifications/failed", get(notifications::failed_notifications))
        .route("/v1/notifications/{id}/retry", post(notifications::retry_notification))
        .route("/v1/policies", get(config::list_policies))
        .route("/v1/policies/eval", post(config::eval_policy))
        .route(
            "/v1/policies/{name}",
            get(config::get_policy)
                .put(config::put_policy)
                .delete(config::delete_policy),
        )
}

/// Paths that load balancers and scrapers poll every few seconds: logged at
/// DEBUG, so the access log at INFO holds what people and clients did.
const PROBE_PATHS: [&str; 2] = ["/healthz", "/metrics"];

/// The access log's span: method, path (never the query, which may carry
/// a cursor, nor any header), and the request id. Probes get a DEBUG span.
fn access_log_span<B>(request: &Request<B>) -> tracing::Span {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let (method, path) = (request.method(), request.uri().path());
    if PROBE_PATHS.contains(&path) {
        tracing::debug_span!("http", method = %method, path = %path, request_id = %id)
    } else {
        tracing::info_span!("http", method = %method, path = %path, request_id = %id)
    }
}

/// One line per answered request, at the level of its span; nothing when
/// that level is off (the span is then disabled).
fn log_response<B>(response: &axum::http::Response<B>, latency: Duration, span: &tracing::Span) {
    let (status, latency_ms) = (response.status().as_u16(), latency.as_secs_f64() * 1000.0);
    match span.metadata().map(|metadata| *metadata.level()) {
        Some(tracing::Level::INFO) => tracing::info!(status, latency_ms, "request"),
        Some(_) => tracing::debug!(status, latency_ms, "request"),
        None => {}
    }
}

async fn not_found() -> HttpError {
    HttpError(AppError::not_found(
        "no such API route; the routes are listed at /v1/openapi.json",
    ))
}

#[utoipa::path(get, path = "/healthz", tag = "system", security(()), responses((status = 200, body = api::Health)))]
pub async fn health() -> Json<api::Health> {
    Json(api::Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "credentials", security(()),
    responses((status = 200, description = "JSON Web Key Set of the grant-token signing key", body = Object)))]
pub async fn jwks(State(app): State<App>) -> Json<serde_json::Value> {
    Json(app.jwks())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::{Body, Bytes};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::{HttpSettings, api, router};
    use crate::testing;

    /// A request still running at the time limit is answered like every
    /// other error: the API's JSON shape with the request's id. The server
    /// builds this same router with the fixed 75 s limit.
    #[tokio::test]
    async fn a_request_past_the_time_limit_is_answered_408_in_the_error_shape() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _inbox) = testing::app_in(dir.path(), Arc::new(hallpass_core::SystemClock), Vec::new()).unwrap();
        let alice = api::CreateToken {
            principal: "alice".into(),
            groups: vec!["dev".into()],
            ttl: None,
        };
        let token = app
            .create_token(&testing::caller("admin", &["admins"]), alice)
            .await
            .unwrap()
            .token;
        let settings = HttpSettings {
            max_body_bytes: 1024,
            request_timeout: Duration::from_millis(100),
            metrics: crate::telemetry::install_metrics(),
        };
        // A body that never arrives: the handler waits for it until the limit.
        let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let request = Request::post("/v1/apply")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let response = router(app, settings).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        let id = response.headers()["x-request-id"].to_str().unwrap().to_string();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "timeout", "{body}");
        assert_eq!(body["error"]["request_id"], id.as_str(), "{body}");
    }
}
