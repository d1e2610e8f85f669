//! Readers for the fields of an exported line whose form docs/audit.md pins
//! down: a `seq` from 1 up and hashes of exactly 64 lowercase hex digits.
//! Reading them strictly makes a malformed line unreadable at once, the
//! same way for every verifier, instead of failing later at a place that
//! depends on how each one happens to compare strings.

use serde::de::{self, Deserialize, Deserializer};

/// `deserialize_with` for `seq`: an integer from 1 to 2^64 − 1.
pub(super) fn seq<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    match u64::deserialize(deserializer)? {
        0 => Err(de::Error::custom("seq is 0: sequence numbers start at 1")),
        seq => Ok(seq),
    }
}

/// `deserialize_with` for `prev_hash` and `hash`: 64 lowercase hex digits.
pub(super) fn hash<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(text)
    } else {
        Err(de::Error::custom(
            "a hash is a SHA-256 digest written as 64 lowercase hex digits",
        ))
    }
}
