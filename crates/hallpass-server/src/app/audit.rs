//! The audit log for auditors: pages, the streamed export, the live
//! verification of the whole chain, and signed checkpoints.
//!
//! A checkpoint is an audit event (`audit.checkpoint`) that signs the
//! sequence number and hash of the event before it, and its own time, with
//! the server's sealed Ed25519 audit key. One is written at least every
//! [`CHECKPOINT_INTERVAL`] while events are written, and one at the end of
//! every export, so an export proves it is complete: a file cut short or
//! rewritten no longer ends at a valid signature (docs/audit.md). Reading
//! the log is for admins and group `auditors`; the public key is public.

use std::time::Duration;

use futures::Stream;
use hallpass_api as api;
use hallpass_core::audit::{AuditEvent, ChainVerifier, CheckpointSigner};
use hallpass_store::WriteTx;

use super::{App, AppError, AppResult, Caller};

/// Events per read while exporting or verifying.
const EXPORT_PAGE: u32 = 2000;
/// Longest time events may go without a checkpoint after them.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// The `meta` key holding the seq of the newest checkpoint.
const CHECKPOINT_META: &str = "audit_checkpoint_seq";

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only events with a sequence number greater than this.
    pub since: u64,
    /// Only events of this request.
    pub request: Option<String>,
    pub limit: u32,
}

/// Signs the chain's head unless the head is a checkpoint already; returns
/// the newest checkpoint's seq.
fn checkpoint_in_transaction(wtx: &mut WriteTx<'_>, signer: &CheckpointSigner) -> AppResult<u64> {
    let (seq, _) = wtx.chain_head();
    let last: Option<u64> = wtx.read().meta(CHECKPOINT_META)?.and_then(|text| text.parse().ok());
    if last == Some(seq) {
        return Ok(seq);
    }
    let event = wtx.append_audit_with(|seq, hash, time| signer.checkpoint_draft(seq, hash, time))?;
    wtx.put_meta(CHECKPOINT_META, &event.seq.to_string())?;
    Ok(event.seq)
}

impl App {
    /// The key that signs checkpoints, for offline verification.
    pub fn audit_public_key(&self) -> api::AuditPublicKey {
        let key = self.inner.audit_signer.public_key();
        api::AuditPublicKey {
            key_id: key.key_id(),
            jwk: key.to_jwk(),
            pem: key.to_pem(),
        }
    }

    /// Writes a checkpoint after the newest event, unless it is one;
    /// returns the checkpoint's seq.
    pub(crate) async fn write_checkpoint(&self) -> AppResult<u64> {
        let signer = self.inner.audit_signer.clone();
        self.inner
            .store
            .write(move |wtx| checkpoint_in_transaction(wtx, &signer))
            .await
    }

    pub async fn audit_page(&self, caller: &Caller, query: AuditQuery) -> AppResult<Vec<AuditEvent>> {
        caller.require_auditor()?;
        let limit = query.limit.clamp(1, 10_000);
        Ok(self
            .inner
            .store
            .read(move |r| r.audit(query.since, query.request.as_deref(), limit))
            .await?)
    }

    /// The log from `since` on, ending with a checkpoint written for this
    /// export, page by page so memory stays flat however long it is. A
    /// partial export (`since` > 0) starts at the newest checkpoint at or
    /// before its first event, which anchors it. Authorization is checked,
    /// and the closing checkpoint written, before the first page.
    pub async fn audit_export(
        &self,
        caller: &Caller,
        since: u64,
    ) -> AppResult<impl Stream<Item = Result<Vec<AuditEvent>, AppError>> + Send + 'static> {
        caller.require_auditor()?;
        let last = self.write_checkpoint().await?;
        let first = match since {
            0 => 1,
            since => {
                let anchor = self
                    .inner
                    .store
                    .read(move |r| r.checkpoint_at_or_before(since + 1))
                    .await?;
                anchor.unwrap_or(1)
            }
        };
        let app = self.clone();
        Ok(futures::stream::unfold(Some(first - 1), move |cursor| {
            let app = app.clone();
            async move {
                let after = cursor.filter(|after| *after < last)?;
                let limit = u32::try_from(last - after).unwrap_or(EXPORT_PAGE).min(EXPORT_PAGE);
                match app.inner.store.read(move |r| r.audit(after, None, limit)).await {
                    Ok(events) if events.is_empty() => None,
                    Ok(events) => {
                        let next = events.last().map(|e| e.seq);
                        Some((Ok(events), next))
                    }
                    Err(error) => Some((Err(AppError::from(error)), None)),
                }
            }
        }))
    }

    /// Verifies the whole live chain with the server's own key: every
    /// stored checkpoint must verify and cover the event before it, and the
    /// chain must end at the writer's head.
    pub async fn audit_verify(&self, caller: &Caller) -> AppResult<api::VerifyReport> {
        caller.require_auditor()?;
        let head = self.inner.store.read(|r| r.audit_head_seq()).await?;
        let key = self.inner.audit_signer.public_key().clone();
        let mut verifier = ChainVerifier::from_genesis_with_key(key);
        let mut since = 0;
        while since < head {
            let page = self
                .inner
                .store
                .read(move |r| r.audit(since, None, EXPORT_PAGE))
                .await?;
            let Some(last) = page.last() else { break };
            since = last.seq;
            page.iter().for_each(|event| verifier.push(event));
            if verifier.failed() {
                break;
            }
        }
        let mut report = verifier.finish();
        if report.ok && report.last_seq.unwrap_or(0) < head {
            let missing = report.last_seq.unwrap_or(0) + 1;
            report.ok = false;
            report.first_bad_seq = Some(missing);
            report.problem = Some(format!(
                "the log ends at {} but {head} events were written; event {missing} is missing",
                missing - 1
            ));
        }
        // Live, the log is complete when it ends at the writer's head.
        report.complete = report.ok;
        Ok(report)
    }
}

/// Events read back from the head when searching the log.
pub const SEARCH_SCAN: u64 = 20_000;
/// Most events a search returns.
const SEARCH_RESULTS: usize = 500;
/// Most events of one request a request's history shows.
const HISTORY_LIMIT: u32 = 1_000;

/// What an auditor looks for in the log; every part optional.
#[derive(Debug, Clone, Default)]
pub struct AuditSearch {
    pub request: Option<String>,
    /// The actor, exactly.
    pub actor: Option<String>,
    /// A kind, or the start of one ending in `.` (`request.`).
    pub kind: Option<String>,
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

impl AuditSearch {
    fn matches(&self, event: &AuditEvent) -> bool {
        let time = chrono::DateTime::parse_from_rfc3339(&event.time)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc));
        self.actor.as_ref().is_none_or(|actor| &event.actor == actor)
            && self.kind.as_ref().is_none_or(|kind| {
                &event.kind == kind || (kind.ends_with('.') && event.kind.starts_with(kind.as_str()))
            })
            && self.from.is_none_or(|from| time.is_some_and(|t| t >= from))
            && self.until.is_none_or(|until| time.is_some_and(|t| t <= until))
    }
}

impl App {
    /// The newest events matching `search`, newest first, from the newest
    /// [`SEARCH_SCAN`] of the log (an export holds all of it); returns them
    /// with how many events were looked at.
    pub async fn audit_search(&self, caller: &Caller, search: AuditSearch) -> AppResult<(Vec<AuditEvent>, u64)> {
        caller.require_auditor()?;
        if let Some(request) = search.request.clone() {
            // One request's events are few and indexed: read them all.
            let events = self
                .inner
                .store
                .read(move |r| r.audit(0, Some(&request), HISTORY_LIMIT))
                .await?;
            let looked_at = events.len() as u64;
            let mut found: Vec<AuditEvent> = events.into_iter().rev().filter(|e| search.matches(e)).collect();
            found.truncate(SEARCH_RESULTS);
            return Ok((found, looked_at));
        }
        let head = self.inner.store.read(|r| r.audit_head_seq()).await?;
        let start = head.saturating_sub(SEARCH_SCAN);
        let mut found = Vec::new();
        let mut after = head;
        while after > start && found.len() < SEARCH_RESULTS {
            let from = after.saturating_sub(u64::from(EXPORT_PAGE)).max(start);
            let limit = u32::try_from(after - from).unwrap_or(EXPORT_PAGE);
            let page = self.inner.store.read(move |r| r.audit(from, None, limit)).await?;
            found.extend(page.into_iter().rev().filter(|event| search.matches(event)));
            after = from;
        }
        found.truncate(SEARCH_RESULTS);
        Ok((found, head - after))
    }

    /// A request's events, oldest first, for whoever may see the request
    /// (the live event stream shows them the same events).
    pub async fn request_history(&self, caller: &Caller, id: String) -> AppResult<Vec<AuditEvent>> {
        self.get_request(caller, id.clone()).await?;
        Ok(self
            .inner
            .store
            .read(move |r| r.audit(0, Some(&id), HISTORY_LIMIT))
            .await?)
    }
}
