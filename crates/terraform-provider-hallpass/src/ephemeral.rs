//! `ephemeral "hallpass_credentials"`: just-in-time access inside a
//! Terraform run, never written to a plan or a state.
//!
//! Open asks for the role (`POST /v1/requests`), waits for the request to
//! settle (long-polling, up to `timeout`), and returns the grant's
//! credential. If the caller already held the role or had a request open
//! for it, the server answers with that one (`outcome`), and this Open
//! uses it without owning it: Close then leaves it alone, as
//! `hallpass exec` does.
//!
//! Renewal re-reads, and extends a grant this run created once it nears its
//! end: `renew_at` is set half-way to the grant's expiry, and Renew checks
//! that the grant is still active (an error otherwise, which tells
//! Terraform the value is no longer live). With under [`EXTEND_MARGIN`]
//! left it asks for an extension (`POST /v1/requests/{id}/extend`, by the
//! resource's `duration`): extended at once, the next `renew_at` follows
//! the new expiry; awaiting approval, Renew keeps re-reading (the grant is
//! live until its current expiry) without asking again; refused, Renew
//! fails with why. A grant held before the run is only re-read.
//!
//! Close releases the grant Open created (`POST /v1/grants/{id}/release`),
//! or cancels it if it is somehow still waiting. Renew and Close reach the
//! process that opened, but everything they need travels in `private`
//! (the request id and whether this Open created it), so nothing is kept
//! in memory.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hallpass_api::{
    AccessRequest, CreateRequest, Credential, ErrorCode, ExtendBody, ExtensionRecord, ExtensionState, RequestOutcome,
    RequestState,
};
use rmpv::Value;
use serde::{Deserialize, Serialize};

use crate::api::{Api, ApiError};
use crate::diag;
use crate::proto::tfplugin6::{Diagnostic, DynamicValue};
use crate::resources::common::duration_problem;
use crate::schema::{Attribute, Block, Presence, Type};
use crate::value::{Known, Object};

pub const TYPE_NAME: &str = "hallpass_credentials";

/// How long Open waits for approval when `timeout` is not set.
pub const DEFAULT_TIMEOUT: &str = "10m";

/// Renew asks for an extension once the grant has less than this left.
pub const EXTEND_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// What Open hands to Renew and Close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Private {
    pub request_id: String,
    /// This Open created the request: Close releases it.
    pub owned: bool,
    /// How much longer to ask for when the grant nears its end (e.g.
    /// `30m`); none: Renew never extends (a grant held before the run, or
    /// `extend = false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extend_by: Option<String>,
    /// The resource's reason and ticket, for the extension.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// The number of the extension a Renew asked for that awaited approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_extension: Option<u32>,
}

impl Private {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Vec<Diagnostic>> {
        serde_json::from_slice(bytes).map_err(|e| {
            vec![diag::error(
                "Unreadable ephemeral resource data",
                format!("Terraform handed back private data this provider cannot read: {e}"),
            )]
        })
    }
}

/// An opened credential: the object other blocks read, when to renew, and
/// the private data.
pub struct Opened {
    pub result: DynamicValue,
    pub renew_at: Option<DateTime<Utc>>,
    pub private: Private,
    /// Said alongside the result (e.g. a held grant shorter than asked).
    pub warnings: Vec<Diagnostic>,
}

pub fn schema() -> Block {
    let given = |name, presence, description| Attribute::new(name, Type::String, presence, description);
    let computed = |name, description| Attribute::new(name, Type::String, Presence::Computed, description);
    Block {
        version: 0,
        description: "Just-in-time access to a Hallpass role for the length of a Terraform run: requests the \
                      role, waits for approval, and hands the grant's credential to other blocks (e.g. a \
                      provider's `token`) without writing it to the plan or the state. The grant is released \
                      when Terraform closes the resource, unless it existed before (then it is left as it was). \
                      Needs Terraform 1.10 or later.",
        attributes: vec![
            given("role", Presence::Required, "The role to request."),
            given(
                "reason",
                Presence::Required,
                "Why access is needed; approvers and the audit log see it.",
            ),
            given(
                "duration",
                Presence::Optional,
                "How long the access should last, e.g. `30m` or `1h`; the role's default when unset. With \
                 `extend`, also how much longer Renew asks for when the grant nears its end.",
            ),
            Attribute::new(
                "extend",
                Type::Bool,
                Presence::Optional,
                "Whether to extend the grant this resource created when a long run nears its end (under 5 \
                 minutes left at a renewal), by `duration` (the grant's own length when unset): at once when \
                 the role lets extensions skip approval, else once approved; a refused extension fails the \
                 renewal. `true` when unset. A grant already held before the run is never extended.",
            ),
            given(
                "ticket",
                Presence::Optional,
                "A ticket reference for the request (e.g. `OPS-123`).",
            ),
            given(
                "timeout",
                Presence::Optional,
                "How long to wait for approval before failing, e.g. `2m`; `10m` when unset. A request this \
                 resource made and that is still waiting then is cancelled.",
            ),
            computed(
                "request_id",
                "The id of the request (and grant) whose credential this is.",
            ),
            computed(
                "type",
                "The credential's type, e.g. `hallpass` (a Hallpass API token), `postgres` or `aws`.",
            ),
            computed("expires_at", "When the access ends (RFC 3339)."),
            computed(
                "token",
                "The credential's main secret: for a `hallpass` target an API token, to use as a `hallpass` \
                 provider's `token`.",
            )
            .sensitive(),
            Attribute::new(
                "env",
                Type::Map(Box::new(Type::String)),
                Presence::Computed,
                "The credential as the environment its tools expect (e.g. `HALLPASS_TOKEN`, `PGPASSWORD`, \
                 `AWS_SESSION_TOKEN`).",
            )
            .sensitive(),
        ],
        blocks: Vec::new(),
    }
}

/// Checks durations; values may still be unknown.
pub fn validate(config: &Object) -> Vec<Diagnostic> {
    ["duration", "timeout"]
        .into_iter()
        .filter_map(|name| {
            duration_problem(config, name)
                .map(|problem| diag::attribute_error(name, "Invalid duration", format!("{problem}.")))
        })
        .collect()
}

fn required(config: &Object, name: &str) -> Result<String, Vec<Diagnostic>> {
    match config.string(name) {
        Ok(Known::Value(text)) if !text.is_empty() => Ok(text),
        _ => Err(vec![diag::attribute_error(
            name,
            format!("Missing {name}"),
            format!("Set `{name}`."),
        )]),
    }
}

fn optional(config: &Object, name: &str) -> Option<String> {
    config.string(name).ok().and_then(Known::value)
}

/// Requests the role and waits for the grant; `stopped` resolves when
/// Terraform stops the provider.
pub async fn open(api: &Api, config: &Object, stopped: impl Future<Output = ()>) -> Result<Opened, Vec<Diagnostic>> {
    let (body, timeout_text) = request_body(config)?;
    let role = body.role.clone();
    let timeout = hallpass_core::parse_duration(&timeout_text).unwrap_or(600);
    let created = api
        .create_request(&body)
        .await
        .map_err(|e| vec![diag::error(format!("Cannot request role {role:?}"), e.to_string())])?;
    let owned = created.outcome == RequestOutcome::Created;
    let extend = !matches!(config.bool("extend"), Ok(Known::Value(false)));
    let warnings = held_shorter(&created.outcome, &created.request);
    let request = created.request;
    let id = request.id.clone();
    crate::log::info(
        "requested credentials",
        &[("request_id", &id), ("outcome", &format!("{:?}", created.outcome))],
    );

    let settled = tokio::select! {
        settled = wait_settled(api, request, Duration::from_secs(timeout)) => settled,
        () = stopped => Err(WaitError::Stopped),
    };
    let request = match settled {
        Ok(request) => request,
        Err(error) => {
            let mut diagnostics = vec![error.diagnostic(&role, &id, &timeout_text)];
            if owned && let Err(e) = api.cancel(&id).await {
                diagnostics.push(diag::error(
                    format!("Could not cancel request {id}"),
                    format!("{e}; cancel it with `hallpass cancel {id}`."),
                ));
            }
            return Err(diagnostics);
        }
    };
    if request.state != RequestState::Active {
        return Err(vec![diag::error(
            format!("No access to role {role:?}"),
            ended_without_access(&request),
        )]);
    }
    let credential = match api.credentials(&id).await {
        Ok(credential) => credential,
        Err(e) => {
            let mut diagnostics = vec![diag::error(
                format!("Cannot read the credential of request {id}"),
                e.to_string(),
            )];
            if owned {
                release_owned(api, &id, &mut diagnostics).await;
            }
            return Err(diagnostics);
        }
    };
    let result = result_value(config, &id, &credential);
    let extend_by = (owned && extend).then(|| {
        body.duration.clone().unwrap_or_else(|| {
            let started = request.activated_at.unwrap_or_else(Utc::now);
            let length = (credential.expires_at - started).num_seconds().max(60);
            hallpass_core::format_duration(u64::try_from(length).unwrap_or(60))
        })
    });
    Ok(Opened {
        result,
        renew_at: renew_at(Utc::now(), credential.expires_at),
        private: Private {
            request_id: id,
            owned,
            extend_by,
            reason: body.reason.clone(),
            ticket: body.ticket.clone(),
            pending_extension: None,
        },
        warnings,
    })
}

/// The warning for a grant already held that the server did not (yet)
/// lengthen to the asked duration: the run uses it as it is.
fn held_shorter(outcome: &RequestOutcome, request: &AccessRequest) -> Vec<Diagnostic> {
    let why = match outcome {
        RequestOutcome::ExtensionRequested => "an extension to the asked duration awaits approval",
        RequestOutcome::ExtensionDenied => "the policies refused to extend it to the asked duration",
        _ => return Vec::new(),
    };
    let until = request.expires_at.map(|at| at.to_rfc3339()).unwrap_or_default();
    vec![diag::attribute_warning(
        "duration",
        format!("Using the grant of role {:?} already held", request.role),
        format!(
            "Grant {} is held until {until}; {why}. This run uses the grant as it is, and leaves it in \
             place afterwards.",
            request.id
        ),
    )]
}

/// The request a configuration asks for, and its `timeout` text.
fn request_body(config: &Object) -> Result<(CreateRequest, String), Vec<Diagnostic>> {
    let problems = validate(config);
    if !problems.is_empty() {
        return Err(problems);
    }
    let body = CreateRequest {
        role: required(config, "role")?,
        duration: optional(config, "duration"),
        reason: required(config, "reason")?,
        ticket: optional(config, "ticket"),
        emergency: false,
        scheduled_start: None,
        ssh_public_key: None,
        plan: None,
    };
    let timeout = optional(config, "timeout").unwrap_or_else(|| DEFAULT_TIMEOUT.to_string());
    Ok((body, timeout))
}

/// The object other blocks read: the configuration and the credential.
fn result_value(config: &Object, id: &str, credential: &Credential) -> DynamicValue {
    let env = Value::Map(
        credential
            .env
            .iter()
            .map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str())))
            .collect(),
    );
    let given = |name: &str| config.raw(name);
    schema().encode(vec![
        ("role", given("role")),
        ("reason", given("reason")),
        ("duration", given("duration")),
        ("extend", given("extend")),
        ("ticket", given("ticket")),
        ("timeout", given("timeout")),
        ("request_id", Value::from(id)),
        ("type", Value::from(credential.credential_type.as_str())),
        ("expires_at", Value::from(credential.expires_at.to_rfc3339().as_str())),
        ("token", Value::from(credential.token.as_str())),
        ("env", env),
    ])
}

/// Half-way from `now` to `expires_at`; none when that is under 10 s away
/// (Terraform would renew in a tight loop for nothing).
pub fn renew_at(now: DateTime<Utc>, expires_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let left = expires_at - now;
    (left > chrono::Duration::seconds(20)).then(|| now + left / 2)
}

/// What a Renew hands back to Terraform.
pub struct Renewed {
    pub renew_at: Option<DateTime<Utc>>,
    pub private: Private,
}

/// Re-reads the grant: the next `renew_at` while it is active, an error
/// once it has ended (revoked, expired, released elsewhere). A grant this
/// run created with under [`EXTEND_MARGIN`] left is extended (see the
/// module's documentation).
pub async fn renew(api: &Api, private: &Private) -> Result<Renewed, Vec<Diagnostic>> {
    let id = &private.request_id;
    let request = api
        .get_request(id)
        .await
        .map_err(|e| vec![diag::error(format!("Cannot read grant {id}"), e.to_string())])?;
    let expires_at = match (request.state, request.expires_at) {
        (RequestState::Active, Some(expires_at)) => expires_at,
        _ => {
            return Err(vec![diag::error(
                format!("The grant of role {:?} has ended", request.role),
                ended_without_access(&request),
            )]);
        }
    };
    let mut private = private.clone();
    let now = Utc::now();
    let by = match (&private.extend_by, private.owned) {
        (Some(by), true) => by.clone(),
        _ => return live(private, "renewal: the grant is still active", expires_at),
    };
    // The extension an earlier Renew asked for.
    if let Some(number) = private.pending_extension {
        match request.extensions.iter().find(|e| e.number == number) {
            Some(ext) if ext.state == ExtensionState::Pending => {
                return live(
                    private,
                    "renewal: the grant is still active; its extension awaits approval",
                    expires_at,
                );
            }
            Some(ext) if ext.state == ExtensionState::Denied => {
                return Err(vec![extension_refused(&request, expires_at, &denied_why(ext))]);
            }
            _ => private.pending_extension = None,
        }
    }
    if expires_at - now > EXTEND_MARGIN {
        return live(private, "renewal: the grant is still active", expires_at);
    }
    ask_extension(api, &request, expires_at, private, by).await
}

/// Asks for an extension of a grant near its end, unless one is already
/// pending: the next `renew_at`, or why it was refused.
async fn ask_extension(
    api: &Api,
    request: &AccessRequest,
    expires_at: DateTime<Utc>,
    mut private: Private,
    by: String,
) -> Result<Renewed, Vec<Diagnostic>> {
    let id = &request.id;
    // One extension may be pending at a time: one asked for elsewhere
    // (`hallpass extend`) counts as this run's.
    if let Some(pending) = request.extensions.iter().find(|e| e.state == ExtensionState::Pending) {
        private.pending_extension = Some(pending.number);
        return live(
            private,
            "renewal: the grant is still active; its extension awaits approval",
            expires_at,
        );
    }
    let body = ExtendBody {
        by,
        reason: format!("{} (extended by Terraform)", private.reason),
        ticket: private.ticket.clone(),
    };
    match api.extend(id, &body).await {
        Ok(extended) => match extended.extensions.last() {
            Some(ext) if ext.state == ExtensionState::Approved => {
                let until = extended.expires_at.unwrap_or(expires_at);
                live(private, "renewal: extended the grant", until)
            }
            Some(ext) if ext.state == ExtensionState::Pending => {
                private.pending_extension = Some(ext.number);
                live(
                    private,
                    "renewal: asked for an extension of the grant, which awaits approval",
                    expires_at,
                )
            }
            Some(ext) => Err(vec![extension_refused(request, expires_at, &denied_why(ext))]),
            None => live(private, "renewal: the grant is still active", expires_at),
        },
        Err(ApiError::Api {
            code: ErrorCode::ExtensionPending,
            ..
        }) => live(
            private,
            "renewal: the grant is still active; its extension awaits approval",
            expires_at,
        ),
        Err(e) => Err(vec![extension_refused(request, expires_at, &e.to_string())]),
    }
}

/// A Renew that finds the grant live until `expires_at`: logs `message`
/// and sets the next `renew_at`.
fn live(private: Private, message: &str, expires_at: DateTime<Utc>) -> Result<Renewed, Vec<Diagnostic>> {
    crate::log::info(message, &[("request_id", &private.request_id)]);
    Ok(Renewed {
        renew_at: renew_at(Utc::now(), expires_at),
        private,
    })
}

/// Why an extension was denied, with who decided.
fn denied_why(ext: &ExtensionRecord) -> String {
    let by = ext.decision.as_ref().map(|d| d.by.as_str()).unwrap_or("hallpass");
    match ext.decision.as_ref().and_then(|d| d.comment.as_deref()) {
        Some(comment) if !comment.is_empty() => format!("extension {} was denied by {by}: {comment}", ext.number),
        _ => format!("extension {} was {}", ext.number, state_name(ext.state)),
    }
}

/// The error of a Renew whose extension was refused.
fn extension_refused(request: &AccessRequest, expires_at: DateTime<Utc>, why: &str) -> Diagnostic {
    diag::error(
        format!("Cannot extend the grant of role {:?}", request.role),
        format!(
            "Grant {} ends at {}: {why}. Choose a `duration` that covers the run, or have the extension \
             approved.",
            request.id,
            expires_at.to_rfc3339()
        ),
    )
}

/// Releases the grant this Open created; leaves one it found alone.
pub async fn close(api: &Api, private: &Private) -> Result<(), Vec<Diagnostic>> {
    if !private.owned {
        crate::log::info(
            "leaving a grant this run did not create",
            &[("request_id", &private.request_id)],
        );
        return Ok(());
    }
    let mut diagnostics = Vec::new();
    release_owned(api, &private.request_id, &mut diagnostics).await;
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(diagnostics)
    }
}

/// Ends a request this run made: releases it when active, cancels it while
/// waiting, nothing once it has ended by itself.
async fn release_owned(api: &Api, id: &str, diagnostics: &mut Vec<Diagnostic>) {
    let result = match api.get_request(id).await {
        Ok(request) => match request.state {
            RequestState::Active => api.release(id).await.map(drop),
            RequestState::Pending | RequestState::Approved | RequestState::Scheduled => api.cancel(id).await.map(drop),
            _ => Ok(()),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => crate::log::info("ended the grant", &[("request_id", id)]),
        Err(e) => diagnostics.push(diag::error(
            format!("Could not release grant {id}"),
            format!("{e}; the access may remain until it expires: release it with `hallpass release {id}`."),
        )),
    }
}

enum WaitError {
    Api(ApiError),
    TimedOut(Box<AccessRequest>),
    Stopped,
}

impl WaitError {
    fn diagnostic(&self, role: &str, id: &str, timeout: &str) -> Diagnostic {
        match self {
            WaitError::Api(e) => diag::error(format!("Cannot follow request {id}"), e.to_string()),
            WaitError::TimedOut(request) => diag::attribute_error(
                "timeout",
                format!("Timed out waiting for approval of role {role:?}"),
                format!(
                    "Request {id} was still {} after {timeout}{}. Raise `timeout`, or have it approved \
                     (`hallpass approve {id}`) and run Terraform again.",
                    state_name(request.state),
                    waiting_on(request),
                ),
            ),
            WaitError::Stopped => diag::error(
                "Stopped",
                format!("Terraform stopped the provider while request {id} waited for approval."),
            ),
        }
    }
}

/// Long-polls until the request is neither pending nor approved (nor
/// scheduled), or `timeout` passes.
async fn wait_settled(api: &Api, mut request: AccessRequest, timeout: Duration) -> Result<AccessRequest, WaitError> {
    let deadline = tokio::time::Instant::now() + timeout;
    while matches!(
        request.state,
        RequestState::Pending | RequestState::Approved | RequestState::Scheduled
    ) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(WaitError::TimedOut(Box::new(request)));
        }
        let seconds = left.as_secs().clamp(1, 25);
        let polled = tokio::time::timeout(left, api.wait_request(&request.id, request.version, seconds)).await;
        match polled {
            Ok(Ok(next)) => request = next,
            Ok(Err(e)) => return Err(WaitError::Api(e)),
            Err(_) => return Err(WaitError::TimedOut(Box::new(request))),
        }
    }
    Ok(request)
}

/// A request's or an extension's state as the API spells it.
fn state_name<S: Serialize + std::fmt::Debug + Copy>(state: S) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{state:?}").to_lowercase())
}

/// ` (approvers: group:a, alice)`, or nothing.
fn waiting_on(request: &AccessRequest) -> String {
    if request.state == RequestState::Pending && !request.approvers.is_empty() {
        format!(
            " with {}/{} approvals (approvers: {})",
            request.approvals.len(),
            request.required_approvals,
            request.approvers.join(", ")
        )
    } else {
        String::new()
    }
}

/// Why a request gives no access, with the server's decision.
pub fn ended_without_access(request: &AccessRequest) -> String {
    let id = &request.id;
    let decision = request
        .decision
        .as_ref()
        .or(request.ended_by.as_ref())
        .map(|d| match &d.comment {
            Some(comment) if !comment.is_empty() => format!(" by {}: {comment}", d.by),
            _ => format!(" by {}", d.by),
        })
        .unwrap_or_default();
    match request.state {
        RequestState::Denied => format!("Request {id} was denied{decision}."),
        RequestState::TimedOut => format!("Request {id} timed out waiting for approval."),
        RequestState::Expired if request.activated_at.is_none() => {
            format!("Request {id} expired before it was approved.")
        }
        state => format!("Request {id} is {}{decision}.", state_name(state)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_half_way_and_stops_near_expiry() {
        let now = Utc::now();
        assert_eq!(
            renew_at(now, now + chrono::Duration::minutes(30)),
            Some(now + chrono::Duration::minutes(15))
        );
        assert_eq!(renew_at(now, now + chrono::Duration::seconds(5)), None);
    }

    #[test]
    fn private_data_round_trips() {
        let private = Private {
            request_id: "req_1".into(),
            owned: true,
            extend_by: Some("30m".into()),
            reason: "why".into(),
            ticket: None,
            pending_extension: Some(2),
        };
        // What an older provider wrote still reads.
        let old = Private::from_bytes(br#"{"request_id":"req_1","owned":false}"#).unwrap();
        assert_eq!(old.extend_by, None);
        assert_eq!(Private::from_bytes(&private.to_bytes()).unwrap(), private);
        assert!(Private::from_bytes(b"junk").is_err());
    }

    #[test]
    fn secrets_are_sensitive_and_every_attribute_described() {
        let block = schema();
        assert!(!block.description.is_empty());
        for attribute in &block.attributes {
            assert!(!attribute.description.is_empty(), "{}", attribute.name);
            assert_eq!(
                attribute.sensitive,
                matches!(attribute.name, "token" | "env"),
                "{}",
                attribute.name
            );
        }
    }
}
