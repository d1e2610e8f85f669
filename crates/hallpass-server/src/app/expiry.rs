//! Ending due grants a batch at a time.
//!
//! When a shift or an incident ends, thousands of grants fall due at once.
//! Ended one by one, each costs a store read and a write job of its own (a
//! savepoint, its record read and parsed again, two writes). Here the
//! scheduler hands over a batch of claimed records: they are read in one
//! store read (each target's row, secrets and role once), their revokes run
//! concurrently, and their outcomes are recorded in one write job. A
//! record that is not a due grant (a pending request's time-out, a
//! scheduled start, an activation) goes through [`App::process_due`].

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use futures::stream::{FuturesUnordered, StreamExt};
use hallpass_core::RequestState;
use hallpass_core::audit::AuditDraft;
use hallpass_core::request::{EndKind, RequestRecord};
use hallpass_store::WriteTx;

use super::caller::SYSTEM_ACTOR;
use super::grants::{EndBy, Ending, EndingCache, Revoked, decide_end, ending_of};
use super::{App, AppError, AppResult};

/// How long a batch's write waits, after its first revoke finished, for
/// the others. Those that take longer are recorded one by one as they
/// finish, so a slow target holds back the record of its own grants only.
const GATHER: StdDuration = StdDuration::from_millis(250);

/// Work that failed, by record id, to be retried.
pub(crate) type Failures = Vec<(String, AppError)>;

/// Whether the scheduler ends this record now: a grant (or a failed
/// revoke's retry) whose deadline has come.
fn ends_now(record: &RequestRecord, now: DateTime<Utc>) -> bool {
    matches!(record.state, RequestState::Active | RequestState::RevokeFailed)
        && record.next_deadline().is_some_and(|at| at <= now)
}

/// The write of [`App::record_ends`]: the versions in one read, then each
/// grant decided, then every event in one insert and every record in one
/// upsert.
fn record_ends_in(
    wtx: &mut WriteTx<'_>,
    by: &EndBy,
    revoked: Vec<Revoked>,
) -> AppResult<(Vec<(RequestRecord, EndKind)>, Failures)> {
    let ids: Vec<String> = revoked.iter().map(|one| one.id().to_string()).collect();
    let versions = wtx.read().request_versions(&ids)?;
    let (mut ends, mut refused) = (Vec::new(), Vec::new());
    for one in revoked {
        let (id, kind) = (one.id().to_string(), one.kind);
        match decide_end(wtx, by, one, versions.get(&id).copied())? {
            Ok(end) => ends.push((end, kind)),
            Err(error) => refused.push((id, error)),
        }
    }
    let mut drafts = Vec::with_capacity(ends.len());
    let mut written = Vec::with_capacity(ends.len());
    for ((record, event, data), kind) in ends {
        drafts.push(AuditDraft::new(&by.actor, event, Some(record.id.clone()), data));
        written.push((record, kind));
    }
    let events = wtx.append_audits(drafts)?;
    let records: Vec<(&RequestRecord, u64)> = written
        .iter()
        .zip(&events)
        .map(|((record, _), event)| (record, event.seq))
        .collect();
    wtx.put_requests(&records)?;
    Ok((written, refused))
}

impl App {
    /// Acts on a batch of claimed records and returns the work that failed.
    pub(crate) async fn process_due_batch(&self, ids: Vec<String>) -> Failures {
        let endings = match self.read_endings(ids.clone()).await {
            Ok(endings) => endings,
            Err(error) => return ids.into_iter().map(|id| (id, error.clone())).collect(),
        };
        let now = self.now();
        let (mut ending, mut others) = (Vec::new(), Vec::new());
        for (id, found) in endings {
            match found {
                Some(found) if ends_now(&found.record, now) => ending.push(found),
                Some(_) => others.push(id),
                None => {}
            }
        }
        let one_by_one = futures::stream::iter(others)
            .map(|id| async move { self.process_due(id.clone()).await.err().map(|error| (id, error)) })
            .buffer_unordered(64)
            .filter_map(|failure| async move { failure })
            .collect::<Failures>();
        let (mut failed, more) = tokio::join!(self.end_due_grants(ending), one_by_one);
        failed.extend(more);
        failed
    }

    /// Everything ending the records `ids` needs, in one store read (the
    /// records in one statement).
    async fn read_endings(&self, ids: Vec<String>) -> AppResult<Vec<(String, Option<Ending>)>> {
        let sealer = self.inner.sealer.clone();
        self.inner
            .store
            .read(move |r| {
                let mut cache = EndingCache::default();
                let mut records = r.requests_by_id(&ids)?;
                ids.into_iter()
                    .map(|id| {
                        let found = match records.remove(&id) {
                            Some((record, version)) => Some(ending_of(r, &sealer, &mut cache, record, version)?),
                            None => None,
                        };
                        Ok((id, found))
                    })
                    .collect()
            })
            .await
    }

    /// Revokes the grants concurrently, then records together the outcomes
    /// of those done within [`GATHER`] of the first, and each later one as
    /// it finishes.
    async fn end_due_grants(&self, ending: Vec<Ending>) -> Failures {
        let mut failed = Vec::new();
        let mut revokes = FuturesUnordered::new();
        for found in ending {
            let id = found.record.id.clone();
            let kind = found.record.end.unwrap_or(EndKind::Expire);
            match self.prepare_end(found, kind) {
                Ok(Ok(revoking)) => revokes.push(async move { (id, self.revoke_on_target(revoking).await) }),
                // Ended meanwhile: nothing to do.
                Ok(Err(_)) => {}
                Err(error) => failed.push((id, error)),
            }
        }
        let mut done = Vec::new();
        // The wait starts when the first revoke finishes: a batch on a
        // target that takes a while per revoke is still written together.
        let mut gather_until = None;
        while !revokes.is_empty() {
            let until = gather_until.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                Some((id, revoked)) = revokes.next() => {
                    match revoked {
                        Ok(revoked) => done.push(revoked),
                        Err(error) => failed.push((id, error)),
                    }
                    gather_until.get_or_insert_with(|| tokio::time::Instant::now() + GATHER);
                }
                () = tokio::time::sleep_until(until), if gather_until.is_some() => break,
            }
        }
        failed.extend(self.record_ends(done).await);
        while let Some((id, revoked)) = revokes.next().await {
            match revoked {
                Ok(revoked) => failed.extend(self.record_ends(vec![revoked]).await),
                Err(error) => failed.push((id, error)),
            }
        }
        failed
    }

    /// Records revoke outcomes in one write job. A grant the state rules
    /// refuse to end (it changed meanwhile) is reported and the others are
    /// written; a store error fails them all, to be retried.
    async fn record_ends(&self, revoked: Vec<Revoked>) -> Failures {
        if revoked.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = revoked.iter().map(|r| r.id().to_string()).collect();
        let by = EndBy {
            actor: SYSTEM_ACTOR.to_string(),
            reason: None,
        };
        let written = self
            .inner
            .store
            .write(move |wtx| record_ends_in(wtx, &by, revoked))
            .await;
        match written {
            Ok((written, refused)) => {
                for (record, kind) in &written {
                    self.after_end(record, *kind);
                }
                refused
            }
            Err(error) => ids.into_iter().map(|id| (id, error.clone())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use futures::FutureExt;
    use futures::future::BoxFuture;
    use hallpass_api as api;
    use hallpass_core::SystemClock;
    use hallpass_providers::{CredentialProvider, GrantContext, ProviderError, SecretCredential, TargetSecrets};
    use serde_json::{Map, Value, json};
    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::testing::{self, caller};

    /// Holds the first revoke of each principal given a gate until the
    /// gate opens, and tells when a revoke starts.
    struct GatedProvider {
        gates: Mutex<HashMap<String, watch::Receiver<bool>>>,
        started: mpsc::UnboundedSender<String>,
    }

    impl CredentialProvider for GatedProvider {
        fn target_type(&self) -> &'static str {
            "gated"
        }
        fn validate_config(&self, _: &Map<String, Value>, _: &TargetSecrets) -> Result<(), ProviderError> {
            Ok(())
        }
        fn issue<'a>(&'a self, _: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
            async { Ok(json!({"type": "gated"})) }.boxed()
        }
        fn credential<'a>(
            &'a self,
            _: &'a GrantContext,
            _: &'a Value,
        ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>> {
            async { Ok(SecretCredential::new("gated", "secret", Default::default())) }.boxed()
        }
        fn revoke<'a>(&'a self, grant: &'a GrantContext, _: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>> {
            let gate = self.gates.lock().unwrap().remove(&grant.principal);
            let _ = self.started.send(grant.principal.clone());
            async move {
                if let Some(mut gate) = gate {
                    let _ = gate.wait_for(|open| *open).await;
                }
                Ok(())
            }
            .boxed()
        }
    }

    struct Setup {
        app: App,
        /// Grant ids by principal, all due now, claimed by this server.
        grants: Vec<(String, String)>,
        open: watch::Sender<bool>,
        started: mpsc::UnboundedReceiver<String>,
        _dir: tempfile::TempDir,
    }

    /// `count` one-second grants on the gated target, for principals
    /// p0, p1, ...; the first revoke of those in `gated` waits for `open`.
    async fn due_grants(count: usize, gated: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (open, gate) = watch::channel(false);
        let (started_tx, started) = mpsc::unbounded_channel();
        let provider = Arc::new(GatedProvider {
            gates: Mutex::new(gated.iter().map(|p| (p.to_string(), gate.clone())).collect()),
            started: started_tx,
        });
        let (app, _inbox) = testing::app_in(dir.path(), Arc::new(SystemClock), vec![provider]).unwrap();
        let apply: api::ApplyRequest = serde_json::from_value(json!({
            "targets": [{"name": "db", "type": "gated", "config": {}}],
            "roles": [{"name": "ops", "target": "db", "max_duration": "1h", "requestable_by": ["group:dev"],
                       "auto_approve": true}]
        }))
        .unwrap();
        app.apply(&caller("root", &["admins"]), apply).await.unwrap();
        let mut grants = Vec::new();
        for index in 0..count {
            let name = format!("p{index}");
            let body: api::CreateRequest =
                serde_json::from_value(json!({"role": "ops", "reason": "INC-1", "duration": "1s"})).unwrap();
            let created = app.create_request(&caller(&name, &["dev"]), body).await.unwrap();
            grants.push((name, created.request.id));
        }
        tokio::time::sleep(StdDuration::from_millis(1100)).await;
        let claimed = app.claim_due(1000).await.unwrap();
        assert_eq!(claimed.len(), count, "every grant is due and claimed");
        Setup {
            app,
            grants,
            open,
            started,
            _dir: dir,
        }
    }

    async fn state(app: &App, principal: &str, id: &str) -> api::RequestState {
        let (request, _) = app
            .get_request(&caller(principal, &["dev"]), id.to_string())
            .await
            .unwrap();
        request.state
    }

    /// A revoke that hangs keeps its own grant open, not the record of the
    /// others of its batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_revoke_holds_back_only_its_own_grant() {
        let setup = due_grants(10, &["p0"]).await;
        let ids = setup.grants.iter().map(|(_, id)| id.clone()).collect();
        let batch = tokio::spawn({
            let app = setup.app.clone();
            async move { app.process_due_batch(ids).await }
        });
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
        for (principal, id) in &setup.grants[1..] {
            while state(&setup.app, principal, id).await != api::RequestState::Expired {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{principal}'s grant waits for p0's revoke"
                );
                tokio::time::sleep(StdDuration::from_millis(20)).await;
            }
        }
        let (slow, slow_id) = &setup.grants[0];
        assert_eq!(state(&setup.app, slow, slow_id).await, api::RequestState::Active);
        setup.open.send(true).unwrap();
        let failed = batch.await.unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(state(&setup.app, slow, slow_id).await, api::RequestState::Expired);
    }

    /// A grant revoked by an admin while its expiry's revoke runs is left
    /// revoked, reported, and the rest of its batch is recorded as expired
    /// in the same write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_grant_ended_meanwhile_does_not_stop_its_batch() {
        let gated = ["p0", "p1", "p2", "p3", "p4", "p5"];
        let mut setup = due_grants(gated.len(), &gated).await;
        let ids = setup.grants.iter().map(|(_, id)| id.clone()).collect();
        let batch = tokio::spawn({
            let app = setup.app.clone();
            async move { app.process_due_batch(ids).await }
        });
        for _ in gated {
            setup.started.recv().await.unwrap();
        }
        // Every expiry's revoke is under way; p0's grant is revoked now
        // (its second revoke passes the gate).
        let (_, revoked_id) = setup.grants[0].clone();
        let admin = caller("root", &["admins"]);
        let revoked = setup
            .app
            .revoke_grant(&admin, revoked_id.clone(), "left the incident".into())
            .await
            .unwrap();
        assert_eq!(revoked.state, api::RequestState::Revoked);
        setup.open.send(true).unwrap();
        let failed = batch.await.unwrap();
        let failed_ids: Vec<&str> = failed.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            failed_ids,
            vec![revoked_id.as_str()],
            "only the grant ended meanwhile is refused"
        );
        for (principal, id) in &setup.grants[1..] {
            assert_eq!(state(&setup.app, principal, id).await, api::RequestState::Expired);
        }
        assert_eq!(state(&setup.app, "p0", &revoked_id).await, api::RequestState::Revoked);
    }

    /// Fifty grants expire in one batch while admins revoke half of them
    /// in parallel: each grant ends once, with one end event, as expired
    /// or as revoked, and the batch reports exactly the revoked ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_expiries_racing_parallel_revokes_end_each_grant_once() {
        let names: Vec<String> = (0..50).map(|n| format!("p{n}")).collect();
        let gated: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut setup = due_grants(50, &gated).await;
        let ids: Vec<String> = setup.grants.iter().map(|(_, id)| id.clone()).collect();
        let batch = tokio::spawn({
            let (app, ids) = (setup.app.clone(), ids.clone());
            async move { app.process_due_batch(ids).await }
        });
        for _ in 0..50 {
            setup.started.recv().await.unwrap();
        }
        let revoked: Vec<String> = ids.iter().step_by(2).cloned().collect();
        let revokes: Vec<_> = revoked
            .iter()
            .map(|id| {
                let (app, id) = (setup.app.clone(), id.clone());
                tokio::spawn(async move {
                    app.revoke_grant(&caller("root", &["admins"]), id, "left the incident".into())
                        .await
                })
            })
            .collect();
        for revoke in revokes {
            assert_eq!(revoke.await.unwrap().unwrap().state, api::RequestState::Revoked);
        }
        setup.open.send(true).unwrap();
        let mut failed: Vec<String> = batch.await.unwrap().into_iter().map(|(id, _)| id).collect();
        failed.sort();
        let mut expected = revoked.clone();
        expected.sort();
        assert_eq!(
            failed, expected,
            "the batch refuses exactly the grants revoked meanwhile"
        );

        let admin = caller("root", &["admins"]);
        for (principal, id) in &setup.grants {
            let query = crate::app::audit::AuditQuery {
                since: 0,
                request: Some(id.clone()),
                limit: 100,
            };
            let ends: Vec<String> = setup
                .app
                .audit_page(&admin, query)
                .await
                .unwrap()
                .into_iter()
                .map(|event| event.kind)
                .filter(|kind| kind == "grant.expired" || kind == "grant.revoked")
                .collect();
            let want = if revoked.contains(id) {
                ("grant.revoked", api::RequestState::Revoked)
            } else {
                ("grant.expired", api::RequestState::Expired)
            };
            assert_eq!(ends, vec![want.0.to_string()], "{principal}: one end event");
            assert_eq!(state(&setup.app, principal, id).await, want.1);
        }
    }
}
