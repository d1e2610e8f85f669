//! `extend ID --by 30m`: ask for more time on an active grant.
//!
//! The server answers with the grant, its new extension last in
//! `extensions`. The extension may be approved at once (policies and the
//! role allow it), denied at once (a policy refused), or pending approval;
//! `--wait` long-polls the grant until that extension is decided. An approver
//! decides it with `hallpass approve ID` / `hallpass deny ID`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use chrono::{DateTime, Utc};
use clap::Args;
use hallpass_api::{AccessRequest, ExtendBody, ExtensionRecord, ExtensionState, RequestState};
use hallpass_client::Client;
use indicatif::ProgressBar;

use super::detail::policy_refusal;
use super::requests::{WAIT_POLL_SECONDS, extension_state_phrase, find_extension};
use super::{CmdResult, Ctx, EXIT_INTERRUPTED, EXIT_NO_ACCESS, ok};
use crate::output::{eprint_message, escape_controls, opt_time_relative, print_json, print_message};

#[derive(Debug, Args)]
pub struct ExtendArgs {
    /// Id of your active grant.
    pub id: String,
    /// How much longer, e.g. `30m` or `1h`.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub by: String,
    /// Why you need more time; shown to approvers and kept in the audit log.
    #[arg(long)]
    pub reason: String,
    /// Ticket or incident reference.
    #[arg(long, value_name = "ID")]
    pub ticket: Option<String>,
    /// Wait until the extension is approved (exit 0) or refused (exit 3).
    #[arg(long)]
    pub wait: bool,
}

pub async fn extend(ctx: &Ctx, args: ExtendArgs) -> CmdResult {
    let client = ctx.client()?;
    let body = ExtendBody {
        by: args.by,
        reason: args.reason,
        ticket: args.ticket,
    };
    let mut grant = client.extend(&args.id, &body).await?;
    let Some(number) = grant.extensions.last().map(|extension| extension.number) else {
        bail!(
            "the server accepted the extension of {} but returned no extension; `hallpass show {}` shows where it stands",
            args.id,
            args.id
        );
    };
    let pending = find_extension(&grant, number).is_some_and(|extension| extension.state == ExtensionState::Pending);
    if args.wait && pending {
        grant = match poll_extension(&client, grant, number).await? {
            Some(settled) => settled,
            None => return Ok(ExitCode::from(EXIT_INTERRUPTED)),
        };
    }
    let Some(extension) = find_extension(&grant, number) else {
        bail!("extension #{number} of {} vanished from the server's answer", grant.id);
    };
    if ctx.json() {
        print_json(&grant)?;
    }
    match extension.state {
        ExtensionState::Pending if grant.state != RequestState::Active => {
            eprint_message(&super::requests::ended_without_access(&grant));
            Ok(ExitCode::from(EXIT_NO_ACCESS))
        }
        ExtensionState::Approved => {
            if !ctx.json() {
                print_message(&extension_line(&grant, extension, Utc::now()));
            }
            ok()
        }
        ExtensionState::Pending => {
            if !ctx.json() {
                print_message(&extension_line(&grant, extension, Utc::now()));
                eprint_message(&format!(
                    "hint: `hallpass show {id}` follows it; an approver runs `hallpass approve {id}`",
                    id = grant.id
                ));
            }
            ok()
        }
        _ => {
            eprint_message(&extension_ended_without_access(&grant, extension));
            Ok(ExitCode::from(EXIT_NO_ACCESS))
        }
    }
}

/// `extension #2 of grant ID (ROLE, +30m) was approved; access now ends at T`.
pub fn extension_line(grant: &AccessRequest, extension: &ExtensionRecord, now: DateTime<Utc>) -> String {
    let head = format!(
        "extension #{} of grant {} ({}, +{}) {}",
        extension.number,
        grant.id,
        grant.role,
        hallpass_core::format_duration(extension.by_seconds),
        extension_state_phrase(extension)
    );
    match extension.state {
        ExtensionState::Approved => format!(
            "{head}; access now ends at {}",
            opt_time_relative(grant.expires_at.as_ref(), now)
        ),
        _ => head,
    }
}

/// Why an extension came to nothing; policy messages verbatim, one per line.
pub fn extension_ended_without_access(grant: &AccessRequest, extension: &ExtensionRecord) -> String {
    let head = format!(
        "extension #{} of grant {} ({}) was not granted",
        extension.number, grant.id, grant.role
    );
    let until = format!(
        "access still ends at {}",
        opt_time_relative(grant.expires_at.as_ref(), Utc::now())
    );
    let refusal = policy_refusal(extension.policy.as_ref());
    match extension.state {
        ExtensionState::Denied if !refusal.is_empty() => format!("{head}: denied by policy:\n{}", refusal.join("\n")),
        ExtensionState::Denied => {
            let by =
                extension
                    .decision
                    .as_ref()
                    .map_or_else(String::new, |decision| match decision.comment.as_deref() {
                        Some(comment) if !comment.is_empty() => format!(" by {}: {comment}", decision.by),
                        _ => format!(" by {}", decision.by),
                    });
            format!("{head}: denied{by}; {until}")
        }
        ExtensionState::Lapsed => format!("{head}: the grant ended before it was decided"),
        state => format!("{head}: it is {state}"),
    }
}

/// Long-polls `grant` until extension `number` is no longer pending (or the
/// grant has ended). `None` when the user pressed Ctrl-C; the message saying
/// so is printed here.
pub async fn poll_extension(
    client: &Client,
    grant: AccessRequest,
    number: u32,
) -> anyhow::Result<Option<AccessRequest>> {
    let id = grant.id.clone();
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message(escape_controls(&extension_progress(&grant, number)).into_owned());
    let settled = tokio::select! {
        settled = poll(client, grant, number, &bar) => settled,
        Ok(()) = tokio::signal::ctrl_c() => {
            bar.finish_and_clear();
            eprint_message(&format!("stopped waiting; extension #{number} of grant {id} is still pending. `hallpass show {id}` follows it."));
            return Ok(None);
        }
    };
    bar.finish_and_clear();
    settled.map(Some)
}

async fn poll(
    client: &Client,
    mut grant: AccessRequest,
    number: u32,
    bar: &ProgressBar,
) -> anyhow::Result<AccessRequest> {
    while grant.state == RequestState::Active
        && find_extension(&grant, number).is_some_and(|e| e.state == ExtensionState::Pending)
    {
        grant = client.wait_request(&grant.id, grant.version, WAIT_POLL_SECONDS).await?;
        bar.set_message(escape_controls(&extension_progress(&grant, number)).into_owned());
    }
    Ok(grant)
}

fn extension_progress(grant: &AccessRequest, number: u32) -> String {
    match find_extension(grant, number) {
        Some(extension) => format!(
            "extension #{number} of grant {} {}",
            grant.id,
            extension_state_phrase(extension)
        ),
        None => format!("extension #{number} of grant {}", grant.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::fixtures::{active, minutes, now};
    use hallpass_api::{DecisionRecord, PolicyDecision};

    fn grant_with(state: ExtensionState) -> AccessRequest {
        let mut grant = active();
        grant.expires_at = Some(now() + minutes(90));
        grant.extensions.push(ExtensionRecord {
            number: 1,
            by_seconds: 1800,
            reason: "more".into(),
            ticket: None,
            requested_at: now(),
            state,
            auto_approved: false,
            approval: None,
            decision: None,
            policy: None,
        });
        grant
    }

    #[test]
    fn an_approved_extension_gives_the_new_end() {
        let grant = grant_with(ExtensionState::Approved);
        assert_eq!(
            extension_line(&grant, &grant.extensions[0], now()),
            "extension #1 of grant r1 (prod-db, +30m) was approved; access now ends at 2026-12-01T10:30:00Z (in 1h30m)"
        );
        let grant = grant_with(ExtensionState::Pending);
        assert_eq!(
            extension_line(&grant, &grant.extensions[0], now()),
            "extension #1 of grant r1 (prod-db, +30m) is pending"
        );
    }

    #[test]
    fn refused_extensions_say_by_whom() {
        let mut grant = grant_with(ExtensionState::Denied);
        grant.extensions[0].policy = Some(PolicyDecision {
            deny: vec!["no extensions on Fridays".into()],
            ..PolicyDecision::default()
        });
        assert_eq!(
            extension_ended_without_access(&grant, &grant.extensions[0]),
            "extension #1 of grant r1 (prod-db) was not granted: denied by policy:\nno extensions on Fridays"
        );
        let mut grant = grant_with(ExtensionState::Denied);
        grant.extensions[0].decision = Some(DecisionRecord {
            by: "bob".into(),
            comment: Some("wrap it up".into()),
            at: now(),
        });
        let text = extension_ended_without_access(&grant, &grant.extensions[0]);
        assert!(
            text.starts_with(
                "extension #1 of grant r1 (prod-db) was not granted: denied by bob: wrap it up; access still ends at "
            ),
            "{text}"
        );
        let grant = grant_with(ExtensionState::Lapsed);
        assert_eq!(
            extension_ended_without_access(&grant, &grant.extensions[0]),
            "extension #1 of grant r1 (prod-db) was not granted: the grant ended before it was decided"
        );
    }
}
