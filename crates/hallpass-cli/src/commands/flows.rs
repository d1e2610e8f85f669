//! Approval flows (ordered approval stages): `flow list|show|delete`.
//! Flows are created and changed with `hallpass apply`.

use clap::Subcommand;
use hallpass_api::{ApprovalFlow, StageSpec};

use super::{CmdResult, Ctx, ok};
use crate::output::{Table, or_dash, print_json, push_line, time, truncate, yes_no};

#[derive(Debug, Subcommand)]
pub enum FlowCommand {
    /// List approval flows.
    List,
    /// Show one approval flow, stage by stage.
    Show { name: String },
    /// Delete an approval flow (roles using it must be changed first).
    Delete { name: String },
}

pub async fn run(ctx: &Ctx, command: FlowCommand) -> CmdResult {
    let client = ctx.client()?;
    match command {
        FlowCommand::List => {
            let flows = client.list_flows().await?;
            if ctx.json() {
                print_json(&flows)?;
                return ok();
            }
            let mut table = Table::new(["NAME", "STAGES", "PENDING TTL", "DESCRIPTION"]);
            for flow in &flows {
                table.row([
                    flow.name.clone(),
                    stages_summary(&flow.stages),
                    hallpass_core::format_duration(flow.pending_ttl_seconds),
                    truncate(&flow.description, 40),
                ]);
            }
            table.print_or("no approval flows");
        }
        FlowCommand::Show { name } => {
            let flow = client.get_flow(&name).await?;
            if ctx.json() {
                print_json(&flow)?;
            } else {
                print!("{}", render_flow(&flow));
            }
        }
        FlowCommand::Delete { name } => {
            client.delete_flow(&name).await?;
            if !ctx.json() {
                println!("deleted approval flow {name}");
            }
        }
    }
    ok()
}

/// One stage in a table cell: `group:dev-leads ×1 (15m→group:security)`.
pub fn stage_summary(stage: &StageSpec) -> String {
    let mut text = format!("{} ×{}", stage.approvers.join(","), stage.required);
    let escalate_to = stage.escalate_to.join(",");
    match (stage.timeout.as_deref(), escalate_to.is_empty()) {
        (Some(timeout), false) => text.push_str(&format!(" ({timeout}→{escalate_to})")),
        (Some(timeout), true) => text.push_str(&format!(" ({timeout})")),
        (None, false) => text.push_str(&format!(" (→{escalate_to})")),
        (None, true) => {}
    }
    text
}

/// Every stage, in order: `A ×1 (15m→B) → B ×2`.
pub fn stages_summary(stages: &[StageSpec]) -> String {
    if stages.is_empty() {
        return "-".to_string();
    }
    stages.iter().map(stage_summary).collect::<Vec<_>>().join(" → ")
}

/// `1 of group:dev-leads; after 15m also group:security`.
fn stage_sentence(stage: &StageSpec) -> String {
    let mut text = format!("{} of {}", stage.required, stage.approvers.join(", "));
    if !stage.escalate_to.is_empty() {
        let after = stage
            .timeout
            .as_deref()
            .map_or_else(String::new, |timeout| format!("after {timeout} "));
        text.push_str(&format!("; {after}also {}", stage.escalate_to.join(", ")));
    }
    text
}

/// `flow show`: the settings, then one line per stage.
pub fn render_flow(flow: &ApprovalFlow) -> String {
    let spec = flow;
    let mut out = crate::output::fields(&[
        ("name", spec.name.clone()),
        ("description", or_dash(Some(&spec.description))),
        ("pending ttl", hallpass_core::format_duration(flow.pending_ttl_seconds)),
        ("distinct approvers", yes_no(spec.distinct_approvers)),
        ("self-approval", yes_no(spec.allow_self_approval)),
        ("created", time(&flow.created_at)),
        ("updated", time(&flow.updated_at)),
    ]);
    out.push_str("stages:\n");
    for (index, stage) in spec.stages.iter().enumerate() {
        push_line(&mut out, "  ", &format!("{}. {}", index + 1, stage_sentence(stage)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn stage(approvers: &[&str], required: u32, timeout: Option<&str>, escalate_to: &[&str]) -> StageSpec {
        StageSpec {
            approvers: approvers.iter().map(|a| a.to_string()).collect(),
            required,
            timeout: timeout.map(Into::into),
            escalate_to: escalate_to.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn stages_summarise_on_one_line() {
        let stages = [
            stage(&["group:dev-leads"], 1, Some("15m"), &["group:security"]),
            stage(&["group:security"], 2, None, &[]),
        ];
        assert_eq!(
            stages_summary(&stages),
            "group:dev-leads ×1 (15m→group:security) → group:security ×2"
        );
        assert_eq!(
            stage_summary(&stage(&["group:a", "user:carol"], 1, None, &["group:b"])),
            "group:a,user:carol ×1 (→group:b)"
        );
        assert_eq!(stages_summary(&[]), "-");
    }

    #[test]
    fn show_spells_each_stage_out() {
        let flow = ApprovalFlow {
            name: "two-step".into(),
            description: String::new(),
            pending_ttl: "1d".into(),
            stages: vec![
                stage(&["group:dev-leads"], 1, Some("15m"), &["group:security"]),
                stage(&["group:security"], 2, None, &[]),
            ],
            distinct_approvers: true,
            allow_self_approval: false,
            pending_ttl_seconds: 86_400,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        let text = render_flow(&flow);
        assert!(text.contains("pending ttl:        1d\n"), "{text}");
        assert!(
            text.ends_with(
                "stages:\n  1. 1 of group:dev-leads; after 15m also group:security\n  2. 2 of group:security\n"
            ),
            "{text}"
        );
    }
}
