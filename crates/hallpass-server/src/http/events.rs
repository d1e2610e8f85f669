//! `GET /v1/events`: the live audit stream as Server-Sent Events. Each
//! event the caller may see is one message, `id` its `seq`, `event` its
//! kind and `data` the audit line's JSON; a comment every
//! [`KEEP_ALIVE`] keeps proxies from closing a quiet stream. What the
//! caller sees, and from where, is the service layer's
//! ([`crate::app::events`]); this module parses where to start and frames.
//!
//! The first message carries only an `id`, the position the stream starts
//! from, and a `retry` hint: a client that loses the connection before any
//! event arrives still resumes without a gap (`Last-Event-ID`). The stream
//! ends when the listener drains at shutdown, so an open stream does not
//! hold the server for the whole grace period.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{FutureExt, Stream, StreamExt};
use hallpass_api::ErrorCode;
use hallpass_core::audit::AuditEvent;
use serde::Deserialize;

use super::error::HttpResult;
use super::extract::{QueryOf, int64};
use super::listener::Shutdown;
use crate::app::events::{Batch, EventFeed};
use crate::app::{App, AppError, Caller};

/// The header a reconnecting client names its last event in.
pub const LAST_EVENT_ID: &str = "last-event-id";
/// Longest silence on a stream; proxies commonly cut idle ones at 30–60 s.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long an `EventSource` waits before it reconnects.
const RECONNECT_HINT: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Start after this sequence number, for clients that cannot send
    /// `Last-Event-ID`; the header wins when both are sent (a browser
    /// reconnects to the same URL with the header). Without either, the
    /// stream starts with the next event written.
    #[serde(default, deserialize_with = "int64")]
    since: Option<u64>,
}

/// The `seq` of `Last-Event-ID`; `None` when the header is absent or blank.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, AppError> {
    let Some(value) = headers.get(LAST_EVENT_ID) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("\u{fffd}").trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<u64>() {
        Ok(seq) if i64::try_from(seq).is_ok() => Ok(Some(seq)),
        _ => {
            let shown: String = text.chars().take(40).collect();
            Err(AppError::invalid(
                ErrorCode::InvalidInput,
                format!(
                    "Last-Event-ID {shown:?} is not an event id: send the id (a sequence number) of the last \
                     event received, or leave the header out to start with new events"
                ),
            ))
        }
    }
}

#[utoipa::path(get, path = "/v1/events", tag = "audit",
    params(EventParams,
        ("Last-Event-ID" = Option<String>, Header,
         description = "Resume after this event: the `id` (a sequence number) of the last message received")),
    responses((status = 200,
        description = "Server-Sent Events, one message per audit event the caller may see: `id: <seq>`, \
                       `event: <kind>`, `data: <the audit event as one JSON line>`, in `seq` order. The first \
                       message has only the `id` the stream starts after. A `: keep-alive` comment comes \
                       every 15 s. Admins and auditors see every event; others see the events of the requests \
                       they made or may approve. The stream ends when the caller's token does (expiry, \
                       revocation, lock) and at server shutdown; reconnect with `Last-Event-ID`.",
        content_type = "text/event-stream", body = String)))]
pub async fn events(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    shutdown: Option<Extension<Shutdown>>,
    QueryOf(query): QueryOf<EventParams>,
) -> HttpResult<Response> {
    let after = last_event_id(&headers)?.or(query.since);
    let feed = app.event_feed(&caller, after).await?;
    Ok(sse_response(feed, shutdown, message))
}

/// Frames one audit event as one message.
pub type Framer = fn(&AuditEvent) -> Result<Event, String>;

/// A feed as a `text/event-stream` response, each event framed by `frame`,
/// ended when the listener drains.
pub fn sse_response(feed: EventFeed, shutdown: Option<Extension<Shutdown>>, frame: Framer) -> Response {
    let stop = match shutdown {
        Some(Extension(shutdown)) => shutdown.started().boxed(),
        None => futures::future::pending().boxed(),
    };
    let stream = messages(feed, frame).take_until(stop);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    // Buffering proxies (nginx) would hold events back until a chunk fills.
    response.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

fn messages(feed: EventFeed, frame: Framer) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let opening = Event::default().retry(RECONNECT_HINT).id(feed.position().to_string());
    let rest = futures::stream::unfold(feed, move |mut feed| async move {
        let framed = match feed.next_batch().await {
            Ok(Some(batch)) => framed(batch, frame),
            Ok(None) => return None,
            Err(error) => Err(error.message),
        };
        match framed {
            Ok(messages) => Some((futures::stream::iter(messages), feed)),
            Err(error) => {
                // The client resumes from its last id; nothing is lost.
                tracing::warn!(%error, "event stream ended early");
                None
            }
        }
    })
    .flatten();
    futures::stream::once(async { opening }).chain(rest).map(Ok)
}

/// A batch as messages: one per event, and an `id` alone for a position
/// reached without an event the caller may see.
fn framed(batch: Batch, frame: Framer) -> Result<Vec<Event>, String> {
    let mut messages = batch.events.iter().map(frame).collect::<Result<Vec<_>, _>>()?;
    if let Some(seq) = batch.advance {
        messages.push(Event::default().id(seq.to_string()));
    }
    Ok(messages)
}

fn message(event: &AuditEvent) -> Result<Event, String> {
    let data = serde_json::to_string(event).map_err(|error| format!("cannot encode event {}: {error}", event.seq))?;
    let mut message = Event::default().id(event.seq.to_string());
    // A field cannot hold a line break; every kind is a dotted name, and a
    // kind that were not would still arrive in `data`.
    if !event.kind.contains(['\r', '\n']) {
        message = message.event(&event.kind);
    }
    Ok(message.data(data))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::http::{HttpSettings, router};
    use crate::testing;

    #[test]
    fn last_event_id_is_a_sequence_number_or_absent() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(LAST_EVENT_ID, HeaderValue::from_str(value).unwrap());
            last_event_id(&headers)
        };
        assert_eq!(last_event_id(&HeaderMap::new()), Ok(None));
        assert_eq!(with(" "), Ok(None));
        assert_eq!(with("42"), Ok(Some(42)));
        for bad in ["-1", "4x", "1.5", "99999999999999999999", "9223372036854775808"] {
            let error = with(bad).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidInput, "{bad}");
            assert!(error.message.contains("Last-Event-ID"), "{error}");
        }
    }

    /// The first bytes of a stream: the position it starts after, with
    /// the reconnection hint, then each event as `id`, `event`, `data`.
    #[tokio::test]
    async fn a_stream_opens_with_its_position_then_frames_each_event() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _inbox) = testing::app_in(dir.path(), Arc::new(hallpass_core::SystemClock), Vec::new()).unwrap();
        let admin = testing::caller("root", &["admins"]);
        let made = app
            .create_token(
                &admin,
                hallpass_api::CreateToken {
                    principal: "carol".into(),
                    groups: vec!["auditors".into()],
                    ttl: None,
                },
            )
            .await
            .unwrap();
        let settings = HttpSettings {
            max_body_bytes: 1024,
            request_timeout: Duration::from_secs(5),
            metrics: crate::telemetry::install_metrics(),
        };
        let request = Request::get("/v1/events?since=0")
            .header("authorization", format!("Bearer {}", made.token))
            .body(Body::empty())
            .unwrap();
        let response = router(app, settings).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = response.into_body().into_data_stream();
        let mut text = String::new();
        while !text.contains("event: token.created") {
            let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
                .await
                .expect("events within 5 s")
                .unwrap()
                .unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        assert!(text.starts_with("retry: 1000\nid: 0\n\n"), "{text}");
        let created = text
            .split("\n\n")
            .find(|message| message.contains("event: token.created"))
            .unwrap();
        let lines: Vec<&str> = created.lines().collect();
        assert!(
            lines[0].starts_with("id: ") && lines[1] == "event: token.created",
            "{created}"
        );
        let data: AuditEvent = serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(
            (data.seq.to_string(), data.kind.as_str()),
            (lines[0][4..].to_string(), "token.created")
        );
    }
}
