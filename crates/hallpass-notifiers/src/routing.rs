//! The settings every notifier type shares: which roles and topics it
//! hears, whether it is a security notifier, how long before expiry it
//! warns, and how the audience's `user:`/`group:` subjects map to its own
//! addresses (Slack user and group ids, email addresses).
//!
//! ```hcl
//! config = {
//!   roles          = ["prod-db-write"]          # default: every role
//!   topics         = ["request.pending"]        # default: every topic it may hear
//!   security       = true                       # also hears security.* topics
//!   expiry_warning = "10m"                      # grant.expiring this long before the end
//!   recipients     = { "user:alice" = "alice@example.com", "group:sre" = "sre@example.com" }
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use hallpass_api::NotificationTopic;
use hallpass_core::duration::parse_duration;
use serde_json::{Map, Value};

use crate::NotifyError;

/// The keys of `config` read here, for every type.
pub const COMMON_SETTINGS: [&str; 5] = ["roles", "topics", "security", "expiry_warning", "recipients"];

/// How long before a grant's end its holder is warned, when a notifier
/// does not say.
pub const DEFAULT_EXPIRY_WARNING_SECONDS: u64 = 10 * 60;
/// The longest warning allowed: a day.
pub const MAX_EXPIRY_WARNING_SECONDS: u64 = 24 * 3600;

/// A notifier's routing settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// Only requests of these roles; `None`: every role.
    pub roles: Option<BTreeSet<String>>,
    /// Only these topics; `None`: every topic it may hear.
    pub topics: Option<BTreeSet<NotificationTopic>>,
    /// Hears `security.*` topics (and only a security notifier does).
    pub security: bool,
    pub expiry_warning_seconds: u64,
    /// `user:NAME` / `group:NAME` → this notifier's address for them.
    pub recipients: BTreeMap<String, String>,
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            roles: None,
            topics: None,
            security: false,
            expiry_warning_seconds: DEFAULT_EXPIRY_WARNING_SECONDS,
            recipients: BTreeMap::new(),
        }
    }
}

fn string_list(notifier_type: &str, value: &Value, key: &str) -> Result<BTreeSet<String>, NotifyError> {
    let invalid = || NotifyError::invalid(notifier_type, format!("`{key}` must be a list of names"));
    let items = value.as_array().ok_or_else(invalid)?;
    items
        .iter()
        .map(|item| item.as_str().map(str::to_string).ok_or_else(invalid))
        .collect()
}

fn parse_topics(notifier_type: &str, value: &Value) -> Result<BTreeSet<NotificationTopic>, NotifyError> {
    let names = string_list(notifier_type, value, "topics")?;
    names
        .iter()
        .map(|name| {
            NotificationTopic::parse(name).ok_or_else(|| {
                let known: Vec<&str> = NotificationTopic::ALL.iter().map(|t| t.as_str()).collect();
                NotifyError::invalid(
                    notifier_type,
                    format!("unknown topic {name:?} in `topics`; topics are: {}", known.join(", ")),
                )
            })
        })
        .collect()
}

fn parse_recipients(notifier_type: &str, value: &Value) -> Result<BTreeMap<String, String>, NotifyError> {
    let invalid = |message: String| NotifyError::invalid(notifier_type, message);
    let map = value.as_object().ok_or_else(|| {
        invalid("`recipients` must be a map of subjects to addresses, e.g. { \"user:alice\" = \"U0123\" }".into())
    })?;
    let mut recipients = BTreeMap::new();
    for (subject, address) in map {
        if !(subject.starts_with("user:") || subject.starts_with("group:")) || subject.ends_with(':') {
            return Err(invalid(format!(
                "`recipients` key {subject:?} must be `user:NAME` or `group:NAME`"
            )));
        }
        let address = address
            .as_str()
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| invalid(format!("`recipients` entry {subject:?} must be a non-empty string")))?;
        if subject.starts_with("user:")
            && let Some((other, _)) = recipients
                .iter()
                .find(|(other, value): &(&String, &String)| other.starts_with("user:") && value.as_str() == address)
        {
            // Replies (a Slack button) are mapped back through this table.
            return Err(invalid(format!(
                "`recipients` maps both {other:?} and {subject:?} to the same address; each user needs their own"
            )));
        }
        recipients.insert(subject.clone(), address.to_string());
    }
    Ok(recipients)
}

fn parse_warning(notifier_type: &str, value: &Value) -> Result<u64, NotifyError> {
    let invalid = |message: String| NotifyError::invalid(notifier_type, message);
    let text = value
        .as_str()
        .ok_or_else(|| invalid("`expiry_warning` must be a duration such as \"10m\"".into()))?;
    let seconds = parse_duration(text).map_err(|e| invalid(format!("`expiry_warning`: {e}")))?;
    if seconds > MAX_EXPIRY_WARNING_SECONDS {
        return Err(invalid(format!(
            "`expiry_warning` {text:?} is longer than the most allowed, 24h"
        )));
    }
    Ok(seconds)
}

impl Routing {
    /// Reads the common settings of `config`.
    pub fn parse(notifier_type: &str, config: &Map<String, Value>) -> Result<Routing, NotifyError> {
        let mut routing = Routing::default();
        if let Some(value) = config.get("roles") {
            routing.roles = Some(string_list(notifier_type, value, "roles")?);
        }
        if let Some(value) = config.get("topics") {
            routing.topics = Some(parse_topics(notifier_type, value)?);
        }
        if let Some(value) = config.get("security") {
            routing.security = value
                .as_bool()
                .ok_or_else(|| NotifyError::invalid(notifier_type, "`security` must be true or false"))?;
        }
        if let Some(value) = config.get("expiry_warning") {
            routing.expiry_warning_seconds = parse_warning(notifier_type, value)?;
        }
        if let Some(value) = config.get("recipients") {
            routing.recipients = parse_recipients(notifier_type, value)?;
        }
        if let Some(topics) = &routing.topics
            && !routing.security
            && let Some(topic) = topics.iter().find(|t| t.is_security())
        {
            return Err(NotifyError::invalid(
                notifier_type,
                format!(
                    "topic {:?} is for security notifiers; set `security = true`",
                    topic.as_str()
                ),
            ));
        }
        Ok(routing)
    }

    /// Whether this notifier hears `topic` about a request of `role`
    /// (`None`: not about a request, e.g. a lock).
    pub fn hears(&self, topic: NotificationTopic, role: Option<&str>) -> bool {
        if topic.is_security() && !self.security {
            return false;
        }
        if let Some(topics) = &self.topics
            && !topics.contains(&topic)
        {
            return false;
        }
        match (&self.roles, role) {
            (Some(roles), Some(role)) => roles.contains(role),
            _ => true,
        }
    }

    /// The addresses of `audience` this notifier knows, each once, in the
    /// audience's order.
    pub fn addresses(&self, audience: &[String]) -> Vec<String> {
        let mut seen = BTreeSet::new();
        audience
            .iter()
            .filter_map(|subject| self.recipients.get(subject))
            .filter(|address| seen.insert(address.as_str()))
            .cloned()
            .collect()
    }

    /// The principal whose address (e.g. Slack user id) is `address`,
    /// from the `user:` entries of `recipients`.
    pub fn principal_of(&self, address: &str) -> Option<&str> {
        self.recipients
            .iter()
            .find(|(subject, value)| subject.starts_with("user:") && value.as_str() == address)
            .and_then(|(subject, _)| subject.strip_prefix("user:"))
    }
}
