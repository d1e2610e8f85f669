//! Reads that gather in one statement what one API call needs, where the
//! call would otherwise read row by row: the role asked for with its
//! target, the target's sealed secrets, the requester's open record of the
//! role and the policy set's hash (a new request); a grant with its role,
//! its target and the target's secrets (handing out or ending a grant).
//! On PostgreSQL every statement is a round trip and a parse, plan and
//! execute on a backend; these took four and five statements before.
//!
//! The target comes through the role's `reference` (the target the role
//! names now). A grant keeps the target it was issued on, so callers check
//! that it is the same one and read the grant's own target otherwise.

use hallpass_core::request::RequestRecord;

use crate::sql::Row;
use crate::tx::{CONFIG_COLUMNS, config_at, open_key, request_at, secret_at};
use crate::{ConfigRow, ReadTx, SecretRow, StoreError, sql_params};

/// A role as stored with what deciding on a request for it reads.
#[derive(Debug, Clone)]
pub struct RoleWithContext {
    pub role: ConfigRow,
    /// The target the role references, if it exists.
    pub target: Option<ConfigRow>,
    /// That target's sealed secrets, by name.
    pub target_secrets: Vec<SecretRow>,
    /// The requester's open request or grant of the role, with its version.
    pub open: Option<(RequestRecord, u64)>,
    /// The `meta` value asked for alongside (the policy set's hash).
    pub meta_value: Option<String>,
}

/// A request as stored with the role it names and that role's target.
#[derive(Debug, Clone)]
pub struct RequestWithRole {
    pub record: RequestRecord,
    pub version: u64,
    /// The role named by the request, if it still exists.
    pub role: Option<ConfigRow>,
    /// The target that role references now (not necessarily the grant's).
    pub target: Option<ConfigRow>,
    /// That target's sealed secrets, by name.
    pub target_secrets: Vec<SecretRow>,
}

/// `alias.` before each of [`CONFIG_COLUMNS`].
fn config_columns(alias: &str) -> String {
    CONFIG_COLUMNS
        .split(", ")
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const SECRET_COLUMNS: &str = "s.target, s.name, s.sealed, s.updated_at";

/// From role `ro` to the target it references (`t`) and that target's
/// secrets (`s`), one row per secret.
const TARGET_AND_SECRETS_OF_RO: &str = "LEFT JOIN targets t ON t.name = ro.reference
               LEFT JOIN target_secrets s ON s.target = ro.reference";

/// A role, the target it references and that target's sealed secrets.
type RoleTargetSecrets = (Option<ConfigRow>, Option<ConfigRow>, Vec<SecretRow>);

/// Rows of a role (columns 0–5) joined to its target (6–11) and one row
/// per secret of that target (four columns from `secrets_from`): the role
/// and target once, the secrets in name order.
fn role_target_secrets(rows: &[Row], secrets_from: usize) -> Result<RoleTargetSecrets, StoreError> {
    let Some(first) = rows.first() else {
        return Ok((None, None, Vec::new()));
    };
    let role = optional(first, 0, config_at)?;
    let target = optional(first, 6, config_at)?;
    let mut secrets = Vec::new();
    for row in rows {
        if let Some(secret) = optional(row, secrets_from, secret_at)? {
            secrets.push(secret);
        }
    }
    Ok((role, target, secrets))
}

/// The columns from `start` on, or `None` when the left join found nothing
/// there (its first column, a primary key, is NULL).
fn optional<T>(
    row: &Row,
    start: usize,
    read: fn(&Row, usize) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    if row.is_null(start)? {
        return Ok(None);
    }
    read(row, start).map(Some)
}

impl ReadTx<'_> {
    /// Role `role` with its target, the target's sealed secrets,
    /// `requester`'s open record of the role and the `meta` value of
    /// `meta_key`, in one statement; `None` when the role does not exist.
    pub fn role_with_context(
        &mut self,
        role: &str,
        requester: &str,
        meta_key: &str,
    ) -> Result<Option<RoleWithContext>, StoreError> {
        let sql = format!(
            "SELECT {}, {},
                    (SELECT value FROM meta WHERE key = $3),
                    (SELECT record FROM requests WHERE open_key = $2),
                    (SELECT version FROM requests WHERE open_key = $2),
                    {SECRET_COLUMNS}
               FROM roles ro
               {TARGET_AND_SECRETS_OF_RO}
              WHERE ro.name = $1
              ORDER BY s.name",
            config_columns("ro"),
            config_columns("t")
        );
        let rows = self
            .conn
            .query(&sql, sql_params![role, open_key(requester, role), meta_key])?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let (role, target, target_secrets) = role_target_secrets(&rows, 15)?;
        let role = role.ok_or_else(|| StoreError::Corrupt("a role read back without its name".into()))?;
        Ok(Some(RoleWithContext {
            role,
            target,
            target_secrets,
            open: optional(first, 13, request_at)?,
            meta_value: first.opt_text(12)?,
        }))
    }

    /// Request `id` with its role, that role's target and the target's
    /// sealed secrets, in one statement; `None` when there is no such
    /// request.
    pub fn request_with_role(&mut self, id: &str) -> Result<Option<RequestWithRole>, StoreError> {
        let sql = format!(
            "SELECT {}, {}, r.record, r.version, {SECRET_COLUMNS}
               FROM requests r
               LEFT JOIN roles ro ON ro.name = r.role
               {TARGET_AND_SECRETS_OF_RO}
              WHERE r.id = $1
              ORDER BY s.name",
            config_columns("ro"),
            config_columns("t")
        );
        let rows = self.conn.query(&sql, sql_params![id])?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let (record, version) = request_at(first, 12)?;
        let (role, target, target_secrets) = role_target_secrets(&rows, 14)?;
        Ok(Some(RequestWithRole {
            record,
            version,
            role,
            target,
            target_secrets,
        }))
    }
}
