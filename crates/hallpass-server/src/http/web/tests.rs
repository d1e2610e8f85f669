//! The web interface over HTTP, without a browser (the browser and the
//! identity provider are in the end-to-end suite): who is sent to sign in,
//! the headers every page carries, the anti-forgery check of forms, and
//! user values shown as text.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use hallpass_api as api;
use serde_json::json;
use tower::ServiceExt;

use crate::app::App;
use crate::app::sso::csrf_token;
use crate::http::{HttpSettings, router};
use crate::testing;

const PAYLOAD: &str = "<img src=x onerror=alert(1)>";

struct World {
    _dir: tempfile::TempDir,
    app: App,
    router: Router,
    alice: String,
    bob: String,
    request: String,
}

async fn token(app: &App, principal: &str, groups: &[&str]) -> String {
    let admin = testing::caller("root", &["admins"]);
    let body = api::CreateToken {
        principal: principal.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ttl: None,
    };
    app.create_token(&admin, body).await.unwrap().token
}

/// alice (group dev) has asked for `db-admin` (one approval from group
/// approvers, bob's) with an XSS attempt as her reason.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let (app, _inbox) = testing::app_in(dir.path(), Arc::new(hallpass_core::SystemClock), Vec::new()).unwrap();
    let admin = testing::caller("root", &["admins"]);
    let target = json!({"name": "db", "type": "jwt", "config": {"audience": "db"}});
    app.put_target(&admin, serde_json::from_value(target).unwrap())
        .await
        .unwrap();
    let role = json!({"name": "db-admin", "target": "db", "max_duration": "1h", "requestable_by": ["group:dev"],
                      "approval": {"approvers": ["group:approvers"], "required": 1}});
    app.put_role(&admin, serde_json::from_value(role).unwrap())
        .await
        .unwrap();
    let alice = token(&app, "alice", &["dev"]).await;
    let bob = token(&app, "bob", &["approvers"]).await;
    let body = json!({"role": "db-admin", "reason": PAYLOAD, "duration": "30m"});
    let alice_caller = testing::caller("alice", &["dev"]);
    let created = app
        .create_request(&alice_caller, serde_json::from_value(body).unwrap())
        .await
        .unwrap();
    let settings = HttpSettings {
        max_body_bytes: 64 * 1024,
        request_timeout: Duration::from_secs(5),
        metrics: crate::telemetry::install_metrics(),
    };
    World {
        _dir: dir,
        router: router(app.clone(), settings),
        app,
        alice,
        bob,
        request: created.request.id,
    }
}

impl World {
    async fn get(&self, path: &str, session: Option<&str>) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut request = Request::get(path);
        if let Some(secret) = session {
            request = request.header("cookie", format!("other=1; hallpass_session={secret}"));
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, session: &str, form: &str, origin: Option<&str>) -> (StatusCode, String) {
        let mut request = Request::post(path)
            .header("cookie", format!("hallpass_session={session}"))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let (status, _, body) = self.send(request.body(Body::from(form.to_string())).unwrap()).await;
        (status, body)
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    async fn state(&self) -> String {
        let alice = testing::caller("alice", &["dev"]);
        let (request, _) = self.app.get_request(&alice, self.request.clone()).await.unwrap();
        request.state.as_str().to_string()
    }
}

#[tokio::test]
async fn signed_out_visitors_are_sent_to_sign_in_and_bad_sessions_too() {
    let world = world().await;
    for session in [None, Some("hp_not-a-real-token"), Some("")] {
        let (status, headers, _) = world.get("/approvals?x=1", session).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{session:?}");
        assert_eq!(headers["location"], "/login?next=/approvals%3Fx%3D1", "{session:?}");
    }
    let (status, headers, body) = world.get("/login?next=//evil.example", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Single sign-on is not configured"), "{body}");
    assert!(
        !body.contains("evil.example"),
        "an outside next= must not be carried: {body}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    // Signing in needs an sso block; without one it says so, changing nothing.
    let (status, _, body) = world.get("/auth/login", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("not configured"), "{body}");
    let (status, _, body) = world.get("/auth/callback?code=c&state=s", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn every_page_refuses_framing_inline_script_and_caching() {
    let world = world().await;
    let id = &world.request;
    for path in ["/", "/request", "/approvals", "/config", &format!("/requests/{id}")] {
        let (status, headers, body) = world.get(path, Some(&world.bob)).await;
        assert!(status.is_success() || path == "/request", "{path}: {status}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"),
            "{path}: {policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"), "{path}: {policy}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert!(
            !body.contains("<script>") && !body.contains(" onclick="),
            "{path} has inline script"
        );
        assert!(body.contains(" — Hallpass</title>"), "{path} has no title");
    }
}

#[tokio::test]
async fn user_values_are_shown_as_text() {
    let world = world().await;
    let path = format!("/requests/{}", world.request);
    let (status, _, body) = world.get(&path, Some(&world.bob)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("&#60;img src=x onerror=alert(1)&#62;"), "{body}");
    assert!(!body.contains(PAYLOAD), "the reason reached the page as HTML");
    let (_, _, inbox) = world.get("/approvals", Some(&world.bob)).await;
    assert!(
        inbox.contains(&format!("data-request-id=\"{}\"", world.request)),
        "{inbox}"
    );
    assert!(!inbox.contains(PAYLOAD));
}

#[tokio::test]
async fn a_form_without_the_sessions_anti_forgery_token_changes_nothing() {
    let world = world().await;
    let approve = format!("/requests/{}/approve", world.request);
    let alices = csrf_token(&world.alice);
    let bobs = csrf_token(&world.bob);
    let forged = [
        ("comment=ok".to_string(), None),
        ("comment=ok&csrf=".to_string(), None),
        (format!("comment=ok&csrf={alices}"), None),
        (format!("comment=ok&csrf={bobs}"), Some("https://evil.example")),
    ];
    for (form, origin) in forged {
        let (status, body) = world.post(&approve, &world.bob, &form, origin).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{form} from {origin:?}: {body}");
        assert!(
            body.contains("Nothing was changed") || body.contains("nothing was changed"),
            "{body}"
        );
        assert_eq!(world.state().await, "pending", "{form}");
    }
    let (status, body) = world
        .post(
            &approve,
            &world.bob,
            &format!("comment=ok&csrf={bobs}"),
            Some("http://localhost"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = world
        .post(&approve, &world.bob, &format!("comment=ok&csrf={bobs}"), None)
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_ne!(world.state().await, "pending");
}

#[tokio::test]
async fn a_refused_request_form_comes_back_with_the_message_at_its_field() {
    let world = world().await;
    // Someone without an open request of the role (alice's would be
    // returned as it is, whatever the new form says).
    let dave = token(&world.app, "dave", &["dev"]).await;
    let csrf = csrf_token(&dave);
    let form = format!("csrf={csrf}&role=db-admin&duration=soon&reason=x");
    let (status, body) = world.post("/request", &dave, &form, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let at_field = body.split("id=\"duration-error\"").nth(1).unwrap_or_default();
    assert!(
        at_field.contains("duration"),
        "the duration's message is not next to it: {body}"
    );
    assert!(body.contains("value=\"soon\""), "what was typed is kept: {body}");
    let form = format!("csrf={csrf}&role=db-admin&duration=&reason=+");
    let (status, body) = world.post("/request", &dave, &form, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("id=\"reason-error\""),
        "the reason's message is not next to it: {body}"
    );
}

#[tokio::test]
async fn the_credential_is_never_cached_and_only_its_holder_gets_it() {
    let world = world().await;
    let bobs = csrf_token(&world.bob);
    let approve = format!("/requests/{}/approve", world.request);
    world.post(&approve, &world.bob, &format!("csrf={bobs}"), None).await;
    let path = format!("/requests/{}/credential", world.request);
    let (status, headers, body) = world.get(&path, Some(&world.alice)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(headers["cache-control"].to_str().unwrap().contains("no-store"));
    assert!(body.contains("\"text\""), "{body}");
    let (status, headers, _) = world.get(&path, Some(&world.bob)).await;
    assert!(status.is_client_error(), "bob got alice's credential: {status}");
    assert!(headers["cache-control"].to_str().unwrap().contains("no-store"));
}
