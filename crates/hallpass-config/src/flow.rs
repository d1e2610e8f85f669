//! `approval_flow "NAME" { stage { ... } ... }` blocks: named, ordered
//! approval stages that roles refer to with `approval_flow = "NAME"`.
//!
//! The server enforces the semantics (see docs/approval-flows.md); this module
//! only checks that a flow can work at all, so a stage nobody could approve or
//! an escalation that could never happen is caught before it is applied.

use hallpass_api::{ApprovalFlowSpec, StageSpec};
use hallpass_core::flow::{FlowProblem, MAX_STAGE_REQUIRED, check_stage, check_stage_count};
use hcl_edit::structure::Block;

use crate::body::Shape;
use crate::error::{Reporter, start_of};

const FLOW: Shape = Shape {
    attributes: &[
        "description",
        "pending_ttl",
        "distinct_approvers",
        "allow_self_approval",
    ],
    blocks: &["stage"],
    verbatim: &[],
};
const STAGE: Shape = Shape {
    attributes: &["approvers", "required", "timeout", "escalate_to"],
    blocks: &[],
    verbatim: &[],
};

impl Reporter<'_> {
    pub(crate) fn approval_flow(&mut self, block: &Block, name: String) -> Option<ApprovalFlowSpec> {
        let place = format!("in approval_flow \"{name}\"");
        let at = start_of(&block.ident);
        let (attrs, stage_blocks) = self.walk(&block.body, &FLOW, place, at);

        let description = attrs.optional(self, "description", Self::string);
        let pending_ttl = attrs.optional(self, "pending_ttl", Self::duration);
        let distinct_approvers = attrs.optional(self, "distinct_approvers", Self::boolean);
        let allow_self_approval = attrs.optional(self, "allow_self_approval", Self::boolean);

        match check_stage_count(stage_blocks.len()) {
            Ok(()) => {}
            Err(FlowProblem::NoStage) => {
                let message = format!(
                    "approval_flow \"{name}\" has no stage; add at least one stage {{ approvers = [...] }} block"
                );
                self.error(at, message);
                return None;
            }
            Err(problem) => self.error(at, format!("approval_flow \"{name}\" {problem}")),
        }
        // Check every stage before giving up, so all their problems show at once.
        let stages: Vec<_> = stage_blocks
            .iter()
            .enumerate()
            .map(|(index, stage)| self.stage(stage, &name, index + 1))
            .collect();

        Some(ApprovalFlowSpec {
            name,
            description: description.unwrap_or_default(),
            pending_ttl: pending_ttl.map(|(text, _)| text),
            stages: stages.into_iter().collect::<Option<_>>()?,
            distinct_approvers: distinct_approvers.unwrap_or(true),
            allow_self_approval: allow_self_approval.unwrap_or(false),
        })
    }

    /// Stage `number` (1-based, as shown by `hallpass show`) of `flow`.
    fn stage(&mut self, block: &Block, flow: &str, number: usize) -> Option<StageSpec> {
        if let Some(label) = block.labels.first() {
            let message = format!("the stage blocks of approval_flow \"{flow}\" take no label; write stage {{ ... }}");
            self.error(start_of(label), message);
        }
        let place = format!("in stage {number} of approval_flow \"{flow}\"");
        let (attrs, _) = self.walk(&block.body, &STAGE, place, start_of(&block.ident));

        let approvers = attrs.required(self, "approvers", "approvers = [\"group:approvers\"]", Self::subjects);
        self.check_not_empty(&attrs, "approvers", approvers.as_deref(), "");
        let required = attrs.optional(self, "required", |reporter, literal, what| {
            let n = reporter.whole_number(literal, what, 1, u64::from(MAX_STAGE_REQUIRED))?;
            u32::try_from(n).ok()
        });
        let timeout = attrs.optional(self, "timeout", Self::duration);
        let escalate_to = attrs.optional(self, "escalate_to", Self::subjects);
        self.check_not_empty(&attrs, "escalate_to", escalate_to.as_deref(), ", or remove it");

        // The rules of a stage are hallpass-core's; here they only get a
        // place in the file. Parts already reported are not judged again.
        let escalation_count = match (attrs.get("escalate_to"), escalate_to.as_deref()) {
            (None, _) => Some(0),
            (Some(_), Some(list)) if !list.is_empty() => Some(list.len()),
            _ => None,
        };
        if let (Some(approvers), Some(escalation_count)) =
            (approvers.as_deref().filter(|list| !list.is_empty()), escalation_count)
        {
            let has_timeout = attrs.get("timeout").is_some();
            if let Err(problem) = check_stage(approvers.len(), required.unwrap_or(1), has_timeout, escalation_count) {
                let attribute = match problem {
                    FlowProblem::NoApprovers => "approvers",
                    FlowProblem::RequiredOutOfRange => "required",
                    FlowProblem::EscalationWithoutTimeout => "escalate_to",
                    _ => "timeout",
                };
                let place = attrs
                    .get(attribute)
                    .map_or_else(|| start_of(&block.ident), |literal| literal.at);
                self.error(place, format!("{}: {problem}", attrs.what(attribute)));
            }
        }

        Some(StageSpec {
            approvers: approvers?,
            required: required.unwrap_or(1),
            timeout: timeout.map(|(text, _)| text),
            escalate_to: escalate_to.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use hallpass_api::ApplyRequest;

    use super::*;
    use crate::parse_apply_str;
    use crate::testing::{assert_error, errors};

    /// A flow whose single stage has `stage` spliced in, for error cases.
    /// The stage body starts on line 3.
    fn flow(stage: &str) -> String {
        format!("approval_flow \"f\" {{\n  stage {{\n{stage}  }}\n}}\n")
    }

    #[test]
    fn parses_the_documented_flow() {
        let example = hallpass_doc_examples::example("approval-flows.md", "## Defining a flow", "hcl");
        let request = parse_apply_str(&example, "access.hcl").unwrap();
        let expected_flow = ApprovalFlowSpec {
            name: "peer-then-security".into(),
            description: "A lead, then two people from security".into(),
            pending_ttl: Some("2h".into()),
            stages: vec![
                StageSpec {
                    approvers: vec!["group:dev-leads".into()],
                    required: 1,
                    timeout: Some("15m".into()),
                    escalate_to: vec!["group:security".into()],
                },
                StageSpec {
                    approvers: vec!["group:security".into()],
                    required: 2,
                    timeout: None,
                    escalate_to: vec![],
                },
            ],
            distinct_approvers: true,
            allow_self_approval: false,
        };
        assert_eq!(
            request,
            ApplyRequest {
                targets: vec![],
                roles: vec![hallpass_api::RoleSpec {
                    name: "prod-db-admin".into(),
                    target: "prod-db".into(),
                    description: String::new(),
                    default_duration: None,
                    max_duration: "2h".into(),
                    max_total_duration: None,
                    requestable_by: vec!["group:dev".into()],
                    labels: Default::default(),
                    approval: None,
                    approval_flow: Some("peer-then-security".into()),
                    auto_approve: false,
                    emergency_access: false,
                    extension_requires_approval: true,
                    grant: Default::default(),
                }],
                approval_flows: vec![expected_flow],
                policies: vec![],
                notifiers: vec![],
                dry_run: false,
            }
        );
    }

    #[test]
    fn defaults() {
        let request = parse_apply_str(&flow("    approvers = [\"user:carol\"]\n"), "a.hcl").unwrap();
        assert_eq!(
            request.approval_flows,
            [ApprovalFlowSpec {
                name: "f".into(),
                description: String::new(),
                pending_ttl: None,
                stages: vec![StageSpec {
                    approvers: vec!["user:carol".into()],
                    required: 1,
                    timeout: None,
                    escalate_to: vec![],
                }],
                distinct_approvers: true,
                allow_self_approval: false,
            }]
        );
        // The same defaults the API applies to JSON that leaves them out.
        let from_json: ApprovalFlowSpec =
            serde_json::from_str(r#"{"name": "f", "stages": [{"approvers": ["user:carol"]}]}"#).unwrap();
        assert_eq!(request.approval_flows[0], from_json);
    }

    #[test]
    fn needs_a_stage() {
        assert_error(
            "approval_flow \"f\" {\n  pending_ttl = \"1h\"\n}\n",
            "1:1",
            "approval_flow \"f\" has no stage; add at least one stage { approvers = [...] } block",
        );
    }

    #[test]
    fn stage_approvers_are_required_non_empty_subjects() {
        assert_error(
            &flow("    required = 1\n"),
            "2:3",
            "missing required attribute \"approvers\" in stage 1 of approval_flow \"f\"; \
             add it, e.g. approvers = [\"group:approvers\"]",
        );
        assert_error(
            &flow("    approvers = []\n"),
            "3:17",
            "attribute \"approvers\" in stage 1 of approval_flow \"f\" is empty; list at least one user:NAME or group:NAME",
        );
        assert_error(
            &flow("    approvers = [\"group:a\", \"carol\"]\n"),
            "3:29",
            "attribute \"approvers\" in stage 1 of approval_flow \"f\": \"carol\" is not a subject",
        );
    }

    #[test]
    fn required_is_between_1_and_100() {
        assert_error(
            &flow("    approvers = [\"group:a\"]\n    required = 0\n"),
            "4:16",
            "attribute \"required\" in stage 1 of approval_flow \"f\" must be at least 1, found 0",
        );
        assert_error(
            &flow("    approvers = [\"group:a\"]\n    required = 101\n"),
            "4:16",
            "attribute \"required\" in stage 1 of approval_flow \"f\" must be at most 100, found 101",
        );
        let ok = flow("    approvers = [\"group:a\"]\n    required = 100\n");
        assert_eq!(
            parse_apply_str(&ok, "a.hcl").unwrap().approval_flows[0].stages[0].required,
            100
        );
    }

    #[test]
    fn durations_are_checked() {
        assert_error(
            &flow("    approvers = [\"group:a\"]\n    timeout = \"15 min\"\n    escalate_to = [\"group:b\"]\n"),
            "4:15",
            "attribute \"timeout\" in stage 1 of approval_flow \"f\": duration \"15 min\" is not valid",
        );
        assert_error(
            "approval_flow \"f\" {\n  pending_ttl = \"0s\"\n  stage {\n    approvers = [\"group:a\"]\n  }\n}\n",
            "2:17",
            "attribute \"pending_ttl\" in approval_flow \"f\": duration \"0s\" is zero",
        );
    }

    #[test]
    fn timeout_and_escalate_to_go_together() {
        assert_error(
            &flow("    approvers = [\"group:a\"]\n    timeout = \"15m\"\n"),
            "4:15",
            "attribute \"timeout\" in stage 1 of approval_flow \"f\": timeout has no effect without escalate_to",
        );
        assert_error(
            &flow("    approvers = [\"group:a\"]\n    escalate_to = [\"group:b\"]\n"),
            "4:19",
            "attribute \"escalate_to\" in stage 1 of approval_flow \"f\": escalate_to needs a timeout",
        );
        assert_error(
            &flow("    approvers = [\"group:a\"]\n    timeout = \"15m\"\n    escalate_to = []\n"),
            "5:19",
            "attribute \"escalate_to\" in stage 1 of approval_flow \"f\" is empty; \
             list at least one user:NAME or group:NAME, or remove it",
        );
        assert_error(
            &flow("    approvers = [\"group:a\"]\n    timeout = \"15m\"\n    escalate_to = [\"security\"]\n"),
            "5:20",
            "attribute \"escalate_to\" in stage 1 of approval_flow \"f\": \"security\" is not a subject",
        );
    }

    #[test]
    fn a_flow_holds_at_most_the_stages_the_server_takes() {
        let stages = |n: usize| "  stage {\n    approvers = [\"group:a\"]\n  }\n".repeat(n);
        let at_most = hallpass_core::flow::MAX_STAGES;
        assert_error(
            &format!("approval_flow \"f\" {{\n{}}}\n", stages(at_most + 1)),
            "1:1",
            &format!("approval_flow \"f\" has {} stages; at most {at_most}", at_most + 1),
        );
        let ok = format!("approval_flow \"f\" {{\n{}}}\n", stages(at_most));
        assert_eq!(
            parse_apply_str(&ok, "a.hcl").unwrap().approval_flows[0].stages.len(),
            at_most
        );
    }

    #[test]
    fn later_stages_are_numbered() {
        let source = "approval_flow \"f\" {\n  stage {\n    approvers = [\"group:a\"]\n  }\n  stage {\n    approvers = [\"group:b\"]\n    escalate_to = [\"group:c\"]\n  }\n}\n";
        assert_error(
            source,
            "7:19",
            "attribute \"escalate_to\" in stage 2 of approval_flow \"f\"",
        );
    }

    #[test]
    fn unknown_entries_get_suggestions() {
        assert_error(
            &flow("    approvers = [\"group:a\"]\n    escalate_too = [\"group:b\"]\n"),
            "4:5",
            "unknown attribute \"escalate_too\" in stage 1 of approval_flow \"f\"; expected one of: \
             approvers, required, timeout, escalate_to; did you mean \"escalate_to\"?",
        );
        // The misspelt block also leaves the flow without a stage.
        assert_eq!(
            errors("approval_flow \"f\" {\n  stages {\n  }\n}\n"),
            [
                "1:1: approval_flow \"f\" has no stage; add at least one stage { approvers = [...] } block",
                "2:3: unknown block \"stages\" in approval_flow \"f\"; expected one of: stage; did you mean \"stage\"?",
            ]
        );
        let errors =
            errors("approval_flow \"f\" {\n  pending_tl = \"1h\"\n  stage {\n    approvers = [\"group:a\"]\n  }\n}\n");
        assert_eq!(
            errors,
            [
                "2:3: unknown attribute \"pending_tl\" in approval_flow \"f\"; expected one of: description, \
              pending_ttl, distinct_approvers, allow_self_approval; did you mean \"pending_ttl\"?"
            ]
        );
        assert_error(
            "approval_flow \"f\" {\n  stage \"one\" {\n    approvers = [\"group:a\"]\n  }\n}\n",
            "2:9",
            "the stage blocks of approval_flow \"f\" take no label; write stage { ... }",
        );
        assert_error(
            &flow("    approvers = [\"group:a\"]\n").replace("  }\n}", "  }\n  distinct_approvers = \"yes\"\n}"),
            "5:24",
            "attribute \"distinct_approvers\" in approval_flow \"f\" must be a bool (true or false), found a string",
        );
    }

    #[test]
    fn duplicate_flow_names_point_at_the_second() {
        let one = flow("    approvers = [\"group:a\"]\n");
        assert_error(
            &format!("{one}{one}"),
            "6:15",
            "duplicate approval_flow \"f\": it is already defined at line 1, column 15",
        );
    }
}
