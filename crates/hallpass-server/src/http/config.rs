//! Routes for the access configuration: targets, roles, approval flows,
//! policies and `apply`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hallpass_api::{self as api, ConfigKind, ErrorCode};

use super::error::{HttpError, HttpResult};
use super::extract::{JsonBody, Segment};
use crate::app::{App, AppError, Caller};

pub(super) fn check_path_name(path: &str, body: &str) -> HttpResult<()> {
    if path == body {
        Ok(())
    } else {
        Err(HttpError(AppError::invalid(
            ErrorCode::NameMismatch,
            format!("the URL names {path:?} but the body names {body:?}"),
        )))
    }
}

#[utoipa::path(get, path = "/v1/targets", tag = "configuration", responses((status = 200, body = Vec<api::Target>)))]
pub async fn list_targets(State(app): State<App>, caller: Caller) -> HttpResult<Json<Vec<api::Target>>> {
    Ok(Json(app.list_targets(&caller).await?))
}

#[utoipa::path(get, path = "/v1/targets/{name}", tag = "configuration",
    params(("name" = api::formats::Name, Path, description = "Target name")), responses((status = 200, body = api::Target)))]
pub async fn get_target(
    State(app): State<App>,
    caller: Caller,
    Segment(name): Segment,
) -> HttpResult<Json<api::Target>> {
    Ok(Json(app.get_target(&caller, name).await?))
}

#[utoipa::path(put, path = "/v1/targets/{name}", tag = "configuration", request_body = api::TargetSpec,
    params(("name" = api::formats::Name, Path, description = "Target name")), responses((status = 200, body = api::Target)))]
pub async fn put_target(
    State(app): State<App>,
    caller: Caller,
    Segment(name): Segment,
    JsonBody(spec): JsonBody<api::TargetSpec>,
) -> HttpResult<Json<api::Target>> {
    check_path_name(&name, &spec.name)?;
    Ok(Json(app.put_target(&caller, spec).await?))
}

#[utoipa::path(delete, path = "/v1/targets/{name}", tag = "configuration",
    params(("name" = api::formats::Name, Path, description = "Target name")), responses((status = 204, description = "deleted")))]
pub async fn delete_target(State(app): State<App>, caller: Caller, Segment(name): Segment) -> HttpResult<StatusCode> {
    app.delete_config(&caller, ConfigKind::Target, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/targets/{name}/test", tag = "configuration",
    params(("name" = api::formats::Name, Path, description = "Target name")),
    responses((status = 200, description = "What the target's admin credentials can and cannot do", body = api::TargetTest)))]
pub async fn test_target(
    State(app): State<App>,
    caller: Caller,
    Segment(name): Segment,
) -> HttpResult<Json<api::TargetTest>> {
    Ok(Json(app.test_target(&caller, name).await?))
}

#[utoipa::path(post, path = "/v1/targets/{name}/rotate", tag = "configuration",
    params(("name" = api::formats::Name, Path, description = "Target name")),
    responses((status = 200, description = "The admin password was replaced by one only Hallpass knows", body = api::RotateResult)))]
pub async fn rotate_target(
    State(app): State<App>,
    caller: Caller,
    Segment(name): Segment,
) -> HttpResult<Json<api::RotateResult>> {
    Ok(Json(app.rotate_target(&caller, name).await?))
}

#[utoipa::path(get, path = "/v1/targets/{name}/krl", tag = "configuration", security(()),
    params(("name" = api::formats::Name, Path, description = "Target name")),
    responses((status = 200, description = "The target's OpenSSH key revocation list (for sshd's RevokedKeys)",
        content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "no such target, or its type keeps no revocation list", body = api::ErrorBody)))]
pub async fn target_krl(State(app): State<App>, Segment(name): Segment) -> HttpResult<Response> {
    let list = app.revocation_list(name).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        list,
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/roles", tag = "configuration", responses((status = 200, body = Vec<api::Role>)))]
pub async fn list_roles(State(app): State<App>, caller: Caller) -> HttpResult<Json<Vec<api::Role>>> {
    Ok(Json(app.list_roles(&caller).await?))
}

#[utoipa::path(get, path = "/v1/roles/{name}", tag = "configuration",
    params(("name" = api::formats::Name, Path, description = "Role name")), responses((status = 200, body = api::Role)))]
pub async fn get_role(State(app): State<App>, caller: Caller, Segment(name): Segment) -> HttpResult<Json<api::Role>> {
    Ok(Json(app.get_role(&caller, name).await?))
}

#[utoipa::path(put, path = "/v1/roles/{name}", tag = "configuration", request_body = api::RoleSpec,
    params(("name" = api::formats::Name, Path, description = "Role name")), responses((status = 200, body = api::Role)))]
pub async fn put_role(
    State(app): State<App>,
    caller: Caller,
    Segment(name): Segment,
    JsonBody(spec): JsonBody<api::RoleSpec>,
) -> HttpResult<Json<api::Role>> {
    check_path_name(&name, &spec.name)?;
    Ok(Json(app.put_role(&caller, spec).await?))
}

#[utoipa::path(delete, path = "/v1/roles/{name}", tag = "configuration",
    params(("name" = api::formats::Name, Path, description = "Role name")), responses((status = 204, description = "deleted")))]
pub async fn delete_role(State(app): State<App>, caller: Caller, Segment(name): Segment) -> HttpResult<StatusCode> {
    app.delete_config(&caller, ConfigKind::Role, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/approval-flows", tag = "configuration", responses((status = 200, body = Vec<api::ApprovalFlow>)))]
pub async fn list_flows(State(app): State<App>, caller: Caller) -> HttpResult<Json<Vec<api::ApprovalFlow>>> {
    Ok(Json(app.list_flows(&caller).await?))
}

#[utoipa::path(get, path = "/v1/approval-flows/{name}", tag = "configuration",
    params(("name" = api::formats::Name, Path, description = "Approval flow name")), responses((status = 200, body = api::ApprovalFlow)))]
pub async fn get_flow(
    State(app): State<App>,
    caller: Caller,
    Segment(name): Segment,
) -> HttpResult<Json<api::ApprovalFlow>> {
    Ok(Json(app.get_flow(&caller, name).await?))
}

#[utoipa::path(put, path = "/v1/approval-flows/{name}", tag = "configuration", request_body = api::ApprovalFlowSpec,
    params(("name" = api::formats::Name, Path, description = "Approval flow name")), responses((status = 200, body = api::ApprovalFlow)))]
pub async fn put_flow(
    State(app): State<App>,
    caller: Caller,
    Segment(name): Segment,
    JsonBody(spec): JsonBody<api::ApprovalFlowSpec>,
) -> HttpResult<Json<api::ApprovalFlow>> {
    check_path_name(&name, &spec.name)?;
    Ok(Json(app.put_flow(&caller, spec).await?))
}

#[utoipa::path(delete, path = "/v1/approval-flows/{name}", tag = "configuration",
    params(("name" = api::formats::Name, Path, description = "Approval flow name")), responses((status = 204, description = "deleted")))]
pub async fn delete_flow(State(app): State<App>, caller: Caller, Segment(name): Segment) -> HttpResult<StatusCode> {
    app.delete_config(&caller, ConfigKind::ApprovalFlow, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/policies", tag = "policies", responses((status = 200, body = Vec<api::Policy>)))]
pub async fn list_policies(State(app): State<App>, caller: Caller) -> HttpResult<Json<Vec<api::Policy>>> {
    Ok(Json(app.list_policies(&caller).await?))
}

#[utoipa::path(get, path = "/v1/policies/{name}", tag = "policies",
    params(("name" = api::formats::Name, Path, description = "Policy name")), responses((status = 200, body = api::Policy)))]
pub async fn get_policy(
    State(app): State<App>,
    caller: Caller,
    Segment(name): Segment,
) -> HttpResult<Json<api::Policy>> {
    Ok(Json(app.get_policy(&caller, name).await?))
}

#[utoipa::path(put, path = "/v1/policies/{name}", tag = "policies", request_body = api::PolicyBody,
    params(("name" = api::formats::Name, Path, description = "Policy name")),
    responses((status = 200, body = api::Policy)))]
pub async fn put_policy(
    State(app): State<App>,
    caller: Caller,
    Segment(name): Segment,
    JsonBody(body): JsonBody<api::PolicyBody>,
) -> HttpResult<Json<api::Policy>> {
    let spec = api::PolicySpec {
        name,
        source: body.source,
    };
    Ok(Json(app.put_policy(&caller, spec).await?))
}

#[utoipa::path(delete, path = "/v1/policies/{name}", tag = "policies",
    params(("name" = api::formats::Name, Path, description = "Policy name")), responses((status = 204, description = "deleted")))]
pub async fn delete_policy(State(app): State<App>, caller: Caller, Segment(name): Segment) -> HttpResult<StatusCode> {
    app.delete_config(&caller, ConfigKind::Policy, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/policies/eval", tag = "policies", request_body = api::PolicyEvalBody,
    responses((status = 200, description = "what the stored policies decide for this input", body = api::PolicyDecision)))]
pub async fn eval_policy(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<api::PolicyEvalBody>,
) -> HttpResult<Json<api::PolicyDecision>> {
    let decision = app.eval_policy(&caller, body.input).await?;
    Ok(Json(crate::app::wire::policy(&decision)))
}

#[utoipa::path(post, path = "/v1/apply", tag = "configuration", request_body = api::ApplyRequest,
    responses((status = 200, body = api::ApplyResponse)))]
pub async fn apply(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<api::ApplyRequest>,
) -> HttpResult<Json<api::ApplyResponse>> {
    Ok(Json(app.apply(&caller, body).await?))
}
