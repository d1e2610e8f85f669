//! A Terraform plan a request is bound to. The requester attaches the
//! SHA-256 of the saved plan file and what it changes; approvers see that
//! summary, policies read it (`input.request.plan`), and the credential is
//! for applying exactly that file: a client compares the file's digest
//! with the approved one before it applies.

use serde::{Deserialize, Serialize};

use crate::error::RuleError;
use crate::text::first_disguising_char;

/// Most resource addresses a plan summary may list, all actions together.
pub const MAX_PLAN_ADDRESSES: usize = 10_000;
/// Longest resource address.
pub const MAX_ADDRESS_CHARS: usize = 1024;

/// A saved Terraform plan: its digest and the resources it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TerraformPlan {
    /// SHA-256 of the plan file (`terraform plan -out FILE`), 64
    /// lower-case hex digits.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// Addresses of the resources it creates, e.g. `aws_iam_role.deploy`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = addresses_schema))]
    pub create: Vec<String>,
    /// Changed in place.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = addresses_schema))]
    pub update: Vec<String>,
    /// Destroyed and created again.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = addresses_schema))]
    pub replace: Vec<String>,
    /// Destroyed.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = addresses_schema))]
    pub delete: Vec<String>,
}

/// An array of resource addresses: 1 to [`MAX_ADDRESS_CHARS`] characters
/// each, none of them disguising (as [`TerraformPlan::check`] holds them).
#[cfg(feature = "openapi")]
fn addresses_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let item = ObjectBuilder::new().schema_type(Type::String).pattern(Some(format!(
        "^[^{}]{{1,{MAX_ADDRESS_CHARS}}}$",
        crate::text::DISGUISING_PATTERN
    )));
    ArrayBuilder::new()
        .items(item)
        .max_items(Some(MAX_PLAN_ADDRESSES))
        .description(Some(format!(
            "Resource addresses, e.g. `aws_iam_role.deploy`; at most {MAX_PLAN_ADDRESSES} in the four lists together."
        )))
        .build()
}

impl TerraformPlan {
    /// Checks the digest and the addresses; says what is wrong and where.
    pub fn check(&self) -> Result<(), RuleError> {
        let invalid = |message: String| Err(RuleError::InvalidPlan(message));
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return invalid(format!(
                "plan.sha256 must be the SHA-256 of the plan file as 64 lower-case hex digits, not {:?}",
                self.sha256.chars().take(80).collect::<String>()
            ));
        }
        let total = self.create.len() + self.update.len() + self.replace.len() + self.delete.len();
        if total > MAX_PLAN_ADDRESSES {
            return invalid(format!(
                "the plan lists {total} resource changes; at most {MAX_PLAN_ADDRESSES} can be attached"
            ));
        }
        for (action, addresses) in self.actions() {
            for (index, address) in addresses.iter().enumerate() {
                let chars = address.chars().count();
                if chars == 0 || chars > MAX_ADDRESS_CHARS {
                    return invalid(format!(
                        "plan.{action}[{index}] must be a resource address of 1 to {MAX_ADDRESS_CHARS} characters"
                    ));
                }
                if let Some(found) = first_disguising_char(address) {
                    return invalid(format!(
                        "plan.{action}[{index}] holds a control or direction-changing character ({found})"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Each action with its addresses, in a fixed order.
    pub fn actions(&self) -> [(&'static str, &[String]); 4] {
        [
            ("create", &self.create),
            ("update", &self.update),
            ("replace", &self.replace),
            ("delete", &self.delete),
        ]
    }

    /// `2 to create, 1 to replace` (only the actions it has), or `no changes`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .actions()
            .iter()
            .filter(|(_, addresses)| !addresses.is_empty())
            .map(|(action, addresses)| format!("{} to {action}", addresses.len()))
            .collect();
        if parts.is_empty() {
            "no changes".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// What audit events say of it: the digest and the counts.
    pub fn audit_data(&self) -> serde_json::Value {
        serde_json::json!({
            "sha256": self.sha256,
            "create": self.create.len(), "update": self.update.len(),
            "replace": self.replace.len(), "delete": self.delete.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> TerraformPlan {
        TerraformPlan {
            sha256: "a".repeat(64),
            create: vec!["terraform_data.a".into(), "terraform_data.b".into()],
            replace: vec!["module.x.aws_iam_role.r[\"k\"]".into()],
            ..TerraformPlan::default()
        }
    }

    #[test]
    fn plans_are_checked_and_summarised() {
        plan().check().unwrap();
        assert_eq!(plan().summary(), "2 to create, 1 to replace");
        assert_eq!(TerraformPlan::default().summary(), "no changes");
        for (broken, expected) in [
            (
                TerraformPlan {
                    sha256: "A".repeat(64),
                    ..plan()
                },
                "64 lower-case hex",
            ),
            (
                TerraformPlan {
                    sha256: "ab".into(),
                    ..plan()
                },
                "64 lower-case hex",
            ),
            (
                TerraformPlan {
                    delete: vec![String::new()],
                    ..plan()
                },
                "plan.delete[0] must be",
            ),
            (
                TerraformPlan {
                    update: vec!["x".repeat(1025)],
                    ..plan()
                },
                "plan.update[0] must be",
            ),
            (
                TerraformPlan {
                    create: vec!["a\u{202e}b".into()],
                    ..plan()
                },
                "plan.create[0] holds",
            ),
            (
                TerraformPlan {
                    create: vec!["a".into(); MAX_PLAN_ADDRESSES + 1],
                    ..plan()
                },
                "at most 10000",
            ),
        ] {
            let error = broken.check().unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
