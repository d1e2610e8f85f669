//! The HTTP edge of errors: the status for each [`ErrorKind`], the JSON
//! error body, and the request id written into it. Only this module maps
//! the service layer's errors onto HTTP.

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hallpass_api::{ErrorBody, ErrorCode, ErrorDetail};

use crate::app::{AppError, ErrorKind};

/// The header every response carries, and every error body repeats.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// An [`AppError`] on its way out as HTTP.
pub struct HttpError(pub AppError);

impl From<AppError> for HttpError {
    fn from(error: AppError) -> Self {
        HttpError(error)
    }
}

pub type HttpResult<T> = Result<T, HttpError>;

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::TargetFailed => StatusCode::BAD_GATEWAY,
        ErrorKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error as the body will carry it; the request id is added by
/// [`add_request_id`] on the way out.
#[derive(Clone)]
struct RenderedError(ErrorDetail);

/// An error response with `status`, `code` and `message`.
pub fn error_response(status: StatusCode, code: ErrorCode, message: String, retry_after: Option<u64>) -> Response {
    let detail = ErrorDetail {
        code,
        message,
        request_id: None,
    };
    let mut response = (status, Json(ErrorBody { error: detail.clone() })).into_response();
    if let Some(seconds) = retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response.extensions_mut().insert(RenderedError(detail));
    response
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let AppError {
            kind,
            code,
            message,
            retry_after_seconds,
        } = self.0;
        error_response(status_of(kind), code, message, retry_after_seconds)
    }
}

/// Middleware: writes the request's id into every error body, so a user
/// can quote it and an operator find the request in the access log.
pub async fn add_request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut response = next.run(request).await;
    let (Some(id), Some(RenderedError(mut detail))) = (id, response.extensions_mut().remove::<RenderedError>()) else {
        return response;
    };
    detail.request_id = Some(id);
    let Ok(body) = serde_json::to_vec(&ErrorBody { error: detail }) else {
        return response;
    };
    response.headers_mut().remove(header::CONTENT_LENGTH);
    *response.body_mut() = Body::from(body);
    response
}

/// Turns the plain-text rejections of layers (timeouts, body limits) into
/// the API's error shape. It must wrap the time-out layer (be added after
/// it: the last layer added is the outermost), or the time-out's bare 408
/// never passes through here.
pub async fn shape_layer_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.extensions().get::<RenderedError>().is_some() {
        return response;
    }
    let status = response.status();
    let (code, message) = match status {
        StatusCode::REQUEST_TIMEOUT => (
            ErrorCode::Timeout,
            "the server took too long on this request and stopped; nothing more will happen for it",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::PayloadTooLarge,
            "request body is larger than the server's limit",
        ),
        _ => return response,
    };
    error_response(status, code, message.to_string(), None)
}
