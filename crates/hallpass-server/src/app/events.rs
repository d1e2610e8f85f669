//! The live audit stream: one caller's view of the audit log as it grows,
//! for `hallpass watch` and dashboards. The front end frames it (Server-Sent
//! Events in `http/events.rs`); this module decides what the caller sees and
//! when.
//!
//! The store is the only source: a feed reads events with `seq` greater
//! than its position, a page at a time, and waits on the store's change
//! counter when it has read everything. Every write batch locks the audit
//! head row before it appends, so events commit in `seq` order and a read of
//! `seq > position` can never pass over one that commits later. Nothing is
//! kept in memory that could overflow and drop an event, and a client that
//! comes back with its last `seq` gets everything after it.
//!
//! Visibility is the requests' own ([`Caller::may_see`]): admins and
//! auditors see every event; anyone else sees the events of requests they
//! made or may approve, and nothing without a request. Other events are
//! skipped without a trace of their kind.
//!
//! A feed ends when the caller's token expires, is revoked or its principal
//! is locked (seen in the log itself), so a stream cannot outlive the
//! credential that opened it. When the log says the token's groups changed
//! (a single sign-on session rechecked with its identity provider), the
//! feed sees with the new groups from that event on. Streams hold one of
//! [`MAX_EVENT_STREAMS`] slots for as long as they are open.

use std::collections::HashMap;
use std::sync::Arc;

use hallpass_api::ErrorCode;
use hallpass_core::AuditKind;
use hallpass_core::audit::AuditEvent;
use hallpass_store::ReadTx;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::{App, AppError, AppResult, Caller};

/// Events read from the store per step, so a resume from the start of a
/// long log never holds more than this in memory.
pub const EVENTS_PAGE: u32 = 500;
/// Feeds open at once on one server; one more is refused as busy.
pub const MAX_EVENT_STREAMS: usize = 256;

/// The slots of open feeds, shared by every clone of an [`App`].
#[derive(Clone)]
pub struct StreamSlots(Arc<Semaphore>);

impl Default for StreamSlots {
    fn default() -> Self {
        StreamSlots(Arc::new(Semaphore::new(MAX_EVENT_STREAMS)))
    }
}

/// What one step of a feed brings.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The events the caller may see, in `seq` order.
    pub events: Vec<AuditEvent>,
    /// A position to hand the client although no event of this batch
    /// carries it: set when a whole page held nothing for the caller, so a
    /// client that resumes does not make the server read that page again.
    /// Never set for a single event passing by live, which would tell the
    /// caller when others act.
    pub advance: Option<u64>,
}

/// One caller's live view of the audit log; see the module docs.
pub struct EventFeed {
    app: App,
    caller: Caller,
    position: u64,
    /// The newest event when the feed opened, after the caller's token was
    /// checked: a revocation or lock after it ends the feed; one before it
    /// is history (a principal locked and unlocked since).
    opened_at: u64,
    changes: watch::Receiver<u64>,
    /// The caller's credential ended: the feed gives nothing more.
    ended: bool,
    _slot: OwnedSemaphorePermit,
}

impl App {
    /// Opens a feed of the events after `after`, or after the newest event
    /// when `None` (only what happens from now on). Refused when `after` is
    /// past the newest event (it is not one this log handed out) or every
    /// slot is taken.
    pub async fn event_feed(&self, caller: &Caller, after: Option<u64>) -> AppResult<EventFeed> {
        let slot = self.inner.event_streams.0.clone().try_acquire_owned().map_err(|_| {
            AppError::busy(format!(
                "this server already serves {MAX_EVENT_STREAMS} event streams; try again later or another replica"
            ))
        })?;
        // Marked as seen before the head is read: a commit after the read
        // wakes the first wait.
        let mut changes = self.inner.store.changes();
        changes.borrow_and_update();
        let head = self.inner.store.read(|r| r.audit_head_seq()).await?;
        let position = match after {
            None => head,
            Some(after) if after <= head => after,
            Some(after) => {
                return Err(AppError::invalid(
                    ErrorCode::InvalidInput,
                    format!(
                        "event {after} does not exist: the newest is {head}; resume from the id of an event this \
                         server sent, or leave it out to start with new events"
                    ),
                ));
            }
        };
        Ok(EventFeed {
            app: self.clone(),
            caller: caller.clone(),
            position,
            opened_at: head,
            changes,
            ended: false,
            _slot: slot,
        })
    }
}

impl EventFeed {
    /// The `seq` the feed has read up to: a client resuming from here
    /// misses nothing the caller may see.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next batch, waiting for new events when there are none; `None`
    /// once the feed has ended (the caller's token expired, was revoked or
    /// its principal locked, or the store closed).
    pub async fn next_batch(&mut self) -> AppResult<Option<Batch>> {
        loop {
            if self.ended || self.token_expired() {
                return Ok(None);
            }
            self.changes.borrow_and_update();
            let (after, opened_at, caller) = (self.position, self.opened_at, self.caller.clone());
            let page = self
                .app
                .inner
                .store
                .read(move |r| read_page(r, &caller, after, opened_at))
                .await?;
            self.ended = page.credential_ended;
            if let Some(groups) = page.groups {
                self.caller.principal.groups = groups;
            }
            let Some(last) = page.last_read else {
                if self.ended || !self.wait_for_change().await {
                    return Ok(None);
                }
                continue;
            };
            self.position = last;
            let advance = (page.events.is_empty() && page.full).then_some(last);
            if !page.events.is_empty() || advance.is_some() {
                return Ok(Some(Batch {
                    events: page.events,
                    advance,
                }));
            }
        }
    }

    /// Waits until the log may have grown; false when the feed must end
    /// instead (the store closed, or the token expired meanwhile).
    async fn wait_for_change(&mut self) -> bool {
        let Some(expires_at) = self.caller.token_expires_at else {
            return self.changes.changed().await.is_ok();
        };
        let left = (expires_at - self.app.now()).to_std().unwrap_or_default();
        matches!(tokio::time::timeout(left, self.changes.changed()).await, Ok(Ok(())))
    }

    fn token_expired(&self) -> bool {
        self.caller.token_expires_at.is_some_and(|at| at <= self.app.now())
    }
}

/// One page read for a caller.
struct Page {
    /// What the caller may see.
    events: Vec<AuditEvent>,
    /// The `seq` of the last event read, seen or not.
    last_read: Option<u64>,
    /// The store had a whole page after the position.
    full: bool,
    /// The page revoked the caller's token or locked its principal; what
    /// came after that is not read.
    credential_ended: bool,
    /// The caller's groups, changed by an event of the page (a single
    /// sign-on session rechecked with the identity provider).
    groups: Option<Vec<String>>,
}

/// The events after `after` that `caller` may see, one page of them; an
/// event after `opened_at` that ends the caller's credential ends the page.
/// Each request is looked up once per page, in the same read.
fn read_page(r: &mut ReadTx<'_>, caller: &Caller, after: u64, opened_at: u64) -> AppResult<Page> {
    let events = r.audit(after, None, EVENTS_PAGE)?;
    let full = events.len() == EVENTS_PAGE as usize;
    let mut page = Page {
        events: Vec::new(),
        last_read: None,
        full,
        credential_ended: false,
        groups: None,
    };
    let mut caller = caller.clone();
    let mut visible: HashMap<String, bool> = HashMap::new();
    for event in events {
        if event.seq > opened_at && ends_credential(&caller, &event) {
            page.credential_ended = true;
            break;
        }
        // From its groups' change on, the caller sees with the new groups.
        if event.seq > opened_at
            && let Some(groups) = changed_groups(&caller, &event)
        {
            caller.principal.groups = groups.clone();
            page.groups = Some(groups);
            visible.clear();
        }
        page.last_read = Some(event.seq);
        let sees = match &event.request_id {
            _ if caller.is_auditor() => true,
            None => false,
            Some(id) => match visible.get(id) {
                Some(sees) => *sees,
                None => {
                    let sees = r.request(id)?.is_some_and(|(record, _)| caller.may_see(&record));
                    visible.insert(id.clone(), sees);
                    sees
                }
            },
        };
        if sees {
            page.events.push(event);
        }
    }
    Ok(page)
}

/// The groups `event` gives the token `caller` authenticated with, if it
/// changes them.
fn changed_groups(caller: &Caller, event: &AuditEvent) -> Option<Vec<String>> {
    if event.kind != AuditKind::TokenGroupsChanged.as_str()
        || event.data.get("token_id").and_then(|v| v.as_str()) != Some(caller.token_id.as_str())
    {
        return None;
    }
    serde_json::from_value(event.data.get("groups")?.clone()).ok()
}

/// Whether `event` revokes the token `caller` authenticated with, or locks
/// its principal (which revokes all of its tokens).
fn ends_credential(caller: &Caller, event: &AuditEvent) -> bool {
    let names = |field: &str, value: &str| event.data.get(field).and_then(|v| v.as_str()) == Some(value);
    (event.kind == AuditKind::TokenRevoked.as_str() && names("token_id", &caller.token_id))
        || (event.kind == AuditKind::PrincipalLocked.as_str() && names("principal", caller.name()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use hallpass_api as api;
    use hallpass_core::SystemClock;

    use super::*;
    use crate::testing::{self, caller};

    async fn app() -> (tempfile::TempDir, App, testing::DeadlineInbox) {
        let dir = tempfile::tempdir().unwrap();
        let (app, inbox) = testing::app_in(dir.path(), Arc::new(SystemClock), Vec::new()).unwrap();
        let admin = caller("root", &["admins"]);
        let apply: api::ApplyRequest = serde_json::from_value(serde_json::json!({
            "targets": [{"name": "svc", "type": "jwt", "config": {"audience": "svc"}}],
            "roles": [{"name": "ops", "target": "svc", "max_duration": "1h", "requestable_by": ["group:dev"],
                       "approval": {"approvers": ["group:leads"], "required": 1}}]
        }))
        .unwrap();
        app.apply(&admin, apply).await.unwrap();
        (dir, app, inbox)
    }

    async fn request(app: &App, who: &Caller) -> String {
        let body: api::CreateRequest =
            serde_json::from_value(serde_json::json!({"role": "ops", "reason": "INC-1", "duration": "30m"})).unwrap();
        app.create_request(who, body).await.unwrap().request.id
    }

    async fn next(feed: &mut EventFeed) -> Option<Batch> {
        tokio::time::timeout(Duration::from_secs(5), feed.next_batch())
            .await
            .expect("a batch within 5 s")
            .unwrap()
    }

    #[tokio::test]
    async fn a_requester_sees_her_own_requests_events_and_nothing_else() {
        let (_dir, app, _inbox) = app().await;
        let (alice, dave) = (caller("alice", &["dev"]), caller("dave", &["dev"]));
        let mut feed = app.event_feed(&alice, None).await.unwrap();
        let mut everything = app.event_feed(&caller("eve", &["auditors"]), None).await.unwrap();
        let theirs = request(&app, &dave).await;
        let mine = request(&app, &alice).await;
        let batch = next(&mut feed).await.unwrap();
        let ids: Vec<_> = batch.events.iter().map(|e| e.request_id.as_deref()).collect();
        assert_eq!(ids, [Some(mine.as_str())], "{batch:?}");
        assert_eq!(batch.events[0].kind, "request.created");
        assert_eq!(batch.advance, None, "a live event passing by is not announced");
        let all = next(&mut everything).await.unwrap();
        let ids: Vec<_> = all.events.iter().filter_map(|e| e.request_id.clone()).collect();
        assert_eq!(ids, [theirs, mine]);
    }

    #[tokio::test]
    async fn resuming_past_the_newest_event_is_refused_and_a_full_page_of_others_moves_the_position() {
        let (_dir, app, _inbox) = app().await;
        let admin = caller("root", &["admins"]);
        let head = app.event_feed(&admin, None).await.unwrap().position();
        let error = app.event_feed(&admin, Some(head + 1)).await.err().unwrap();
        assert_eq!(error.code, ErrorCode::InvalidInput, "{error}");
        for n in 0..EVENTS_PAGE {
            let token = api::CreateToken {
                principal: format!("svc-{n}"),
                groups: vec!["dev".into()],
                ttl: None,
            };
            app.create_token(&admin, token).await.unwrap();
        }
        let mut feed = app.event_feed(&caller("alice", &["dev"]), Some(head)).await.unwrap();
        let batch = next(&mut feed).await.unwrap();
        assert!(batch.events.is_empty());
        assert_eq!(batch.advance, Some(head + u64::from(EVENTS_PAGE)));
    }

    #[tokio::test]
    async fn the_feed_ends_when_its_token_is_revoked() {
        let (_dir, app, _inbox) = app().await;
        let admin = caller("root", &["admins"]);
        let made = app
            .create_token(
                &admin,
                api::CreateToken {
                    principal: "carol".into(),
                    groups: vec!["auditors".into()],
                    ttl: None,
                },
            )
            .await
            .unwrap();
        let carol = app.authenticate(&made.token, None).await.unwrap();
        let mut feed = app.event_feed(&carol, None).await.unwrap();
        request(&app, &caller("alice", &["dev"])).await;
        app.revoke_token(&admin, made.id.clone()).await.unwrap();
        request(&app, &caller("dave", &["dev"])).await;
        let mut seen = Vec::new();
        while let Some(batch) = next(&mut feed).await {
            seen.extend(batch.events.into_iter().map(|e| e.kind));
        }
        assert_eq!(seen, ["request.created"], "nothing from the revocation on");
    }

    #[tokio::test]
    async fn the_feed_sees_with_the_groups_the_identity_provider_gives_later() {
        let (_dir, app, _inbox) = app().await;
        let admin = caller("root", &["admins"]);
        let body = api::CreateToken {
            principal: "bob".into(),
            groups: vec!["leads".into()],
            ttl: None,
        };
        let made = app.create_token(&admin, body).await.unwrap();
        let bob = app.authenticate(&made.token, None).await.unwrap();
        let mut feed = app.event_feed(&bob, None).await.unwrap();
        let before = request(&app, &caller("alice", &["dev"])).await;
        // What a recheck with the provider writes when bob leaves `leads`.
        let id = made.id.clone();
        app.inner
            .store
            .write(move |wtx| -> AppResult<()> {
                wtx.set_token_groups(&id, &["dev".to_string()])?;
                let data = serde_json::json!({"token_id": id, "principal": "bob", "groups_before": ["leads"], "groups": ["dev"]});
                wtx.append_audit(hallpass_core::audit::AuditDraft::new("bob", AuditKind::TokenGroupsChanged, None, data))?;
                Ok(())
            })
            .await
            .unwrap();
        let after = request(&app, &caller("dave", &["dev"])).await;
        let first = next(&mut feed).await.unwrap();
        let ids: Vec<_> = first.events.iter().filter_map(|e| e.request_id.clone()).collect();
        assert_eq!(ids, [before], "{first:?}");
        let more = tokio::time::timeout(Duration::from_millis(500), feed.next_batch()).await;
        match more {
            Err(_) => {}
            Ok(batch) => {
                let batch = batch.unwrap().unwrap_or(Batch {
                    events: Vec::new(),
                    advance: None,
                });
                assert!(
                    batch
                        .events
                        .iter()
                        .all(|e| e.request_id.as_deref() != Some(after.as_str())),
                    "{batch:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_lock_lifted_before_the_feed_opened_does_not_end_a_replay() {
        let (_dir, app, _inbox) = app().await;
        let admin = caller("root", &["admins"]);
        let start = app.event_feed(&admin, None).await.unwrap().position();
        app.lock_principal(&admin, "carol".into(), "INC-2".into())
            .await
            .unwrap();
        app.unlock_principal(&admin, "carol".into()).await.unwrap();
        request(&app, &caller("alice", &["dev"])).await;
        let mut feed = app
            .event_feed(&caller("carol", &["auditors"]), Some(start))
            .await
            .unwrap();
        let batch = next(&mut feed).await.unwrap();
        let kinds: Vec<&str> = batch.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["principal.locked", "principal.unlocked", "request.created"]);
    }

    #[tokio::test]
    async fn streams_beyond_the_limit_are_refused_as_busy_until_one_closes() {
        let (_dir, app, _inbox) = app().await;
        let admin = caller("root", &["admins"]);
        let mut open = Vec::new();
        for _ in 0..MAX_EVENT_STREAMS {
            open.push(app.event_feed(&admin, None).await.unwrap());
        }
        let error = app.event_feed(&admin, None).await.err().unwrap();
        assert_eq!(error.code, ErrorCode::Busy, "{error}");
        open.pop();
        assert!(app.event_feed(&admin, None).await.is_ok());
    }
}
