//! The login role Hallpass creates for one grant: its name, the comment
//! that marks it as Hallpass's for this grant, and what the server's
//! catalog says about it. A role of that name without the mark is never
//! changed or dropped: it is not Hallpass's.

use tokio_postgres::Row;
use tokio_postgres::types::Type;

use super::admin::Admin;
use crate::{GrantContext, ProviderError, login_name};

/// PostgreSQL role names have at most 63 bytes.
pub(super) const MAX_LOGIN_BYTES: usize = 63;
/// The purpose under which a grant's password is derived.
pub(super) const PASSWORD_PURPOSE: &str = "password";

/// What [`Existing`] is read from, for the role `r`.
macro_rules! role_columns {
    () => {
        "r.oid, shobj_description(r.oid, 'pg_authid'), r.rolcanlogin, \
         ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
               WHERE m.member = r.oid ORDER BY 1)"
    };
}

/// The sessions of a login, as the `FROM` and `WHERE` of a query: the
/// backends whose user is the oid `$oid`, other than the caller's, as long
/// as that oid is the role named `$1` or no role at all (one dropped while
/// its sessions stayed open; never a later role that got the oid again).
/// Read through `pg_stat_get_backend_idset()` rather than
/// `pg_stat_activity`, which formats some thirty columns of every backend
/// on the server: with 1,000 sessions open one look took 1.3–5.5 ms of the
/// server's time there, 0.15–0.35 ms here, and a revoke looks three times.
macro_rules! sessions_of {
    ($oid:literal) => {
        concat!(
            "FROM pg_stat_get_backend_idset() AS b(id) WHERE pg_stat_get_backend_userid(b.id) = ",
            $oid,
            " AND pg_stat_get_backend_pid(b.id) <> pg_backend_pid() \
             AND NOT EXISTS (SELECT 1 FROM pg_roles o WHERE o.oid = ",
            $oid,
            " AND o.rolname <> $1)"
        )
    };
}
pub(super) use sessions_of;

/// The role named `$1`.
const FIND: &str = concat!("SELECT ", role_columns!(), " FROM pg_roles r WHERE r.rolname = $1");

/// The role named `$1` (a row of NULLs when there is none) and the count
/// of its sessions, by its oid or else `$2` (the oid its issue recorded).
const LOOK: &str = concat!(
    "SELECT ",
    role_columns!(),
    ", (SELECT count(*) ",
    sessions_of!("COALESCE(r.oid, $2)"),
    ") FROM (VALUES (1)) AS one LEFT JOIN pg_roles r ON r.rolname = $1"
);

/// The login of one grant.
pub(super) struct Login {
    pub name: String,
    /// The role comment that marks it as this grant's.
    pub marker: String,
}

/// A login as the server has it.
pub(super) struct Existing {
    pub oid: u32,
    pub comment: Option<String>,
    pub can_login: bool,
    /// The roles it is a member of.
    pub member_of: Vec<String>,
}

impl Login {
    pub(super) fn of(grant: &GrantContext) -> Self {
        Self {
            name: login_name(&grant.principal, &grant.grant_id, MAX_LOGIN_BYTES),
            marker: format!(
                "Hallpass grant {} for {} (role {})",
                grant.grant_id, grant.principal, grant.role
            ),
        }
    }

    /// The role as it is on the server, `None` when there is none.
    pub(super) async fn find(&self, admin: &Admin<'_>) -> Result<Option<Existing>, ProviderError> {
        let rows = admin
            .query(
                &format!("looking up role {:?}", self.name),
                FIND,
                &[(&self.name, Type::TEXT)],
            )
            .await?;
        rows.first()
            .map(|row| existing(admin, row))
            .transpose()
            .map(Option::flatten)
    }

    /// The role as it is on the server and how many sessions it has open
    /// (by name, or by `oid` once the role is gone), in one query.
    pub(super) async fn look(
        &self,
        admin: &Admin<'_>,
        oid: Option<u32>,
    ) -> Result<(Option<Existing>, i64), ProviderError> {
        let rows = admin
            .query(
                &format!("looking up role {:?} and its sessions", self.name),
                LOOK,
                &[(&self.name, Type::TEXT), (&oid, Type::OID)],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| admin.failures().error("looking up a role returned no row"))?;
        let sessions = row
            .try_get(4)
            .map_err(|e| admin.failures().error(format!("unexpected answer about a role: {e}")))?;
        Ok((existing(admin, row)?, sessions))
    }

    /// Refuses a role of this name that Hallpass did not create for this
    /// grant.
    pub(super) fn check_ours(&self, existing: &Existing, admin: &Admin<'_>) -> Result<(), ProviderError> {
        if existing.comment.as_deref() == Some(self.marker.as_str()) {
            return Ok(());
        }
        Err(admin.failures().error(format!(
            "a role named {:?} exists that Hallpass did not create for this grant (its comment is {:?}, \
             expected {:?}); Hallpass leaves it untouched: drop or rename it if it is not in use",
            self.name, existing.comment, self.marker
        )))
    }
}

/// `None` for the row of [`LOOK`] when there is no such role.
fn existing(admin: &Admin<'_>, row: &Row) -> Result<Option<Existing>, ProviderError> {
    let read = |e: tokio_postgres::Error| admin.failures().error(format!("unexpected answer about a role: {e}"));
    let Some(oid) = row.try_get(0).map_err(read)? else {
        return Ok(None);
    };
    Ok(Some(Existing {
        oid,
        comment: row.try_get(1).map_err(read)?,
        can_login: row.try_get::<_, Option<bool>>(2).map_err(read)?.unwrap_or(false),
        member_of: row.try_get(3).map_err(read)?,
    }))
}
