//! Runs the receiver example of docs/access-config.md, read from the file
//! itself, with python3 against calls this provider really made: what the
//! documentation tells users to deploy must accept genuine calls and refuse
//! forgeries and replays.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use super::*;

/// Where the webhook part of the document starts.
const SECTION_START: &str = "`webhook` targets call your endpoint";
const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhook_receiver_driver.py");

/// One call for the receiver to judge, and what it must say.
struct Case {
    what: &'static str,
    secret: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    genuine: bool,
}

impl Case {
    fn of(what: &'static str, call: &Recorded, genuine: bool) -> Self {
        Self {
            what,
            secret: test_key(),
            headers: call.headers.clone(),
            body: call.body.clone(),
            genuine,
        }
    }

    fn json(&self) -> Value {
        json!({
            "secret": self.secret,
            "headers": self
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), json!(value)))
                .collect::<Map<String, Value>>(),
            "body": STANDARD.encode(&self.body),
        })
    }
}

/// `verify(secret, headers, body)` of the documented example for each case.
fn run_documented_receiver(cases: &[Case]) -> Vec<bool> {
    let example = hallpass_doc_examples::example("access-config.md", SECTION_START, "python");
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(example.as_bytes()).unwrap();
    assert!(Path::new(DRIVER).exists());

    let mut python = Command::new("python3")
        .arg(DRIVER)
        .arg(file.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = Value::Array(cases.iter().map(Case::json).collect()).to_string();
    python.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the documented receiver failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn the_documented_receiver_accepts_genuine_calls_and_refuses_forgeries_and_replays() {
    let server = TestServer::start(200, "", "").await;
    let now = Utc::now().timestamp();
    // Genuine calls signed now, 2 minutes ago, and 10 minutes either side.
    for offset in [0, -120, -600, 600] {
        provider_at(move || now + offset)
            .issue(&grant(&server.url("/h")))
            .await
            .unwrap();
    }
    let calls = server.requests();
    let [fresh, recent, old, future] = calls.as_slice() else {
        panic!("expected four calls, got {}", calls.len())
    };

    let mut tampered_body = Case::of("a tampered body", fresh, false);
    tampered_body.body = String::from_utf8(fresh.body.clone())
        .unwrap()
        .replace("alice", "mallory")
        .into_bytes();
    let mut wrong_secret = Case::of("another target's secret", fresh, false);
    wrong_secret.secret = SigningKey::generate().unwrap().expose().to_string();
    let mut restamped = Case::of("an old call with its timestamp changed to now", old, false);
    for (name, value) in &mut restamped.headers {
        if name == "webhook-timestamp" {
            *value = now.to_string();
        }
    }
    let cases = [
        Case::of("a fresh call", fresh, true),
        Case::of("a call signed 2 minutes ago", recent, true),
        tampered_body,
        wrong_secret,
        Case::of("a call signed 10 minutes ago", old, false),
        Case::of("a call signed 10 minutes ahead", future, false),
        restamped,
    ];

    let verdicts = run_documented_receiver(&cases);
    assert_eq!(verdicts.len(), cases.len());
    for (case, verdict) in cases.iter().zip(verdicts) {
        assert_eq!(verdict, case.genuine, "the documented receiver misjudged {}", case.what);
    }
}
