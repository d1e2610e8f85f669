//! Access requests: `request ROLE`, `requests`, `show`, `approve`, `deny`,
//! `cancel` and `credentials`.
//!
//! `request --wait` long-polls the server, tracking the request's `version`,
//! with a spinner on stderr. On success stdout carries only what
//! `hallpass credentials ID` would print, so `T=$(hallpass request ... --wait)`
//! works; everything meant for people goes to stderr.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use chrono::Utc;
use clap::{Args, ValueEnum};
use hallpass_api::{AccessRequest, CreateRequest, Credential};
use hallpass_client::Client;
use indicatif::ProgressBar;

use super::{CmdResult, Ctx, EXIT_INTERRUPTED, EXIT_NO_ACCESS, ok};
use crate::output::{
    Table, join_or_dash, opt_time, opt_time_relative, or_dash, print_fields, print_json, time, truncate, yes_no,
};

/// Server-side long-poll timeout for `--wait`, in seconds.
const WAIT_POLL_SECONDS: u64 = 25;

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Role to request.
    pub role: String,
    /// How long access should last once granted, e.g. `30m` or `1h30m`
    /// (default: the role's default duration).
    #[arg(long = "for", value_name = "DURATION", allow_hyphen_values = true)]
    pub duration: Option<String>,
    /// Why you need access; shown to approvers and kept in the audit log.
    #[arg(long)]
    pub reason: String,
    /// Ticket or incident reference.
    #[arg(long, value_name = "ID")]
    pub ticket: Option<String>,
    /// Wait until access is granted (then print the credential) or refused.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only requests in this state (pending, active, denied, ...).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Only your own requests.
    #[arg(long)]
    pub mine: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CredentialFormat {
    /// The raw token only.
    Token,
    /// `export KEY='value'` lines for a shell.
    Env,
    /// The credential object.
    Json,
}

pub async fn request(ctx: &Ctx, args: RequestArgs) -> CmdResult {
    let client = ctx.client()?;
    let body = CreateRequest {
        role: args.role,
        duration: args.duration,
        reason: args.reason,
        ticket: args.ticket,
    };
    let created = client.create_request(&body).await?;
    if args.wait {
        return wait_for_access(ctx, &client, created).await;
    }
    if ctx.json() {
        print_json(&created)?;
        return ok();
    }
    let now = Utc::now();
    let mut rows = vec![
        ("request", created.id.clone()),
        ("role", created.role.clone()),
        ("state", created.state.clone()),
    ];
    if created.state == "active" {
        rows.push(("expires", opt_time_relative(created.expires_at.as_ref(), now)));
    } else if created.state == "pending" {
        rows.push(("approvals", approval_progress(&created)));
    }
    print_fields(&rows);
    match created.state.as_str() {
        "active" => eprintln!("hint: `hallpass credentials {}` prints the credential", created.id),
        "pending" | "approved" => eprintln!(
            "hint: `hallpass show {id}` follows it; `hallpass cancel {id}` withdraws it",
            id = created.id
        ),
        _ => {}
    }
    ok()
}

/// Long-polls until the request holds access or can no longer get it.
async fn wait_for_access(ctx: &Ctx, client: &Client, created: AccessRequest) -> CmdResult {
    let id = created.id.clone();
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message(progress_line(&created));
    let settled = tokio::select! {
        settled = poll_until_settled(client, created, &bar) => settled,
        Ok(()) = tokio::signal::ctrl_c() => {
            bar.finish_and_clear();
            eprintln!("stopped waiting; request {id} is still open. `hallpass cancel {id}` would withdraw it.");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    };
    bar.finish_and_clear();
    let request = settled?;
    if request.state != "active" {
        if ctx.json() {
            print_json(&request)?;
        }
        eprintln!("{}", ended_without_access(&request));
        return Ok(ExitCode::from(EXIT_NO_ACCESS));
    }
    let credential = client.credentials(&request.id).await?;
    eprintln!(
        "access granted: {} on {} until {}",
        request.role,
        request.target,
        opt_time_relative(request.expires_at.as_ref(), Utc::now())
    );
    print_credential(
        &credential,
        if ctx.json() {
            CredentialFormat::Json
        } else {
            CredentialFormat::Token
        },
    )?;
    ok()
}

async fn poll_until_settled(
    client: &Client,
    mut request: AccessRequest,
    bar: &ProgressBar,
) -> anyhow::Result<AccessRequest> {
    while is_open(&request.state) {
        request = client
            .wait_request(&request.id, request.version, WAIT_POLL_SECONDS)
            .await?;
        bar.set_message(progress_line(&request));
    }
    Ok(request)
}

/// States from which a request may still become active.
fn is_open(state: &str) -> bool {
    matches!(state, "pending" | "approved")
}

/// `request ID pending: 0/1 approvals (approvers: group:approvers)`.
fn progress_line(request: &AccessRequest) -> String {
    match request.state.as_str() {
        "pending" => format!(
            "request {} pending: {} approvals (approvers: {})",
            request.id,
            approval_progress(request),
            join_or_dash(&request.approvers)
        ),
        "approved" => format!("request {} approved: issuing credentials", request.id),
        state => format!("request {} {state}", request.id),
    }
}

fn approval_progress(request: &AccessRequest) -> String {
    format!("{}/{}", request.approvals.len(), request.required_approvals)
}

/// ` by bob: not during the freeze`, or nothing when nobody is recorded.
fn by(record: &Option<hallpass_api::DecisionRecord>) -> String {
    match record {
        Some(record) => match record.comment.as_deref() {
            Some(comment) if !comment.is_empty() => format!(" by {}: {comment}", record.by),
            _ => format!(" by {}", record.by),
        },
        None => String::new(),
    }
}

/// Who or what ended the request, for people.
pub fn ended_without_access(request: &AccessRequest) -> String {
    let id = &request.id;
    match request.state.as_str() {
        "denied" => format!("request {id} was denied{}", by(&request.decision)),
        "cancelled" => format!("request {id} was cancelled{}", by(&request.decision)),
        "expired" if request.activated_at.is_none() => {
            format!("request {id} expired before it was approved")
        }
        "expired" => format!(
            "access under request {id} expired at {}",
            opt_time(request.expires_at.as_ref())
        ),
        "timed_out" => format!("request {id} timed out waiting for approval"),
        "revoked" => format!("access under request {id} was revoked{}", by(&request.ended_by)),
        "released" => format!("access under request {id} was released{}", by(&request.ended_by)),
        "revoke_failed" => format!(
            "access under request {id} was ended, but revoking it failed: {}",
            or_dash(request.revoke_error.as_deref())
        ),
        state => format!("request {id} ended in state {state} without access"),
    }
}

pub async fn list(ctx: &Ctx, args: ListArgs) -> CmdResult {
    let requests = ctx.client()?.list_requests(args.state.as_deref(), args.mine).await?;
    if ctx.json() {
        print_json(&requests)?;
    } else {
        request_table(&requests).print_or("no requests");
    }
    ok()
}

/// The table shared by `requests` and `grants`.
pub fn request_table(requests: &[AccessRequest]) -> Table {
    let now = Utc::now();
    let mut table = Table::new([
        "ID",
        "ROLE",
        "REQUESTER",
        "STATE",
        "DURATION",
        "CREATED",
        "EXPIRES",
        "REASON",
    ]);
    for r in requests {
        table.row([
            r.id.clone(),
            r.role.clone(),
            r.requester.clone(),
            r.state.clone(),
            hallpass_core::format_duration(r.duration_seconds),
            time(&r.created_at),
            opt_time_relative(r.expires_at.as_ref(), now),
            truncate(&r.reason, 40),
        ]);
    }
    table
}

pub async fn show(ctx: &Ctx, id: &str) -> CmdResult {
    let request = ctx.client()?.get_request(id).await?;
    if ctx.json() {
        print_json(&request)?;
    } else {
        print!("{}", render_detail(&request));
    }
    ok()
}

/// Every field of a request, for `show`.
pub fn render_detail(r: &AccessRequest) -> String {
    let now = Utc::now();
    let decision = r.decision.as_ref().map(|d| {
        format!(
            "{} at {}{}",
            d.by,
            time(&d.at),
            d.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default()
        )
    });
    let ended_by = r.ended_by.as_ref().map(|d| {
        format!(
            "{} at {}{}",
            d.by,
            time(&d.at),
            d.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default()
        )
    });
    let missing = (r.required_approvals as usize).saturating_sub(r.approvals.len());
    let still_needed = if r.state == "pending" && missing > 0 {
        format!("{missing} more from {}", join_or_dash(&r.approvers))
    } else {
        "-".to_string()
    };
    let mut rows = vec![
        ("id", r.id.clone()),
        ("role", r.role.clone()),
        ("target", r.target.clone()),
        ("requester", r.requester.clone()),
        ("state", r.state.clone()),
        ("duration", hallpass_core::format_duration(r.duration_seconds)),
        ("reason", r.reason.clone()),
        ("ticket", or_dash(r.ticket.as_deref())),
        ("created", time(&r.created_at)),
        ("updated", time(&r.updated_at)),
        ("activated", opt_time(r.activated_at.as_ref())),
        ("expires", opt_time_relative(r.expires_at.as_ref(), now)),
        ("ended", opt_time(r.ended_at.as_ref())),
        ("auto approved", yes_no(r.auto_approved)),
        ("approvers", join_or_dash(&r.approvers)),
        ("approvals", format!("{}/{}", r.approvals.len(), r.required_approvals)),
        ("still needed", still_needed),
        ("decision", or_dash(decision.as_deref())),
        ("ended by", or_dash(ended_by.as_deref())),
    ];
    if r.revoke_error.is_some() || r.revoke_attempts > 0 {
        rows.push(("revoke error", or_dash(r.revoke_error.as_deref())));
        rows.push(("revoke attempts", r.revoke_attempts.to_string()));
        rows.push(("next revoke", opt_time_relative(r.next_revoke_at.as_ref(), now)));
    }
    rows.push(("version", r.version.to_string()));
    let mut out = crate::output::fields(&rows);
    if !r.approvals.is_empty() {
        out.push_str("approved by:\n");
        for a in &r.approvals {
            let comment = a.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
            out.push_str(&format!("  {} at {}{comment}\n", a.approver, time(&a.at)));
        }
    }
    match &r.credential {
        Some(serde_json::Value::Object(map)) if !map.is_empty() => {
            out.push_str("credential:\n");
            for (key, value) in map {
                let value = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.push_str(&format!("  {key}: {value}\n"));
            }
        }
        Some(serde_json::Value::Null) | None => {}
        Some(other) => out.push_str(&format!("credential: {other}\n")),
    }
    out
}

/// `approve`, `deny`, `cancel`: prints the updated request.
pub async fn decide(ctx: &Ctx, id: &str, action: Decision) -> CmdResult {
    let client = ctx.client()?;
    let request = match action {
        Decision::Approve(comment) => client.approve(id, comment).await?,
        Decision::Deny(comment) => client.deny(id, comment).await?,
        Decision::Cancel => client.cancel(id).await?,
    };
    print_updated(ctx, &request)?;
    ok()
}

pub enum Decision {
    Approve(Option<String>),
    Deny(Option<String>),
    Cancel,
}

/// One line about a request that was just changed (approve, revoke, ...).
pub fn print_updated(ctx: &Ctx, r: &AccessRequest) -> anyhow::Result<()> {
    if ctx.json() {
        return print_json(r);
    }
    let detail = match r.state.as_str() {
        "pending" => format!(
            " ({} approvals; still needs {} more from {})",
            approval_progress(r),
            (r.required_approvals as usize).saturating_sub(r.approvals.len()),
            join_or_dash(&r.approvers)
        ),
        "active" => format!(", expires {}", opt_time_relative(r.expires_at.as_ref(), Utc::now())),
        "revoke_failed" => format!(" (will retry: {})", or_dash(r.revoke_error.as_deref())),
        "denied" | "cancelled" => by(&r.decision),
        "revoked" | "released" => by(&r.ended_by),
        _ => String::new(),
    };
    println!("request {} ({} for {}): {}{detail}", r.id, r.role, r.requester, r.state);
    Ok(())
}

pub async fn credentials(ctx: &Ctx, id: &str, format: Option<CredentialFormat>) -> CmdResult {
    let credential = ctx.client()?.credentials(id).await?;
    let format = format.unwrap_or(if ctx.json() {
        CredentialFormat::Json
    } else {
        CredentialFormat::Token
    });
    print_credential(&credential, format)?;
    ok()
}

fn print_credential(credential: &Credential, format: CredentialFormat) -> anyhow::Result<()> {
    match format {
        CredentialFormat::Token => println!("{}", credential.token),
        CredentialFormat::Json => print_json(credential)?,
        CredentialFormat::Env => print!("{}", env_lines(credential)?),
    }
    Ok(())
}

/// `export KEY='value'` lines, safe to `eval` in a POSIX shell.
pub fn env_lines(credential: &Credential) -> anyhow::Result<String> {
    let mut out = String::new();
    for (key, value) in &credential.env {
        if !is_env_name(key) {
            bail!("the server sent an environment variable with an unusable name: {key:?}");
        }
        out.push_str(&format!("export {key}={}\n", shell_quote(value)));
    }
    Ok(out)
}

/// Single-quotes `value` for a POSIX shell: `it's` becomes `'it'\''s'`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn credential(env: &[(&str, &str)]) -> Credential {
        Credential {
            request_id: "r1".into(),
            credential_type: "jwt".into(),
            expires_at: Utc::now(),
            token: "eyJ...".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn shell_quoting_survives_single_quotes_and_metacharacters() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf /) `x` \"y\"\n"), "'$(rm -rf /) `x` \"y\"\n'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn env_format_exports_every_variable() {
        let text = env_lines(&credential(&[("HALLPASS_JWT", "a.b.c"), ("PGPASSWORD", "p'w")])).unwrap();
        assert_eq!(text, "export HALLPASS_JWT='a.b.c'\nexport PGPASSWORD='p'\\''w'\n");
    }

    #[test]
    fn env_format_rejects_names_a_shell_would_misread() {
        assert!(env_lines(&credential(&[("BAD;rm", "x")])).is_err());
        assert!(env_lines(&credential(&[("1X", "x")])).is_err());
    }

    #[test]
    fn env_format_output_round_trips_through_sh() {
        let tricky = "a'b\"c $HOME `id` \\ end";
        let text = env_lines(&credential(&[("HP_TEST", tricky)])).unwrap();
        let Ok(output) = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{text}printf %s \"$HP_TEST\""))
            .output()
        else {
            return; // no shell on this machine
        };
        assert_eq!(String::from_utf8_lossy(&output.stdout), tricky);
    }
}
