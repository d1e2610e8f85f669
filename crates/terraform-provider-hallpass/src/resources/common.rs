//! What several resources share: reading a required name, planning a
//! delete, the attributes whose change replaces the object, durations.

use rmpv::Value;

use super::Planned;
use crate::diag;
use crate::proto::tfplugin6::{AttributePath, Diagnostic};
use crate::value::{Known, Object};

/// A string attribute that must be known and set; `what` names the
/// object in the error (`approval flow`).
pub fn required(object: &Object, name: &str, what: &str) -> Result<String, Vec<Diagnostic>> {
    object.string(name).ok().and_then(Known::value).ok_or_else(|| {
        vec![diag::error(
            "Missing value",
            format!("The {what}'s {name} is not known."),
        )]
    })
}

/// The plan of a destroy.
pub fn deleted() -> Planned {
    Planned {
        state: Value::Nil,
        requires_replace: Vec::new(),
    }
}

/// The paths of `names` whose value differs between an existing `prior`
/// and `proposed`: changing any of them replaces the object.
pub fn replaced(prior: &Object, proposed: &Object, names: &[&str]) -> Vec<AttributePath> {
    if prior.is_null() {
        return Vec::new();
    }
    names
        .iter()
        .filter(|name| prior.raw(name) != proposed.raw(name))
        .map(|name| diag::path(&[name]))
        .collect()
}

/// The problem with a duration text, if it is known and not one.
pub fn duration_problem(object: &Object, name: &str) -> Option<String> {
    match object.string(name) {
        Ok(Known::Value(text)) => hallpass_core::parse_duration(&text).err().map(|e| e.to_string()),
        Ok(_) => None,
        Err(error) => Some(error.to_string()),
    }
}

/// A duration in seconds, if it is known, set and valid.
pub fn seconds(object: &Object, name: &str) -> Option<u64> {
    let text = object.string(name).ok()?.value()?;
    hallpass_core::parse_duration(&text).ok()
}

/// A list of strings as a MessagePack array, or null when empty.
pub fn strings_or_null(items: &[String]) -> Value {
    if items.is_empty() {
        Value::Nil
    } else {
        Value::Array(items.iter().map(|item| Value::from(item.as_str())).collect())
    }
}

/// A text, or null when empty.
pub fn text_or_null(text: &str) -> Value {
    if text.is_empty() { Value::Nil } else { Value::from(text) }
}
