//! The audit log for auditors: pages, the streamed export, and the live
//! verification of the whole chain. Reading it is for admins and group
//! `auditors`.

use futures::Stream;
use hallpass_api as api;
use hallpass_core::audit::{AuditEvent, ChainVerifier};

use super::{App, AppError, AppResult, Caller};

/// Events per read while exporting or verifying.
const EXPORT_PAGE: u32 = 2000;

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only events with a sequence number greater than this.
    pub since: u64,
    /// Only events of this request.
    pub request: Option<String>,
    pub limit: u32,
}

impl App {
    pub async fn audit_page(&self, caller: &Caller, query: AuditQuery) -> AppResult<Vec<AuditEvent>> {
        caller.require_auditor()?;
        let limit = query.limit.clamp(1, 10_000);
        Ok(self
            .inner
            .store
            .read(move |r| r.audit(query.since, query.request.as_deref(), limit))
            .await?)
    }

    /// The log from `since` on, page by page, so memory stays flat however
    /// long it is. Authorization is checked before the first page.
    pub fn audit_export(
        &self,
        caller: &Caller,
        since: u64,
    ) -> AppResult<impl Stream<Item = Result<Vec<AuditEvent>, AppError>> + Send + 'static> {
        caller.require_auditor()?;
        let app = self.clone();
        Ok(futures::stream::unfold(Some(since), move |cursor| {
            let app = app.clone();
            async move {
                let since = cursor?;
                match app.inner.store.read(move |r| r.audit(since, None, EXPORT_PAGE)).await {
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

    /// Verifies the whole live chain, and that it ends at the writer's head.
    pub async fn audit_verify(&self, caller: &Caller) -> AppResult<api::VerifyReport> {
        caller.require_auditor()?;
        let head = self.inner.store.read(|r| r.audit_head_seq()).await?;
        let mut verifier = ChainVerifier::from_genesis();
        let mut since = 0;
        loop {
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
        Ok(report)
    }
}
