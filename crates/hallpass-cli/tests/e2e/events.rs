//! The live audit stream, `GET /v1/events`: what each caller sees, in
//! `seq` order and framed as Server-Sent Events; resuming with
//! `Last-Event-ID` after a disconnect or a server restart loses nothing; a
//! stream does not hold up shutdown; `hallpass watch` prints events as they
//! happen. Raw HTTP is read with the client's own SSE parser; the restart
//! is followed through the client's reconnecting stream.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hallpass_client::{SseMessage, SseParser};
use serde_json::Value;

use crate::harness::{Server, http_client};

/// One open stream, read over raw HTTP.
struct Stream {
    runtime: tokio::runtime::Runtime,
    response: reqwest::Response,
    parser: SseParser,
    pending: VecDeque<SseMessage>,
}

impl Stream {
    /// Opens `/v1/events{query}` with `token`, sending `Last-Event-ID`
    /// when given; an answer other than 200 comes back as its status and body.
    fn open(server: &Server, token: &str, last_event_id: Option<&str>, query: &str) -> Result<Stream, (u16, Value)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut request = http_client()
            .get(format!("{}/v1/events{query}", server.addr))
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = runtime.block_on(request.send()).unwrap();
        let status = response.status().as_u16();
        if status != 200 {
            let body = runtime.block_on(response.bytes()).unwrap();
            return Err((status, serde_json::from_slice(&body).unwrap_or(Value::Null)));
        }
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut stream = Stream {
            runtime,
            response,
            parser: SseParser::default(),
            pending: VecDeque::new(),
        };
        // The opening message carries only the position.
        while stream.parser.last_event_id().is_none() {
            stream.read(Duration::from_secs(10));
        }
        Ok(stream)
    }

    /// The position the stream has reached (the last `id` received).
    fn position(&self) -> u64 {
        self.parser.last_event_id().unwrap().parse().unwrap()
    }

    fn read(&mut self, within: Duration) {
        let response = &mut self.response;
        let chunk = self
            .runtime
            .block_on(async move { tokio::time::timeout(within, response.chunk()).await })
            .unwrap_or_else(|_| panic!("nothing on the stream for {within:?}"))
            .unwrap()
            .expect("the stream ended");
        self.pending.extend(self.parser.push(&chunk).unwrap());
    }

    /// The next message with data, as the audit event it carries; checks
    /// that `id` and `event` repeat its `seq` and kind.
    fn next(&mut self) -> Value {
        while self.pending.is_empty() {
            self.read(Duration::from_secs(20));
        }
        let message = self.pending.pop_front().unwrap();
        let event: Value = serde_json::from_str(&message.data).unwrap();
        assert_eq!(message.id, event["seq"].to_string(), "{message:?}");
        assert_eq!(message.event, event["kind"].as_str().unwrap(), "{message:?}");
        event
    }

    /// Events until (and with) the first one `done` accepts.
    fn until(&mut self, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = self.next();
            let finished = done(&event);
            events.push(event);
            if finished {
                return events;
            }
        }
    }
}

fn is(event: &Value, kind: &str, request: &str) -> bool {
    event["kind"] == kind && event["request_id"] == request
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// Asserts `seqs` are `after + 1`, `after + 2`, ... with no gap.
fn assert_contiguous(after: u64, seqs: &[u64]) {
    let expected: Vec<u64> = (after + 1..=after + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "a gap or a repeat in the stream");
}

fn request(server: &Server, token: &str) -> String {
    let made = server.json(
        token,
        &["request", "demo-admin", "--for", "10m", "--reason", "watch me"],
    );
    made["id"].as_str().unwrap().to_string()
}

#[test]
fn an_admins_stream_follows_a_request_from_creation_to_release_in_seq_order() {
    let server = Server::dev();
    let mut stream = Stream::open(&server, &server.admin, None, "").unwrap();
    let start = stream.position();
    let id = request(&server, &server.alice);
    server.json(&server.bob, &["approve", &id]);
    server.json(&server.alice, &["release", &id]);
    let events = stream.until(|e| is(e, "grant.released", &id));
    assert_contiguous(start, &seqs(&events));
    let logged: Vec<Value> = server
        .json(&server.admin, &["audit", "list", "--request", &id])
        .as_array()
        .unwrap()
        .clone();
    let streamed: Vec<Value> = events.into_iter().filter(|e| e["request_id"] == id.as_str()).collect();
    assert_eq!(streamed, logged, "the stream carries the audit lines as logged");
    let kinds: Vec<&str> = streamed.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "request.created",
            "request.approved",
            "grant.activated",
            "grant.released"
        ]
    );
}

#[test]
fn a_requester_sees_her_own_requests_and_never_another_users() {
    let server = Server::dev();
    let dave = server.token("dave", "dev");
    let mut alice = Stream::open(&server, &server.alice, None, "").unwrap();
    // bob approves demo-admin: he sees both requesters' requests.
    let mut bob = Stream::open(&server, &server.bob, None, "").unwrap();
    let theirs = request(&server, &dave);
    let mine = request(&server, &server.alice);
    server.json(&dave, &["cancel", &theirs]);
    server.json(&server.alice, &["cancel", &mine]);

    let seen = alice.until(|e| is(e, "request.cancelled", &mine));
    let kinds: Vec<(&str, &str)> = seen
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["request_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("request.created", mine.as_str()), ("request.cancelled", mine.as_str())]
    );
    assert!(
        !seen.iter().any(|e| e.to_string().contains(&theirs)),
        "dave's request reached alice: {seen:?}"
    );
    let approver = bob.until(|e| is(e, "request.cancelled", &mine));
    let ids: Vec<&str> = approver.iter().map(|e| e["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [theirs.as_str(), mine.as_str(), theirs.as_str(), mine.as_str()]);
}

#[test]
fn resuming_with_last_event_id_after_a_disconnect_loses_nothing() {
    let server = Server::dev();
    let mut stream = Stream::open(&server, &server.admin, None, "").unwrap();
    let start = stream.position();
    std::thread::scope(|scope| {
        let busy = scope.spawn(|| {
            for _ in 0..8 {
                let id = request(&server, &server.alice);
                server.json(&server.alice, &["cancel", &id]);
            }
        });
        // Three events, then the connection is gone in the middle of it.
        let before: Vec<Value> = (0..3).map(|_| stream.next()).collect();
        drop(stream);
        busy.join().unwrap();
        let last = *seqs(&before).last().unwrap();
        let head = server.json(&server.admin, &["audit", "list", "--since", &last.to_string()]);
        let head = head.as_array().unwrap().last().unwrap()["seq"].as_u64().unwrap();
        assert!(head > last + 3, "events were written while disconnected");

        let mut resumed = Stream::open(&server, &server.admin, Some(&last.to_string()), "").unwrap();
        assert_eq!(resumed.position(), last, "the stream starts where the client left");
        let after = resumed.until(|e| e["seq"].as_u64() == Some(head));
        let all: Vec<u64> = seqs(&before).into_iter().chain(seqs(&after)).collect();
        assert_contiguous(start, &all);
        let created = before
            .iter()
            .chain(&after)
            .filter(|e| e["kind"] == "request.created")
            .count();
        assert_eq!(created, 8);
    });
}

#[test]
fn since_starts_after_a_seq_and_bad_positions_are_refused_in_the_error_shape() {
    let server = Server::dev();
    let mut from_start = Stream::open(&server, &server.admin, None, "?since=0").unwrap();
    assert_eq!(from_start.position(), 0);
    assert_eq!(from_start.next()["seq"], 1);
    // The header wins over the query, as when a browser reconnects.
    let mut header = Stream::open(&server, &server.admin, Some("3"), "?since=0").unwrap();
    assert_eq!(header.next()["seq"], 4);

    let bad_header = Stream::open(&server, &server.admin, Some("abc"), "").err().unwrap();
    assert_eq!(bad_header.0, 400, "{}", bad_header.1);
    assert_eq!(bad_header.1["error"]["code"], "invalid_input");
    let message = bad_header.1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Last-Event-ID") && message.contains("\"abc\""),
        "{message}"
    );
    assert!(bad_header.1["error"]["request_id"].is_string());

    let future = Stream::open(&server, &server.admin, Some("99999999"), "")
        .err()
        .unwrap();
    assert_eq!(
        (future.0, future.1["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    let bad_query = Stream::open(&server, &server.admin, None, "?since=-1").err().unwrap();
    assert_eq!(
        (bad_query.0, bad_query.1["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, body) = server.http("GET", "/v1/events", None, None);
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("missing_token")));
}

/// The client's stream, driven on its own runtime: events arrive on the
/// returned channel while the test restarts the server.
fn follow(addr: &str, token: &str) -> (tokio::runtime::Runtime, std::sync::mpsc::Receiver<Value>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = hallpass_client::Client::new(addr, Some(token.into())).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let mut stream = client.events(Some(0));
        while let Ok(event) = stream.next().await {
            if tx.send(serde_json::to_value(event).unwrap()).is_err() {
                return;
            }
        }
    });
    (runtime, rx)
}

fn receive_until(rx: &std::sync::mpsc::Receiver<Value>, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let event = rx.recv_timeout(Duration::from_secs(30)).expect("an event within 30 s");
        let finished = done(&event);
        events.push(event);
        if finished {
            return events;
        }
    }
}

#[test]
fn an_open_stream_lets_the_server_stop_at_once_and_the_client_resumes_after_a_restart() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut server = Server::persistent(&data_dir);
    let (_runtime, events) = follow(&server.addr, &server.admin);
    server.token("alice", "dev");
    let before = receive_until(&events, |e| {
        e["kind"] == "token.created" && e["data"]["principal"] == "alice"
    });

    let stopping = Instant::now();
    assert!(server.terminate(), "the server did not stop cleanly");
    let stopped_in = stopping.elapsed();
    assert!(
        stopped_in < Duration::from_secs(5),
        "an open event stream held the shutdown for {stopped_in:?} (the grace period is 20 s)"
    );

    // The same address, the same data: the client finds it again.
    let addr = server.addr.trim_start_matches("http://").to_string();
    let (mut command, _) = Server::command(&data_dir, &addr);
    let restarted = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let restarted = KillOnDrop(restarted);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !answers_health(&addr) {
        assert!(Instant::now() < deadline, "the restarted server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.token("bob", "approvers");
    let after = receive_until(&events, |e| {
        e["kind"] == "token.created" && e["data"]["principal"] == "bob"
    });
    let all: Vec<u64> = seqs(&before).into_iter().chain(seqs(&after)).collect();
    assert_contiguous(0, &all);
    // The checkpoint signed at shutdown, written after the stream was cut,
    // came on the new connection.
    assert!(after.iter().any(|e| e["kind"] == "audit.checkpoint"), "{after:?}");
    drop(restarted);
}

/// Whether a server at `addr` (`host:port`) answers `/healthz` with 200.
fn answers_health(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hallpass_watch_prints_each_event_as_it_happens_and_stops_on_ctrl_c() {
    let server = Server::dev();
    let head = server.json(&server.admin, &["audit", "list", "--limit", "10000"]);
    let head = head.as_array().unwrap().last().unwrap()["seq"].as_u64().unwrap();
    let child = server
        .cli(&server.admin)
        .args([
            "watch",
            "--output",
            "json",
            "--kind",
            "request.",
            "--since",
            &head.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();

    let id = request(&server, &server.alice);
    let line = lines.next().unwrap().unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (event["kind"].as_str(), event["request_id"].as_str()),
        (Some("request.created"), Some(id.as_str()))
    );
    assert_eq!(event["seq"].as_u64(), Some(head + 1), "the first event after --since");
    // Only `request.` kinds: the approval's grant.activated is left out.
    server.json(&server.bob, &["approve", &id]);
    let line = lines.next().unwrap().unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["kind"], "request.approved");

    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "hallpass watch did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "Ctrl-C ends a watch with 0: {status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut rest).unwrap();
    assert!(!rest.contains("error"), "{rest}");
}
