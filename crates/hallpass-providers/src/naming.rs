//! Names of the logins Hallpass creates on a target (database roles, users,
//! ACL users): recognisable, derived only from the principal and the grant
//! id so issuing twice finds the same login, and within the target's limit.

use sha2::{Digest, Sha256};

/// Prefix of every login Hallpass creates; revocation and audits look for it.
pub const LOGIN_PREFIX: &str = "hp_";
/// Hex digits of the grant-id digest in a login name (64 bits).
const GRANT_DIGITS: usize = 16;

/// `hp_<principal>_<16 hex digits of SHA-256(grant id)>`, at most `max_len`
/// bytes. The principal part keeps ASCII letters and digits (lowercased)
/// and turns anything else into `_`, then is cut to fit; the digest keeps
/// names of different grants apart however the principal was cut.
pub fn login_name(principal: &str, grant_id: &str, max_len: usize) -> String {
    let digest = hex::encode(Sha256::digest(grant_id.as_bytes()));
    let fixed = LOGIN_PREFIX.len() + 1 + GRANT_DIGITS;
    let room = max_len.saturating_sub(fixed);
    let slug: String = principal
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(room)
        .collect();
    format!("{LOGIN_PREFIX}{slug}_{}", &digest[..GRANT_DIGITS])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_bounded_and_plain() {
        let name = login_name("alice", "0192-abc", 63);
        assert_eq!(name, login_name("alice", "0192-abc", 63));
        assert!(name.starts_with("hp_alice_"), "{name}");
        assert_ne!(name, login_name("alice", "0192-abd", 63));
        let hostile = login_name(&format!("o'brien\"; DROP ROLE x; -- \\ é{}", "x".repeat(200)), "g", 32);
        assert_eq!(hostile.len(), 32, "{hostile}");
        assert!(
            hostile
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{hostile}"
        );
        assert_eq!(login_name("", "g", 63).len(), LOGIN_PREFIX.len() + 1 + GRANT_DIGITS);
    }
}
