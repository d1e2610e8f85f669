//! The `grant` block of a role on an ssh target — which logins the
//! certificate is good for and what it permits — checked strictly, because
//! every value ends up in a certificate sshd enforces.
//!
//! The same fields are kept in a grant's metadata at issue, so the
//! certificate can be made again later even if the role has changed since.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

/// The fields a role's `grant` block takes.
pub const FIELDS: [&str; 4] = ["principals", "extensions", "force_command", "source_address"];

/// Certificate extensions a role may list (the ones OpenSSH defines for
/// user certificates; `no-touch-required` only matters for security keys,
/// which are not certified).
pub const EXTENSIONS: [&str; 5] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// Given when a role lists no `extensions`: an interactive terminal, and
/// nothing that reaches beyond the host (no forwarding of ports, agents or
/// X11) and no `~/.ssh/rc` run at login.
pub const DEFAULT_EXTENSIONS: [&str; 1] = ["permit-pty"];

const MAX_PRINCIPALS: usize = 32;
const MAX_PRINCIPAL_LEN: usize = 64;
const MAX_FORCE_COMMAND_LEN: usize = 4096;
const MAX_SOURCE_ADDRESSES: usize = 32;

/// A checked `grant` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSpec {
    /// Login names the certificate is valid for.
    pub principals: Vec<String>,
    /// Sorted, without duplicates.
    pub extensions: Vec<String>,
    /// Run instead of whatever command the user asks for.
    pub force_command: Option<String>,
    /// Comma-separated addresses and CIDR blocks, normalised.
    pub source_address: Option<String>,
}

impl GrantSpec {
    /// Checks a `grant` block (or the same fields kept in metadata).
    /// Messages quote hostile values with `{:?}`, so they stay one line.
    pub fn parse(grant: &Map<String, Value>) -> Result<Self, String> {
        if let Some(unknown) = grant.keys().find(|key| !FIELDS.contains(&key.as_str())) {
            return Err(format!(
                "unknown setting {unknown:?}; ssh roles take {}",
                FIELDS.map(|f| format!("`{f}`")).join(", ")
            ));
        }
        let principals = principals(grant.get("principals"))?;
        let extensions = match grant.get("extensions") {
            None => DEFAULT_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
            Some(value) => extensions(value)?,
        };
        let force_command = match grant.get("force_command") {
            None | Some(Value::Null) => None,
            Some(value) => Some(force_command(value)?),
        };
        let source_address = match grant.get("source_address") {
            None | Some(Value::Null) => None,
            Some(value) => Some(source_address(value)?),
        };
        Ok(Self {
            principals,
            extensions,
            force_command,
            source_address,
        })
    }

    /// The fields for the grant's metadata, read back by [`GrantSpec::parse`].
    pub fn to_metadata(&self, out: &mut Map<String, Value>) {
        out.insert("principals".into(), json!(self.principals));
        out.insert("extensions".into(), json!(self.extensions));
        if let Some(command) = &self.force_command {
            out.insert("force_command".into(), json!(command));
        }
        if let Some(addresses) = &self.source_address {
            out.insert("source_address".into(), json!(addresses));
        }
    }

    /// The fields of [`GrantSpec::to_metadata`] within a grant's metadata.
    pub fn from_metadata(metadata: &Map<String, Value>) -> Result<Self, String> {
        let fields = metadata
            .iter()
            .filter(|(key, _)| FIELDS.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        Self::parse(&fields)
    }
}

fn string_list<'a>(value: &'a Value, field: &str) -> Result<Vec<&'a str>, String> {
    let Value::Array(items) = value else {
        return Err(format!("`{field}` must be a list of strings"));
    };
    items
        .iter()
        .map(|item| {
            item.as_str()
                .ok_or_else(|| format!("`{field}` must be a list of strings"))
        })
        .collect()
}

fn principals(value: Option<&Value>) -> Result<Vec<String>, String> {
    let Some(value) = value else {
        return Err("`principals` is required: the login names the certificate is good for, e.g. [\"deploy\"]".into());
    };
    let names = string_list(value, "principals")?;
    if names.is_empty() {
        // An empty list in a certificate means "any user": never that.
        return Err("`principals` must name at least one login".into());
    }
    if names.len() > MAX_PRINCIPALS {
        return Err(format!("`principals` lists more than {MAX_PRINCIPALS} logins"));
    }
    let mut seen = BTreeSet::new();
    for name in &names {
        check_principal(name)?;
        if !seen.insert(*name) {
            return Err(format!("principal {name:?} is listed twice"));
        }
    }
    Ok(names.into_iter().map(str::to_string).collect())
}

/// A login name: ASCII letters, digits, `.`, `_`, `-` and `@` (directory
/// users), not starting with `-`, at most 64 bytes. Nothing sshd would
/// read as a pattern or a list (`*`, `?`, `!`, `,`, spaces).
pub fn check_principal(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.len() > MAX_PRINCIPAL_LEN {
        return Err(format!(
            "principal {:?} must be 1 to {MAX_PRINCIPAL_LEN} characters",
            shorten(name)
        ));
    }
    if !name.chars().all(allowed) || name.starts_with('-') {
        return Err(format!(
            "principal {:?} is not a login name (letters, digits, `.`, `_`, `-`, `@`; not starting with `-`)",
            shorten(name)
        ));
    }
    Ok(())
}

fn extensions(value: &Value) -> Result<Vec<String>, String> {
    let names = string_list(value, "extensions")?;
    let mut set = BTreeSet::new();
    for name in names {
        if !EXTENSIONS.contains(&name) {
            return Err(format!(
                "unknown extension {:?}; ssh roles may list {}",
                shorten(name),
                EXTENSIONS.join(", ")
            ));
        }
        if !set.insert(name) {
            return Err(format!("extension {name:?} is listed twice"));
        }
    }
    Ok(set.into_iter().map(str::to_string).collect())
}

fn force_command(value: &Value) -> Result<String, String> {
    let Some(command) = value.as_str() else {
        return Err("`force_command` must be a string".into());
    };
    if command.trim().is_empty() {
        return Err("`force_command` must not be empty".into());
    }
    if command.len() > MAX_FORCE_COMMAND_LEN {
        return Err(format!("`force_command` is longer than {MAX_FORCE_COMMAND_LEN} bytes"));
    }
    if command.chars().any(char::is_control) {
        return Err("`force_command` must be one line without control characters".into());
    }
    Ok(command.to_string())
}

/// A comma-separated string or a list of addresses and CIDR blocks
/// (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`), normalised to
/// `a,b,c` in the form OpenSSH reads.
fn source_address(value: &Value) -> Result<String, String> {
    let entries: Vec<&str> = match value {
        Value::String(text) => text.split(',').map(str::trim).collect(),
        Value::Array(_) => string_list(value, "source_address")?
            .into_iter()
            .map(str::trim)
            .collect(),
        _ => return Err("`source_address` must be a string of comma-separated CIDR blocks".into()),
    };
    if entries.len() > MAX_SOURCE_ADDRESSES {
        return Err(format!(
            "`source_address` lists more than {MAX_SOURCE_ADDRESSES} blocks"
        ));
    }
    let blocks = entries.into_iter().map(cidr).collect::<Result<Vec<_>, _>>()?;
    Ok(blocks.join(","))
}

fn cidr(entry: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "`source_address` entry {:?} is not an IP address or CIDR block such as 10.0.0.0/8",
            shorten(entry)
        )
    };
    let (address, prefix) = match entry.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (entry, None),
    };
    let address: IpAddr = address.parse().map_err(|_| bad())?;
    let width = if address.is_ipv4() { 32 } else { 128 };
    let Some(prefix) = prefix else {
        return Ok(address.to_string());
    };
    // Digits only: `u8::from_str` would also take `+8`.
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    if prefix > width {
        return Err(bad());
    }
    let bits = match address {
        IpAddr::V4(v4) => u128::from(v4.to_bits()) << 96,
        IpAddr::V6(v6) => v6.to_bits(),
    };
    if prefix < 128 && bits << prefix != 0 {
        return Err(format!(
            "`source_address` entry {entry:?} has host bits set after /{prefix}; give the network address"
        ));
    }
    Ok(format!("{address}/{prefix}"))
}

/// At most 80 characters of a value for an error message.
pub fn shorten(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        value.to_string()
    } else {
        format!("{}…", value.chars().take(MAX).collect::<String>())
    }
}
