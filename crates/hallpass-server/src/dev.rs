//! First start: the bootstrap admin token, and the `--dev` playground
//! (demo target, two roles, tokens for admin, alice and bob).

use std::net::SocketAddr;

use anyhow::Context;
use hallpass_api as api;
use hallpass_core::Principal;

use crate::Settings;
use crate::app::tokens::check_chosen_token;
use crate::app::{App, Caller};

const BOOTSTRAP_ENV: &str = "HALLPASS_BOOTSTRAP_TOKEN";

fn admin_token_request() -> api::CreateToken {
    api::CreateToken {
        principal: "admin".into(),
        groups: vec!["admins".into()],
        ttl: None,
    }
}

/// Outside dev mode: the first start against an empty store creates the first
/// admin token, from HALLPASS_BOOTSTRAP_TOKEN or generated and printed once.
/// Replicas starting together on an empty database: one makes it, the others
/// find it made.
pub async fn bootstrap_admin(app: &App) -> anyhow::Result<()> {
    let chosen = std::env::var(BOOTSTRAP_ENV).ok().filter(|t| !t.is_empty());
    if let Some(token) = &chosen {
        check_chosen_token(BOOTSTRAP_ENV, token)?;
    }
    let from_env = chosen.is_some();
    let Some(created) = app
        .create_first_token("bootstrap", admin_token_request(), chosen)
        .await?
    else {
        return Ok(());
    };
    if from_env {
        tracing::info!(token_id = %created.id, "created the first admin token from {BOOTSTRAP_ENV}");
    } else {
        // Printed once, to the terminal, never to the log.
        println!(
            "First start: created the admin token (shown only this once; store it safely):\n\n    {}\n",
            created.token
        );
    }
    Ok(())
}

const DEMO_CONFIG: &str = r#"{
  "targets": [{"name": "demo", "type": "jwt", "config": {"audience": "demo"}}],
  "roles": [
    {"name": "demo-read", "target": "demo", "description": "Read-only access to the demo service (self-service)",
     "default_duration": "15m", "max_duration": "1h", "requestable_by": ["group:dev", "group:approvers"],
     "labels": {"env": "dev"}, "auto_approve": true},
    {"name": "demo-admin", "target": "demo", "description": "Admin on the demo service",
     "default_duration": "1h", "max_duration": "4h", "requestable_by": ["group:dev"],
     "labels": {"env": "dev"}, "approval": {"approvers": ["group:approvers"], "required": 1}}
  ]
}"#;

/// Seeds the playground on an empty store and prints its tokens.
pub async fn seed(app: &App, settings: &Settings, storage: &str) -> anyhow::Result<()> {
    if let Some(token) = &settings.dev_root_token {
        check_chosen_token("--dev-root-token", token)?;
    }
    let Some(admin) = app
        .create_first_token("dev", admin_token_request(), settings.dev_root_token.clone())
        .await?
    else {
        println!("Dev data in {storage} is already seeded; its tokens were printed at its first start.");
        return Ok(());
    };
    let caller = Caller {
        principal: Principal {
            name: "admin".into(),
            groups: vec!["admins".into()],
        },
        token_id: admin.id.clone(),
        token_expires_at: None,
    };
    let config: api::ApplyRequest = serde_json::from_str(DEMO_CONFIG).context("demo configuration")?;
    app.apply(&caller, config).await?;
    let alice = app
        .create_token(
            &caller,
            api::CreateToken {
                principal: "alice".into(),
                groups: vec!["dev".into()],
                ttl: None,
            },
        )
        .await?;
    let bob = app
        .create_token(
            &caller,
            api::CreateToken {
                principal: "bob".into(),
                groups: vec!["approvers".into()],
                ttl: None,
            },
        )
        .await?;
    println!(
        "Hallpass dev server: data in {storage}\n\
         Seeded target `demo` (jwt), roles `demo-read` (auto-approved, max 1h) and `demo-admin` (1 approval from group:approvers, max 4h).\n\n\
         Tokens (dev only; anyone with one acts as that principal):\n\
         \x20 admin (group admins):    {admin}\n\
         \x20 alice (group dev):       {alice}\n\
         \x20 bob   (group approvers): {bob}\n",
        admin = admin.token,
        alice = alice.token,
        bob = bob.token,
    );
    Ok(())
}

pub fn print_ready(addr: SocketAddr) {
    println!(
        "Listening on http://{addr}. Try:\n\
         \x20 export HALLPASS_ADDR=http://{addr}\n\
         \x20 HALLPASS_TOKEN=<alice's token> hallpass request demo-admin --for 30m --reason \"try it\" --wait\n\
         \x20 HALLPASS_TOKEN=<bob's token>   hallpass approve <request id>\n"
    );
}
