//! Access requests: `request ROLE`, `requests`, `show`, `approve`, `deny`,
//! `cancel` and `credentials`.
//!
//! `request --wait` long-polls the server, tracking the request's `version`,
//! with a spinner on stderr. On success stdout carries only what
//! `hallpass credentials ID` would print, so `T=$(hallpass request ... --wait)`
//! works; everything meant for people goes to stderr.
//!
//! Asking for a role you already hold returns that grant instead of a new
//! request (with an extension asked for, when the grant ends too early); the
//! command says so rather than pretending a new request was made.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::{Args, ValueEnum};
use hallpass_api::{
    AccessRequest, CreateRequest, CreateRequestResponse, Credential, ExtensionState, RequestOutcome, RequestState,
};
use hallpass_client::Client;
use indicatif::ProgressBar;

use super::detail::{approval_progress, flags, flow_status, render_detail};
use super::extension::{extension_ended_without_access, extension_state_phrase, find_extension, poll_extension};
use super::grant_keys::KeyStore;
use super::{CmdResult, Ctx, EXIT_INTERRUPTED, EXIT_NO_ACCESS, WAIT_POLL_SECONDS, ok};
use crate::output::{
    Table, eprint_message, escape_controls, join_or_dash, opt_time, opt_time_relative, or_dash, print_fields,
    print_json, print_message, time, time_relative, truncate,
};

/// How long and why: what every request of a role states.
#[derive(Debug, Args)]
pub struct RequestTerms {
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
}

/// What every command that requests a role (`request`, `ssh`, `exec`) asks.
#[derive(Debug, Args)]
pub struct RoleRequest {
    /// Role to request.
    pub role: String,
    #[command(flatten)]
    pub terms: RequestTerms,
}

impl RoleRequest {
    /// The request body: now, not break-glass, with `ssh_public_key` to certify.
    pub fn body(&self, ssh_public_key: Option<String>) -> CreateRequest {
        CreateRequest {
            role: self.role.clone(),
            duration: self.terms.duration.clone(),
            reason: self.terms.reason.clone(),
            ticket: self.terms.ticket.clone(),
            emergency: false,
            scheduled_start: None,
            ssh_public_key,
            plan: None,
        }
    }
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    #[command(flatten)]
    pub ask: RoleRequest,
    /// Break-glass: on roles with emergency access, granted at once unless a
    /// policy denies it; the grant is flagged and reviewed afterwards.
    #[arg(long)]
    pub emergency: bool,
    /// Start access at this time instead of at approval: RFC 3339 such as
    /// `2026-12-01T09:00:00Z` or `2026-12-01T10:00:00+01:00`, or `2026-12-01T09:00Z`.
    #[arg(long = "at", value_name = "TIME", value_parser = parse_start_time)]
    pub at: Option<DateTime<Utc>>,
    /// Wait until access is granted (then print the credential), scheduled,
    /// or refused.
    #[arg(long)]
    pub wait: bool,
    /// For SSH roles: your public key file (e.g. ~/.ssh/id_ed25519.pub) to
    /// certify. Without it, Hallpass makes a key pair for the grant and
    /// hands out its private key with the credentials.
    #[arg(long, value_name = "FILE")]
    pub ssh_public_key: Option<std::path::PathBuf>,
}

/// `--at`: RFC 3339 (`2026-12-01T09:00:00Z`, `2026-12-01T10:00:00+01:00`,
/// fractional seconds allowed), or the same without seconds
/// (`2026-12-01T09:00Z`, `2026-12-01T10:00+01:00`). The zone is required: a
/// bare local time would mean different moments on different machines.
pub fn parse_start_time(text: &str) -> Result<DateTime<Utc>, String> {
    // `t` and `z` are RFC 3339 too; upper case lets one pattern cover both.
    let upper = text.trim().to_ascii_uppercase();
    let trimmed = upper.as_str();
    if let Ok(at) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Some(naive) = trimmed.strip_suffix('Z')
        && let Ok(at) = NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M")
    {
        return Ok(at.and_utc());
    }
    if let Ok(at) = DateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M%:z") {
        return Ok(at.with_timezone(&Utc));
    }
    Err(format!(
        "{text:?} is not a time Hallpass understands; write it in UTC or with an offset, \
         like 2026-12-01T09:00:00Z, 2026-12-01T09:00Z or 2026-12-01T10:00:00+01:00 (RFC 3339)"
    ))
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only requests in this state (pending, active, denied, ...).
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub state: Option<RequestState>,
    /// Only your own requests.
    #[arg(long)]
    pub mine: bool,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub limit: usize,
}

fn parse_state(text: &str) -> Result<RequestState, String> {
    text.parse()
        .map_err(|e: hallpass_core::request::UnknownState| e.to_string())
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
        emergency: args.emergency,
        scheduled_start: args.at,
        ..args
            .ask
            .body(args.ssh_public_key.as_deref().map(read_public_key).transpose()?)
    };
    let response = client.create_request(&body).await?;
    if let Some(overlap) = overlap(&response) {
        return report_overlap(ctx, &client, &response.request, overlap, args.wait).await;
    }
    let created = response.request;
    if response.outcome == RequestOutcome::ExistingRequest {
        eprint_message(&format!(
            "you already have request {} for {} ({}); this is it",
            created.id, created.role, created.state
        ));
        if args.wait {
            return wait_for_access(ctx, &client, created).await;
        }
    }
    // A new request is denied at creation only by the policies (or their
    // duration cap); the reasons are in its decision.
    if created.state == RequestState::Denied {
        // Refused outright: there is nothing to wait for.
        if ctx.json() {
            print_json(&created)?;
        }
        eprint_message(&ended_without_access(&created));
        return Ok(ExitCode::from(EXIT_NO_ACCESS));
    }
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
        ("state", created.state.to_string()),
    ];
    if created.emergency {
        rows.push(("emergency", "yes: flagged, and reviewed afterwards".to_string()));
    }
    if let Some(start) = &created.scheduled_start {
        rows.push(("starts", time_relative(start, now)));
    }
    match created.state {
        RequestState::Active => rows.push(("expires", opt_time_relative(created.expires_at.as_ref(), now))),
        RequestState::Pending => {
            rows.push(("approvals", approval_progress(&created)));
            if let Some(deadline) = &created.pending_expires_at {
                rows.push(("times out", time_relative(deadline, now)));
            }
        }
        _ => {}
    }
    print_fields(&rows);
    match created.state {
        RequestState::Active => eprint_message(&format!(
            "hint: `hallpass credentials {}` prints the credential",
            created.id
        )),
        RequestState::Pending | RequestState::Approved | RequestState::Scheduled => eprint_message(&format!(
            "hint: `hallpass show {id}` follows it; `hallpass cancel {id}` withdraws it",
            id = created.id
        )),
        _ => {}
    }
    ok()
}

/// What the server did when the role was already held.
#[derive(Debug, PartialEq, Eq)]
pub enum Overlap {
    /// It asked to extend the grant: the extension with this number.
    Extending(u32),
    /// The grant already lasts as long as was asked for; nothing changed.
    Covered,
}

/// Whether the answer is a grant the caller already held, as the server
/// says in `outcome`, and whether this call extended it.
pub fn overlap(response: &CreateRequestResponse) -> Option<Overlap> {
    let last = response.request.extensions.last().map(|e| e.number);
    match response.outcome {
        RequestOutcome::Created | RequestOutcome::ExistingRequest => None,
        RequestOutcome::ExistingGrant => match response
            .request
            .extensions
            .last()
            .filter(|e| e.state == ExtensionState::Pending)
            .map(|e| e.number)
        {
            // A pending extension, even an earlier one, is what the held
            // grant is waiting for.
            Some(number) => Some(Overlap::Extending(number)),
            None => Some(Overlap::Covered),
        },
        RequestOutcome::ExtensionRequested | RequestOutcome::Extended | RequestOutcome::ExtensionDenied => {
            last.map(Overlap::Extending)
        }
    }
}

/// `you already hold ROLE (grant ID, until T); asked to extend it by X: ...`.
pub fn overlap_message(grant: &AccessRequest, overlap: &Overlap, now: DateTime<Utc>) -> String {
    let held = format!(
        "you already hold {} (grant {}, until {})",
        grant.role,
        grant.id,
        opt_time_relative(grant.expires_at.as_ref(), now)
    );
    match overlap {
        Overlap::Covered => format!("{held}, which already covers the time you asked for"),
        Overlap::Extending(number) => match find_extension(grant, *number) {
            Some(extension) => format!(
                "{held}; asked to extend it by {}: extension #{number} {}",
                hallpass_core::format_duration(extension.by_seconds),
                extension_state_phrase(extension)
            ),
            None => format!("{held}; asked to extend it (extension #{number})"),
        },
    }
}

/// The role was already held: say so, and with `--wait` wait for the
/// extension the server asked for.
async fn report_overlap(ctx: &Ctx, client: &Client, grant: &AccessRequest, overlap: Overlap, wait: bool) -> CmdResult {
    let message = overlap_message(grant, &overlap, Utc::now());
    let mut grant = grant.clone();
    if let Overlap::Extending(number) = overlap
        && wait
        && find_extension(&grant, number).is_some_and(|e| e.state == ExtensionState::Pending)
    {
        eprint_message(&message);
        grant = match poll_extension(client, grant, number).await? {
            Some(settled) => settled,
            None => return Ok(ExitCode::from(EXIT_INTERRUPTED)),
        };
    } else if wait || ctx.json() {
        eprint_message(&message);
    } else {
        print_message(&message);
    }
    let refused = match overlap {
        Overlap::Extending(number) => find_extension(&grant, number)
            .filter(|extension| matches!(extension.state, ExtensionState::Denied | ExtensionState::Lapsed))
            .map(|extension| extension_ended_without_access(&grant, extension)),
        Overlap::Covered => None,
    };
    if let Some(reason) = refused {
        if ctx.json() {
            print_json(&grant)?;
        }
        eprint_message(&reason);
        return Ok(ExitCode::from(EXIT_NO_ACCESS));
    }
    if !wait {
        if ctx.json() {
            print_json(&grant)?;
        }
        return ok();
    }
    if grant.state != RequestState::Active {
        if ctx.json() {
            print_json(&grant)?;
        }
        eprint_message(&ended_without_access(&grant));
        return Ok(ExitCode::from(EXIT_NO_ACCESS));
    }
    print_access(ctx, client, &grant).await
}

/// Long-polls until the request holds access, is scheduled, or can no
/// longer get access.
async fn wait_for_access(ctx: &Ctx, client: &Client, created: AccessRequest) -> CmdResult {
    let id = created.id.clone();
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message(escape_controls(&progress_line(&created)).into_owned());
    let settled = tokio::select! {
        settled = poll_until_settled(client, created, &bar) => settled,
        Ok(()) = tokio::signal::ctrl_c() => {
            bar.finish_and_clear();
            eprint_message(&format!("stopped waiting; request {id} is still open. `hallpass cancel {id}` would withdraw it."));
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    };
    bar.finish_and_clear();
    let request = settled?;
    match request.state {
        RequestState::Active => print_access(ctx, client, &request).await,
        RequestState::Scheduled => {
            // Approved for later: no credential exists yet, so stop here.
            if ctx.json() {
                print_json(&request)?;
            }
            eprint_message(&scheduled_message(&request, Utc::now()));
            ok()
        }
        _ => {
            if ctx.json() {
                print_json(&request)?;
            }
            eprint_message(&ended_without_access(&request));
            Ok(ExitCode::from(EXIT_NO_ACCESS))
        }
    }
}

/// `request ID is approved and scheduled: access starts at T (in 3h); ...`.
pub fn scheduled_message(request: &AccessRequest, now: DateTime<Utc>) -> String {
    format!(
        "request {id} is approved and scheduled: access to {role} starts at {start}; \
         `hallpass credentials {id}` prints the credential from then",
        id = request.id,
        role = request.role,
        start = opt_time_relative(request.scheduled_start.as_ref(), now),
    )
}

/// `access granted: ...` on stderr, the credential on stdout.
async fn print_access(ctx: &Ctx, client: &Client, request: &AccessRequest) -> CmdResult {
    let credential = client.credentials(&request.id).await?;
    keep_one_time(&credential);
    let emergency = if request.emergency {
        " (break-glass: flagged for review)"
    } else {
        ""
    };
    eprint_message(&format!(
        "access granted: {} on {} until {}{emergency}",
        request.role,
        request.target,
        opt_time_relative(request.expires_at.as_ref(), Utc::now())
    ));
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

/// A public key file's one line (comments and blank lines skipped).
pub fn read_public_key(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the public key {}: {e}", path.display()))?;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    match (lines.next(), lines.next()) {
        (Some(line), None) => Ok(line.to_string()),
        (None, _) => bail!("{} holds no public key", path.display()),
        (Some(_), Some(_)) => bail!(
            "{} holds more than one key; give a file with just the one to certify",
            path.display()
        ),
    }
}

/// Waits, with a spinner, until the request is no longer pending or
/// approved; `None` when interrupted.
pub async fn wait_settled(client: &Client, request: AccessRequest) -> anyhow::Result<Option<AccessRequest>> {
    if !is_open(request.state) {
        return Ok(Some(request));
    }
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message(escape_controls(&progress_line(&request)).into_owned());
    let settled = tokio::select! {
        settled = poll_until_settled(client, request, &bar) => settled.map(Some),
        Ok(()) = tokio::signal::ctrl_c() => Ok(None),
    };
    bar.finish_and_clear();
    settled
}

async fn poll_until_settled(
    client: &Client,
    mut request: AccessRequest,
    bar: &ProgressBar,
) -> anyhow::Result<AccessRequest> {
    while is_open(request.state) {
        request = client
            .wait_request(&request.id, request.version, WAIT_POLL_SECONDS)
            .await?;
        bar.set_message(escape_controls(&progress_line(&request)).into_owned());
    }
    Ok(request)
}

/// States from which a request may still become active.
fn is_open(state: RequestState) -> bool {
    matches!(state, RequestState::Pending | RequestState::Approved)
}

/// `request ID pending: 0/1 approvals (approvers: group:approvers)`, or with
/// an approval flow `request ID pending: stage 1/2: 0/1 approvals (may approve: ...)`.
fn progress_line(request: &AccessRequest) -> String {
    match request.state {
        RequestState::Pending => match &request.approval {
            Some(flow) => format!("request {} pending: {}", request.id, flow_status(flow)),
            None => format!(
                "request {} pending: {} (approvers: {})",
                request.id,
                approval_progress(request),
                join_or_dash(&request.approvers)
            ),
        },
        RequestState::Approved => format!("request {} approved: issuing credentials", request.id),
        state => format!("request {} {state}", request.id),
    }
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

/// Who or what ended the request, for people. A policy denial lists the
/// policies' messages verbatim, one per line.
pub fn ended_without_access(request: &AccessRequest) -> String {
    let id = &request.id;
    let by_policy = request
        .decision
        .as_ref()
        .filter(|d| d.by == "policy")
        .and_then(|d| d.comment.clone());
    match request.state {
        // The server's messages: the policies' own, the duration cap, or why
        // evaluation failed closed.
        RequestState::Denied if by_policy.is_some() => {
            format!("request {id} was denied by policy:\n{}", by_policy.unwrap_or_default())
        }
        RequestState::Denied => format!("request {id} was denied{}", by(&request.decision)),
        RequestState::Cancelled => format!("request {id} was cancelled{}", by(&request.decision)),
        RequestState::Expired if request.activated_at.is_none() => {
            format!("request {id} expired before it was approved")
        }
        RequestState::Expired => format!(
            "access under request {id} expired at {}",
            opt_time(request.expires_at.as_ref())
        ),
        RequestState::TimedOut => format!(
            "request {id} timed out waiting for approval{}",
            request
                .pending_expires_at
                .as_ref()
                .map(|at| format!(" (at {})", time(at)))
                .unwrap_or_default()
        ),
        RequestState::Revoked => format!("access under request {id} was revoked{}", by(&request.ended_by)),
        RequestState::Released => format!("access under request {id} was released{}", by(&request.ended_by)),
        RequestState::RevokeFailed => format!(
            "access under request {id} is not ended yet: revoking it failed ({}); Hallpass retries with backoff",
            or_dash(request.revoke_error.as_deref())
        ),
        state => format!("request {id} ended in state {state} without access"),
    }
}

pub async fn list(ctx: &Ctx, args: ListArgs) -> CmdResult {
    let query = hallpass_client::ListQuery {
        state: args.state,
        mine: args.mine,
        page_size: args.limit.min(hallpass_client::MAX_PAGE),
        max: args.limit,
        ..hallpass_client::ListQuery::default()
    };
    let requests = ctx.client()?.list(false, &query).await?;
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
        "FLAGS",
        "REASON",
    ]);
    for r in requests {
        table.row([
            r.id.clone(),
            r.role.clone(),
            r.requester.clone(),
            r.state.to_string(),
            hallpass_core::format_duration(r.duration_seconds),
            time(&r.created_at),
            opt_time_relative(r.expires_at.as_ref(), now),
            flags(r, now),
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
        print!("{}", render_detail(&request, Utc::now()));
    }
    ok()
}

/// `approve`, `deny`, `cancel`: prints the updated request. On an active
/// grant, approve and deny decide its pending extension.
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
    let detail = match r.state {
        RequestState::Pending => match &r.approval {
            Some(flow) => format!(", {}", flow_status(flow)),
            None => format!(
                " ({}; still needs {} more from {})",
                approval_progress(r),
                (r.required_approvals as usize).saturating_sub(r.approvals.len()),
                join_or_dash(&r.approvers)
            ),
        },
        RequestState::Active => {
            let mut text = format!(", expires {}", opt_time_relative(r.expires_at.as_ref(), Utc::now()));
            if let Some(extension) = r.extensions.last() {
                text.push_str(&format!(
                    "; extension #{} (+{}) {}",
                    extension.number,
                    hallpass_core::format_duration(extension.by_seconds),
                    extension_state_phrase(extension)
                ));
            }
            text
        }
        RequestState::Scheduled => format!(", starts {}", opt_time_relative(r.scheduled_start.as_ref(), Utc::now())),
        RequestState::RevokeFailed => format!(" (will retry: {})", or_dash(r.revoke_error.as_deref())),
        RequestState::Denied | RequestState::Cancelled => by(&r.decision),
        RequestState::Revoked | RequestState::Released => by(&r.ended_by),
        _ => String::new(),
    };
    print_message(&format!(
        "request {} ({} for {}): {}{detail}",
        r.id, r.role, r.requester, r.state
    ));
    Ok(())
}

pub async fn credentials(ctx: &Ctx, id: &str, format: Option<CredentialFormat>) -> CmdResult {
    let credential = ctx.client()?.credentials(id).await?;
    keep_one_time(&credential);
    let format = format.unwrap_or(if ctx.json() {
        CredentialFormat::Json
    } else {
        CredentialFormat::Token
    });
    print_credential(&credential, format)?;
    ok()
}

/// The server sends a credential's one-time part (the private key
/// Hallpass made for an SSH grant) on the first fetch only, so the fetch
/// that carries it keeps it in the [`KeyStore`] for `hallpass ssh`,
/// whatever else is printed; any fetch says on stderr where the key is.
fn keep_one_time(credential: &Credential) {
    let Some(one_time) = &credential.one_time else {
        return;
    };
    let id = &credential.request_id;
    let kept = KeyStore::open().and_then(|store| {
        store.sweep(Utc::now());
        if one_time.included {
            store.keep(credential)
        } else if store.has(id) {
            store.refresh(credential).map(Some)
        } else {
            Ok(None)
        }
    });
    let message = match (kept, one_time.included) {
        (Ok(Some(kept)), true) => format!(
            "the private key Hallpass made for grant {id} is handed out this once only: kept in {} until the \
             grant expires (`hallpass ssh` uses it)",
            kept.key.display()
        ),
        (Ok(Some(kept)), false) => format!(
            "the private key of grant {id} went out at {} and is not shown again; it is kept in {}",
            time(&one_time.delivered_at),
            kept.key.display()
        ),
        (Ok(None), true) => return,
        (Ok(None), false) => format!(
            "the private key of grant {id} went out at {} and is not shown again, and this machine does not \
             keep it; `hallpass release {id}` and a new request make a new key pair",
            time(&one_time.delivered_at)
        ),
        (Err(error), true) => format!(
            "warning: the private key Hallpass made for grant {id} is handed out this once only, and it could \
             not be kept: {error:#}"
        ),
        (Err(error), false) => format!("cannot look for the private key of grant {id}: {error:#}"),
    };
    eprint_message(&message);
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
    use crate::commands::fixtures::{active, minutes, now, request};
    use chrono::TimeZone;
    use hallpass_api::ExtensionRecord;
    use std::collections::BTreeMap;

    #[test]
    fn start_times_accept_rfc3339_and_the_short_forms() {
        let nine = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
        for text in [
            "2026-12-01T09:00Z",
            "2026-12-01T09:00:00Z",
            "2026-12-01T09:00:00.000Z",
            "2026-12-01T10:00:00+01:00",
            "2026-12-01T10:00+01:00",
            " 2026-12-01t09:00z ",
        ] {
            assert_eq!(parse_start_time(text), Ok(nine), "{text}");
        }
        assert_eq!(
            parse_start_time("2026-12-01T09:00:30Z"),
            Ok(nine + chrono::Duration::seconds(30))
        );
    }

    #[test]
    fn start_times_without_a_zone_or_malformed_are_refused_with_the_forms() {
        for text in ["2026-12-01T09:00", "2026-12-01", "tomorrow", "2026-13-01T09:00Z", ""] {
            let err = parse_start_time(text).unwrap_err();
            assert!(err.contains("2026-12-01T09:00:00Z, 2026-12-01T09:00Z"), "{err}");
            assert!(err.starts_with(&format!("{text:?} is not a time")), "{err}");
        }
    }

    fn extension(number: u32, state: ExtensionState, requested_at: DateTime<Utc>) -> ExtensionRecord {
        ExtensionRecord {
            number,
            by_seconds: 1800,
            reason: "more".into(),
            ticket: None,
            requested_at,
            state,
            auto_approved: false,
            approval: None,
            decision: None,
            policy: None,
        }
    }

    fn answer(outcome: RequestOutcome, request: AccessRequest) -> CreateRequestResponse {
        CreateRequestResponse { outcome, request }
    }

    #[test]
    fn new_and_open_requests_are_not_overlaps() {
        assert_eq!(overlap(&answer(RequestOutcome::Created, active())), None);
        assert_eq!(overlap(&answer(RequestOutcome::ExistingRequest, request())), None);
    }

    /// The server says what happened; nothing is guessed from timestamps.
    #[test]
    fn an_existing_grant_is_recognised_from_the_outcome() {
        assert_eq!(
            overlap(&answer(RequestOutcome::ExistingGrant, active())),
            Some(Overlap::Covered)
        );
        let mut extended = active();
        extended
            .extensions
            .push(extension(1, ExtensionState::Approved, now() - minutes(30)));
        extended.extensions.push(extension(2, ExtensionState::Pending, now()));
        for outcome in [RequestOutcome::ExtensionRequested, RequestOutcome::ExistingGrant] {
            assert_eq!(overlap(&answer(outcome, extended.clone())), Some(Overlap::Extending(2)));
        }
        let mut approved = active();
        approved
            .extensions
            .push(extension(1, ExtensionState::Approved, now() - minutes(3)));
        assert_eq!(
            overlap(&answer(RequestOutcome::Extended, approved.clone())),
            Some(Overlap::Extending(1))
        );
        assert_eq!(
            overlap(&answer(RequestOutcome::ExistingGrant, approved)),
            Some(Overlap::Covered),
            "an old approved extension is not this call's"
        );
    }

    #[test]
    fn overlap_messages_say_what_happened() {
        let mut grant = active();
        grant.expires_at = Some(now() + minutes(56));
        assert_eq!(
            overlap_message(&grant, &Overlap::Covered, now()),
            "you already hold prod-db (grant r1, until 2026-12-01T09:56:00Z (in 56m)), \
             which already covers the time you asked for"
        );
        grant.extensions.push(extension(1, ExtensionState::Pending, now()));
        assert_eq!(
            overlap_message(&grant, &Overlap::Extending(1), now()),
            "you already hold prod-db (grant r1, until 2026-12-01T09:56:00Z (in 56m)); \
             asked to extend it by 30m: extension #1 is pending"
        );
        grant.extensions[0].state = ExtensionState::Approved;
        grant.extensions[0].auto_approved = true;
        assert!(overlap_message(&grant, &Overlap::Extending(1), now()).ends_with("extension #1 was approved at once"));
    }

    /// A request the policies denied, with their messages as the server
    /// records them: joined by line feeds in the decision's comment.
    fn denied_by_policy(messages: &str) -> AccessRequest {
        let mut r = request();
        r.state = RequestState::Denied;
        r.decision = Some(hallpass_api::DecisionRecord {
            by: "policy".into(),
            comment: Some(messages.into()),
            at: now(),
        });
        r
    }

    #[test]
    fn policy_denials_print_each_message_on_its_own_line() {
        let mut r = denied_by_policy("needs an incident ticket\nprod is frozen");
        assert_eq!(
            ended_without_access(&r),
            "request r1 was denied by policy:\nneeds an incident ticket\nprod is frozen"
        );
        r.decision = None;
        assert_eq!(ended_without_access(&r), "request r1 was denied");
        r.state = RequestState::TimedOut;
        r.pending_expires_at = Some(now());
        assert_eq!(
            ended_without_access(&r),
            "request r1 timed out waiting for approval (at 2026-12-01T09:00:00Z)"
        );
    }

    #[test]
    fn a_policy_denial_prints_escaped_with_indented_messages() {
        let r = denied_by_policy("needs an incident ticket\nprod is frozen\r\x1b[2Krequest r1 approved");
        assert_eq!(
            crate::output::escape_message(&ended_without_access(&r)),
            "request r1 was denied by policy:\n  needs an incident ticket\n  prod is frozen\\r\\x1b[2Krequest r1 approved"
        );
    }

    #[test]
    fn a_scheduled_request_says_when_it_starts() {
        let mut r = request();
        r.state = RequestState::Scheduled;
        r.scheduled_start = Some(now() + minutes(120));
        assert_eq!(
            scheduled_message(&r, now()),
            "request r1 is approved and scheduled: access to prod-db starts at 2026-12-01T11:00:00Z (in 2h); \
             `hallpass credentials r1` prints the credential from then"
        );
    }

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
            one_time: None,
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
