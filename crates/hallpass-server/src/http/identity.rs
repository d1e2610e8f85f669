//! Routes for who is calling: `whoami`, tokens and principal locks.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hallpass_api as api;

use super::error::HttpResult;
use super::extract::{JsonBody, Remote, Segment};
use crate::app::{App, Caller};

#[utoipa::path(get, path = "/v1/whoami", tag = "identity", responses((status = 200, body = api::WhoAmI)))]
pub async fn whoami(State(app): State<App>, caller: Caller) -> Json<api::WhoAmI> {
    Json(app.whoami(&caller))
}

#[utoipa::path(post, path = "/v1/tokens", tag = "identity", request_body = api::CreateToken,
    responses((status = 201, body = api::CreatedToken)))]
pub async fn create_token(
    State(app): State<App>,
    caller: Caller,
    JsonBody(body): JsonBody<api::CreateToken>,
) -> HttpResult<(StatusCode, Json<api::CreatedToken>)> {
    Ok((StatusCode::CREATED, Json(app.create_token(&caller, body).await?)))
}

/// Exchanges a workload's OIDC token (GitHub Actions, GitLab CI, ...) from an
/// issuer the server configuration trusts for a short-lived API token: the
/// first `workload_identity` rule whose claims match names its principal and
/// groups. No bearer token: the JWT is the credential. Refusals (expired, not
/// yet valid, wrong audience or issuer, `alg: none`, a bad signature, no
/// matching rule) are 401 with the reason, and count as failed
/// authentications of the caller's address.
#[utoipa::path(post, path = "/v1/auth/oidc", tag = "identity", security(()), request_body = api::WorkloadTokenExchange,
    responses(
        (status = 201, body = api::CreatedToken),
        (status = 400, description = "the body is not valid JSON", body = api::ErrorBody),
        (status = 401, description = "the workload token was refused; the message says why", body = api::ErrorBody),
        (status = 404, description = "the server trusts no workload identity issuer", body = api::ErrorBody),
        (status = 429, description = "too many failed authentications from this address; see Retry-After", body = api::ErrorBody),
        (status = 502, description = "the issuer's signing keys could not be fetched", body = api::ErrorBody),
    ))]
pub async fn exchange_workload_token(
    State(app): State<App>,
    Remote(remote): Remote,
    JsonBody(body): JsonBody<api::WorkloadTokenExchange>,
) -> HttpResult<(StatusCode, Json<api::CreatedToken>)> {
    Ok((
        StatusCode::CREATED,
        Json(app.exchange_workload_token(&body.token, remote).await?),
    ))
}

/// `hallpass login`: trades the one-time code the browser handed the CLI
/// (after single sign-on and the person's "Allow") and the CLI's PKCE
/// verifier for a token. A code works once, for a minute.
#[utoipa::path(post, path = "/v1/auth/cli/token", tag = "identity", security(()), request_body = api::CliTokenExchange,
    responses(
        (status = 201, body = api::CreatedToken),
        (status = 400, description = "the body is not valid JSON", body = api::ErrorBody),
        (status = 401, description = "the code is unknown, used, expired or not for this verifier", body = api::ErrorBody),
        (status = 404, description = "single sign-on is not configured", body = api::ErrorBody),
        (status = 429, description = "too many failed authentications from this address; see Retry-After", body = api::ErrorBody),
    ))]
pub async fn exchange_cli_code(
    State(app): State<App>,
    Remote(remote): Remote,
    JsonBody(body): JsonBody<api::CliTokenExchange>,
) -> HttpResult<(StatusCode, Json<api::CreatedToken>)> {
    let token = app.cli_token(&body.code, &body.code_verifier, remote).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

/// Ends the caller's own token or session (`hallpass logout`), with its
/// audit event; allowed even for the last admin token.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "identity", responses((status = 204, description = "the token is revoked")))]
pub async fn sign_out(State(app): State<App>, caller: Caller) -> HttpResult<StatusCode> {
    app.sign_out(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/tokens", tag = "identity", responses((status = 200, body = Vec<api::TokenInfo>)))]
pub async fn list_tokens(State(app): State<App>, caller: Caller) -> HttpResult<Json<Vec<api::TokenInfo>>> {
    Ok(Json(app.list_tokens(&caller).await?))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "identity",
    params(("id" = String, Path, description = "Token id (`tok_...`)")),
    responses((status = 204, description = "revoked")))]
pub async fn revoke_token(State(app): State<App>, caller: Caller, Segment(id): Segment) -> HttpResult<StatusCode> {
    app.revoke_token(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/locks", tag = "identity", responses((status = 200, body = Vec<api::LockInfo>)))]
pub async fn list_locks(State(app): State<App>, caller: Caller) -> HttpResult<Json<Vec<api::LockInfo>>> {
    Ok(Json(app.list_locks(&caller).await?))
}

#[utoipa::path(post, path = "/v1/principals/{name}/lock", tag = "identity", request_body = api::LockBody,
    params(("name" = api::formats::Name, Path, description = "Principal name")),
    responses((status = 200, description = "locked: tokens revoked, requests withdrawn, grants ended", body = api::LockInfo)))]
pub async fn lock(
    State(app): State<App>,
    caller: Caller,
    Segment(name): Segment,
    JsonBody(body): JsonBody<api::LockBody>,
) -> HttpResult<Json<api::LockInfo>> {
    Ok(Json(app.lock_principal(&caller, name, body.reason).await?))
}

#[utoipa::path(delete, path = "/v1/principals/{name}/lock", tag = "identity",
    params(("name" = api::formats::Name, Path, description = "Principal name")),
    responses((status = 204, description = "unlocked")))]
pub async fn unlock(State(app): State<App>, caller: Caller, Segment(name): Segment) -> HttpResult<StatusCode> {
    app.unlock_principal(&caller, name).await?;
    Ok(StatusCode::NO_CONTENT)
}
