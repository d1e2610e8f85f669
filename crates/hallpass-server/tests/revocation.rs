//! Grant ending through the service layer with a fault-injecting provider:
//! a revoke that fails is recorded as `revoke_failed` with its error and
//! retried with backoff until it succeeds, and the original intent decides
//! the final state. (A real target that fails on cue cannot run here; this
//! provider stands in at the provider-trait level.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use hallpass_api as api;
use hallpass_core::{Principal, SystemClock};
use hallpass_providers::jwt::{JwtProvider, JwtSigner};
use hallpass_providers::{CredentialProvider, GrantContext, ProviderError, Registry, SecretCredential, TargetSecrets};
use hallpass_server::app::App;
use hallpass_server::auth::Caller;
use hallpass_store::Store;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

/// Fails the first `failures` revokes, then succeeds.
struct FlakyProvider {
    failures: u32,
    revokes: AtomicU32,
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
    fn credential(&self, _grant: &GrantContext, _metadata: &Value) -> Result<SecretCredential, ProviderError> {
        Ok(SecretCredential {
            credential_type: "flaky".into(),
            token: "secret".into(),
            env: Default::default(),
        })
    }
    fn revoke<'a>(&'a self, grant: &'a GrantContext, _metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>> {
        let attempt = self.revokes.fetch_add(1, Ordering::SeqCst) + 1;
        let fail = attempt <= self.failures;
        let target = grant.target.clone();
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

fn caller(name: &str, groups: &[&str]) -> Caller {
    Caller {
        principal: Principal {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        },
        token_id: format!("tok_{name}"),
        token_expires_at: None,
    }
}

async fn harness(failures: u32) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(SystemClock);
    let store = Store::open_sqlite(dir.path(), clock.clone()).unwrap();
    let signer = Arc::new(JwtSigner::load_or_create(&dir.path().join("key"), "test".into()).unwrap());
    let provider = Arc::new(FlakyProvider {
        failures,
        revokes: AtomicU32::new(0),
    });
    let registry = Registry::default()
        .with(Arc::new(JwtProvider::new(signer.clone())))
        .with(provider.clone());
    let (tx, rx) = mpsc::unbounded_channel();
    let app = App::new(store, registry, signer, clock, tx);
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(hallpass_server::scheduler::run(app.clone(), Vec::new(), rx, stop_rx));
    let admin = caller("admin", &["admins"]);
    let config = api::ApplyRequest {
        targets: vec![api::TargetSpec {
            name: "db".into(),
            target_type: "flaky".into(),
            config: Map::new(),
        }],
        roles: vec![api::RoleSpec {
            name: "db-read".into(),
            target: "db".into(),
            description: String::new(),
            default_duration: None,
            max_duration: "1h".into(),
            requestable_by: vec!["group:dev".into()],
            labels: Default::default(),
            approval: None,
            approval_flow: None,
            auto_approve: true,
            emergency_access: false,
            extension_requires_approval: true,
        }],
        ..api::ApplyRequest::default()
    };
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

async fn wait_for_state(app: &App, id: &str, state: &str, within: Duration) -> api::AccessRequest {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (request, _) = app.get_request(id.to_string()).await.unwrap();
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
    let request = h
        .app
        .create_request(
            &h.alice,
            api::CreateRequest {
                role: "db-read".into(),
                duration: Some("1s".into()),
                reason: "INC-1".into(),
                ticket: None,
                emergency: false,
                scheduled_start: None,
            },
        )
        .await
        .unwrap()
        .0;
    assert_eq!(request.state, "active");

    let failed = wait_for_state(&h.app, &request.id, "revoke_failed", Duration::from_secs(5)).await;
    let error = failed.revoke_error.unwrap_or_default();
    assert!(error.contains("connection refused"), "error is shown: {error}");
    assert!(failed.next_revoke_at.is_some());

    // Backoff 1s then 2s: the third attempt succeeds, and the grant ends as
    // the expiry it was, not as a manual revocation.
    let ended = wait_for_state(&h.app, &request.id, "expired", Duration::from_secs(10)).await;
    assert_eq!(ended.revoke_error, None);
    assert_eq!(h.provider.revokes.load(Ordering::SeqCst), 3);

    let events = h.app.audit_page(0, Some(request.id.clone()), 100).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "request.created",
            "grant.activated",
            "grant.revoke_failed",
            "grant.revoke_failed",
            "grant.expired"
        ]
    );
    assert!(h.app.audit_verify().await.unwrap().ok);
}

#[tokio::test]
async fn manual_revoke_failure_keeps_the_revoke_intent() {
    let h = harness(1).await;
    let request = h
        .app
        .create_request(
            &h.alice,
            api::CreateRequest {
                role: "db-read".into(),
                duration: Some("30m".into()),
                reason: "INC-2".into(),
                ticket: None,
                emergency: false,
                scheduled_start: None,
            },
        )
        .await
        .unwrap()
        .0;
    let after = h
        .app
        .end_grant(
            Some(h.admin.principal.clone()),
            request.id.clone(),
            hallpass_core::request::EndKind::Revoke,
            Some("done".into()),
        )
        .await
        .unwrap();
    assert_eq!(after.state, "revoke_failed");
    let ended = wait_for_state(&h.app, &request.id, "revoked", Duration::from_secs(5)).await;
    assert_eq!(ended.ended_by.map(|d| d.by), Some("admin".to_string()));
}

#[tokio::test]
async fn a_failed_write_changes_nothing_and_appends_no_audit() {
    let h = harness(0).await;
    let before = h.app.audit_page(0, None, 1000).await.unwrap().len();
    let too_long = h
        .app
        .create_request(
            &h.alice,
            api::CreateRequest {
                role: "db-read".into(),
                duration: Some("2h".into()),
                reason: "x".into(),
                ticket: None,
                emergency: false,
                scheduled_start: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(too_long.code, "duration_above_max");
    let unknown = h
        .app
        .create_request(
            &h.alice,
            api::CreateRequest {
                role: "nope".into(),
                duration: None,
                reason: "x".into(),
                ticket: None,
                emergency: false,
                scheduled_start: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.code, "not_found");
    assert_eq!(h.app.audit_page(0, None, 1000).await.unwrap().len(), before);
    assert!(h.app.list_requests(Default::default()).await.unwrap().is_empty());
}
