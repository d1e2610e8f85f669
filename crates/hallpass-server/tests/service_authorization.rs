//! The service layer authorizes every operation itself: called directly,
//! as a second front end would (the Terraform provider, a job, a web page),
//! without any HTTP route in between, admin and auditor operations refuse
//! other callers and change nothing.

use std::sync::Arc;

use futures::StreamExt;
use hallpass_api::{self as api, ConfigKind};
use hallpass_core::SystemClock;
use hallpass_server::app::audit::AuditQuery;
use hallpass_server::app::{AUDITOR_GROUP, App, AppResult, Caller, ErrorKind};
use hallpass_server::testing::caller;

fn target(name: &str) -> api::TargetSpec {
    api::TargetSpec {
        name: name.into(),
        target_type: "jwt".into(),
        config: serde_json::Map::from_iter([("audience".to_string(), "svc".into())]),
        secrets: None,
    }
}

fn role(name: &str) -> api::RoleSpec {
    let spec = serde_json::json!({
        "name": name, "target": "svc", "max_duration": "1h",
        "requestable_by": ["group:dev"], "auto_approve": true,
    });
    serde_json::from_value(spec).unwrap()
}

fn flow(name: &str) -> api::ApprovalFlowSpec {
    serde_json::from_value(serde_json::json!({"name": name, "stages": [{"approvers": ["group:leads"]}]})).unwrap()
}

/// Every operation only admins may do, called as `who`: (name, outcome).
async fn admin_operations(app: &App, who: &Caller, someone_elses_token: &str) -> Vec<(&'static str, AppResult<()>)> {
    let token = api::CreateToken {
        principal: "mallory".into(),
        groups: vec!["admins".into()],
        ttl: None,
    };
    let policy = api::PolicySpec {
        name: "p".into(),
        source: "package hallpass\ndeny contains \"no\" if { false }\n".into(),
    };
    let apply = api::ApplyRequest {
        targets: vec![target("svc2")],
        ..api::ApplyRequest::default()
    };
    vec![
        ("create_token", app.create_token(who, token).await.map(drop)),
        ("list_tokens", app.list_tokens(who).await.map(drop)),
        ("revoke_token", app.revoke_token(who, someone_elses_token.into()).await),
        (
            "lock_principal",
            app.lock_principal(who, "bob".into(), "INC-1".into()).await.map(drop),
        ),
        ("unlock_principal", app.unlock_principal(who, "carol".into()).await),
        ("list_locks", app.list_locks(who).await.map(drop)),
        ("put_target", app.put_target(who, target("svc3")).await.map(drop)),
        ("put_role", app.put_role(who, role("r2")).await.map(drop)),
        ("put_flow", app.put_flow(who, flow("f2")).await.map(drop)),
        ("put_policy", app.put_policy(who, policy).await.map(drop)),
        ("apply", app.apply(who, apply).await.map(drop)),
        (
            "delete_config",
            app.delete_config(who, ConfigKind::Role, "r".into()).await,
        ),
    ]
}

/// Every operation only admins and auditors may do, called as `who`.
async fn auditor_operations(app: &App, who: &Caller) -> Vec<(&'static str, AppResult<()>)> {
    let page = AuditQuery {
        since: 0,
        request: None,
        limit: 10,
    };
    let export = match app.audit_export(who, 0).await {
        Ok(stream) => stream
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err),
        Err(error) => Err(error),
    };
    vec![
        ("audit_page", app.audit_page(who, page).await.map(drop)),
        ("audit_export", export),
        ("audit_verify", app.audit_verify(who).await.map(drop)),
    ]
}

fn all_forbidden(who: &Caller, outcomes: Vec<(&str, AppResult<()>)>) {
    for (operation, outcome) in outcomes {
        let error = outcome.expect_err(operation);
        assert_eq!(
            error.kind,
            ErrorKind::Forbidden,
            "{operation} as {}: {}",
            who.name(),
            error.message
        );
    }
}

async fn audit_length(app: &App, admin: &Caller) -> usize {
    let page = AuditQuery {
        since: 0,
        request: None,
        limit: 10_000,
    };
    app.audit_page(admin, page).await.unwrap().len()
}

#[tokio::test]
async fn admin_and_auditor_operations_refuse_everyone_else_without_a_route_in_between() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _inbox) = hallpass_server::testing::app_in(dir.path(), Arc::new(SystemClock), Vec::new()).unwrap();
    let admin = caller("root", &["admins"]);
    let setup = api::ApplyRequest {
        targets: vec![target("svc")],
        roles: vec![role("r")],
        ..api::ApplyRequest::default()
    };
    app.apply(&admin, setup).await.unwrap();
    let bob_token = app
        .create_token(
            &admin,
            api::CreateToken {
                principal: "bob".into(),
                groups: vec!["dev".into()],
                ttl: None,
            },
        )
        .await
        .unwrap();

    let requester = caller("alice", &["dev"]);
    let approver = caller("lena", &["leads"]);
    let auditor = caller("audrey", &[AUDITOR_GROUP]);
    let before = audit_length(&app, &admin).await;
    for who in [&requester, &approver, &auditor] {
        all_forbidden(who, admin_operations(&app, who, &bob_token.id).await);
    }
    for who in [&requester, &approver] {
        all_forbidden(who, auditor_operations(&app, who).await);
    }
    assert_eq!(
        audit_length(&app, &admin).await,
        before,
        "a refused call records nothing"
    );

    for (operation, outcome) in auditor_operations(&app, &auditor).await {
        assert!(
            outcome.is_ok(),
            "{operation} as the auditor: {:?}",
            outcome.err().map(|e| e.message)
        );
    }
    // The admin passes every check (an operation may still refuse for its
    // own reasons, e.g. unlocking someone who is not locked, but never as
    // forbidden).
    for (operation, outcome) in admin_operations(&app, &admin, &bob_token.id).await {
        if let Err(error) = outcome {
            assert_ne!(
                error.kind,
                ErrorKind::Forbidden,
                "{operation} as admin: {}",
                error.message
            );
        }
    }
    assert!(
        audit_length(&app, &admin).await > before,
        "the admin's calls were recorded"
    );
}
