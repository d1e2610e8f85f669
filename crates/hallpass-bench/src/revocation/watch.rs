//! Watching the grants' access end, from each `expires_at` on: new logins
//! and open sessions probed with the Rust and the command-line clients,
//! and the server's own list of accounts polled, all at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::Mutex as AsyncMutex;

use super::cli::{self, CliSession};
use super::issue::Issued;
use super::probe::{self, Outcome, Plan, ProbeFn, ProbeReport, Spread, Track};
use super::service::{Check, Service, Session, Watcher, try_login};
use super::{AccountsGone, Kind, Login, Options, SshReport, pg};
use crate::expiry::sleep_until_wall;
use crate::procfs::CpuReport;
use crate::server::Deployment;

/// Probing: the earliest-expiring grants still live (the next Hallpass
/// revokes, as it works in expiry order) are probed every `NEAR` at most,
/// the rest every `FAR`; all at most `--probe-rate` logins a second (and
/// four times as many session checks, which cost far less). With 1,000
/// grants due within seconds, probing all of them often would take the CPU
/// the revocations being measured need (two cores here). Each result says
/// how precise it is (its bracket). A PostgreSQL session needs no polling
/// to be precise: its connection task sees the server end it, and that
/// moment is what counts.
const FRONTIER: usize = 16;
const NEAR: Duration = Duration::from_millis(20);
const FAR: Duration = Duration::from_millis(500);
/// Session checks per login probe allowed by the rate.
const SESSION_RATE_FACTOR: f64 = 4.0;
/// The command-line clients' few grants, each probed this often.
const CLI_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// How often the server's list of accounts is read.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// ssh logins probed at once, and how often each grant.
const SSH_PROBE_WORKERS: usize = 2;
const SSH_PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// ssh logins are probed from this long before `expires_at`: a
/// certificate's `valid_before` is the expiry cut to whole seconds.
const SSH_EARLY: chrono::TimeDelta = chrono::TimeDelta::milliseconds(1500);
/// Open ssh sessions are looked at this long after the last expiry.
const SSH_SESSION_GRACE: Duration = Duration::from_secs(5);
/// Concurrent checks that every session answers before the window.
const CHECK_CONCURRENCY: usize = 32;

/// What watching the grants found.
pub struct Ends {
    /// The grants watched.
    pub ids: Vec<String>,
    pub sessions_opened: usize,
    /// Of those, answering just before the window.
    pub sessions_live_before: usize,
    pub cli_sessions_opened: usize,
    pub passwords_checked: Option<bool>,
    pub probes: Probes,
    pub accounts_gone: Option<AccountsGone>,
    /// From the first expiry until every probe was done.
    pub cpu: CpuReport,
    pub ssh: Option<SshReport>,
}

/// What the probes found, by client, as [`super::TypeReport`] has it.
pub struct Probes {
    pub login_refused: ProbeReport,
    pub login_refused_cli: Option<ProbeReport>,
    pub login_refused_cli_grants: Option<ProbeReport>,
    pub session_ended: Option<ProbeReport>,
    pub session_ended_cli: Option<ProbeReport>,
    pub session_ended_cli_grants: Option<ProbeReport>,
}

/// Checks the grants' sessions, then probes from each expiry until every
/// grant's access is gone or given up on; closes the sessions after.
pub async fn until_gone(
    deployment: &Deployment,
    service: &Service,
    grants: Vec<Issued>,
    planned_start: DateTime<Utc>,
    options: &Options,
) -> Result<Ends> {
    let kind = service.kind();
    let watched = Watched::split(grants, options.timeout);
    let sessions_opened = watched.session_of.len();
    // Every session must answer before the window, or (b) means nothing.
    let sessions_live_before = count_live(kind, &watched.sessions).await;
    let first = watched.expires.iter().copied().min().unwrap_or(planned_start);
    let last = watched.expires.iter().copied().max().unwrap_or(planned_start);
    if Utc::now() >= first {
        eprintln!("WARNING: the first grants expired before every session was checked; see outside_window");
    }
    let passwords_checked = passwords_checked(kind, &watched.logins).await;
    let mut watcher = service.watcher().await?;
    eprintln!(
        "revocation ({kind}): {sessions_opened} sessions open ({sessions_live_before} answering); probing from {}",
        first.format("%H:%M:%S")
    );
    sleep_until_wall(first - chrono::Duration::seconds(2)).await;
    let cpu_before = deployment.cpu_snapshot()?;
    let (tracks, gone) = probe_all(kind, &watched, watcher.as_mut(), (first, last), options).await;
    let cpu = CpuReport::between(&cpu_before, &deployment.cpu_snapshot()?);
    let probes = watched.reports(kind, &tracks);
    let accounts_gone = gone.map(|gone| accounts_gone(gone, &watched.expires));
    // ssh: are the open sessions still there after expiry?
    let ssh = if kind == Kind::Ssh {
        Some(ssh_sessions_after_expiry(&watched.sessions, last).await)
    } else {
        None
    };
    let cli_sessions_opened = watched.cli_of.len();
    let Watched {
        ids,
        sessions,
        cli_sessions,
        ..
    } = watched;
    close_all(sessions, cli_sessions).await;
    Ok(Ends {
        ids,
        sessions_opened,
        sessions_live_before,
        cli_sessions_opened,
        passwords_checked,
        probes,
        accounts_gone,
        cpu,
        ssh,
    })
}

/// The grants split into what the probes share (logins, and sessions
/// behind locks) and what the reports need. A probe's items are grant
/// indices.
struct Watched {
    ids: Vec<String>,
    expires: Vec<DateTime<Utc>>,
    /// When each grant is given up on.
    give_up: Vec<DateTime<Utc>>,
    logins: Arc<Vec<Login>>,
    /// The grant of each open session.
    session_of: Vec<usize>,
    sessions: Arc<Vec<AsyncMutex<Session>>>,
    /// The grant of each command-line session.
    cli_of: Vec<usize>,
    cli_sessions: Arc<Vec<AsyncMutex<CliSession>>>,
}

impl Watched {
    /// Splits the grants; each is given up on `timeout` after its expiry.
    fn split(grants: Vec<Issued>, timeout: Duration) -> Watched {
        let mut ids = Vec::new();
        let mut expires = Vec::new();
        let mut logins = Vec::new();
        let mut session_of = Vec::new();
        let mut sessions = Vec::new();
        let mut cli_of = Vec::new();
        let mut cli_sessions = Vec::new();
        for (i, grant) in grants.into_iter().enumerate() {
            ids.push(grant.id);
            expires.push(grant.expires_at);
            logins.push(grant.login);
            if let Some(session) = grant.session {
                session_of.push(i);
                sessions.push(AsyncMutex::new(session));
            }
            if let Some(cli) = grant.cli {
                cli_of.push(i);
                cli_sessions.push(AsyncMutex::new(cli));
            }
        }
        let timeout = chrono::Duration::from_std(timeout).unwrap_or_default();
        Watched {
            ids,
            give_up: expires.iter().map(|at| *at + timeout).collect(),
            expires,
            logins: Arc::new(logins),
            session_of,
            sessions: Arc::new(sessions),
            cli_of,
            cli_sessions: Arc::new(cli_sessions),
        }
    }

    /// When each of `items` expires.
    fn expiring(&self, items: &[usize]) -> Vec<DateTime<Utc>> {
        items.iter().map(|&i| self.expires[i]).collect()
    }

    /// When each of `items` is given up on.
    fn giving_up(&self, items: &[usize]) -> Vec<DateTime<Utc>> {
        items.iter().map(|&i| self.give_up[i]).collect()
    }

    /// The grants whose new logins are probed: all of them, but on ssh only
    /// those with a session.
    fn login_items(&self, kind: Kind) -> Vec<usize> {
        if kind == Kind::Ssh {
            self.session_of.clone()
        } else {
            (0..self.logins.len()).collect()
        }
    }

    /// New logins, from each expiry on (ssh: from a little before, as a
    /// certificate ends at its expiry cut to whole seconds).
    fn login_plan(&self, kind: Kind, items: &[usize], options: &Options) -> Plan {
        let ssh = kind == Kind::Ssh;
        Plan {
            start: items
                .iter()
                .map(|&i| {
                    if ssh {
                        self.expires[i] - SSH_EARLY
                    } else {
                        self.expires[i]
                    }
                })
                .collect(),
            give_up: self.giving_up(items),
            // An ssh login is a process and a key exchange: a few at a time,
            // or they slow each other down to seconds.
            workers: if ssh {
                options.probe_workers.min(SSH_PROBE_WORKERS)
            } else {
                options.probe_workers
            },
            frontier: FRONTIER,
            near: if ssh { SSH_PROBE_INTERVAL } else { NEAR },
            far: FAR,
            rate: options.probe_rate,
        }
    }

    /// The open sessions of the Rust client, from each expiry on.
    fn session_plan(&self, options: &Options) -> Plan {
        Plan {
            start: self.expiring(&self.session_of),
            give_up: self.giving_up(&self.session_of),
            workers: options.probe_workers,
            frontier: FRONTIER,
            near: NEAR,
            far: FAR,
            rate: options.probe_rate * SESSION_RATE_FACTOR,
        }
    }

    /// The command-line client's few grants, each probed often.
    fn cli_plan(&self) -> Plan {
        Plan {
            start: self.expiring(&self.cli_of),
            give_up: self.giving_up(&self.cli_of),
            workers: self.cli_of.len().max(1),
            frontier: self.cli_of.len(),
            near: CLI_PROBE_INTERVAL,
            far: CLI_PROBE_INTERVAL,
            rate: 0.0,
        }
    }

    /// What the probes found, per client; the command-line client's next
    /// to the Rust client's on the same grants.
    fn reports(&self, kind: Kind, tracks: &Tracks) -> Probes {
        let login_refused = ProbeReport::of(
            kind.client(),
            &tracks.login,
            &self.expiring(&tracks.login_items),
            &tracks.login_starts,
        );
        let session_ended = (kind != Kind::Ssh).then(|| self.report(kind.client(), &tracks.session, &self.session_of));
        let mut probes = Probes {
            login_refused,
            login_refused_cli: None,
            login_refused_cli_grants: None,
            session_ended,
            session_ended_cli: None,
            session_ended_cli_grants: None,
        };
        if !self.cli_of.is_empty() && kind != Kind::Ssh {
            probes.login_refused_cli = Some(self.report(kind.cli(), &tracks.cli_login, &self.cli_of));
            probes.session_ended_cli = Some(self.report(kind.cli(), &tracks.cli_session, &self.cli_of));
            // Every grant has a login probe and a session here, in grant order.
            let same = |tracks: &[Track]| -> Vec<Track> {
                self.cli_of.iter().filter_map(|&i| tracks.get(i).cloned()).collect()
            };
            let label = format!("{}, the same {}", kind.client(), self.cli_of.len());
            probes.login_refused_cli_grants = Some(self.report(&label, &same(&tracks.login), &self.cli_of));
            probes.session_ended_cli_grants = Some(self.report(&label, &same(&tracks.session), &self.cli_of));
        }
        probes
    }

    /// The report of `tracks`, the probes of `items` from their expiry on.
    fn report(&self, client: &str, tracks: &[Track], items: &[usize]) -> ProbeReport {
        let expiring = self.expiring(items);
        ProbeReport::of(client, tracks, &expiring, &expiring)
    }
}

/// How many of the open sessions answer: ssh's one after another, the
/// others `CHECK_CONCURRENCY` at once.
async fn count_live(kind: Kind, sessions: &[AsyncMutex<Session>]) -> usize {
    if kind == Kind::Ssh {
        return count_live_in_turn(sessions).await;
    }
    futures::stream::iter(sessions.iter())
        .map(|session| async move { matches!(session.lock().await.check().await, Outcome::Live) })
        .buffer_unordered(CHECK_CONCURRENCY)
        .filter(|live| std::future::ready(*live))
        .count()
        .await
}

/// How many of the sessions answer, checked one after another.
async fn count_live_in_turn(sessions: &[AsyncMutex<Session>]) -> usize {
    let mut live = 0;
    for session in sessions {
        if matches!(session.lock().await.check().await, Outcome::Live) {
            live += 1;
        }
    }
    live
}

/// postgres: whether the server checks the logins' passwords (not `trust`),
/// told when it does not; `None` on the other types.
async fn passwords_checked(kind: Kind, logins: &[Login]) -> Option<bool> {
    let checked = match (kind, logins.first()) {
        (Kind::Postgres, Some(login)) => Some(pg::Pg::checks_passwords(login).await),
        _ => None,
    };
    if checked == Some(false) {
        eprintln!(
            "  note: this PostgreSQL lets the logins in without checking passwords (trust): VALID UNTIL does not \
             apply, only Hallpass's revoke refuses them"
        );
    }
    checked
}

/// The tracks of each probe, in the order of its items.
struct Tracks {
    /// The grants whose new logins were probed, and from when.
    login_items: Vec<usize>,
    login_starts: Vec<DateTime<Utc>>,
    login: Vec<Track>,
    session: Vec<Track>,
    cli_login: Vec<Track>,
    cli_session: Vec<Track>,
}

/// When each account was first seen gone, and how many polls failed.
type Gone = (Vec<Option<DateTime<Utc>>>, usize);

/// Runs every probe at once from `first` (the first expiry), with the
/// watcher of the server's accounts polling until the last expiry's
/// timeout; what each found.
async fn probe_all(
    kind: Kind,
    watched: &Watched,
    watcher: Option<&mut Watcher>,
    (first, last): (DateTime<Utc>, DateTime<Utc>),
    options: &Options,
) -> (Tracks, Option<Gone>) {
    let login_items = watched.login_items(kind);
    let login_plan = watched.login_plan(kind, &login_items, options);
    let login_starts = login_plan.start.clone();
    let names: Vec<String> = watched.logins.iter().map(|l| l.user.clone()).collect();
    let until = last + chrono::Duration::from_std(options.timeout).unwrap_or_default();
    let watch = async {
        match watcher {
            Some(watcher) => Some(watch_accounts(watcher, &names, first, until).await),
            None => None,
        }
    };
    let probing_sessions = kind != Kind::Ssh;
    let (login, session, cli_login, cli_session, gone) = tokio::join!(
        probe::run(
            login_plan,
            login_probe(kind, LoginClient::Rust, &watched.logins, &login_items)
        ),
        async {
            if probing_sessions {
                probe::run(watched.session_plan(options), session_probe(&watched.sessions)).await
            } else {
                Vec::new()
            }
        },
        probe::run(
            watched.cli_plan(),
            login_probe(kind, LoginClient::Cli, &watched.logins, &watched.cli_of)
        ),
        probe::run(watched.cli_plan(), session_probe(&watched.cli_sessions)),
        watch,
    );
    let tracks = Tracks {
        login_items,
        login_starts,
        login,
        session,
        cli_login,
        cli_session,
    };
    (tracks, gone)
}

/// Which client a login probe logs in with.
#[derive(Clone, Copy)]
enum LoginClient {
    /// The type's Rust protocol client (ssh: `ssh`).
    Rust,
    /// The command-line client.
    Cli,
}

/// Probes item `j` with a new login on the credential of grant `items[j]`.
fn login_probe(kind: Kind, client: LoginClient, logins: &Arc<Vec<Login>>, items: &[usize]) -> ProbeFn {
    let (logins, items) = (logins.clone(), Arc::new(items.to_vec()));
    Arc::new(move |j| {
        let (logins, items) = (logins.clone(), items.clone());
        Box::pin(async move {
            let login = &logins[items[j]];
            match client {
                LoginClient::Rust => try_login(kind, login).await,
                LoginClient::Cli => cli::try_login(kind, login).await,
            }
        })
    })
}

/// Probes item `j` by checking open session `j`.
fn session_probe<S: Check>(sessions: &Arc<Vec<AsyncMutex<S>>>) -> ProbeFn {
    let sessions = sessions.clone();
    Arc::new(move |j| {
        let sessions = sessions.clone();
        Box::pin(async move { sessions[j].lock().await.check().await })
    })
}

/// What the watcher saw, against the grants' `expires_at`.
fn accounts_gone((gone, poll_errors): Gone, expires: &[DateTime<Utc>]) -> AccountsGone {
    AccountsGone {
        watched: gone.len(),
        gone: gone.iter().flatten().count(),
        latency: Spread::of(
            gone.iter()
                .zip(expires)
                .filter_map(|(gone, at)| gone.map(|g| probe::ms_between(*at, g)))
                .collect(),
        ),
        poll_errors,
    }
}

/// ssh: how many open sessions are still alive a while after the last
/// expiry (OpenSSH checks certificates at login only).
async fn ssh_sessions_after_expiry(sessions: &[AsyncMutex<Session>], last: DateTime<Utc>) -> SshReport {
    let look_at = last + chrono::Duration::from_std(SSH_SESSION_GRACE).unwrap_or_default();
    sleep_until_wall(look_at).await;
    let looked_after_seconds = probe::ms_between(last, Utc::now()) / 1000.0;
    SshReport {
        sessions_opened: sessions.len(),
        sessions_alive_after_expiry: count_live_in_turn(sessions).await,
        looked_after_seconds,
        krl: None,
    }
}

/// Polls the server's accounts from `start` until none of `names` is left
/// or `give_up`; when each was first seen gone, and how many polls failed.
async fn watch_accounts(watcher: &mut Watcher, names: &[String], start: DateTime<Utc>, give_up: DateTime<Utc>) -> Gone {
    let mut gone: Vec<Option<DateTime<Utc>>> = vec![None; names.len()];
    let mut errors = 0;
    sleep_until_wall(start - chrono::Duration::seconds(1)).await;
    loop {
        let pending: Vec<String> = names
            .iter()
            .zip(&gone)
            .filter(|(_, gone)| gone.is_none())
            .map(|(name, _)| name.clone())
            .collect();
        if pending.is_empty() || Utc::now() > give_up {
            return (gone, errors);
        }
        match watcher.present(&pending).await {
            Ok(present) => {
                let now = Utc::now();
                for (name, gone) in names.iter().zip(gone.iter_mut()) {
                    if gone.is_none() && !present.contains(name) {
                        *gone = Some(now);
                    }
                }
            }
            Err(_) => errors += 1,
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}

/// Closes every session; a list some probe still shares is left to its
/// drop.
async fn close_all(sessions: Arc<Vec<AsyncMutex<Session>>>, cli_sessions: Arc<Vec<AsyncMutex<CliSession>>>) {
    if let Ok(sessions) = Arc::try_unwrap(sessions) {
        futures::stream::iter(sessions)
            .for_each_concurrent(CHECK_CONCURRENCY, |session| session.into_inner().close())
            .await;
    }
    if let Ok(cli_sessions) = Arc::try_unwrap(cli_sessions) {
        for session in cli_sessions {
            session.into_inner().close().await;
        }
    }
}
