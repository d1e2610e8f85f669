//! The kinds of audit event: one enum, serialised as the dotted strings the
//! audit log has always used (`request.created`, `grant.expired`, ...).
//!
//! Every state change names its kind here, and readers (the CLI, tests,
//! alerting) match on the enum instead of on strings. A kind this build does
//! not know (written by a newer server) reads as [`AuditKind::Other`] so an
//! older verifier still verifies the chain; the hash covers the string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! audit_kinds {
    ($( $(#[$doc:meta])* $variant:ident => $text:literal, )*) => {
        /// What an audit event records.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum AuditKind {
            $( $(#[$doc])* $variant, )*
            /// A kind written by a newer release.
            Other(String),
        }

        impl AuditKind {
            /// Every kind this build writes, in declaration order.
            pub const ALL: &'static [AuditKind] = &[$(AuditKind::$variant),*];

            pub fn as_str(&self) -> &str {
                match self {
                    $( AuditKind::$variant => $text, )*
                    AuditKind::Other(text) => text,
                }
            }
        }

        impl FromStr for AuditKind {
            type Err = std::convert::Infallible;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Ok(match text {
                    $( $text => AuditKind::$variant, )*
                    other => AuditKind::Other(other.to_string()),
                })
            }
        }
    };
}

audit_kinds! {
    /// A request was made (pending, approved, scheduled or break-glass).
    RequestCreated => "request.created",
    /// A request was denied: by policy, by an approver, or because its role
    /// or requester no longer allowed it when it was to take effect.
    RequestDenied => "request.denied",
    /// One approval was counted.
    RequestApproved => "request.approved",
    RequestCancelled => "request.cancelled",
    /// Still pending at its flow's pending TTL.
    RequestTimedOut => "request.timed_out",
    /// An approval stage's timeout passed: its escalation approvers may approve.
    RequestEscalated => "request.escalated",
    /// A scheduled request's start came.
    RequestStartReached => "request.start_reached",
    /// Credentials were issued; access time starts.
    GrantActivated => "grant.activated",
    GrantExpired => "grant.expired",
    GrantRevoked => "grant.revoked",
    GrantReleased => "grant.released",
    /// Ending the grant failed on the target; retried with backoff.
    GrantRevokeFailed => "grant.revoke_failed",
    /// The part of a credential handed out once (the private key Hallpass
    /// made for an SSH grant) went to the requester.
    GrantSecretDelivered => "grant.secret_delivered",
    /// An extension was approved and the expiry moved.
    GrantExtended => "grant.extended",
    GrantExtensionRequested => "grant.extension_requested",
    /// One approval of a pending extension was counted.
    GrantExtensionApproval => "grant.extension_approval",
    GrantExtensionDenied => "grant.extension_denied",
    ReviewAcknowledged => "review.acknowledged",
    TokenCreated => "token.created",
    TokenRevoked => "token.revoked",
    /// A grant's token (a `hallpass` target) follows its grant's extension.
    TokenExtended => "token.extended",
    /// A single sign-on session's groups changed at the identity provider.
    TokenGroupsChanged => "token.groups_changed",
    /// An admin stopped a principal: tokens revoked, grants ended, requests refused.
    PrincipalLocked => "principal.locked",
    PrincipalUnlocked => "principal.unlocked",
    TargetCreated => "target.created",
    TargetUpdated => "target.updated",
    TargetDeleted => "target.deleted",
    /// Credentials found in a target's configuration (stored by an earlier
    /// release) were moved into its sealed secrets at start-up.
    TargetSecretsUpgraded => "target.secrets_upgraded",
    RoleCreated => "role.created",
    RoleUpdated => "role.updated",
    RoleDeleted => "role.deleted",
    ApprovalFlowCreated => "approval_flow.created",
    ApprovalFlowUpdated => "approval_flow.updated",
    ApprovalFlowDeleted => "approval_flow.deleted",
    PolicyCreated => "policy.created",
    PolicyUpdated => "policy.updated",
    PolicyDeleted => "policy.deleted",
    NotifierCreated => "notifier.created",
    NotifierUpdated => "notifier.updated",
    NotifierDeleted => "notifier.deleted",
    /// A notification's delivery gave up after its retry budget.
    NotificationDeadLettered => "notification.dead_lettered",
    /// An admin sent a dead-lettered notification again.
    NotificationRetried => "notification.retried",
    /// A signed statement of the chain head (see docs/audit.md).
    AuditCheckpoint => "audit.checkpoint",
}

/// The three configuration changes, for the five kinds of configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigChange {
    Created,
    Updated,
    Deleted,
}

/// What kind of configuration document changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSubject {
    Target,
    Role,
    ApprovalFlow,
    Policy,
    Notifier,
}

impl AuditKind {
    /// The event for a configuration change.
    pub fn config(subject: ConfigSubject, change: ConfigChange) -> AuditKind {
        use AuditKind as K;
        use ConfigChange as C;
        use ConfigSubject as S;
        match (subject, change) {
            (S::Target, C::Created) => K::TargetCreated,
            (S::Target, C::Updated) => K::TargetUpdated,
            (S::Target, C::Deleted) => K::TargetDeleted,
            (S::Role, C::Created) => K::RoleCreated,
            (S::Role, C::Updated) => K::RoleUpdated,
            (S::Role, C::Deleted) => K::RoleDeleted,
            (S::ApprovalFlow, C::Created) => K::ApprovalFlowCreated,
            (S::ApprovalFlow, C::Updated) => K::ApprovalFlowUpdated,
            (S::ApprovalFlow, C::Deleted) => K::ApprovalFlowDeleted,
            (S::Policy, C::Created) => K::PolicyCreated,
            (S::Policy, C::Updated) => K::PolicyUpdated,
            (S::Policy, C::Deleted) => K::PolicyDeleted,
            (S::Notifier, C::Created) => K::NotifierCreated,
            (S::Notifier, C::Updated) => K::NotifierUpdated,
            (S::Notifier, C::Deleted) => K::NotifierDeleted,
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<AuditKind> for String {
    fn from(kind: AuditKind) -> String {
        kind.as_str().to_string()
    }
}

impl PartialEq<str> for AuditKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for AuditKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for AuditKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuditKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let Ok(kind) = text.parse();
        Ok(kind)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for AuditKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let known: Vec<&str> = AuditKind::ALL.iter().map(AuditKind::as_str).collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "Audit event kind. This release writes: {}. Newer releases may add kinds.",
                known.join(", ")
            )))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for AuditKind {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_strings() {
        for kind in AuditKind::ALL {
            let text = serde_json::to_string(kind).unwrap();
            let back: AuditKind = serde_json::from_str(&text).unwrap();
            assert_eq!(&back, kind);
            assert!(!matches!(back, AuditKind::Other(_)), "{text} must be known");
        }
        assert_eq!(AuditKind::GrantExpired.as_str(), "grant.expired");
    }

    #[test]
    fn every_kind_has_its_own_string() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in AuditKind::ALL {
            assert!(seen.insert(kind.as_str()), "{} twice", kind.as_str());
        }
    }

    #[test]
    fn unknown_kinds_are_kept_verbatim() {
        let kind: AuditKind = serde_json::from_str("\"grant.teleported\"").unwrap();
        assert_eq!(kind, AuditKind::Other("grant.teleported".into()));
        assert_eq!(serde_json::to_string(&kind).unwrap(), "\"grant.teleported\"");
    }
}
