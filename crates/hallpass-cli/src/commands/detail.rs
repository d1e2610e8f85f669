//! How requests read for people: the `show` page, approval-flow progress,
//! policy decisions, extensions and reviews.
//!
//! Everything here is a pure function of the API objects and the current
//! time, so it is tested without a server; the commands only print it. The
//! pages come out escaped (see [`crate::output::escape_controls`]): `key:
//! value` blocks escape in [`fields`], and every line of the nested listings
//! goes through [`push_line`], which keeps each record on its own line.

use chrono::{DateTime, Utc};
use hallpass_api::{
    AccessRequest, DecisionRecord, ExtensionRecord, ExtensionState, FlowProgress, PolicyDecision, RequestState,
    ReviewState, StageProgress, StageState,
};
use hallpass_core::request::PolicyOutcome;

use crate::output::{
    fields, join_or_dash, opt_time, opt_time_relative, or_dash, push_line, short_hash, time, time_relative, yes_no,
};

/// The stage now collecting approvals, if any.
pub fn open_stage(flow: &FlowProgress) -> Option<&StageProgress> {
    flow.stages.iter().find(|stage| stage.state == StageState::Open)
}

/// One line on where a flow stands:
/// `stage 1/2: 0/1 approvals (may approve: group:dev-leads)`.
pub fn flow_status(flow: &FlowProgress) -> String {
    let total = flow.stages.len();
    let approved = flow
        .stages
        .iter()
        .filter(|stage| stage.state == StageState::Approved)
        .count();
    let Some(stage) = open_stage(flow) else {
        return format!("{approved}/{total} stages approved");
    };
    let mut text = format!(
        "stage {}/{total}: {}/{} approvals",
        stage.number,
        stage.approvals.len(),
        stage.required
    );
    if !stage.may_approve.is_empty() {
        text.push_str(&format!(" (may approve: {})", stage.may_approve.join(", ")));
    }
    if stage.escalated {
        text.push_str(", escalated");
    }
    text
}

/// Approval progress of a request: its flow's status, or `1/2` for a request
/// decided by a role's inline approval block without stage detail.
pub fn approval_progress(request: &AccessRequest) -> String {
    match &request.approval {
        Some(flow) => flow_status(flow),
        None => format!("{}/{} approvals", request.approvals.len(), request.required_approvals),
    }
}

/// Why the policies refused, one line per reason and each `deny` message
/// verbatim; empty when they did not refuse.
pub fn policy_refusal(policy: Option<&PolicyDecision>) -> Vec<String> {
    let Some(policy) = policy else {
        return Vec::new();
    };
    let mut lines = policy.deny.clone();
    if let Some(error) = &policy.error {
        // The server fails closed: a policy that cannot decide refuses.
        lines.push(format!("policy evaluation failed, so access is refused: {error}"));
    }
    lines
}

/// What a decision amounts to: `denied`, `auto-approved`,
/// `needs approval via flow X` or `default flow`.
pub fn decision_outcome(decision: &PolicyDecision) -> String {
    let outcome = PolicyOutcome::of(
        decision.error.is_some(),
        !decision.deny.is_empty(),
        decision.auto_approve,
        decision.approval_flow.as_deref(),
    );
    match outcome {
        PolicyOutcome::Denied => "denied".to_string(),
        PolicyOutcome::AutoApproved => "auto-approved".to_string(),
        PolicyOutcome::Flow(flow) => format!("needs approval via flow {flow}"),
        PolicyOutcome::RoleDefault => "default flow (the role's own approval settings apply)".to_string(),
    }
}

/// The whole decision, for `policy eval`:
///
/// ```text
/// Decision:     denied
/// Deny:         emergency access needs an incident ticket
///               prod is frozen until Monday
/// Max duration: 2h
/// Policy hash:  3fa2...
/// ```
pub fn render_decision(decision: &PolicyDecision) -> String {
    let mut rows: Vec<(&str, String)> = vec![("Decision", decision_outcome(decision))];
    for (index, message) in decision.deny.iter().enumerate() {
        rows.push((if index == 0 { "Deny" } else { "" }, message.clone()));
    }
    if let Some(error) = &decision.error {
        rows.push(("Error", error.clone()));
    }
    let cap = decision
        .max_duration_seconds
        .map_or_else(|| "none".to_string(), hallpass_core::format_duration);
    rows.push(("Max duration", cap));
    rows.push(("Policy hash", or_dash(Some(&decision.policy_hash))));
    fields(&rows)
}

/// `bob at 2026-12-01T09:00:00Z: looks fine`.
fn who_when(record: &DecisionRecord) -> String {
    format!(
        "{} at {}{}",
        record.by,
        time(&record.at),
        comment_suffix(record.comment.as_deref())
    )
}

fn comment_suffix(comment: Option<&str>) -> String {
    match comment {
        Some(comment) if !comment.is_empty() => format!(": {comment}"),
        _ => String::new(),
    }
}

/// Stage by stage, each line starting with `indent`.
pub fn render_flow(flow: &FlowProgress, indent: &str, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    for stage in &flow.stages {
        let so_far = if stage.state == StageState::Open {
            format!(", {} so far", stage.approvals.len())
        } else {
            String::new()
        };
        push_line(
            &mut out,
            indent,
            &format!(
                "stage {}: {} ({} required{so_far}; approvers: {})",
                stage.number,
                stage.state,
                stage.required,
                join_or_dash(&stage.approvers)
            ),
        );
        let detail = format!("{indent}  ");
        for approval in &stage.approvals {
            push_line(
                &mut out,
                &detail,
                &format!(
                    "approved by {} at {}{}",
                    approval.approver,
                    time(&approval.at),
                    comment_suffix(approval.comment.as_deref())
                ),
            );
        }
        if stage.state == StageState::Open && !stage.may_approve.is_empty() {
            push_line(
                &mut out,
                &detail,
                &format!("may approve: {}", stage.may_approve.join(", ")),
            );
        }
        if let Some(line) = escalation(stage, now) {
            push_line(&mut out, &detail, &line);
        }
    }
    out
}

/// `escalates to group:security at T (in 12m)` for an open stage that has not
/// escalated yet, `escalated to group:security at T` once it has.
pub fn escalation(stage: &StageProgress, now: DateTime<Utc>) -> Option<String> {
    if stage.escalate_to.is_empty() {
        return None;
    }
    let to = stage.escalate_to.join(", ");
    match (stage.escalated, stage.escalates_at.as_ref()) {
        (true, Some(at)) => Some(format!("escalated to {to} at {}", time(at))),
        (true, None) => Some(format!("escalated to {to}")),
        (false, Some(at)) if stage.state == StageState::Open => {
            Some(format!("escalates to {to} at {}", time_relative(at, now)))
        }
        (false, _) => None,
    }
}

/// `flow two-step (distinct approvers; no self-approval)`.
fn flow_heading(flow: &FlowProgress) -> String {
    let name = flow.flow.as_deref().map_or_else(
        || "the role's approval block".to_string(),
        |name| format!("flow {name}"),
    );
    let distinct = if flow.distinct_approvers {
        "distinct approvers per stage"
    } else {
        "one person may approve several stages"
    };
    let own = if flow.allow_self_approval {
        "self-approval allowed"
    } else {
        "no self-approval"
    };
    format!("{name} ({distinct}; {own})")
}

/// One extension and, while it is pending, its approval progress.
pub fn render_extension(extension: &ExtensionRecord, now: DateTime<Utc>) -> String {
    let ticket = extension
        .ticket
        .as_deref()
        .map(|ticket| format!(" (ticket {ticket})"))
        .unwrap_or_default();
    let mut out = String::new();
    push_line(
        &mut out,
        "  ",
        &format!(
            "#{} +{} {}, requested {}: {}{ticket}",
            extension.number,
            hallpass_core::format_duration(extension.by_seconds),
            extension.state,
            time(&extension.requested_at),
            extension.reason
        ),
    );
    if extension.auto_approved {
        out.push_str("    auto-approved\n");
    }
    let refusal = policy_refusal(extension.policy.as_ref());
    if refusal.is_empty() {
        if let Some(decision) = &extension.decision {
            push_line(
                &mut out,
                "    ",
                &format!("{} by {}", extension.state, who_when(decision)),
            );
        }
    } else {
        // The decision record would only repeat the policies' messages.
        out.push_str("    denied by policy:\n");
        for line in refusal {
            push_line(&mut out, "      ", &line);
        }
    }
    match &extension.approval {
        Some(flow) if extension.state == ExtensionState::Pending => {
            push_line(&mut out, "    ", &format!("approval: {}", flow_heading(flow)));
            out.push_str(&render_flow(flow, "      ", now));
        }
        Some(flow) => {
            // Once decided, who approved is what matters, not the stages.
            let approvals: Vec<String> = flow
                .stages
                .iter()
                .flat_map(|stage| {
                    stage
                        .approvals
                        .iter()
                        .map(move |a| format!("{} (stage {})", a.approver, stage.number))
                })
                .collect();
            if !approvals.is_empty() {
                push_line(&mut out, "    ", &format!("approved by {}", approvals.join(", ")));
            }
        }
        None => {}
    }
    out
}

/// `open since T` or `acknowledged by X at T: comment`.
fn review_state(request: &AccessRequest, now: DateTime<Utc>) -> Option<String> {
    let review = request.review.as_ref()?;
    Some(match &review.acknowledged {
        Some(ack) => format!("acknowledged by {}", who_when(ack)),
        None => format!("{} since {}", review.state, time_relative(&review.opened_at, now)),
    })
}

/// Every field of a request, for `show`.
pub fn render_detail(r: &AccessRequest, now: DateTime<Utc>) -> String {
    let mut rows = summary_rows(r, now);
    if r.approval.is_none() {
        // Without stage detail the flat fields are all there is.
        rows.extend(flat_approval_rows(r));
    }
    rows.extend(outcome_rows(r, now));
    let mut out = fields(&rows);
    push_approvals(&mut out, r, now);
    if !r.extensions.is_empty() {
        out.push_str("extensions:\n");
        for extension in &r.extensions {
            out.push_str(&render_extension(extension, now));
        }
    }
    push_plan(&mut out, r.plan.as_ref());
    push_credential(&mut out, r.credential.as_ref());
    out
}

/// The Terraform plan approvers decide on: its digest, then each action's
/// resources, one per line (a plan can change many).
fn push_plan(out: &mut String, plan: Option<&hallpass_api::TerraformPlan>) {
    let Some(plan) = plan else {
        return;
    };
    push_line(
        out,
        "",
        &format!("terraform plan: {} ({})", plan.sha256, plan.summary()),
    );
    for (action, addresses) in plan.actions() {
        for address in addresses {
            push_line(out, "  ", &format!("{action}: {address}"));
        }
    }
}

type Rows = Vec<(&'static str, String)>;

/// Who asked for what, why, and the request's timeline.
fn summary_rows(r: &AccessRequest, now: DateTime<Utc>) -> Rows {
    let mut rows = vec![
        ("id", r.id.clone()),
        ("role", r.role.clone()),
        ("target", r.target.clone()),
        ("requester", r.requester.clone()),
        ("state", r.state.to_string()),
    ];
    if r.emergency {
        rows.push((
            "emergency",
            "yes (break-glass: granted at once, reviewed afterwards)".to_string(),
        ));
    }
    if let Some(review) = review_state(r, now) {
        rows.push(("review", review));
    }
    rows.extend([
        ("duration", hallpass_core::format_duration(r.duration_seconds)),
        ("reason", r.reason.clone()),
        ("ticket", or_dash(r.ticket.as_deref())),
        ("created", time(&r.created_at)),
        ("updated", time(&r.updated_at)),
    ]);
    if let Some(start) = &r.scheduled_start {
        rows.push(("starts", time_relative(start, now)));
    }
    if r.state == RequestState::Pending
        && let Some(deadline) = &r.pending_expires_at
    {
        rows.push(("times out", time_relative(deadline, now)));
    }
    rows.extend([
        ("activated", opt_time(r.activated_at.as_ref())),
        ("expires", opt_time_relative(r.expires_at.as_ref(), now)),
        ("ended", opt_time(r.ended_at.as_ref())),
        ("auto approved", yes_no(r.auto_approved)),
    ]);
    rows
}

/// Approvers, approvals so far and who is still needed, for a request
/// without stage detail.
fn flat_approval_rows(r: &AccessRequest) -> Rows {
    let missing = (r.required_approvals as usize).saturating_sub(r.approvals.len());
    let still_needed = if r.state == RequestState::Pending && missing > 0 {
        format!("{missing} more from {}", join_or_dash(&r.approvers))
    } else {
        "-".to_string()
    };
    vec![
        ("approvers", join_or_dash(&r.approvers)),
        ("approvals", format!("{}/{}", r.approvals.len(), r.required_approvals)),
        ("still needed", still_needed),
    ]
}

/// How the request was decided and ended: the decision, the policies'
/// verdict, failed revocations, and the record's version.
fn outcome_rows(r: &AccessRequest, now: DateTime<Utc>) -> Rows {
    let mut rows = vec![
        (
            "decision",
            r.decision.as_ref().map_or_else(|| "-".to_string(), who_when),
        ),
        (
            "ended by",
            r.ended_by.as_ref().map_or_else(|| "-".to_string(), who_when),
        ),
    ];
    if let Some(policy) = &r.policy {
        rows.push((
            "policy",
            format!(
                "{} (policy set {})",
                decision_outcome(policy),
                short_hash(&policy.policy_hash)
            ),
        ));
        if let Some(cap) = policy.max_duration_seconds {
            rows.push(("policy max", hallpass_core::format_duration(cap)));
        }
    }
    if r.revoke_error.is_some() || r.revoke_attempts > 0 {
        rows.push(("revoke error", or_dash(r.revoke_error.as_deref())));
        rows.push(("revoke attempts", r.revoke_attempts.to_string()));
        rows.push(("next revoke", opt_time_relative(r.next_revoke_at.as_ref(), now)));
    }
    rows.push(("version", r.version.to_string()));
    rows
}

/// The policies' refusal, then the approval flow stage by stage, or the
/// flat list of approvals when there is no stage detail.
fn push_approvals(out: &mut String, r: &AccessRequest, now: DateTime<Utc>) {
    let refusal = policy_refusal(r.policy.as_ref());
    if !refusal.is_empty() {
        out.push_str("denied by policy:\n");
        for line in refusal {
            push_line(out, "  ", &line);
        }
    }
    match &r.approval {
        Some(flow) => {
            push_line(out, "", &format!("approval: {}", flow_heading(flow)));
            out.push_str(&render_flow(flow, "  ", now));
        }
        None if !r.approvals.is_empty() => {
            out.push_str("approved by:\n");
            for a in &r.approvals {
                let comment = comment_suffix(a.comment.as_deref());
                push_line(out, "  ", &format!("{} at {}{comment}", a.approver, time(&a.at)));
            }
        }
        None => {}
    }
}

/// The credential's fields one per line (strings unquoted), or on one line
/// when it is not an object.
fn push_credential(out: &mut String, credential: Option<&serde_json::Value>) {
    match credential {
        Some(serde_json::Value::Object(map)) if !map.is_empty() => {
            out.push_str("credential:\n");
            for (key, value) in map {
                let value = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                push_line(out, "  ", &format!("{key}: {value}"));
            }
        }
        Some(serde_json::Value::Null) | None => {}
        Some(other) => push_line(out, "", &format!("credential: {other}")),
    }
}

/// The FLAGS cell of the request tables: `emergency`, `review open`,
/// `starts in 3h`, `extension pending`; `-` when none apply.
pub fn flags(r: &AccessRequest, now: DateTime<Utc>) -> String {
    let mut flags = Vec::new();
    if r.emergency {
        flags.push("emergency".to_string());
    }
    if r.review
        .as_ref()
        .is_some_and(|review| review.state == ReviewState::Open)
    {
        flags.push("review open".to_string());
    }
    if let Some(start) = r.scheduled_start
        && matches!(
            r.state,
            RequestState::Pending | RequestState::Approved | RequestState::Scheduled
        )
    {
        flags.push(format!("starts {}", crate::output::relative(start, now)));
    }
    if r.extensions.last().is_some_and(|e| e.state == ExtensionState::Pending) {
        flags.push("extension pending".to_string());
    }
    if flags.is_empty() {
        "-".to_string()
    } else {
        flags.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::fixtures::{active, minutes, now, request, two_stage_flow};
    use hallpass_api::{DecisionRecord, ReviewRecord};

    fn decision() -> PolicyDecision {
        PolicyDecision {
            policy_hash: "3fa2c1d0e9ab77aa".into(),
            ..PolicyDecision::default()
        }
    }

    /// Extension #1, +30m asked a minute ago, waiting on the two-stage flow.
    fn pending_extension(reason: &str) -> ExtensionRecord {
        ExtensionRecord {
            number: 1,
            by_seconds: 1800,
            reason: reason.into(),
            ticket: None,
            requested_at: now() - minutes(1),
            state: ExtensionState::Pending,
            auto_approved: false,
            approval: Some(two_stage_flow()),
            decision: None,
            policy: None,
        }
    }

    #[test]
    fn decisions_read_as_one_outcome() {
        let mut d = decision();
        assert_eq!(
            decision_outcome(&d),
            "default flow (the role's own approval settings apply)"
        );
        d.approval_flow = Some("two-step".into());
        assert_eq!(decision_outcome(&d), "needs approval via flow two-step");
        d.auto_approve = true;
        assert_eq!(decision_outcome(&d), "auto-approved");
        d.deny = vec!["prod is frozen".into()];
        assert_eq!(decision_outcome(&d), "denied");
        let failed = PolicyDecision {
            error: Some("boom".into()),
            ..decision()
        };
        assert_eq!(decision_outcome(&failed), "denied");
    }

    #[test]
    fn a_denial_lists_every_message_verbatim() {
        let d = PolicyDecision {
            deny: vec![
                "emergency access needs an incident ticket".into(),
                "prod is frozen until Monday".into(),
            ],
            max_duration_seconds: Some(7200),
            ..decision()
        };
        assert_eq!(
            render_decision(&d),
            "Decision:     denied\n\
             Deny:         emergency access needs an incident ticket\n\
             \x20             prod is frozen until Monday\n\
             Max duration: 2h\n\
             Policy hash:  3fa2c1d0e9ab77aa\n"
        );
        let allowed = PolicyDecision {
            auto_approve: true,
            ..decision()
        };
        assert_eq!(
            render_decision(&allowed),
            "Decision:     auto-approved\nMax duration: none\nPolicy hash:  3fa2c1d0e9ab77aa\n"
        );
        let failed = PolicyDecision {
            error: Some("undefined function".into()),
            ..decision()
        };
        assert!(render_decision(&failed).contains("\nError:        undefined function\n"));
        assert_eq!(
            policy_refusal(Some(&failed)),
            ["policy evaluation failed, so access is refused: undefined function"]
        );
        assert!(policy_refusal(Some(&decision())).is_empty());
        assert!(policy_refusal(None).is_empty());
    }

    #[test]
    fn flow_status_names_the_open_stage() {
        let mut flow = two_stage_flow();
        assert_eq!(
            flow_status(&flow),
            "stage 2/2: 1/2 approvals (may approve: group:security)"
        );
        flow.stages[1].escalated = true;
        flow.stages[1].may_approve.push("group:ciso".into());
        assert_eq!(
            flow_status(&flow),
            "stage 2/2: 1/2 approvals (may approve: group:security, group:ciso), escalated"
        );
        flow.stages[1].state = StageState::Approved;
        assert_eq!(flow_status(&flow), "2/2 stages approved");
    }

    #[test]
    fn stages_show_approvals_who_may_approve_and_escalation() {
        let flow = two_stage_flow();
        assert_eq!(
            render_flow(&flow, "  ", now()),
            "  stage 1: approved (1 required; approvers: group:dev-leads)\n\
             \x20   approved by bob at 2026-12-01T08:56:00Z: ok\n\
             \x20 stage 2: open (2 required, 1 so far; approvers: group:security)\n\
             \x20   approved by carol at 2026-12-01T08:58:00Z\n\
             \x20   may approve: group:security\n\
             \x20   escalates to group:ciso at 2026-12-01T09:15:00Z (in 15m)\n"
        );
        let mut escalated = flow.stages[1].clone();
        escalated.escalated = true;
        assert_eq!(
            escalation(&escalated, now()).as_deref(),
            Some("escalated to group:ciso at 2026-12-01T09:15:00Z")
        );
        // A stage that is not open yet does not escalate on a clock.
        let mut waiting = flow.stages[1].clone();
        waiting.state = StageState::Waiting;
        assert_eq!(escalation(&waiting, now()), None);
        assert_eq!(escalation(&flow.stages[0], now()), None);
    }

    #[test]
    fn show_has_flow_policy_emergency_review_schedule_and_extensions() {
        let mut r = request();
        r.approval = Some(two_stage_flow());
        r.emergency = true;
        r.scheduled_start = Some(now() + minutes(180));
        r.pending_expires_at = Some(now() + minutes(60 * 23));
        r.policy = Some(PolicyDecision {
            approval_flow: Some("two-step".into()),
            max_duration_seconds: Some(3600),
            ..decision()
        });
        r.review = Some(ReviewRecord {
            state: ReviewState::Open,
            opened_at: now() - minutes(5),
            acknowledged: None,
        });
        let text = render_detail(&r, now());
        for line in [
            "emergency:     yes (break-glass: granted at once, reviewed afterwards)\n",
            "review:        open since 2026-12-01T08:55:00Z (5m ago)\n",
            "starts:        2026-12-01T12:00:00Z (in 3h)\n",
            "times out:     2026-12-02T08:00:00Z (in 23h)\n",
            "policy:        needs approval via flow two-step (policy set 3fa2c1d0e9ab)\n",
            "policy max:    1h\n",
            "approval: flow two-step (distinct approvers per stage; no self-approval)\n",
            "  stage 2: open (2 required, 1 so far; approvers: group:security)\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // With stage detail, the flat approval fields would only repeat it.
        assert!(!text.contains("still needed"), "{text}");

        let mut g = active();
        g.extensions.push(ExtensionRecord {
            ticket: Some("INC-7".into()),
            ..pending_extension("still failing over")
        });
        let text = render_detail(&g, now());
        assert!(
            text.contains(
                "extensions:\n  #1 +30m pending, requested 2026-12-01T08:59:00Z: still failing over (ticket INC-7)\n    approval: flow two-step"
            ),
            "{text}"
        );
        assert!(text.contains("\n      stage 2: open (2 required, 1 so far"), "{text}");
        assert_eq!(flags(&g, now()), "extension pending");
    }

    #[test]
    fn a_policy_denial_is_listed_under_the_fields() {
        let mut r = request();
        r.state = RequestState::Denied;
        r.policy = Some(PolicyDecision {
            deny: vec!["needs a ticket".into()],
            ..decision()
        });
        let text = render_detail(&r, now());
        assert!(
            text.contains("policy:        denied (policy set 3fa2c1d0e9ab)\n"),
            "{text}"
        );
        assert!(text.contains("denied by policy:\n  needs a ticket\n"), "{text}");
    }

    /// No character a terminal would act on survives, line breaks aside.
    fn assert_inert(text: &str) {
        let escaped = crate::output::escape_source(text);
        assert_eq!(escaped, text, "unescaped control characters in\n{text}");
        assert!(!text.contains('\t') && !text.contains('\r'), "{text}");
    }

    #[test]
    fn show_prints_server_text_escaped_and_each_record_on_its_own_line() {
        let forged = "fix\r\x1b[2Kapproved by security\0";
        let mut r = active();
        r.reason = forged.into();
        r.ticket = Some("INC-1\u{202e}".into());
        r.approvals = vec![hallpass_api::ApprovalRecord {
            approver: "bob".into(),
            comment: Some("ok\n  mallory at 2026-12-01T08:59:00Z: fine".into()),
            at: now() - minutes(4),
        }];
        r.extensions
            .push(pending_extension("more\n    approved by group:security\x07"));
        r.revoke_error = Some("target said \x1b]0;pwned\x07".into());
        r.credential = Some(serde_json::json!({"user\u{9b}": "x\ty"}));
        let text = render_detail(&r, now());
        assert_inert(&text);
        for line in [
            "reason:          fix\\r\\x1b[2Kapproved by security\\0\n",
            "ticket:          INC-1\\u{202e}\n",
            "approved by:\n  bob at 2026-12-01T08:56:00Z: ok\\n  mallory at 2026-12-01T08:59:00Z: fine\n",
            "  #1 +30m pending, requested 2026-12-01T08:59:00Z: more\\n    approved by group:security\\x07\n",
            "revoke error:    target said \\x1b]0;pwned\\x07\n",
            "credential:\n  user\\u{9b}: x\\ty\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_multi_line_policy_denial_continues_indented() {
        let mut r = request();
        r.state = RequestState::Denied;
        r.decision = Some(DecisionRecord {
            by: "policy".into(),
            comment: Some("needs a ticket\nprod is frozen\x1b[0m".into()),
            at: now(),
        });
        r.policy = Some(PolicyDecision {
            deny: vec!["needs a ticket".into(), "prod is frozen\nstate: approved".into()],
            ..decision()
        });
        let text = render_detail(&r, now());
        assert_inert(&text);
        assert!(
            text.contains(
                "decision:      policy at 2026-12-01T09:00:00Z: needs a ticket\n\
                 \x20                prod is frozen\\x1b[0m\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("denied by policy:\n  needs a ticket\n  prod is frozen\\nstate: approved\n"),
            "{text}"
        );
        assert_eq!(
            render_decision(r.policy.as_ref().unwrap()),
            "Decision:     denied\n\
             Deny:         needs a ticket\n\
             \x20             prod is frozen\n\
             \x20               state: approved\n\
             Max duration: none\n\
             Policy hash:  3fa2c1d0e9ab77aa\n"
        );
    }

    #[test]
    fn flags_mark_break_glass_and_scheduled_requests() {
        let mut r = request();
        assert_eq!(flags(&r, now()), "-");
        r.emergency = true;
        r.review = Some(ReviewRecord {
            state: ReviewState::Open,
            opened_at: now(),
            acknowledged: None,
        });
        r.state = RequestState::Scheduled;
        r.scheduled_start = Some(now() + minutes(90));
        assert_eq!(flags(&r, now()), "emergency, review open, starts in 1h30m");
    }
}
