//! The scheduler keeps claiming while earlier work still runs: a revoke
//! that hangs on its target does not hold back grants that fall due after
//! it, and the hung one still ends, once, when its target answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use hallpass_api::{self as api, RequestState};
use hallpass_core::SystemClock;
use hallpass_providers::{CredentialProvider, GrantContext, ProviderError, SecretCredential, TargetSecrets};
use hallpass_server::app::{App, Caller};
use hallpass_server::testing::caller;
use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, watch};

/// Revokes of role `hold`'s grants wait until the test lets them go;
/// others end at once.
struct HoldingProvider {
    release: Semaphore,
    held: AtomicU32,
    revokes: AtomicU32,
}

impl CredentialProvider for HoldingProvider {
    fn target_type(&self) -> &'static str {
        "holding"
    }
    fn validate_config(&self, _config: &Map<String, Value>, _secrets: &TargetSecrets) -> Result<(), ProviderError> {
        Ok(())
    }
    fn issue<'a>(&'a self, _grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
        async { Ok(json!({"type": "holding"})) }.boxed()
    }
    fn credential<'a>(
        &'a self,
        _grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>> {
        async move { Ok(SecretCredential::new("holding", "secret", Default::default())) }.boxed()
    }
    fn revoke<'a>(&'a self, grant: &'a GrantContext, _metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>> {
        async move {
            self.revokes.fetch_add(1, Ordering::SeqCst);
            if grant.role == "hold" {
                self.held.fetch_add(1, Ordering::SeqCst);
                // Never closed, so `acquire` fails only if the test is over.
                let _ = self.release.acquire().await.map(|permit| permit.forget());
            }
            Ok(())
        }
        .boxed()
    }
}

fn role(name: &str) -> api::RoleSpec {
    api::RoleSpec {
        name: name.into(),
        target: "db".into(),
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
    }
}

async fn ask(app: &App, alice: &Caller, role: &str, duration: &str) -> String {
    let request = api::CreateRequest {
        role: role.into(),
        duration: Some(duration.into()),
        reason: "INC-7".into(),
        ticket: None,
        emergency: false,
        scheduled_start: None,
        ssh_public_key: None,
        plan: None,
    };
    let created = app.create_request(alice, request).await.unwrap().request;
    assert_eq!(created.state, RequestState::Active);
    created.id
}

async fn state_of(app: &App, id: &str) -> RequestState {
    let (request, _) = app
        .get_request(&caller("admin", &["admins"]), id.to_string())
        .await
        .unwrap();
    request.state
}

async fn wait_for(app: &App, id: &str, state: RequestState, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = state_of(app, id).await;
        if now == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "request {id} is {now} after {within:?}, expected {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_revoke_does_not_hold_back_grants_due_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let provider = Arc::new(HoldingProvider {
        release: Semaphore::new(0),
        held: AtomicU32::new(0),
        revokes: AtomicU32::new(0),
    });
    let (app, rx) =
        hallpass_server::testing::app_in(dir.path(), Arc::new(SystemClock), vec![provider.clone()]).unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(hallpass_server::scheduler::run(app.clone(), rx, stop_rx));
    let admin = caller("admin", &["admins"]);
    let config = api::ApplyRequest {
        targets: vec![api::TargetSpec {
            name: "db".into(),
            target_type: "holding".into(),
            config: Map::new(),
            secrets: None,
        }],
        roles: vec![role("hold"), role("quick")],
        ..api::ApplyRequest::default()
    };
    app.apply(&admin, config).await.unwrap();
    let alice = caller("alice", &["dev"]);

    let hung = ask(&app, &alice, "hold", "1s").await;
    let later = ask(&app, &alice, "quick", "2s").await;
    let waited = tokio::time::Instant::now();
    while provider.held.load(Ordering::SeqCst) == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "the first grant's revoke never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Claimed and ended while the first revoke still hangs (well within
    // the first claim's lease, so nothing else could have freed it).
    wait_for(&app, &later, RequestState::Expired, Duration::from_secs(5)).await;
    assert_eq!(state_of(&app, &hung).await, RequestState::Active);

    provider.release.add_permits(1);
    wait_for(&app, &hung, RequestState::Expired, Duration::from_secs(5)).await;
    assert_eq!(
        provider.revokes.load(Ordering::SeqCst),
        2,
        "each grant was revoked once"
    );
}
