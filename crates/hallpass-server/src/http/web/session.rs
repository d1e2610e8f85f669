//! Who is looking at a page: the session cookie → the [`Caller`] (through
//! the same `App::authenticate` as a bearer token, so a revoked, expired or
//! locked session is refused on the next request), the anti-forgery check
//! of every form, and the error page.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::views::{ErrorPage, Layout, render};
use crate::app::sso::{csrf_matches, csrf_token};
use crate::app::{App, AppError, Caller, ErrorKind};
use crate::http::error::status_of;
use crate::http::extract::Remote;

/// The session cookie: a Hallpass token, HttpOnly.
pub const SESSION_COOKIE: &str = "hallpass_session";
/// The sealed state of a sign-in in progress.
pub const LOGIN_COOKIE: &str = "hallpass_login";

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_string())
}

/// `Set-Cookie` for `name`: HttpOnly, SameSite=Lax, Secure when the server
/// is reached over https; `max_age` 0 deletes it.
pub fn set_cookie(app: &App, name: &str, value: &str, path: &str, max_age: i64) -> Option<HeaderValue> {
    let https = app.public_url().is_some_and(|url| url.starts_with("https://"));
    cookie_header(name, value, path, max_age, https)
}

fn cookie_header(name: &str, value: &str, path: &str, max_age: i64, https: bool) -> Option<HeaderValue> {
    let secure = if https { "; Secure" } else { "" };
    let max_age = max_age.max(0);
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .ok()
}

/// A signed-in person looking at a page.
pub struct WebCaller {
    pub caller: Caller,
    /// The anti-forgery token the session's forms carry.
    pub csrf: String,
    secret: String,
}

impl WebCaller {
    pub fn layout(&self, title: &str) -> Layout {
        Layout::signed_in(title, &self.caller, &self.csrf)
    }
}

/// Why a page could not be shown: not signed in (to the sign-in page), or an
/// error page with the service layer's message.
pub enum PageError {
    SignIn {
        next: String,
    },
    Error {
        status: StatusCode,
        message: String,
        layout: Option<Layout>,
    },
}

impl PageError {
    pub fn from_app(error: AppError, layout: Option<Layout>) -> PageError {
        if error.kind == ErrorKind::Unauthenticated && layout.is_none() {
            return PageError::SignIn { next: "/".into() };
        }
        PageError::Error {
            status: status_of(error.kind),
            message: error.message,
            layout,
        }
    }

    pub fn forbidden(message: &str, layout: Option<Layout>) -> PageError {
        PageError::Error {
            status: StatusCode::FORBIDDEN,
            message: message.to_string(),
            layout,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn { next } => {
                let target = format!("/login?next={}", percent_encode(&next));
                let mut response = StatusCode::SEE_OTHER.into_response();
                if let Ok(value) = HeaderValue::from_str(&target) {
                    response.headers_mut().insert(LOCATION, value);
                }
                response
            }
            PageError::Error {
                status,
                message,
                layout,
            } => {
                let layout = layout.unwrap_or_else(|| Layout::signed_out("Error"));
                let page = ErrorPage {
                    layout: layout.titled("Error"),
                    status: status.as_u16(),
                    message,
                };
                (status, render(&page)).into_response()
            }
        }
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Where the page was, to come back to after signing in.
fn here(parts: &Parts) -> String {
    if parts.method == Method::GET {
        parts
            .uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string())
    } else {
        "/".to_string()
    }
}

impl FromRequestParts<App> for WebCaller {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let Some(secret) = cookie(parts, SESSION_COOKIE).filter(|value| !value.is_empty()) else {
            return Err(PageError::SignIn { next: here(parts) });
        };
        let Remote(remote) = Remote::of(parts);
        match app.authenticate(&secret, remote).await {
            Ok(caller) => Ok(WebCaller {
                caller,
                csrf: csrf_token(&secret),
                secret,
            }),
            Err(error) if error.kind == ErrorKind::Unauthenticated => Err(PageError::SignIn { next: here(parts) }),
            Err(error) => Err(PageError::from_app(error, Some(Layout::signed_out("Error")))),
        }
    }
}

/// A form posted by a signed-in person, its anti-forgery token checked
/// before anything else is read. A cross-site `Origin` is refused too.
pub struct Posted<T> {
    pub who: WebCaller,
    pub form: T,
}

fn same_origin(parts: &Parts, app: &App) -> bool {
    let Some(origin) = parts.headers.get(ORIGIN).and_then(|value| value.to_str().ok()) else {
        return true;
    };
    let host = parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|value| value.to_str().ok());
    let public = app.public_url().map(|url| url.trim_end_matches('/'));
    public == Some(origin)
        || host.is_some_and(|host| origin == format!("http://{host}") || origin == format!("https://{host}"))
}

impl<T: DeserializeOwned + Send> FromRequest<App> for Posted<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, app: &App) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let who = WebCaller::from_request_parts(&mut parts, app).await?;
        let layout = Some(who.layout("Refused"));
        if !same_origin(&parts, app) {
            return Err(PageError::forbidden(
                "this form was sent from another site; nothing was changed",
                layout,
            ));
        }
        let bytes = Bytes::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(|_| PageError::Error {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: "the form is larger than the server accepts".into(),
                layout: Some(who.layout("Refused")),
            })?;
        let csrf = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .and_then(|pairs| pairs.into_iter().find(|(key, _)| key == "csrf").map(|(_, value)| value))
            .unwrap_or_default();
        if !csrf_matches(&who.secret, &csrf) {
            return Err(PageError::forbidden(
                "this form has no valid anti-forgery token (it is older than your session, or was sent from another \
                 site); reload the page and send it again. Nothing was changed",
                layout,
            ));
        }
        // Form types ignore fields they do not name, `csrf` among them.
        match serde_urlencoded::from_bytes::<T>(&bytes) {
            Ok(form) => Ok(Posted { who, form }),
            Err(e) => Err(PageError::Error {
                status: StatusCode::BAD_REQUEST,
                message: format!("the form could not be read: {e}"),
                layout,
            }),
        }
    }
}

impl WebCaller {
    /// The `Set-Cookie` that deletes the session cookie.
    pub fn session_cookie_cleared(app: &App) -> Option<HeaderValue> {
        set_cookie(app, SESSION_COOKIE, "", "/", 0)
    }
}

/// Adds a `Set-Cookie` to a response.
pub fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(value) = cookie {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::cookie_header;

    #[test]
    fn cookies_are_http_only_lax_and_secure_over_https() {
        let plain = cookie_header("hallpass_session", "hp_x", "/", 60, false).unwrap();
        assert_eq!(
            plain,
            "hallpass_session=hp_x; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
        );
        let tls = cookie_header("hallpass_session", "hp_x", "/", -5, true).unwrap();
        assert_eq!(
            tls,
            "hallpass_session=hp_x; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
