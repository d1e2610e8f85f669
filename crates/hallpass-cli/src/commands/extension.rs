//! Extensions as both `extend` and `request` (which asks to extend a grant
//! the caller already holds) show them: finding one on a grant, how its
//! state reads, why it came to nothing, and waiting until it is decided.

use std::time::Duration;

use chrono::Utc;
use hallpass_api::{AccessRequest, ExtensionRecord, ExtensionState, RequestState};
use hallpass_client::Client;
use indicatif::ProgressBar;

use super::WAIT_POLL_SECONDS;
use super::detail::{flow_status, policy_refusal};
use crate::output::{eprint_message, escape_controls, opt_time_relative};

/// Extension `number` of `grant`, if the grant has it.
pub fn find_extension(grant: &AccessRequest, number: u32) -> Option<&ExtensionRecord> {
    grant.extensions.iter().find(|extension| extension.number == number)
}

/// `is pending (stage 1/1: ...)`, `was approved`, `was denied by policy`, ...
pub fn extension_state_phrase(extension: &ExtensionRecord) -> String {
    match extension.state {
        ExtensionState::Pending => match &extension.approval {
            Some(flow) => format!("is pending ({})", flow_status(flow)),
            None => "is pending".to_string(),
        },
        ExtensionState::Approved if extension.auto_approved => "was approved at once".to_string(),
        ExtensionState::Denied if !policy_refusal(extension.policy.as_ref()).is_empty() => {
            "was denied by policy".to_string()
        }
        ExtensionState::Lapsed => "lapsed: the grant ended first".to_string(),
        state => format!("was {state}"),
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
    use crate::commands::fixtures::{now, with_extension};
    use hallpass_api::{DecisionRecord, PolicyDecision};

    #[test]
    fn refused_extensions_say_by_whom() {
        let mut grant = with_extension(ExtensionState::Denied);
        grant.extensions[0].policy = Some(PolicyDecision {
            deny: vec!["no extensions on Fridays".into()],
            ..PolicyDecision::default()
        });
        assert_eq!(
            extension_ended_without_access(&grant, &grant.extensions[0]),
            "extension #1 of grant r1 (prod-db) was not granted: denied by policy:\nno extensions on Fridays"
        );
        let mut grant = with_extension(ExtensionState::Denied);
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
        let grant = with_extension(ExtensionState::Lapsed);
        assert_eq!(
            extension_ended_without_access(&grant, &grant.extensions[0]),
            "extension #1 of grant r1 (prod-db) was not granted: the grant ended before it was decided"
        );
    }
}
