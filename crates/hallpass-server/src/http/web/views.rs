//! What the pages show, made from the API's types: one askama template
//! struct per page and the rows they list, with every value already turned
//! into display text. The templates escape it all; nothing here is HTML.

use askama::Template;
use axum::response::Html;
use chrono::{DateTime, SecondsFormat, Utc};
use hallpass_api::{self as api, RequestState};
use hallpass_core::audit::AuditEvent;
use hallpass_core::duration::format_duration;
use hallpass_core::{Principal, Subject};

use crate::app::Caller;

/// The frame of every page: title, navigation, who is signed in.
#[derive(Clone)]
pub struct Layout {
    pub title: String,
    pub signed_in: bool,
    pub principal: String,
    pub groups: String,
    pub admin: bool,
    pub auditor: bool,
    pub csrf: String,
    /// The page listens to the event stream for live updates.
    pub live: bool,
}

impl Layout {
    pub fn signed_in(title: &str, caller: &Caller, csrf: &str) -> Layout {
        Layout {
            title: title.to_string(),
            signed_in: true,
            principal: caller.principal.name.clone(),
            groups: caller.principal.groups.join(", "),
            admin: caller.is_admin(),
            auditor: caller.is_auditor(),
            csrf: csrf.to_string(),
            live: true,
        }
    }

    pub fn signed_out(title: &str) -> Layout {
        Layout {
            title: title.to_string(),
            signed_in: false,
            principal: String::new(),
            groups: String::new(),
            admin: false,
            auditor: false,
            csrf: String::new(),
            live: false,
        }
    }

    pub fn titled(mut self, title: &str) -> Layout {
        title.clone_into(&mut self.title);
        self
    }
}

/// Renders a page; a template that fails (it cannot, short of a bug) is
/// logged and answered with a bare message.
pub fn render(page: &impl Template) -> Html<String> {
    match page.render() {
        Ok(html) => Html(html),
        Err(error) => {
            tracing::error!(%error, "a page template failed");
            Html("<!doctype html><title>Error — Hallpass</title><p>This page could not be drawn.</p>".to_string())
        }
    }
}

pub fn time_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Does `subject` (`user:NAME`, `group:NAME`) name this principal?
pub fn names(subject: &str, principal: &Principal) -> bool {
    subject.parse::<Subject>().is_ok_and(|s| s.matches(principal))
}

/// One request in a list.
pub struct RequestRow {
    pub id: String,
    pub role: String,
    pub target: String,
    pub requester: String,
    pub state: String,
    pub reason: String,
    pub ticket: String,
    pub duration: String,
    pub created: String,
    pub emergency: bool,
    /// RFC 3339, for the countdown, while the grant is live.
    pub expires_at: String,
    pub time_left: String,
    /// The policies' answer, in a line.
    pub policy: String,
    /// The Terraform plan the request is bound to, in a line.
    pub plan: String,
}

impl RequestRow {
    pub fn of(request: &api::AccessRequest, now: DateTime<Utc>) -> RequestRow {
        let live = request.state == RequestState::Active;
        let expires = request.expires_at.filter(|_| live);
        RequestRow {
            id: request.id.clone(),
            role: request.role.clone(),
            target: request.target.clone(),
            requester: request.requester.clone(),
            state: request.state.as_str().to_string(),
            reason: request.reason.clone(),
            ticket: request.ticket.clone().unwrap_or_default(),
            duration: format_duration(request.duration_seconds),
            created: time_text(request.created_at),
            emergency: request.emergency,
            expires_at: expires.map(iso).unwrap_or_default(),
            time_left: expires
                .map(|at| format_duration(u64::try_from((at - now).num_seconds().max(0)).unwrap_or(0)))
                .map(|left| format!("{left} left"))
                .unwrap_or_default(),
            policy: policy_lines(request)
                .into_iter()
                .filter(|line| !line.starts_with("Policy set"))
                .collect::<Vec<_>>()
                .join("; "),
            plan: request.plan.as_ref().map(plan_summary).unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "web/login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub issuer: String,
    pub next: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "web/error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub message: String,
}

#[derive(Template)]
#[template(path = "web/my_requests.html")]
pub struct MyRequestsPage {
    pub layout: Layout,
    pub rows: Vec<RequestRow>,
}

#[derive(Template)]
#[template(path = "web/approvals.html")]
pub struct ApprovalsPage {
    pub layout: Layout,
    pub rows: Vec<RequestRow>,
    pub reviews: Vec<RequestRow>,
}

/// A role as the request form offers it.
pub struct RoleChoice {
    pub name: String,
    pub description: String,
    pub target: String,
    pub max_duration: String,
    pub default_duration: String,
    pub approval: String,
    pub emergency: bool,
}

/// One stage of a flow as configured, in a line.
pub fn stage_text(stage: &api::StageSpec) -> String {
    let mut line = format!("{} of {}", stage.required, stage.approvers.join(", "));
    if let Some(timeout) = &stage.timeout {
        line.push_str(&format!(
            "; after {timeout} escalates to {}",
            stage.escalate_to.join(", ")
        ));
    }
    line
}

impl RoleChoice {
    /// `flows`: the approval flows, to say what a role's flow asks.
    pub fn of(role: &api::Role, flows: &[api::ApprovalFlow]) -> RoleChoice {
        let approval = if role.auto_approve {
            "granted at once (self-service)".to_string()
        } else if let Some(flow) = &role.approval_flow {
            match flows.iter().find(|f| &f.name == flow) {
                Some(found) => {
                    let stages: Vec<String> = found
                        .stages
                        .iter()
                        .enumerate()
                        .map(|(i, stage)| format!("stage {}: {}", i + 1, stage_text(stage)))
                        .collect();
                    format!("approval flow {flow} ({})", stages.join("; then "))
                }
                None => format!("approval flow {flow}"),
            }
        } else if let Some(spec) = &role.approval {
            format!("{} approval(s) from {}", spec.required, spec.approvers.join(", "))
        } else {
            "decided by the policies".to_string()
        };
        RoleChoice {
            name: role.name.clone(),
            description: role.description.clone(),
            target: role.target.clone(),
            max_duration: role.max_duration.clone(),
            default_duration: role.default_duration.clone(),
            approval,
            emergency: role.emergency_access,
        }
    }
}

/// The request form's fields as sent, and the messages next to them.
#[derive(Default, Clone, serde::Deserialize)]
pub struct RequestFields {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub ticket: String,
    #[serde(default)]
    pub start_at: String,
    #[serde(default)]
    pub emergency: Option<String>,
}

#[derive(Default)]
pub struct FieldErrors {
    pub role: String,
    pub duration: String,
    pub reason: String,
    pub ticket: String,
    pub start_at: String,
    pub emergency: String,
    pub other: String,
}

#[derive(Template)]
#[template(path = "web/request_form.html")]
pub struct RequestFormPage {
    pub layout: Layout,
    pub roles: Vec<RoleChoice>,
    pub fields: RequestFields,
    pub errors: FieldErrors,
    pub any_emergency: bool,
}

/// One stage of an approval flow, as a request's page shows it.
pub struct StageView {
    pub number: u32,
    pub state: String,
    pub required: u32,
    pub approvers: String,
    pub approvals: Vec<String>,
    pub may_approve: String,
    pub escalation: String,
}

impl StageView {
    pub fn of(stage: &api::StageProgress) -> StageView {
        let escalation = match (stage.escalates_at, stage.escalated) {
            (Some(_), true) => format!("escalated to {}", stage.escalate_to.join(", ")),
            (Some(at), false) => format!("escalates to {} at {}", stage.escalate_to.join(", "), time_text(at)),
            (None, _) => String::new(),
        };
        StageView {
            number: stage.number,
            state: stage.state.as_str().to_string(),
            required: stage.required,
            approvers: stage.approvers.join(", "),
            approvals: stage.approvals.iter().map(approval_text).collect(),
            may_approve: stage.may_approve.join(", "),
            escalation,
        }
    }
}

fn approval_text(approval: &api::ApprovalRecord) -> String {
    match &approval.comment {
        Some(comment) => format!("{} at {}: {comment}", approval.approver, time_text(approval.at)),
        None => format!("{} at {}", approval.approver, time_text(approval.at)),
    }
}

pub fn decision_text(verb: &str, record: &api::DecisionRecord) -> String {
    match &record.comment {
        Some(comment) => format!("{verb} by {} at {}: {comment}", record.by, time_text(record.at)),
        None => format!("{verb} by {} at {}", record.by, time_text(record.at)),
    }
}

/// What the policies said, in a line each.
pub fn policy_lines(request: &api::AccessRequest) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(policy) = &request.policy {
        if let Some(error) = &policy.error {
            lines.push(format!("Policy evaluation failed, so the request was denied: {error}"));
        }
        lines.extend(policy.deny.iter().map(|message| format!("Denied by policy: {message}")));
        if policy.auto_approve {
            lines.push("Auto-approved by policy".to_string());
        }
        if let Some(flow) = &policy.approval_flow {
            lines.push(format!("Policy chose approval flow {flow}"));
        }
        if let Some(max) = policy.max_duration_seconds {
            lines.push(format!("Policy capped the duration at {}", format_duration(max)));
        }
        let hash: String = policy.policy_hash.chars().take(12).collect();
        if !hash.is_empty() {
            lines.push(format!("Policy set {hash}…"));
        }
    }
    if request.auto_approved && !lines.iter().any(|line| line.starts_with("Auto-approved")) {
        lines.push("Granted at once (self-service role)".to_string());
    }
    lines
}

/// A plan in a line: how many resources it creates, changes and destroys.
fn plan_summary(plan: &api::TerraformPlan) -> String {
    format!(
        "Terraform plan: {} to create, {} to update, {} to replace, {} to delete",
        plan.create.len(),
        plan.update.len(),
        plan.replace.len(),
        plan.delete.len()
    )
}

/// The Terraform plan an approval is bound to.
pub fn plan_lines(plan: &api::TerraformPlan) -> Vec<String> {
    let mut lines = vec![format!("Plan file SHA-256 {}", plan.sha256)];
    for (verb, list) in [
        ("create", &plan.create),
        ("update", &plan.update),
        ("replace", &plan.replace),
        ("delete", &plan.delete),
    ] {
        if !list.is_empty() {
            lines.push(format!("{verb} ({}): {}", list.len(), list.join(", ")));
        }
    }
    lines
}

/// What the person looking may do with the request now.
#[derive(Default)]
pub struct Actions {
    pub approve: bool,
    pub cancel: bool,
    pub release: bool,
    pub extend: bool,
    pub revoke: bool,
    pub reveal: bool,
    pub acknowledge: bool,
}

#[derive(Template)]
#[template(path = "web/request.html")]
pub struct RequestPage {
    pub layout: Layout,
    pub row: RequestRow,
    pub policy: Vec<String>,
    pub plan: Vec<String>,
    pub flow: String,
    pub stages: Vec<StageView>,
    pub outcome: Vec<String>,
    pub actions: Actions,
    pub snippets: Vec<(String, String)>,
    pub history: Vec<AuditRow>,
    pub message: String,
}

/// One audit event in a table.
pub struct AuditRow {
    pub seq: u64,
    pub time: String,
    pub actor: String,
    pub kind: String,
    pub request_id: String,
    pub data: String,
}

impl AuditRow {
    pub fn of(event: &AuditEvent) -> AuditRow {
        AuditRow {
            seq: event.seq,
            time: event.time.clone(),
            actor: event.actor.clone(),
            kind: event.kind.clone(),
            request_id: event.request_id.clone().unwrap_or_default(),
            data: event.data.to_string(),
        }
    }
}

/// The audit page's filters, as given.
#[derive(Default, Clone, serde::Deserialize)]
pub struct AuditFilters {
    #[serde(default)]
    pub request: String,
    #[serde(default)]
    pub principal: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub until: String,
}

#[derive(Template)]
#[template(path = "web/audit.html")]
pub struct AuditPage {
    pub layout: Layout,
    pub filters: AuditFilters,
    pub rows: Vec<AuditRow>,
    pub scanned: u64,
    pub verify: String,
    pub verify_ok: bool,
    pub message: String,
}

pub struct TargetView {
    pub name: String,
    pub target_type: String,
    pub config: String,
    pub secrets: String,
}

pub struct FlowView {
    pub name: String,
    pub description: String,
    pub pending_ttl: String,
    pub stages: Vec<String>,
}

pub struct PolicyView {
    pub name: String,
    pub hash: String,
    pub source: String,
}

#[derive(Template)]
#[template(path = "web/config.html")]
pub struct ConfigPage {
    pub layout: Layout,
    pub targets: Vec<TargetView>,
    pub roles: Vec<RoleChoice>,
    pub flows: Vec<FlowView>,
    pub policies: Vec<PolicyView>,
}

pub struct TokenView {
    pub id: String,
    pub principal: String,
    pub groups: String,
    pub created_by: String,
    pub expires: String,
}

pub struct LockView {
    pub principal: String,
    pub reason: String,
    pub by: String,
    pub at: String,
}

#[derive(Template)]
#[template(path = "web/admin.html")]
pub struct AdminPage {
    pub layout: Layout,
    pub tokens: Vec<TokenView>,
    pub locks: Vec<LockView>,
}

#[derive(Template)]
#[template(path = "web/cli.html")]
pub struct CliPage {
    pub layout: Layout,
    pub port: u16,
    pub state: String,
    pub challenge: String,
}
