//! `hallpass watch`: the audit events the caller may see, printed as they
//! happen, from the server's live stream (`GET /v1/events`). The client
//! reconnects on its own from the last event it got, so a restart of the
//! server or a dropped connection loses nothing; Ctrl-C ends the watch.
//!
//! Human lines put the time, seq, kind, actor and request first and a
//! summary of the event's scalar data after, every part escaped like all
//! other server text; `--output json` prints each event as the one JSON line
//! the server sent, for scripts.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use hallpass_api::AuditEvent;
use serde_json::Value;

use super::{CmdResult, Ctx, ok};
use crate::output::{eprint_message, escape_controls, or_dash, truncate};

/// Longest summary of an event's data on a human line.
const SUMMARY_WIDTH: usize = 100;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only the events of this request.
    #[arg(long, value_name = "ID")]
    request: Option<String>,
    /// Only events whose kind starts with PREFIX (`request.`, `grant.revoked`);
    /// repeat for several.
    #[arg(long = "kind", value_name = "PREFIX")]
    kinds: Vec<String>,
    /// Start after this sequence number, printing what came since first;
    /// without it, only events from now on.
    #[arg(long, value_name = "SEQ")]
    since: Option<u64>,
}

impl WatchArgs {
    fn wants(&self, event: &AuditEvent) -> bool {
        self.request
            .as_ref()
            .is_none_or(|id| event.request_id.as_ref() == Some(id))
            && (self.kinds.is_empty() || self.kinds.iter().any(|prefix| event.kind.starts_with(prefix.as_str())))
    }
}

pub async fn run(ctx: &Ctx, args: WatchArgs) -> CmdResult {
    let mut stream = ctx.client()?.events(args.since).on_reconnect(|error, pause| {
        eprint_message(&format!(
            "event stream interrupted ({error}); reconnecting in {}",
            pause_text(pause)
        ));
    });
    // One listener for the whole watch: a Ctrl-C between two events is not lost.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut stdout = std::io::stdout();
    loop {
        let event = tokio::select! {
            event = stream.next() => event?,
            _ = &mut interrupted => return ok(),
        };
        if !args.wants(&event) {
            continue;
        }
        let line = if ctx.json() {
            serde_json::to_string(&event)?
        } else {
            human_line(&event)
        };
        match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
            Ok(()) => {}
            // The reader went away (`hallpass watch | head -1`): done.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return ok(),
            Err(error) => return Err(anyhow::anyhow!("cannot write an event to stdout: {error}")),
        }
    }
}

fn pause_text(pause: Duration) -> String {
    if pause < Duration::from_secs(1) {
        format!("{} ms", pause.as_millis())
    } else {
        format!("{} s", pause.as_secs())
    }
}

/// `TIME  #SEQ  KIND  ACTOR  REQUEST  SUMMARY`, escaped, on one line.
pub fn human_line(event: &AuditEvent) -> String {
    let time = chrono::DateTime::parse_from_rfc3339(&event.time)
        .map(|at| crate::output::time(&at.with_timezone(&chrono::Utc)))
        .unwrap_or_else(|_| event.time.clone());
    let line = format!(
        "{}  #{}  {:<24} {}  {}",
        escape_controls(&time),
        event.seq,
        escape_controls(&event.kind),
        escape_controls(&event.actor),
        escape_controls(&or_dash(event.request_id.as_deref())),
    );
    match summary(&event.data) {
        summary if summary.is_empty() => line,
        summary => format!("{line}  {}", truncate(&summary, SUMMARY_WIDTH)),
    }
}

/// `key=value` for each scalar member of the event's data (nested objects
/// and lists are left to `--output json`); strings with spaces, quotes or
/// nothing in them are quoted.
fn summary(data: &Value) -> String {
    let Some(members) = data.as_object() else {
        return String::new();
    };
    members
        .iter()
        .filter_map(|(key, value)| {
            let text = match value {
                Value::String(text) if text.is_empty() || text.contains([' ', '"', '=']) => {
                    Value::String(text.clone()).to_string()
                }
                Value::String(text) => text.clone(),
                Value::Bool(_) | Value::Number(_) => value.to_string(),
                Value::Null | Value::Array(_) | Value::Object(_) => return None,
            };
            Some(format!("{key}={text}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(kind: &str, request: Option<&str>, data: Value) -> AuditEvent {
        AuditEvent {
            seq: 42,
            time: "2026-12-01T09:00:00.123456Z".into(),
            actor: "bob".into(),
            kind: kind.into(),
            request_id: request.map(str::to_string),
            data,
            prev_hash: "0".repeat(64),
            hash: "1".repeat(64),
        }
    }

    #[test]
    fn a_human_line_names_the_event_and_sums_up_its_scalar_data() {
        let approved = event(
            "request.approved",
            Some("r1"),
            json!({"approvals": 1, "comment": "looks fine", "state": "approved", "flow": {"stages": []}}),
        );
        assert_eq!(
            human_line(&approved),
            "2026-12-01T09:00:00Z  #42  request.approved         bob  r1  approvals=1 comment=\"looks fine\" state=approved"
        );
        let checkpoint = event("audit.checkpoint", None, json!({}));
        assert_eq!(
            human_line(&checkpoint),
            "2026-12-01T09:00:00Z  #42  audit.checkpoint         bob  -"
        );
    }

    #[test]
    fn server_text_cannot_forge_a_line_or_reorder_it() {
        let forged = event(
            "request.created",
            Some("r1"),
            json!({"reason": "INC-1\n2026-12-01T09:00:00Z  #43  grant.revoked\u{202e}"}),
        );
        let line = human_line(&forged);
        assert!(!line.contains('\n') && !line.contains('\u{202e}'), "{line}");
        assert!(line.contains("\\n") && line.contains("\\u{202e}"), "{line}");
    }

    #[test]
    fn filters_by_request_and_kind_prefixes() {
        let args = WatchArgs {
            request: Some("r1".into()),
            kinds: vec!["grant.".into(), "request.denied".into()],
            since: None,
        };
        assert!(args.wants(&event("grant.expired", Some("r1"), json!({}))));
        assert!(args.wants(&event("request.denied", Some("r1"), json!({}))));
        assert!(!args.wants(&event("request.created", Some("r1"), json!({}))));
        assert!(!args.wants(&event("grant.expired", Some("r2"), json!({}))));
        assert!(!args.wants(&event("grant.expired", None, json!({}))));
        let everything = WatchArgs {
            request: None,
            kinds: Vec::new(),
            since: None,
        };
        assert!(everything.wants(&event("token.created", None, json!({}))));
    }
}
