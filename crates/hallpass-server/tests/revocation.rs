//! Grant ending through the service layer with a fault-injecting provider:
//! a revoke that fails is recorded as `revoke_failed` with its error and
//! retried with backoff until it succeeds, and the original intent decides
//! the final state. (A real target that fails on cue cannot run here; this
//! provider stands in at the provider-trait level.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use hallpass_api::{self as api, AuditKind, ErrorCode, RequestState};
use hallpass_core::SystemClock;
use hallpass_providers::{CredentialProvider, GrantContext, ProviderError, SecretCredential, TargetSecrets};
use hallpass_server::app::audit::AuditQuery;
use hallpass_server::app::{App, AppResult, Caller};
use hallpass_server::testing::caller;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

/// Fails the first `failures` revokes, then succeeds. Hands out a
/// credential naming the target it is for, and notes the target of each
/// revoke.
struct FlakyProvider {
    failures: u32,
    revokes: AtomicU32,
    revoked_on: Mutex<Vec<String>>,
}

impl CredentialProvider for FlakyProvider {
    fn target_type(&self) -> &'static str {
        "flaky"
    }
    fn validate_config(&self, _config: &Map<String, Value>, _secrets: &TargetSecrets) -> Result<(), ProviderError> {
        Ok(())
    }
    fn issue<'a>(&'a self, _grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
        async { Ok(json!({"type": "flaky"})) }.boxed()
    }
    fn credential<'a>(
        &'a self,
        grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>> {
        let token = format!("secret for {}", grant.target.name);
        async move { Ok(SecretCredential::new("flaky", &token, Default::default())) }.boxed()
    }
    fn revoke<'a>(&'a self, grant: &'a GrantContext, _metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>> {
        let attempt = self.revokes.fetch_add(1, Ordering::SeqCst) + 1;
        let fail = attempt <= self.failures;
        let target = grant.target.name.clone();
        if let Ok(mut revoked_on) = self.revoked_on.lock() {
            revoked_on.push(target.clone());
        }
        async move {
            if fail {
                Err(ProviderError::Target {
                    target,
                    message: format!("connection refused (attempt {attempt})"),
                })
            } else {
                Ok(())
            }
        }
        .boxed()
    }
}

struct Harness {
    app: App,
    provider: Arc<FlakyProvider>,
    admin: Caller,
    alice: Caller,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

async fn audit(app: &App, request: Option<String>) -> Vec<hallpass_api::AuditEvent> {
    let query = AuditQuery {
        since: 0,
        request,
        limit: 1000,
    };
    app.audit_page(&caller("admin", &["admins"]), query).await.unwrap()
}

async fn harness(failures: u32) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SystemClock);
    let provider = Arc::new(FlakyProvider {
        failures,
        revokes: AtomicU32::new(0),
        revoked_on: Mutex::new(Vec::new()),
    });
    let (app, rx) = hallpass_server::testing::app_in(dir.path(), clock, vec![provider.clone()]).unwrap();
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(hallpass_server::scheduler::run(app.clone(), rx, stop_rx));
    let admin = caller("admin", &["admins"]);
    let config = config_with_role_on("db");
    app.apply(&admin, config).await.unwrap();
    Harness {
        app,
        provider,
        admin,
        alice: caller("alice", &["dev"]),
        _dir: dir,
        _stop: stop,
    }
}

/// Targets `db` and `db2` (both of the flaky type) and role `db-read` on
/// `target`.
fn config_with_role_on(target: &str) -> api::ApplyRequest {
    let target_spec = |name: &str| api::TargetSpec {
        name: name.into(),
        target_type: "flaky".into(),
        config: Map::new(),
        secrets: None,
    };
    api::ApplyRequest {
        targets: vec![target_spec("db"), target_spec("db2")],
        roles: vec![api::RoleSpec {
            name: "db-read".into(),
            target: target.into(),
            description: String::new(),
            default_duration: None,
            max_duration: "1h".into(),
            max_total_duration: None,
            requestable_by: vec!["group:dev".into()],
            labels: Default::default(),
            approval: None,
            approval_flow: None,
            auto_approve: true,
            emergency_access: false,
            extension_requires_approval: true,
            grant: Default::default(),
        }],
        ..api::ApplyRequest::default()
    }
}

/// Alice asks for `role`.
async fn ask(h: &Harness, role: &str, duration: Option<&str>, reason: &str) -> AppResult<api::CreateRequestResponse> {
    let request = api::CreateRequest {
        role: role.into(),
        duration: duration.map(Into::into),
        reason: reason.into(),
        ticket: None,
        emergency: false,
        scheduled_start: None,
        ssh_public_key: None,
        plan: None,
    };
    h.app.create_request(&h.alice, request).await
}

async fn wait_for_state(app: &App, id: &str, state: RequestState, within: Duration) -> api::AccessRequest {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (request, _) = app
            .get_request(&caller("admin", &["admins"]), id.to_string())
            .await
            .unwrap();
        if request.state == state {
            return request;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "request {id} is {} after {within:?}, expected {state}",
            request.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn failed_revoke_is_visible_and_retried_until_it_succeeds() {
    let h = harness(2).await;
    let request = ask(&h, "db-read", Some("1s"), "INC-1").await.unwrap().request;
    assert_eq!(request.state, RequestState::Active);

    let failed = wait_for_state(&h.app, &request.id, RequestState::RevokeFailed, Duration::from_secs(5)).await;
    let error = failed.revoke_error.unwrap_or_default();
    assert!(error.contains("connection refused"), "error is shown: {error}");
    assert!(failed.next_revoke_at.is_some());

    // Backoff 1s then 2s: the third attempt succeeds, and the grant ends as
    // the expiry it was, not as a manual revocation.
    let ended = wait_for_state(&h.app, &request.id, RequestState::Expired, Duration::from_secs(10)).await;
    assert_eq!(ended.revoke_error, None);
    assert_eq!(h.provider.revokes.load(Ordering::SeqCst), 3);

    let events = audit(&h.app, Some(request.id.clone())).await;
    let kinds: Vec<AuditKind> = events
        .iter()
        .map(|e| e.kind.parse().unwrap_or(AuditKind::Other(e.kind.clone())))
        .collect();
    assert_eq!(
        kinds,
        [
            AuditKind::RequestCreated,
            AuditKind::GrantActivated,
            AuditKind::GrantRevokeFailed,
            AuditKind::GrantRevokeFailed,
            AuditKind::GrantExpired
        ]
    );
    assert!(h.app.audit_verify(&h.admin).await.unwrap().ok);
}

#[tokio::test]
async fn manual_revoke_failure_keeps_the_revoke_intent() {
    let h = harness(1).await;
    let request = ask(&h, "db-read", Some("30m"), "INC-2").await.unwrap().request;
    let after = h
        .app
        .revoke_grant(&h.admin, request.id.clone(), "done".into())
        .await
        .unwrap();
    assert_eq!(after.state, RequestState::RevokeFailed);
    let ended = wait_for_state(&h.app, &request.id, RequestState::Revoked, Duration::from_secs(5)).await;
    assert_eq!(ended.ended_by.map(|d| d.by), Some("admin".to_string()));
}

#[tokio::test]
async fn a_revoke_reason_follows_the_rules_of_every_reason() {
    let h = harness(0).await;
    let request = ask(&h, "db-read", Some("30m"), "INC-3").await.unwrap().request;
    let before = audit(&h.app, None).await.len();
    let refusals = [
        ("   ", ErrorCode::ReasonRequired, "why the grant is revoked"),
        (
            "done\u{1b}[2K\rapproved by security",
            ErrorCode::ControlCharacter,
            "U+001B",
        ),
        ("left \u{202E}tnedicni", ErrorCode::ControlCharacter, "U+202E"),
        (&"x".repeat(1025), ErrorCode::TooLong, "1025 characters"),
    ];
    for (reason, code, says) in refusals {
        let error = h
            .app
            .revoke_grant(&h.admin, request.id.clone(), reason.to_string())
            .await
            .unwrap_err();
        assert_eq!(error.code, code, "{reason:?}: {}", error.message);
        assert!(error.message.contains(says), "{}", error.message);
    }
    assert_eq!(audit(&h.app, None).await.len(), before, "nothing was written");
    let ended = h
        .app
        .revoke_grant(&h.admin, request.id.clone(), "  left the incident  ".into())
        .await
        .unwrap();
    assert_eq!(ended.state, RequestState::Revoked);
    assert_eq!(
        ended.ended_by.and_then(|d| d.comment).as_deref(),
        Some("left the incident")
    );
}

#[tokio::test]
async fn a_failed_write_changes_nothing_and_appends_no_audit() {
    let h = harness(0).await;
    let before = audit(&h.app, None).await.len();
    let too_long = ask(&h, "db-read", Some("2h"), "x").await.unwrap_err();
    assert_eq!(too_long.code, ErrorCode::DurationAboveMax);
    let unknown = ask(&h, "nope", None, "x").await.unwrap_err();
    assert_eq!(unknown.code, ErrorCode::NotFound);
    assert_eq!(audit(&h.app, None).await.len(), before);
    let listed = h.app.list_requests(&h.admin, Default::default()).await.unwrap();
    assert!(listed.items.is_empty());
}

/// A grant is handed out and ended on the target it was issued on, also
/// after its role was moved to another target (the role's target is read
/// together with the grant; it is not the grant's any more).
#[tokio::test]
async fn a_grant_keeps_its_target_after_its_role_moves_to_another() {
    let h = harness(0).await;
    let request = ask(&h, "db-read", Some("30m"), "INC-9").await.unwrap().request;
    assert_eq!(request.state, RequestState::Active);
    let before = h.app.credentials(&h.alice, request.id.clone()).await.unwrap();
    assert_eq!(before.token, "secret for db");

    h.app.apply(&h.admin, config_with_role_on("db2")).await.unwrap();
    let after = h.app.credentials(&h.alice, request.id.clone()).await.unwrap();
    assert_eq!(
        after.token, "secret for db",
        "the grant's own target, not the role's new one"
    );
    h.app
        .revoke_grant(&h.admin, request.id.clone(), "moved".into())
        .await
        .unwrap();
    assert_eq!(*h.provider.revoked_on.lock().unwrap(), ["db"]);

    // A new grant of the role is on its new target.
    let second = ask(&h, "db-read", Some("30m"), "INC-10").await.unwrap().request;
    let credential = h.app.credentials(&h.alice, second.id.clone()).await.unwrap();
    assert_eq!(credential.token, "secret for db2");
}
