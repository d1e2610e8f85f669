//! Extractors whose rejections use the API's error shape and say what was
//! wrong: the bearer token (to a [`Caller`]), JSON bodies, optional bodies,
//! query strings and path segments.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::Response;
use hallpass_api::ErrorCode;
use serde::de::DeserializeOwned;

use super::error::{HttpError, error_response};
use crate::app::tokens::TOKEN_PREFIX;
use crate::app::{App, AppError, Caller};

fn invalid(code: ErrorCode, message: impl Into<String>) -> HttpError {
    HttpError(AppError::invalid(code, message))
}

impl FromRequestParts<App> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let remote = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            HttpError(AppError::unauthenticated(
                ErrorCode::MissingToken,
                "no API token: send `Authorization: Bearer hp_...`",
            ))
        })?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|secret| secret.starts_with(TOKEN_PREFIX))
            .ok_or_else(|| {
                HttpError(AppError::unauthenticated(
                    ErrorCode::InvalidToken,
                    "malformed Authorization header: expected `Bearer hp_...`",
                ))
            })?;
        Ok(app.authenticate(secret, remote).await?)
    }
}

/// A JSON body; serde's message names the field, line and column.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Response;

    /// Statuses as HTTP has them: 413 too large, 415 not JSON, 400 not
    /// valid JSON, 422 valid JSON of the wrong shape (serde names the field).
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => {
                let status = rejection.status();
                let (code, message) = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => (
                        ErrorCode::PayloadTooLarge,
                        "request body is larger than the server's limit".to_string(),
                    ),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                        ErrorCode::UnsupportedMediaType,
                        "send the body as JSON with `Content-Type: application/json`".to_string(),
                    ),
                    _ => (
                        ErrorCode::InvalidJson,
                        format!("invalid JSON body: {}", rejection.body_text()),
                    ),
                };
                Err(error_response(status, code, message, None))
            }
        }
    }
}

/// Reads an optional JSON body: empty means the default.
pub fn optional_body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, HttpError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| invalid(ErrorCode::InvalidJson, format!("invalid JSON body: {e}")))
}

/// A query string, refused with a clear message when it does not parse.
pub struct QueryOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryOf<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryOf(value))
            .map_err(|e| invalid(ErrorCode::InvalidQuery, e.body_text()))
    }
}

/// One path segment (a name or an id).
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Segment(value))
            .map_err(|e| invalid(ErrorCode::InvalidQuery, format!("invalid path: {}", e.body_text())))
    }
}
