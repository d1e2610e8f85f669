//! Break-glass reviews: listing the grants whose post-hoc review is open,
//! and acknowledging them.

use hallpass_api as api;
use hallpass_store::RequestFilter;
use serde_json::json;

use super::{App, AppResult, Caller};

impl App {
    /// Break-glass grants the caller may review (admins: all), with open
    /// reviews only unless `all`. Requesters also see their own.
    pub async fn list_reviews(&self, caller: &Caller, all: bool) -> AppResult<Vec<api::AccessRequest>> {
        let filter = RequestFilter {
            review_open: Some(!all),
            limit: super::listing::MAX_PAGE,
            ..RequestFilter::default()
        };
        let records = self.inner.store.read(move |r| r.requests(&filter)).await?;
        let principal = &caller.principal;
        Ok(records
            .iter()
            .filter(|(record, _)| {
                caller.is_auditor()
                    || principal.matches_any(&record.role_approvers)
                    || record.requester.name == principal.name
            })
            .map(|(record, version)| self.to_api(record, *version))
            .collect())
    }

    pub async fn ack_review(&self, caller: &Caller, id: String, comment: String) -> AppResult<api::AccessRequest> {
        let reviewer = caller.principal.clone();
        self.change_request(caller, id, move |record, now| {
            let kind = record.acknowledge_review(&reviewer, &comment, now)?;
            let comment = record
                .review
                .as_ref()
                .and_then(|r| r.acknowledged.as_ref())
                .and_then(|d| d.comment.clone());
            Ok((
                kind,
                json!({"comment": comment, "role": record.role, "requester": record.requester.name}),
            ))
        })
        .await
    }
}
