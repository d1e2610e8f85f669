//! The web interface: server-rendered pages for requesters, approvers and
//! auditors at `/`, signed in through the `sso` block's OpenID Connect
//! provider. It is another front end over the same service layer as the
//! JSON API: every page and form calls the `App` operation the API calls,
//! with the same `Caller`, so it can show or do nothing the API would not.
//!
//! Pages are askama templates (`templates/web/`, compiled in, HTML-escaped
//! by default); the little JavaScript (`assets/app.js`) is the project's
//! own and only refreshes live regions from the event stream, counts down
//! and reveals credentials. Every response carries a strict
//! Content-Security-Policy (no inline script or style), refuses framing and
//! is not cached. Every form carries the session's anti-forgery token and a
//! form without it changes nothing.

mod actions;
mod assets;
mod auth;
mod pages;
mod session;
#[cfg(test)]
mod tests;
mod views;

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

use crate::app::App;

pub use session::SESSION_COOKIE;

/// The policy of every page: scripts, styles, fetches and forms from this
/// server only; no inline code, no plugins, no framing.
const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The routes of the web interface.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(pages::my_requests))
        .route("/request", get(pages::request_form).post(actions::create_request))
        .route("/requests/{id}", get(pages::request_page))
        .route("/requests/{id}/credential", get(actions::credential))
        .route("/requests/{id}/{action}", post(actions::decide))
        .route("/approvals", get(pages::approvals))
        .route("/audit", get(pages::audit))
        .route("/audit/verify", post(actions::verify_audit))
        .route("/audit/export", get(actions::export_audit))
        .route("/config", get(pages::configuration))
        .route("/admin", get(pages::admin))
        .route("/ui/events", get(actions::events))
        .route("/login", get(auth::login_page))
        .route("/auth/login", get(auth::start))
        .route("/auth/callback", get(auth::callback))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/cli", get(auth::cli_page).post(auth::cli_allow))
        .route("/assets/app.js", get(assets::script))
        .route("/assets/app.css", get(assets::style))
        .route("/favicon.ico", get(assets::no_icon))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Headers every page and asset gets; a handler's own `Cache-Control` or
/// policy (the CLI sign-in page's) is kept.
async fn security_headers(request: Request<axum::body::Body>, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
