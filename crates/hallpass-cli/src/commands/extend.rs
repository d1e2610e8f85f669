//! `extend ID --by 30m`: ask for more time on an active grant.
//!
//! The server answers with the grant, its new extension last in
//! `extensions`. The extension may be approved at once (policies and the
//! role allow it), denied at once (a policy refused), or pending approval;
//! `--wait` long-polls the grant until that extension is decided. An approver
//! decides it with `hallpass approve ID` / `hallpass deny ID`.

use std::process::ExitCode;

use anyhow::bail;
use chrono::{DateTime, Utc};
use clap::Args;
use hallpass_api::{AccessRequest, ExtendBody, ExtensionRecord, ExtensionState, RequestState};

use super::extension::{extension_ended_without_access, extension_state_phrase, find_extension, poll_extension};
use super::requests::ended_without_access;
use super::{CmdResult, Ctx, EXIT_INTERRUPTED, EXIT_NO_ACCESS, ok};
use crate::output::{eprint_message, opt_time_relative, print_json, print_message};

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
            eprint_message(&ended_without_access(&grant));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::fixtures::{now, with_extension};

    #[test]
    fn an_approved_extension_gives_the_new_end() {
        let grant = with_extension(ExtensionState::Approved);
        assert_eq!(
            extension_line(&grant, &grant.extensions[0], now()),
            "extension #1 of grant r1 (prod-db, +30m) was approved; access now ends at 2026-12-01T10:30:00Z (in 1h30m)"
        );
        let grant = with_extension(ExtensionState::Pending);
        assert_eq!(
            extension_line(&grant, &grant.extensions[0], now()),
            "extension #1 of grant r1 (prod-db, +30m) is pending"
        );
    }
}
