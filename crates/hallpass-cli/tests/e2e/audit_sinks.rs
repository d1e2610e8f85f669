//! Audit sinks end to end: a syslog receiver (octet-counted RFC 5424 over
//! TCP, parsed here), a webhook receiver that checks every signature, and
//! a file, fed by a real server that is killed with `kill -9` or whose
//! receiver goes away in the middle of a stream of events. Every event
//! arrives, in order, and once after de-duplication by `seq`; the file
//! verifies offline. A database whose log was cut or changed behind the
//! server's back is reported by the file sink, which stops.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::harness::{
    ROOT_TOKEN, Server, WEBHOOK_HMAC_SECRET, database_for, hallpass_bin, postgres_base_url, read_request,
};

/// One RFC 5424 message as the receiver read it.
#[derive(Debug, Clone)]
struct SyslogMessage {
    /// Which connection (in accept order) it came on.
    connection: usize,
    pri: u32,
    timestamp: String,
    hostname: String,
    app: String,
    procid: String,
    msgid: String,
    /// The parameters of the `hallpass@32473` element, unescaped.
    params: BTreeMap<String, String>,
    /// The message: the event's export line.
    event: Value,
}

impl SyslogMessage {
    fn seq(&self) -> u64 {
        self.event["seq"].as_u64().expect("an event has a seq")
    }
}

/// A syslog receiver over TCP with octet-counting framing.
struct SyslogReceiver {
    address: String,
    messages: Arc<Mutex<Vec<Result<SyslogMessage, String>>>>,
}

impl SyslogReceiver {
    fn start() -> SyslogReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the syslog receiver");
        let address = listener.local_addr().expect("address").to_string();
        let messages = Arc::default();
        let recorded = Arc::clone(&messages);
        std::thread::spawn(move || {
            for (connection, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let recorded = Arc::clone(&recorded);
                std::thread::spawn(move || read_frames(stream, connection, &recorded));
            }
        });
        SyslogReceiver { address, messages }
    }

    /// Every message so far; panics on one that could not be read.
    fn messages(&self) -> Vec<SyslogMessage> {
        let messages = self.messages.lock().unwrap().clone();
        messages
            .into_iter()
            .map(|message| message.unwrap_or_else(|problem| panic!("a bad syslog message: {problem}")))
            .collect()
    }

    /// The messages once `seq` is among them (the closing checkpoint
    /// goes out as the server stops), or after 5 s.
    fn messages_up_to(&self, seq: u64) -> Vec<SyslogMessage> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.distinct_seqs().contains(&seq) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.messages()
    }

    fn distinct_seqs(&self) -> HashSet<u64> {
        self.messages().iter().map(SyslogMessage::seq).collect()
    }
}

/// `LEN SP MSG` frames until the sender closes (or dies mid-frame).
fn read_frames(stream: TcpStream, connection: usize, recorded: &Mutex<Vec<Result<SyslogMessage, String>>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = Vec::new();
        match reader.read_until(b' ', &mut length) {
            Ok(n) if n > 0 && length.ends_with(b" ") => {}
            _ => return,
        }
        let text = String::from_utf8_lossy(&length[..length.len() - 1]).into_owned();
        let Ok(length) = text.parse::<usize>() else {
            recorded.lock().unwrap().push(Err(format!("frame length {text:?}")));
            return;
        };
        let mut message = vec![0; length];
        if reader.read_exact(&mut message).is_err() {
            return;
        }
        recorded.lock().unwrap().push(parse_message(connection, &message));
    }
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP PROCID MSGID [SD] BOM MSG`.
fn parse_message(connection: usize, bytes: &[u8]) -> Result<SyslogMessage, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let (header, message) = text.split_once('\u{feff}').ok_or(format!("no BOM in {text:?}"))?;
    let (pri, rest) = header
        .strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .ok_or(format!("no PRI in {text:?}"))?;
    let rest = rest.strip_prefix("1 ").ok_or(format!("not version 1: {text:?}"))?;
    let fields: Vec<&str> = rest.splitn(6, ' ').collect();
    let [timestamp, hostname, app, procid, msgid, sd] = fields.as_slice() else {
        return Err(format!("missing header fields in {text:?}"));
    };
    let inner = sd
        .strip_suffix(' ')
        .and_then(|sd| sd.strip_prefix("[hallpass@32473"))
        .and_then(|sd| sd.strip_suffix(']'))
        .ok_or(format!("no hallpass@32473 element in {text:?}"))?;
    Ok(SyslogMessage {
        connection,
        pri: pri.parse().map_err(|_| format!("PRI {pri:?}"))?,
        timestamp: timestamp.to_string(),
        hostname: hostname.to_string(),
        app: app.to_string(),
        procid: procid.to_string(),
        msgid: msgid.to_string(),
        params: sd_params(inner)?,
        event: serde_json::from_str(message).map_err(|e| format!("{e}: {message:?}"))?,
    })
}

/// ` name="value" name="value"`, with `\"`, `\\` and `\]` unescaped.
fn sd_params(mut rest: &str) -> Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    while let Some(after) = rest.strip_prefix(' ') {
        let (name, after) = after
            .split_once("=\"")
            .ok_or(format!("a parameter without a value: {rest:?}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                Some((at, '"')) => break at,
                Some((_, ']')) => return Err(format!("an unescaped ] in {after:?}")),
                Some((_, c)) => value.push(c),
                None => return Err(format!("an unterminated value in {after:?}")),
            }
        };
        params.insert(name.to_string(), value);
        rest = &after[end + 1..];
    }
    if rest.is_empty() {
        Ok(params)
    } else {
        Err(format!("left over in the structured data: {rest:?}"))
    }
}

/// Makes `token.created` events over plain HTTP, one after another, until
/// stopped, on whichever server `addr` names now; failures (the server is
/// down) are skipped.
struct Load {
    addr: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    made: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: &str) -> Load {
        let addr = Arc::new(Mutex::new(addr.to_string()));
        let (stop, made) = (Arc::<AtomicBool>::default(), Arc::<AtomicUsize>::default());
        let thread = std::thread::spawn({
            let (addr, stop, made) = (Arc::clone(&addr), Arc::clone(&stop), Arc::clone(&made));
            move || {
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let target = addr.lock().unwrap().clone();
                    if create_token(&target, n) {
                        made.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Load {
            addr,
            stop,
            made,
            thread: Some(thread),
        }
    }

    fn retarget(&self, addr: &str) {
        *self.addr.lock().unwrap() = addr.to_string();
    }

    fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }

    /// Stops; returns how many events the servers acknowledged.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the load thread");
        }
        self.made()
    }
}

/// `POST /v1/tokens` as the admin; true when the server answered 2xx.
fn create_token(addr: &str, n: usize) -> bool {
    let host = addr.trim_start_matches("http://");
    let Ok(mut stream) = TcpStream::connect(host) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let body = format!(r#"{{"principal":"load-{n}","groups":["dev"]}}"#);
    let request = format!(
        "POST /v1/tokens HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ROOT_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 2")
}

/// Writes the server configuration file; returns its path.
fn config_file(dir: &Path, text: &str) -> String {
    crate::harness::write_file(dir, "server.hcl", text)
}

/// Polls `/metrics` until `ready` holds for them (30 s at most).
fn metrics_when(server: &Server, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = server.text("/metrics");
        if ready(&metrics) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "{what} never happened:\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the sample `name{sink="SINK"}`.
fn sink_metric(metrics: &str, name: &str, sink: &str) -> Option<f64> {
    let prefix = format!("{name}{{sink=\"{sink}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

/// Waits until every sink named has sent everything the log holds.
fn caught_up(server: &Server, sinks: &[&str]) -> String {
    metrics_when(server, "the sinks catching up", |metrics| {
        sinks.iter().all(|sink| {
            sink_metric(metrics, "hallpass_audit_sink_lag_events", sink) == Some(0.0)
                && sink_metric(metrics, "hallpass_audit_sink_events_total", sink).is_some_and(|n| n > 0.0)
        })
    })
}

/// The stored log as (seq, hash, kind), read from the database directly.
fn stored_log(server: &Server) -> Vec<(u64, String, String)> {
    let mut database = server.database();
    let hash = database.hex("hash");
    // Sorted by the number: on PostgreSQL `ORDER BY seq` would sort the text column.
    let rows = database.rows(&format!(
        "SELECT CAST(seq AS TEXT) AS seq_text, {hash}, kind FROM audit ORDER BY audit.seq"
    ));
    rows.into_iter()
        .map(|row| {
            let text = |i: usize| row[i].clone().expect("not null");
            (text(0).parse().expect("seq"), text(1), text(2))
        })
        .collect()
}

/// The audit public key, as a file for `audit verify --public-key`.
fn public_key_file(server: &Server, dir: &Path) -> String {
    let output = server.run(&server.admin, &["audit", "public-key"]);
    assert!(output.status.success(), "{output:?}");
    crate::harness::write_file(dir, "audit-key.pem", &String::from_utf8_lossy(&output.stdout))
}

/// `hallpass audit verify --file FILE --public-key KEY`, offline.
fn verify_offline(file: &Path, key: &str) -> Value {
    let output = std::process::Command::new(hallpass_bin())
        .args(["--output", "json", "audit", "verify", "--file"])
        .arg(file)
        .args(["--public-key", key])
        .env_remove("HALLPASS_TOKEN")
        .output()
        .expect("run hallpass audit verify");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", String::from_utf8_lossy(&output.stderr)))
}

/// Checks the file holds the stored log exactly once, in order, and
/// verifies complete offline.
fn check_file(file: &Path, stored: &[(u64, String, String)], key: &str) {
    let text = std::fs::read_to_string(file).expect("the sink file");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a line is an event"))
        .collect();
    let copied: Vec<(u64, String)> = lines
        .iter()
        .map(|event| {
            (
                event["seq"].as_u64().unwrap(),
                event["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(u64, String)> = stored.iter().map(|(seq, hash, _)| (*seq, hash.clone())).collect();
    assert_eq!(copied, expected, "the file holds every event once, as stored");
    let report = verify_offline(file, key);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["last_seq"], stored.len() as u64, "{report}");
}

/// Checks every syslog message against the stored log; returns the
/// distinct PROCIDs in order of appearance.
fn check_syslog(messages: &[SyslogMessage], stored: &[(u64, String, String)]) -> Vec<String> {
    let mut procids: Vec<String> = Vec::new();
    for message in messages {
        let seq = message.seq();
        let (_, hash, kind) = &stored[usize::try_from(seq).unwrap() - 1];
        assert_eq!(message.event["hash"], hash.as_str(), "{message:?}");
        assert_eq!((&message.msgid, &message.params["kind"]), (kind, kind), "{message:?}");
        assert_eq!(message.params["seq"], seq.to_string());
        assert_eq!(message.params["actor"], message.event["actor"].as_str().unwrap());
        assert_eq!(
            message.params.get("request").map(String::as_str),
            message.event["request_id"].as_str()
        );
        assert_eq!(
            message.timestamp,
            message.event["time"].as_str().unwrap(),
            "{message:?}"
        );
        let severity = if kind == "audit.checkpoint" { 6 } else { 5 };
        assert_eq!(
            message.pri,
            10 * 8 + severity,
            "authpriv, and notice or info: {message:?}"
        );
        assert_eq!(message.app, "hallpass");
        assert!(!message.hostname.is_empty() && !message.hostname.contains(' '));
        assert!(message.procid.chars().all(|c| c.is_ascii_digit()), "{message:?}");
        if !procids.contains(&message.procid) {
            procids.push(message.procid.clone());
        }
    }
    procids
}

/// Asserts that, keeping the first copy of each seq, the messages hold
/// the whole log in order: every seq from 1 to the head, each after the
/// one before. Returns how many copies were extra.
fn assert_in_order_once(seqs: &[u64], head: u64) -> usize {
    let mut seen = HashSet::new();
    let first: Vec<u64> = seqs.iter().copied().filter(|seq| seen.insert(*seq)).collect();
    assert_eq!(first, (1..=head).collect::<Vec<_>>(), "every event, in order");
    seqs.len() - first.len()
}

#[test]
fn syslog_and_file_sinks_keep_every_event_across_a_kill_9() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let receiver = SyslogReceiver::start();
    let file = temp.path().join("witness").join("audit.jsonl");
    let config = config_file(
        temp.path(),
        &format!(
            r#"
audit_sink "siem" {{
  type             = "syslog"
  address          = "{}"
  batch_max_events = 7
  batch_max_wait   = "0s"
}}
audit_sink "local" {{
  type             = "file"
  path             = {file:?}
  batch_max_events = 5
}}
"#,
            receiver.address
        ),
    );
    let args = ["--config", config.as_str()];
    let mut server = Server::persistent_with_args(&data_dir, &args);
    let load = Load::start(&server.addr);
    std::thread::sleep(Duration::from_millis(1500));
    let before_crash = load.made();
    // In the middle of the stream: requests are in flight.
    server.kill_hard();
    assert!(before_crash > 10, "only {before_crash} events before the crash");
    let mut server = Server::persistent_with_args(&data_dir, &args);
    load.retarget(&server.addr);
    std::thread::sleep(Duration::from_millis(1500));
    let made = load.stop();
    assert!(
        made > before_crash + 10,
        "{made} events in all, {before_crash} before the crash"
    );
    caught_up(&server, &["siem", "local"]);
    let key = public_key_file(&server, temp.path());
    assert!(server.terminate(), "a clean shutdown");

    let stored = stored_log(&server);
    let head = stored.len() as u64;
    assert_eq!(stored.last().map(|e| e.2.as_str()), Some("audit.checkpoint"));
    // The closing checkpoint went out before the server stopped.
    let messages = receiver.messages_up_to(head);
    let procids = check_syslog(&messages, &stored);
    assert_eq!(procids.len(), 2, "one server, then its restart: {procids:?}");
    let seqs: Vec<u64> = messages.iter().map(SyslogMessage::seq).collect();
    let extra = assert_in_order_once(&seqs, head);
    // Copies twice over only where the crash cut in: on one connection,
    // the seqs only go up.
    for connection in messages.iter().map(|m| m.connection).collect::<HashSet<_>>() {
        let on_it: Vec<u64> = messages
            .iter()
            .filter(|m| m.connection == connection)
            .map(|m| m.seq())
            .collect();
        assert!(
            on_it.windows(2).all(|pair| pair[0] < pair[1]),
            "connection {connection}: {on_it:?}"
        );
    }
    assert!(
        extra <= 2 * 7,
        "{extra} copies sent twice: more than the batches in flight at the crash"
    );
    check_file(&file, &stored, &key);
}

/// A webhook receiver that checks every signature and can be stopped
/// (connections dropped unanswered, port closed) and started again on its
/// port.
struct WebhookReceiver {
    port: u16,
    shared: Shared,
}

/// A batch as received: its webhook-id and the seqs of its lines.
type Batch = (String, Vec<u64>);

/// What a receiver's connection threads share with it.
#[derive(Clone, Default)]
struct Shared {
    up: Arc<AtomicBool>,
    /// The batches accepted, in arrival order.
    batches: Arc<Mutex<Vec<Batch>>>,
    /// The webhook-id of each request hung up on while down.
    refused: Arc<Mutex<Vec<String>>>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Shared {
    fn batches(&self) -> Vec<Batch> {
        self.batches.lock().unwrap().clone()
    }
}

impl WebhookReceiver {
    fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook receiver");
        let port = listener.local_addr().expect("address").port();
        let receiver = WebhookReceiver {
            port,
            shared: Shared::default(),
        };
        receiver.shared.up.store(true, Ordering::SeqCst);
        receiver.serve(listener);
        receiver
    }

    fn serve(&self, listener: TcpListener) {
        let shared = self.shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if !shared.up.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = answer_batches(stream, &shared);
                });
            }
        });
    }

    fn stop(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and closes the port.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        std::thread::sleep(Duration::from_millis(100));
    }

    fn restart(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind the port again");
        self.shared.up.store(true, Ordering::SeqCst);
        self.serve(listener);
    }
}

/// Reads requests off one connection; checks and records each batch and
/// answers 204, unless the receiver is down, when it hangs up unanswered.
fn answer_batches(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some((headers, body)) = read_request(&mut reader)? {
        let headers: BTreeMap<String, String> = headers.into_iter().collect();
        if !shared.up.load(Ordering::SeqCst) {
            let id = headers.get("webhook-id").cloned().unwrap_or_default();
            shared.refused.lock().unwrap().push(id);
            return Ok(());
        }
        match check_batch(&headers, &body) {
            Ok(batch) => shared.batches.lock().unwrap().push(batch),
            Err(problem) => shared.problems.lock().unwrap().push(problem),
        }
        writer.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")?;
    }
    Ok(())
}

/// The Standard Webhooks check a receiver makes, and the batch's form.
fn check_batch(headers: &BTreeMap<String, String>, body: &[u8]) -> Result<Batch, String> {
    let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let secret = STANDARD
        .decode(WEBHOOK_HMAC_SECRET.trim_start_matches("whsec_"))
        .map_err(|e| e.to_string())?;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
    let signed = [format!("{id}.{timestamp}.").as_bytes(), body].concat();
    let expected = format!("v1,{}", STANDARD.encode(aws_lc_rs::hmac::sign(&key, &signed).as_ref()));
    if header("webhook-signature") != expected {
        return Err(format!("batch {id}: bad signature"));
    }
    if header("content-type") != "application/x-ndjson" {
        return Err(format!("batch {id}: content type {:?}", header("content-type")));
    }
    let text = String::from_utf8(body.to_vec()).map_err(|e| e.to_string())?;
    let seqs: Vec<u64> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).map(|event| event["seq"].as_u64().unwrap_or(0)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("batch {id}: {e}"))?;
    let (first, last) = (seqs.first().copied().unwrap_or(0), seqs.last().copied().unwrap_or(0));
    if id != format!("audit-{first}-{last}") || !text.ends_with('\n') {
        return Err(format!("batch {id} holds {first}..{last}"));
    }
    Ok((id, seqs))
}

#[test]
fn webhook_sink_delivers_signed_batches_through_a_receiver_restart() {
    let temp = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start();
    crate::harness::write_file(temp.path(), "sink.key", &format!("{WEBHOOK_HMAC_SECRET}\n"));
    let config = config_file(
        temp.path(),
        &format!(
            r#"
audit_sink "siem" {{
  type             = "webhook"
  url              = "http://127.0.0.1:{}/audit"
  hmac_secret      = file("sink.key")
  batch_max_events = 5
  batch_max_wait   = "0s"
  timeout          = "2s"
}}
"#,
            receiver.port
        ),
    );
    let mut server = Server::persistent_with_args(&temp.path().join("data"), &["--config", &config]);
    let load = Load::start(&server.addr);
    std::thread::sleep(Duration::from_secs(1));
    receiver.stop();
    let down_at = receiver.shared.batches().len();
    std::thread::sleep(Duration::from_secs(3));
    receiver.restart();
    std::thread::sleep(Duration::from_secs(1));
    load.stop();
    let metrics = caught_up(&server, &["siem"]);
    assert!(
        sink_metric(&metrics, "hallpass_audit_sink_failures_total", "siem").is_some_and(|n| n > 0.0),
        "the receiver's absence counts as failures:\n{metrics}"
    );
    let logs = server.logs();
    assert!(logs.contains("audit sink delivery failed"), "{logs}");
    assert!(
        !logs.contains(WEBHOOK_HMAC_SECRET.trim_start_matches("whsec_")),
        "no secret in the logs"
    );
    assert!(server.terminate());

    let stored = stored_log(&server);
    let deadline = Instant::now() + Duration::from_secs(5);
    let head = stored.len() as u64;
    let seqs = loop {
        let seqs: Vec<u64> = receiver.shared.batches().into_iter().flat_map(|(_, s)| s).collect();
        if seqs.contains(&head) || Instant::now() > deadline {
            break seqs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(*receiver.shared.problems.lock().unwrap(), Vec::<String>::new());
    let accepted = receiver.shared.batches();
    assert!(down_at > 0 && accepted.len() > down_at);
    assert_in_order_once(&seqs, head);
    // The batch the receiver hung up on went again as it was, id and all.
    let refused = receiver.shared.refused.lock().unwrap().clone();
    assert!(
        !refused.is_empty(),
        "some batches were sent while the receiver was down"
    );
    assert_eq!(refused.last(), Some(&accepted[down_at].0), "{refused:?}");
}

/// A server with a file sink that wrote a few events, stopped cleanly;
/// returns the data dir's server (stopped), the config and the file.
fn witnessed_log(dir: &Path) -> (Server, String, std::path::PathBuf) {
    let file = dir.join("witness").join("audit.jsonl");
    let config = config_file(
        dir,
        &format!("audit_sink \"local\" {{\n  type = \"file\"\n  path = {file:?}\n}}\n"),
    );
    let mut server = Server::persistent_with_args(&dir.join("data"), &["--config", &config]);
    for n in 0..3 {
        server.token(&format!("user-{n}"), "dev");
    }
    assert!(server.terminate());
    (server, config, file)
}

/// Starts the server again after the database was tampered with; checks
/// the file sink raised the alarm and left its copy alone.
fn assert_rewrite_reported(dir: &Path, config: &str, file: &Path, problem: &str) {
    let copy = std::fs::read(file).expect("the sink file");
    let server = Server::persistent_with_args(&dir.join("data"), &["--config", config]);
    let logs = server.logs_when(|logs| logs.contains("ALERT"));
    assert!(
        logs.contains("ALERT: audit sink \\\"local\\\" stopped") && logs.contains(problem),
        "{logs}"
    );
    let metrics = server.text("/metrics");
    assert_eq!(
        sink_metric(&metrics, "hallpass_audit_sink_rewrite_detected", "local"),
        Some(1.0),
        "{metrics}"
    );
    // New events keep coming; the witness does not take them.
    server.token("after", "dev");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        std::fs::read(file).expect("the sink file"),
        copy,
        "the copy is left as it was"
    );
}

#[test]
fn a_cut_audit_log_is_reported_by_the_file_sink() {
    let temp = tempfile::tempdir().unwrap();
    let (server, config, file) = witnessed_log(temp.path());
    let stored = stored_log(&server);
    let keep = stored.len() as u64 - 3;
    let (_, hash, _) = &stored[usize::try_from(keep).unwrap() - 1];
    let mut database = server.database();
    // The last events removed, and the head set back to match: a
    // consistent, shorter log.
    database.execute(&format!("DELETE FROM audit WHERE seq > {keep}"), &[]);
    database.execute(
        &format!("UPDATE audit_head SET seq = {keep}, hash = $1 WHERE id = 1"),
        &[hash],
    );
    drop(database);
    assert_rewrite_reported(temp.path(), &config, &file, &format!("has no event {}", stored.len()));
}

#[test]
fn a_changed_audit_event_is_reported_by_the_file_sink() {
    let temp = tempfile::tempdir().unwrap();
    let (server, config, file) = witnessed_log(temp.path());
    let head = stored_log(&server).len();
    // The last event's actor changed, its stored hash left as it was.
    server
        .database()
        .execute(&format!("UPDATE audit SET actor = 'mallory' WHERE seq = {head}"), &[]);
    assert_rewrite_reported(
        temp.path(),
        &config,
        &file,
        &format!("event {head} in the database differs"),
    );
}

#[test]
fn replicas_drive_one_syslog_sink_from_one_replica_at_a_time() {
    let temp = tempfile::tempdir().unwrap();
    let database_url = database_for(&postgres_base_url(), &temp.path().join("database"));
    let receiver = SyslogReceiver::start();
    let config = config_file(
        temp.path(),
        &format!(
            "audit_sink \"siem\" {{\n  type = \"syslog\"\n  address = \"{}\"\n  batch_max_events = 10\n  batch_max_wait = \"0s\"\n}}\n",
            receiver.address
        ),
    );
    let args = ["--config", config.as_str()];
    let mut replicas: Vec<Server> = (0..2)
        .map(|i| Server::replica_with_args(&database_url, &temp.path().join(format!("replica-{i}")), &args))
        .collect();
    let load = Load::start(&replicas[0].addr);
    std::thread::sleep(Duration::from_secs(2));
    // Kill the replica that drives the sink, while events are written.
    let driver = receiver
        .messages()
        .last()
        .expect("messages before the kill")
        .procid
        .clone();
    let doomed = replicas
        .iter()
        .position(|server| server.pid().map(|pid| pid.to_string()) == Some(driver.clone()))
        .expect("the driver is one of the replicas");
    let before_kill = receiver.messages().len();
    replicas[doomed].kill_hard();
    let survivor = replicas.remove(1 - doomed);
    load.retarget(&survivor.addr);
    std::thread::sleep(Duration::from_secs(2));
    load.stop();

    // The survivor takes the lease over when it runs out (10 s).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let head = stored_log(&survivor).len() as u64;
        let received = receiver.distinct_seqs();
        if (1..=head).all(|seq| received.contains(&seq)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivor never sent the rest ({} of {head})",
            received.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut survivor = survivor;
    assert!(survivor.terminate());
    let stored = stored_log(&survivor);
    let head = stored.len() as u64;
    let messages = receiver.messages_up_to(head);
    let procids = check_syslog(&messages, &stored);
    assert_eq!(procids.len(), 2, "the driver, then the survivor: {procids:?}");
    assert!(
        messages[..before_kill].iter().all(|m| m.procid == driver),
        "one replica at a time drives the sink"
    );
    let seqs: Vec<u64> = messages.iter().map(SyslogMessage::seq).collect();
    let extra = assert_in_order_once(&seqs, head);
    assert!(
        extra <= 2 * 10,
        "{extra} copies sent twice: more than the batches in flight at the kill"
    );
}

#[test]
fn a_sink_the_server_cannot_use_stops_the_start_up_and_changes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let short_key = "c2hvcnQta2V5";
    let cases = [
        (
            "audit_sink \"x\" {\n  type    = \"syslog\"\n  address = \"nowhere\"\n}\n".to_string(),
            "server.hcl:3:13: attribute \"address\" in audit_sink \"x\" must be a host and port",
        ),
        (
            format!(
                "audit_sink \"x\" {{\n  type = \"webhook\"\n  url = \"https://siem.internal/\"\n  hmac_secret = \"whsec_{short_key}\"\n}}\n"
            ),
            "audit_sink \"x\": secret `hmac_secret` holds 9 bytes",
        ),
    ];
    let mut database_url = None;
    for (text, expected) in cases {
        let config = config_file(temp.path(), &text);
        let (mut command, url) = Server::command(&data_dir, "127.0.0.1:9");
        database_url = url;
        let output = command
            .args(["--config", &config])
            .env("HALLPASS_BOOTSTRAP_TOKEN", ROOT_TOKEN)
            .output()
            .expect("run hallpass server");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains(short_key), "the key is not echoed: {stderr}");
    }
    // Refused before the store was opened: not even its tables exist.
    match database_url {
        None => assert!(!data_dir.join("hallpass.db").exists()),
        Some(url) => {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect to PostgreSQL");
            let tables = client
                .query(
                    "SELECT 1 FROM information_schema.tables WHERE table_name = 'audit'",
                    &[],
                )
                .expect("query");
            assert!(tables.is_empty(), "the store was created");
        }
    }
}
