//! Work Hallpass does on its own when a deadline comes: expiry, revoke
//! retries, activations a crash interrupted, escalations, pending time-outs
//! and scheduled starts (decided again by the policies and the role as
//! they are at that moment).

use hallpass_core::RequestState;
use hallpass_core::request::{EndKind, RequestRecord, RoleCheck};
use serde_json::json;

use super::caller::SYSTEM_ACTOR;
use super::requests::{DECISION_ATTEMPTS, RoleContext};
use super::{App, AppError, AppResult, claim_if_approved, load_request, save_with_event};
use crate::gate::Asked;

/// What the start of a scheduled request comes to.
enum StartOutcome {
    Start,
    /// Refused by `by` (the policies, or Hallpass for the role's rules).
    Refuse(&'static str, Vec<String>),
    Withdraw(String),
}

impl App {
    /// Acts on whatever is due for one record.
    pub(crate) async fn process_due(&self, id: String) -> AppResult<()> {
        let lookup = id.clone();
        let Some((record, _)) = self.inner.store.read(move |r| r.request(&lookup)).await? else {
            return Ok(());
        };
        let now = self.now();
        let due = record.next_deadline().is_some_and(|at| at <= now);
        match record.state {
            RequestState::Approved => {
                self.activate(record).await?;
            }
            _ if !due => self.schedule(&record),
            RequestState::Pending => self.process_pending(id).await?,
            RequestState::Scheduled => self.process_scheduled(id).await?,
            RequestState::Active | RequestState::RevokeFailed => {
                let kind = record.end.unwrap_or(EndKind::Expire);
                self.end_grant_as(SYSTEM_ACTOR, id, kind, None).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A pending request's deadline came: time it out at its pending TTL, or
    /// record its escalation.
    async fn process_pending(&self, id: String) -> AppResult<()> {
        let written = self
            .inner
            .store
            .write(move |wtx| -> AppResult<Option<RequestRecord>> {
                let mut record = load_request(wtx, &id)?;
                let now = wtx.now();
                if record.state != RequestState::Pending {
                    return Ok(None);
                }
                if record.pending_expires_at.is_some_and(|at| at <= now) {
                    let kind = record.time_out(SYSTEM_ACTOR, now)?;
                    let data = json!({"pending_expires_at": record.pending_expires_at});
                    save_with_event(wtx, &record, SYSTEM_ACTOR, kind, data)?;
                    return Ok(Some(record));
                }
                if let Some((kind, stage, escalate_to)) = record.escalate(now) {
                    let to: Vec<String> = escalate_to.iter().map(ToString::to_string).collect();
                    save_with_event(
                        wtx,
                        &record,
                        SYSTEM_ACTOR,
                        kind,
                        json!({"stage": stage, "escalate_to": to}),
                    )?;
                }
                Ok(Some(record))
            })
            .await?;
        if let Some(record) = written {
            if record.state == RequestState::TimedOut {
                metrics::counter!("hallpass_requests_timed_out_total").increment(1);
            }
            self.schedule(&record);
        }
        Ok(())
    }

    /// A scheduled request's start came. It was approved for then, but
    /// time has passed: the policies decide again (a denial now ends it as
    /// `denied` with their messages), and the role is checked as it is now.
    /// Only then is it approved and issued.
    async fn process_scheduled(&self, id: String) -> AppResult<()> {
        for _ in 0..DECISION_ATTEMPTS {
            let lookup = id.clone();
            let Some((record, version)) = self.inner.store.read(move |r| r.request(&lookup)).await? else {
                return Ok(());
            };
            if record.state != RequestState::Scheduled || record.scheduled_start.is_none_or(|at| at > self.now()) {
                return Ok(());
            }
            let context = self.role_context(&record.role, &record.requester.name).await?;
            let (outcome, snapshot) = match &context {
                None => (
                    StartOutcome::Withdraw(format!("role {:?} was deleted before the start", record.role)),
                    None,
                ),
                Some(context) => self.decide_start(&record, context).await?,
            };
            if let Some(record) = self.write_start(id.clone(), version, outcome, snapshot).await? {
                if record.state == RequestState::Approved {
                    self.activate(record).await?;
                }
                return Ok(());
            }
        }
        Err(AppError::busy(format!(
            "request {id} kept changing at its start; retrying"
        )))
    }

    async fn decide_start(
        &self,
        record: &RequestRecord,
        context: &RoleContext,
    ) -> AppResult<(StartOutcome, Option<super::requests::Snapshot>)> {
        if let RoleCheck::NotRequestable(why) = record.check_role(Some(&context.rules)) {
            return Ok((
                StartOutcome::Refuse(SYSTEM_ACTOR, vec![why]),
                Some(context.snapshot.clone()),
            ));
        }
        let asked = Asked {
            duration_seconds: record.duration_seconds,
            reason: record.reason.clone(),
            ticket: record.ticket.clone(),
            emergency: record.emergency,
            extension: false,
            scheduled_start: record.scheduled_start,
            plan: record.plan.clone(),
        };
        let decided = self.decide(context, &record.requester, &asked, true).await?;
        let mut messages = match decided.route {
            hallpass_core::request::Route::Deny(messages) => messages,
            _ => Vec::new(),
        };
        if let Some(cap) = decided
            .policy
            .max_duration_seconds
            .filter(|cap| record.duration_seconds > *cap)
        {
            messages.push(format!(
                "policy caps this request at {} now; ask again for {} or less",
                hallpass_core::format_duration(cap),
                hallpass_core::format_duration(cap)
            ));
        }
        let outcome = if messages.is_empty() {
            StartOutcome::Start
        } else {
            StartOutcome::Refuse(hallpass_core::request::POLICY_ACTOR, messages)
        };
        Ok((outcome, Some(decided.snapshot)))
    }

    /// Writes the start's outcome, unless the record or what the decision
    /// read changed (`None`: decide again).
    async fn write_start(
        &self,
        id: String,
        seen: u64,
        outcome: StartOutcome,
        snapshot: Option<super::requests::Snapshot>,
    ) -> AppResult<Option<RequestRecord>> {
        let owner = self.inner.replica_id.clone();
        self.inner
            .store
            .write(move |wtx| -> AppResult<Option<RequestRecord>> {
                let current = wtx.read().request(&id)?.map(|(_, version)| version);
                if current != Some(seen) {
                    return Ok(None);
                }
                // The record itself holds the (requester, role) key, so the
                // snapshot's open request is this one at `seen`.
                if let Some(snapshot) = &snapshot
                    && !snapshot.holds(&mut wtx.read())?
                {
                    return Ok(None);
                }
                let mut record = load_request(wtx, &id)?;
                let now = wtx.now();
                let (kind, data) = match outcome {
                    StartOutcome::Start => (
                        record.start_scheduled(now)?,
                        json!({"scheduled_start": record.scheduled_start}),
                    ),
                    StartOutcome::Refuse(by, messages) => {
                        let data = json!({"reason": messages.join("\n"), "by": by, "at_start": true,
                                          "policy_hash": snapshot.and_then(|s| s.policy_hash)});
                        (record.refuse(by, &messages, now)?, data)
                    }
                    StartOutcome::Withdraw(why) => {
                        (record.withdraw(SYSTEM_ACTOR, why.clone(), now)?, json!({"reason": why}))
                    }
                };
                save_with_event(wtx, &record, SYSTEM_ACTOR, kind, data)?;
                claim_if_approved(wtx, &record, &owner)?;
                Ok(Some(record))
            })
            .await
    }
}
