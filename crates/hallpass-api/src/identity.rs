//! Who is calling: tokens, `whoami`, and principal locks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::formats;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub principal: String,
    pub groups: Vec<String>,
    pub token_id: String,
    pub admin: bool,
    pub token_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Not one of the names Hallpass records its own actions under
    /// (`hallpass`, `policy`, `system`, `bootstrap`, `dev`).
    #[schema(value_type = formats::Name)]
    pub principal: String,
    #[serde(default)]
    #[schema(value_type = Vec<formats::Name>)]
    pub groups: Vec<String>,
    /// Lifetime such as `30d` or `12h`; omitted means the token never expires.
    #[serde(default)]
    #[schema(value_type = Option<formats::DurationText>)]
    pub ttl: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub principal: String,
    pub groups: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Returned once, at creation: the only time the secret is visible.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The secret bearer token (`hp_...`). Hallpass keeps only its hash.
    pub token: String,
    pub id: String,
    pub principal: String,
    pub groups: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl CreatedToken {
    pub fn new(token: String, info: TokenInfo) -> Self {
        Self {
            token,
            id: info.id,
            principal: info.principal,
            groups: info.groups,
            created_at: info.created_at,
            created_by: info.created_by,
            expires_at: info.expires_at,
            revoked_at: info.revoked_at,
        }
    }

    /// Everything but the secret.
    pub fn info(&self) -> TokenInfo {
        TokenInfo {
            id: self.id.clone(),
            principal: self.principal.clone(),
            groups: self.groups.clone(),
            created_at: self.created_at,
            created_by: self.created_by.clone(),
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /v1/principals/{name}/lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockBody {
    /// Why; kept in the audit log and shown to the locked principal.
    #[schema(value_type = formats::Reason)]
    pub reason: String,
}

/// A principal stopped by an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LockInfo {
    pub principal: String,
    pub reason: String,
    pub locked_by: String,
    pub locked_at: DateTime<Utc>,
    /// Tokens revoked by this lock (ids).
    #[serde(default)]
    pub tokens_revoked: Vec<String>,
    /// Grants ended and requests withdrawn by this lock (ids).
    #[serde(default)]
    pub requests_ended: Vec<String>,
    /// Grants whose revocation failed on the target; retried until it succeeds.
    #[serde(default)]
    pub revoke_failed: Vec<String>,
}

/// `POST /v1/auth/cli/token`: the one-time code `hallpass login` received
/// on its loopback listener after the person allowed it in the browser,
/// and the PKCE verifier whose SHA-256 the code is bound to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CliTokenExchange {
    #[schema(max_length = 4096)]
    pub code: String,
    /// 43 to 128 characters (RFC 7636).
    #[schema(min_length = 43, max_length = 128)]
    pub code_verifier: String,
}

impl std::fmt::Debug for CliTokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CliTokenExchange(***)")
    }
}

/// `POST /v1/auth/oidc`: a workload's OIDC token (from its CI system) to
/// exchange for a short-lived API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadTokenExchange {
    /// The JWT, as the CI system issued it.
    #[schema(max_length = 16384)]
    pub token: String,
}
