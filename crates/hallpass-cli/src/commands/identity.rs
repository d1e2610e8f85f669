//! Who am I, API tokens and locks: `login` (a CI job's OIDC token for an
//! API token), `whoami`, `token create|list|revoke`, `lock`, `unlock`, `locks`.

use clap::Subcommand;
use hallpass_api::CreateToken;

use super::{CmdResult, Ctx, ok};
use crate::output::{Table, eprint_message, join_or_dash, opt_time, print_fields, print_json, time, yes_no};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user or service (admin only).
    Create {
        /// Principal the token authenticates as, e.g. `alice` or `ci-deploy`.
        #[arg(long)]
        principal: String,
        /// Groups of the principal, comma separated.
        #[arg(long, value_delimiter = ',', value_name = "GROUP,...")]
        groups: Vec<String>,
        /// Lifetime such as `30d` or `12h`; without it the token never expires.
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
    /// List API tokens.
    List,
    /// Revoke an API token by id.
    Revoke { id: String },
}

/// `hallpass login --oidc-token-file F`: a CI job's OIDC token for a
/// short-lived Hallpass token. Only the token goes to stdout, for
/// `export HALLPASS_TOKEN=$(hallpass login ...)`; who it is for, on stderr.
pub async fn login(ctx: &Ctx, oidc_token_file: &std::path::Path) -> CmdResult {
    let jwt = if oidc_token_file == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(oidc_token_file)
            .map_err(|e| anyhow::anyhow!("cannot read the OIDC token file {}: {e}", oidc_token_file.display()))?
    };
    let created = ctx.client()?.exchange_workload_token(jwt.trim()).await?;
    eprint_message(&format!(
        "logged in as {} (groups: {}) until {}",
        created.principal,
        join_or_dash(&created.groups),
        opt_time(created.expires_at.as_ref())
    ));
    if ctx.json() {
        print_json(&created)?;
    } else {
        println!("{}", created.token);
    }
    ok()
}

pub async fn whoami(ctx: &Ctx) -> CmdResult {
    let me = ctx.client()?.whoami().await?;
    if ctx.json() {
        print_json(&me)?;
        return ok();
    }
    print_fields(&[
        ("principal", me.principal),
        ("groups", join_or_dash(&me.groups)),
        ("admin", yes_no(me.admin)),
        ("token id", me.token_id),
        (
            "token expires",
            me.token_expires_at.as_ref().map_or_else(|| "never".to_string(), time),
        ),
    ]);
    ok()
}

pub async fn token(ctx: &Ctx, command: TokenCommand) -> CmdResult {
    let client = ctx.client()?;
    match command {
        TokenCommand::Create { principal, groups, ttl } => {
            let groups = groups
                .into_iter()
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .collect();
            let created = client.create_token(&CreateToken { principal, groups, ttl }).await?;
            if ctx.json() {
                print_json(&created)?;
                return ok();
            }
            let info = created.info();
            // Details on stderr, the secret alone on stdout: `T=$(hallpass token create ...)` works.
            eprint_message(&format!(
                "created token {} for {} (groups: {}; expires: {})",
                info.id,
                info.principal,
                join_or_dash(&info.groups),
                info.expires_at.as_ref().map_or_else(|| "never".to_string(), time),
            ));
            println!("{}", created.token);
            eprintln!("This token is shown only once: store it now. Hallpass keeps only its hash.");
        }
        TokenCommand::List => {
            let tokens = client.list_tokens().await?;
            if ctx.json() {
                print_json(&tokens)?;
                return ok();
            }
            let mut table = Table::new([
                "ID",
                "PRINCIPAL",
                "GROUPS",
                "CREATED BY",
                "CREATED",
                "EXPIRES",
                "REVOKED",
            ]);
            for t in &tokens {
                table.row([
                    t.id.clone(),
                    t.principal.clone(),
                    join_or_dash(&t.groups),
                    t.created_by.clone(),
                    time(&t.created_at),
                    t.expires_at.as_ref().map_or_else(|| "never".to_string(), time),
                    opt_time(t.revoked_at.as_ref()),
                ]);
            }
            table.print_or("no tokens");
        }
        TokenCommand::Revoke { id } => {
            client.revoke_token(&id).await?;
            if !ctx.json() {
                println!("revoked token {id}");
            }
        }
    }
    ok()
}

/// `hallpass lock PRINCIPAL --reason TEXT`.
pub async fn lock(ctx: &Ctx, principal: &str, reason: String) -> CmdResult {
    let info = ctx.client()?.lock(principal, reason).await?;
    if ctx.json() {
        print_json(&info)?;
        return ok();
    }
    print_fields(&[
        ("locked", info.principal.clone()),
        ("reason", info.reason.clone()),
        ("by", format!("{} at {}", info.locked_by, time(&info.locked_at))),
        ("tokens revoked", join_or_dash(&info.tokens_revoked)),
        ("requests ended", join_or_dash(&info.requests_ended)),
    ]);
    if !info.revoke_failed.is_empty() {
        eprint_message(&format!(
            "warning: revoking these grants failed on their targets and is being retried: {}",
            info.revoke_failed.join(", ")
        ));
    }
    ok()
}

pub async fn unlock(ctx: &Ctx, principal: &str) -> CmdResult {
    ctx.client()?.unlock(principal).await?;
    if !ctx.json() {
        crate::output::print_message(&format!("unlocked {principal}; it needs new tokens to act again"));
    }
    ok()
}

pub async fn locks(ctx: &Ctx) -> CmdResult {
    let locks = ctx.client()?.list_locks().await?;
    if ctx.json() {
        print_json(&locks)?;
        return ok();
    }
    let mut table = Table::new(["PRINCIPAL", "LOCKED BY", "LOCKED", "REASON"]);
    for lock in &locks {
        table.row([
            lock.principal.clone(),
            lock.locked_by.clone(),
            time(&lock.locked_at),
            lock.reason.clone(),
        ]);
    }
    table.print_or("no locked principals");
    ok()
}
