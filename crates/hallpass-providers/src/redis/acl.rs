//! A redis role's `grant` block: the ACL rules its users get, e.g.
//! `acl = "~app:* +get +set"`, split into rules and checked. Rules that set
//! passwords or switch a user on or off are refused: Hallpass sets those
//! itself, and a role that could would outlive its revocation.

use serde_json::{Map, Value};

use super::TYPE;
use crate::ProviderError;

/// Rules Hallpass controls, refused in a grant.
const CONTROLLED: &[&str] = &["on", "off", "nopass", "resetpass", "reset"];
/// Rule prefixes Hallpass controls: passwords and password hashes.
const CONTROLLED_PREFIXES: &[char] = &['>', '<', '#', '!'];
/// Keyword rules a grant may use.
const KEYWORDS: &[&str] = &[
    "allkeys",
    "resetkeys",
    "allchannels",
    "resetchannels",
    "allcommands",
    "nocommands",
    "clearselectors",
];
/// Prefixes of key, channel and command rules.
const PREFIXES: &[char] = &['~', '%', '&', '+', '-'];
const MAX_RULES: usize = 200;
const MAX_TEXT: usize = 8192;

/// The checked rules, each one argument of `ACL SETUSER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rules(pub(super) Vec<String>);

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::invalid_grant(TYPE, message)
}

impl Rules {
    pub(super) fn parse(grant: &Map<String, Value>) -> Result<Self, ProviderError> {
        if let Some(unknown) = grant.keys().find(|key| key.as_str() != "acl") {
            return Err(invalid(format!(
                "unknown setting `{unknown}`; redis grants take only `acl`"
            )));
        }
        let text = match grant.get("acl") {
            Some(Value::String(text)) if !text.trim().is_empty() => text,
            _ => {
                return Err(invalid(
                    "`acl` is required: the user's ACL rules, e.g. acl = \"~app:* +get +set\"",
                ));
            }
        };
        if text.len() > MAX_TEXT {
            return Err(invalid(format!("`acl` has at most {MAX_TEXT} bytes")));
        }
        let rules = tokenize(text).map_err(invalid)?;
        if rules.len() > MAX_RULES {
            return Err(invalid(format!("`acl` has at most {MAX_RULES} rules")));
        }
        for rule in &rules {
            check_rule(rule).map_err(invalid)?;
        }
        Ok(Self(rules))
    }

    pub(super) fn text(&self) -> String {
        self.0.join(" ")
    }
}

/// Splits at white space, keeping a selector — `(~temp:* +get)` — as one
/// rule.
fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut rules = Vec::new();
    let mut selector: Option<Vec<&str>> = None;
    for word in text.split_whitespace() {
        match selector.as_mut() {
            Some(parts) => parts.push(word),
            None if word.starts_with('(') => selector = Some(vec![word]),
            None => rules.push(word.to_string()),
        }
        if word.ends_with(')')
            && let Some(parts) = selector.take()
        {
            rules.push(parts.join(" "));
        }
    }
    match selector {
        Some(parts) => Err(format!("selector {:?} has no closing `)`", parts.join(" "))),
        None => Ok(rules),
    }
}

fn check_rule(rule: &str) -> Result<(), String> {
    if let Some(inner) = rule.strip_prefix('(') {
        let inner = inner.strip_suffix(')').unwrap_or(inner);
        if inner.contains(['(', ')']) {
            return Err(format!("selector {rule:?} must not hold another selector"));
        }
        return inner.split_whitespace().try_for_each(check_rule);
    }
    if rule.chars().any(char::is_control) {
        return Err(format!("rule {rule:?} contains a control character"));
    }
    let lower = rule.to_ascii_lowercase();
    // A password rule is named by its first character only: the rest may
    // be a password someone typed.
    let shown = match rule.chars().next() {
        Some(first) if CONTROLLED_PREFIXES.contains(&first) => format!("`{first}…`"),
        _ => format!("{rule:?}"),
    };
    if CONTROLLED.contains(&lower.as_str()) || rule.starts_with(CONTROLLED_PREFIXES) {
        return Err(format!(
            "rule {shown} is refused: Hallpass sets the user's password and switches it on and off itself (rules `>` `<` `#` `!` nopass resetpass on off reset are not allowed); give only key, channel and command rules"
        ));
    }
    if KEYWORDS.contains(&lower.as_str()) || (rule.starts_with(PREFIXES) && rule.len() > 1) {
        return Ok(());
    }
    Err(format!(
        "unknown ACL rule {rule:?}; rules are key patterns (~app:*, %R~app:*), channel patterns (&news:*), commands (+get, -@dangerous, +@read), selectors in parentheses, or one of {}",
        KEYWORDS.join(", ")
    ))
}
