//! The pages people look at: each asks the service layer, as the signed-in
//! caller, for what the API would answer, and renders it.

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use hallpass_api::{self as api, RequestState};
use hallpass_core::format_duration;

use super::session::{PageError, WebCaller};
use super::views::{
    Actions, AdminPage, ApprovalsPage, AuditFilters, AuditPage, AuditRow, ConfigPage, FieldErrors, FlowView, LockView,
    MyRequestsPage, PolicyView, RequestFields, RequestFormPage, RequestPage, RequestRow, RoleChoice, StageView,
    TargetView, TokenView, decision_text, names, plan_lines, policy_lines, render, time_text,
};
use crate::app::App;
use crate::app::audit::{AuditSearch, SEARCH_SCAN};
use crate::app::listing::ListQuery;
use crate::http::extract::QueryOf;

/// Requests a list page shows.
const LIST_LIMIT: u32 = 200;

pub type PageResult = Result<Response, PageError>;

fn failed(who: &WebCaller, title: &str) -> impl FnOnce(crate::app::AppError) -> PageError {
    let layout = who.layout(title);
    move |error| PageError::from_app(error, Some(layout))
}

pub async fn my_requests(State(app): State<App>, who: WebCaller) -> PageResult {
    let query = ListQuery {
        mine: true,
        limit: Some(LIST_LIMIT),
        ..ListQuery::default()
    };
    let page = app
        .list_requests(&who.caller, query)
        .await
        .map_err(failed(&who, "My requests"))?;
    let now = app.now();
    let rows = page.items.iter().map(|r| RequestRow::of(r, now)).collect();
    Ok(render(&MyRequestsPage {
        layout: who.layout("My requests"),
        rows,
    })
    .into_response())
}

/// The roles the caller may request, with how each is approved.
pub async fn role_choices(app: &App, who: &WebCaller) -> Result<Vec<RoleChoice>, PageError> {
    let roles = app
        .list_roles(&who.caller)
        .await
        .map_err(failed(who, "Request access"))?;
    let flows = app
        .list_flows(&who.caller)
        .await
        .map_err(failed(who, "Request access"))?;
    Ok(roles
        .iter()
        .filter(|role| role.requestable_by.iter().any(|s| names(s, &who.caller.principal)))
        .map(|role| RoleChoice::of(role, &flows))
        .collect())
}

/// The request form, with what was typed and the messages next to the
/// fields when it comes back refused.
pub async fn render_request_form(
    app: &App,
    who: &WebCaller,
    fields: RequestFields,
    errors: FieldErrors,
) -> Result<Html<String>, PageError> {
    let roles = role_choices(app, who).await?;
    let any_emergency = roles.iter().any(|role| role.emergency);
    Ok(render(&RequestFormPage {
        layout: who.layout("Request access"),
        roles,
        fields,
        errors,
        any_emergency,
    }))
}

#[derive(serde::Deserialize, Default)]
pub struct RoleParam {
    #[serde(default)]
    role: String,
}

pub async fn request_form(State(app): State<App>, who: WebCaller, QueryOf(param): QueryOf<RoleParam>) -> PageResult {
    let fields = RequestFields {
        role: param.role,
        ..RequestFields::default()
    };
    Ok(render_request_form(&app, &who, fields, FieldErrors::default())
        .await?
        .into_response())
}

/// Does the caller have a say on this pending request now?
fn may_approve_now(request: &api::AccessRequest, who: &WebCaller) -> bool {
    let principal = &who.caller.principal;
    let pending = request.state == RequestState::Pending
        || request
            .extensions
            .last()
            .is_some_and(|e| e.state == api::ExtensionState::Pending);
    let progress = match request.extensions.last() {
        Some(extension) if extension.state == api::ExtensionState::Pending => extension.approval.as_ref(),
        _ => request.approval.as_ref(),
    };
    let named = progress.is_some_and(|flow| {
        flow.stages
            .iter()
            .any(|stage| stage.may_approve.iter().any(|s| names(s, principal)))
    });
    pending && named
}

pub async fn approvals(State(app): State<App>, who: WebCaller) -> PageResult {
    let query = ListQuery {
        limit: Some(LIST_LIMIT),
        ..ListQuery::default()
    };
    let page = app
        .list_requests(&who.caller, query)
        .await
        .map_err(failed(&who, "Approvals"))?;
    let now = app.now();
    let rows = page
        .items
        .iter()
        .filter(|r| may_approve_now(r, &who))
        .map(|r| RequestRow::of(r, now))
        .collect();
    let reviews = app
        .list_reviews(&who.caller, false)
        .await
        .map_err(failed(&who, "Approvals"))?;
    let reviews = reviews.iter().map(|r| RequestRow::of(r, now)).collect();
    Ok(render(&ApprovalsPage {
        layout: who.layout("Approvals"),
        rows,
        reviews,
    })
    .into_response())
}

/// What the caller may do with the request now; the service layer decides
/// again when they do it.
fn actions_for(request: &api::AccessRequest, who: &WebCaller) -> Actions {
    let caller = &who.caller;
    let mine = request.requester == caller.principal.name;
    let live = request.state == RequestState::Active;
    let approver = caller.is_admin()
        || request.approvers.iter().any(|s| names(s, &caller.principal))
        || request.approval.as_ref().is_some_and(|flow| {
            flow.stages.iter().any(|stage| {
                stage
                    .approvers
                    .iter()
                    .chain(&stage.escalate_to)
                    .any(|s| names(s, &caller.principal))
            })
        });
    let open_review = request
        .review
        .as_ref()
        .is_some_and(|review| review.state == api::ReviewState::Open);
    Actions {
        approve: may_approve_now(request, who),
        cancel: mine && matches!(request.state, RequestState::Pending | RequestState::Scheduled),
        release: mine && live,
        extend: mine && live,
        revoke: live && approver,
        reveal: mine && live,
        acknowledge: open_review && (approver || caller.is_auditor()),
    }
}

/// Commands that use the grant, by its target's type.
fn snippets(request: &api::AccessRequest, target_type: &str) -> Vec<(String, String)> {
    let (id, role) = (&request.id, &request.role);
    let mut list = vec![(
        "The credential as environment variables:".to_string(),
        format!("hallpass credentials {id} --format env"),
    )];
    let tool = match target_type {
        "ssh" => {
            list.push((
                "Log in with a certificate for this grant:".to_string(),
                format!("hallpass ssh {role} --reason \"...\" -- USER@HOST"),
            ));
            None
        }
        "postgres" => Some("psql"),
        "mysql" => Some("mariadb"),
        "redis" => Some("redis-cli"),
        _ => Some("COMMAND"),
    };
    if let Some(tool) = tool {
        list.push((
            format!("Run {tool} with the credential in its environment, giving the access back when it ends:"),
            format!("hallpass exec {role} --reason \"...\" -- {tool}"),
        ));
    }
    list
}

/// What happened to the request, in a line each.
fn outcome_lines(request: &api::AccessRequest) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(decision) = &request.decision {
        let verb = match request.state {
            RequestState::Denied => "Denied",
            RequestState::Cancelled => "Cancelled",
            _ => "Decided",
        };
        lines.push(decision_text(verb, decision));
    }
    if let Some(at) = request.activated_at {
        lines.push(format!("Active since {}", time_text(at)));
    }
    if let Some(ended) = &request.ended_by {
        lines.push(decision_text("Ended", ended));
    } else if let Some(at) = request.ended_at {
        lines.push(format!("Ended at {}", time_text(at)));
    }
    if let Some(error) = &request.revoke_error {
        lines.push(format!(
            "Revocation failed {} time(s) and is retried: {error}",
            request.revoke_attempts
        ));
    }
    if let Some(capped) = request.capped_from_seconds {
        lines.push(format!(
            "Asked for {}, capped at the role's new maximum",
            format_duration(capped)
        ));
    }
    lines
}

pub async fn request_page(State(app): State<App>, who: WebCaller, Path(id): Path<String>) -> PageResult {
    Ok(render_request_page(&app, &who, id, String::new())
        .await?
        .into_response())
}

/// A request's page, with `message` (a refused action's) above it.
pub async fn render_request_page(
    app: &App,
    who: &WebCaller,
    id: String,
    message: String,
) -> Result<Html<String>, PageError> {
    let (request, _) = app
        .get_request(&who.caller, id.clone())
        .await
        .map_err(failed(who, "Request"))?;
    let history = app
        .request_history(&who.caller, id)
        .await
        .map_err(failed(who, "Request"))?;
    let target_type = app
        .get_target(&who.caller, request.target.clone())
        .await
        .map(|target| target.target_type)
        .unwrap_or_default();
    let now = app.now();
    let flow = request.approval.as_ref();
    Ok(render(&RequestPage {
        layout: who.layout(&format!("Request {}", request.role)),
        row: RequestRow::of(&request, now),
        policy: policy_lines(&request),
        plan: request.plan.as_ref().map(plan_lines).unwrap_or_default(),
        flow: flow.and_then(|f| f.flow.clone()).unwrap_or_default(),
        stages: flow
            .map(|f| f.stages.iter().map(StageView::of).collect())
            .unwrap_or_default(),
        outcome: outcome_lines(&request),
        actions: actions_for(&request, who),
        snippets: snippets(&request, &target_type),
        history: history.iter().map(AuditRow::of).collect(),
        message,
    }))
}

/// `YYYY-MM-DDTHH:MM` (a `datetime-local` field), read as UTC.
pub fn parse_local_utc(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = text.trim();
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .map(|naive| naive.and_utc())
}

pub async fn audit(State(app): State<App>, who: WebCaller, QueryOf(filters): QueryOf<AuditFilters>) -> PageResult {
    Ok(render_audit(&app, &who, filters, None).await?.into_response())
}

/// The audit page; `verified` is the verification's outcome, when asked.
pub async fn render_audit(
    app: &App,
    who: &WebCaller,
    filters: AuditFilters,
    verified: Option<(bool, String)>,
) -> Result<Html<String>, PageError> {
    let text = |value: &str| Some(value.trim().to_string()).filter(|v| !v.is_empty());
    let mut message = String::new();
    let mut time = |value: &str, what: &str| {
        let given = text(value)?;
        let parsed = parse_local_utc(&given);
        if parsed.is_none() {
            message = format!("{what} {given:?} is not a date and time like 2026-11-30T14:00; it was left out");
        }
        parsed
    };
    let search = AuditSearch {
        request: text(&filters.request),
        actor: text(&filters.principal),
        kind: text(&filters.kind),
        from: time(&filters.from, "From"),
        until: time(&filters.until, "Until"),
    };
    let (events, scanned) = app
        .audit_search(&who.caller, search)
        .await
        .map_err(failed(who, "Audit log"))?;
    let (verify_ok, verify) = verified.unwrap_or_default();
    Ok(render(&AuditPage {
        layout: who.layout("Audit log"),
        filters,
        rows: events.iter().map(AuditRow::of).collect(),
        scanned: scanned.min(SEARCH_SCAN),
        verify,
        verify_ok,
        message,
    }))
}

pub async fn configuration(State(app): State<App>, who: WebCaller) -> PageResult {
    let caller = &who.caller;
    let err = || failed(&who, "Configuration");
    let targets = app.list_targets(caller).await.map_err(err())?;
    let roles = app.list_roles(caller).await.map_err(err())?;
    let flows = app.list_flows(caller).await.map_err(err())?;
    let policies = app.list_policies(caller).await.map_err(err())?;
    Ok(render(&ConfigPage {
        layout: who.layout("Configuration"),
        targets: targets
            .iter()
            .map(|t| TargetView {
                name: t.name.clone(),
                target_type: t.target_type.clone(),
                config: serde_json::Value::Object(t.config.clone()).to_string(),
                secrets: t.secrets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
            })
            .collect(),
        roles: roles.iter().map(|role| RoleChoice::of(role, &flows)).collect(),
        flows: flows.iter().map(flow_view).collect(),
        policies: policies
            .iter()
            .map(|p| PolicyView {
                name: p.name.clone(),
                hash: p.source_hash.clone(),
                source: p.source.clone(),
            })
            .collect(),
    })
    .into_response())
}

fn flow_view(flow: &api::ApprovalFlow) -> FlowView {
    FlowView {
        name: flow.name.clone(),
        description: flow.description.clone(),
        pending_ttl: flow.pending_ttl.clone(),
        stages: flow
            .stages
            .iter()
            .map(|stage| {
                let mut line = format!("{} of {}", stage.required, stage.approvers.join(", "));
                if let Some(timeout) = &stage.timeout {
                    line.push_str(&format!(
                        "; after {timeout} escalates to {}",
                        stage.escalate_to.join(", ")
                    ));
                }
                line
            })
            .collect(),
    }
}

pub async fn admin(State(app): State<App>, who: WebCaller) -> PageResult {
    if !who.caller.is_admin() {
        return Err(PageError::forbidden(
            "this page is for admins (group `admins`)",
            Some(who.layout("Not allowed")),
        ));
    }
    let err = || failed(&who, "Admin");
    let tokens = app.list_tokens(&who.caller).await.map_err(err())?;
    let locks = app.list_locks(&who.caller).await.map_err(err())?;
    let now = app.now();
    Ok(render(&AdminPage {
        layout: who.layout("Admin"),
        tokens: tokens
            .iter()
            .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|at| at > now))
            .map(|t| TokenView {
                id: t.id.clone(),
                principal: t.principal.clone(),
                groups: t.groups.join(", "),
                created_by: t.created_by.clone(),
                expires: t.expires_at.map(time_text).unwrap_or_else(|| "never".into()),
            })
            .collect(),
        locks: locks
            .iter()
            .map(|l| LockView {
                principal: l.principal.clone(),
                reason: l.reason.clone(),
                by: l.locked_by.clone(),
                at: time_text(l.locked_at),
            })
            .collect(),
    })
    .into_response())
}
