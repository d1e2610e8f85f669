//! Keeping a signed-in session true to the identity provider: every
//! `recheck_every` (0: every request) the session's claims are read again
//! with its refresh token, so a group removed at the provider is gone from
//! the next request after that, and a person the provider no longer vouches
//! for (disabled, the grant revoked) is signed out. One caller of one
//! replica checks at a time (a compare-and-set on the session's last
//! check); the others go on with the groups the store holds. The check
//! runs to its end even when the request that took it is dropped.
//!
//! A provider that cannot be reached keeps the session as it is until the
//! next check: its outage does not sign everyone out.

use std::sync::Arc;
use std::time::Instant;

use hallpass_core::audit::AuditDraft;
use hallpass_core::events::AuditKind;
use hallpass_store::SsoSessionRow;
use openidconnect::{Nonce, OAuth2TokenResponse, RefreshToken, RequestTokenError, TokenResponse};
use serde_json::json;

use super::sso::{MEMO_LIMIT, REFRESH_SEAL, SsoProvider, payload_of};
use super::{App, AppError, AppResult, Caller};

/// How long one server may take to ask the provider before another may.
const RECHECK_LEASE_SECONDS: i64 = 30;
use hallpass_api::ErrorCode;

/// What the provider said when asked again.
enum Answer {
    /// It vouches for these claims; maybe with a new refresh token.
    Claims(serde_json::Map<String, serde_json::Value>, Option<String>),
    /// It refused: the session ends.
    Refused(String),
    /// It could not be asked, or said nothing usable: keep the session.
    Unknown(String),
}

impl SsoProvider {
    /// Was this session checked by this replica less than `every` ago?
    fn checked_lately(&self, token_id: &str, every: std::time::Duration) -> bool {
        let Ok(memo) = self.checked.lock() else { return false };
        memo.get(token_id).is_some_and(|at| at.elapsed() < every)
    }

    fn remember_check(&self, token_id: &str, age: std::time::Duration) {
        if let Ok(mut memo) = self.checked.lock() {
            if memo.len() >= MEMO_LIMIT {
                memo.clear();
            }
            let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
            memo.insert(token_id.to_string(), at);
        }
    }

    /// Asks the provider about the session again (refresh-token grant).
    async fn ask(&self, refresh: &str) -> AppResult<Answer> {
        let client = self.client().await?;
        let refresh = RefreshToken::new(refresh.to_string());
        let Ok(exchange) = client.exchange_refresh_token(&refresh) else {
            return Ok(Answer::Unknown("the provider has no token endpoint".into()));
        };
        let response = match exchange.request_async(&self.web_client).await {
            Ok(response) => response,
            Err(RequestTokenError::ServerResponse(refusal)) => return Ok(Answer::Refused(refusal.to_string())),
            Err(other) => return Ok(Answer::Unknown(other.to_string())),
        };
        let Some(id_token) = response.id_token() else {
            return Ok(Answer::Unknown("the refresh answer holds no ID token".into()));
        };
        // An ID token from a refresh carries no nonce of ours to compare.
        let no_nonce = |_: Option<&Nonce>| -> Result<(), String> { Ok(()) };
        if let Err(e) = id_token.claims(&client.id_token_verifier(), no_nonce) {
            return Ok(Answer::Refused(format!("the refreshed ID token did not verify: {e}")));
        }
        let rotated = response.refresh_token().map(|token| token.secret().clone());
        Ok(Answer::Claims(payload_of(&id_token.to_string())?, rotated))
    }
}

impl App {
    /// Keeps a sign-in's refresh token, sealed, for the session's rechecks.
    pub(super) async fn keep_refresh_token(&self, token_id: &str, refresh: &str) -> AppResult<()> {
        let row = SsoSessionRow {
            token_id: token_id.to_string(),
            sealed_refresh: self
                .inner
                .sealer
                .seal(REFRESH_SEAL, refresh.as_bytes())
                .map_err(AppError::internal)?,
            checked_at: self.now(),
        };
        Ok(self.inner.store.write(move |wtx| wtx.put_sso_session(&row)).await?)
    }

    /// The caller of a signed-in token, rechecked with the provider when
    /// due: the groups it gives now, or refused when it ended the session.
    pub(super) async fn recheck_session(&self, caller: Caller) -> AppResult<Caller> {
        let Some(sso) = self.inner.sso.clone() else {
            return Ok(caller);
        };
        let every_seconds = sso.config.recheck_every_seconds;
        let every = std::time::Duration::from_secs(every_seconds);
        if every_seconds > 0 && sso.checked_lately(&caller.token_id, every) {
            return Ok(caller);
        }
        let id = caller.token_id.clone();
        let Some(session) = self.inner.store.read(move |r| r.sso_session(&id)).await? else {
            // Nothing to recheck with (a CLI token, or a provider that gave
            // no refresh token): the store need not be asked again soon.
            sso.remember_check(&caller.token_id, std::time::Duration::ZERO);
            return Ok(caller);
        };
        let now = self.now();
        let age = (now - session.checked_at).to_std().unwrap_or_default();
        if every_seconds > 0 && age < every {
            sso.remember_check(&caller.token_id, age);
            return Ok(caller);
        }
        let id = caller.token_id.clone();
        let due = now - chrono::Duration::seconds(i64::try_from(every_seconds).unwrap_or(i64::MAX / 1000));
        let lease_until = now + chrono::Duration::seconds(RECHECK_LEASE_SECONDS);
        let claimed = self
            .inner
            .store
            .write(move |wtx| wtx.claim_sso_recheck(&id, due, lease_until))
            .await?;
        // The refresh token as it is now, not as read above: a check that
        // finished meanwhile rotated it, and the old one is spent.
        let Some(session) = claimed else {
            // Another request is asking the provider right now.
            return Ok(caller);
        };
        sso.remember_check(&caller.token_id, std::time::Duration::ZERO);
        // The check this request now holds runs to its end on a task of its
        // own: were it dropped with the request (its client went away, a
        // browser closed), its lease would stop every other request from
        // rechecking the session until it lapsed.
        let app = self.clone();
        tokio::spawn(async move { app.complete_recheck(&sso, caller, session).await })
            .await
            .map_err(AppError::internal)?
    }

    /// Asks the provider about a session whose check this server holds, and
    /// acts on the answer; every path ends the check.
    async fn complete_recheck(
        &self,
        sso: &Arc<SsoProvider>,
        caller: Caller,
        session: SsoSessionRow,
    ) -> AppResult<Caller> {
        let answer = match self
            .inner
            .sealer
            .open(REFRESH_SEAL, &session.sealed_refresh)
            .and_then(|bytes| String::from_utf8(bytes).ok())
        {
            Some(refresh) => match sso.ask(&refresh).await {
                Ok(answer) => answer,
                // E.g. its discovery document cannot be fetched: the
                // provider cannot be asked, which keeps the session.
                Err(error) => Answer::Unknown(error.to_string()),
            },
            None => Answer::Unknown("the refresh token does not unseal (another seal key?)".into()),
        };
        match answer {
            Answer::Claims(claims, rotated) => self.apply_recheck(sso, caller, &claims, rotated).await,
            Answer::Refused(why) => {
                tracing::warn!(token_id = %caller.token_id, principal = %caller.principal.name, %why,
                    "the identity provider no longer vouches for a session: signed out");
                self.end_session(&caller, "the identity provider no longer vouches for the session")
                    .await?;
                Err(AppError::unauthenticated(
                    ErrorCode::InvalidToken,
                    "the identity provider ended this session; sign in again",
                ))
            }
            Answer::Unknown(why) => {
                tracing::warn!(token_id = %caller.token_id, %why,
                    "cannot recheck a session with the identity provider; kept as it is until the next check");
                self.finish_recheck(&caller.token_id).await?;
                Ok(caller)
            }
        }
    }

    async fn finish_recheck(&self, token_id: &str) -> AppResult<()> {
        let (id, now) = (token_id.to_string(), self.now());
        Ok(self
            .inner
            .store
            .write(move |wtx| wtx.finish_sso_recheck(&id, now))
            .await?)
    }

    /// Takes the provider's fresh claims: same person, maybe new groups.
    async fn apply_recheck(
        &self,
        sso: &Arc<SsoProvider>,
        mut caller: Caller,
        claims: &serde_json::Map<String, serde_json::Value>,
        rotated: Option<String>,
    ) -> AppResult<Caller> {
        let still = claims.get(&sso.config.principal_claim).and_then(|v| v.as_str());
        if still != Some(caller.principal.name.as_str()) {
            self.end_session(&caller, "the identity provider now names someone else")
                .await?;
            return Err(AppError::unauthenticated(
                ErrorCode::InvalidToken,
                "the identity provider names you differently now; sign in again",
            ));
        }
        match rotated {
            Some(rotated) => self.keep_refresh_token(&caller.token_id, &rotated).await?,
            None => self.finish_recheck(&caller.token_id).await?,
        }
        let groups = sso.groups(claims);
        if groups == caller.principal.groups {
            return Ok(caller);
        }
        let (id, actor, before) = (
            caller.token_id.clone(),
            caller.principal.name.clone(),
            caller.principal.groups.clone(),
        );
        let after = groups.clone();
        self.inner
            .store
            .write(move |wtx| -> AppResult<()> {
                if wtx.set_token_groups(&id, &after)? {
                    wtx.append_audit(AuditDraft::new(
                        actor.clone(),
                        AuditKind::TokenGroupsChanged,
                        None,
                        json!({"token_id": id, "principal": actor, "groups_before": before, "groups": after}),
                    ))?;
                }
                Ok(())
            })
            .await?;
        caller.principal.groups = groups;
        Ok(caller)
    }

    /// Revokes a session the provider no longer vouches for, with its event.
    async fn end_session(&self, caller: &Caller, reason: &'static str) -> AppResult<()> {
        self.revoke_session(&caller.token_id, super::caller::SYSTEM_ACTOR, reason)
            .await
    }
}
