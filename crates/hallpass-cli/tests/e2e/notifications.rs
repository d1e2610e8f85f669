//! Webhook notifications end to end, on real time: a notifier set with
//! `hallpass apply`, a receiver that checks every signature, stopped and
//! started again on the same port while requests are made and decided —
//! nothing is lost, nothing is delivered twice after de-duplication by
//! `webhook-id`, and each request's notifications arrive in order. (On
//! three replicas each delivery is sent once: `replicas.rs`.)

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::harness::Server;

const KEY: [u8; 32] = [7; 32];

pub fn notifier_block(url: &str) -> String {
    format!(
        r#"
target "svc" {{
  type   = "jwt"
  config = {{ audience = "svc" }}
}}
role "ops" {{
  target         = "svc"
  max_duration   = "4h"
  requestable_by = ["group:dev"]
  approval {{
    approvers = ["group:approvers"]
  }}
}}
notifier "hook" {{
  type    = "webhook"
  config  = {{ url = "{url}", roles = ["ops"] }}
  secrets = {{ signing_secret = "whsec_{}" }}
}}
"#,
        STANDARD.encode(KEY)
    )
}

/// One notification received: its `webhook-id`, whether its signature
/// checked out, and its body.
#[derive(Debug, Clone)]
pub struct Received {
    id: String,
    signed: bool,
    body: Value,
}

/// A webhook receiver that can be stopped (connections refused) and
/// started again on the same address.
pub struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    running: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut receiver = Receiver {
            addr,
            received: Arc::default(),
            running: None,
        };
        receiver.serve(listener);
        receiver
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        let (stopped, received) = (stop.clone(), self.received.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (received, stopped) = (received.clone(), stopped.clone());
                std::thread::spawn(move || {
                    let _ = answer(stream, &received, &stopped);
                });
            }
        });
        self.running = Some((stop, thread));
    }

    /// Closes the listener: connections are refused until [`Self::resume`].
    fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
            let _ = thread.join();
        }
    }

    fn resume(&mut self) {
        let listener = TcpListener::bind(self.addr).expect("bind the same address again");
        self.serve(listener);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the requests of one connection, checks each signature, records
/// it and answers 204; a connection open while the receiver stops is
/// closed unanswered.
fn answer(stream: TcpStream, received: &Mutex<Vec<Received>>, stopped: &AtomicBool) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let get = |name: &str| headers.get(name).cloned().unwrap_or_default();
        let (id, timestamp) = (get("webhook-id"), get("webhook-timestamp"));
        let mut signed_bytes = format!("{id}.{timestamp}.").into_bytes();
        signed_bytes.extend_from_slice(&body);
        let key = hmac::Key::new(hmac::HMAC_SHA256, &KEY);
        let expected = format!("v1,{}", STANDARD.encode(hmac::sign(&key, &signed_bytes).as_ref()));
        received.lock().unwrap().push(Received {
            id,
            signed: get("webhook-signature") == expected,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        writer.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")?;
    }
}

/// The received notifications, de-duplicated by id (first copy kept).
pub fn unique(received: &[Received]) -> Vec<Received> {
    let mut seen = HashSet::new();
    received.iter().filter(|r| seen.insert(r.id.clone())).cloned().collect()
}

pub fn wait_for(receiver: &Receiver, count: usize, within: Duration) -> Vec<Received> {
    let deadline = Instant::now() + within;
    loop {
        let unique = unique(&receiver.received());
        if unique.len() >= count {
            return unique;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} notifications after {within:?}: {unique:?}",
            unique.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn topic(r: &Received) -> &str {
    r.body["type"].as_str().unwrap_or_default()
}

pub fn request_id(r: &Received) -> &str {
    r.body["request"]["id"].as_str().unwrap_or_default()
}

pub fn request(server: &Server, token: &str) -> String {
    let made = server.json(token, &["request", "ops", "--for", "1h", "--reason", "INC-4"]);
    made["id"].as_str().expect("id").to_string()
}

#[test]
fn nothing_is_lost_or_doubled_while_the_receiver_is_down_and_order_holds() {
    let mut receiver = Receiver::start();
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    server.apply(temp.path(), &notifier_block(&receiver.url()));
    let approver = server.token("olga", "approvers");
    let first = request(&server, &server.alice);
    let got = wait_for(&receiver, 1, Duration::from_secs(20));
    assert_eq!(
        (topic(&got[0]), request_id(&got[0])),
        ("request.pending", first.as_str())
    );

    receiver.stop();
    // While it is down: three more requests, and decisions on all four.
    let mut ids = vec![first];
    for _ in 0..3 {
        let dev = server.token(&format!("dev{}", ids.len()), "dev");
        ids.push(request(&server, &dev));
    }
    for (i, id) in ids.iter().enumerate() {
        if i % 2 == 0 {
            server.json(&approver, &["approve", id]);
        } else {
            server.json(&approver, &["deny", id, "--comment", "not now"]);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    receiver.resume();

    // 4 pending; 2 approved + 2 active; 2 denied.
    let got = wait_for(&receiver, 10, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let all = receiver.received();
    let got_now = unique(&all);
    assert_eq!(got_now.len(), 10, "no notification beyond those owed: {got:?}");
    assert!(all.iter().all(|r| r.signed), "every call is signed");
    for (i, id) in ids.iter().enumerate() {
        let topics: Vec<&str> = got_now.iter().filter(|r| request_id(r) == id).map(topic).collect();
        let expected: &[&str] = if i % 2 == 0 {
            &["request.pending", "request.approved", "grant.active"]
        } else {
            &["request.pending", "request.denied"]
        };
        assert_eq!(topics, expected, "request {id} in order");
    }
    let denied = got_now.iter().find(|r| topic(r) == "request.denied").unwrap();
    assert_eq!(denied.body["detail"], "not now");
    assert_eq!(denied.body["audience"].as_array().unwrap().len(), 1);
    // Nothing is stuck: no delivery gave up.
    let failed = server.json(&server.admin, &["notifications", "failed"]);
    assert_eq!(failed, serde_json::json!([]));
}

#[test]
fn notifiers_are_configuration_with_write_only_secrets() {
    let receiver = Receiver::start();
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    let applied = server.apply(temp.path(), &notifier_block(&receiver.url()));
    assert!(applied.to_string().contains("\"notifier\""), "{applied}");
    let listed = server.json(&server.alice, &["notifier", "list"]);
    assert_eq!(listed[0]["name"], "hook");
    assert_eq!(listed[0]["secrets"][0]["name"], "signing_secret");
    let secret = STANDARD.encode(KEY);
    assert!(!listed.to_string().contains(&secret));
    assert!(
        !server.dump_storage().contains(&secret),
        "the signing secret is stored in clear"
    );
    let export = server.run(&server.admin, &["audit", "export"]);
    assert!(!String::from_utf8_lossy(&export.stdout).contains(&secret));

    // A bad notifier is refused with where and why; nothing changes.
    let bad = temp.path().join("bad.hcl");
    std::fs::write(&bad, notifier_block("ftp://nowhere")).unwrap();
    let (_, stderr) = server.fails(&server.admin, &["apply", "-f", &bad.to_string_lossy()]);
    assert!(
        stderr.contains("notifier \"hook\"") && stderr.contains("http://"),
        "{stderr}"
    );
    let shown = server.json(&server.alice, &["notifier", "show", "hook"]);
    assert_eq!(shown["config"]["url"], receiver.url());
    // Dead letters are for admins and auditors.
    let (_, stderr) = server.fails(&server.alice, &["notifications", "failed"]);
    assert!(stderr.contains("audit"), "{stderr}");
    let (_, stderr) = server.fails(&server.admin, &["notifications", "retry", "no-such-delivery"]);
    assert!(stderr.contains("no delivery"), "{stderr}");
    assert!(
        server
            .run(&server.admin, &["notifier", "delete", "hook"])
            .status
            .success()
    );
    assert_eq!(server.json(&server.alice, &["notifier", "list"]), serde_json::json!([]));
}

/// The receiver of docs/notifications.md, run as written: it prints each
/// notification once, and refuses what is not signed with its secret.
#[test]
fn the_documented_python_receiver_verifies_real_notifications() {
    let script = hallpass_doc_examples::example("notifications.md", "## Webhook", "python");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let secret = format!("whsec_{}", STANDARD.encode(KEY));
    let mut python = std::process::Command::new("python3")
        .args(["-c", &script, &secret, &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (installed by scripts/test)");
    let url = format!("http://127.0.0.1:{port}/hook");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the documented receiver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A forged call (signed with another key) is refused.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut forged = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        forged,
        "POST /hook HTTP/1.1\r\nHost: x\r\nwebhook-id: x\r\nwebhook-timestamp: {stamp}\r\n\
         webhook-signature: v1,AAAA\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut answer = String::new();
    forged.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 401"), "{answer}");
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    server.apply(temp.path(), &notifier_block(&url));
    let id = request(&server, &server.alice);
    let mut lines = BufReader::new(python.stdout.take().unwrap()).lines();
    let line = lines.next().expect("a line").expect("text");
    let _ = python.kill();
    let _ = python.wait();
    assert_eq!(line, format!("request.pending {id}"));
}
