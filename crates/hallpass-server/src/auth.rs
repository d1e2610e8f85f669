//! Bearer-token authentication.
//!
//! Tokens are `hp_` plus 256 random bits. Only their SHA-256 is stored: the
//! secret has full entropy, so a fast hash is enough and lookups stay an
//! index probe. Revocation and expiry are checked against the store on every
//! call, so a revoked token stops working at once.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hallpass_core::Principal;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::error::ApiError;

pub const TOKEN_PREFIX: &str = "hp_";

/// The authenticated caller of one API request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub token_id: String,
    pub token_expires_at: Option<DateTime<Utc>>,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.principal.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{} is not an admin; this needs a token of group `admins`",
                self.principal.name
            )))
        }
    }
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ApiError::internal("system random generator failed"))?;
    Ok(bytes)
}

/// A new secret token and its id.
pub fn generate_token() -> Result<(String, String), ApiError> {
    let secret = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()?));
    let id = format!("tok_{}", hex::encode(random_bytes::<8>()?));
    Ok((secret, id))
}

pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "no API token: send `Authorization: Bearer hp_...` (the CLI reads HALLPASS_TOKEN or --token)",
            )
        })?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|secret| secret.starts_with(TOKEN_PREFIX))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "invalid_token",
                    "malformed Authorization header: expected `Bearer hp_...`",
                )
            })?;
        app.authenticate(secret).await
    }
}
