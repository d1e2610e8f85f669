//! The OpenAPI document: generated from the handlers' annotations, then
//! completed in one place with what every operation shares (the bearer
//! security scheme, the error responses it can give, the request id
//! header), so no operation can forget one.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

use super::{audit, config, identity, requests};
use hallpass_api as api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hallpass API",
        description = "Just-in-time access broker. Authenticate with `Authorization: Bearer hp_...`. \
                       Every error is `{\"error\": {\"code\", \"message\", \"request_id\"}}`."
    ),
    security(("bearer" = [])),
    paths(
        super::health,
        metrics,
        super::jwks,
        identity::whoami,
        identity::create_token,
        identity::list_tokens,
        identity::revoke_token,
        identity::list_locks,
        identity::lock,
        identity::unlock,
        config::list_targets,
        config::get_target,
        config::put_target,
        config::delete_target,
        config::list_roles,
        config::get_role,
        config::put_role,
        config::delete_role,
        config::list_flows,
        config::get_flow,
        config::put_flow,
        config::delete_flow,
        config::list_policies,
        config::get_policy,
        config::put_policy,
        config::delete_policy,
        config::eval_policy,
        config::apply,
        requests::create_request,
        requests::list_requests,
        requests::get_request,
        requests::approve,
        requests::deny,
        requests::cancel,
        requests::extend,
        requests::list_reviews,
        requests::ack_review,
        requests::credentials,
        requests::list_grants,
        requests::revoke,
        requests::release,
        requests::introspect,
        audit::audit_list,
        audit::audit_export,
        audit::audit_verify,
        audit::audit_public_key
    ),
    components(schemas(api::ErrorBody, api::ErrorDetail, api::ErrorCode))
)]
struct ApiDoc;

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "system", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn metrics() {}

/// Statuses an authenticated operation may answer with the error body,
/// whatever it does: bad input, authentication, authorization, missing
/// things, conflicts, limits, timeouts, and failures of the server or a
/// target.
const ERROR_STATUSES: [(u16, &str); 13] = [
    (400, "invalid input; nothing changed"),
    (401, "missing, unknown, revoked or expired token"),
    (403, "not allowed for this caller"),
    (404, "no such thing (or not one the caller may see)"),
    (408, "the request took too long"),
    (409, "the current state refuses it"),
    (413, "the body is larger than the server accepts"),
    (415, "the body is not JSON"),
    (422, "the body is JSON of the wrong shape"),
    (429, "too many calls; see Retry-After"),
    (500, "internal error; the server log has the details"),
    (502, "a target system failed"),
    (503, "contention; nothing changed, try again"),
];

/// The document, completed.
pub fn build() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            add_error_responses(operation);
        }
    }
    doc
}

fn add_error_responses(operation: &mut Operation) {
    // Public operations (`security(())`) still share the server errors.
    let public = operation
        .security
        .as_ref()
        .is_some_and(|requirements| requirements.iter().all(|r| r == &Default::default()));
    for (status, description) in ERROR_STATUSES {
        if public && !matches!(status, 408 | 500 | 503) {
            continue;
        }
        let key = status.to_string();
        if operation.responses.responses.contains_key(&key) {
            continue;
        }
        let response = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))))
                    .build(),
            )
            .build();
        operation.responses.responses.insert(key, RefOr::T(response));
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(build())
}
