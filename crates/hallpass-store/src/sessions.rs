//! Single sign-on sessions: for a token made by signing in, the provider's
//! refresh token (sealed by the server; the store never sees it in clear)
//! and when the provider was last asked about the person. The token itself
//! is an ordinary row of `tokens`.

use chrono::{DateTime, Utc};

use crate::{ReadTx, StoreError, WriteTx, format_time, sql_params};

/// What the store keeps of a session beside its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoSessionRow {
    pub token_id: String,
    /// The refresh token, sealed under the server's seal key.
    pub sealed_refresh: String,
    /// When the provider last vouched for the session's claims.
    pub checked_at: DateTime<Utc>,
}

impl WriteTx<'_> {
    /// Records (or replaces) a session's sealed refresh token, checked at
    /// `row.checked_at`, and ends any check in progress.
    pub fn put_sso_session(&mut self, row: &SsoSessionRow) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO sso_sessions (token_id, sealed_refresh, checked_at, checking_until) VALUES ($1, $2, $3, NULL)
             ON CONFLICT (token_id) DO UPDATE SET sealed_refresh = excluded.sealed_refresh,
                 checked_at = excluded.checked_at, checking_until = NULL",
            sql_params![&row.token_id, &row.sealed_refresh, format_time(row.checked_at)],
        )?;
        Ok(())
    }

    /// Takes the next check of a session's claims, due when it was last
    /// checked at or before `due`: for the one caller (of any replica) that
    /// gets the lease until `lease_until`, the session as it is now, read in
    /// the same transaction (its refresh token may have been rotated by the
    /// check before: a refresh token is spent once); `None` while another
    /// holds a lease, or when no check is due.
    pub fn claim_sso_recheck(
        &mut self,
        token_id: &str,
        due: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<SsoSessionRow>, StoreError> {
        let now = format_time(self.clock.now());
        let changed = self.conn.execute(
            "UPDATE sso_sessions SET checking_until = $1
             WHERE token_id = $2 AND checked_at <= $3 AND (checking_until IS NULL OR checking_until < $4)",
            sql_params![format_time(lease_until), token_id, format_time(due), now],
        )?;
        if changed != 1 {
            return Ok(None);
        }
        self.read().sso_session(token_id)
    }

    /// Ends a check that changed nothing stored: checked at `at`.
    pub fn finish_sso_recheck(&mut self, token_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sso_sessions SET checked_at = $1, checking_until = NULL WHERE token_id = $2",
            sql_params![format_time(at), token_id],
        )?;
        Ok(())
    }

    /// Gives a live token new groups; false when it is no longer live.
    pub fn set_token_groups(&mut self, token_id: &str, groups: &[String]) -> Result<bool, StoreError> {
        self.touched_tokens = true;
        let groups = serde_json::to_string(groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let changed = self.conn.execute(
            "UPDATE tokens SET groups_json = $1 WHERE id = $2 AND revoked_at IS NULL",
            sql_params![groups, token_id],
        )?;
        Ok(changed == 1)
    }
}

impl ReadTx<'_> {
    pub fn sso_session(&mut self, token_id: &str) -> Result<Option<SsoSessionRow>, StoreError> {
        let row = self.conn.query_one(
            "SELECT token_id, sealed_refresh, checked_at FROM sso_sessions WHERE token_id = $1",
            sql_params![token_id],
        )?;
        row.map(|row| {
            Ok(SsoSessionRow {
                token_id: row.text(0)?,
                sealed_refresh: row.text(1)?,
                checked_at: row.time(2)?,
            })
        })
        .transpose()
    }
}
