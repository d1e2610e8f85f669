//! What the rules need to know about a role: who may request it, for how
//! long, and how its requests are approved.

use crate::flow::FlowRules;
use crate::subject::Subject;

/// Total access per grant (the grant and all its extensions) when a role
/// does not set `max_total_duration`: three times its `max_duration`.
pub const DEFAULT_TOTAL_DURATION_FACTOR: u64 = 3;

/// A role's rules as stored now. Requests capture what they need when made
/// (their flow), and are checked against the current rules again when they
/// take effect (approval, activation, extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRules {
    pub name: String,
    pub target: String,
    pub default_duration_seconds: u64,
    pub max_duration_seconds: u64,
    /// Longest a grant may last with all its extensions.
    pub max_total_duration_seconds: u64,
    pub requestable_by: Vec<Subject>,
    pub approval: RoleApproval,
    pub emergency_access: bool,
    pub extension_requires_approval: bool,
}

/// How a role's requests are approved when no policy says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleApproval {
    Auto,
    /// The role's inline `approval {}` block.
    Inline(FlowRules),
    /// A named `approval_flow`, resolved by the caller.
    Named(String),
}

impl RoleRules {
    /// The total-duration cap for `max_duration` when none is configured.
    pub fn default_total_seconds(max_duration_seconds: u64) -> u64 {
        max_duration_seconds.saturating_mul(DEFAULT_TOTAL_DURATION_FACTOR)
    }
}
