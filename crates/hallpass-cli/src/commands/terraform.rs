//! `hallpass terraform plan|apply`: approval bound to one Terraform plan.
//!
//! `plan` runs `terraform plan -out FILE`, reads what it changes from
//! `terraform show -json FILE`, and requests the role with the file's
//! SHA-256 and that summary attached, so approvers (and policies) decide on
//! exactly this plan. `apply` checks the plan file against the approved
//! digest, applies a private copy of it (so the file cannot be swapped
//! between the check and Terraform reading it) with the grant's credential
//! in Terraform's environment, and releases the grant when Terraform ends.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use hallpass_api::{AccessRequest, CreateRequest, RequestOutcome, RequestState, TerraformPlan};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::exec::{Signals, give_back, run_with_credential, signal_exit};
use super::requests::{RequestTerms, RoleRequest, ended_without_access, wait_settled};
use super::{CmdResult, Ctx, EXIT_INTERRUPTED, EXIT_NO_ACCESS};
use crate::output::{eprint_message, print_json};

#[derive(Debug, Subcommand)]
pub enum TerraformCommand {
    /// Run `terraform plan -out FILE` and request the role for applying
    /// exactly that plan (its SHA-256 and changes go with the request).
    Plan(PlanArgs),
    /// Apply an approved plan with the grant's credential, then release the grant.
    Apply(ApplyArgs),
}

/// Where Terraform runs, and which binary.
#[derive(Debug, Args)]
pub struct TerraformRun {
    /// The Terraform configuration's directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The terraform program to run.
    #[arg(long, default_value = "terraform", value_name = "PATH")]
    pub terraform: PathBuf,
    /// The saved plan file, relative to the current directory.
    #[arg(long = "plan-file", default_value = "hallpass.tfplan", value_name = "FILE")]
    pub plan_file: PathBuf,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The role to request for the apply.
    #[arg(long)]
    pub role: String,
    #[command(flatten)]
    pub terms: RequestTerms,
    /// Wait for the decision.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub run: TerraformRun,
    /// Arguments for `terraform plan`, after `--` (e.g. `-var-file=prod.tfvars`).
    #[arg(last = true, value_name = "TERRAFORM ARGS")]
    pub terraform_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The request `hallpass terraform plan` made.
    #[arg(long = "request", value_name = "ID")]
    pub request: String,
    #[command(flatten)]
    pub run: TerraformRun,
    /// Arguments for `terraform apply`, after `--` (e.g. `-parallelism=4`).
    #[arg(last = true, value_name = "TERRAFORM ARGS")]
    pub terraform_args: Vec<String>,
}

pub async fn run(ctx: &Ctx, command: TerraformCommand) -> CmdResult {
    match command {
        TerraformCommand::Plan(args) => plan(ctx, args).await,
        TerraformCommand::Apply(args) => apply(ctx, args).await,
    }
}

/// `terraform` in the configuration's directory, as a blocking command.
fn terraform(run: &TerraformRun) -> std::process::Command {
    let mut command = std::process::Command::new(&run.terraform);
    if let Some(dir) = &run.dir {
        command.current_dir(dir);
    }
    command.env("TF_IN_AUTOMATION", "1");
    command
}

/// The plan file as an absolute path: Terraform runs in `--dir`.
fn plan_path(run: &TerraformRun) -> anyhow::Result<PathBuf> {
    std::path::absolute(&run.plan_file)
        .with_context(|| format!("cannot resolve the plan file {}", run.plan_file.display()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn plan(ctx: &Ctx, args: PlanArgs) -> CmdResult {
    let file = plan_path(&args.run)?;
    let program = args.run.terraform.display().to_string();
    // Terraform's plan goes to stderr with everything else meant for
    // people: stdout carries only the request, for `ID=$(hallpass ...)`.
    let to_stderr = {
        use std::os::fd::AsFd as _;
        std::io::stderr().as_fd().try_clone_to_owned()?
    };
    let planned = terraform(&args.run)
        .args(["plan", "-input=false"])
        .arg(format!("-out={}", file.display()))
        .args(&args.terraform_args)
        .stdout(Stdio::from(to_stderr))
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !planned.success() {
        bail!("terraform plan failed ({planned}); nothing was requested");
    }
    let shown = terraform(&args.run)
        .args(["show", "-json"])
        .arg(&file)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !shown.status.success() {
        bail!("terraform show -json failed ({}); nothing was requested", shown.status);
    }
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read the plan file {}", file.display()))?;
    let plan = summarize(&shown.stdout, sha256_hex(&bytes))?;
    let client = ctx.client()?;
    let ask = RoleRequest {
        role: args.role,
        terms: args.terms,
    };
    let body = CreateRequest {
        plan: Some(plan.clone()),
        ..ask.body(None)
    };
    let response = client.create_request(&body).await?;
    let request = response.request;
    let reused = response.outcome != RequestOutcome::Created;
    eprint_message(&format!(
        "{} {} for role {}: plan {} ({}), saved as {}",
        if reused { "using request" } else { "requested" },
        request.id,
        request.role,
        &plan.sha256,
        plan.summary(),
        file.display()
    ));
    let request = if args.wait {
        match wait_settled(&client, request).await? {
            Some(settled) => settled,
            None => return Ok(ExitCode::from(EXIT_INTERRUPTED)),
        }
    } else {
        request
    };
    if ctx.json() {
        print_json(&request)?;
    } else {
        println!("{}", request.id);
    }
    match request.state {
        RequestState::Active | RequestState::Approved | RequestState::Pending | RequestState::Scheduled => {
            eprint_message(&format!(
                "then: hallpass terraform apply --request {} --plan-file {}",
                request.id,
                file.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprint_message(&ended_without_access(&request));
            Ok(ExitCode::from(EXIT_NO_ACCESS))
        }
    }
}

/// The plan's changes, from `terraform show -json`: resource addresses by
/// action. No-ops and reads change nothing and are left out; a resource
/// Terraform forgets (leaves unmanaged) is listed with the deletions, since
/// Terraform stops looking after it.
pub fn summarize(show_json: &[u8], sha256: String) -> anyhow::Result<TerraformPlan> {
    let shown: Value = serde_json::from_slice(show_json).context("terraform show -json printed no JSON")?;
    let mut plan = TerraformPlan {
        sha256,
        ..TerraformPlan::default()
    };
    let changes = shown["resource_changes"].as_array().cloned().unwrap_or_default();
    for change in changes {
        let Some(address) = change["address"].as_str() else {
            bail!("terraform show -json listed a resource change without an address");
        };
        let actions: Vec<&str> = change["change"]["actions"]
            .as_array()
            .map(|actions| actions.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let list = match actions.as_slice() {
            [] | ["no-op"] | ["read"] => continue,
            ["create"] => &mut plan.create,
            ["update"] => &mut plan.update,
            ["delete", "create"] | ["create", "delete"] => &mut plan.replace,
            ["delete"] | ["forget"] => &mut plan.delete,
            other => {
                bail!("terraform show -json gave {address} the actions {other:?}, which this hallpass does not know")
            }
        };
        list.push(address.to_string());
    }
    Ok(plan)
}

async fn apply(ctx: &Ctx, args: ApplyArgs) -> CmdResult {
    let client = ctx.client()?;
    let mut signals = Signals::listen()?;
    let request = client.get_request(&args.request).await?;
    let Some(approved) = request.plan.clone() else {
        bail!(
            "request {} is not for a Terraform plan; request one with `hallpass terraform plan`",
            request.id
        );
    };
    let file = plan_path(&args.run)?;
    // The file is read once: its copy is what is checked and applied.
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read the plan file {}", file.display()))?;
    let digest = sha256_hex(&bytes);
    if digest != approved.sha256 {
        bail!(
            "{} (sha256 {digest}) is not the plan approved in request {} (sha256 {}); it changed since: run \
             `hallpass terraform plan` again for an approval of the new plan",
            file.display(),
            request.id,
            approved.sha256
        );
    }
    let copy = private_copy(&bytes)?;
    let settled = tokio::select! {
        settled = wait_settled(&client, request.clone()) => settled?,
        signal = signals.next() => return Ok(ExitCode::from(signal_exit(signal))),
    };
    let Some(grant) = settled else {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    };
    if grant.state != RequestState::Active {
        eprint_message(&ended_without_access(&grant));
        return Ok(ExitCode::from(EXIT_NO_ACCESS));
    }
    let status = run_apply(&client, &grant, &args, copy.path().join("plan.tfplan"), &mut signals).await;
    give_back(&client, &grant).await;
    Ok(ExitCode::from(status?))
}

/// `terraform apply PLAN` with the grant's credential.
async fn run_apply(
    client: &hallpass_client::Client,
    grant: &AccessRequest,
    args: &ApplyArgs,
    plan: PathBuf,
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    let mut command = tokio::process::Command::from(terraform(&args.run));
    command
        .args(["apply", "-input=false"])
        .args(&args.terraform_args)
        .arg(plan);
    run_with_credential(client, grant, command, signals).await
}

/// The plan's bytes in a new owner-only directory, as `plan.tfplan`.
fn private_copy(bytes: &[u8]) -> anyhow::Result<tempfile::TempDir> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = tempfile::Builder::new().prefix("hallpass-plan-").tempdir()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.path().join("plan.tfplan"))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraform_show_json_is_summarised_by_action() {
        let shown = serde_json::json!({"resource_changes": [
            {"address": "terraform_data.a", "change": {"actions": ["create"]}},
            {"address": "terraform_data.b", "change": {"actions": ["update"]}},
            {"address": "terraform_data.c", "change": {"actions": ["delete", "create"]}},
            {"address": "terraform_data.d", "change": {"actions": ["create", "delete"]}},
            {"address": "terraform_data.e", "change": {"actions": ["delete"]}},
            {"address": "terraform_data.f", "change": {"actions": ["no-op"]}},
            {"address": "data.x.y", "change": {"actions": ["read"]}},
            {"address": "terraform_data.g", "change": {"actions": ["forget"]}},
        ]});
        let plan = summarize(shown.to_string().as_bytes(), "0".repeat(64)).unwrap();
        assert_eq!(plan.create, ["terraform_data.a"]);
        assert_eq!(plan.update, ["terraform_data.b"]);
        assert_eq!(plan.replace, ["terraform_data.c", "terraform_data.d"]);
        assert_eq!(plan.delete, ["terraform_data.e", "terraform_data.g"]);
        let empty = summarize(br#"{"format_version": "1.2"}"#, "0".repeat(64)).unwrap();
        assert_eq!(empty.summary(), "no changes");
        let odd = serde_json::json!({"resource_changes": [{"address": "a.b", "change": {"actions": ["teleport"]}}]});
        assert!(summarize(odd.to_string().as_bytes(), String::new()).is_err());
        assert!(summarize(b"not json", String::new()).is_err());
    }
}
