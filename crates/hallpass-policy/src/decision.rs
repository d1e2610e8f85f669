//! The decision: what the rules of `package hallpass.request` say about one
//! request, read from regorus values and checked for type.

use regorus::Value;

use crate::PolicyError;

/// What the policies decided about one request or extension.
///
/// The default (nothing denied, not auto-approved, no flow, no cap) is what
/// an empty policy set decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyDecision {
    /// Why the request is refused; empty when it is not. Sorted, no repeats.
    pub deny: Vec<String>,
    /// Approve at once, without the role's approval flow.
    pub auto_approve: bool,
    /// The approval flow to use instead of the role's.
    pub approval_flow: Option<String>,
    /// The longest duration allowed, in seconds (the lowest of all caps).
    pub max_duration_seconds: Option<u64>,
}

/// The rules of `package hallpass.request` that make up the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecisionRule {
    Deny,
    AutoApprove,
    ApprovalFlow,
    MaxDurationSeconds,
}

impl DecisionRule {
    pub(crate) const ALL: [DecisionRule; 4] = [
        DecisionRule::Deny,
        DecisionRule::AutoApprove,
        DecisionRule::ApprovalFlow,
        DecisionRule::MaxDurationSeconds,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            DecisionRule::Deny => "deny",
            DecisionRule::AutoApprove => "auto_approve",
            DecisionRule::ApprovalFlow => "approval_flow",
            DecisionRule::MaxDurationSeconds => "max_duration_seconds",
        }
    }

    /// The path `Engine::eval_rule` takes.
    pub(crate) fn path(self) -> &'static str {
        match self {
            DecisionRule::Deny => "data.hallpass.request.deny",
            DecisionRule::AutoApprove => "data.hallpass.request.auto_approve",
            DecisionRule::ApprovalFlow => "data.hallpass.request.approval_flow",
            DecisionRule::MaxDurationSeconds => "data.hallpass.request.max_duration_seconds",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            DecisionRule::Deny => "a set of strings (deny contains msg if { ... })",
            DecisionRule::AutoApprove => "a boolean (auto_approve if { ... })",
            DecisionRule::ApprovalFlow => "a non-empty string, the name of an approval flow",
            DecisionRule::MaxDurationSeconds => {
                "a positive whole number of seconds, or a set of them (max_duration_seconds contains 3600 if { ... })"
            }
        }
    }

    /// Stores `value` (never undefined) into `decision`.
    pub(crate) fn apply(self, value: &Value, decision: &mut PolicyDecision) -> Result<(), PolicyError> {
        match self {
            DecisionRule::Deny => {
                let mut messages = Vec::new();
                for item in collection(value).ok_or_else(|| self.wrong(value))? {
                    match item {
                        Value::String(message) => messages.push(message.to_string()),
                        other => return Err(self.wrong_item(other)),
                    }
                }
                messages.sort();
                messages.dedup();
                decision.deny = messages;
            }
            DecisionRule::AutoApprove => match value {
                Value::Bool(approve) => decision.auto_approve = *approve,
                other => return Err(self.wrong(other)),
            },
            DecisionRule::ApprovalFlow => match value {
                Value::String(flow) if !flow.trim().is_empty() => decision.approval_flow = Some(flow.to_string()),
                other => return Err(self.wrong(other)),
            },
            DecisionRule::MaxDurationSeconds => {
                decision.max_duration_seconds = match value {
                    Value::Number(_) => Some(self.seconds(value)?),
                    // Each module may add its own cap; the lowest one wins. An
                    // empty set (no cap applied) means no cap.
                    other => {
                        let mut lowest: Option<u64> = None;
                        for item in collection(other).ok_or_else(|| self.wrong(other))? {
                            let seconds = self.seconds(item).map_err(|_| self.wrong_item(item))?;
                            lowest = Some(lowest.map_or(seconds, |l| l.min(seconds)));
                        }
                        lowest
                    }
                };
            }
        }
        Ok(())
    }

    fn seconds(self, value: &Value) -> Result<u64, PolicyError> {
        match value {
            Value::Number(number) => match number.as_u64() {
                Some(seconds) if seconds > 0 => Ok(seconds),
                _ => Err(self.wrong(value)),
            },
            other => Err(self.wrong(other)),
        }
    }

    fn wrong(self, found: &Value) -> PolicyError {
        PolicyError::Decision(format!(
            "data.hallpass.request.{} is {}; expected {}",
            self.name(),
            describe(found),
            self.expected()
        ))
    }

    fn wrong_item(self, found: &Value) -> PolicyError {
        PolicyError::Decision(format!(
            "data.hallpass.request.{} contains {}; expected {}",
            self.name(),
            describe(found),
            self.expected()
        ))
    }
}

/// The items of a set or an array.
fn collection(value: &Value) -> Option<Vec<&Value>> {
    match value {
        Value::Set(set) => Some(set.iter().collect()),
        Value::Array(array) => Some(array.iter().collect()),
        _ => None,
    }
}

/// "a string: \"yes\"", shortened so a large value does not flood the audit log.
fn describe(value: &Value) -> String {
    const MAX: usize = 80;
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Set(_) => "a set",
        Value::Object(_) => "an object",
        Value::Undefined => "undefined",
    };
    if matches!(value, Value::Null | Value::Undefined) {
        return kind.to_string();
    }
    let mut text = value.to_string();
    if text.len() > MAX {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    format!("{kind}: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(rule: DecisionRule, json: &str) -> Result<PolicyDecision, PolicyError> {
        let mut decision = PolicyDecision::default();
        rule.apply(&Value::from_json_str(json).unwrap(), &mut decision)?;
        Ok(decision)
    }

    #[test]
    fn max_duration_takes_the_lowest_cap() {
        let decision = apply(DecisionRule::MaxDurationSeconds, "[7200, 3600, 14400]").unwrap();
        assert_eq!(decision.max_duration_seconds, Some(3600));
        let decision = apply(DecisionRule::MaxDurationSeconds, "[]").unwrap();
        assert_eq!(decision.max_duration_seconds, None);
        let decision = apply(DecisionRule::MaxDurationSeconds, "3600.0").unwrap();
        assert_eq!(decision.max_duration_seconds, Some(3600));
    }

    #[test]
    fn max_duration_must_be_a_positive_whole_number() {
        for bad in ["0", "-5", "1.5", "\"3600\"", "[3600, \"x\"]", "{\"a\": 1}"] {
            let error = apply(DecisionRule::MaxDurationSeconds, bad).unwrap_err();
            assert!(matches!(error, PolicyError::Decision(_)), "{bad}: {error}");
        }
    }

    #[test]
    fn deny_is_sorted_and_deduplicated() {
        let decision = apply(DecisionRule::Deny, r#"["b", "a", "b"]"#).unwrap();
        assert_eq!(decision.deny, vec!["a", "b"]);
    }

    #[test]
    fn wrong_types_say_what_was_found_and_what_is_expected() {
        let error = apply(DecisionRule::AutoApprove, "\"yes\"").unwrap_err();
        assert_eq!(
            error.to_string(),
            "policy decision is invalid: data.hallpass.request.auto_approve is a string: \"yes\"; \
             expected a boolean (auto_approve if { ... })"
        );
        let error = apply(DecisionRule::Deny, "[1]").unwrap_err();
        assert!(error.to_string().contains("deny contains a number: 1"), "{error}");
        let error = apply(DecisionRule::ApprovalFlow, "\" \"").unwrap_err();
        assert!(error.to_string().contains("approval_flow is a string"), "{error}");
    }

    #[test]
    fn long_values_are_shortened() {
        let long = format!("\"{}\"", "é".repeat(200));
        let error = apply(DecisionRule::AutoApprove, &long).unwrap_err();
        assert!(error.to_string().contains('…'), "{error}");
    }
}
