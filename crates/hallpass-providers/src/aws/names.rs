//! What a grant's STS sessions are called: the `RoleSessionName`, which the
//! revocation policy matches in `aws:userid`, and the `SourceIdentity`,
//! which CloudTrail records on every call made with the session.

use super::config::is_iam_name_char;
use crate::naming::login_name;

/// STS's limit on `RoleSessionName` and `SourceIdentity`.
pub const MAX_NAME_LEN: usize = 64;
/// STS's minimum length of both.
const MIN_NAME_LEN: usize = 2;

/// `hp_<principal>_<16 hex digits of SHA-256(grant id)>`, at most 64
/// characters of `[a-z0-9_]`: the same for every session of a grant, so its
/// revocation statement matches them all, and different for every grant.
pub fn session_name(principal: &str, grant_id: &str) -> String {
    login_name(principal, grant_id, MAX_NAME_LEN)
}

/// The principal as STS takes it for `SourceIdentity`: characters outside
/// `[A-Za-z0-9_+=,.@-]` become `_`, cut to 64 characters, padded with `_`
/// to STS's minimum of two. (An `aws:` prefix, which STS refuses, cannot
/// survive: `:` becomes `_`.)
pub fn source_identity(principal: &str) -> String {
    let mut identity: String = principal
        .chars()
        .map(|c| if is_iam_name_char(c) { c } else { '_' })
        .take(MAX_NAME_LEN)
        .collect();
    while identity.len() < MIN_NAME_LEN {
        identity.push('_');
    }
    identity
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts_valid(name: &str) -> bool {
        (MIN_NAME_LEN..=MAX_NAME_LEN).contains(&name.len()) && name.chars().all(is_iam_name_char)
    }

    #[test]
    fn hostile_principals_give_valid_distinct_names() {
        let long = "x".repeat(200);
        let hostile = [
            "alice",
            "o'brien\"; DROP ROLE x; --",
            "zoë@exämple.com",
            "a",
            "",
            "aws:federated",
            "\\${aws:username}*?",
            long.as_str(),
        ];
        for principal in hostile {
            let name = session_name(principal, "grant-1");
            assert!(sts_valid(&name), "{principal:?} -> {name:?}");
            assert_eq!(name, session_name(principal, "grant-1"));
            assert_ne!(name, session_name(principal, "grant-2"));
            let identity = source_identity(principal);
            assert!(sts_valid(&identity), "{principal:?} -> {identity:?}");
            assert!(!identity.starts_with("aws:"));
        }
        assert_eq!(source_identity("alice@example.com"), "alice@example.com");
        assert_eq!(source_identity("zoë x"), "zo__x");
        assert_eq!(source_identity(""), "__");
        assert_eq!(source_identity(&long).len(), MAX_NAME_LEN);
    }
}
