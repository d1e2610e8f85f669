//! The interface's script and style sheet, compiled into the binary: no
//! build step, no CDN, nothing fetched at run time.

use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

const SCRIPT: &str = include_str!("../../../assets/app.js");
const STYLE: &str = include_str!("../../../assets/app.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Short: a new release's assets reach browsers within minutes.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

/// Browsers ask for an icon whatever the page says; there is none.
pub async fn no_icon() -> axum::http::StatusCode {
    axum::http::StatusCode::NO_CONTENT
}
