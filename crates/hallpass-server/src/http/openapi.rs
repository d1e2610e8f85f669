//! The OpenAPI document: generated from the handlers' annotations, then
//! completed in one place with what every operation shares (the bearer
//! security scheme, the error responses it can give, the request id
//! header), so no operation can forget one.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required};

use super::error::REQUEST_ID_HEADER;
use super::{audit, config, events, identity, notifications, requests, slack};
use hallpass_api as api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hallpass API",
        description = "Just-in-time access broker. Authenticate with `Authorization: Bearer hp_...`. \
                       Every error is `{\"error\": {\"code\", \"message\", \"request_id\"}}`."
    ),
    security(("bearer" = [])),
    paths(
        super::health,
        metrics,
        document,
        super::jwks,
        identity::whoami,
        identity::create_token,
        identity::list_tokens,
        identity::revoke_token,
        identity::exchange_workload_token,
        identity::exchange_cli_code,
        identity::sign_out,
        identity::list_locks,
        identity::lock,
        identity::unlock,
        config::list_targets,
        config::get_target,
        config::put_target,
        config::delete_target,
        config::test_target,
        config::rotate_target,
        config::target_krl,
        config::list_roles,
        config::get_role,
        config::put_role,
        config::delete_role,
        config::list_flows,
        config::get_flow,
        config::put_flow,
        config::delete_flow,
        config::list_policies,
        config::get_policy,
        config::put_policy,
        config::delete_policy,
        config::eval_policy,
        config::apply,
        notifications::list_notifiers,
        notifications::get_notifier,
        notifications::put_notifier,
        notifications::delete_notifier,
        notifications::failed_notifications,
        notifications::retry_notification,
        slack::interactions,
        requests::create_request,
        requests::list_requests,
        requests::get_request,
        requests::approve,
        requests::deny,
        requests::cancel,
        requests::extend,
        requests::list_reviews,
        requests::ack_review,
        requests::credentials,
        requests::list_grants,
        requests::revoke,
        requests::release,
        requests::introspect,
        audit::audit_list,
        audit::audit_export,
        audit::audit_verify,
        audit::audit_public_key,
        events::events
    ),
    components(schemas(api::ErrorBody, api::ErrorDetail, api::ErrorCode, api::formats::Name, api::formats::RequestId))
)]
struct ApiDoc;

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "system", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn metrics() {}

/// Error statuses and when an operation can answer with them. Every
/// operation is completed from this table, so none forgets one and none
/// claims one it cannot give.
const ERROR_STATUSES: [(u16, Applies, &str); 13] = [
    (
        400,
        Applies::WithInput,
        "invalid input (a value, the query or the path); nothing changed",
    ),
    (
        401,
        Applies::Authenticated,
        "missing, unknown, revoked or expired token",
    ),
    (403, Applies::Authenticated, "not allowed for this caller"),
    (
        404,
        Applies::Authenticated,
        "no such thing (or not one the caller may see)",
    ),
    (408, Applies::Always, "the request took too long"),
    (409, Applies::WithInput, "the current state refuses it"),
    (413, Applies::WithBody, "the body is larger than the server accepts"),
    (
        415,
        Applies::WithJsonBody,
        "the body is not JSON (`Content-Type: application/json`)",
    ),
    (
        422,
        Applies::WithBody,
        "the body is JSON of the wrong shape (the message names the field)",
    ),
    (
        429,
        Applies::Authenticated,
        "too many calls, or too many failed authentications from this address; see Retry-After",
    ),
    (500, Applies::Always, "internal error; the server log has the details"),
    (502, Applies::Authenticated, "a target system failed"),
    (503, Applies::Always, "contention; nothing changed, try again"),
];

/// Which operations an error status applies to.
#[derive(Clone, Copy)]
enum Applies {
    /// Every operation, public ones included: the server itself failed.
    Always,
    /// Operations that need a token.
    Authenticated,
    /// Authenticated operations that take parameters or a body.
    WithInput,
    /// Operations with a request body (the body limit, the body's shape).
    WithBody,
    /// Operations whose body must be JSON (the `JsonBody` extractor).
    WithJsonBody,
}

/// What the table needs to know about one operation.
struct Shape {
    public: bool,
    has_params: bool,
    has_body: bool,
    json_body_required: bool,
}

impl Shape {
    fn of(operation: &Operation) -> Shape {
        // `security(())` marks a public operation.
        let public = operation
            .security
            .as_ref()
            .is_some_and(|requirements| requirements.iter().all(|r| r == &Default::default()));
        let body = operation.request_body.as_ref();
        Shape {
            public,
            has_params: operation.parameters.as_ref().is_some_and(|p| !p.is_empty()),
            has_body: body.is_some(),
            json_body_required: body
                .is_some_and(|b| b.required == Some(Required::True) && b.content.keys().eq(["application/json"])),
        }
    }

    fn answers(&self, applies: Applies) -> bool {
        match applies {
            Applies::Always => true,
            Applies::Authenticated => !self.public,
            Applies::WithInput => !self.public && (self.has_params || self.has_body),
            Applies::WithBody => self.has_body,
            Applies::WithJsonBody => self.json_body_required,
        }
    }
}

/// OpenAPI links: a field of one operation's answer that names what other
/// operations take as a path parameter, so clients (and stateful testers)
/// can chain calls. (path, method, field of the body, parameter, targets)
const LINKS: &[(&str, &str, &str, &str, &[&str])] = &[
    (
        "/v1/requests",
        "post",
        "id",
        "id",
        &[
            "get_request",
            "approve",
            "deny",
            "cancel",
            "extend",
            "credentials",
            "revoke",
            "release",
            "ack_review",
        ],
    ),
    ("/v1/tokens", "post", "id", "id", &["revoke_token"]),
    ("/v1/principals/{name}/lock", "post", "principal", "name", &["unlock"]),
    (
        "/v1/targets/{name}",
        "put",
        "name",
        "name",
        &["get_target", "delete_target"],
    ),
    ("/v1/roles/{name}", "put", "name", "name", &["get_role", "delete_role"]),
    (
        "/v1/approval-flows/{name}",
        "put",
        "name",
        "name",
        &["get_flow", "delete_flow"],
    ),
    (
        "/v1/policies/{name}",
        "put",
        "name",
        "name",
        &["get_policy", "delete_policy"],
    ),
    (
        "/v1/notifiers/{name}",
        "put",
        "name",
        "name",
        &["get_notifier", "delete_notifier"],
    ),
];

/// The document, completed.
pub fn build() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    for item in doc.paths.paths.values_mut() {
        for (_, operation) in operations(item) {
            add_error_responses(operation);
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response
                        .headers
                        .insert(REQUEST_ID_HEADER.to_string(), request_id_header());
                }
            }
        }
    }
    add_links(&mut doc);
    doc
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
}

fn request_id_header() -> Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(
            "This request's id (the client's own if it sent one); error bodies repeat it and the access log has it",
        ))
        .build()
}

fn add_error_responses(operation: &mut Operation) {
    let shape = Shape::of(operation);
    for (status, applies, description) in ERROR_STATUSES {
        let key = status.to_string();
        if !shape.answers(applies) || operation.responses.responses.contains_key(&key) {
            continue;
        }
        let mut response = ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))))
                .build(),
        );
        if status == 429 {
            response = response.header(
                "retry-after",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
                    .description(Some("Seconds to wait before trying again"))
                    .build(),
            );
        }
        operation.responses.responses.insert(key, RefOr::T(response.build()));
    }
}

fn add_links(doc: &mut utoipa::openapi::OpenApi) {
    for (path, method, field, parameter, targets) in LINKS {
        let Some(item) = doc.paths.paths.get_mut(*path) else {
            continue;
        };
        let Some((_, operation)) = operations(item).find(|(m, _)| m == method) else {
            continue;
        };
        for (status, response) in &mut operation.responses.responses {
            let RefOr::T(response) = response else { continue };
            if !status.starts_with('2') {
                continue;
            }
            for target in *targets {
                // utoipa 5.5 writes `Link::operation_id` as `operation_id`;
                // the specification's name is `operationId`. The extension
                // map is flattened into the link as it is.
                let mut spelled_right = Extensions::default();
                spelled_right.insert("operationId".to_string(), (*target).into());
                let link = LinkBuilder::new()
                    .parameter(*parameter, format!("$response.body#/{field}"))
                    .extensions(Some(spelled_right))
                    .build();
                response.links.insert((*target).to_string(), RefOr::T(link));
            }
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "system", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(build())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        serde_json::to_value(build()).expect("the document serialises")
    }

    fn operations_of(doc: &Value) -> impl Iterator<Item = (String, &Value)> {
        doc["paths"].as_object().into_iter().flatten().flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .map(move |(method, operation)| (format!("{} {path}", method.to_uppercase()), operation))
        })
    }

    #[test]
    fn links_name_operations_that_exist_in_the_spelling_of_the_specification() {
        let doc = document();
        let ids: BTreeSet<&str> = operations_of(&doc)
            .filter_map(|(_, operation)| operation["operationId"].as_str())
            .collect();
        let mut links = 0;
        for (label, operation) in operations_of(&doc) {
            for response in operation["responses"].as_object().into_iter().flatten().map(|(_, r)| r) {
                for (name, link) in response["links"].as_object().into_iter().flatten() {
                    links += 1;
                    assert!(link.get("operation_id").is_none(), "{label} link {name}: {link}");
                    let target = link["operationId"].as_str().unwrap_or_default();
                    assert!(ids.contains(target), "{label} links to unknown operation {target:?}");
                }
            }
        }
        assert!(links >= 20, "only {links} links");
    }

    /// `METHOD /path` of every `.route(PATH, get(..).post(..))` in the
    /// router's source, read with syn: what the server really serves.
    fn routed_operations() -> BTreeSet<String> {
        use syn::visit::Visit;

        struct Routes(BTreeSet<String>);
        impl<'ast> Visit<'ast> for Routes {
            fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
                if call.method == "route"
                    && let Some(syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(path),
                        ..
                    })) = call.args.first()
                {
                    let mut handlers = call.args.get(1);
                    while let Some(expr) = handlers {
                        handlers = match expr {
                            syn::Expr::MethodCall(chained) => {
                                self.0.insert(format!(
                                    "{} {}",
                                    chained.method.to_string().to_uppercase(),
                                    path.value()
                                ));
                                Some(&*chained.receiver)
                            }
                            syn::Expr::Call(first) => {
                                if let syn::Expr::Path(function) = &*first.func
                                    && let Some(name) = function.path.get_ident()
                                {
                                    self.0
                                        .insert(format!("{} {}", name.to_string().to_uppercase(), path.value()));
                                }
                                None
                            }
                            _ => None,
                        };
                    }
                }
                syn::visit::visit_expr_method_call(self, call);
            }
        }
        let source = syn::parse_file(include_str!("mod.rs")).expect("http/mod.rs parses");
        let mut routes = Routes(BTreeSet::new());
        routes.visit_file(&source);
        routes.0
    }

    #[test]
    fn every_route_the_server_serves_is_in_the_document_and_no_other() {
        let doc = document();
        let documented: BTreeSet<String> = operations_of(&doc).map(|(label, _)| label).collect();
        let routed = routed_operations();
        assert!(routed.len() >= 40, "read only {routed:?}");
        let undocumented: Vec<&String> = routed.difference(&documented).collect();
        let unserved: Vec<&String> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "served but not in the document: {undocumented:?}; documented but not served: {unserved:?}"
        );
    }

    #[test]
    fn error_statuses_follow_what_an_operation_takes() {
        let doc = document();
        let statuses = |label: &str| -> BTreeSet<String> {
            let (_, operation) = operations_of(&doc).find(|(l, _)| l == label).expect(label);
            operation["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .cloned()
                .collect()
        };
        let has = |label: &str, status: &str| statuses(label).contains(status);
        // Public: only the server's own failures.
        assert_eq!(
            statuses("GET /healthz"),
            ["200", "408", "500", "503"].map(String::from).into()
        );
        // No input: no 400, no body errors; a token: 401, 403, 429.
        assert!(!has("GET /v1/whoami", "400") && !has("GET /v1/whoami", "422"));
        assert!(has("GET /v1/whoami", "401") && has("GET /v1/whoami", "429"));
        // A JSON body: its size, type and shape.
        for status in ["400", "413", "415", "422"] {
            assert!(has("POST /v1/requests", status), "{status}");
        }
        // Optional or non-JSON bodies are never refused for their type.
        assert!(!has("POST /v1/requests/{id}/approve", "415"));
        assert!(!has("POST /v1/introspect", "415") && has("POST /v1/introspect", "422"));
        // A GET that reads state can meet a state that refuses it.
        assert!(has("GET /v1/requests/{id}/credentials", "409"));
    }
}
