//! The authorization matrix, built from the served OpenAPI document: every
//! operation the document lists is called as each of six callers, with real
//! path parameters and bodies, and the status class is compared with one
//! table ([`MATRIX`]). An operation without a row fails the test, and so
//! does a row without an operation, so a route cannot be added (or removed)
//! without saying who may call it.
//!
//! The requester is alice (group `dev`), who owns every request and grant
//! the calls act on; the approver is bob (group `approvers`, the approvers
//! of `demo-admin` and of the break-glass role made here); the auditor is in
//! group `auditors`; the admin is in group `admins`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use serde_json::{Value, json};

use crate::harness::Server;

/// What a caller gets: the class of the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 2xx.
    Ok,
    /// 401: no usable token.
    Unauthenticated,
    /// 403: known to the caller, but not theirs to do.
    Forbidden,
    /// 404: a request the caller may not see is "not found", so its
    /// existence does not leak.
    NotVisible,
    /// 409: the caller may, but the target cannot (rotating a jwt target's
    /// admin password, which it does not have).
    Refused,
}

use Outcome::{Forbidden as E403, NotVisible as E404, Ok as OK, Refused as E409, Unauthenticated as E401};

/// The callers, in the order of each row.
const CALLERS: [&str; 6] = ["no token", "unknown token", "requester", "approver", "auditor", "admin"];

/// Anyone, with or without a token (a token is not even looked at).
const PUBLIC: [Outcome; 6] = [OK, OK, OK, OK, OK, OK];
/// Any valid token.
const ANY_TOKEN: [Outcome; 6] = [E401, E401, OK, OK, OK, OK];
/// Group `admins` only.
const ADMIN: [Outcome; 6] = [E401, E401, E403, E403, E403, OK];
/// Groups `admins` and `auditors`: the audit log.
const AUDIT: [Outcome; 6] = [E401, E401, E403, E403, OK, OK];

/// Operation → outcome for [no token, unknown token, requester, approver,
/// auditor, admin]. The fixtures each call acts on are in [`World::prepare`].
const MATRIX: &[(&str, [Outcome; 6])] = &[
    // Public: health, metrics, keys and this document need no token.
    ("GET /healthz", PUBLIC),
    ("GET /metrics", PUBLIC),
    ("GET /.well-known/jwks.json", PUBLIC),
    ("GET /v1/openapi.json", PUBLIC),
    ("GET /v1/audit/public-key", PUBLIC),
    // Public, the body's JWT is the credential; this server trusts no
    // workload issuer, so every caller hears so (a token is not looked at).
    ("POST /v1/auth/oidc", [E404; 6]),
    // Public, the one-time code is the credential; this server has no
    // single sign-on, so every caller hears so.
    ("POST /v1/auth/cli/token", [E404; 6]),
    // Anyone signs out their own token (a fresh one each call).
    ("POST /v1/auth/logout", ANY_TOKEN),
    // Identity.
    ("GET /v1/whoami", ANY_TOKEN),
    ("POST /v1/tokens", ADMIN),
    ("GET /v1/tokens", ADMIN),
    // The token belongs to a fourth principal: only its holder or an admin
    // may revoke it.
    ("DELETE /v1/tokens/{id}", ADMIN),
    ("GET /v1/locks", ADMIN),
    ("POST /v1/principals/{name}/lock", ADMIN),
    ("DELETE /v1/principals/{name}/lock", ADMIN),
    // The access configuration: everyone reads it (requesters need to know
    // what they may ask for); only admins change it.
    ("GET /v1/targets", ANY_TOKEN),
    ("GET /v1/targets/{name}", ANY_TOKEN),
    ("PUT /v1/targets/{name}", ADMIN),
    ("DELETE /v1/targets/{name}", ADMIN),
    // A target's checks and rotation describe and change its admin
    // credentials: admins only. `demo` is a jwt target, which has no admin
    // password, so the admin's rotation is refused after the check.
    ("POST /v1/targets/{name}/test", ADMIN),
    ("POST /v1/targets/{name}/rotate", [E401, E401, E403, E403, E403, E409]),
    // An ssh target's KRL names certificate serials only; hosts fetch it
    // without a token, like the JWKS.
    ("GET /v1/targets/{name}/krl", PUBLIC),
    ("GET /v1/roles", ANY_TOKEN),
    ("GET /v1/roles/{name}", ANY_TOKEN),
    ("PUT /v1/roles/{name}", ADMIN),
    ("DELETE /v1/roles/{name}", ADMIN),
    ("GET /v1/approval-flows", ANY_TOKEN),
    ("GET /v1/approval-flows/{name}", ANY_TOKEN),
    ("PUT /v1/approval-flows/{name}", ADMIN),
    ("DELETE /v1/approval-flows/{name}", ADMIN),
    ("GET /v1/policies", ANY_TOKEN),
    ("GET /v1/policies/{name}", ANY_TOKEN),
    ("PUT /v1/policies/{name}", ADMIN),
    ("DELETE /v1/policies/{name}", ADMIN),
    ("POST /v1/policies/eval", ANY_TOKEN),
    ("POST /v1/apply", ADMIN),
    // Notifiers are configuration like targets (their secrets are
    // write-only); dead letters are read by auditors and sent again by
    // admins. No delivery is dead here, so an admin's retry finds none.
    ("GET /v1/notifiers", ANY_TOKEN),
    ("GET /v1/notifiers/{name}", ANY_TOKEN),
    ("PUT /v1/notifiers/{name}", ADMIN),
    ("DELETE /v1/notifiers/{name}", ADMIN),
    ("GET /v1/notifications/failed", AUDIT),
    (
        "POST /v1/notifications/{id}/retry",
        [E401, E401, E403, E403, E403, E404],
    ),
    // Requests. Lists answer everyone, filtered to what each caller sees.
    ("GET /v1/requests", ANY_TOKEN),
    ("GET /v1/grants", ANY_TOKEN),
    ("GET /v1/reviews", ANY_TOKEN),
    // alice asks for `demo-admin`, which group `dev` may request; the
    // others' groups are not in its `requestable_by`.
    ("POST /v1/requests", [E401, E401, OK, E403, E403, E403]),
    // alice's pending `demo-admin` request: bob approves that role, and
    // auditors and admins see every request.
    ("GET /v1/requests/{id}", ANY_TOKEN),
    // Only an approver of the open stage approves; alice may not approve
    // her own request, and admins are not approvers of `demo-admin`.
    ("POST /v1/requests/{id}/approve", [E401, E401, E403, OK, E403, E403]),
    // Admins may deny any request (they stop what should not happen).
    ("POST /v1/requests/{id}/deny", [E401, E401, E403, OK, E403, OK]),
    // The requester withdraws her request; an admin may too.
    ("POST /v1/requests/{id}/cancel", [E401, E401, OK, E403, E403, OK]),
    // alice's active `demo-read` grant: auto-approved, so it has no
    // approvers and bob may not even see it; auditors and admins see it but
    // it is not theirs to extend, use or give up.
    ("POST /v1/requests/{id}/extend", [E401, E401, OK, E404, E403, E403]),
    ("GET /v1/requests/{id}/credentials", [E401, E401, OK, E404, E403, E403]),
    ("POST /v1/grants/{id}/release", [E401, E401, OK, E404, E403, E403]),
    // alice's active `demo-admin` grant, approved by bob: its approvers and
    // admins end it early; its requester releases it instead.
    ("POST /v1/grants/{id}/revoke", [E401, E401, E403, OK, E403, OK]),
    // alice's break-glass grant: reviewed by its role's approvers or an
    // admin, never by the requester herself.
    ("POST /v1/reviews/{id}/ack", [E401, E401, E403, OK, E403, OK]),
    // Public, Slack's signature is the credential: a bearer token is not
    // looked at, and an unsigned click is refused whoever sends it.
    ("POST /v1/integrations/slack/interactions", [E401; 6]),
    // Token introspection (RFC 7662) is for services holding any token.
    ("POST /v1/introspect", ANY_TOKEN),
    // The audit log.
    ("GET /v1/audit", AUDIT),
    ("GET /v1/audit/export", AUDIT),
    ("GET /v1/audit/verify", AUDIT),
    // The live stream answers every token; each caller gets only the
    // events it may see (tests in `events.rs`).
    ("GET /v1/events", ANY_TOKEN),
];

/// Outcome of a status, if it is one the matrix speaks of.
fn outcome_of(status: u16) -> Option<Outcome> {
    match status {
        200..=299 => Some(OK),
        401 => Some(E401),
        403 => Some(E403),
        404 => Some(E404),
        409 => Some(E409),
        _ => None,
    }
}

/// One call: where, and with what body.
struct Call {
    path: String,
    body: Option<(&'static str, Vec<u8>)>,
    /// The call ends the token it is made with (signing out): it is made
    /// with a fresh token of the caller's principal and groups.
    spends_token: bool,
}

impl Call {
    fn to(path: impl Into<String>) -> Call {
        Call {
            path: path.into(),
            body: None,
            spends_token: false,
        }
    }

    fn json(path: impl Into<String>, body: Value) -> Call {
        Call {
            path: path.into(),
            body: Some(("application/json", body.to_string().into_bytes())),
            spends_token: false,
        }
    }
}

/// What undoes a call's fixture.
type Cleanup = Box<dyn FnOnce(&World)>;

/// The server, the callers' tokens and an HTTP client.
struct World {
    server: Server,
    auditor: String,
    runtime: tokio::runtime::Runtime,
    /// Unknown tokens count against their address (20 failures a minute
    /// lock it out), so each comes from an address of its own in 127/8.
    next_address: std::cell::Cell<u8>,
}

const ADMIN_ROLE: &str = "demo-admin";
const READ_ROLE: &str = "demo-read";
const BREAKGLASS_ROLE: &str = "matrix-breakglass";

impl World {
    fn new() -> World {
        let server = Server::dev();
        let auditor = server.token("carol", "auditors");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let world = World {
            server,
            auditor,
            runtime,
            next_address: std::cell::Cell::new(2),
        };
        // A break-glass role alice may use, reviewed by bob's group; and a
        // flow and a policy to read.
        world.admin_ok(
            "POST",
            Call::json(
                "/v1/apply",
                json!({
                    "targets": [{"name": "matrix-ssh", "type": "ssh", "config": {}}],
                    "roles": [{
                        "name": BREAKGLASS_ROLE, "target": "demo", "max_duration": "1h",
                        "requestable_by": ["group:dev"], "emergency_access": true,
                        "approval": {"approvers": ["group:approvers"], "required": 1}
                    }],
                    "approval_flows": [{"name": "matrix-flow", "stages": [{"approvers": ["group:approvers"]}]}],
                    "policies": [{"name": "matrix-policy", "source": "package hallpass.request\n"}]
                }),
            ),
        );
        world
    }

    /// The token each caller sends; `None` for no token.
    fn token(&self, caller: usize) -> Option<String> {
        match caller {
            0 => None,
            // Well formed, but never issued.
            1 => Some(format!("hp_{}", "0123456789abcdef".repeat(4))),
            2 => Some(self.server.alice.clone()),
            3 => Some(self.server.bob.clone()),
            4 => Some(self.auditor.clone()),
            _ => Some(self.server.admin.clone()),
        }
    }

    /// A raw HTTP call; returns the status and the body as JSON (or Null).
    fn send(&self, method: &str, call: &Call, token: Option<&str>, from: Option<IpAddr>) -> (u16, Value) {
        self.runtime.block_on(async {
            hallpass_client::install_tls_crypto_provider();
            let mut client = reqwest::Client::builder();
            if let Some(address) = from {
                client = client.local_address(address);
            }
            let client = client.build().expect("client");
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut request = client.request(method, format!("{}{}", self.server.addr, call.path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some((content_type, bytes)) = &call.body {
                request = request.header("content-type", *content_type).body(bytes.clone());
            }
            let response = request.send().await.expect("http request");
            let status = response.status().as_u16();
            // An event stream does not end: its status is the answer.
            let content_type = response.headers().get("content-type");
            if content_type.is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")) {
                return (status, Value::Null);
            }
            let bytes = response.bytes().await.expect("body");
            (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        })
    }

    fn as_caller(&self, caller: usize, method: &str, call: &Call) -> (u16, Value) {
        let from = (caller == 1).then(|| {
            let n = self.next_address.get();
            self.next_address
                .set(n.checked_add(1).expect("fewer than 250 unknown-token calls"));
            IpAddr::V4(Ipv4Addr::new(127, 0, 1, n))
        });
        let token = match self.token(caller) {
            Some(token) if call.spends_token && caller >= 2 => Some(self.fresh_token(&token)),
            token => token,
        };
        self.send(method, call, token.as_deref(), from)
    }

    /// Another token of the principal and groups `token` belongs to.
    fn fresh_token(&self, token: &str) -> String {
        let me = self.ok(token, "GET", Call::to("/v1/whoami"));
        let body = json!({"principal": me["principal"], "groups": me["groups"]});
        let made = self.admin_ok("POST", Call::json("/v1/tokens", body));
        made["token"].as_str().expect("token").to_string()
    }

    /// A fixture step that must succeed.
    fn ok(&self, token: &str, method: &str, call: Call) -> Value {
        let (status, body) = self.send(method, &call, Some(token), None);
        assert!(
            (200..300).contains(&status),
            "setting up: {method} {} answered {status}: {body}",
            call.path
        );
        body
    }

    fn admin_ok(&self, method: &str, call: Call) -> Value {
        self.ok(&self.server.admin, method, call)
    }

    /// A cleanup step: whatever it answers (the call under test may
    /// already have done it).
    fn admin_try(&self, method: &str, call: Call) {
        let _ = self.send(method, &call, Some(&self.server.admin), None);
    }

    /// alice's request for `role`; returns its id.
    fn alice_requests(&self, role: &str, emergency: bool) -> String {
        let body = json!({"role": role, "reason": "authz matrix", "duration": "30m", "emergency": emergency});
        let created = self.ok(&self.server.alice, "POST", Call::json("/v1/requests", body));
        created["id"].as_str().expect("id").to_string()
    }

    /// alice's pending `demo-admin` request.
    fn pending(&self) -> String {
        self.alice_requests(ADMIN_ROLE, false)
    }

    /// alice's active `demo-read` grant (auto-approved).
    fn read_grant(&self) -> String {
        self.alice_requests(READ_ROLE, false)
    }

    /// alice's active `demo-admin` grant, approved by bob.
    fn approved_grant(&self) -> String {
        let id = self.pending();
        self.ok(&self.server.bob, "POST", Call::to(format!("/v1/requests/{id}/approve")));
        id
    }

    /// Ends whatever request `id` is, so the next fixture starts afresh.
    fn end(&self, id: &str) {
        self.admin_try("POST", Call::to(format!("/v1/requests/{id}/cancel")));
        self.admin_try(
            "POST",
            Call::json(
                format!("/v1/grants/{id}/revoke"),
                json!({"reason": "authz matrix cleanup"}),
            ),
        );
    }

    /// The call for `operation`, with the fixture it acts on made fresh,
    /// and what undoes the fixture afterwards.
    fn prepare(&self, operation: &str) -> (Call, Cleanup) {
        let none: Cleanup = Box::new(|_| {});
        let ending = |id: String| -> Cleanup { Box::new(move |w: &World| w.end(&id)) };
        match operation {
            "GET /healthz"
            | "GET /metrics"
            | "GET /.well-known/jwks.json"
            | "GET /v1/openapi.json"
            | "GET /v1/audit/public-key"
            | "GET /v1/whoami"
            | "GET /v1/tokens"
            | "GET /v1/locks"
            | "GET /v1/targets"
            | "GET /v1/roles"
            | "GET /v1/approval-flows"
            | "GET /v1/policies"
            | "GET /v1/requests"
            | "GET /v1/grants"
            | "GET /v1/reviews"
            | "GET /v1/audit"
            | "GET /v1/audit/export"
            | "GET /v1/audit/verify"
            | "GET /v1/events"
            | "GET /v1/notifiers"
            | "GET /v1/notifications/failed" => (Call::to(operation.split_once(' ').expect("label").1), none),
            "GET /v1/notifiers/{name}" => {
                let (path, body) = throwaway_config("PUT /v1/notifiers/{name}");
                self.admin_ok("PUT", Call::json(path.clone(), body));
                let undo = path.clone();
                let cleanup: Cleanup = Box::new(move |w: &World| w.admin_try("DELETE", Call::to(undo)));
                (Call::to(path), cleanup)
            }
            "POST /v1/notifications/{id}/retry" => (Call::to("/v1/notifications/matrix-delivery/retry"), none),
            "POST /v1/tokens" => (
                Call::json("/v1/tokens", json!({"principal": "matrix-made", "groups": ["dev"]})),
                none,
            ),
            "POST /v1/auth/oidc" => (Call::json("/v1/auth/oidc", json!({"token": "a.b.c"})), none),
            "POST /v1/auth/cli/token" => (
                Call::json(
                    "/v1/auth/cli/token",
                    json!({"code": "x", "code_verifier": "v".repeat(43)}),
                ),
                none,
            ),
            "POST /v1/auth/logout" => (
                Call {
                    spends_token: true,
                    ..Call::to("/v1/auth/logout")
                },
                none,
            ),
            "DELETE /v1/tokens/{id}" => {
                let made = self.admin_ok(
                    "POST",
                    Call::json("/v1/tokens", json!({"principal": "matrix-holder", "groups": ["dev"]})),
                );
                (
                    Call::to(format!("/v1/tokens/{}", made["id"].as_str().expect("id"))),
                    none,
                )
            }
            "POST /v1/principals/{name}/lock" => (
                Call::json("/v1/principals/matrix-locked/lock", json!({"reason": "authz matrix"})),
                Box::new(|w: &World| w.admin_try("DELETE", Call::to("/v1/principals/matrix-locked/lock"))),
            ),
            "DELETE /v1/principals/{name}/lock" => {
                self.admin_try(
                    "POST",
                    Call::json("/v1/principals/matrix-locked/lock", json!({"reason": "authz matrix"})),
                );
                (
                    Call::to("/v1/principals/matrix-locked/lock"),
                    Box::new(|w: &World| w.admin_try("DELETE", Call::to("/v1/principals/matrix-locked/lock"))),
                )
            }
            "GET /v1/targets/{name}" => (Call::to("/v1/targets/demo"), none),
            "POST /v1/targets/{name}/test" => (Call::to("/v1/targets/demo/test"), none),
            "POST /v1/targets/{name}/rotate" => (Call::to("/v1/targets/demo/rotate"), none),
            "GET /v1/targets/{name}/krl" => (Call::to("/v1/targets/matrix-ssh/krl"), none),
            "GET /v1/roles/{name}" => (Call::to(format!("/v1/roles/{READ_ROLE}")), none),
            "GET /v1/approval-flows/{name}" => (Call::to("/v1/approval-flows/matrix-flow"), none),
            "GET /v1/policies/{name}" => (Call::to("/v1/policies/matrix-policy"), none),
            "PUT /v1/targets/{name}"
            | "PUT /v1/roles/{name}"
            | "PUT /v1/approval-flows/{name}"
            | "PUT /v1/policies/{name}"
            | "PUT /v1/notifiers/{name}" => {
                let (path, body) = throwaway_config(operation);
                let undo = path.clone();
                let cleanup: Cleanup = Box::new(move |w: &World| w.admin_try("DELETE", Call::to(undo)));
                (Call::json(path, body), cleanup)
            }
            "DELETE /v1/targets/{name}"
            | "DELETE /v1/roles/{name}"
            | "DELETE /v1/approval-flows/{name}"
            | "DELETE /v1/policies/{name}"
            | "DELETE /v1/notifiers/{name}" => {
                let (path, body) = throwaway_config(operation);
                self.admin_ok("PUT", Call::json(path.clone(), body));
                (Call::to(path), none)
            }
            "POST /v1/policies/eval" => (Call::json("/v1/policies/eval", json!({"input": {}})), none),
            "POST /v1/apply" => (Call::json("/v1/apply", json!({"dry_run": true})), none),
            "POST /v1/requests" => {
                let body = json!({"role": ADMIN_ROLE, "reason": "authz matrix", "duration": "30m"});
                // The request alice makes is ended; nobody else gets one.
                let cleanup = Box::new(|w: &World| {
                    let mine = w.ok(&w.server.alice, "GET", Call::to("/v1/requests?mine=true"));
                    for request in mine.as_array().into_iter().flatten() {
                        w.end(request["id"].as_str().unwrap_or_default());
                    }
                });
                (Call::json("/v1/requests", body), cleanup)
            }
            "GET /v1/requests/{id}" => {
                let id = self.pending();
                (Call::to(format!("/v1/requests/{id}")), ending(id))
            }
            "POST /v1/requests/{id}/approve" | "POST /v1/requests/{id}/deny" | "POST /v1/requests/{id}/cancel" => {
                let id = self.pending();
                let verb = operation.rsplit('/').next().expect("verb");
                (Call::to(format!("/v1/requests/{id}/{verb}")), ending(id))
            }
            "POST /v1/requests/{id}/extend" => {
                let id = self.read_grant();
                let body = json!({"by": "15m", "reason": "authz matrix"});
                (Call::json(format!("/v1/requests/{id}/extend"), body), ending(id))
            }
            "GET /v1/requests/{id}/credentials" => {
                let id = self.read_grant();
                (Call::to(format!("/v1/requests/{id}/credentials")), ending(id))
            }
            "POST /v1/grants/{id}/release" => {
                let id = self.read_grant();
                (Call::to(format!("/v1/grants/{id}/release")), ending(id))
            }
            "POST /v1/grants/{id}/revoke" => {
                let id = self.approved_grant();
                let body = json!({"reason": "authz matrix"});
                (Call::json(format!("/v1/grants/{id}/revoke"), body), ending(id))
            }
            "POST /v1/reviews/{id}/ack" => {
                let id = self.alice_requests(BREAKGLASS_ROLE, true);
                let body = json!({"comment": "checked: authz matrix"});
                (Call::json(format!("/v1/reviews/{id}/ack"), body), ending(id))
            }
            "POST /v1/integrations/slack/interactions" => (
                Call {
                    path: "/v1/integrations/slack/interactions".into(),
                    body: Some((
                        "application/x-www-form-urlencoded",
                        b"payload=%7B%22type%22%3A%22block_actions%22%7D".to_vec(),
                    )),
                    spends_token: false,
                },
                none,
            ),
            "POST /v1/introspect" => (
                Call {
                    path: "/v1/introspect".into(),
                    body: Some(("application/x-www-form-urlencoded", b"token=not-a-grant-token".to_vec())),
                    spends_token: false,
                },
                none,
            ),
            other => panic!("{other} has a row in MATRIX but no fixture in World::prepare: add one"),
        }
    }
}

/// The configuration a write (`PUT` or `DELETE` of `/v1/KIND/{name}`)
/// acts on: a throwaway of its kind, as its path and body.
fn throwaway_config(operation: &str) -> (String, Value) {
    let collection = operation
        .split_once(' ')
        .and_then(|(_, path)| path.strip_suffix("/{name}"))
        .expect("METHOD /v1/KIND/{name}");
    let body = match collection {
        "/v1/targets" => json!({"name": "matrix-target", "type": "jwt", "config": {"audience": "matrix"}}),
        "/v1/roles" => json!({"name": "matrix-role", "target": "demo", "max_duration": "1h",
                              "auto_approve": true, "requestable_by": ["group:dev"]}),
        "/v1/approval-flows" => json!({"name": "matrix-flow-2", "stages": [{"approvers": ["group:approvers"]}]}),
        "/v1/policies" => json!({"source": "package hallpass.request\n"}),
        "/v1/notifiers" => json!({"name": "matrix-notifier", "type": "webhook",
                                  "config": {"url": "https://hooks.example.com/matrix"},
                                  "secrets": {"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}),
        other => panic!("no throwaway configuration for {other}"),
    };
    let name = body["name"].as_str().unwrap_or("matrix-policy-2");
    (format!("{collection}/{name}"), body)
}

/// Every operation of the served document, as `METHOD /path`.
fn documented_operations(world: &World) -> BTreeSet<String> {
    let (status, document) = world.send("GET", &Call::to("/v1/openapi.json"), None, None);
    assert_eq!(status, 200, "{document}");
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("path item").keys();
            methods
                .filter(|m| ["get", "put", "post", "delete", "patch", "head", "options"].contains(&m.as_str()))
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect()
}

#[test]
fn authz_matrix_covers_every_documented_operation_and_caller() {
    let world = World::new();
    let documented = documented_operations(&world);
    let table: BTreeMap<&str, [Outcome; 6]> = MATRIX.iter().copied().collect();
    assert_eq!(table.len(), MATRIX.len(), "an operation has two rows in MATRIX");

    let missing: Vec<&String> = documented
        .iter()
        .filter(|op| !table.contains_key(op.as_str()))
        .collect();
    let stale: Vec<&&str> = table.keys().filter(|op| !documented.contains(**op)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "MATRIX and the OpenAPI document disagree.\n\
         Operations without a row (say who may call them): {missing:?}\n\
         Rows without an operation (remove them): {stale:?}"
    );

    let mut wrong = Vec::new();
    for (operation, expected) in MATRIX {
        let method = operation.split_once(' ').expect("METHOD /path").0;
        for (caller, want) in expected.iter().enumerate() {
            let (call, cleanup) = world.prepare(operation);
            let (status, body) = world.as_caller(caller, method, &call);
            cleanup(&world);
            if outcome_of(status) != Some(*want) {
                wrong.push(format!(
                    "{operation} as {}: expected {want:?}, got {status} {body}",
                    CALLERS[caller]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} calls disagree with MATRIX:\n{}",
        wrong.len(),
        MATRIX.len() * CALLERS.len(),
        wrong.join("\n")
    );
}
