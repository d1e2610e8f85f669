//! Reading requests and grants. A request (with its reason and ticket) is
//! seen by its requester, by whoever may approve it, and by admins and
//! auditors; lists hold only what the caller may see, newest first, a page
//! at a time with an opaque cursor.

use std::time::Duration as StdDuration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hallpass_api::{self as api, ErrorCode};
use hallpass_core::RequestState;
use hallpass_core::request::RequestRecord;
use hallpass_store::RequestFilter;

use super::{App, AppError, AppResult, Caller, unknown_request};

/// Longest long-poll a client may ask for.
const MAX_WAIT_SECONDS: u64 = 60;
/// Items per page when the caller names no limit, and the most allowed.
pub const DEFAULT_PAGE: u32 = 200;
pub const MAX_PAGE: u32 = 1000;
/// Rows read per step while filtering a page for a caller who may see
/// only some requests, and the most steps per page: a page may come back
/// short (follow its cursor) rather than scan the whole table.
const SCAN_STEP: u32 = 500;
const MAX_SCAN_STEPS: usize = 20;

/// Which requests to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub state: Option<RequestState>,
    /// Only the caller's own requests.
    pub mine: bool,
    /// Only grants still holding access.
    pub holding_access: bool,
    /// Only requests that became grants.
    pub grants_only: bool,
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` at the end.
    pub next_cursor: Option<String>,
}

fn encode_cursor(record: &RequestRecord) -> String {
    let text = format!("{}|{}", record.created_at.to_rfc3339(), record.id);
    URL_SAFE_NO_PAD.encode(text)
}

fn decode_cursor(cursor: &str) -> AppResult<(DateTime<Utc>, String)> {
    let invalid = || {
        AppError::invalid(
            ErrorCode::InvalidCursor,
            "the cursor is not one this server handed out; start again without it",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (at, id) = text.split_once('|').ok_or_else(invalid)?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| invalid())?
        .with_timezone(&Utc);
    Ok((at, id.to_string()))
}

impl App {
    /// One request, if the caller may see it (otherwise it is "not found",
    /// so its existence does not leak).
    pub async fn get_request(&self, caller: &Caller, id: String) -> AppResult<(api::AccessRequest, u64)> {
        let lookup = id.clone();
        let found = self.inner.store.read(move |r| r.request(&lookup)).await?;
        let (record, version) = found
            .filter(|(record, _)| caller.may_see(record))
            .ok_or_else(|| unknown_request(&id))?;
        Ok((self.to_api(&record, version), version))
    }

    /// Returns the request once its version is newer than `after`, or at the
    /// timeout with whatever it is then (long-poll for `--wait`).
    pub async fn wait_request(
        &self,
        caller: &Caller,
        id: String,
        after: u64,
        timeout_seconds: u64,
    ) -> AppResult<api::AccessRequest> {
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(timeout_seconds.min(MAX_WAIT_SECONDS));
        let mut changes = self.inner.store.changes();
        loop {
            changes.borrow_and_update();
            let (request, version) = self.get_request(caller, id.clone()).await?;
            if version > after || tokio::time::Instant::now() >= deadline {
                return Ok(request);
            }
            if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                return Ok(self.get_request(caller, id).await?.0);
            }
        }
    }

    /// A page of the requests the caller may see.
    pub async fn list_requests(&self, caller: &Caller, query: ListQuery) -> AppResult<Page<api::AccessRequest>> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let mut filter = RequestFilter {
            state: query.state,
            requester: query.mine.then(|| caller.name().to_string()),
            grants_only: query.grants_only,
            holding_access: query.holding_access,
            review_open: None,
            before: query.cursor.as_deref().map(decode_cursor).transpose()?,
            limit,
        };
        let sees_all = caller.is_auditor() || query.mine;
        if !sees_all {
            filter.limit = SCAN_STEP;
        }
        let mut items = Vec::new();
        let mut last: Option<RequestRecord> = None;
        for _ in 0..MAX_SCAN_STEPS {
            let step = filter.clone();
            let rows = self.inner.store.read(move |r| r.requests(&step)).await?;
            let (fetched, mut consumed) = (rows.len(), 0);
            for (record, version) in rows {
                if items.len() == limit as usize {
                    break;
                }
                consumed += 1;
                if sees_all || caller.may_see(&record) {
                    items.push(self.to_api(&record, version));
                }
                last = Some(record);
            }
            if fetched < filter.limit as usize && consumed == fetched {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
            if items.len() == limit as usize || sees_all {
                break;
            }
            filter.before = last.as_ref().map(|r| (r.created_at, r.id.clone()));
        }
        Ok(Page {
            items,
            next_cursor: last.as_ref().map(encode_cursor),
        })
    }
}
