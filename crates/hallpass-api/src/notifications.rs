//! Notifiers (where people are told about requests and decisions), the
//! notification every notifier type is sent, and the deliveries an admin
//! inspects and re-sends when a receiver stayed down too long.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AccessRequest, SecretInfo, WriteOnly, formats};

/// Where people are told about requests and decisions: a signed webhook,
/// Slack, or email.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifierSpec {
    #[schema(value_type = formats::Name)]
    pub name: String,
    /// `webhook`, `slack` or `email`.
    #[serde(rename = "type")]
    pub notifier_type: String,
    /// Readable settings: what to send where (see docs/notifications.md),
    /// e.g. `{"url": "https://…", "roles": ["prod-db"]}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Write-only credentials (a webhook's `signing_secret`, Slack's
    /// `bot_token`, an SMTP `password`): sealed at rest, never returned.
    /// Omitted: the stored secrets stay as they are. Given: exactly these
    /// secrets are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<BTreeMap<String, WriteOnly>>,
}

/// A notifier as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Notifier {
    pub name: String,
    #[serde(rename = "type")]
    pub notifier_type: String,
    #[schema(value_type = Object)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The names of its secrets and when each last changed.
    pub secrets: Vec<SecretInfo>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a notification is about, and so who is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
pub enum NotificationTopic {
    /// A request waits for approval: to the approvers of its open stage.
    #[serde(rename = "request.pending")]
    RequestPending,
    /// A stage timed out and escalated: to its escalation approvers.
    #[serde(rename = "request.escalated")]
    RequestEscalated,
    /// Approved (all stages): to the requester.
    #[serde(rename = "request.approved")]
    RequestApproved,
    /// Denied: to the requester.
    #[serde(rename = "request.denied")]
    RequestDenied,
    /// Nobody decided within the pending TTL: to the requester.
    #[serde(rename = "request.timed_out")]
    RequestTimedOut,
    /// The grant is active: to the requester.
    #[serde(rename = "grant.active")]
    GrantActive,
    /// The grant ends soon: to its holder.
    #[serde(rename = "grant.expiring")]
    GrantExpiring,
    /// The grant was revoked by someone else: to its holder.
    #[serde(rename = "grant.revoked")]
    GrantRevoked,
    /// A break-glass grant was made: to security notifiers.
    #[serde(rename = "security.break_glass")]
    SecurityBreakGlass,
    /// A grant could not be revoked (it is retried): to security notifiers.
    #[serde(rename = "security.revoke_failed")]
    SecurityRevokeFailed,
    /// A principal was locked: to security notifiers.
    #[serde(rename = "security.locked")]
    SecurityLocked,
}

impl NotificationTopic {
    pub const ALL: [NotificationTopic; 11] = [
        Self::RequestPending,
        Self::RequestEscalated,
        Self::RequestApproved,
        Self::RequestDenied,
        Self::RequestTimedOut,
        Self::GrantActive,
        Self::GrantExpiring,
        Self::GrantRevoked,
        Self::SecurityBreakGlass,
        Self::SecurityRevokeFailed,
        Self::SecurityLocked,
    ];

    /// The stable name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestPending => "request.pending",
            Self::RequestEscalated => "request.escalated",
            Self::RequestApproved => "request.approved",
            Self::RequestDenied => "request.denied",
            Self::RequestTimedOut => "request.timed_out",
            Self::GrantActive => "grant.active",
            Self::GrantExpiring => "grant.expiring",
            Self::GrantRevoked => "grant.revoked",
            Self::SecurityBreakGlass => "security.break_glass",
            Self::SecurityRevokeFailed => "security.revoke_failed",
            Self::SecurityLocked => "security.locked",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|topic| topic.as_str() == name)
    }

    /// Security topics go only to notifiers marked `security = true`.
    pub fn is_security(self) -> bool {
        matches!(
            self,
            Self::SecurityBreakGlass | Self::SecurityRevokeFailed | Self::SecurityLocked
        )
    }

    /// Asks the audience for a decision (Slack shows Approve / Deny).
    pub fn asks_for_decision(self) -> bool {
        matches!(self, Self::RequestPending | Self::RequestEscalated)
    }
}

/// What every notifier is sent: the body of a webhook notifier's call, and
/// what Slack messages and emails are written from. Carries no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    /// The delivery's id: the same on every retry (a webhook's
    /// `webhook-id`), so receivers de-duplicate on it.
    pub id: String,
    #[serde(rename = "type")]
    pub topic: NotificationTopic,
    /// When the event that caused it happened.
    pub time: DateTime<Utc>,
    /// The audit event that caused it (`seq` in the audit log).
    pub event_seq: u64,
    /// Who caused it (`system` for the scheduler).
    pub actor: String,
    /// Who is told: `user:NAME` and `group:NAME` subjects; a notifier maps
    /// them to its own addresses (`recipients`).
    pub audience: Vec<String>,
    /// The request as it was when the notification was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<AccessRequest>,
    /// For `security.locked`: the principal; for `security.revoke_failed`:
    /// the target's error; for decisions: the comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Where to see the request (from the server's `public_url`).
    pub links: NotificationLinks,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationLinks {
    /// `GET` this (with a token) for the request's current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    Delivered,
    /// Gave up after the retry budget; re-send with
    /// `POST /v1/notifications/{id}/retry`.
    Dead,
    /// Not sent: outdated before its time (an expiry warning for a grant
    /// already ended or extended), or its notifier was deleted.
    Dropped,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Dropped => "dropped",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Dead, Self::Dropped]
            .into_iter()
            .find(|state| state.as_str() == name)
    }
}

/// One notification on its way to one notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub notifier: String,
    #[serde(rename = "type")]
    pub topic: NotificationTopic,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub event_seq: u64,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// When it is (or was last) due.
    pub next_attempt_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed (never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `GET /v1/notifications/failed`: dead-lettered deliveries, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<Delivery>,
}
