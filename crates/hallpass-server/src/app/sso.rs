//! Single sign-on for people through an OpenID Connect provider: the
//! authorization-code flow with PKCE, `state` and `nonce` (the
//! `openidconnect` crate checks the ID token's signature, issuer, audience,
//! expiry and nonce), the claims → principal and groups mapping of the
//! `sso` block, and what a sign-in yields: a Hallpass token.
//!
//! A browser session *is* a Hallpass token (a row in `tokens`, its secret
//! only in the HttpOnly cookie, its SHA-256 in the store), so everything
//! that ends a token ends a session on the next request: signing out,
//! revocation by an admin, a lock of the principal, expiry. Nothing of a
//! sign-in in progress is kept server-side: the login state (PKCE verifier,
//! `state`, nonce, where to go next) travels sealed under the seal key in a
//! short-lived cookie, so any replica can finish a sign-in another began.
//!
//! `hallpass login` rides on a browser session: the signed-in user allows
//! the CLI, which gets a one-time code (sealed, valid a minute, bound to the
//! CLI's own PKCE challenge) on its loopback listener and trades it for a
//! token of its own.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use hallpass_api as api;
use hallpass_api::ErrorCode;
use hallpass_config::SingleSignOn;
use hallpass_core::audit::AuditDraft;
use hallpass_core::events::AuditKind;
use hallpass_core::subject::is_valid_name;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::tokens::{SSO_CREATOR_PREFIX, TokenWhen, random_bytes};
use super::{App, AppError, AppResult, Caller, ErrorKind};

/// How long a sign-in may take at the provider.
pub const LOGIN_STATE_SECONDS: i64 = 10 * 60;
/// How long the CLI has to trade its one-time code.
const CLI_CODE_SECONDS: i64 = 60;
/// The provider's discovery document is fetched again after this long.
const METADATA_MAX_AGE: StdDuration = StdDuration::from_secs(3600);
const FETCH_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// Seal names: a value sealed for one use cannot be replayed as another.
const LOGIN_SEAL: &str = "sso_login_state";
const CLI_CODE_SEAL: &str = "sso_cli_code";
pub(super) const REFRESH_SEAL: &str = "sso_refresh_token";
/// Sessions remembered as freshly checked, per replica, before the memo is
/// pruned.
pub(super) const MEMO_LIMIT: usize = 10_000;

/// The configured provider and what this server knows of it.
pub struct SsoProvider {
    pub(super) config: SingleSignOn,
    redirect_url: String,
    pub(super) web_client: reqwest::Client,
    metadata: Mutex<Option<(Instant, CoreProviderMetadata)>>,
    /// Sessions this replica saw checked lately: token id → when it was.
    pub(super) checked: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

impl SsoProvider {
    /// `public_url` is the server's own URL; the provider sends people back
    /// to `{public_url}/auth/callback`.
    pub fn new(config: SingleSignOn, public_url: &str) -> anyhow::Result<Arc<SsoProvider>> {
        hallpass_providers::webhook::install_tls_crypto_provider();
        // No redirects: a provider that redirects its token endpoint could
        // send the authorization code and client secret elsewhere.
        let web_client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hallpass/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client for single sign-on: {e}"))?;
        IssuerUrl::new(config.issuer.clone()).map_err(|e| anyhow::anyhow!("sso issuer: {e}"))?;
        let redirect_url = format!("{}/auth/callback", public_url.trim_end_matches('/'));
        RedirectUrl::new(redirect_url.clone()).map_err(|e| anyhow::anyhow!("sso redirect URL: {e}"))?;
        Ok(Arc::new(SsoProvider {
            config,
            redirect_url,
            web_client,
            metadata: Mutex::new(None),
            checked: std::sync::Mutex::new(std::collections::HashMap::new()),
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The discovery document, fetched on first use and hourly after.
    async fn metadata(&self) -> AppResult<CoreProviderMetadata> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, metadata)) = cached.as_ref()
            && at.elapsed() < METADATA_MAX_AGE
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(AppError::internal)?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.web_client)
            .await
            .map_err(|e| {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "cannot read the identity provider's discovery document");
                provider_unavailable(&self.config.issuer)
            })?;
        *cached = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    pub(super) async fn client(
        &self,
    ) -> AppResult<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
    > {
        let metadata = self.metadata().await?;
        let secret = self
            .config
            .client_secret
            .as_ref()
            .map(|secret| ClientSecret::new(secret.expose().to_string()));
        let redirect = RedirectUrl::new(self.redirect_url.clone()).map_err(AppError::internal)?;
        Ok(
            CoreClient::from_provider_metadata(metadata, ClientId::new(self.config.client_id.clone()), secret)
                .set_redirect_uri(redirect),
        )
    }

    /// The provider's group names as Hallpass groups: renamed by
    /// `group_names`, others kept; names Hallpass cannot hold are dropped.
    pub(super) fn groups(&self, claims: &serde_json::Map<String, Value>) -> Vec<String> {
        let listed: Vec<&str> = match claims.get(&self.config.groups_claim) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(one)) => vec![one.as_str()],
            _ => Vec::new(),
        };
        let mut groups: Vec<String> = Vec::new();
        for name in listed {
            let renamed = self.config.group_names.get(name).map_or(name, String::as_str);
            if !is_valid_name(renamed) {
                tracing::warn!(
                    group = renamed,
                    "an identity provider group is not a valid Hallpass group name; ignored"
                );
                continue;
            }
            if !groups.iter().any(|known| known == renamed) {
                groups.push(renamed.to_string());
            }
        }
        groups
    }
}

fn provider_unavailable(issuer: &str) -> AppError {
    AppError::new(
        ErrorKind::TargetFailed,
        ErrorCode::TargetFailed,
        format!("the identity provider {issuer} did not answer as expected; try again, or tell an administrator"),
    )
}

fn sign_in_refused(message: impl Into<String>) -> AppError {
    AppError::unauthenticated(ErrorCode::InvalidToken, message)
}

/// What the browser keeps, sealed, between leaving for the provider and
/// coming back.
#[derive(Serialize, Deserialize)]
struct LoginState {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    started_at: i64,
}

/// A sign-in begun: where to send the browser, and the sealed state it
/// must bring back.
pub struct LoginStart {
    pub authorize_url: String,
    pub login_state: String,
}

/// A sign-in finished: the session token (the cookie's value) and where
/// the browser goes next.
pub struct SignedIn {
    pub session_secret: String,
    pub principal: String,
    pub next: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A one-time code for the CLI, sealed.
#[derive(Serialize, Deserialize)]
struct CliCode {
    id: String,
    principal: String,
    groups: Vec<String>,
    challenge: String,
    expires_at: i64,
}

/// Where a page may send the browser after sign-in: a path on this server,
/// never another site (`//host`, `/\host` and schemes are refused).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control)
                && path.len() <= 2048 =>
        {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

/// The anti-forgery token of a session: derived from the session's secret,
/// so it needs no storage, differs per session, and reveals nothing of the
/// secret (SHA-256 under a label of its own).
pub fn csrf_token(session_secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"hallpass csrf v1\0");
    hasher.update(session_secret.as_bytes());
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// Compares a submitted anti-forgery token with the session's in constant time.
pub fn csrf_matches(session_secret: &str, submitted: &str) -> bool {
    let expected = csrf_token(session_secret);
    aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), submitted.as_bytes()).is_ok()
}

/// The claims of an ID token whose signature and claims have been checked:
/// the checks passed on exactly these bytes, read again as JSON for the
/// configured claim names.
pub(super) fn payload_of(id_token: &str) -> AppResult<serde_json::Map<String, Value>> {
    id_token
        .split('.')
        .nth(1)
        .and_then(|part| URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes).ok())
        .ok_or_else(|| AppError::internal("a verified ID token has no JSON payload"))
}

/// Sealed values travel in URLs and cookies as base64url.
fn to_url_safe(sealed: &str) -> AppResult<String> {
    let bytes = STANDARD.decode(sealed).map_err(AppError::internal)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn from_url_safe(text: &str) -> Option<String> {
    URL_SAFE_NO_PAD
        .decode(text.trim())
        .ok()
        .map(|bytes| STANDARD.encode(bytes))
}

fn random_text() -> AppResult<String> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

impl App {
    fn sso(&self) -> AppResult<&Arc<SsoProvider>> {
        self.inner.sso.as_ref().ok_or_else(|| {
            AppError::not_found("single sign-on is not configured on this server (the sso block of its configuration)")
        })
    }

    /// The issuer people sign in with, when single sign-on is configured.
    pub fn sso_issuer(&self) -> Option<&str> {
        self.inner.sso.as_deref().map(SsoProvider::issuer)
    }

    /// Begins a sign-in: the provider's authorization URL (code flow, PKCE
    /// S256, fresh `state` and `nonce`) and the sealed login state.
    pub async fn start_sign_in(&self, next: Option<&str>) -> AppResult<LoginStart> {
        let sso = self.sso()?;
        let client = sso.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &sso.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let login = LoginState {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            next: safe_next(next),
            started_at: self.now().timestamp(),
        };
        let plaintext = serde_json::to_vec(&login).map_err(AppError::internal)?;
        let sealed = self
            .inner
            .sealer
            .seal(LOGIN_SEAL, &plaintext)
            .map_err(AppError::internal)?;
        Ok(LoginStart {
            authorize_url: url.to_string(),
            login_state: to_url_safe(&sealed)?,
        })
    }

    /// Finishes a sign-in: checks `state` against the sealed login state,
    /// trades the code (with the PKCE verifier), verifies the ID token and
    /// makes the session token with its `token.created` event.
    pub async fn finish_sign_in(
        &self,
        code: &str,
        state: &str,
        login_state: Option<&str>,
        remote: Option<IpAddr>,
    ) -> AppResult<SignedIn> {
        self.check_auth_failures(remote)?;
        let sso = self.sso()?.clone();
        let login = match login_state.and_then(|sealed| self.open_login_state(sealed)) {
            Some(login) => login,
            None => {
                self.count_auth_failure(remote);
                return Err(sign_in_refused(
                    "this sign-in was not started here or took longer than 10 minutes; start again",
                ));
            }
        };
        let state_matches =
            aws_lc_rs::constant_time::verify_slices_are_equal(login.state.as_bytes(), state.as_bytes()).is_ok();
        if !state_matches {
            self.count_auth_failure(remote);
            return Err(sign_in_refused("the sign-in's state does not match; start again"));
        }
        let (claims, refresh) = self.verified_claims(&sso, code, &login).await.inspect_err(|_| {
            self.count_auth_failure(remote);
        })?;
        let (principal, groups) = self.principal_of(&sso, &claims)?;
        let origin = json!({"sso": sso.config.issuer, "use": "web session"});
        let created = self
            .sso_token(&principal, groups, sso.config.session_ttl_seconds, origin)
            .await?;
        match refresh {
            Some(refresh) => self.keep_refresh_token(&created.id, &refresh).await?,
            None => tracing::warn!(
                issuer = %sso.config.issuer,
                "the identity provider gave no refresh token: this session's groups cannot be checked again \
                 until it ends (ask for the offline_access scope)"
            ),
        }
        Ok(SignedIn {
            session_secret: created.token,
            principal,
            next: login.next,
            expires_at: created.expires_at,
        })
    }

    fn open_login_state(&self, sealed: &str) -> Option<LoginState> {
        let sealed = from_url_safe(sealed)?;
        let plaintext = self.inner.sealer.open(LOGIN_SEAL, &sealed)?;
        let login: LoginState = serde_json::from_slice(&plaintext).ok()?;
        let age = self.now().timestamp() - login.started_at;
        (0..=LOGIN_STATE_SECONDS).contains(&age).then_some(login)
    }

    /// The ID token's claims, once the provider has traded the code and the
    /// token has passed every check.
    async fn verified_claims(
        &self,
        sso: &SsoProvider,
        code: &str,
        login: &LoginState,
    ) -> AppResult<(serde_json::Map<String, Value>, Option<String>)> {
        let client = sso.client().await?;
        let exchange = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| provider_unavailable(&sso.config.issuer))?
            .set_pkce_verifier(PkceCodeVerifier::new(login.verifier.clone()));
        let response = exchange.request_async(&sso.web_client).await.map_err(|e| {
            tracing::warn!(issuer = %sso.config.issuer, error = %e, "the identity provider refused the authorization code");
            sign_in_refused("the identity provider did not accept this sign-in; start again")
        })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| sign_in_refused("the identity provider sent no ID token; is the openid scope allowed?"))?;
        let verifier = client.id_token_verifier();
        id_token
            .claims(&verifier, &Nonce::new(login.nonce.clone()))
            .map_err(|e| {
                tracing::warn!(issuer = %sso.config.issuer, error = %e, "an ID token failed verification");
                sign_in_refused("the identity provider's ID token did not verify; start again")
            })?;
        let refresh = response.refresh_token().map(|token| token.secret().clone());
        Ok((payload_of(&id_token.to_string())?, refresh))
    }

    /// The principal and groups the claims name, under the `sso` block's rules.
    fn principal_of(
        &self,
        sso: &SsoProvider,
        claims: &serde_json::Map<String, Value>,
    ) -> AppResult<(String, Vec<String>)> {
        let claim = &sso.config.principal_claim;
        let Some(principal) = claims.get(claim).and_then(Value::as_str) else {
            return Err(AppError::forbidden(format!(
                "the identity provider's ID token has no `{claim}` claim to name you by; ask an administrator to \
                 grant the scope that carries it"
            )));
        };
        if claim == "email" && claims.get("email_verified") == Some(&Value::Bool(false)) {
            return Err(AppError::forbidden(
                "your email address is not verified at the identity provider; verify it and sign in again",
            ));
        }
        if !is_valid_name(principal) {
            return Err(AppError::forbidden(format!(
                "the identity provider names you {principal:?}, which is not a valid Hallpass principal name (1-64 \
                 letters, digits, '.', '_', '-' or '@'); ask an administrator to map another claim"
            )));
        }
        Ok((principal.to_string(), sso.groups(claims)))
    }

    async fn sso_token(
        &self,
        principal: &str,
        groups: Vec<String>,
        ttl_seconds: u64,
        origin: Value,
    ) -> AppResult<api::CreatedToken> {
        let body = api::CreateToken {
            principal: principal.to_string(),
            groups,
            ttl: Some(format!("{ttl_seconds}s")),
        };
        let created_by = format!("{SSO_CREATOR_PREFIX}{principal}");
        let made = self
            .make_token(&created_by, body, None, TokenWhen::Always, Some(origin))
            .await?;
        made.ok_or_else(|| AppError::internal("a token made unconditionally was not made"))
    }

    /// Ends the caller's own session or CLI token, whatever else holds:
    /// signing out is always allowed, even with the last admin token.
    pub async fn sign_out(&self, caller: &Caller) -> AppResult<()> {
        self.revoke_session(&caller.token_id, caller.name(), "signed out").await
    }

    /// Revokes a token with its `token.revoked` event, by `actor`, for
    /// `reason`; a token already revoked is left as it is.
    pub(super) async fn revoke_session(&self, token_id: &str, actor: &str, reason: &'static str) -> AppResult<()> {
        let (id, actor) = (token_id.to_string(), actor.to_string());
        self.inner
            .store
            .write(move |wtx| -> AppResult<()> {
                let now = wtx.now();
                if wtx.revoke_token(&id, now)? {
                    wtx.append_audit(AuditDraft::new(
                        actor,
                        AuditKind::TokenRevoked,
                        None,
                        json!({"token_id": id, "reason": reason}),
                    ))?;
                }
                Ok(())
            })
            .await
    }

    /// A signed-in caller allows the CLI listening on `port`: the one-time
    /// code, bound to the CLI's PKCE `challenge` (base64url SHA-256).
    pub fn cli_login_code(&self, caller: &Caller, challenge: &str) -> AppResult<String> {
        self.sso()?;
        let valid = URL_SAFE_NO_PAD.decode(challenge).is_ok_and(|bytes| bytes.len() == 32);
        if !valid {
            return Err(AppError::invalid(
                ErrorCode::InvalidInput,
                "code_challenge must be the base64url SHA-256 of the CLI's verifier (43 characters)",
            ));
        }
        let code = CliCode {
            id: random_text()?,
            principal: caller.principal.name.clone(),
            groups: caller.principal.groups.clone(),
            challenge: challenge.to_string(),
            expires_at: (self.now() + Duration::seconds(CLI_CODE_SECONDS)).timestamp(),
        };
        let plaintext = serde_json::to_vec(&code).map_err(AppError::internal)?;
        let sealed = self
            .inner
            .sealer
            .seal(CLI_CODE_SEAL, &plaintext)
            .map_err(AppError::internal)?;
        to_url_safe(&sealed)
    }

    /// Trades the CLI's one-time code and PKCE verifier for a token. Each
    /// code works once, on any replica (the replay register is the store's).
    pub async fn cli_token(&self, code: &str, verifier: &str, remote: Option<IpAddr>) -> AppResult<api::CreatedToken> {
        self.check_auth_failures(remote)?;
        let sso = self.sso()?.clone();
        let now = self.now();
        let opened = from_url_safe(code)
            .and_then(|sealed| self.inner.sealer.open(CLI_CODE_SEAL, &sealed))
            .and_then(|plaintext| serde_json::from_slice::<CliCode>(&plaintext).ok())
            .filter(|code| code.expires_at >= now.timestamp());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let Some(code) = opened.filter(|code| {
            aws_lc_rs::constant_time::verify_slices_are_equal(code.challenge.as_bytes(), challenge.as_bytes()).is_ok()
        }) else {
            self.count_auth_failure(remote);
            return Err(sign_in_refused(
                "the login code is unknown, expired (a minute) or not for this verifier; run the login again",
            ));
        };
        let nonce = format!("cli-code:{}", code.id);
        let until = DateTime::from_timestamp(code.expires_at, 0).unwrap_or(now) + Duration::seconds(CLI_CODE_SECONDS);
        let fresh = self
            .inner
            .store
            .write(move |wtx| wtx.remember_nonce(&nonce, until))
            .await?;
        if !fresh {
            self.count_auth_failure(remote);
            return Err(sign_in_refused("this login code was already used; run the login again"));
        }
        let origin = json!({"sso": sso.config.issuer, "use": "cli"});
        self.sso_token(&code.principal, code.groups, sso.config.cli_token_ttl_seconds, origin)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/requests/1?x=2")), "/requests/1?x=2");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "approvals",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn anti_forgery_tokens_are_per_session() {
        let a = csrf_token("hp_session_a");
        assert!(csrf_matches("hp_session_a", &a));
        assert!(!csrf_matches("hp_session_b", &a));
        assert!(!csrf_matches("hp_session_a", ""));
        assert!(!a.contains("session"));
    }
}
