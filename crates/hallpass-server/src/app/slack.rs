//! Slack's interactive endpoint, service side (`POST
//! /v1/integrations/slack/interactions`): a click on Approve or Deny in a
//! slack notifier's message becomes the same approve or deny the CLI makes,
//! for the principal the Slack user is mapped to, so self-approval, stage
//! approvers, quorum and locks apply unchanged.
//!
//! In order, each step refusing with nothing changed:
//! 1. the signature (`v0=` HMAC-SHA256 of the raw body) must be one slack
//!    notifier's `signing_secret`'s, and its time within 5 minutes of the
//!    server's (either way); else 401 `invalid_signature`;
//! 2. the signature must be new: it is remembered until its window ends,
//!    and a second use is 401 (a replay);
//! 3. the body must be Slack's form (`invalid_form`); a click on anything
//!    but Hallpass's buttons is acknowledged and ignored; a `response_url`
//!    must be on `hooks.slack.com` or a notifier's `api_url` host
//!    (`invalid_input`);
//! 4. the Slack user must be mapped to a principal by a `user:` entry of
//!    `recipients` of a notifier whose secret matched; the principal must
//!    not be locked and must hold a live API token, whose groups are the
//!    principal's groups (403 otherwise, told to the Slack user too).
//!
//! Then the answer (200) goes back at once and the decision is made in the
//! background: its outcome replaces the message through `response_url`, or
//! a refusal's reason is shown to the one who clicked.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, Duration};
use hallpass_api::{self as api, ErrorCode, RequestState};
use hallpass_core::Principal;
use hallpass_core::documents::{Document, NotifierDocument};
use hallpass_notifiers::Routing;
use hallpass_notifiers::slack::interaction::{self, Interaction, SIGNATURE_WINDOW_SECONDS};
use hallpass_notifiers::slack::message::{self as slack_message, Decision};
use hallpass_notifiers::slack::{self, Settings, SlackNotifier};
use hallpass_providers::SecretValue;
use hallpass_store::{ConfigKind, SecretOwner};
use reqwest::Url;
use serde_json::Value;

use super::secrets::unseal_all_of;
use super::{App, AppError, AppResult, Caller, ErrorKind};

/// A call to the interactive endpoint, as it arrived.
pub struct SlackCallback {
    /// `X-Slack-Request-Timestamp`.
    pub timestamp: Option<String>,
    /// `X-Slack-Signature`.
    pub signature: Option<String>,
    /// The body, exactly as received (the signature covers it).
    pub body: Vec<u8>,
    /// The caller's address: bad signatures count as failed authentications.
    pub remote: Option<IpAddr>,
}

/// A slack notifier that can check clicks: it has a `signing_secret`.
struct Verifier {
    name: String,
    signing_secret: SecretValue,
    routing: Routing,
    api_url: Url,
}

/// Counts one interaction by what became of it: `approved`, `denied`,
/// `refused` (mapping or approval rules), `rejected` (signature, time or
/// replay), `invalid` (a signed body that is not a click), `ignored`
/// (another action).
fn count(outcome: &'static str) {
    metrics::counter!("hallpass_slack_interactions_total", "outcome" => outcome).increment(1);
}

fn rejected(message: impl Into<String>) -> AppError {
    AppError::unauthenticated(ErrorCode::InvalidSignature, message)
}

fn invalid_form(message: impl Into<String>) -> AppError {
    AppError::invalid(ErrorCode::InvalidForm, message)
}

/// What a verified click asks.
struct Click {
    caller: Caller,
    decision: Decision,
    request_id: String,
    respond_to: Option<Url>,
}

impl App {
    /// Handles one call to the interactive endpoint; see the module
    /// documentation for the steps. `Ok` means answered (200): the
    /// decision, if any, is under way.
    pub async fn slack_interaction(&self, callback: SlackCallback) -> AppResult<()> {
        let verifiers = match self.verify_slack(&callback).await {
            Ok(verifiers) => verifiers,
            Err(error) => {
                if error.code == ErrorCode::InvalidSignature {
                    count("rejected");
                    self.count_auth_failure(callback.remote);
                }
                return Err(error);
            }
        };
        let interaction = Interaction::from_form(&callback.body).map_err(|message| {
            count("invalid");
            invalid_form(message)
        })?;
        let Some((decision, request_id)) = interaction.decision() else {
            count("ignored");
            return Ok(());
        };
        let api_urls: Vec<Url> = verifiers.iter().map(|v| v.api_url.clone()).collect();
        let respond_to = interaction.response_url(&api_urls).map_err(|message| {
            count("invalid");
            AppError::invalid(ErrorCode::InvalidInput, message)
        })?;
        let caller = match self.slack_caller(&verifiers, &interaction.user.id).await {
            Ok(caller) => caller,
            Err(error) => {
                count("refused");
                self.respond_in_background(respond_to, slack_message::refusal_message(&error.message));
                return Err(error);
            }
        };
        tracing::info!(
            slack_user = %interaction.user.id, principal = %caller.name(), decision = decision.as_str(),
            request_id, "Slack click"
        );
        let click = Click {
            caller,
            decision,
            request_id: request_id.to_string(),
            respond_to,
        };
        let app = self.clone();
        tokio::spawn(async move { app.decide_click(click).await });
        Ok(())
    }

    /// Steps 1 and 2: the notifiers whose signing secret made the
    /// signature, once the signature's time and novelty are checked.
    async fn verify_slack(&self, callback: &SlackCallback) -> AppResult<Vec<Verifier>> {
        self.check_auth_failures(callback.remote)?;
        let (Some(timestamp), Some(signature)) = (&callback.timestamp, &callback.signature) else {
            return Err(rejected(
                "not signed by Slack: the headers X-Slack-Signature and X-Slack-Request-Timestamp are required",
            ));
        };
        let at = interaction::parse_timestamp(timestamp)
            .ok_or_else(|| rejected("X-Slack-Request-Timestamp must be Unix seconds"))?;
        let now = self.now();
        if (now.timestamp() - at).abs() > SIGNATURE_WINDOW_SECONDS {
            return Err(rejected(
                "the signature's time is more than 5 minutes from the server's clock: a stale or replayed call \
                 (or a clock that is off)",
            ));
        }
        let matching: Vec<Verifier> = self
            .slack_verifiers()
            .await?
            .into_iter()
            .filter(|v| interaction::signature_matches(&v.signing_secret, timestamp, &callback.body, signature))
            .collect();
        let Some(first) = matching.first() else {
            return Err(rejected(
                "the signature matches no slack notifier's `signing_secret`; set the Slack app's signing secret \
                 as the notifier's secret `signing_secret`",
            ));
        };
        // The signature as Hallpass computes it: one form per call, so a
        // replay cannot pass by writing the same signature differently.
        let nonce = format!(
            "slack:{}",
            interaction::sign(&first.signing_secret, timestamp, &callback.body)
        );
        let until = DateTime::from_timestamp(at + SIGNATURE_WINDOW_SECONDS, 0)
            .unwrap_or(now + Duration::seconds(SIGNATURE_WINDOW_SECONDS));
        let fresh = self
            .inner
            .store
            .write(move |wtx| wtx.remember_nonce(&nonce, until))
            .await?;
        if !fresh {
            return Err(rejected(
                "this signed call was already received: a replay; nothing was done",
            ));
        }
        Ok(matching)
    }

    /// Every slack notifier with a `signing_secret`, its secret unsealed.
    async fn slack_verifiers(&self) -> AppResult<Vec<Verifier>> {
        let sealer = self.inner.sealer.clone();
        self.inner
            .store
            .read(move |r| -> AppResult<Vec<Verifier>> {
                let mut verifiers = Vec::new();
                for row in r.configs(ConfigKind::Notifier)? {
                    let document = NotifierDocument::decode(&row.document)?;
                    if document.notifier_type != slack::NOTIFIER_TYPE {
                        continue;
                    }
                    let secrets = unseal_all_of(r, &sealer, SecretOwner::Notifier, &row.name)?;
                    let Some(signing_secret) = slack::signing_secret(&secrets).cloned() else {
                        continue;
                    };
                    // Checked when stored; one a newer release wrote in a
                    // form this one refuses checks no clicks.
                    let (Ok(routing), Ok(settings)) = (
                        Routing::parse(slack::NOTIFIER_TYPE, &document.config),
                        Settings::parse(&document.config),
                    ) else {
                        continue;
                    };
                    verifiers.push(Verifier {
                        name: row.name,
                        signing_secret,
                        routing,
                        api_url: settings.api_url,
                    });
                }
                Ok(verifiers)
            })
            .await
    }

    /// Step 4: the principal `slack_user` is mapped to, with the groups of
    /// its live API tokens.
    async fn slack_caller(&self, verifiers: &[Verifier], slack_user: &str) -> AppResult<Caller> {
        let mapped: BTreeSet<(&str, &str)> = verifiers
            .iter()
            .filter_map(|v| v.routing.principal_of(slack_user).map(|p| (p, v.name.as_str())))
            .collect();
        let principals: BTreeSet<&str> = mapped.iter().map(|(p, _)| *p).collect();
        let who = if slack_message::is_slack_id(slack_user) {
            format!("Slack user {slack_user}")
        } else {
            "this Slack user".to_string()
        };
        let (name, notifier) = match (principals.len(), mapped.first()) {
            (1, Some((principal, notifier))) => (principal.to_string(), notifier.to_string()),
            (0, _) | (_, None) => {
                let names: Vec<&str> = verifiers.iter().map(|v| v.name.as_str()).collect();
                return Err(AppError::forbidden(format!(
                    "{who} is not mapped to a Hallpass principal: an admin adds \"user:NAME\" = \"{}\" to \
                     `recipients` of notifier {}",
                    if slack_message::is_slack_id(slack_user) {
                        slack_user
                    } else {
                        "U..."
                    },
                    names.join(" or ")
                )));
            }
            _ => {
                let list: Vec<&str> = principals.into_iter().collect();
                return Err(AppError::forbidden(format!(
                    "{who} is mapped to several principals ({}) by the slack notifiers; each Slack user must \
                     stand for one principal",
                    list.join(", ")
                )));
            }
        };
        let principal = self.principal_with_groups(name).await?;
        Ok(Caller {
            principal,
            token_id: format!("slack:{notifier}"),
            token_expires_at: None,
        })
    }

    /// A principal as its live (unexpired, unrevoked) API tokens describe
    /// it; refused when it is locked or holds none.
    async fn principal_with_groups(&self, name: String) -> AppResult<Principal> {
        let now = self.now();
        let lookup = name.clone();
        let (lock, tokens) = self
            .inner
            .store
            .read(move |r| -> AppResult<_> { Ok((r.lock(&lookup)?, r.tokens()?)) })
            .await?;
        if let Some(lock) = lock {
            return Err(AppError::new(
                ErrorKind::Forbidden,
                ErrorCode::Locked,
                format!("{name} is locked ({}); a locked principal decides nothing", lock.reason),
            ));
        }
        let live: Vec<_> = tokens
            .into_iter()
            .filter(|t| t.principal == name && t.revoked_at.is_none() && t.expires_at.is_none_or(|at| at > now))
            .collect();
        if live.is_empty() {
            return Err(AppError::forbidden(format!(
                "{name} holds no live API token, so Hallpass does not know {name}'s groups; a principal decides in \
                 Slack only while an admin-made token of theirs is valid"
            )));
        }
        let groups: BTreeSet<String> = live.into_iter().flat_map(|t| t.groups).collect();
        Ok(Principal {
            name,
            groups: groups.into_iter().collect(),
        })
    }

    /// Makes the click's decision as its principal and tells Slack how it
    /// went.
    async fn decide_click(self, click: Click) {
        let result = self.decide_pending(&click).await;
        let body = match &result {
            Ok(request) => {
                count(match click.decision {
                    Decision::Approve => "approved",
                    Decision::Deny => "denied",
                });
                slack_message::decided_message(request, click.caller.name(), click.decision, true)
            }
            Err(error) => {
                count("refused");
                tracing::info!(principal = %click.caller.name(), request_id = %click.request_id, %error,
                    "Slack click refused");
                slack_message::refusal_message(&error.message)
            }
        };
        if let Some(url) = click.respond_to {
            self.respond(url, body).await;
        }
    }

    /// Approves or denies a request still pending: a button stays in Slack
    /// after its request moved on, and an old Approve must not decide, say,
    /// a later extension of the grant.
    async fn decide_pending(&self, click: &Click) -> AppResult<api::AccessRequest> {
        let (caller, id) = (&click.caller, click.request_id.clone());
        let (request, _) = self.get_request(caller, id.clone()).await?;
        if request.state != RequestState::Pending {
            return Err(AppError::conflict(
                ErrorCode::WrongState,
                format!("request {id} is {}, no longer waiting for a decision", request.state),
            ));
        }
        match click.decision {
            Decision::Approve => self.approve(caller, id, None).await,
            Decision::Deny => self.deny(caller, id, None).await,
        }
    }

    fn respond_in_background(&self, url: Option<Url>, body: Value) {
        if let Some(url) = url {
            let app = self.clone();
            tokio::spawn(async move { app.respond(url, body).await });
        }
    }

    /// Posts to a checked `response_url`; a failure is logged (the decision
    /// stands either way).
    async fn respond(&self, url: Url, body: Value) {
        let sent = match SlackNotifier::new() {
            Ok(notifier) => notifier.respond(url, &body).await,
            Err(error) => Err(error),
        };
        if let Err(error) = sent {
            tracing::warn!(%error, "cannot update the Slack message");
        }
    }
}
