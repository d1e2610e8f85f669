//! The login role Hallpass creates for one grant: its name, the comment
//! that marks it as Hallpass's for this grant, and what the server's
//! catalog says about it. A role of that name without the mark is never
//! changed or dropped: it is not Hallpass's.

use tokio_postgres::Row;

use super::admin::Admin;
use crate::{GrantContext, ProviderError, login_name};

/// PostgreSQL role names have at most 63 bytes.
pub(super) const MAX_LOGIN_BYTES: usize = 63;
/// The purpose under which a grant's password is derived.
pub(super) const PASSWORD_PURPOSE: &str = "password";

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
                "SELECT r.oid, shobj_description(r.oid, 'pg_authid'), r.rolcanlogin, \
                 ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
                       WHERE m.member = r.oid ORDER BY 1) \
                 FROM pg_roles r WHERE r.rolname = $1",
                &[&self.name],
            )
            .await?;
        rows.first().map(|row| existing(admin, row)).transpose()
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

fn existing(admin: &Admin<'_>, row: &Row) -> Result<Existing, ProviderError> {
    let read = |e: tokio_postgres::Error| admin.failures().error(format!("unexpected answer about a role: {e}"));
    Ok(Existing {
        oid: row.try_get(0).map_err(read)?,
        comment: row.try_get(1).map_err(read)?,
        can_login: row.try_get(2).map_err(read)?,
        member_of: row.try_get(3).map_err(read)?,
    })
}
