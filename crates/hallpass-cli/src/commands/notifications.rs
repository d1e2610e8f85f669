//! Notifiers (`notifier list|show|delete`; `apply` creates them) and the
//! outbox (`notifications failed|retry`): deliveries that gave up, and
//! sending one again.

use clap::Subcommand;
use hallpass_api::Notifier;

use super::{CmdResult, Ctx, ok};
use crate::output::{Table, join_or_dash, or_dash, print_json, time, truncate};

#[derive(Debug, Subcommand)]
pub enum NotifierCommand {
    /// List notifiers.
    List,
    /// Show one notifier (its secrets by name only).
    Show { name: String },
    /// Delete a notifier; its deliveries still waiting are dropped.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// List deliveries that gave up after their retries (admins, auditors).
    Failed,
    /// Send a failed delivery again, with the same id (admins).
    Retry {
        /// Delivery id, from `notifications failed`.
        id: String,
    },
}

fn notifier_row(n: &Notifier) -> [String; 5] {
    let secrets: Vec<String> = n.secrets.iter().map(|s| s.name.clone()).collect();
    [
        n.name.clone(),
        n.notifier_type.clone(),
        truncate(&serde_json::Value::Object(n.config.clone()).to_string(), 60),
        join_or_dash(&secrets),
        time(&n.updated_at),
    ]
}

pub async fn notifier(ctx: &Ctx, command: NotifierCommand) -> CmdResult {
    let client = ctx.client()?;
    match command {
        NotifierCommand::List => {
            let notifiers = client.list_notifiers().await?;
            if ctx.json() {
                print_json(&notifiers)?;
                return ok();
            }
            let mut table = Table::new(["NAME", "TYPE", "CONFIG", "SECRETS", "UPDATED"]);
            for n in &notifiers {
                table.row(notifier_row(n));
            }
            table.print_or("no notifiers");
        }
        NotifierCommand::Show { name } => {
            let notifier = client.get_notifier(&name).await?;
            if ctx.json() {
                print_json(&notifier)?;
            } else {
                let mut table = Table::new(["NAME", "TYPE", "CONFIG", "SECRETS", "UPDATED"]);
                table.row(notifier_row(&notifier));
                table.print_or("");
            }
        }
        NotifierCommand::Delete { name } => {
            client.delete_notifier(&name).await?;
            if !ctx.json() {
                println!("deleted notifier {name}");
            }
        }
    }
    ok()
}

pub async fn notifications(ctx: &Ctx, command: NotificationsCommand) -> CmdResult {
    let client = ctx.client()?;
    match command {
        NotificationsCommand::Failed => {
            let list = client.failed_notifications().await?;
            if ctx.json() {
                print_json(&list.items)?;
                return ok();
            }
            let mut table = Table::new(["ID", "NOTIFIER", "TYPE", "REQUEST", "ATTEMPTS", "SINCE", "LAST ERROR"]);
            for d in &list.items {
                table.row([
                    d.id.clone(),
                    d.notifier.clone(),
                    d.topic.as_str().to_string(),
                    or_dash(d.request_id.as_deref()),
                    d.attempts.to_string(),
                    time(&d.created_at),
                    truncate(d.last_error.as_deref().unwrap_or("-"), 80),
                ]);
            }
            table.print_or("no failed notifications");
        }
        NotificationsCommand::Retry { id } => {
            let delivery = client.retry_notification(&id).await?;
            if ctx.json() {
                print_json(&delivery)?;
            } else {
                println!(
                    "delivery {} to notifier {} is queued again",
                    delivery.id, delivery.notifier
                );
            }
        }
    }
    ok()
}
