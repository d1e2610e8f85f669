//! Block Kit messages: a notification as Slack shows it (a header by topic,
//! the request's fields, its reason and Terraform plan, mentions of the
//! audience, a link, and Approve / Deny buttons when a decision is asked
//! for), and the messages that replace it after a click.
//!
//! Every value a person typed or named (reasons, tickets, names, plan
//! addresses, comments) is escaped for Slack's mrkdwn (`&`, `<`, `>`), so
//! `<!channel>` or `<https://evil|click>` in a reason shows as text and
//! pings nobody; text objects are `verbatim`, so Slack does not turn bare
//! names or URLs into links either. Only Hallpass itself writes `<...>`:
//! mentions of ids `recipients` names, dates, and the request's link.
//! Texts are cut to Slack's limits (a section's text: 3000 characters).

use chrono::{DateTime, Utc};
use hallpass_api::{AccessRequest, FlowProgress, Notification, NotificationTopic as Topic, RequestState, StageState};
use hallpass_core::duration::format_duration;
use serde_json::{Value, json};

use crate::Routing;

/// The longest text of a section block.
pub const MAX_SECTION_CHARS: usize = 3000;
/// The longest text of one of a section's fields.
pub const MAX_FIELD_CHARS: usize = 2000;
/// The longest text of a header block.
pub const MAX_HEADER_CHARS: usize = 150;
/// How much of a reason (or a comment, an error) is shown.
pub const MAX_REASON_SHOWN: usize = 1500;
/// The plan's resource addresses shown, at most.
const MAX_PLAN_LINES: usize = 10;
const MAX_ADDRESS_SHOWN: usize = 200;
const MAX_FALLBACK_CHARS: usize = 1000;
/// The `action_id` of the Approve button.
pub const APPROVE_ACTION: &str = "hallpass.approve";
/// The `action_id` of the Deny button.
pub const DENY_ACTION: &str = "hallpass.deny";
/// The `block_id` of the buttons' block.
pub const DECISION_BLOCK: &str = "hallpass.decision";

/// `text` with `&`, `<` and `>` escaped for mrkdwn.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Cuts `text` (already mrkdwn) to at most `max` characters, ending in `…`
/// when cut, never inside an escape (`&amp;`) or a `<...>` token.
pub fn cut(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    if let Some(open) = out.rfind(['&', '<'])
        && !out[open..].contains([';', '>'])
    {
        out.truncate(open);
    }
    out.push('…');
    out
}

/// `text` escaped and cut to `max` characters.
pub fn escape_within(text: &str, max: usize) -> String {
    cut(escape(text), max)
}

/// Whether `address` has the form of a Slack id: an upper-case letter, then
/// upper-case letters and digits.
pub fn is_slack_id(address: &str) -> bool {
    let mut chars = address.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && (2..=32).contains(&address.len())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// The mention of a Slack id: `<@U…>` for a user, `<!subteam^S…>` for a
/// user group; nothing for anything else.
pub fn mention(address: &str) -> Option<String> {
    if !is_slack_id(address) {
        return None;
    }
    match address.chars().next() {
        Some('U' | 'W') => Some(format!("<@{address}>")),
        Some('S') => Some(format!("<!subteam^{address}>")),
        _ => None,
    }
}

/// A time as Slack shows it, in the reader's time zone (UTC where the
/// client cannot).
pub fn date(at: DateTime<Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        at.timestamp(),
        at.format("%Y-%m-%d %H:%M UTC")
    )
}

/// The header of a notification of `topic`.
pub fn headline(topic: Topic) -> &'static str {
    match topic {
        Topic::RequestPending => "Access request waiting for approval",
        Topic::RequestEscalated => "Access request escalated: waiting for approval",
        Topic::RequestApproved => "Access request approved",
        Topic::RequestDenied => "Access request denied",
        Topic::RequestTimedOut => "Access request timed out",
        Topic::GrantActive => "Access granted",
        Topic::GrantExpiring => "Access ends soon",
        Topic::GrantRevoked => "Access revoked",
        Topic::SecurityBreakGlass => "Break-glass access granted",
        Topic::SecurityRevokeFailed => "Revocation failed: access may remain",
        Topic::SecurityLocked => "Principal locked",
    }
}

fn header(text: &str) -> Value {
    // plain_text: nothing in it is markup.
    let text: String = text.chars().take(MAX_HEADER_CHARS).collect();
    json!({"type": "header", "text": {"type": "plain_text", "text": text}})
}

fn mrkdwn(text: String, max: usize) -> Value {
    json!({"type": "mrkdwn", "text": cut(text, max), "verbatim": true})
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": mrkdwn(text, MAX_SECTION_CHARS)})
}

fn field(label: &str, value: String) -> Value {
    mrkdwn(format!("*{label}*\n{value}"), MAX_FIELD_CHARS)
}

fn subjects(list: &[String]) -> String {
    escape(&list.join(", "))
}

/// Where the open stage stands: which of how many, who may approve, and
/// when (or whether) it escalates.
fn stage_text(progress: &FlowProgress) -> Option<String> {
    let open = progress.stages.iter().find(|s| s.state == StageState::Open)?;
    let mut text = format!(
        "{} of {}: {} of {} approvals from {}",
        open.number,
        progress.stages.len(),
        open.approvals.len(),
        open.required,
        subjects(&open.approvers)
    );
    if !open.escalate_to.is_empty() {
        match (open.escalated, open.escalates_at) {
            (true, _) => text.push_str(&format!("; escalated: {} may approve too", subjects(&open.escalate_to))),
            (false, Some(at)) => text.push_str(&format!("; escalates to {} {}", subjects(&open.escalate_to), date(at))),
            (false, None) => {}
        }
    }
    Some(text)
}

fn request_fields(request: &AccessRequest) -> Vec<Value> {
    let mut fields = vec![
        field("Requester", escape(&request.requester)),
        field("Role", escape(&request.role)),
        field("Target", escape(&request.target)),
    ];
    let mut duration = format_duration(request.duration_seconds);
    if let Some(start) = request.scheduled_start {
        duration.push_str(&format!(", from {}", date(start)));
    }
    fields.push(field("Duration", duration));
    if let Some(ticket) = &request.ticket {
        fields.push(field("Ticket", escape_within(ticket, 200)));
    }
    if request.state == RequestState::Pending
        && let Some(stage) = request.approval.as_ref().and_then(stage_text)
    {
        fields.push(field("Stage", stage));
    }
    if let Some(expires_at) = request.expires_at.filter(|_| request.state.holds_access()) {
        fields.push(field("Until", date(expires_at)));
    }
    if request.emergency {
        fields.push(field("Break-glass", "yes: granted at once, reviewed afterwards".into()));
    }
    fields.push(field("State", request.state.to_string()));
    fields
}

fn plan_text(request: &AccessRequest) -> Option<String> {
    let plan = request.plan.as_ref()?;
    let mut text = format!(
        "*Terraform plan* `{}`: {} to create, {} to change, {} to replace, {} to destroy",
        escape(plan.sha256.get(..12).unwrap_or(&plan.sha256)),
        plan.create.len(),
        plan.update.len(),
        plan.replace.len(),
        plan.delete.len()
    );
    let lines: Vec<(&str, &String)> = [
        ("+", &plan.create),
        ("~", &plan.update),
        ("-/+", &plan.replace),
        ("-", &plan.delete),
    ]
    .into_iter()
    .flat_map(|(sign, addresses)| addresses.iter().map(move |address| (sign, address)))
    .collect();
    for (sign, address) in lines.iter().take(MAX_PLAN_LINES) {
        text.push_str(&format!("\n{sign} {}", escape_within(address, MAX_ADDRESS_SHOWN)));
    }
    if lines.len() > MAX_PLAN_LINES {
        text.push_str(&format!("\n… and {} more", lines.len() - MAX_PLAN_LINES));
    }
    Some(text)
}

/// The request as blocks: its fields, reason, plan.
pub fn request_blocks(request: &AccessRequest) -> Vec<Value> {
    let mut blocks = vec![json!({"type": "section", "fields": request_fields(request)})];
    blocks.push(section(format!(
        "*Reason*\n{}",
        escape_within(&request.reason, MAX_REASON_SHOWN)
    )));
    blocks.extend(plan_text(request).map(section));
    blocks
}

/// The Approve / Deny buttons for request `id`.
pub fn decision_buttons(id: &str) -> Value {
    json!({
        "type": "actions",
        "block_id": DECISION_BLOCK,
        "elements": [
            {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": id,
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": DENY_ACTION, "style": "danger", "value": id,
             "text": {"type": "plain_text", "text": "Deny"},
             "confirm": {"title": {"type": "plain_text", "text": "Deny this request?"},
                         "text": {"type": "plain_text", "text": "The requester is told it was denied."},
                         "confirm": {"type": "plain_text", "text": "Deny"},
                         "deny": {"type": "plain_text", "text": "Cancel"}}}
        ]
    })
}

/// The link to the request (when the server knows its public URL) and its id.
fn link_block(notification: &Notification, request: Option<&AccessRequest>) -> Option<Value> {
    let id = request.map(|r| escape(&r.id));
    let text = match (&notification.links.request, id) {
        // A URL with `|` would end the link early; the server's own URL
        // has none, but it is not shown as a link if it does.
        (Some(url), Some(id)) if !url.contains('|') => format!("<{}|Request {id}>", escape(url)),
        (_, Some(id)) => format!("Request {id}"),
        _ => return None,
    };
    Some(json!({"type": "context", "elements": [mrkdwn(text, MAX_FIELD_CHARS)]}))
}

/// One line on what happened, by topic.
fn lead(notification: &Notification) -> String {
    let actor = escape(&notification.actor);
    let Some(request) = &notification.request else {
        return headline(notification.topic).to_string();
    };
    let (who, role, target) = (
        escape(&request.requester),
        escape(&request.role),
        escape(&request.target),
    );
    let duration = format_duration(request.duration_seconds);
    match notification.topic {
        Topic::RequestPending | Topic::RequestEscalated => {
            format!("*{who}* asks for *{role}* on *{target}* for {duration}")
        }
        Topic::RequestApproved => format!("*{who}*'s request for *{role}* was approved by *{actor}*"),
        Topic::RequestDenied => format!("*{who}*'s request for *{role}* was denied by *{actor}*"),
        Topic::RequestTimedOut => format!("Nobody decided on *{who}*'s request for *{role}* in time"),
        Topic::GrantActive => format!("*{who}* now holds *{role}* on *{target}*"),
        Topic::GrantExpiring => match request.expires_at {
            Some(at) => format!("*{who}*'s access to *{role}* ends {}", date(at)),
            None => format!("*{who}*'s access to *{role}* ends soon"),
        },
        Topic::GrantRevoked => format!("*{who}*'s access to *{role}* was revoked by *{actor}*"),
        Topic::SecurityBreakGlass => format!("*{who}* used break-glass access to *{role}* on *{target}*"),
        Topic::SecurityRevokeFailed => {
            format!("The grant of *{role}* to *{who}* could not be revoked on *{target}*; Hallpass keeps retrying")
        }
        Topic::SecurityLocked => headline(notification.topic).to_string(),
    }
}

fn detail_label(topic: Topic) -> &'static str {
    match topic {
        Topic::SecurityRevokeFailed => "Error",
        Topic::SecurityLocked => "What happened",
        Topic::SecurityBreakGlass => "Reason given",
        _ => "Comment",
    }
}

/// The message for `notification`: the body of `chat.postMessage` (less
/// its `channel`) or of an incoming webhook. `buttons`: whether Approve /
/// Deny may be shown (the notifier can check the clicks).
pub fn notification_message(notification: &Notification, routing: &Routing, buttons: bool) -> Value {
    let title = headline(notification.topic);
    let mentions: Vec<String> = routing
        .addresses(&notification.audience)
        .iter()
        .filter_map(|address| mention(address))
        .collect();
    let lead = lead(notification);
    let mut blocks = vec![header(title)];
    blocks.push(section(if mentions.is_empty() {
        lead.clone()
    } else {
        format!("{} {lead}", mentions.join(" "))
    }));
    let request = notification.request.as_ref();
    if let Some(request) = request {
        blocks.extend(request_blocks(request));
    }
    if let Some(detail) = &notification.detail {
        blocks.push(section(format!(
            "*{}*\n{}",
            detail_label(notification.topic),
            escape_within(detail, MAX_REASON_SHOWN)
        )));
    }
    blocks.extend(link_block(notification, request));
    if let Some(request) = request
        && buttons
        && notification.topic.asks_for_decision()
        && request.state == RequestState::Pending
    {
        blocks.push(decision_buttons(&request.id));
    }
    json!({
        "text": cut(format!("{title}: {lead}"), MAX_FALLBACK_CHARS),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

/// What a click decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    /// The decision a button's `action_id` stands for.
    pub fn of_action(action_id: &str) -> Option<Decision> {
        match action_id {
            APPROVE_ACTION => Some(Decision::Approve),
            DENY_ACTION => Some(Decision::Deny),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }
}

/// What replaces the message after `decider`'s click took effect: the
/// request as it is now, and the buttons again while it still waits for
/// approvals (`buttons`).
pub fn decided_message(request: &AccessRequest, decider: &str, decision: Decision, buttons: bool) -> Value {
    let decider = escape(decider);
    let (title, lead) = match (decision, request.state) {
        (Decision::Deny, _) => ("Access request denied", format!("Denied by *{decider}* in Slack")),
        (Decision::Approve, RequestState::Pending) => (
            "Access request waiting for approval",
            format!("Approved by *{decider}* in Slack; more approvals are needed"),
        ),
        (Decision::Approve, _) => ("Access request approved", format!("Approved by *{decider}* in Slack")),
    };
    let mut blocks = vec![header(title), section(lead.clone())];
    blocks.extend(request_blocks(request));
    blocks.push(
        json!({"type": "context", "elements": [mrkdwn(format!("Request {}", escape(&request.id)), MAX_FIELD_CHARS)]}),
    );
    if buttons && request.state == RequestState::Pending {
        blocks.push(decision_buttons(&request.id));
    }
    json!({
        "replace_original": true,
        "text": cut(format!("{title}: {lead}"), MAX_FALLBACK_CHARS),
        "blocks": blocks,
    })
}

/// A message only the person who clicked sees, leaving the original (and
/// its buttons, for the other approvers) as it is: why nothing happened.
pub fn refusal_message(text: &str) -> Value {
    json!({
        "response_type": "ephemeral",
        "replace_original": false,
        "text": format!("Hallpass did not act on your click: {}", escape_within(text, MAX_SECTION_CHARS - 40)),
    })
}
