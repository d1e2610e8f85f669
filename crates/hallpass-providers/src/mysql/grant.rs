//! A mysql role's `grant` block — which privileges on which databases or
//! tables — checked against the privilege keywords Hallpass gives, and the
//! quoting of every name and literal put in a statement.

use serde_json::{Map, Value};

use super::TYPE;
use crate::ProviderError;

/// Privileges a role may give, and whether each exists at table level.
/// Global ones (FILE, PROCESS, SUPER, CREATE USER...) are absent on
/// purpose: Hallpass grants on a database or a table only.
const PRIVILEGES: &[(&str, bool)] = &[
    ("SELECT", true),
    ("INSERT", true),
    ("UPDATE", true),
    ("DELETE", true),
    ("CREATE", true),
    ("DROP", true),
    ("REFERENCES", true),
    ("INDEX", true),
    ("ALTER", true),
    ("CREATE VIEW", true),
    ("SHOW VIEW", true),
    ("TRIGGER", true),
    ("DELETE HISTORY", true),
    ("CREATE TEMPORARY TABLES", false),
    ("LOCK TABLES", false),
    ("EXECUTE", false),
    ("CREATE ROUTINE", false),
    ("ALTER ROUTINE", false),
    ("EVENT", false),
];

/// Schemas no role may be given: accounts and password hashes live in
/// `mysql`, and the others are the server's own.
const SYSTEM_SCHEMAS: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

/// The longest database or table name MySQL and MariaDB accept.
const MAX_NAME_CHARS: usize = 64;

/// A database (`table: None`, every table in it) or one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Object {
    pub(super) database: String,
    pub(super) table: Option<String>,
}

impl Object {
    /// `` `db`.* `` or `` `db`.`table` ``. At database level `_` and `%`
    /// are patterns in a GRANT; `escape_wildcards` makes them literal, so
    /// `app_1.*` does not also give `appx1`.
    pub(super) fn sql(&self, escape_wildcards: bool) -> String {
        match &self.table {
            Some(table) => format!("{}.{}", quote_identifier(&self.database), quote_identifier(table)),
            None if escape_wildcards => {
                let literal = self.database.replace('_', "\\_").replace('%', "\\%");
                format!("{}.*", quote_identifier(&literal))
            }
            None => format!("{}.*", quote_identifier(&self.database)),
        }
    }
}

/// A checked `grant` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GrantSpec {
    /// Upper case, single-spaced, each once.
    pub(super) privileges: Vec<&'static str>,
    pub(super) objects: Vec<Object>,
}

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_grant(TYPE, message)
}

impl GrantSpec {
    pub(super) fn parse(grant: &Map<String, Value>) -> Result<Self, ProviderError> {
        if let Some(unknown) = grant.keys().find(|key| !matches!(key.as_str(), "privileges" | "on")) {
            return Err(invalid(format!(
                "unknown setting `{unknown}`; mysql grants take `privileges` and `on`"
            )));
        }
        let privileges = parse_privileges(grant.get("privileges"))?;
        let objects = match grant.get("on") {
            Some(Value::String(on)) => vec![parse_object(on)?],
            Some(Value::Array(list)) if !list.is_empty() => list
                .iter()
                .map(|on| on.as_str().ok_or_else(on_shape).and_then(parse_object))
                .collect::<Result<_, _>>()?,
            _ => return Err(on_shape()),
        };
        for object in objects.iter().filter(|object| object.table.is_some()) {
            if let Some(privilege) = privileges.iter().find(|p| !table_level(p)) {
                return Err(invalid(format!(
                    "{privilege} cannot be granted on a table ({}); grant it on {}",
                    object.sql(false),
                    Object {
                        table: None,
                        ..object.clone()
                    }
                    .sql(false)
                )));
            }
        }
        Ok(Self { privileges, objects })
    }

    /// `GRANT SELECT, INSERT ON ``app``.* TO <account>` for each object.
    pub(super) fn statements(&self, account: &str, escape_wildcards: bool) -> Vec<String> {
        let privileges = self.privileges.join(", ");
        self.objects
            .iter()
            .map(|object| format!("GRANT {privileges} ON {} TO {account}", object.sql(escape_wildcards)))
            .collect()
    }
}

fn on_shape() -> ProviderError {
    invalid("`on` must be a database or table, e.g. on = \"app.*\" or \"app.orders\", or a non-empty list of them")
}

fn table_level(privilege: &str) -> bool {
    PRIVILEGES.iter().any(|(name, table)| *name == privilege && *table)
}

fn parse_privileges(value: Option<&Value>) -> Result<Vec<&'static str>, ProviderError> {
    let shape = || invalid("`privileges` must be a non-empty list, e.g. privileges = [\"SELECT\", \"SHOW VIEW\"]");
    let list = match value {
        Some(Value::Array(list)) if !list.is_empty() => list,
        _ => return Err(shape()),
    };
    let mut privileges = Vec::new();
    for item in list {
        let written = item.as_str().ok_or_else(shape)?;
        let normal = written
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        let known = PRIVILEGES.iter().map(|(name, _)| *name).find(|name| *name == normal);
        match (known, normal.as_str()) {
            (Some(name), _) if !privileges.contains(&name) => privileges.push(name),
            (Some(_), _) => {}
            (None, "ALL" | "ALL PRIVILEGES") => {
                return Err(invalid(
                    "ALL is refused: it would give every privilege, GRANT-like ones included; list the privileges the role needs",
                ));
            }
            (None, "GRANT OPTION" | "PROXY") => {
                return Err(invalid(format!(
                    "{normal} is refused: it would let the account pass privileges on, beyond what Hallpass revokes"
                )));
            }
            (None, _) => {
                let names: Vec<&str> = PRIVILEGES.iter().map(|(name, _)| *name).collect();
                return Err(invalid(format!(
                    "unknown privilege {written:?}; Hallpass grants these on a database or a table: {}",
                    names.join(", ")
                )));
            }
        }
    }
    Ok(privileges)
}

/// `app.*`, `app.orders`, `` `my.db`.`order``s` ``: parsed, each part
/// checked.
fn parse_object(on: &str) -> Result<Object, ProviderError> {
    let text = on.trim();
    let shape = || {
        invalid(format!(
            "`on` = {on:?} is not a database or table: write \"app.*\" for every table of database app, \"app.orders\" for one table, and put names containing dots in backticks"
        ))
    };
    let (database, rest) = take_name(text).ok_or_else(shape)?;
    let rest = rest.strip_prefix('.').ok_or_else(shape)?;
    if database == "*" {
        return Err(invalid(
            "`on` = \"*.*\" (every database) is refused: it includes the mysql schema, where accounts and password hashes live; name a database",
        ));
    }
    check_name(&database)?;
    if SYSTEM_SCHEMAS
        .iter()
        .any(|schema| schema.eq_ignore_ascii_case(&database))
    {
        return Err(invalid(format!(
            "database {database:?} is the server's own and cannot be granted; name an application database"
        )));
    }
    if rest == "*" {
        return Ok(Object { database, table: None });
    }
    match take_name(rest) {
        Some((table, "")) if table != "*" => {
            check_name(&table)?;
            Ok(Object {
                database,
                table: Some(table),
            })
        }
        _ => Err(shape()),
    }
}

/// One name at the start of `text`: in backticks (two for a literal one)
/// or up to the next `.`. The rest of `text` follows it.
fn take_name(text: &str) -> Option<(String, &str)> {
    let Some(quoted) = text.strip_prefix('`') else {
        let end = text.find('.').unwrap_or(text.len());
        return (end > 0).then(|| (text[..end].to_string(), &text[end..]));
    };
    let mut name = String::new();
    let mut chars = quoted.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '`' {
            name.push(c);
        } else if chars.peek().is_some_and(|(_, next)| *next == '`') {
            chars.next();
            name.push('`');
        } else {
            return (!name.is_empty()).then(|| (name, &quoted[at + 1..]));
        }
    }
    None
}

/// What MySQL and MariaDB accept as a name, less backslashes (escapes in
/// database patterns) and control characters.
fn check_name(name: &str) -> Result<(), ProviderError> {
    let count = name.chars().count();
    if count > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "names in `on` have at most {MAX_NAME_CHARS} characters; one has {count}"
        )));
    }
    if name.ends_with(' ') {
        return Err(invalid(format!(
            "name {name:?} in `on` ends with a space, which MySQL refuses"
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| c.is_control() || *c == '\\' || u32::from(*c) > 0xFFFF)
    {
        return Err(invalid(format!(
            "name {name:?} in `on` contains {bad:?}; backslashes, control characters and characters beyond U+FFFF are refused"
        )));
    }
    Ok(())
}

/// `` `name` ``, backticks inside doubled.
pub(super) fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `'text'`, quotes doubled and backslashes escaped. Values quoted here
/// are checked to hold no backslash (user names, hosts, passwords), so the
/// result means the same with and without `NO_BACKSLASH_ESCAPES`.
pub(super) fn quote_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}
