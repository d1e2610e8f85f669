//! What the admin account holds, read from `SHOW GRANTS` (which every
//! account may run for itself), and the statements that give it what it
//! lacks. Privileges that come from roles are not listed there; when the
//! admin has roles, a missing privilege is reported as unknown, not absent.

use super::session::Server;

/// The admin's privileges as `SHOW GRANTS` lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Held {
    /// Upper-case privileges held on `*.*`.
    global: Vec<String>,
    /// `ALL PRIVILEGES ON *.*`.
    all_global: bool,
    /// `WITH GRANT OPTION` on `*.*`.
    pub(super) grant_option_global: bool,
    /// The databases or tables (as written) held `WITH GRANT OPTION`.
    pub(super) grant_option_on: Vec<String>,
    /// Whether any role is granted to the admin.
    pub(super) roles: bool,
}

impl Held {
    pub(super) fn parse(lines: &[String]) -> Self {
        let mut held = Self::default();
        for line in lines {
            let Some(rest) = line.strip_prefix("GRANT ") else {
                continue;
            };
            let Some((privileges, rest)) = rest.split_once(" ON ") else {
                // `GRANT role TO user`: privileges come from elsewhere.
                held.roles = true;
                continue;
            };
            let Some((object, rest)) = rest.split_once(" TO ") else {
                continue;
            };
            if privileges == "PROXY" {
                continue;
            }
            let grant_option = rest.contains("WITH GRANT OPTION");
            if object == "*.*" {
                held.grant_option_global |= grant_option;
                for privilege in privileges.split(',').map(|p| p.trim().to_ascii_uppercase()) {
                    if privilege == "ALL PRIVILEGES" || privilege == "ALL" {
                        held.all_global = true;
                    }
                    held.global.push(privilege);
                }
            } else if grant_option && !object.starts_with("PROCEDURE ") && !object.starts_with("FUNCTION ") {
                held.grant_option_on.push(object.to_string());
            }
        }
        held
    }

    /// Whether the admin holds one of `any` on `*.*`.
    pub(super) fn has(&self, any: &[&str]) -> bool {
        self.all_global || self.global.iter().any(|held| any.contains(&held.as_str()))
    }

    /// `Some(false)` only when the admin surely lacks every one of `any`.
    pub(super) fn holds(&self, any: &[&str]) -> Option<bool> {
        match self.has(any) {
            true => Some(true),
            false if self.roles => None,
            false => Some(false),
        }
    }
}

/// The privileges that let an account end others' connections.
pub(super) fn kill_privileges(server: &Server) -> &'static [&'static str] {
    if server.mariadb {
        &["CONNECTION ADMIN", "SUPER"]
    } else {
        &["CONNECTION_ADMIN", "SUPER"]
    }
}

/// The statement that lets the admin end others' connections.
pub(super) fn kill_fix(server: &Server) -> String {
    let privilege = if server.mariadb {
        "CONNECTION ADMIN"
    } else {
        "CONNECTION_ADMIN"
    };
    format!(
        "GRANT {privilege} ON *.* TO {}; (SUPER on servers older than MariaDB 10.5 or MySQL 8)",
        server.admin
    )
}

pub(super) fn process_fix(server: &Server) -> String {
    format!("GRANT PROCESS ON *.* TO {};", server.admin)
}

pub(super) fn create_user_fix(server: &Server) -> String {
    format!("GRANT CREATE USER ON *.* TO {};", server.admin)
}
