//! `POST /v1/integrations/slack/interactions`: where Slack sends clicks on
//! the Approve / Deny buttons of slack notifiers' messages. Public (no
//! bearer token): Slack's signature over the raw body is the credential,
//! checked by the service layer ([`crate::app::slack`]), so the body is
//! taken as bytes, untouched.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hallpass_api::ErrorCode;
use hallpass_notifiers::slack::interaction::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use utoipa::ToSchema;

use super::error::{HttpError, error_response};
use super::extract::Remote;
use crate::app::App;
use crate::app::slack::SlackCallback;

/// The form Slack posts (its format, not Hallpass's): one field.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SlackInteractionForm {
    /// Slack's `block_actions` JSON: `user.id`, `actions[0].action_id`
    /// (`hallpass.approve` or `hallpass.deny`), `actions[0].value` (the
    /// request id), `response_url`.
    payload: String,
}

/// A click on a slack notifier's Approve or Deny button, as Slack sends it.
/// The signature must be a slack notifier's `signing_secret`'s and at most
/// 5 minutes old, and each signed call is taken once; the Slack user must
/// be mapped to a principal by the notifier's `recipients`, and that
/// principal must hold a live API token (its groups are the principal's).
/// The decision is then made as that principal, under the same rules as
/// `POST /v1/requests/{id}/approve` and `/deny`, after the answer: its
/// outcome replaces the Slack message through `response_url`
/// (`hooks.slack.com` or the notifier's `api_url` host only).
#[utoipa::path(post, path = "/v1/integrations/slack/interactions", tag = "notifications", security(()),
    params(
        ("x-slack-signature" = String, Header, description = "`v0=` and the hex HMAC-SHA256, keyed with the Slack app's signing secret, of `v0:{timestamp}:{raw body}`"),
        ("x-slack-request-timestamp" = String, Header, description = "Unix seconds when Slack signed the call"),
    ),
    request_body(content = SlackInteractionForm, content_type = "application/x-www-form-urlencoded",
        description = "Slack's interaction payload, as Slack sends it"),
    responses(
        (status = 200, description = "taken: the decision is under way (or the action is not Hallpass's, and ignored); the outcome goes to `response_url`"),
        (status = 400, description = "`invalid_input`: a signed click whose `response_url` is one Hallpass does not call; nothing changed", body = hallpass_api::ErrorBody),
        (status = 401, description = "`invalid_signature`: no signature, one no slack notifier's secret made, one more than 5 minutes from the server's clock, or one already used; nothing changed", body = hallpass_api::ErrorBody),
        (status = 403, description = "the Slack user is not mapped to a principal, or that principal is locked or holds no live token; nothing changed", body = hallpass_api::ErrorBody),
        (status = 422, description = "`invalid_form`: signed, but not the form of a click (`payload=<JSON>`); nothing changed", body = hallpass_api::ErrorBody),
        (status = 429, description = "too many failed authentications from this address; see Retry-After", body = hallpass_api::ErrorBody),
    ))]
pub async fn interactions(State(app): State<App>, Remote(remote): Remote, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let answer = app
        .slack_interaction(SlackCallback {
            timestamp: header(TIMESTAMP_HEADER),
            signature: header(SIGNATURE_HEADER),
            body: body.to_vec(),
            remote,
        })
        .await;
    match answer {
        Ok(()) => StatusCode::OK.into_response(),
        // A body of the wrong shape is 422, as for every other form.
        Err(error) if error.code == ErrorCode::InvalidForm => {
            error_response(StatusCode::UNPROCESSABLE_ENTITY, error.code, error.message, None)
        }
        Err(error) => HttpError(error).into_response(),
    }
}
