//! Access configuration files (`hallpass apply -f FILE.hcl`): `target`,
//! `role`, `approval_flow`, `policy` and `notifier` blocks, checked here so mistakes are
//! reported with their position before anything is sent to the server.

use std::collections::HashMap;
use std::path::Path;

use hallpass_api::{ApplyRequest, ApprovalSpec, NotifierSpec, RoleSpec, TargetSpec};
use hallpass_core::Subject;
use hallpass_core::subject::is_valid_name;
use hcl_edit::structure::{Block, BlockLabel, Structure};

use crate::body::{Attrs, Shape};
use crate::error::{ConfigErrors, Reporter, parse_body, read_file, start_of};
use crate::value::{Literal, LiteralValue};

const TOP: Shape = Shape {
    attributes: &[],
    blocks: &["target", "role", "approval_flow", "policy", "notifier"],
    verbatim: &[],
};
const TARGET: Shape = Shape {
    attributes: &["type", "config", "secrets"],
    blocks: &[],
    verbatim: &["secrets"],
};
const ROLE: Shape = Shape {
    attributes: &[
        "target",
        "description",
        "default_duration",
        "max_duration",
        "max_total_duration",
        "requestable_by",
        "labels",
        "approval_flow",
        "auto_approve",
        "emergency_access",
        "extension_requires_approval",
        "grant",
    ],
    blocks: &["approval", "grant"],
    verbatim: &[],
};
const APPROVAL: Shape = Shape {
    attributes: &["approvers", "required"],
    blocks: &[],
    verbatim: &[],
};

/// Parses an access configuration. `file_name` is used in messages, and its
/// directory is where a policy's `source_file` is looked up (the current
/// directory when it has none). Policy files are read and compiled here.
/// The result always has `dry_run: false`; the caller decides.
pub fn parse_apply_str(source: &str, file_name: &str) -> Result<ApplyRequest, ConfigErrors> {
    // `Path::parent` of a bare file name is "", which joins like the current
    // directory and keeps the displayed paths as the user wrote them.
    let base_dir = Path::new(file_name).parent().unwrap_or(Path::new(""));
    let body = parse_body(source, file_name)?;
    let mut reporter = Reporter::new(source, file_name);
    let (_, blocks) = reporter.walk(&body, &TOP, "at the top level".to_string(), 0);
    let mut request = ApplyRequest::default();
    // Offsets of the first definition of each (kind, name), to point the
    // duplicate error back at it.
    let mut seen: HashMap<(&str, String), usize> = HashMap::new();
    for block in blocks {
        let kind = block.ident.as_str();
        let Some((name, name_at)) = reporter.block_name(block) else {
            continue;
        };
        if let Some(first) = seen.get(&(kind, name.clone())) {
            let message = format!(
                "duplicate {kind} \"{name}\": it is already defined at {}; rename or remove one of them",
                reporter.describe_position(*first)
            );
            reporter.error(name_at, message);
            continue;
        }
        seen.insert((kind, name.clone()), name_at);
        match kind {
            "target" => request.targets.extend(reporter.target(block, name, base_dir)),
            "role" => request.roles.extend(reporter.role(block, name)),
            "approval_flow" => request.approval_flows.extend(reporter.approval_flow(block, name)),
            "notifier" => request.notifiers.extend(reporter.notifier(block, name, base_dir)),
            _ => request.policies.extend(reporter.policy(block, name, base_dir)),
        }
    }
    reporter.finish(request)
}

/// Reads and parses an access configuration file.
pub fn parse_apply_file(path: &Path) -> Result<ApplyRequest, ConfigErrors> {
    let (source, file) = read_file(path)?;
    parse_apply_str(&source, &file)
}

impl Reporter<'_> {
    /// The single quoted label of a top-level block, if it is one and a valid
    /// name.
    pub(crate) fn block_name(&mut self, block: &Block) -> Option<(String, usize)> {
        let kind = block.ident.as_str();
        let usage = format!("write it as {kind} \"NAME\" {{ ... }}");
        match block.labels.as_slice() {
            [BlockLabel::String(label)] => {
                let at = start_of(label);
                if is_valid_name(label) {
                    return Some((label.value().clone(), at));
                }
                self.error(
                    at,
                    format!(
                        "{kind} name {:?} is not valid: use 1 to 64 letters, digits, '.', '_', '-' or '@', \
                         starting with a letter or digit",
                        label.value()
                    ),
                );
            }
            [BlockLabel::Ident(label)] => {
                let message = format!("the {kind} name must be quoted; {usage}");
                self.error(start_of(label), message);
            }
            [] => self.error(start_of(&block.ident), format!("{kind} block has no name; {usage}")),
            [_, extra, ..] => {
                self.error(
                    start_of(extra),
                    format!("{kind} block has more than one label; {usage}"),
                );
            }
        }
        None
    }

    fn target(&mut self, block: &Block, name: String, base_dir: &Path) -> Option<TargetSpec> {
        let place = format!("in target \"{name}\"");
        let (attrs, _) = self.walk(&block.body, &TARGET, place, start_of(&block.ident));
        let target_type = attrs.required(self, "type", "type = \"jwt\"", Self::string);
        let config = attrs.optional(self, "config", Self::json_object);
        let secrets = match attrs.get("secrets") {
            Some(_) => Some(self.secrets(block, &format!("target \"{name}\""), base_dir)?),
            None => None,
        };
        Some(TargetSpec {
            name,
            target_type: target_type?,
            config: config.unwrap_or_default(),
            secrets,
        })
    }

    /// A `notifier` block: the same shape as a target's.
    fn notifier(&mut self, block: &Block, name: String, base_dir: &Path) -> Option<NotifierSpec> {
        let place = format!("in notifier \"{name}\"");
        let (attrs, _) = self.walk(&block.body, &TARGET, place, start_of(&block.ident));
        let notifier_type = attrs.required(self, "type", "type = \"webhook\"", Self::string);
        let config = attrs.optional(self, "config", Self::json_object);
        let secrets = match attrs.get("secrets") {
            Some(_) => Some(self.secrets(block, &format!("notifier \"{name}\""), base_dir)?),
            None => None,
        };
        Some(NotifierSpec {
            name,
            notifier_type: notifier_type?,
            config: config.unwrap_or_default(),
            secrets,
        })
    }

    fn role(&mut self, block: &Block, name: String) -> Option<RoleSpec> {
        let place = format!("in role \"{name}\"");
        let at = start_of(&block.ident);
        let (attrs, blocks) = self.walk(&block.body, &ROLE, place, at);
        let (grant_blocks, approval_blocks): (Vec<_>, Vec<_>) =
            blocks.into_iter().partition(|block| block.ident.as_str() == "grant");
        let grant_attribute = attrs.optional(self, "grant", Self::json_object);
        let grant = match grant_blocks.as_slice() {
            [] => Some(grant_attribute.unwrap_or_default()),
            [only] if attrs.get("grant").is_some() => {
                let message = format!("role \"{name}\" sets grant twice, as an attribute and as a block; keep one");
                self.error(start_of(&only.ident), message);
                None
            }
            [only] => self.grant(only, &name),
            [_, extra, ..] => {
                let message = format!("role \"{name}\" has more than one grant block; merge them into one");
                self.error(start_of(&extra.ident), message);
                None
            }
        };

        let target = attrs.required(self, "target", "target = \"my-target\"", Self::string);
        let description = attrs.optional(self, "description", Self::string);
        let default_duration = attrs.optional(self, "default_duration", Self::duration);
        let max_duration = attrs.required(self, "max_duration", "max_duration = \"4h\"", Self::duration);
        let max_total_duration = attrs.optional(self, "max_total_duration", Self::duration);
        let requestable_by = attrs.optional(self, "requestable_by", Self::subjects);
        let labels = attrs.optional(self, "labels", Self::string_map);
        let approval_flow = attrs.optional(self, "approval_flow", Self::flow_name);
        let auto_approve = attrs.optional(self, "auto_approve", Self::boolean);
        let emergency_access = attrs.optional(self, "emergency_access", Self::boolean);
        let extension_requires_approval = attrs.optional(self, "extension_requires_approval", Self::boolean);

        // A default longer than the maximum could never be granted.
        if let (Some((default, default_seconds)), Some((max, max_seconds))) = (&default_duration, &max_duration)
            && default_seconds > max_seconds
        {
            let at = attrs.get("default_duration").map_or(at, |literal| literal.at);
            let message = format!(
                "default_duration \"{default}\" is longer than max_duration \"{max}\" in role \"{name}\"; \
                 shorten it or raise max_duration"
            );
            self.error(at, message);
        }

        let approval = match approval_blocks.as_slice() {
            [] => None,
            [only] => Some(self.approval(only, &name)),
            [_, extra, ..] => {
                let message = format!("role \"{name}\" has more than one approval block; merge them into one");
                self.error(start_of(&extra.ident), message);
                None
            }
        };
        self.check_approval_choice(&attrs, &name, at, !approval_blocks.is_empty(), auto_approve);

        Some(RoleSpec {
            name,
            target: target?,
            description: description.unwrap_or_default(),
            default_duration: default_duration.map(|(text, _)| text),
            max_duration: max_duration?.0,
            max_total_duration: max_total_duration.map(|(text, _)| text),
            requestable_by: requestable_by.unwrap_or_default(),
            labels: labels.unwrap_or_default(),
            approval: approval.flatten(),
            approval_flow,
            auto_approve: auto_approve.unwrap_or(false),
            emergency_access: emergency_access.unwrap_or(false),
            extension_requires_approval: extension_requires_approval.unwrap_or(true),
            grant: grant?,
        })
    }

    /// A role's `grant` block: what to give on the target. Its attributes
    /// depend on the target's type, which the server checks; here each must
    /// be a plain value (no blocks inside).
    fn grant(&mut self, block: &Block, role: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
        if let Some(label) = block.labels.first() {
            let message = format!("the grant block of role \"{role}\" takes no label; write grant {{ ... }}");
            self.error(start_of(label), message);
            return None;
        }
        let mut grant = serde_json::Map::new();
        let mut complete = true;
        for structure in block.body.iter() {
            match structure {
                Structure::Attribute(attribute) => {
                    let key = attribute.key.as_str().to_string();
                    if grant.contains_key(&key) {
                        let message = format!(
                            "attribute \"{key}\" is set twice in the grant block of role \"{role}\"; remove one of them"
                        );
                        self.error(start_of(&attribute.key), message);
                        complete = false;
                        continue;
                    }
                    match self.literal(&attribute.value).and_then(|literal| self.json(&literal)) {
                        Some(value) => {
                            grant.insert(key, value);
                        }
                        None => complete = false,
                    }
                }
                Structure::Block(inner) => {
                    let message = format!(
                        "the grant block of role \"{role}\" holds attributes only; write {} = ... instead of a block",
                        inner.ident.as_str()
                    );
                    self.error(start_of(&inner.ident), message);
                    complete = false;
                }
            }
        }
        complete.then_some(grant)
    }

    /// Every role must say how requests get approved, in exactly one way: an
    /// inline approval block, a named flow, or auto_approve = true. Two ways
    /// would leave the server guessing which one wins.
    fn check_approval_choice(
        &mut self,
        attrs: &Attrs,
        role: &str,
        block_at: usize,
        has_approval_block: bool,
        auto_approve: Option<bool>,
    ) {
        let auto_literal = attrs.get("auto_approve").filter(|_| auto_approve == Some(true));
        let flow_literal = attrs.get("approval_flow");
        let flow = match flow_literal.map(|literal| &literal.value) {
            Some(LiteralValue::String(text)) => format!("approval_flow = {text:?}"),
            _ => "approval_flow".to_string(),
        };
        let message = match (auto_literal, flow_literal, has_approval_block) {
            (Some(_), Some(_), true) => format!(
                "role \"{role}\" sets auto_approve = true and {flow}, and has an approval block; \
                 keep only one of them"
            ),
            (Some(_), Some(_), false) => format!(
                "role \"{role}\" sets auto_approve = true and {flow}; \
                 remove one of them: auto-approved roles need no approvers"
            ),
            (Some(_), None, true) => format!(
                "role \"{role}\" sets auto_approve = true and has an approval block; \
                 remove one of them: auto-approved roles need no approvers"
            ),
            (None, Some(_), true) => format!(
                "role \"{role}\" sets {flow} and has an approval block; remove one of them: \
                 the approval block is shorthand for a one-stage flow"
            ),
            // An auto_approve that is not a bool was already reported; saying
            // the role has no approval on top of that would be noise.
            (None, None, false) if attrs.get("auto_approve").is_none() || auto_approve.is_some() => {
                let message = format!(
                    "role \"{role}\" does not say how requests are approved; add an approval \
                     {{ approvers = [...] }} block, approval_flow = \"NAME\" to use an approval flow, \
                     or auto_approve = true for a self-service role"
                );
                self.error(block_at, message);
                return;
            }
            _ => return,
        };
        // Point at the first way chosen: auto_approve, else approval_flow.
        let at = auto_literal.or(flow_literal).map_or(block_at, |literal| literal.at);
        self.error(at, message);
    }

    fn approval(&mut self, block: &Block, role: &str) -> Option<ApprovalSpec> {
        if let Some(label) = block.labels.first() {
            let message = format!("the approval block of role \"{role}\" takes no label; write approval {{ ... }}");
            self.error(start_of(label), message);
        }
        let place = format!("in approval of role \"{role}\"");
        let (attrs, _) = self.walk(&block.body, &APPROVAL, place, start_of(&block.ident));
        let approvers = attrs.required(self, "approvers", "approvers = [\"group:approvers\"]", Self::subjects);
        self.check_not_empty(&attrs, "approvers", approvers.as_deref(), "");
        let required = attrs.optional(self, "required", |reporter, literal, what| {
            let n = reporter.whole_number(literal, what, 1, u64::from(u32::MAX))?;
            u32::try_from(n).ok()
        });
        Some(ApprovalSpec {
            approvers: approvers?,
            required: required.unwrap_or(1),
        })
    }

    /// A duration string, checked with the same rules as the server; returns
    /// the text as written and its length in seconds.
    pub(crate) fn duration(&mut self, literal: &Literal, what: &str) -> Option<(String, u64)> {
        let text = self.string(literal, what)?;
        match hallpass_core::parse_duration(&text) {
            Ok(seconds) => Some((text, seconds)),
            Err(error) => {
                self.error(literal.at, format!("{what}: {error}"));
                None
            }
        }
    }

    /// Reports a subject list that was given but is empty: nobody could ever
    /// act on it. `hint` ends the message, e.g. ", or remove it".
    pub(crate) fn check_not_empty(&mut self, attrs: &Attrs, name: &str, subjects: Option<&[String]>, hint: &str) {
        if let (Some([]), Some(literal)) = (subjects, attrs.get(name)) {
            let message = format!(
                "{} is empty; list at least one user:NAME or group:NAME{hint}",
                attrs.what(name)
            );
            self.error(literal.at, message);
        }
    }

    /// The name of an approval flow a role refers to. Only its form is
    /// checked: the flow may be defined on the server rather than in this file.
    fn flow_name(&mut self, literal: &Literal, what: &str) -> Option<String> {
        let text = self.string(literal, what)?;
        if is_valid_name(&text) {
            return Some(text);
        }
        let message = format!(
            "{what}: {text:?} is not a valid flow name: use 1 to 64 letters, digits, '.', '_', '-' or '@', \
             starting with a letter or digit"
        );
        self.error(literal.at, message);
        None
    }

    /// A list of `user:NAME` / `group:NAME` subjects, each error at its item.
    pub(crate) fn subjects(&mut self, literal: &Literal, what: &str) -> Option<Vec<String>> {
        let items = self.string_list(literal, what)?;
        let mut valid = true;
        for (text, at) in &items {
            if let Err(error) = text.parse::<Subject>() {
                self.error(*at, format!("{what}: {error}"));
                valid = false;
            }
        }
        valid.then(|| items.into_iter().map(|(text, _)| text).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testing::{assert_error, errors};

    /// The first target and the roles of docs/access-config.md, as one file.
    fn documented_example() -> String {
        let target = hallpass_doc_examples::example("access-config.md", "## Targets", "hcl");
        let roles = hallpass_doc_examples::example("access-config.md", "## Roles", "hcl");
        format!("{target}{roles}")
    }

    /// A valid role body with `extra` spliced in, for error cases.
    fn role(extra: &str) -> String {
        format!("role \"r\" {{\n  target = \"demo\"\n  max_duration = \"4h\"\n  auto_approve = true\n{extra}}}\n")
    }

    #[test]
    fn parses_the_documented_example() {
        let expected = ApplyRequest {
            targets: vec![TargetSpec {
                name: "demo".into(),
                target_type: "jwt".into(),
                config: serde_json::json!({"audience": "demo"}).as_object().cloned().unwrap(),
                secrets: None,
            }],
            roles: vec![
                RoleSpec {
                    name: "demo-admin".into(),
                    target: "demo".into(),
                    description: "Admin on the demo service".into(),
                    default_duration: Some("1h".into()),
                    max_duration: "4h".into(),
                    max_total_duration: Some("8h".into()),
                    requestable_by: vec!["group:dev".into()],
                    labels: BTreeMap::from([("env".to_string(), "dev".to_string())]),
                    approval: Some(ApprovalSpec {
                        approvers: vec!["group:approvers".into(), "user:carol".into()],
                        required: 1,
                    }),
                    approval_flow: None,
                    auto_approve: false,
                    emergency_access: false,
                    extension_requires_approval: true,
                    grant: Default::default(),
                },
                RoleSpec {
                    name: "demo-read".into(),
                    target: "demo".into(),
                    description: String::new(),
                    default_duration: None,
                    max_duration: "1h".into(),
                    max_total_duration: None,
                    requestable_by: vec!["group:dev".into()],
                    labels: BTreeMap::new(),
                    approval: None,
                    approval_flow: None,
                    auto_approve: true,
                    emergency_access: false,
                    extension_requires_approval: true,
                    grant: Default::default(),
                },
            ],
            approval_flows: vec![],
            policies: vec![],
            notifiers: vec![],
            dry_run: false,
        };
        assert_eq!(parse_apply_str(&documented_example(), "access.hcl").unwrap(), expected);
    }

    #[test]
    fn a_roles_grant_is_a_block_or_an_attribute_but_not_both() {
        let role = |grant: &str| {
            format!(
                "role \"r\" {{\n  target = \"t\"\n  max_duration = \"1h\"\n  requestable_by = [\"group:dev\"]\n  auto_approve = true\n{grant}\n}}\n"
            )
        };
        let block = parse_apply_str(
            &role("  grant {\n    roles = [\"app_read\"]\n    connection_limit = 2\n  }"),
            "a.hcl",
        )
        .unwrap();
        let attribute = parse_apply_str(
            &role("  grant = { roles = [\"app_read\"], connection_limit = 2 }"),
            "a.hcl",
        )
        .unwrap();
        let expected = serde_json::json!({"roles": ["app_read"], "connection_limit": 2});
        assert_eq!(serde_json::Value::Object(block.roles[0].grant.clone()), expected);
        assert_eq!(block.roles[0].grant, attribute.roles[0].grant);
        let none = parse_apply_str(&role(""), "a.hcl").unwrap();
        assert!(none.roles[0].grant.is_empty());
        let both = parse_apply_str(
            &role("  grant = { roles = [\"a\"] }\n  grant {\n    roles = [\"b\"]\n  }"),
            "a.hcl",
        )
        .unwrap_err()
        .to_string();
        assert!(both.contains("sets grant twice"), "{both}");
        let nested = parse_apply_str(&role("  grant {\n    inner {\n    }\n  }"), "a.hcl")
            .unwrap_err()
            .to_string();
        assert!(nested.contains("holds attributes only"), "{nested}");
    }

    #[test]
    fn defaults_and_nested_config_values() {
        let source = r#"
target "t" {
  type   = "jwt"
  config = { n = 3, neg = -2, f = 1.5, ok = true, list = ["a", 1], nested = { "key.x" = "v" } }
}
role "self" {
  target       = "t"
  max_duration = "30m"
  auto_approve = true
  description  = <<-EOT
    Line one
    EOT
}
role "r2" {
  target       = "t"
  max_duration = "1h"
  approval {
    approvers = ["user:bob"]
  }
}
"#;
        let request = parse_apply_str(source, "a.hcl").unwrap();
        assert_eq!(
            serde_json::Value::Object(request.targets[0].config.clone()),
            serde_json::json!({"n": 3, "neg": -2, "f": 1.5, "ok": true, "list": ["a", 1], "nested": {"key.x": "v"}})
        );
        let role = &request.roles[0];
        assert!(role.auto_approve && role.approval.is_none() && role.default_duration.is_none());
        assert_eq!(role.description, "Line one\n");
        assert_eq!(request.roles[1].approval.as_ref().unwrap().required, 1);
        assert!(!request.dry_run);
    }

    #[test]
    fn unknown_attribute_is_positioned_with_suggestion() {
        let source = "role \"x\" {\n  target = \"demo\"\n  auto_approve = true\n    max_duraton = \"4h\"\n}\n";
        let errors = errors(source);
        assert!(
            errors.iter().any(|e| e
                == "4:5: unknown attribute \"max_duraton\" in role \"x\"; expected one of: target, description, \
                 default_duration, max_duration, max_total_duration, requestable_by, labels, approval_flow, auto_approve, emergency_access, \
                 extension_requires_approval, grant; did you mean \"max_duration\"?"),
            "{errors:#?}"
        );
        // The misspelt attribute also leaves the real one missing.
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("1:1: missing required attribute \"max_duration\"")),
            "{errors:#?}"
        );
    }

    #[test]
    fn unknown_blocks_and_top_level_attributes() {
        assert_error(
            "polcy \"p\" {}\n",
            "1:1",
            "unknown block \"polcy\" at the top level; expected one of: target, role, approval_flow, policy, notifier; \
             did you mean \"policy\"?",
        );
        assert_error(
            "  version = 2\n",
            "1:3",
            "unexpected attribute \"version\" at the top level",
        );
        assert_error(
            &role("  approvals {\n  }\n"),
            "5:3",
            "unknown block \"approvals\" in role \"r\"; expected one of: approval",
        );
        assert_error(
            &role("  labels {\n  }\n"),
            "5:3",
            "\"labels\" in role \"r\" is an attribute, not a block",
        );
    }

    #[test]
    fn block_labels_are_checked() {
        assert_error("target {\n  type = \"jwt\"\n}\n", "1:1", "target block has no name");
        assert_error("target demo {\n  type = \"jwt\"\n}\n", "1:8", "must be quoted");
        assert_error(
            "target \"a\" \"b\" {\n  type = \"jwt\"\n}\n",
            "1:12",
            "more than one label",
        );
        assert_error(
            "target \"-bad name\" {\n  type = \"jwt\"\n}\n",
            "1:8",
            "target name \"-bad name\" is not valid",
        );
    }

    #[test]
    fn duplicate_names_point_at_the_second() {
        let source = "target \"t\" {\n  type = \"jwt\"\n}\ntarget \"t\" {\n  type = \"jwt\"\n}\n";
        assert_error(
            source,
            "4:8",
            "duplicate target \"t\": it is already defined at line 1, column 8",
        );
        // A role may share a target's name.
        let source = format!("target \"r\" {{\n  type = \"jwt\"\n}}\n{}", role(""));
        assert!(parse_apply_str(&source, "a.hcl").is_ok());
    }

    #[test]
    fn bad_duration_is_reported_at_the_value() {
        assert_error(
            "role \"r\" {\n  target = \"t\"\n  max_duration = \"4 hours\"\n  auto_approve = true\n}\n",
            "3:18",
            "attribute \"max_duration\" in role \"r\": duration \"4 hours\" is not valid",
        );
        assert_error(
            &role("  default_duration = \"8h\"\n"),
            "5:22",
            "default_duration \"8h\" is longer than max_duration \"4h\"",
        );
    }

    #[test]
    fn bad_subject_is_reported_at_the_item() {
        assert_error(
            &role("  requestable_by = [\"group:dev\", \"dev\"]\n"),
            "5:34",
            "attribute \"requestable_by\" in role \"r\": \"dev\" is not a subject: write user:NAME or group:NAME",
        );
        let source =
            "role \"r\" {\n  target = \"t\"\n  max_duration = \"1h\"\n  approval {\n    approvers = []\n  }\n}\n";
        assert_error(
            source,
            "5:17",
            "attribute \"approvers\" in approval of role \"r\" is empty",
        );
    }

    #[test]
    fn non_literals_are_refused() {
        let cases = [
            (
                "  description = \"hi ${var.x}\"\n",
                "5:21",
                "template with ${...} interpolation",
            ),
            ("  description = var.x\n", "5:17", "an attribute or index reference"),
            ("  description = name\n", "5:17", "a variable reference"),
            ("  description = upper(\"x\")\n", "5:17", "a function call"),
            (
                "  description = true ? \"a\" : \"b\"\n",
                "5:17",
                "a conditional expression",
            ),
            ("  labels = { a = 1 + 2 }\n", "5:18", "an operator expression"),
        ];
        for (extra, position, kind) in cases {
            assert_error(&role(extra), position, "only literal values are supported here");
            assert_error(&role(extra), position, kind);
        }
    }

    #[test]
    fn wrong_types_name_both_types() {
        let source = "role \"x\" {\n  target = \"t\"\n  max_duration = \"1h\"\n  approval {\n    approvers = [\"user:a\"]\n    required = \"2\"\n  }\n}\n";
        assert_error(
            source,
            "6:16",
            "attribute \"required\" in approval of role \"x\" must be a whole number, found a string",
        );
        let source = source.replace("\"2\"", "0");
        assert_error(&source, "6:16", "must be at least 1, found 0");
        assert_error(
            &role("  labels = { env = 1 }\n"),
            "5:20",
            "attribute \"labels\" in role \"r\", key \"env\" must be a string, found a number",
        );
        assert_error(&role("  description = null\n"), "5:17", "must be a string, found null");
        assert_error(
            &role("  requestable_by = \"group:dev\"\n"),
            "5:20",
            "must be a list of strings, found a string",
        );
        assert_error(
            "target \"t\" {\n  type = \"jwt\"\n  config = { a = null }\n}\n",
            "3:18",
            "null is not allowed here",
        );
    }

    #[test]
    fn syntax_errors_carry_the_parser_position() {
        let errors = errors("role \"r\" {\n  target = \n}\n");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with("2:12: syntax error:"), "{errors:#?}");
    }

    #[test]
    fn approval_must_be_decided_exactly_once() {
        assert_error(
            &role("  approval {\n    approvers = [\"user:a\"]\n  }\n"),
            "4:18",
            "role \"r\" sets auto_approve = true and has an approval block",
        );
        assert_error(
            "role \"r\" {\n  target = \"t\"\n  max_duration = \"1h\"\n}\n",
            "1:1",
            "role \"r\" does not say how requests are approved; add an approval",
        );
    }

    #[test]
    fn approval_flow_is_one_of_the_ways() {
        // `role()` sets auto_approve = true; these bodies set it to false or
        // leave it out.
        let flow_role = |extra: &str| {
            format!("role \"r\" {{\n  target = \"t\"\n  max_duration = \"1h\"\n  approval_flow = \"peer\"\n{extra}}}\n")
        };
        let parsed = parse_apply_str(&flow_role("  auto_approve = false\n"), "a.hcl").unwrap();
        let spec = &parsed.roles[0];
        assert_eq!(spec.approval_flow.as_deref(), Some("peer"));
        assert!(spec.approval.is_none() && !spec.auto_approve);
        assert_error(
            &flow_role("  approval {\n    approvers = [\"user:a\"]\n  }\n"),
            "4:19",
            "role \"r\" sets approval_flow = \"peer\" and has an approval block; remove one of them: \
             the approval block is shorthand for a one-stage flow",
        );
        assert_error(
            &role("  approval_flow = \"peer\"\n"),
            "4:18",
            "role \"r\" sets auto_approve = true and approval_flow = \"peer\"; remove one of them: \
             auto-approved roles need no approvers",
        );
        assert_error(
            &role("  approval_flow = \"peer\"\n  approval {\n    approvers = [\"user:a\"]\n  }\n"),
            "4:18",
            "role \"r\" sets auto_approve = true and approval_flow = \"peer\", and has an approval block; \
             keep only one of them",
        );
        assert_error(
            &flow_role("").replace("\"peer\"", "\"peer review\""),
            "4:19",
            "attribute \"approval_flow\" in role \"r\": \"peer review\" is not a valid flow name",
        );
        assert_error(
            &flow_role("").replace("\"peer\"", "[\"peer\"]"),
            "4:19",
            "attribute \"approval_flow\" in role \"r\" must be a string, found a list",
        );
        assert_error(
            "role \"r\" {\n  target = \"t\"\n  max_duration = \"1h\"\n  auto_approve = false\n}\n",
            "1:1",
            "role \"r\" does not say how requests are approved; add an approval { approvers = [...] } block, \
             approval_flow = \"NAME\" to use an approval flow, or auto_approve = true for a self-service role",
        );
    }

    #[test]
    fn emergency_and_extension_flags() {
        let request = parse_apply_str(
            &role("  emergency_access = true\n  extension_requires_approval = false\n"),
            "a.hcl",
        )
        .unwrap();
        assert!(request.roles[0].emergency_access);
        assert!(!request.roles[0].extension_requires_approval);
        let request = parse_apply_str(&role(""), "a.hcl").unwrap();
        assert!(!request.roles[0].emergency_access);
        assert!(request.roles[0].extension_requires_approval);
        assert_error(
            &role("  emergency_access = \"yes\"\n"),
            "5:22",
            "attribute \"emergency_access\" in role \"r\" must be a bool (true or false), found a string",
        );
        assert_error(
            &role("  extension_requires_approval = 1\n"),
            "5:33",
            "attribute \"extension_requires_approval\" in role \"r\" must be a bool (true or false), found a number",
        );
    }

    #[test]
    fn missing_required_attributes_point_at_the_block() {
        let errors = errors("target \"t\" {}\n\n  role \"r\" {\n  auto_approve = true\n}\n");
        assert_eq!(
            errors,
            [
                "1:1: missing required attribute \"type\" in target \"t\"; add it, e.g. type = \"jwt\"",
                "3:3: missing required attribute \"target\" in role \"r\"; add it, e.g. target = \"my-target\"",
                "3:3: missing required attribute \"max_duration\" in role \"r\"; add it, e.g. max_duration = \"4h\"",
            ]
        );
    }

    #[test]
    fn all_errors_are_collected_and_displayed_one_per_line() {
        let source = "oops = 1\nrole \"a\" {\n  target = 5\n  max_duration = \"1h\"\n  auto_approve = true\n}\n";
        let error = parse_apply_str(source, "f.hcl").unwrap_err();
        assert_eq!(
            error.to_string(),
            "f.hcl:1:1: unexpected attribute \"oops\" at the top level; no attributes are allowed here, only the blocks: target, role, approval_flow, policy, notifier\n\
             f.hcl:3:12: attribute \"target\" in role \"a\" must be a string, found a number"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_error(
            "target \"t\" {\n  type = \"jwt\"\n  config = { \"é\" = \"é\", x = null }\n}\n",
            "3:29",
            "null is not allowed",
        );
    }

    #[test]
    fn reads_files_and_reports_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.hcl");
        std::fs::write(&path, documented_example()).unwrap();
        assert_eq!(parse_apply_file(&path).unwrap().roles.len(), 2);
        std::fs::write(&path, "role \"r\" {}\n").unwrap();
        let error = parse_apply_file(&path).unwrap_err();
        assert!(error.errors()[0].file.ends_with("access.hcl"));
        let missing = parse_apply_file(&dir.path().join("nope.hcl")).unwrap_err();
        assert_eq!(missing.errors()[0].line, 0);
        assert!(
            missing.to_string().contains("nope.hcl: cannot read the file"),
            "{missing}"
        );
    }
}
