//! The email notifier end to end: a real SMTP server (aiosmtpd, driven by
//! `smtp_sink.py` beside this file) on a free loopback port, a notifier
//! made with `hallpass apply`, and a request pending on a flow whose
//! approver `user:carol` has an address in `recipients`. The message the
//! SMTP server takes is parsed by Python's email package and checked:
//! its envelope, subject, ids, both parts, the link and the HTML escaping.
//! Also over STARTTLS with a login and over implicit TLS, both against a
//! private CA (`ca_file`), and a notifier whose server is down being
//! retried.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Server;

const REASON: &str = "<img src=x onerror=alert(1)> for INC-7";

/// A python that imports aiosmtpd: scripts/test installs it with moto and
/// boto3 (scripts/lib/aws-test-requirements.txt) and names that python in
/// HALLPASS_TEST_AWS_PYTHON. Its absence fails the test under CI=true.
fn python() -> Option<String> {
    let candidates = std::env::var("HALLPASS_TEST_AWS_PYTHON")
        .into_iter()
        .chain(["python3".to_string()]);
    for python in candidates {
        let imports = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if imports {
            return Some(python);
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "no python with aiosmtpd, and CI=true: scripts/test installs it (scripts/lib/aws-test-requirements.txt) \
         and sets HALLPASS_TEST_AWS_PYTHON"
    );
    eprintln!("no python with aiosmtpd (run scripts/test, or pip install aiosmtpd): skipping the email test");
    None
}

/// How the sink's connections are protected, and with what certificate.
enum Mode<'a> {
    Plain,
    StartTls { cert: &'a Path, key: &'a Path },
    Tls { cert: &'a Path, key: &'a Path },
}

/// A running `smtp_sink.py`; stopped (its stdin closed, then killed) when
/// dropped.
struct SmtpSink {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    fn start(python: &str, mode: Mode, login: Option<(&str, &str)>) -> SmtpSink {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/smtp_sink.py");
        let mut command = Command::new(python);
        command.arg(&script).arg(dir.path());
        match mode {
            Mode::Plain => command.args(["--mode", "plain"]),
            Mode::StartTls { cert, key } => command
                .args(["--mode", "starttls", "--cert"])
                .arg(cert)
                .arg("--key")
                .arg(key),
            Mode::Tls { cert, key } => command
                .args(["--mode", "tls", "--cert"])
                .arg(cert)
                .arg("--key")
                .arg(key),
        };
        if let Some((username, password)) = login {
            command.args(["--username", username, "--password", password]);
        }
        let mut child = command
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start smtp_sink.py");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("smtp_sink.py did not say where it listens within 20s");
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("smtp_sink.py said {line:?}"));
        SmtpSink {
            child,
            stdin,
            port,
            dir,
        }
    }

    /// The messages taken so far, oldest first.
    fn messages(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read the sink's dir")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|path| serde_json::from_slice(&std::fs::read(path).expect("read a message")).expect("JSON"))
            .collect()
    }

    /// Waits until `count` messages were taken.
    fn wait_for(&self, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP server took {} message(s) in {within:?}, expected {count}",
                messages.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(message: &'a Value, name: &str) -> Vec<&'a str> {
    message["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|pair| pair[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .filter_map(|pair| pair[1].as_str())
        .collect()
}

/// A flow whose one stage is carol's, a role on it, and `notifiers`.
fn config(notifiers: &str) -> String {
    format!(
        r#"
target "prod-pg" {{
  type   = "jwt"
  config = {{ audience = "prod-pg" }}
}}
approval_flow "carol-approves" {{
  stage {{
    approvers = ["user:carol"]
  }}
}}
role "prod-db-write" {{
  target         = "prod-pg"
  max_duration   = "1h"
  requestable_by = ["group:dev"]
  approval_flow  = "carol-approves"
}}
{notifiers}
"#
    )
}

/// One email notifier on `port`; `extra` are more lines of its `config`.
fn notifier(name: &str, port: u16, extra: &str, secrets: &str) -> String {
    format!(
        r#"
notifier "{name}" {{
  type   = "email"
  config = {{
    host       = "127.0.0.1"
    port       = {port}
    from       = "Hallpass <hallpass@example.com>"
    topics     = ["request.pending"]
    recipients = {{ "user:carol" = "Carol <carol@example.com>", "user:alice" = "alice@example.com" }}
    {extra}
  }}
  {secrets}
}}
"#
    )
}

fn request(server: &Server) -> String {
    let request = server.json(
        &server.alice,
        &["request", "prod-db-write", "--for", "30m", "--reason", REASON],
    );
    assert_eq!(request["state"], "pending", "{request}");
    request["id"].as_str().expect("id").to_string()
}

/// `(state, attempts, last_error)` of each delivery to `notifier`.
fn deliveries(server: &Server, notifier: &str) -> Vec<(String, u32, String)> {
    server
        .database()
        .rows(&format!(
            "SELECT id, state, CAST(attempts AS TEXT), last_error FROM deliveries WHERE notifier = '{notifier}'"
        ))
        .into_iter()
        .map(|row| {
            let text = |i: usize| row[i].clone().unwrap_or_default();
            (text(1), text(2).parse().expect("attempts"), text(3))
        })
        .collect()
}

fn delivery_ids(server: &Server, notifier: &str) -> Vec<String> {
    server
        .database()
        .rows(&format!("SELECT id FROM deliveries WHERE notifier = '{notifier}'"))
        .into_iter()
        .filter_map(|row| row[0].clone())
        .collect()
}

/// A port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn a_pending_request_emails_its_approver_both_parts_with_the_link_and_the_reason_escaped() {
    let Some(python) = python() else { return };
    let sink = SmtpSink::start(&python, Mode::Plain, None);
    let server = Server::dev();
    let temp = tempfile::tempdir().unwrap();
    let notifiers = notifier("mail", sink.port, "tls = \"none\"", "")
        + &notifier("down", closed_port(), "tls = \"none\"\n    timeout_seconds = 2", "");
    server.apply(temp.path(), &config(&notifiers));
    let id = request(&server);

    let messages = sink.wait_for(1, Duration::from_secs(30));
    let message = &messages[0];
    assert_eq!(message["mail_from"], "hallpass@example.com");
    assert_eq!(message["rcpt_tos"], serde_json::json!(["carol@example.com"]));
    assert_eq!(message["tls"], false);
    assert_eq!(header(message, "Subject"), ["[Hallpass] alice asks for prod-db-write"]);
    assert_eq!(header(message, "To"), ["Carol <carol@example.com>"]);
    assert_eq!(message["content_type"], "multipart/alternative");
    let ids = delivery_ids(&server, "mail");
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(header(message, "Message-ID"), [format!("<{}@hallpass>", ids[0])]);
    assert_eq!(header(message, "X-Hallpass-Notification-Id"), [ids[0].as_str()]);

    let link = format!("{}/v1/requests/{id}", server.addr);
    let text = message["text"].as_str().expect("a text part");
    let html = message["html"].as_str().expect("an HTML part");
    for part in [text, html] {
        for needed in [link.as_str(), "alice", "prod-db-write", "30m", "user:carol", "1 of 1"] {
            assert!(part.contains(needed), "{needed:?} is missing from:\n{part}");
        }
    }
    assert!(text.contains(REASON), "{text}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt; for INC-7"),
        "the reason is not escaped in:\n{html}"
    );
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains(&format!("<a href=\"{link}\">")), "{html}");

    // Delivered once; nothing else for this notifier (it hears only
    // request.pending, and alice is not told of her own request).
    let deadline = Instant::now() + Duration::from_secs(10);
    while deliveries(&server, "mail")
        .iter()
        .any(|(state, ..)| state != "delivered")
    {
        assert!(Instant::now() < deadline, "{:?}", deliveries(&server, "mail"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(deliveries(&server, "mail")[0].1, 1);
    assert_eq!(sink.messages().len(), 1);

    // The notifier whose server is down is retried, with why.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let down = deliveries(&server, "down");
        if let [(state, attempts, error)] = down.as_slice()
            && *attempts >= 2
        {
            assert_eq!(state, "pending");
            assert!(error.contains("nothing listens there"), "{error}");
            break;
        }
        assert!(Instant::now() < deadline, "no retry of the failed email: {down:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A CA and a certificate for 127.0.0.1 it signed, written to `dir`:
/// (CA, certificate, key) files.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hallpass smtp test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (dir.join("ca.pem"), dir.join("smtp.pem"), dir.join("smtp-key.pem"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn starttls_with_a_login_and_implicit_tls_trust_only_the_private_ca() {
    let Some(python) = python() else { return };
    let temp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(temp.path());
    let (cert, key) = (cert.as_path(), key.as_path());
    let starttls = SmtpSink::start(&python, Mode::StartTls { cert, key }, Some(("hallpass", "s3cret-smtp")));
    let implicit = SmtpSink::start(&python, Mode::Tls { cert, key }, None);
    let untrusted = SmtpSink::start(&python, Mode::Tls { cert, key }, None);
    std::fs::write(temp.path().join("login.txt"), "s3cret-smtp").unwrap();
    let ca = ca.to_string_lossy();
    let notifiers = notifier(
        "starttls",
        starttls.port,
        &format!("tls = \"starttls\"\n    ca_file = \"{ca}\""),
        "secrets = { username = \"hallpass\", password = file(\"login.txt\") }",
    ) + &notifier(
        "implicit",
        implicit.port,
        &format!("tls = \"tls\"\n    ca_file = \"{ca}\""),
        "",
    ) + &notifier(
        "untrusted",
        untrusted.port,
        "tls = \"tls\"\n    timeout_seconds = 2",
        "",
    );
    let server = Server::dev();
    server.apply(temp.path(), &config(&notifiers));
    request(&server);

    let over_starttls = &starttls.wait_for(1, Duration::from_secs(30))[0];
    assert_eq!(over_starttls["tls"], true);
    assert_eq!(over_starttls["login"], "hallpass");
    assert_eq!(over_starttls["rcpt_tos"], serde_json::json!(["carol@example.com"]));
    let over_tls = &implicit.wait_for(1, Duration::from_secs(30))[0];
    assert_eq!(over_tls["tls"], true);
    assert_eq!(header(over_tls, "Subject"), ["[Hallpass] alice asks for prod-db-write"]);

    // Without `ca_file` the public roots are used, which do not hold the
    // test CA: nothing is sent, and the error says what to set.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let failed = deliveries(&server, "untrusted");
        if let [(_, attempts, error)] = failed.as_slice()
            && *attempts >= 1
            && !error.is_empty()
        {
            assert!(error.contains("ca_file"), "{error}");
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempt recorded: {failed:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(untrusted.messages().is_empty());
    // The password is sealed at rest.
    assert!(!server.dump_storage().contains("s3cret-smtp"));
}
