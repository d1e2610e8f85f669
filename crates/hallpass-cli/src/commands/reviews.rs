//! Post-hoc review of break-glass grants: `reviews [--all]` and
//! `review ack ID --comment TEXT`.
//!
//! Every `request --emergency` grant opens a review; someone other than the
//! requester looks at what happened and acknowledges it with a comment,
//! which the audit log keeps.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use hallpass_api::AccessRequest;

use super::{CmdResult, Ctx, ok};
use crate::output::{Table, print_json, print_message, time, truncate};

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Acknowledge the review of a break-glass grant.
    Ack {
        /// Grant id.
        id: String,
        /// What you checked; kept in the audit log.
        #[arg(long)]
        comment: String,
    },
}

pub async fn list(ctx: &Ctx, all: bool) -> CmdResult {
    let grants = ctx.client()?.list_reviews(all).await?;
    if ctx.json() {
        print_json(&grants)?;
    } else {
        review_table(&grants, Utc::now()).print_or(if all {
            "no break-glass grants"
        } else {
            "no open reviews"
        });
    }
    ok()
}

/// One row per break-glass grant, with where its review stands.
pub fn review_table(grants: &[AccessRequest], now: DateTime<Utc>) -> Table {
    let mut table = Table::new(["ID", "ROLE", "REQUESTER", "STATE", "OPENED", "REVIEW", "REASON"]);
    for grant in grants {
        let (opened, review) = match &grant.review {
            Some(review) => (
                time(&review.opened_at),
                match &review.acknowledged {
                    Some(ack) => format!("acknowledged by {}", ack.by),
                    None => format!("{} ({})", review.state, crate::output::relative(review.opened_at, now)),
                },
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        table.row([
            grant.id.clone(),
            grant.role.clone(),
            grant.requester.clone(),
            grant.state.to_string(),
            opened,
            review,
            truncate(&grant.reason, 40),
        ]);
    }
    table
}

pub async fn run(ctx: &Ctx, command: ReviewCommand) -> CmdResult {
    match command {
        ReviewCommand::Ack { id, comment } => {
            let grant = ctx.client()?.ack_review(&id, comment).await?;
            if ctx.json() {
                print_json(&grant)?;
                return ok();
            }
            let by = grant
                .review
                .as_ref()
                .and_then(|review| review.acknowledged.as_ref())
                .map(|ack| format!(" by {} at {}", ack.by, time(&ack.at)))
                .unwrap_or_default();
            print_message(&format!(
                "review of break-glass grant {} ({} for {}) acknowledged{by}",
                grant.id, grant.role, grant.requester
            ));
        }
    }
    ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::fixtures::{active, minutes, now};
    use hallpass_api::{DecisionRecord, RequestState, ReviewRecord, ReviewState};

    #[test]
    fn the_table_shows_where_each_review_stands() {
        let mut open = active();
        open.emergency = true;
        open.review = Some(ReviewRecord {
            state: ReviewState::Open,
            opened_at: now() - minutes(120),
            acknowledged: None,
        });
        let mut done = open.clone();
        done.id = "r2".into();
        done.state = RequestState::Expired;
        done.review = Some(ReviewRecord {
            state: ReviewState::Acknowledged,
            opened_at: now() - minutes(120),
            acknowledged: Some(DecisionRecord {
                by: "carol".into(),
                comment: Some("justified".into()),
                at: now(),
            }),
        });
        assert_eq!(
            review_table(&[open, done], now()).render(),
            "ID  ROLE     REQUESTER  STATE    OPENED                REVIEW                 REASON\n\
             r1  prod-db  alice      active   2026-12-01T07:00:00Z  open (2h ago)          INC-7 failover\n\
             r2  prod-db  alice      expired  2026-12-01T07:00:00Z  acknowledged by carol  INC-7 failover\n"
        );
    }
}
