//! Signing in and out: the sign-in page, the trip to the identity provider
//! and back (`/auth/login`, `/auth/callback`), signing out, and allowing a
//! `hallpass login` on this computer (`/auth/cli`).

use axum::extract::{FromRequestParts, State};
use axum::http::header::CONTENT_SECURITY_POLICY;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::actions::see_other;
use super::pages::PageResult;
use super::session::{LOGIN_COOKIE, PageError, Posted, SESSION_COOKIE, WebCaller, cookie, set_cookie, with_cookie};
use super::views::{CliPage, Layout, LoginPage, render};
use crate::app::App;
use crate::app::sso::{LOGIN_STATE_SECONDS, safe_next};
use crate::http::extract::{QueryOf, Remote};

#[derive(Deserialize, Default)]
pub struct NextParam {
    #[serde(default)]
    next: Option<String>,
}

pub async fn login_page(State(app): State<App>, QueryOf(param): QueryOf<NextParam>) -> Response {
    let page = LoginPage {
        layout: Layout::signed_out("Sign in"),
        issuer: app.sso_issuer().unwrap_or_default().to_string(),
        next: safe_next(param.next.as_deref()),
        message: String::new(),
    };
    render(&page).into_response()
}

fn sign_in_failed(app: &App, message: String, status: StatusCode) -> Response {
    let page = LoginPage {
        layout: Layout::signed_out("Sign in"),
        issuer: app.sso_issuer().unwrap_or_default().to_string(),
        next: "/".into(),
        message,
    };
    let cleared = set_cookie(app, LOGIN_COOKIE, "", "/auth", 0);
    with_cookie((status, render(&page)).into_response(), cleared)
}

pub async fn start(State(app): State<App>, QueryOf(param): QueryOf<NextParam>) -> Response {
    match app.start_sign_in(param.next.as_deref()).await {
        Ok(started) => {
            let cookie = set_cookie(&app, LOGIN_COOKIE, &started.login_state, "/auth", LOGIN_STATE_SECONDS);
            with_cookie(see_other(&started.authorize_url), cookie)
        }
        Err(error) => sign_in_failed(&app, error.message, crate::http::error::status_of(error.kind)),
    }
}

/// What the provider sends back: a code and the state, or an error.
#[derive(Deserialize, Default)]
pub struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The query and cookies of the provider's redirect back.
pub struct CallbackRequest {
    query: Callback,
    login_state: Option<String>,
    remote: Remote,
}

impl<S: Send + Sync> FromRequestParts<S> for CallbackRequest {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query: Callback = parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        let login_state = cookie(parts, LOGIN_COOKIE);
        Ok(CallbackRequest {
            query,
            login_state,
            remote: Remote::of(parts),
        })
    }
}

pub async fn callback(State(app): State<App>, request: CallbackRequest) -> Response {
    let CallbackRequest {
        query,
        login_state,
        remote: Remote(remote),
    } = request;
    if let Some(error) = query.error {
        // The provider's own words, shown as text: the person was refused there.
        let detail = query.error_description.unwrap_or_default();
        let shown: String = format!("{error}: {detail}").chars().take(300).collect();
        return sign_in_failed(
            &app,
            format!("The identity provider did not sign you in ({shown})."),
            StatusCode::UNAUTHORIZED,
        );
    }
    let (Some(code), Some(state)) = (query.code, query.state) else {
        return sign_in_failed(
            &app,
            "The identity provider sent no code back; sign in again.".into(),
            StatusCode::BAD_REQUEST,
        );
    };
    match app.finish_sign_in(&code, &state, login_state.as_deref(), remote).await {
        Ok(signed_in) => {
            let max_age = signed_in
                .expires_at
                .map(|at| (at - app.now()).num_seconds())
                .unwrap_or(3600);
            let session = set_cookie(&app, SESSION_COOKIE, &signed_in.session_secret, "/", max_age);
            let cleared = set_cookie(&app, LOGIN_COOKIE, "", "/auth", 0);
            with_cookie(with_cookie(see_other(&signed_in.next), session), cleared)
        }
        Err(error) => sign_in_failed(&app, error.message, crate::http::error::status_of(error.kind)),
    }
}

#[derive(Deserialize, Default)]
pub struct Nothing {}

/// Signs out: the session's token is revoked (with its audit event), then
/// the cookie is deleted.
pub async fn logout(State(app): State<App>, posted: Posted<Nothing>) -> PageResult {
    app.sign_out(&posted.who.caller)
        .await
        .map_err(|error| PageError::from_app(error, Some(posted.who.layout("Sign out"))))?;
    Ok(with_cookie(
        see_other("/login"),
        WebCaller::session_cookie_cleared(&app),
    ))
}

/// What `hallpass login` puts in the URL it opens.
#[derive(Deserialize, Default)]
pub struct CliParams {
    #[serde(default)]
    port: u16,
    #[serde(default)]
    state: String,
    #[serde(default)]
    code_challenge: String,
}

impl CliParams {
    fn check(&self) -> Result<(), String> {
        let state_ok = !self.state.is_empty()
            && self.state.len() <= 128
            && self
                .state
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if self.port < 1024 || !state_ok || self.code_challenge.len() != 43 {
            return Err(
                "this CLI sign-in link is incomplete or altered (port, state or code challenge); run `hallpass login` again"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The CLI's sign-in page may send the browser on to the CLI's own
/// listener on loopback (a redirect after a form counts for `form-action`).
fn cli_policy(port: u16) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'self' http://127.0.0.1:{port}; frame-ancestors 'none'; base-uri 'none'"
    ))
    .ok()
}

pub async fn cli_page(who: WebCaller, QueryOf(params): QueryOf<CliParams>) -> PageResult {
    params.check().map_err(|message| PageError::Error {
        status: StatusCode::BAD_REQUEST,
        message,
        layout: Some(who.layout("Sign in the CLI")),
    })?;
    let page = CliPage {
        layout: who.layout("Sign in the CLI"),
        port: params.port,
        state: params.state.clone(),
        challenge: params.code_challenge.clone(),
    };
    let mut response = render(&page).into_response();
    if let Some(policy) = cli_policy(params.port) {
        response.headers_mut().insert(CONTENT_SECURITY_POLICY, policy);
    }
    Ok(response)
}

/// The person allowed the CLI: a one-time code to its loopback listener.
pub async fn cli_allow(State(app): State<App>, posted: Posted<CliParams>) -> PageResult {
    let Posted { who, form } = posted;
    let layout = who.layout("Sign in the CLI");
    form.check().map_err(|message| PageError::Error {
        status: StatusCode::BAD_REQUEST,
        message,
        layout: Some(layout.clone()),
    })?;
    let code = app
        .cli_login_code(&who.caller, &form.code_challenge)
        .map_err(|error| PageError::from_app(error, Some(layout)))?;
    let target = format!(
        "http://127.0.0.1:{}/callback?code={code}&state={}",
        form.port, form.state
    );
    let mut response = see_other(&target);
    if let Some(policy) = cli_policy(form.port) {
        response.headers_mut().insert(CONTENT_SECURITY_POLICY, policy);
    }
    Ok(response)
}
