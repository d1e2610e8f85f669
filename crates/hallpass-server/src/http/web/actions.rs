//! What the pages' forms and scripts do: every form is [`Posted`] (its
//! anti-forgery token checked first) and calls the same service-layer
//! operation as the API. A refused action shows the page again with the
//! service layer's message next to the field it is about; nothing changed.

use axum::extract::{Extension, Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Redirect, Response};
use hallpass_api::{self as api, ErrorCode};
use hallpass_core::audit::AuditEvent;
use serde::Deserialize;
use serde_json::json;

use super::pages::{PageResult, parse_local_utc, render_audit, render_request_form, render_request_page};
use super::session::{PageError, Posted, WebCaller};
use super::views::{AuditFilters, FieldErrors, RequestFields};
use crate::app::{App, AppError};
use crate::http::error::status_of;
use crate::http::events::sse_response;
use crate::http::listener::Shutdown;

/// Where a refused request form's message goes.
fn field_errors(error: &AppError) -> FieldErrors {
    let mut errors = FieldErrors::default();
    let message = error.message.clone();
    let slot = match error.code {
        ErrorCode::InvalidDuration | ErrorCode::DurationAboveMax | ErrorCode::TotalDurationAboveMax => {
            &mut errors.duration
        }
        ErrorCode::ReasonRequired => &mut errors.reason,
        ErrorCode::TicketRequired => &mut errors.ticket,
        ErrorCode::InvalidStart | ErrorCode::EmergencyScheduled => &mut errors.start_at,
        ErrorCode::EmergencyNotAllowed => &mut errors.emergency,
        ErrorCode::NotFound | ErrorCode::InvalidRole | ErrorCode::InvalidName => &mut errors.role,
        ErrorCode::TooLong | ErrorCode::ControlCharacter if message.starts_with("ticket") => &mut errors.ticket,
        ErrorCode::TooLong | ErrorCode::ControlCharacter if message.starts_with("reason") => &mut errors.reason,
        _ => &mut errors.other,
    };
    *slot = message;
    errors
}

fn optional(text: &str) -> Option<String> {
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

pub async fn create_request(State(app): State<App>, posted: Posted<RequestFields>) -> PageResult {
    let Posted { who, form } = posted;
    let scheduled_start = match optional(&form.start_at) {
        None => None,
        Some(text) => match parse_local_utc(&text) {
            Some(at) => Some(at),
            None => {
                let errors = FieldErrors {
                    start_at: format!("{text:?} is not a date and time like 2026-11-30T14:00 (UTC)"),
                    ..FieldErrors::default()
                };
                let page = render_request_form(&app, &who, form, errors).await?;
                return Ok((StatusCode::BAD_REQUEST, page).into_response());
            }
        },
    };
    let body = api::CreateRequest {
        role: form.role.trim().to_string(),
        duration: optional(&form.duration),
        reason: form.reason.clone(),
        ticket: optional(&form.ticket),
        emergency: form.emergency.is_some(),
        scheduled_start,
        ssh_public_key: None,
        plan: None,
    };
    match app.create_request(&who.caller, body).await {
        Ok(created) => Ok(Redirect::to(&format!("/requests/{}", created.request.id)).into_response()),
        Err(error) => {
            let status = status_of(error.kind);
            let page = render_request_form(&app, &who, form, field_errors(&error)).await?;
            Ok((status, page).into_response())
        }
    }
}

/// The fields any action form may carry.
#[derive(Deserialize, Default)]
pub struct ActionFields {
    #[serde(default)]
    comment: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    by: String,
}

/// Approve, deny, cancel, release, revoke, extend or acknowledge a request,
/// then back to its page (or the page again with why not).
pub async fn decide(
    State(app): State<App>,
    Path((id, action)): Path<(String, String)>,
    posted: Posted<ActionFields>,
) -> PageResult {
    let Posted { who, form } = posted;
    let caller = &who.caller;
    let comment = optional(&form.comment);
    let outcome = match action.as_str() {
        "approve" => app.approve(caller, id.clone(), comment).await,
        "deny" => app.deny(caller, id.clone(), comment).await,
        "cancel" => app.cancel(caller, id.clone()).await,
        "release" => app.release_grant(caller, id.clone()).await,
        "revoke" => app.revoke_grant(caller, id.clone(), form.reason.clone()).await,
        "acknowledge" => app.ack_review(caller, id.clone(), form.comment.clone()).await,
        "extend" => {
            let body = api::ExtendBody {
                by: form.by.trim().to_string(),
                reason: form.reason.clone(),
                ticket: None,
            };
            app.extend(caller, id.clone(), body).await
        }
        _ => Err(AppError::not_found(format!("no action {action:?} on a request"))),
    };
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("/requests/{id}")).into_response()),
        Err(error) => {
            let status = status_of(error.kind);
            let page = render_request_page(&app, &who, id, error.message).await?;
            Ok((status, page).into_response())
        }
    }
}

/// The credential of the caller's live grant, as JSON for the page's
/// script; never cached anywhere.
pub async fn credential(State(app): State<App>, who: WebCaller, Path(id): Path<String>) -> Response {
    let mut response = match app.credentials(&who.caller, id).await {
        Ok(credential) => axum::Json(credential_view(&credential)).into_response(),
        Err(error) => {
            let status = status_of(error.kind);
            (status, axum::Json(json!({"error": error.message}))).into_response()
        }
    };
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store, max-age=0"));
    response
}

/// What the page shows of a credential: the token or the environment, as
/// text lines.
fn credential_view(credential: &api::Credential) -> serde_json::Value {
    // The environment holds the token too, under its variable's name; a
    // type without one shows the token alone.
    let lines: Vec<String> = if credential.env.is_empty() {
        vec![credential.token.clone()]
    } else {
        credential
            .env
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect()
    };
    json!({
        "type": credential.credential_type,
        "expires_at": credential.expires_at,
        "text": lines.join("\n"),
    })
}

pub async fn verify_audit(State(app): State<App>, posted: Posted<AuditFilters>) -> PageResult {
    let Posted { who, form } = posted;
    let report = app
        .audit_verify(&who.caller)
        .await
        .map_err(|error| PageError::from_app(error, Some(who.layout("Audit log"))))?;
    let text = if report.ok {
        format!(
            "Chain verified: {} events, {} signed checkpoints, {}.",
            report.events_checked,
            report.checkpoints,
            if report.complete {
                "complete to the head"
            } else {
                "not proven complete"
            }
        )
    } else {
        format!(
            "Chain broken at event {}: {}",
            report
                .first_bad_seq
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into()),
            report.problem.unwrap_or_default()
        )
    };
    let page = render_audit(&app, &who, form, Some((report.ok, text))).await?;
    Ok(page.into_response())
}

pub async fn export_audit(State(app): State<App>, who: WebCaller) -> PageResult {
    match crate::http::audit::export_response(&app, &who.caller, 0).await {
        Ok(mut response) => {
            response.headers_mut().insert(
                CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"hallpass-audit.jsonl\""),
            );
            Ok(response)
        }
        Err(error) => Err(PageError::from_app(error.0, Some(who.layout("Audit log")))),
    }
}

/// The pages' live feed: the caller's events (as for `GET /v1/events`),
/// each only as a notice of what changed; the page fetches itself again.
pub async fn events(
    State(app): State<App>,
    who: WebCaller,
    headers: HeaderMap,
    shutdown: Option<Extension<Shutdown>>,
) -> Response {
    let after = headers
        .get(crate::http::events::LAST_EVENT_ID)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    match app.event_feed(&who.caller, after).await {
        Ok(feed) => sse_response(feed, shutdown, notice),
        Err(error) => (status_of(error.kind), error.message).into_response(),
    }
}

fn notice(event: &AuditEvent) -> Result<Event, String> {
    let data = json!({"seq": event.seq, "kind": event.kind, "request_id": event.request_id});
    Ok(Event::default().id(event.seq.to_string()).data(data.to_string()))
}

/// A 303 to `location`.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}
