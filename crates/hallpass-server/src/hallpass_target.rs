//! The `hallpass` target: Hallpass itself. A grant is a Hallpass API token
//! for the requester with the groups the role's `grant` names, valid until
//! the grant ends, so even the pipeline that manages Hallpass gets admin
//! rights just in time.
//!
//! ```hcl
//! target "hallpass" { type = "hallpass" }
//! role "hallpass-admin" {
//!   target = "hallpass"
//!   grant  = { groups = ["admins"] }
//! }
//! ```
//!
//! The token is an ordinary row of the token table (listed by `hallpass
//! token list`, ended by a principal lock), made in its own transaction
//! with its `token.created` event. Its secret is derived from the grant's
//! seed, so only its SHA-256 is stored, as for every token; its id, from
//! the grant id, so issuing twice finds the same row. An extension moves
//! the row's expiry (`token.extended`); a revoke marks it revoked
//! (`token.revoked`), which the next API call sees.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use hallpass_core::AuditKind;
use hallpass_core::audit::AuditDraft;
use hallpass_core::subject::is_valid_name;
use hallpass_providers::{
    CredentialProvider, GrantContext, ProviderError, SecretCredential, TargetContext, TargetSecrets, TestCheck,
    Verification,
};
use hallpass_store::{Store, StoreError, TokenRow};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::app::tokens::{TOKEN_PREFIX, hash_token};

/// The target `type` served by [`HallpassProvider`].
pub const TARGET_TYPE: &str = "hallpass";
/// Environment variable with the token, as the CLI reads it.
pub const TOKEN_ENV: &str = "HALLPASS_TOKEN";
/// Environment variable with the server's address, when the target says it.
pub const ADDRESS_ENV: &str = "HALLPASS_ADDR";
/// Who makes and ends grant tokens, in their audit events.
const ACTOR: &str = "hallpass";
/// Most groups one grant may name.
const MAX_GROUPS: usize = 32;
/// Longest `address`.
const MAX_ADDRESS_LEN: usize = 2048;
/// The purpose under which a grant token's secret is derived.
const SECRET_PURPOSE: &str = "hallpass-api-token";

fn invalid_config(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_config(TARGET_TYPE, message)
}

fn invalid_grant(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_grant(TARGET_TYPE, message)
}

/// The optional `address` setting: where the API is, for the credential.
fn address(config: &Map<String, Value>) -> Result<Option<String>, ProviderError> {
    if let Some(unknown) = config.keys().find(|key| key.as_str() != "address") {
        return Err(invalid_config(format!(
            "unknown setting {unknown:?}; hallpass targets take only `address` (the API's URL handed out as \
             {ADDRESS_ENV}, e.g. \"https://hallpass.example.com\")"
        )));
    }
    match config.get("address") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(url))
            if url.len() <= MAX_ADDRESS_LEN
                && (url.starts_with("https://") || url.starts_with("http://"))
                && !url.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(Some(url.clone()))
        }
        Some(_) => Err(invalid_config(
            "`address` must be the API's http(s) URL without spaces, e.g. \"https://hallpass.example.com\"",
        )),
    }
}

/// The groups a role's `grant` gives the token.
fn groups(grant: &Map<String, Value>) -> Result<Vec<String>, ProviderError> {
    if let Some(unknown) = grant.keys().find(|key| key.as_str() != "groups") {
        return Err(invalid_grant(format!(
            "unknown setting {unknown:?}; roles on hallpass targets take `groups`, e.g. {{ groups = [\"admins\"] }}"
        )));
    }
    let Some(list) = grant.get("groups").and_then(Value::as_array) else {
        return Err(invalid_grant(
            "`groups` is required: the Hallpass groups the grant's token holds, e.g. [\"admins\"]",
        ));
    };
    if list.is_empty() || list.len() > MAX_GROUPS {
        return Err(invalid_grant(format!("`groups` must name 1 to {MAX_GROUPS} groups")));
    }
    let mut groups = Vec::with_capacity(list.len());
    for value in list {
        match value.as_str() {
            Some(group) if is_valid_name(group) => {
                if !groups.iter().any(|g| g == group) {
                    groups.push(group.to_string());
                }
            }
            _ => {
                return Err(invalid_grant(format!(
                    "group {value} is not valid: use 1-64 letters, digits, '.', '_', '-' or '@', starting with a \
                     letter or digit"
                )));
            }
        }
    }
    Ok(groups)
}

/// Issues Hallpass API tokens; see the module documentation.
#[derive(Clone)]
pub struct HallpassProvider {
    store: Store,
}

impl HallpassProvider {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The grant's token secret, derived again on each call.
    fn secret(grant: &GrantContext) -> String {
        format!(
            "{TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(*grant.seed.bytes(SECRET_PURPOSE))
        )
    }

    /// The grant's token id: the same for every issue of one grant.
    fn token_id(grant_id: &str) -> String {
        let digest = Sha256::digest(format!("grant:{grant_id}").as_bytes());
        format!("tok_{}", hex::encode(&digest[..8]))
    }

    fn failed(grant: &GrantContext, error: StoreError) -> ProviderError {
        ProviderError::Target {
            target: grant.target.name.clone(),
            message: format!("the token store failed: {error}"),
        }
    }

    async fn issue_token(&self, grant: &GrantContext) -> Result<Value, ProviderError> {
        address(&grant.target.config)?;
        let groups = groups(&grant.grant)?;
        let row = TokenRow {
            id: Self::token_id(&grant.grant_id),
            secret_hash: hash_token(&Self::secret(grant)),
            principal: grant.principal.clone(),
            groups: groups.clone(),
            created_at: grant.activated_at,
            created_by: ACTOR.to_string(),
            expires_at: Some(grant.expires_at),
            revoked_at: None,
        };
        let grant_id = grant.grant_id.clone();
        let outcome = self
            .store
            .write(move |wtx| -> Result<Result<(), String>, StoreError> {
                let existing = wtx.read().token_by_hash(&row.secret_hash)?;
                match existing {
                    Some(found) if found.revoked_at.is_some() => {
                        return Ok(Err(format!("the grant's token {} was revoked", found.id)));
                    }
                    Some(found) if found.expires_at == row.expires_at => {}
                    Some(found) => {
                        wtx.set_token_expiry(&found.id, grant_expiry(&row))?;
                        wtx.append_audit(AuditDraft::new(
                            ACTOR,
                            AuditKind::TokenExtended,
                            Some(grant_id),
                            json!({"token_id": found.id, "principal": found.principal, "expires_at": row.expires_at}),
                        ))?;
                    }
                    None => {
                        if let Some(lock) = wtx.read().lock(&row.principal)? {
                            return Ok(Err(format!("{} is locked ({})", lock.principal, lock.reason)));
                        }
                        wtx.insert_token(&row)?;
                        // Names the token, never its secret or hash.
                        wtx.append_audit(AuditDraft::new(
                            ACTOR,
                            AuditKind::TokenCreated,
                            Some(grant_id),
                            json!({"token_id": row.id, "principal": row.principal, "groups": row.groups,
                                   "expires_at": row.expires_at}),
                        ))?;
                    }
                }
                Ok(Ok(()))
            })
            .await
            .map_err(|e| Self::failed(grant, e))?;
        outcome.map_err(|message| ProviderError::Credential(format!("{message}; no token issued")))?;
        Ok(json!({
            "type": TARGET_TYPE,
            "token_id": Self::token_id(&grant.grant_id),
            "principal": grant.principal,
            "groups": groups,
        }))
    }

    async fn revoke_token(&self, grant: &GrantContext) -> Result<(), ProviderError> {
        let id = Self::token_id(&grant.grant_id);
        let grant_id = grant.grant_id.clone();
        self.store
            .write(move |wtx| -> Result<(), StoreError> {
                let now = wtx.now();
                if wtx.revoke_token(&id, now)? {
                    wtx.append_audit(AuditDraft::new(
                        ACTOR,
                        AuditKind::TokenRevoked,
                        Some(grant_id),
                        json!({"token_id": id}),
                    ))?;
                }
                Ok(())
            })
            .await
            .map_err(|e| Self::failed(grant, e))
    }

    async fn verify_token(&self, grant: &GrantContext) -> Result<Verification, ProviderError> {
        let hash = hash_token(&Self::secret(grant));
        let found = self
            .store
            .read(move |r| r.token_by_hash(&hash))
            .await
            .map_err(|e| Self::failed(grant, e))?;
        Ok(match found {
            Some(row) if row.revoked_at.is_none() => {
                Verification::Remaining(format!("token {} is not revoked", row.id))
            }
            _ => Verification::Gone,
        })
    }
}

/// The expiry a grant token row carries (always set for grant tokens).
fn grant_expiry(row: &TokenRow) -> DateTime<Utc> {
    row.expires_at.unwrap_or(row.created_at)
}

impl CredentialProvider for HallpassProvider {
    fn target_type(&self) -> &'static str {
        TARGET_TYPE
    }

    fn validate_config(&self, config: &Map<String, Value>, _secrets: &TargetSecrets) -> Result<(), ProviderError> {
        address(config).map(|_| ())
    }

    fn validate_grant(&self, grant: &Map<String, Value>) -> Result<(), ProviderError> {
        groups(grant).map(|_| ())
    }

    fn issue<'a>(&'a self, grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
        self.issue_token(grant).boxed()
    }

    fn credential<'a>(
        &'a self,
        grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>> {
        async move {
            let token = Self::secret(grant);
            let mut env = std::collections::BTreeMap::new();
            env.insert(TOKEN_ENV.to_string(), token.clone());
            if let Some(address) = address(&grant.target.config)? {
                env.insert(ADDRESS_ENV.to_string(), address);
            }
            Ok(SecretCredential::new(TARGET_TYPE, token, env))
        }
        .boxed()
    }

    fn revoke<'a>(&'a self, grant: &'a GrantContext, _metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>> {
        self.revoke_token(grant).boxed()
    }

    fn verify<'a>(
        &'a self,
        grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<Verification, ProviderError>> {
        self.verify_token(grant).boxed()
    }

    fn test<'a>(&'a self, target: &'a TargetContext) -> BoxFuture<'a, Result<Vec<TestCheck>, ProviderError>> {
        async move {
            address(&target.config)?;
            Ok(vec![TestCheck::passed(
                "settings",
                "the target's settings are valid; grant tokens are made in this server's own store",
            )])
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn grants_name_valid_groups_only() {
        assert_eq!(
            groups(&map(json!({"groups": ["admins", "ops", "admins"]}))).unwrap(),
            ["admins", "ops"]
        );
        for (grant, expected) in [
            (json!({}), "`groups` is required"),
            (json!({"groups": []}), "1 to 32 groups"),
            (json!({"groups": ["bad name"]}), "is not valid"),
            (json!({"groups": [7]}), "is not valid"),
            (json!({"groups": ["a"], "admin": true}), "unknown setting \"admin\""),
        ] {
            let error = groups(&map(grant.clone())).unwrap_err().to_string();
            assert!(error.contains(expected), "{grant}: {error}");
        }
    }

    #[test]
    fn the_address_is_an_http_url() {
        assert_eq!(address(&map(json!({}))).unwrap(), None);
        assert_eq!(
            address(&map(json!({"address": "https://hp.example.com"}))).unwrap(),
            Some("https://hp.example.com".to_string())
        );
        for config in [
            json!({"address": "ftp://x"}),
            json!({"address": "https://a b"}),
            json!({"address": 3}),
            json!({"url": "https://x"}),
        ] {
            assert!(address(&map(config.clone())).is_err(), "{config}");
        }
    }

    #[test]
    fn token_ids_are_stable_per_grant() {
        assert_eq!(HallpassProvider::token_id("g-1"), HallpassProvider::token_id("g-1"));
        assert_ne!(HallpassProvider::token_id("g-1"), HallpassProvider::token_id("g-2"));
        assert!(HallpassProvider::token_id("g-1").starts_with("tok_"));
    }
}
