//! Several servers on one PostgreSQL database: any replica serves any call,
//! due work is shared through claims in the store and survives a replica's
//! death, the audit log stays one chain, and a `--wait` long-poll on one
//! replica sees a change made on another at once.
//!
//! These tests need PostgreSQL whatever `HALLPASS_TEST_BACKEND` says, so
//! `scripts/test` runs them (the `replicas_` prefix) once, not in both
//! backend passes.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{ROOT_TOKEN, Server, WebhookRecorder, database_for, jwt_claims, post_all, postgres_base_url};
use crate::notifications;
use hallpass_api::{AccessRequest, CreateRequest, RequestState};
use hallpass_client::{Client, ClientError};
use serde_json::Value;

/// `count` replicas sharing a fresh database, all started at once with the
/// same bootstrap token: on the empty store exactly one of them makes the
/// admin token and the others find it.
fn start_replicas(dir: &Path, count: usize) -> Vec<Server> {
    let database_url = database_for(&postgres_base_url(), &dir.join("database"));
    std::thread::scope(|scope| {
        let starting: Vec<_> = (0..count)
            .map(|i| {
                let (url, data_dir) = (&database_url, dir.join(format!("replica-{i}")));
                scope.spawn(move || Server::replica(url, &data_dir))
            })
            .collect();
        starting
            .into_iter()
            .map(|start| start.join().expect("a replica started"))
            .collect()
    })
}

/// xorshift64*: enough randomness to spread load, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

const REQUESTS: usize = 1000;
const TASKS: usize = 16;
/// The index of the replica killed half-way.
const DOOMED: usize = 2;
/// Requests start in waves of [`WAVE`] every [`WAVE_EVERY`], so the load
/// lasts about 8 s and the kill lands while early grants are expiring, with
/// requests in flight on every replica.
const WAVE: usize = 32;
const WAVE_EVERY: Duration = Duration::from_millis(250);
/// The webhook answers revokes this late, so that at any moment each
/// replica has expiries in hand: the killed one dies holding claims on
/// expiries (and after some revoke calls it never saw answered), not only
/// on activations.
const REVOKE_DELAY: Duration = Duration::from_millis(200);
fn webhook_role(i: usize) -> String {
    format!("hook-access-{i}")
}
const END_KINDS: [&str; 3] = ["grant.expired", "grant.revoked", "grant.released"];

/// What creating the requests produced.
struct Load {
    /// Every request created, as its creator saw it.
    created: Vec<AccessRequest>,
    /// Requests that died with the killed replica and were sent again.
    retried: usize,
    /// From the start of the load to the last request created.
    took: Duration,
    /// When the doomed replica was killed.
    killed_at: Instant,
}

/// Creates [`REQUESTS`] auto-approved requests of 2 to 6 seconds through
/// randomly chosen replicas, [`TASKS`] at a time in waves, and kills
/// `doomed` once half are created. A request that fails on its way to the
/// killed replica is sent once more to a surviving one.
async fn create_load(addrs: Vec<String>, mut doomed: Server, token: &str, seed: u64) -> Load {
    let clients: Arc<Vec<Client>> = Arc::new(
        addrs
            .iter()
            .map(|addr| Client::new(addr, Some(token.to_string())).expect("client"))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let created = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let retried = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();

    let killer = {
        let (created, killed) = (Arc::clone(&created), Arc::clone(&killed));
        tokio::spawn(async move {
            while created.load(Ordering::SeqCst) < REQUESTS / 2 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // New requests avoid it from now on; those in flight fail.
            killed.store(true, Ordering::SeqCst);
            tokio::task::spawn_blocking(move || {
                doomed.kill_hard();
                println!(
                    "killed replica {DOOMED} (SIGKILL) after {} requests were created",
                    REQUESTS / 2
                );
                (doomed, Instant::now())
            })
            .await
            .expect("kill the replica")
        })
    };

    let tasks: Vec<_> = (0..TASKS as u64)
        .map(|task| {
            let (clients, next, created, killed, retried) = (
                Arc::clone(&clients),
                Arc::clone(&next),
                Arc::clone(&created),
                Arc::clone(&killed),
                Arc::clone(&retried),
            );
            tokio::spawn(async move {
                let mut rng = Rng(seed ^ (task + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= REQUESTS {
                        return mine;
                    }
                    tokio::time::sleep_until((start + WAVE_EVERY * (i / WAVE) as u32).into()).await;
                    let body = CreateRequest {
                        role: webhook_role(i),
                        duration: Some(format!("{}s", 2 + rng.below(5))),
                        reason: format!("load {i}"),
                        ticket: None,
                        emergency: false,
                        scheduled_start: None,
                        ssh_public_key: None,
                        plan: None,
                    };
                    let live = if killed.load(Ordering::SeqCst) {
                        DOOMED
                    } else {
                        clients.len()
                    };
                    let replica = rng.below(live as u64) as usize;
                    let (request, resent) = match clients[replica].create_request(&body).await {
                        Ok(response) => (response.request, false),
                        Err(ClientError::Transport(error)) if replica == DOOMED && killed.load(Ordering::SeqCst) => {
                            retried.fetch_add(1, Ordering::SeqCst);
                            let other = rng.below(DOOMED as u64) as usize;
                            println!("request {i} died with replica {DOOMED} ({error}); sending it to replica {other}");
                            let response = clients[other].create_request(&body).await.unwrap_or_else(|error| {
                                panic!("request {i} failed again, through replica {other}: {error}")
                            });
                            (response.request, true)
                        }
                        Err(error) => panic!("request {i} through replica {replica} failed: {error}"),
                    };
                    // A resent request may have been made by the dead replica
                    // already: the answer is then that one request (never a
                    // second), activated by a survivor once its claim lapses.
                    let expected: &[RequestState] = if resent {
                        &[RequestState::Active, RequestState::Approved]
                    } else {
                        &[RequestState::Active]
                    };
                    assert!(
                        expected.contains(&request.state),
                        "auto-approved requests activate at once: request {i} is {}",
                        request.state
                    );
                    created.fetch_add(1, Ordering::SeqCst);
                    mine.push(request);
                }
            })
        })
        .collect();

    let mut all = Vec::with_capacity(REQUESTS);
    for task in tasks {
        all.extend(task.await.expect("a load task panicked"));
    }
    let took = start.elapsed();
    let (_doomed, killed_at) = killer.await.expect("the killer task");
    Load {
        created: all,
        retried: retried.load(Ordering::SeqCst),
        took,
        killed_at,
    }
}

/// Waits until no grant holds access and no approved request waits for its
/// activation; returns how long that took.
async fn wait_until_quiet(admin: &Client, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let everything = |state, active| hallpass_client::ListQuery {
            state,
            active,
            page_size: 1000,
            max: usize::MAX,
            ..hallpass_client::ListQuery::default()
        };
        let holding = admin
            .list(true, &everything(None, true))
            .await
            .expect("list active grants");
        let approved = admin
            .list(false, &everything(Some(hallpass_api::RequestState::Approved), false))
            .await
            .expect("list approved requests");
        if holding.is_empty() && approved.is_empty() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{} grants still hold access and {} approved requests are not active after {within:?}; e.g. {:?}",
            holding.len(),
            approved.len(),
            holding
                .iter()
                .chain(&approved)
                .next()
                .map(|r| (&r.id, &r.state, r.expires_at))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whole audit log, page by page: request id → event kinds in order.
async fn audit_kinds(admin: &Client) -> HashMap<String, Vec<String>> {
    let mut kinds: HashMap<String, Vec<String>> = HashMap::new();
    let mut since = 0;
    loop {
        let page = admin
            .audit_list(Some(since), None, Some(10_000))
            .await
            .expect("list audit events");
        let Some(last) = page.last() else { return kinds };
        since = last.seq;
        for event in page {
            if let Some(id) = event.request_id {
                kinds.entry(id).or_default().push(event.kind);
            }
        }
    }
}

#[test]
fn replicas_share_work_and_survive_a_kill() {
    let test_start = Instant::now();
    let temp = tempfile::tempdir().unwrap();
    let hook = WebhookRecorder::with_revoke_delay(REVOKE_DELAY);
    let mut replicas = start_replicas(temp.path(), 3);
    replicas[0].apply(
        temp.path(),
        &format!(
            r#"
target "hook" {{
  type    = "webhook"
  config  = {{ url = "{}" }}
  secrets = {{ hmac_secret = "{}" }}
}}
{}
"#,
            hook.url,
            crate::harness::WEBHOOK_HMAC_SECRET,
            // One role per request: a second request for a role already held
            // would extend that grant instead of creating one.
            (0..REQUESTS)
                .map(|i| format!(
                    "role \"{}\" {{\n  target = \"hook\"\n  max_duration = \"1h\"\n  requestable_by = [\"group:dev\"]\n  auto_approve = true\n}}\n",
                    webhook_role(i)
                ))
                .collect::<String>()
        ),
    );
    let dana = replicas[0].token("dana", "dev");
    println!("3 replicas up and configured in {:?}", test_start.elapsed());

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("load seed {seed}");
    let addrs = replicas.iter().map(|r| r.addr.clone()).collect();
    let doomed = replicas.pop().expect("three replicas");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let load = runtime.block_on(create_load(addrs, doomed, &dana, seed));
    println!(
        "{} requests created in {:?} ({:.0}/s); {} sent again after the kill",
        load.created.len(),
        load.took,
        load.created.len() as f64 / load.took.as_secs_f64(),
        load.retried
    );

    let admin = Client::new(&replicas[1].addr, Some(ROOT_TOKEN.into())).unwrap();
    let quiet = runtime.block_on(wait_until_quiet(&admin, Duration::from_secs(90)));
    println!(
        "no grant holds access {quiet:?} after the last request was created ({:?} after the kill)",
        load.killed_at.elapsed()
    );
    let kinds = runtime.block_on(audit_kinds(&admin));

    // Every request created got exactly one activation and one end.
    let created: HashSet<&str> = load.created.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(created.len(), REQUESTS, "request ids are unique");
    let count = |id: &str, wanted: &[&str]| {
        kinds
            .get(id)
            .map_or(0, |k| k.iter().filter(|kind| wanted.contains(&kind.as_str())).count())
    };
    for id in &created {
        assert_eq!(count(id, &["request.created"]), 1, "{id}: {:?}", kinds.get(*id));
        assert_eq!(count(id, &["grant.activated"]), 1, "{id}: {:?}", kinds.get(*id));
        assert_eq!(count(id, &END_KINDS), 1, "{id}: {:?}", kinds.get(*id));
    }
    // A request whose answer died with the replica may still exist: the
    // claim it was created with lapses and another replica activates it.
    // It must then end like the others.
    let orphans: Vec<&String> = kinds
        .iter()
        .filter(|(id, k)| !created.contains(id.as_str()) && k.iter().any(|kind| kind == "request.created"))
        .map(|(id, _)| id)
        .collect();
    for id in &orphans {
        println!("request {id} outlived the killed replica's answer: {:?}", kinds[*id]);
        assert!(count(id, &["grant.activated"]) <= 1, "{id}: {:?}", kinds[*id]);
        assert_eq!(
            count(id, &["grant.activated"]),
            count(id, &END_KINDS),
            "{id}: {:?}",
            kinds[*id]
        );
    }
    assert!(
        orphans.len() <= load.retried,
        "{} requests nobody created: {orphans:?}",
        orphans.len()
    );
    let activated: HashSet<&str> = kinds
        .iter()
        .filter(|(_, k)| k.iter().any(|kind| kind == "grant.activated"))
        .map(|(id, _)| id.as_str())
        .collect();
    let activated_orphans = orphans.iter().filter(|id| activated.contains(id.as_str())).count();
    assert_eq!(activated.len(), REQUESTS + activated_orphans, "grants in the audit log");

    // The webhook: every grant issued and revoked, every revoke of a grant
    // under one key, and the revoke is the last word.
    let mut calls: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    let mut bodies: HashMap<&str, HashSet<String>> = HashMap::new();
    let recorded = hook.calls();
    for call in &recorded {
        calls
            .entry(call.grant_id.as_str())
            .or_default()
            .push((call.event.as_str(), call.idempotency_key.as_str()));
        bodies
            .entry(call.idempotency_key.as_str())
            .or_default()
            .insert(call.body.to_string());
    }
    let (mut duplicate_issues, mut duplicate_revokes) = (0, 0);
    for id in &activated {
        let calls = calls.get(id).map(Vec::as_slice).unwrap_or_default();
        for event in ["issue", "revoke"] {
            let keys: Vec<&str> = calls.iter().filter(|(e, _)| *e == event).map(|(_, k)| *k).collect();
            assert!(!keys.is_empty(), "grant {id} got no {event} call: {calls:?}");
            let key = format!("{id}-{event}");
            assert!(keys.iter().all(|k| *k == key), "grant {id}: {event} keys {keys:?}");
            if keys.len() > 1 {
                let orphan = if orphans.iter().any(|o| o.as_str() == *id) {
                    ", an orphan"
                } else {
                    ""
                };
                println!("grant {id}{orphan}: {event} sent {} times under one key", keys.len());
                if event == "issue" {
                    duplicate_issues += keys.len() - 1;
                } else {
                    duplicate_revokes += keys.len() - 1;
                }
            }
        }
        assert_eq!(
            calls.last().map(|(e, _)| *e),
            Some("revoke"),
            "grant {id}: access was given back after its revoke: {calls:?}"
        );
    }
    let unknown: Vec<&&str> = calls.keys().filter(|id| !activated.contains(**id)).collect();
    assert!(
        unknown.is_empty(),
        "webhook calls for requests that never became grants: {unknown:?}"
    );
    // A retried call must be the same call: an endpoint that compares
    // bodies under one idempotency key would refuse anything else.
    let changed: Vec<_> = bodies.iter().filter(|(_, b)| b.len() > 1).collect();
    assert!(
        changed.is_empty(),
        "idempotency keys reused with a different body: {changed:?}"
    );
    println!(
        "webhook: {} calls for {} grants; {duplicate_issues} repeated issues, {duplicate_revokes} repeated revokes",
        recorded.len(),
        activated.len()
    );

    // The grants as the API lists them, and how late they ended.
    let (status, grants) = replicas[0].http("GET", "/v1/grants?limit=10000", Some(ROOT_TOKEN), None);
    assert_eq!(status, 200, "{grants}");
    let grants: Vec<AccessRequest> = serde_json::from_value(grants).unwrap();
    assert_eq!(grants.len(), REQUESTS + activated_orphans, "grants listed");
    let mut lags: Vec<f64> = grants
        .iter()
        .map(|g| {
            let (ended, expires) = (g.ended_at.expect("ended"), g.expires_at.expect("expires"));
            (ended - expires).num_milliseconds() as f64 / 1000.0
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    println!(
        "expiry lag: median {:.2}s, p99 {:.2}s, max {:.2}s; {} grants over 2s late",
        lags[lags.len() / 2],
        lags[lags.len() * 99 / 100],
        lags[lags.len() - 1],
        lags.iter().filter(|lag| **lag > 2.0).count()
    );

    let report = replicas[1].json(&replicas[1].admin, &["audit", "verify"]);
    assert_eq!(report["ok"], true, "{report}");
    println!(
        "audit chain ok: {} events; whole test {:?}",
        report["events_checked"],
        test_start.elapsed()
    );
}

#[test]
fn replicas_wait_sees_approval_from_another_replica_within_a_second() {
    let temp = tempfile::tempdir().unwrap();
    let replicas = start_replicas(temp.path(), 2);
    let (a, b) = (&replicas[0], &replicas[1]);
    a.apply(
        temp.path(),
        r#"
target "svc" {
  type   = "jwt"
  config = { audience = "svc" }
}
role "svc-admin" {
  target         = "svc"
  max_duration   = "1h"
  requestable_by = ["group:dev"]
  approval {
    approvers = ["group:approvers"]
    required  = 1
  }
}
"#,
    );
    let alice = a.token("alice", "dev");
    let bob = a.token("bob", "approvers");

    for round in 1..=3 {
        let waiting = a
            .cli(&alice)
            .args([
                "--output",
                "json",
                "request",
                "svc-admin",
                "--for",
                "10m",
                "--reason",
                "x",
                "--wait",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start alice's waiting request");
        let deadline = Instant::now() + Duration::from_secs(15);
        let id = loop {
            let pending = b.json(&bob, &["requests", "--state", "pending"]);
            if let Some(id) = pending[0]["id"].as_str() {
                break id.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "alice's request never showed up on replica B"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // Let alice's long-poll settle on replica A before bob acts on B.
        std::thread::sleep(Duration::from_millis(500));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let output = waiting.wait_with_output();
            let _ = tx.send((Instant::now(), output));
        });

        let approved = b.json(&bob, &["approve", &id]);
        let approved_at = Instant::now();
        assert_eq!(approved["state"], "active", "{approved}");
        let (exited_at, output) = rx
            .recv_timeout(Duration::from_secs(40))
            .expect("alice's --wait did not end within 40 s of the approval");
        let output = output.expect("wait for alice's --wait");
        let lag = exited_at.saturating_duration_since(approved_at);
        println!(
            "round {round}: alice's --wait on replica A exited {lag:?} after bob's approval on replica B returned"
        );
        assert!(
            output.status.success(),
            "--wait must exit 0 once active ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let credential: Value = serde_json::from_slice(&output.stdout).expect("credential JSON");
        let claims = jwt_claims(credential["token"].as_str().expect("token"));
        assert_eq!(claims["jti"], id.as_str());
        assert_eq!(claims["sub"], "alice");
        assert!(
            lag < Duration::from_secs(1),
            "round {round}: the approval on replica B reached the wait on replica A only after {lag:?}"
        );
        // Holding the role, alice's next request would extend this grant.
        b.json(&alice, &["release", &id]);
    }
}

/// The one-grant rule and a policy limit on live grants hold across three
/// replicas on one database when 50 callers race through all of them.
#[test]
fn replicas_keep_one_grant_per_principal_and_role_under_fifty_parallel_requests() {
    let temp = tempfile::tempdir().unwrap();
    let replicas = start_replicas(temp.path(), 3);
    let (status, tokens) = replicas[2].http("GET", "/v1/tokens", Some(&replicas[2].admin), None);
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        tokens.as_array().map(Vec::len),
        Some(1),
        "three replicas started together made one admin token: {tokens}"
    );
    let roles: String = (0..50)
        .map(|i| format!("role \"r{i}\" {{\n  target = \"jwt\"\n  max_duration = \"1h\"\n  requestable_by = [\"group:dev\"]\n  auto_approve = true\n}}\n"))
        .collect();
    let config = format!("target \"jwt\" {{\n  type = \"jwt\"\n  config = {{ audience = \"svc\" }}\n}}\n{roles}");
    replicas[0].apply(temp.path(), &config);
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
    let erin = replicas[1].token("erin", "dev");

    let same = serde_json::json!({"role": "r0", "reason": "INC-70 race"});
    let answers = post_all(&addrs, "/v1/requests", &erin, vec![same; 50]);
    let ids: HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert!(matches!(status, 200 | 201), "{status}: {body}");
            body["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one grant whichever replica answered: {ids:?}");

    let policy = "package hallpass.request\n\nimport rego.v1\n\ndeny contains \"one live grant at a time\" if input.context.active_grants >= 1\n";
    let policy_file = temp.path().join("one.rego");
    std::fs::write(&policy_file, policy).unwrap();
    let put = replicas[2].run(
        &replicas[2].admin,
        &["policy", "put", "one", "-f", &policy_file.to_string_lossy()],
    );
    assert!(put.status.success());
    let frank = replicas[0].token("frank", "dev");
    let bodies = (0..50)
        .map(|i| serde_json::json!({"role": format!("r{i}"), "reason": "INC-71 race"}))
        .collect();
    let answers = post_all(&addrs, "/v1/requests", &frank, bodies);
    let active = answers.iter().filter(|(_, body)| body["state"] == "active").count();
    let denied = answers.iter().filter(|(_, body)| body["state"] == "denied").count();
    assert_eq!((active, denied), (1, 49), "{answers:?}");
}

/// The notification outbox among replicas: every delivery is claimed by
/// one of them and sent once.
#[test]
fn each_notification_is_sent_once_among_three_replicas() {
    let receiver = notifications::Receiver::start();
    let temp = tempfile::tempdir().unwrap();
    let replicas = start_replicas(temp.path(), 3);
    let receiver = &receiver;
    replicas[0].apply(temp.path(), &notifications::notifier_block(&receiver.url()));
    let mut ids = Vec::new();
    for i in 0..24 {
        let server = &replicas[i % 3];
        let who = server.token(&format!("dev{i}"), "dev");
        ids.push(notifications::request(server, &who));
    }
    let got = notifications::wait_for(receiver, ids.len(), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    let all = receiver.received();
    assert_eq!(notifications::unique(&all).len(), ids.len(), "{got:?}");
    assert_eq!(all.len(), ids.len(), "a notification was sent twice");
    let told: HashSet<&str> = all.iter().map(notifications::request_id).collect();
    assert_eq!(told, ids.iter().map(String::as_str).collect::<HashSet<_>>());
}
