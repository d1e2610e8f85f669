//! The live audit stream, `GET /v1/events`: [`SseParser`] reads the
//! Server-Sent Events format (the WHATWG HTML standard's
//! `text/event-stream`), and [`EventStream`] yields the audit events the
//! caller may see, reconnecting with `Last-Event-ID` whenever the
//! connection drops, so a caller that keeps asking misses none.

use std::collections::VecDeque;
use std::time::Duration;

use hallpass_api::AuditEvent;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Response};

use crate::{Client, ClientError};

/// The header a reconnecting client names its last event in.
const LAST_EVENT_ID: &str = "Last-Event-ID";
/// The server sends at least a keep-alive comment every 15 s; a connection
/// silent for this long is taken for dead and replaced.
const IDLE_LIMIT: Duration = Duration::from_secs(45);
/// The first pause before reconnecting, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest line, and longest message, the parser holds: far above any
/// audit event, and a bound on what a broken server can make it buffer.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// One dispatched message of an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseMessage {
    /// The last event id when the message was dispatched (it carries over
    /// from earlier messages when this one sets none).
    pub id: String,
    /// The `event` field, `message` when there was none.
    pub event: String,
    /// The `data` lines joined with line feeds.
    pub data: String,
}

/// An incremental parser of `text/event-stream`: feed it the body's bytes
/// as they come, in chunks split anywhere, and take the messages each chunk
/// completes. Lines end with CRLF, LF or CR; `:` lines are comments; a
/// message without data is not dispatched but still moves the last event
/// id, as in a browser.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The last byte was a CR: a LF right after it ends no second line.
    after_cr: bool,
    /// Any line has been read (a byte order mark may open only the first).
    started: bool,
    data: String,
    event: String,
    /// The id buffer: set by `id` fields, taken on dispatch.
    id: String,
    dispatched_id: Option<String>,
    retry: Option<Duration>,
}

impl SseParser {
    /// Feeds `bytes`; returns the messages they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseMessage>, ClientError> {
        let mut messages = Vec::new();
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    messages.extend(self.line_ended(&line));
                }
                _ => self.line.push(byte),
            }
            if self.line.len() + self.data.len() > MAX_MESSAGE_BYTES {
                return Err(ClientError::Decode(format!(
                    "an event from Hallpass is larger than {MAX_MESSAGE_BYTES} bytes"
                )));
            }
        }
        Ok(messages)
    }

    /// The id of the last message dispatched (or of an id-only message):
    /// where a new connection resumes.
    pub fn last_event_id(&self) -> Option<&str> {
        self.dispatched_id.as_deref()
    }

    /// The reconnection time the server asked for, if it did.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    fn line_ended(&mut self, raw: &[u8]) -> Option<SseMessage> {
        let decoded = String::from_utf8_lossy(raw);
        let mut line: &str = &decoded;
        if !std::mem::replace(&mut self.started, true) {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch();
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            // A comment (a keep-alive).
            "" => {}
            "event" => self.event = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.id = value.to_string(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok().map(Duration::from_millis);
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseMessage> {
        self.dispatched_id = Some(self.id.clone());
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return None;
        }
        data.pop();
        Some(SseMessage {
            id: self.id.clone(),
            event: if event.is_empty() { "message".into() } else { event },
            data,
        })
    }
}

/// Called before each reconnection with what broke and the pause to come.
type ReconnectHook = Box<dyn FnMut(&ClientError, Duration) + Send>;

/// The audit events the caller may see, as they are written; see
/// [`Client::events`].
pub struct EventStream {
    client: Client,
    /// The `seq` the stream has reached: sent as `Last-Event-ID` when it
    /// connects again.
    position: Option<u64>,
    response: Option<Response>,
    parser: SseParser,
    ready: VecDeque<AuditEvent>,
    backoff: Duration,
    on_reconnect: Option<ReconnectHook>,
}

impl Client {
    /// The live audit stream: events after `since`, or only those written
    /// from now on when `None`. Connects on the first
    /// [`EventStream::next`].
    pub fn events(&self, since: Option<u64>) -> EventStream {
        EventStream {
            client: self.clone(),
            position: since,
            response: None,
            parser: SseParser::default(),
            ready: VecDeque::new(),
            backoff: FIRST_BACKOFF,
            on_reconnect: None,
        }
    }
}

impl EventStream {
    /// Calls `hook` before each reconnection, with the error that ended the
    /// connection and the pause before the next attempt (to tell a person).
    pub fn on_reconnect(mut self, hook: impl FnMut(&ClientError, Duration) + Send + 'static) -> Self {
        self.on_reconnect = Some(Box::new(hook));
        self
    }

    /// The `seq` the stream has reached, once it knows it.
    pub fn position(&self) -> Option<u64> {
        self.position
    }

    /// The next event, waiting as long as it takes. A dropped or silent
    /// connection, a server restarting or busy, is replaced after a short
    /// pause (250 ms, doubling up to 5 s) from where the stream was; an
    /// error the same call would get again (a revoked token, a bad
    /// position) is returned.
    pub async fn next(&mut self) -> Result<AuditEvent, ClientError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            let step = if self.response.is_some() {
                self.read().await
            } else {
                self.connect().await
            };
            let Err(error) = step else { continue };
            self.response = None;
            if !is_transient(&error) {
                return Err(error);
            }
            let pause = self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            if let Some(hook) = &mut self.on_reconnect {
                hook(&error, pause);
            }
            tokio::time::sleep(pause).await;
        }
    }

    async fn connect(&mut self) -> Result<(), ClientError> {
        let mut request = self
            .client
            .request_untimed(Method::GET, &["v1", "events"])?
            .header(ACCEPT, "text/event-stream");
        if let Some(seq) = self.position {
            request = request.header(LAST_EVENT_ID, seq.to_string());
        }
        let response = self.client.send(request).await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with("text/event-stream") {
            return Err(ClientError::Decode(format!(
                "Hallpass answered the event stream with {content_type:?}, not text/event-stream"
            )));
        }
        self.parser = SseParser::default();
        self.response = Some(response);
        Ok(())
    }

    async fn read(&mut self) -> Result<(), ClientError> {
        let Some(response) = self.response.as_mut() else {
            return Ok(());
        };
        let chunk = match tokio::time::timeout(IDLE_LIMIT, response.chunk()).await {
            Err(_) => {
                return Err(ClientError::Transport(format!(
                    "the event stream was silent for {} s, not even a keep-alive",
                    IDLE_LIMIT.as_secs()
                )));
            }
            Ok(Err(error)) => return Err(self.client.transport_error(&error)),
            Ok(Ok(None)) => return Err(ClientError::Transport("Hallpass ended the event stream".into())),
            Ok(Ok(Some(chunk))) => chunk,
        };
        self.backoff = FIRST_BACKOFF;
        for message in self.parser.push(&chunk)? {
            let event: AuditEvent = serde_json::from_str(&message.data).map_err(|error| {
                ClientError::Decode(format!("unreadable event {:?} from Hallpass: {error}", message.id))
            })?;
            self.ready.push_back(event);
        }
        if let Some(id) = self.parser.last_event_id() {
            let seq = id
                .parse()
                .map_err(|_| ClientError::Decode(format!("Hallpass sent the event id {id:?}, not a number")))?;
            self.position = Some(seq);
        }
        Ok(())
    }
}

/// Errors a new connection may not meet: the connection, or a server
/// briefly unable to serve.
fn is_transient(error: &ClientError) -> bool {
    match error {
        ClientError::Transport(_) => true,
        ClientError::Api { status, code, .. } => *status >= 500 || code.is_retryable(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn message(id: &str, event: &str, data: &str) -> SseMessage {
        SseMessage {
            id: id.into(),
            event: event.into(),
            data: data.into(),
        }
    }

    /// Feeds `chunks` one after another; returns every message.
    fn parse<T: AsRef<[u8]>>(chunks: &[T]) -> (Vec<SseMessage>, SseParser) {
        let mut parser = SseParser::default();
        let messages = chunks
            .iter()
            .flat_map(|chunk| parser.push(chunk.as_ref()).unwrap())
            .collect();
        (messages, parser)
    }

    #[test]
    fn fields_comments_and_multi_line_data() {
        let text =
            b": keep-alive\n\nid: 7\nevent: request.created\ndata: {\"a\":\ndata:1}\n\n:x\ndata:  two spaces\n\n";
        let (messages, parser) = parse(&[text]);
        assert_eq!(
            messages,
            [
                message("7", "request.created", "{\"a\":\n1}"),
                // The id carries over; only one leading space is dropped.
                message("7", "message", " two spaces"),
            ]
        );
        assert_eq!(parser.last_event_id(), Some("7"));
    }

    #[test]
    fn chunks_split_anywhere_give_the_same_messages() {
        let text =
            "retry: 1000\r\nid: 0\r\n\r\nid: 41\r\nevent: grant.expired\r\ndata: {\"k\":\"é\"}\r\n\r\n".as_bytes();
        let (whole, _) = parse(&[text]);
        assert_eq!(whole, [message("41", "grant.expired", "{\"k\":\"é\"}")]);
        for cut in 1..text.len() {
            let (split, parser) = parse(&[&text[..cut], &text[cut..]]);
            assert_eq!(split, whole, "cut at byte {cut}");
            assert_eq!(parser.retry(), Some(Duration::from_secs(1)));
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(parse(&bytes).0, whole);
    }

    #[test]
    fn a_message_without_data_moves_the_id_but_is_not_dispatched() {
        let (messages, parser) = parse(&[b"id: 12\n\n"]);
        assert!(messages.is_empty());
        assert_eq!(parser.last_event_id(), Some("12"));
        // An id whose message is not complete yet is not where to resume.
        let (_, parser) = parse(&[b"id: 12\n\nid: 13\ndata: x\n"]);
        assert_eq!(parser.last_event_id(), Some("12"));
    }

    #[test]
    fn cr_line_ends_a_byte_order_mark_and_odd_fields() {
        let (messages, _) = parse(&[b"\xef\xbb\xbfdata: a\r\rdata\rid: 1\x002\rbogus: x\rdata: b\r\r"]);
        assert_eq!(messages, [message("", "message", "a"), message("", "message", "\nb")]);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = SseParser::default();
        let chunk = vec![b'x'; 1 << 20];
        let refused = (0..9).any(|_| parser.push(&chunk).is_err());
        assert!(refused, "more than {MAX_MESSAGE_BYTES} bytes were buffered");
    }

    /// An SSE response head and `body`, chunked, ending the connection.
    fn sse_response(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    }

    fn event_json(seq: u64) -> String {
        let hash = "0".repeat(64);
        format!(
            r#"{{"seq":{seq},"time":"2026-12-01T09:00:00Z","actor":"alice","kind":"request.created","request_id":"r{seq}","data":{{}},"prev_hash":"{hash}","hash":"{hash}"}}"#
        )
    }

    /// Serves one response per connection, in order; returns the requests.
    async fn serve(responses: Vec<String>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = tokio::spawn(async move {
            let mut requests = Vec::new();
            for response in responses {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut received = Vec::new();
                let mut buf = [0u8; 4096];
                while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf).await.unwrap();
                    received.extend_from_slice(&buf[..n]);
                }
                socket.write_all(response.as_bytes()).await.unwrap();
                socket.shutdown().await.unwrap();
                requests.push(String::from_utf8_lossy(&received).to_ascii_lowercase());
            }
            requests
        });
        (addr, handle)
    }

    #[tokio::test]
    async fn a_dropped_stream_reconnects_from_the_last_id_and_a_refusal_is_returned() {
        let first = format!(
            "retry: 1000\nid: 4\n\n: keep-alive\n\nid: 5\nevent: request.created\ndata: {}\n\n",
            event_json(5)
        );
        // The second connection delivers only a position past events the
        // caller may not see, then drops; the third resumes after it.
        let third = format!("id: 9\nevent: request.created\ndata: {}\n\n", event_json(9));
        let refusal = r#"{"error":{"code":"invalid_token","message":"revoked token"}}"#;
        let (addr, server) = serve(vec![
            sse_response(&first),
            sse_response("id: 8\n\n"),
            sse_response(&third),
            format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{refusal}",
                refusal.len()
            ),
        ])
        .await;
        let client = Client::new(&addr, Some("hp_t".into())).unwrap();
        let reconnects = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = reconnects.clone();
        let mut stream = client.events(None).on_reconnect(move |_, _| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        assert_eq!(stream.next().await.unwrap().seq, 5);
        assert_eq!(stream.next().await.unwrap().seq, 9);
        assert_eq!(stream.position(), Some(9));
        let error = stream.next().await.unwrap_err();
        assert_eq!(error.status(), Some(401), "{error}");
        assert_eq!(reconnects.load(std::sync::atomic::Ordering::SeqCst), 3);
        let requests = server.await.unwrap();
        assert!(requests[0].starts_with("get /v1/events "), "{}", requests[0]);
        assert!(!requests[0].contains("last-event-id"), "{}", requests[0]);
        assert!(requests[0].contains("accept: text/event-stream"), "{}", requests[0]);
        assert!(requests[1].contains("last-event-id: 5\r\n"), "{}", requests[1]);
        assert!(requests[2].contains("last-event-id: 8\r\n"), "{}", requests[2]);
        assert!(requests[3].contains("last-event-id: 9\r\n"), "{}", requests[3]);
    }
}
