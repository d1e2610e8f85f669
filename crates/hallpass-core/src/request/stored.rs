//! The stored form of a request record: lean JSON.
//!
//! A record's serde form is what the store writes (the API has its own
//! types). It leaves out every member that holds what its absence decodes
//! to: `None`, an empty list, `false`, a zero `revoke_attempts`. Each such
//! field says so itself (`default` with `skip_serializing_if`), so decoding
//! takes both this form and the full one earlier builds wrote, and the store
//! needs no migration. `credential` is the provider's JSON and is kept as it
//! was given, nulls and all.
//!
//! The policy decision is the one member whose type is serialised elsewhere
//! too, in full, into audit events, which are hashed: so its lean form is
//! written here, for the record only.

use serde::{Serialize, Serializer};

use super::PolicyRecord;

/// `skip_serializing_if` for a count whose absence decodes to 0.
pub(super) fn is_zero(count: &u32) -> bool {
    *count == 0
}

/// `serialize_with` for a record's (or an extension's) policy decision:
/// [`PolicyRecord`]'s members, each of which decodes to its default when
/// absent, without those that hold it.
pub(super) fn lean_policy<S: Serializer>(policy: &Option<PolicyRecord>, serializer: S) -> Result<S::Ok, S::Error> {
    policy.as_ref().map(LeanPolicy::of).serialize(serializer)
}

/// A [`PolicyRecord`] borrowed, with its members' names and order.
#[derive(Serialize)]
struct LeanPolicy<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    policy_hash: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    deny: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    auto_approve: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval_flow: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_duration_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl<'a> LeanPolicy<'a> {
    fn of(policy: &'a PolicyRecord) -> Self {
        // No `..`: a member added to `PolicyRecord` fails to compile here
        // until it is stored, instead of being silently left out.
        let PolicyRecord {
            policy_hash,
            deny,
            auto_approve,
            approval_flow,
            max_duration_seconds,
            error,
        } = policy;
        LeanPolicy {
            policy_hash,
            deny,
            auto_approve: *auto_approve,
            approval_flow: approval_flow.as_deref(),
            max_duration_seconds: *max_duration_seconds,
            error: error.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests;
