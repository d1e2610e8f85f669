//! The email itself: a subject by topic, and a text and an HTML part
//! (`multipart/alternative`) saying the same — who asks for what, why and
//! for how long, the open stage and its approvers, a break-glass marker,
//! the Terraform plan, the comment, and the link to the request.
//!
//! Every value a person typed (reason, comment, names, plan addresses) is
//! HTML-escaped in the HTML part, and control characters never reach a
//! header: the subject has them replaced, and lettre encodes the rest.

use chrono::{DateTime, Utc};
use hallpass_api::{AccessRequest, Notification, NotificationTopic as Topic, StageState};
use hallpass_core::duration::format_duration;
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};

use crate::NotifyError;

/// The header carrying the notification's id (also in `Message-ID`).
pub const ID_HEADER: &str = "X-Hallpass-Notification-Id";
/// The longest subject, in characters, before it is cut.
const MAX_SUBJECT_CHARS: usize = 200;
/// Plan addresses listed before "and N more".
const MAX_PLAN_ADDRESSES: usize = 20;

/// `text` with control characters (line breaks included) as spaces, for
/// one-line places.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `text` without control characters other than line breaks and tabs.
fn plain(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// `text` safe inside HTML elements and quoted attributes.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in plain(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The subject: `[Hallpass] ` and what happened, on one line.
pub fn subject(notification: &Notification) -> String {
    let about = match &notification.request {
        Some(r) => {
            let (who, role) = (&r.requester, &r.role);
            match notification.topic {
                Topic::RequestPending => format!("{who} asks for {role}"),
                Topic::RequestEscalated => format!("Escalated: {who} asks for {role}"),
                Topic::RequestApproved => format!("Approved: {role} for {who}"),
                Topic::RequestDenied => format!("Denied: {role} for {who}"),
                Topic::RequestTimedOut => format!("Timed out: {role} for {who}"),
                Topic::GrantActive => format!("Active: {role} for {who}"),
                Topic::GrantExpiring => format!("Ending soon: {role} for {who}"),
                Topic::GrantRevoked => format!("Revoked: {role} for {who}"),
                Topic::SecurityBreakGlass => format!("BREAK-GLASS: {who} took {role}"),
                Topic::SecurityRevokeFailed => format!("Revoke failed: {role} for {who}"),
                Topic::SecurityLocked => format!("Locked: {who}"),
            }
        }
        None => match (notification.topic, &notification.detail) {
            (Topic::SecurityLocked, Some(detail)) => detail.clone(),
            (topic, _) => topic.as_str().to_string(),
        },
    };
    let line = one_line(&format!("[Hallpass] {about}"));
    if line.chars().count() > MAX_SUBJECT_CHARS {
        let cut: String = line.chars().take(MAX_SUBJECT_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        line
    }
}

/// The first sentence of the body.
fn headline(notification: &Notification) -> String {
    let by = &notification.actor;
    let Some(r) = &notification.request else {
        return match &notification.detail {
            Some(detail) => detail.clone(),
            None => format!("{} (by {by})", notification.topic.as_str()),
        };
    };
    let (who, role) = (&r.requester, &r.role);
    let until = r.expires_at.map(when).unwrap_or_else(|| "its end".into());
    match notification.topic {
        Topic::RequestPending => format!(
            "{who} asks for {role} for {} and waits for approval.",
            format_duration(r.duration_seconds)
        ),
        Topic::RequestEscalated => format!("{who}'s request for {role} waited too long and is escalated to you."),
        Topic::RequestApproved => format!("{who}'s request for {role} was approved by {by}."),
        Topic::RequestDenied => format!("{who}'s request for {role} was denied by {by}."),
        Topic::RequestTimedOut => format!("{who}'s request for {role} timed out: nobody decided in time."),
        Topic::GrantActive => format!("{who}'s access to {role} is active until {until}."),
        Topic::GrantExpiring => format!("{who}'s access to {role} ends at {until}; extend it if it is still needed."),
        Topic::GrantRevoked => format!("{who}'s access to {role} was ended by {by}."),
        Topic::SecurityBreakGlass => format!("{who} took {role} by break-glass, without approval."),
        Topic::SecurityRevokeFailed => {
            format!("Hallpass could not revoke {who}'s access to {role}; it keeps trying.")
        }
        Topic::SecurityLocked => format!("{who} was locked."),
    }
}

fn when(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// What the detail of a notification is, by topic.
fn detail_label(topic: Topic) -> &'static str {
    match topic {
        Topic::RequestApproved | Topic::RequestDenied => "Comment",
        Topic::GrantRevoked => "Why",
        Topic::SecurityRevokeFailed => "Error",
        _ => "Detail",
    }
}

/// The open stage and who may approve it, and the approvals so far.
fn approval_rows(r: &AccessRequest, rows: &mut Vec<(&'static str, String)>) {
    if let Some(flow) = &r.approval {
        let total = flow.stages.len();
        if let Some(stage) = flow.stages.iter().find(|s| s.state == StageState::Open) {
            let named = flow.flow.as_ref().map(|f| format!(" of flow {f}")).unwrap_or_default();
            rows.push((
                "Stage",
                format!(
                    "{} of {total}{named}: {} of {} approvals",
                    stage.number,
                    stage.approvals.len(),
                    stage.required
                ),
            ));
            let who = if stage.may_approve.is_empty() {
                &stage.approvers
            } else {
                &stage.may_approve
            };
            rows.push(("Approvers", who.join(", ")));
        }
    } else if !r.approvers.is_empty() && r.state == hallpass_api::RequestState::Pending {
        rows.push(("Approvers", r.approvers.join(", ")));
    }
    if !r.approvals.is_empty() {
        let given: Vec<String> = r
            .approvals
            .iter()
            .map(|a| match &a.comment {
                Some(comment) => format!("{} ({comment})", a.approver),
                None => a.approver.clone(),
            })
            .collect();
        rows.push(("Approved by", given.join(", ")));
    }
}

/// The plan's counts, digest and (some of) its addresses.
fn plan_row(plan: &hallpass_api::TerraformPlan) -> String {
    let mut lines = vec![plan.summary(), format!("sha256 {}", plan.sha256)];
    let mut listed = 0;
    let total: usize = plan.actions().iter().map(|(_, a)| a.len()).sum();
    for (action, addresses) in plan.actions() {
        for address in addresses.iter().take(MAX_PLAN_ADDRESSES - listed) {
            lines.push(format!("{action} {address}"));
            listed += 1;
        }
    }
    if total > listed {
        lines.push(format!("and {} more", total - listed));
    }
    lines.join("\n")
}

/// The labelled facts of the request, in the order both parts show them.
fn request_rows(r: &AccessRequest) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("Requester", r.requester.clone()),
        ("Role", format!("{} (target {})", r.role, r.target)),
    ];
    let mut duration = format_duration(r.duration_seconds);
    if let Some(asked) = r.capped_from_seconds {
        duration.push_str(&format!(" (asked for {}, capped)", format_duration(asked)));
    }
    rows.push(("Duration", duration));
    rows.push(("Reason", r.reason.clone()));
    if let Some(ticket) = &r.ticket {
        rows.push(("Ticket", ticket.clone()));
    }
    rows.push(("State", r.state.as_str().to_string()));
    approval_rows(r, &mut rows);
    if let Some(start) = r.scheduled_start {
        rows.push(("Starts", when(start)));
    }
    if let Some(end) = r.expires_at {
        rows.push(("Ends", when(end)));
    }
    if let Some(plan) = &r.plan {
        rows.push(("Terraform plan", plan_row(plan)));
    }
    rows.push(("Request", r.id.clone()));
    rows
}

/// What both parts say.
pub struct Content {
    pub headline: String,
    pub break_glass: bool,
    pub rows: Vec<(&'static str, String)>,
    /// `links.request`, when it is an http(s) URL.
    pub link: Option<String>,
}

pub fn content(notification: &Notification) -> Content {
    let mut rows = notification.request.as_ref().map(request_rows).unwrap_or_default();
    let shown_as_headline = notification.request.is_none();
    if let Some(detail) = &notification.detail
        && !shown_as_headline
        && notification.request.as_ref().is_none_or(|r| r.reason != *detail)
    {
        rows.push((detail_label(notification.topic), detail.clone()));
    }
    if notification.actor != "system" && !matches!(notification.topic, Topic::RequestPending) {
        rows.push(("By", notification.actor.clone()));
    }
    rows.push(("Time", when(notification.time)));
    Content {
        headline: headline(notification),
        break_glass: notification.topic == Topic::SecurityBreakGlass
            || notification.request.as_ref().is_some_and(|r| r.emergency),
        rows,
        link: notification
            .links
            .request
            .clone()
            .filter(|url| url.starts_with("https://") || url.starts_with("http://")),
    }
}

const BREAK_GLASS: &str = "BREAK-GLASS: access taken without approval; it is reviewed afterwards.";

/// The text part.
pub fn text_body(content: &Content) -> String {
    let mut out = format!("{}\n\n", plain(&content.headline));
    if content.break_glass {
        out.push_str(&format!("*** {BREAK_GLASS} ***\n\n"));
    }
    let width = content.rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    for (label, value) in &content.rows {
        let value = plain(value).replace('\n', &format!("\n{:width$}  ", ""));
        out.push_str(&format!("{label:width$}  {value}\n"));
    }
    if let Some(link) = &content.link {
        out.push_str(&format!("\nThe request: {}\n", one_line(link)));
    }
    out.push_str("\n-- \nSent by Hallpass.\n");
    out
}

/// The HTML part; every value escaped.
pub fn html_body(content: &Content) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n\
         <body style=\"font-family: sans-serif; font-size: 14px;\">\n",
    );
    out.push_str(&format!("<p><strong>{}</strong></p>\n", escape_html(&content.headline)));
    if content.break_glass {
        out.push_str(&format!(
            "<p style=\"background: #b00020; color: #fff; padding: 6px;\"><strong>{}</strong></p>\n",
            escape_html(BREAK_GLASS)
        ));
    }
    out.push_str("<table cellpadding=\"4\" style=\"border-collapse: collapse;\">\n");
    for (label, value) in &content.rows {
        out.push_str(&format!(
            "<tr><th align=\"left\" valign=\"top\">{}</th><td style=\"white-space: pre-wrap;\">{}</td></tr>\n",
            escape_html(label),
            escape_html(value)
        ));
    }
    out.push_str("</table>\n");
    if let Some(link) = &content.link {
        let link = escape_html(link);
        out.push_str(&format!("<p><a href=\"{link}\">Open the request</a> ({link})</p>\n"));
    }
    out.push_str("<p style=\"color: #666;\">Sent by Hallpass.</p>\n</body></html>\n");
    out
}

/// The `Message-ID` for the notification `id`: `<ID@hallpass>`.
fn message_id(id: &str) -> Result<String, NotifyError> {
    let usable = !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !usable {
        return Err(NotifyError::Failed(format!(
            "the notification id {id:?} cannot be a Message-ID"
        )));
    }
    Ok(format!("<{id}@hallpass>"))
}

/// The whole message from `from` to `to`.
pub fn build_message(from: &Mailbox, to: &[Mailbox], notification: &Notification) -> Result<Message, NotifyError> {
    let content = content(notification);
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(subject(notification))
        .message_id(Some(message_id(&notification.id)?))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(ID_HEADER),
            notification.id.clone(),
        ))
        // RFC 3834: no out-of-office answers to a robot.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_string(),
        ));
    for mailbox in to {
        builder = builder.to(mailbox.clone());
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            text_body(&content),
            html_body(&content),
        ))
        .map_err(|e| NotifyError::Failed(format!("cannot build the email: {e}")))
}
