//! Access configuration: `apply -f FILE.hcl`, `target ...`, `role ...`.
//! (Approval flows and policies, which `apply` also sets, have their own
//! commands in `flows` and `policy`.)

use std::path::PathBuf;

use clap::{Args, Subcommand};
use hallpass_api::{ApplyResponse, ChangeAction, Role, Target};

use super::{CmdResult, Ctx, ok};
use crate::output::{
    Table, fields, join_or_dash, or_dash, print_fields, print_json, push_line, time, truncate, yes_no,
};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// HCL file with `target`, `role`, `approval_flow`, `policy` and `notifier` blocks.
    #[arg(short = 'f', long = "file", value_name = "FILE.hcl")]
    pub file: PathBuf,
    /// Show what would change without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// List targets.
    List,
    /// Show one target.
    Show { name: String },
    /// Delete a target (its roles must be deleted first).
    Delete { name: String },
    /// Check that the target's admin credentials can do what issuing and
    /// revoking need; exits 1 and says what is missing if not.
    Test { name: String },
    /// Replace the target's admin password with a random one only Hallpass
    /// knows (postgres, mysql, redis). Remove the password from your apply
    /// files afterwards, or the next apply puts the old one back.
    Rotate { name: String },
    /// Write the target's OpenSSH key revocation list (ssh targets), for
    /// sshd's RevokedKeys.
    Krl {
        name: String,
        /// Where to write it (atomically); `-` for stdout.
        #[arg(long = "to", value_name = "FILE", default_value = "-")]
        to: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// List roles.
    List,
    /// Show one role.
    Show { name: String },
    /// Delete a role.
    Delete { name: String },
}

pub async fn apply(ctx: &Ctx, args: ApplyArgs) -> CmdResult {
    // Parse before connecting: a broken file is reported without a server.
    let mut request = hallpass_config::parse_apply_file(&args.file)?;
    request.dry_run = args.dry_run;
    let response = ctx.client()?.apply(&request).await?;
    if ctx.json() {
        print_json(&response)?;
    } else {
        print!("{}", render_changes(&response));
    }
    ok()
}

/// The diff-like listing and the summary line. Kinds print as the HCL
/// blocks are named (`target`, `role`, `approval_flow`, `policy`), so a line
/// points at the block it is about.
pub fn render_changes(response: &ApplyResponse) -> String {
    let mut out = String::new();
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for change in &response.changes {
        let line = match change.action {
            ChangeAction::Create => {
                created += 1;
                format!("+ {} {}", change.kind.as_str(), change.name)
            }
            ChangeAction::Update => {
                updated += 1;
                let mut details = change.fields.clone();
                if !change.secrets.is_empty() {
                    details.push(format!("secrets: {}", change.secrets.join(", ")));
                }
                if details.is_empty() {
                    format!("~ {} {}", change.kind.as_str(), change.name)
                } else {
                    format!("~ {} {} ({})", change.kind.as_str(), change.name, details.join(", "))
                }
            }
            ChangeAction::Unchanged => {
                unchanged += 1;
                format!("  {} {} (unchanged)", change.kind.as_str(), change.name)
            }
        };
        push_line(&mut out, "", &line);
    }
    if !response.changes.is_empty() {
        out.push('\n');
    }
    if response.dry_run {
        out.push_str(&format!(
            "{created} to create, {updated} to update, {unchanged} unchanged (dry run: nothing changed)\n"
        ));
    } else {
        out.push_str(&format!(
            "{created} created, {updated} updated, {unchanged} unchanged\n"
        ));
    }
    out
}

pub async fn target(ctx: &Ctx, command: TargetCommand) -> CmdResult {
    let client = ctx.client()?;
    match command {
        TargetCommand::List => {
            let targets = client.list_targets().await?;
            if ctx.json() {
                print_json(&targets)?;
                return ok();
            }
            let mut table = Table::new(["NAME", "TYPE", "CONFIG", "SECRETS", "UPDATED"]);
            for t in &targets {
                let secrets: Vec<String> = t.secrets.iter().map(|s| s.name.clone()).collect();
                table.row([
                    t.name.clone(),
                    t.target_type.clone(),
                    truncate(&serde_json::Value::Object(t.config.clone()).to_string(), 60),
                    join_or_dash(&secrets),
                    time(&t.updated_at),
                ]);
            }
            table.print_or("no targets");
        }
        TargetCommand::Show { name } => {
            let target = client.get_target(&name).await?;
            if ctx.json() {
                print_json(&target)?;
            } else {
                print_target(&target);
            }
        }
        TargetCommand::Delete { name } => {
            client.delete_target(&name).await?;
            if !ctx.json() {
                println!("deleted target {name}");
            }
        }
        TargetCommand::Test { name } => return test_target(ctx, &name).await,
        TargetCommand::Rotate { name } => {
            let rotated = client.rotate_target(&name).await?;
            if ctx.json() {
                print_json(&rotated)?;
            } else {
                println!(
                    "rotated the {} of target {}: only Hallpass knows it now (remove it from your apply files)",
                    rotated.secret, rotated.target
                );
            }
        }
        TargetCommand::Krl { name, to } => {
            let list = client.target_krl(&name).await?;
            write_output(&to, &list)?;
        }
    }
    ok()
}

async fn test_target(ctx: &Ctx, name: &str) -> CmdResult {
    let report = ctx.client()?.test_target(name).await?;
    if ctx.json() {
        print_json(&report)?;
    } else {
        let mut out = String::new();
        for check in &report.checks {
            let mark = if check.ok { "ok  " } else { "FAIL" };
            push_line(&mut out, "", &format!("{mark} {}: {}", check.name, check.detail));
        }
        let summary = if report.ok {
            format!("target {} passed every check", report.target)
        } else {
            format!("target {} is missing something (see FAIL above)", report.target)
        };
        push_line(&mut out, "", &summary);
        print!("{out}");
    }
    if report.ok {
        ok()
    } else {
        Ok(std::process::ExitCode::from(1))
    }
}

/// Writes `bytes` to `path` atomically (a temp file renamed over it), or
/// to stdout for `-`.
fn write_output(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    if path.as_os_str() == "-" {
        std::io::stdout().write_all(bytes)?;
        return Ok(());
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

fn print_target(target: &Target) {
    let mut rows = vec![
        ("name", target.name.clone()),
        ("type", target.target_type.clone()),
        ("created", time(&target.created_at)),
        ("updated", time(&target.updated_at)),
    ];
    if target.config.is_empty() {
        rows.push(("config", "-".to_string()));
    } else {
        rows.push(("config", String::new()));
    }
    let mut out = fields(&rows);
    for (key, value) in &target.config {
        push_line(&mut out, "  ", &format!("{key} = {value}"));
    }
    if let Some(key) = &target.ca_public_key {
        push_line(&mut out, "", "ca key:   (for sshd's TrustedUserCAKeys)");
        push_line(&mut out, "  ", key);
    }
    if target.secrets.is_empty() {
        push_line(&mut out, "", "secrets:  -");
    } else {
        push_line(&mut out, "", "secrets:  (write-only: names and when they last changed)");
        for secret in &target.secrets {
            push_line(
                &mut out,
                "  ",
                &format!("{} (changed {})", secret.name, time(&secret.updated_at)),
            );
        }
    }
    print!("{out}");
}

pub async fn role(ctx: &Ctx, command: RoleCommand) -> CmdResult {
    let client = ctx.client()?;
    match command {
        RoleCommand::List => {
            let roles = client.list_roles().await?;
            if ctx.json() {
                print_json(&roles)?;
                return ok();
            }
            let mut table = Table::new([
                "NAME",
                "TARGET",
                "DEFAULT",
                "MAX",
                "APPROVAL",
                "REQUESTABLE BY",
                "DESCRIPTION",
            ]);
            for r in &roles {
                table.row([
                    r.name.clone(),
                    r.target.clone(),
                    hallpass_core::format_duration(r.default_duration_seconds),
                    hallpass_core::format_duration(r.max_duration_seconds),
                    approval_summary(r),
                    join_or_dash(&r.requestable_by),
                    truncate(&r.description, 40),
                ]);
            }
            table.print_or("no roles");
        }
        RoleCommand::Show { name } => {
            let role = client.get_role(&name).await?;
            if ctx.json() {
                print_json(&role)?;
            } else {
                print_role(&role);
            }
        }
        RoleCommand::Delete { name } => {
            client.delete_role(&name).await?;
            if !ctx.json() {
                println!("deleted role {name}");
            }
        }
    }
    ok()
}

/// `auto`, `flow two-step`, `1 of group:approvers`, or `-` when no approval
/// is configured (policies may still decide).
fn approval_summary(role: &Role) -> String {
    if role.auto_approve {
        return "auto".to_string();
    }
    if let Some(flow) = &role.approval_flow {
        return format!("flow {flow}");
    }
    match &role.approval {
        Some(approval) => format!("{} of {}", approval.required, approval.approvers.join(", ")),
        None => "-".to_string(),
    }
}

fn print_role(role: &Role) {
    let spec = role;
    let labels: Vec<String> = spec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    print_fields(&[
        ("name", spec.name.clone()),
        ("target", spec.target.clone()),
        ("description", or_dash(Some(&spec.description))),
        (
            "default duration",
            hallpass_core::format_duration(role.default_duration_seconds),
        ),
        (
            "max duration",
            hallpass_core::format_duration(role.max_duration_seconds),
        ),
        (
            "max total duration",
            hallpass_core::format_duration(role.max_total_duration_seconds),
        ),
        ("requestable by", join_or_dash(&spec.requestable_by)),
        ("approval", approval_summary(role)),
        ("auto approve", yes_no(spec.auto_approve)),
        ("emergency access", yes_no(spec.emergency_access)),
        ("extensions need approval", yes_no(spec.extension_requires_approval)),
        ("labels", join_or_dash(&labels)),
        ("created", time(&role.created_at)),
        ("updated", time(&role.updated_at)),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hallpass_api::{Change, ConfigKind};

    fn change(kind: &str, name: &str, action: ChangeAction, fields: &[&str]) -> Change {
        let kind = match kind {
            "target" => ConfigKind::Target,
            "role" => ConfigKind::Role,
            "approval_flow" => ConfigKind::ApprovalFlow,
            _ => ConfigKind::Policy,
        };
        Change {
            kind,
            name: name.into(),
            action,
            fields: fields.iter().map(|f| f.to_string()).collect(),
            secrets: Vec::new(),
        }
    }

    #[test]
    fn changed_secrets_are_named_in_the_diff() {
        let mut panel = change("target", "panel", ChangeAction::Update, &[]);
        panel.secrets = vec!["hmac_secret".into()];
        let response = ApplyResponse {
            dry_run: true,
            changes: vec![panel],
        };
        assert!(
            render_changes(&response).starts_with("~ target panel (secrets: hmac_secret)\n"),
            "{}",
            render_changes(&response)
        );
    }

    #[test]
    fn changes_render_as_a_diff_with_a_summary() {
        let response = ApplyResponse {
            dry_run: true,
            changes: vec![
                change("target", "demo", ChangeAction::Create, &[]),
                change("role", "demo-admin", ChangeAction::Update, &["max_duration", "labels"]),
                change("role", "x", ChangeAction::Unchanged, &[]),
            ],
        };
        assert_eq!(
            render_changes(&response),
            "+ target demo\n~ role demo-admin (max_duration, labels)\n  role x (unchanged)\n\n\
             1 to create, 1 to update, 1 unchanged (dry run: nothing changed)\n"
        );
        let applied = ApplyResponse {
            dry_run: false,
            ..response
        };
        assert!(render_changes(&applied).ends_with("\n1 created, 1 updated, 1 unchanged\n"));
    }

    #[test]
    fn flows_and_policies_are_listed_like_the_hcl_blocks() {
        let response = ApplyResponse {
            dry_run: false,
            changes: vec![
                change("approval_flow", "two-step", ChangeAction::Create, &[]),
                change("policy", "limits", ChangeAction::Update, &["source"]),
                change("policy", "oncall", ChangeAction::Unchanged, &[]),
            ],
        };
        assert_eq!(
            render_changes(&response),
            "+ approval_flow two-step\n~ policy limits (source)\n  policy oncall (unchanged)\n\n\
             1 created, 1 updated, 1 unchanged\n"
        );
    }
}
