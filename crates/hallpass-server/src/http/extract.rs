//! Extractors whose rejections use the API's error shape and say what was
//! wrong: the bearer token (to a [`Caller`]), the caller's address, JSON
//! bodies, optional bodies, query strings and path segments.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::response::Response;
use hallpass_api::ErrorCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::{HttpError, error_response};
use crate::app::{App, AppError, Caller};

fn invalid(code: ErrorCode, message: impl Into<String>) -> HttpError {
    HttpError(AppError::invalid(code, message))
}

/// The caller's address, when the listener recorded it (failed
/// authentications are limited per address).
pub struct Remote(pub Option<IpAddr>);

impl Remote {
    pub(crate) fn of(parts: &Parts) -> Remote {
        Remote(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Remote {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Remote::of(parts))
    }
}

impl FromRequestParts<App> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let Remote(remote) = Remote::of(parts);
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            HttpError(AppError::unauthenticated(
                ErrorCode::MissingToken,
                "no API token: send `Authorization: Bearer hp_...`",
            ))
        })?;
        // Anything but `Bearer hp_...` is a failed authentication like an
        // unknown token (logged, counted, limited per address): the service
        // layer is handed whatever was sent.
        let value = header.to_str().unwrap_or_default();
        let secret = value.strip_prefix("Bearer ").unwrap_or(value).trim();
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

/// The status for a body that did not parse: 400 when it is not JSON at
/// all, 422 when it is JSON of the wrong shape (as [`JsonBody`] answers).
fn json_error(error: &serde_json::Error) -> Response {
    let status = match error.classify() {
        serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_REQUEST,
    };
    error_response(
        status,
        ErrorCode::InvalidJson,
        format!("invalid JSON body: {error}"),
        None,
    )
}

/// The body as bytes; 413 past the server's limit.
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Response> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        let status = rejection.status();
        let (code, message) = if status == StatusCode::PAYLOAD_TOO_LARGE {
            (
                ErrorCode::PayloadTooLarge,
                "request body is larger than the server's limit".to_string(),
            )
        } else {
            (
                ErrorCode::InvalidJson,
                format!("cannot read the request body: {}", rejection.body_text()),
            )
        };
        error_response(status, code, message, None)
    })
}

/// A JSON body that may be left out: an empty (or blank) body, or `null`,
/// means `T::default()`. Any `Content-Type` is read as JSON.
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        serde_json::from_slice::<Option<T>>(&bytes)
            .map(|body| OptionalJsonBody(body.unwrap_or_default()))
            .map_err(|e| json_error(&e))
    }
}

/// A body sent as a form (`application/x-www-form-urlencoded`, also when
/// no `Content-Type` is given) or as JSON (`application/json`), as RFC 7662
/// introspection clients do. A form without the fields `T` needs is 422,
/// like JSON of the wrong shape.
pub struct FormOrJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FormOrJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let bytes = body_bytes(req, state).await?;
        if is_json {
            return serde_json::from_slice(&bytes)
                .map(FormOrJson)
                .map_err(|e| json_error(&e));
        }
        serde_urlencoded::from_bytes(&bytes).map(FormOrJson).map_err(|e| {
            error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidForm,
                format!("invalid form body: {e}; send `token=...`"),
                None,
            )
        })
    }
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

/// For query integers the document declares as `int64` (sequence numbers,
/// versions, seconds): serde would take any `u64`, the document promises
/// no more than `i64::MAX`, and the store counts in `i64`.
pub fn int64<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let value = Option::<u64>::deserialize(deserializer)?;
    match value {
        Some(number) if i64::try_from(number).is_err() => Err(serde::de::Error::custom(format!(
            "{number} is larger than the largest accepted value, {}",
            i64::MAX
        ))),
        _ => Ok(value),
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
