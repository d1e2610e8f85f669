//! Decisions are made on fresh inputs (docs/ARCHITECTURE.md, "Decisions are
//! optimistic and never written on stale inputs"): when the role, the
//! policy set or a flow changes between a decision and its write, nothing is
//! written and the request is decided again; when what it read keeps changing, the
//! call gives up with `busy` after a bounded number of attempts.
//!
//! The moment between the decision and its write is made to last: the
//! roles here are on a target whose provider mints credentials locally (as
//! the JWT provider does), so an auto-approved request is issued after it
//! was decided and before it is written, and this provider waits there
//! until the test lets it go. No timing is involved.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use hallpass_api::{self as api, ErrorCode, RequestState};
use hallpass_providers::{CredentialProvider, GrantContext, ProviderError, SecretCredential, TargetSecrets};
use hallpass_server::app::audit::AuditQuery;
use hallpass_server::app::{App, AppResult, Caller};
use hallpass_server::testing::caller;
use serde_json::{Map, Value, json};
use support::Kind;
use tokio::sync::{mpsc, oneshot};

/// How many times a decision is made before the call answers `busy`
/// (`DECISION_ATTEMPTS`, documented in docs/ARCHITECTURE.md).
const DECISION_ATTEMPTS: usize = 20;

/// Longest wait for a decision to reach the provider; only a failing test
/// waits that long.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(20);

/// Stops every issue until the test lets it go: each call sends the test a
/// sender to answer when it may go on.
struct WaitingProvider {
    arrivals: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl CredentialProvider for WaitingProvider {
    fn target_type(&self) -> &'static str {
        "waiting"
    }

    fn validate_config(&self, _config: &Map<String, Value>, _secrets: &TargetSecrets) -> Result<(), ProviderError> {
        Ok(())
    }

    fn issues_locally(&self) -> bool {
        true
    }

    fn issue<'a>(&'a self, _grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
        let (go, wait) = oneshot::channel();
        let sent = self.arrivals.send(go).is_ok();
        async move {
            if sent {
                // A test that dropped the sender lets it go as well.
                let _ = wait.await;
            }
            Ok(json!({"type": "waiting"}))
        }
        .boxed()
    }

    fn credential<'a>(
        &'a self,
        _grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>> {
        async move { Ok(SecretCredential::new("waiting", "secret", Default::default())) }.boxed()
    }

    fn revoke<'a>(
        &'a self,
        _grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        async { Ok(()) }.boxed()
    }
}

struct Harness {
    app: App,
    admin: Caller,
    /// Decisions waiting between their reads and their write.
    arrivals: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    _held: support::TestApp,
}

const CONFIG: &str = r#"{
  "targets": [{"name": "db", "type": "waiting", "config": {}}],
  "approval_flows": [{"name": "peers", "stages": [{"approvers": ["group:dev"], "required": 1}]}],
  "roles": [
    {"name": "ops", "target": "db", "max_duration": "4h", "requestable_by": ["group:dev"], "auto_approve": true},
    {"name": "gated", "target": "db", "max_duration": "4h", "requestable_by": ["group:dev"], "approval_flow": "peers"}
  ]
}"#;

async fn harness(kind: Kind) -> Harness {
    let (arrivals_tx, arrivals) = mpsc::unbounded_channel();
    let provider = Arc::new(WaitingProvider { arrivals: arrivals_tx });
    let start = Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).single().expect("valid time");
    let held = support::app(kind, start, vec![provider]);
    let admin = caller("admin", &["admins"]);
    let config: api::ApplyRequest = serde_json::from_str(CONFIG).expect("config");
    held.app.apply(&admin, config).await.expect("apply");
    Harness {
        app: held.app.clone(),
        admin,
        arrivals,
        _held: held,
    }
}

fn ops_for(duration: &str) -> api::CreateRequest {
    ask("ops", duration)
}

fn ask(role: &str, duration: &str) -> api::CreateRequest {
    api::CreateRequest {
        role: role.into(),
        duration: Some(duration.into()),
        reason: "INC-9".into(),
        ticket: None,
        emergency: false,
        scheduled_start: None,
        ssh_public_key: None,
        plan: None,
    }
}

impl Harness {
    /// The next decision to reach its write, held there.
    async fn next_arrival(&mut self) -> oneshot::Sender<()> {
        tokio::time::timeout(ARRIVAL_TIMEOUT, self.arrivals.recv())
            .await
            .expect("a decision reaches the provider")
            .expect("the provider is alive")
    }

    /// Changes role `ops`; returns the seq of the change's audit event.
    async fn change_ops(&self, edit: impl FnOnce(&mut api::RoleSpec)) -> u64 {
        let mut spec = self
            .app
            .get_role(&self.admin, "ops".into())
            .await
            .expect("role")
            .to_spec();
        edit(&mut spec);
        self.app.put_role(&self.admin, spec).await.expect("change the role");
        let newest = self.audit().await.pop().expect("an event");
        assert_eq!(newest.kind, "role.updated");
        newest.seq
    }

    async fn audit(&self) -> Vec<hallpass_api::AuditEvent> {
        let query = AuditQuery {
            since: 0,
            request: None,
            limit: 1000,
        };
        self.app.audit_page(&self.admin, query).await.expect("audit")
    }

    /// Alice asks for `body`; each time her decision waits to be written,
    /// `on_arrival` runs (with the attempt's number, from 1) before it goes
    /// on. Returns her answer and the number of attempts.
    async fn alice_asks<F>(
        &mut self,
        body: api::CreateRequest,
        mut on_arrival: F,
    ) -> (AppResult<api::CreateRequestResponse>, usize)
    where
        F: AsyncFnMut(&Self, usize),
    {
        let (app, alice) = (self.app.clone(), caller("alice", &["dev"]));
        let mut ask = tokio::spawn(async move { app.create_request(&alice, body).await });
        let mut attempts = 0;
        loop {
            tokio::select! {
                answer = &mut ask => return (answer.expect("the request task"), attempts),
                go = self.next_arrival() => {
                    attempts += 1;
                    assert!(attempts <= DECISION_ATTEMPTS, "decided again and again without end");
                    on_arrival(self, attempts).await;
                    go.send(()).expect("the decision still waits");
                }
            }
        }
    }

    /// `requesters` (of group dev) each ask for `body` at once; once every
    /// decision is made and waits to be written, `change` runs; then they
    /// all go on. Returns each one's answer.
    async fn race<F>(
        &mut self,
        requesters: &[&str],
        body: api::CreateRequest,
        change: F,
    ) -> Vec<AppResult<api::CreateRequestResponse>>
    where
        F: AsyncFnOnce(&Self),
    {
        let asks: Vec<_> = requesters
            .iter()
            .map(|name| {
                let (app, who, body) = (self.app.clone(), caller(name, &["dev"]), body.clone());
                tokio::spawn(async move { app.create_request(&who, body).await })
            })
            .collect();
        let mut waiting = Vec::new();
        for _ in requesters {
            waiting.push(self.next_arrival().await);
        }
        change(self).await;
        for go in waiting {
            go.send(()).expect("the decision still waits");
        }
        let mut answers = Vec::new();
        for ask in asks {
            answers.push(ask.await.expect("the request task"));
        }
        answers
    }
}

const REQUESTERS: [&str; 12] = [
    "ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "jon", "kim", "lou",
];

async fn requests_decided_while_the_role_stops_auto_approving_wait_for_approval(kind: Kind) {
    let mut h = harness(kind).await;
    let mut changed_at = 0;
    let answers = h
        .race(&REQUESTERS, ops_for("1h"), async |h: &Harness| {
            changed_at = h
                .change_ops(|role| {
                    role.auto_approve = false;
                    role.approval = Some(api::ApprovalSpec {
                        approvers: vec!["group:leads".into()],
                        required: 1,
                    });
                })
                .await;
        })
        .await;
    for answer in answers {
        let request = answer.expect("a request").request;
        assert_eq!(
            request.state,
            RequestState::Pending,
            "{} was decided on the role as it was before the change",
            request.requester
        );
        assert!(!request.auto_approved && request.credential.is_none());
    }
    let events = h.audit().await;
    let created: Vec<u64> = events
        .iter()
        .filter(|e| e.kind == "request.created")
        .map(|e| e.seq)
        .collect();
    assert_eq!(created.len(), REQUESTERS.len());
    assert!(
        created.iter().all(|seq| *seq > changed_at),
        "all written after the change"
    );
    assert!(
        !events.iter().any(|e| e.kind == "grant.activated"),
        "nothing was issued"
    );
    assert!(h.arrivals.try_recv().is_err(), "a pending request is not issued");
}

async fn requests_decided_while_the_maximum_is_lowered_are_refused(kind: Kind) {
    let mut h = harness(kind).await;
    let answers = h
        .race(&REQUESTERS[..4], ops_for("3h"), async |h: &Harness| {
            h.change_ops(|role| role.max_duration = "1h".into()).await;
        })
        .await;
    for answer in answers {
        let error = answer.expect_err("3h is above the new maximum");
        assert_eq!(error.code, ErrorCode::DurationAboveMax, "{}", error.message);
    }
    let events = h.audit().await;
    assert!(
        !events
            .iter()
            .any(|e| e.kind.starts_with("request.") || e.kind.starts_with("grant."))
    );
}

async fn a_request_decided_while_a_denying_policy_arrives_is_denied(kind: Kind) {
    let mut h = harness(kind).await;
    let (answer, _) = h
        .alice_asks(ops_for("1h"), async |h: &Harness, attempt| {
            assert_eq!(attempt, 1, "denied on the second decision, nothing to issue");
            let policy = api::PolicySpec {
                name: "freeze".into(),
                source: "package hallpass.request\nimport rego.v1\ndeny contains \"change freeze\" if true\n".into(),
            };
            h.app.put_policy(&h.admin, policy).await.expect("policy");
        })
        .await;
    let request = answer.expect("a request").request;
    assert_eq!(request.state, RequestState::Denied);
    let decision = request.decision.expect("a decision");
    assert_eq!(decision.by, "policy");
    assert_eq!(decision.comment.as_deref(), Some("change freeze"));
}

async fn a_decision_is_made_again_when_a_flow_it_read_changed(kind: Kind) {
    let mut h = harness(kind).await;
    // Approved by policy, the request is issued at once, though the role's
    // flow was read.
    let policy = api::PolicySpec {
        name: "trusted".into(),
        source: "package hallpass.request\nimport rego.v1\nauto_approve if true\n".into(),
    };
    h.app.put_policy(&h.admin, policy).await.expect("policy");
    let (answer, attempts) = h
        .alice_asks(ask("gated", "1h"), async |h: &Harness, attempt| {
            if attempt == 1 {
                let spec: api::ApprovalFlowSpec = serde_json::from_value(json!({
                    "name": "peers", "stages": [{"approvers": ["group:dev"], "required": 2}]
                }))
                .expect("flow");
                h.app.put_flow(&h.admin, spec).await.expect("change the flow");
            }
        })
        .await;
    assert_eq!(attempts, 2, "decided again after the flow changed");
    let request = answer.expect("a request").request;
    assert_eq!(request.state, RequestState::Active);
}

async fn a_decision_whose_inputs_keep_changing_gives_up_busy(kind: Kind) {
    let mut h = harness(kind).await;
    let (answer, attempts) = h
        .alice_asks(ops_for("1h"), async |h: &Harness, attempt| {
            h.change_ops(|role| role.description = format!("change {attempt}"))
                .await;
        })
        .await;
    let error = answer.expect_err("busy");
    assert_eq!(error.code, ErrorCode::Busy, "{}", error.message);
    assert_eq!(error.retry_after_seconds, Some(1));
    assert!(error.message.contains("nothing was done"), "{}", error.message);
    assert_eq!(attempts, DECISION_ATTEMPTS);
    let events = h.audit().await;
    assert!(
        !events.iter().any(|e| e.kind.starts_with("request.")),
        "nothing was written"
    );
}

on_both_backends!(
    requests_decided_while_the_role_stops_auto_approving_wait_for_approval,
    requests_decided_while_the_maximum_is_lowered_are_refused,
    a_request_decided_while_a_denying_policy_arrives_is_denied,
    a_decision_is_made_again_when_a_flow_it_read_changed,
    a_decision_whose_inputs_keep_changing_gives_up_busy,
);
