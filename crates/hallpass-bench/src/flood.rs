//! `hallpass-bench flood`: can one caller flooding the server keep `/healthz`
//! from answering, and does the server's memory come back after? Two
//! scenarios, each against its own fresh release `hallpass server --dev`:
//!
//! - `connections` (this module): half-open connections that never send a
//!   byte. With `--attach ADDR --attach-pid PID` it floods a running server
//!   instead, e.g. the `flood_target` example of hallpass-server.
//!   1. at rest: `--requests` sequential `/healthz` probes, each over a fresh
//!      connection ([`healthz`]);
//!   2. during: child processes of this benchmark (`--holders`, each within
//!      its own descriptor limit, each from its own loopback source address
//!      so the ephemeral ports suffice) open `--connections` TCP connections
//!      that never send a byte and hold them for `--hold-for`; `/healthz` is
//!      probed [`PROBE_PAUSE`] apart meanwhile. With `--reconnect` a holder
//!      opens a new connection whenever the server closes one, as an
//!      attacker keeping the count up would;
//!   3. after: the holders close everything, `--settle` passes, `--requests`
//!      probes again;
//!   4. with `--rounds N`, 2 and 3 again against the same server.
//!
//!   The server's RSS and open descriptors are read from `/proc/PID` before,
//!   when the flood is open, at the end of the hold and after, with the
//!   kernel's count of connections dropped at a full accept queue (a probe
//!   dropped there is retried by its client a second later). Holders report
//!   how many of their connections the server had closed (its connection
//!   limit evicts the oldest silent ones, its first-byte timeout the rest).
//! - `eval` ([`crate::eval_flood`]): clients flooding `POST
//!   /v1/policies/eval` with a slow policy.
//!
//! Smoke run: `hallpass-bench flood --connections 2000 --hold-for 1s
//! --requests 20 --settle 1s --eval-duration 2s`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, ChildStdout, Command};

use crate::eval_flood::{self, EvalPolicy, TokenSharing};
use crate::healthz::{self, Phase};
use crate::procfs::{self, Machine};
use crate::server::{self, Backend, Deployment};
use crate::stats::print_table;

/// Per connection a holder opens.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections each holder has in progress at once.
const CONNECT_CONCURRENCY: usize = 256;
/// A holder whose reconnect failed waits this long before trying again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Between two `/healthz` probes while the flood is held.
const PROBE_PAUSE: Duration = Duration::from_millis(10);
/// Holders bind to 127.0.0.2, .3, ...: each source address has its own
/// ephemeral ports, and 127.0.0.1 keeps its own for the measured requests.
const FIRST_HOLDER_SOURCE: u8 = 2;

/// What `flood` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Half-open connections held while `/healthz` is probed.
    Connections,
    /// Clients flooding `POST /v1/policies/eval` while `/healthz` is probed.
    Eval,
}

#[derive(Debug, clap::Args)]
pub struct FloodArgs {
    /// Scenarios to run, each against its own server.
    #[arg(long, value_delimiter = ',', default_value = "connections,eval")]
    scenarios: Vec<Scenario>,
    /// Sequential `/healthz` probes at rest and after, each over a fresh
    /// connection.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Half-open connections to hold during the flood.
    #[arg(long, default_value_t = 20_000)]
    connections: usize,
    /// Child processes that hold them, each a share: no single process's
    /// descriptor limit has to fit them all.
    #[arg(long, default_value_t = 2)]
    holders: usize,
    /// How long the connections are held while `/healthz` is probed; the
    /// default outlasts the server's 10 s first-byte timeout.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    hold_for: Duration,
    /// Open a new connection whenever the server closes a held one.
    #[arg(long)]
    reconnect: bool,
    /// Floods one after another against the same server: memory that a
    /// flood leaves behind and the next one does not reuse adds up.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Wait between releasing the flood and the "after" figures.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Clients flooding policies/eval.
    #[arg(long, default_value_t = 16)]
    eval_clients: usize,
    /// How long they flood.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    eval_duration: Duration,
    /// Policies they evaluate, one case each (times --eval-tokens).
    #[arg(long, value_delimiter = ',', default_value = "slow,over-limit")]
    eval_policies: Vec<EvalPolicy>,
    /// How they share tokens, one case each (times --eval-policies).
    #[arg(long, value_delimiter = ',', default_value = "per-client,shared")]
    eval_tokens: Vec<TokenSharing>,
    /// Work of the slow policy: its rule compares this many numbers with as
    /// many (the over-limit policy: 4 times as many on each side).
    #[arg(long, default_value_t = 320)]
    eval_work: u32,
    /// Flood this running server's connections instead of starting
    /// `hallpass server --dev` (the connections scenario only).
    #[arg(long, value_name = "HOST:PORT", requires = "attach_pid")]
    attach: Option<SocketAddr>,
    /// Process id of the --attach server, for its memory and descriptors.
    #[arg(long, value_name = "PID", requires = "attach")]
    attach_pid: Option<u32>,
    /// Internal: run as one holder child, connecting to this address.
    #[arg(long, hide = true, value_name = "HOST:PORT")]
    hold: Option<SocketAddr>,
    /// Internal: the holder's source address.
    #[arg(long, hide = true, default_value = "127.0.0.2")]
    hold_source: IpAddr,
}

/// What one holder child reports on its stdout once its connections are open.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Held {
    held: usize,
    failed: usize,
    first_error: Option<String>,
}

/// What a holder reports when told to let go.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Released {
    /// Its connections the server closed (evicted or timed out).
    closed_by_server: usize,
    /// New connections opened for closed ones (`--reconnect`).
    reconnected: usize,
    reconnect_failures: usize,
}

/// The server process at one moment.
#[derive(Debug, Serialize)]
struct Sample {
    at: String,
    rss_mib: f64,
    peak_rss_mib: f64,
    open_fds: usize,
    /// Connections the kernel dropped since the first sample because an
    /// accept queue was full (any listener on this machine, but only this
    /// one is flooded); the client retries after a second.
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_overflows: Option<u64>,
}

#[derive(Debug, Serialize)]
struct FloodReport {
    machine: Machine,
    /// 1-, 5- and 15-minute load averages when the run started and ended:
    /// the machine is shared.
    load_average_start: [f64; 3],
    load_average_end: [f64; 3],
    /// The `hallpass` binary, or the attached address.
    server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    connections: Option<ConnectionFlood>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    eval: Vec<eval_flood::Case>,
}

/// The connections scenario.
#[derive(Debug, Serialize)]
struct ConnectionFlood {
    connections_requested: usize,
    reconnect: bool,
    rounds: Vec<Round>,
    /// `/healthz` at rest, then during and after each round.
    phases: Vec<Phase>,
    /// The server before, then at three moments of each round.
    memory: Vec<Sample>,
}

/// One flood: open, hold, release.
#[derive(Debug, Serialize)]
struct Round {
    connections_held: usize,
    connect_failures: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_connect_error: Option<String>,
    flood_open_seconds: f64,
    hold_seconds: f64,
    released: Released,
}

/// The server being flooded.
struct Target {
    addr: SocketAddr,
    pid: u32,
    /// `None` when attached: not ours to stop.
    deployment: Option<Deployment>,
}

/// A holder child and the pipe it reports on.
struct Holder {
    child: Child,
    reports: BufReader<ChildStdout>,
}

pub async fn run(args: FloodArgs, hallpass: Option<&Path>, json: Option<&Path>) -> Result<()> {
    if let Some(addr) = args.hold {
        return hold(addr, args.hold_source, args.connections, args.reconnect).await;
    }
    check(&args)?;
    let load_average_start = procfs::load_average();
    let binary = match args.attach {
        Some(_) => None,
        None => Some(server::resolve_binary(hallpass)?),
    };
    let mut report = FloodReport {
        machine: Machine::detect(),
        load_average_start,
        load_average_end: load_average_start,
        server: match (&binary, args.attach) {
            (Some(binary), _) => binary.display().to_string(),
            (None, Some(addr)) => format!("attached server at {addr}"),
            (None, None) => String::new(),
        },
        connections: None,
        eval: Vec::new(),
    };
    if args.scenarios.contains(&Scenario::Connections) {
        let target = start_target(&args, binary.as_deref()).await?;
        eprintln!("connection flood: server pid {} on {}", target.pid, target.addr);
        let measured = flood_connections(&target, &args).await;
        if let Some(deployment) = target.deployment {
            deployment.stop().await?;
        }
        report.connections = Some(measured?);
    }
    if let (true, Some(binary)) = (args.scenarios.contains(&Scenario::Eval), &binary) {
        let options = eval_flood::Options {
            clients: args.eval_clients,
            duration: args.eval_duration,
            requests: args.requests,
            work: args.eval_work,
            policies: args.eval_policies.clone(),
            tokens: args.eval_tokens.clone(),
        };
        report.eval = eval_flood::run(binary, &options).await?;
    }
    report.load_average_end = procfs::load_average();
    print(&report);
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).context("cannot encode the results")?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn check(args: &FloodArgs) -> Result<()> {
    if args.holders == 0 || args.requests == 0 || args.eval_clients == 0 || args.rounds == 0 {
        bail!("--holders, --requests, --eval-clients and --rounds must be at least 1");
    }
    if args.holders > usize::from(u8::MAX - FIRST_HOLDER_SOURCE) {
        bail!("--holders must be at most {}", u8::MAX - FIRST_HOLDER_SOURCE);
    }
    if args.attach.is_some() && args.scenarios != [Scenario::Connections] {
        bail!(
            "--attach floods connections only: add --scenarios connections (the eval scenario starts its own server)"
        );
    }
    Ok(())
}

async fn start_target(args: &FloodArgs, binary: Option<&Path>) -> Result<Target> {
    if let (Some(addr), Some(pid)) = (args.attach, args.attach_pid) {
        return Ok(Target {
            addr,
            pid,
            deployment: None,
        });
    }
    let binary = binary.context("no hallpass binary to start")?;
    let deployment = Deployment::start(binary, &Backend::Sqlite).await?;
    let addr = eval_flood::socket_addr(deployment.admin(0)?.base_url())?;
    Ok(Target {
        addr,
        pid: deployment.pids()[0],
        deployment: Some(deployment),
    })
}

async fn flood_connections(target: &Target, args: &FloodArgs) -> Result<ConnectionFlood> {
    let overflows = procfs::listen_overflows();
    let mut flood = ConnectionFlood {
        connections_requested: args.connections,
        reconnect: args.reconnect,
        rounds: Vec::with_capacity(args.rounds),
        phases: vec![healthz::phase("at rest", target.addr, args.requests).await],
        memory: vec![sample(target.pid, "before".into(), overflows)?],
    };
    for round in 1..=args.rounds {
        // "during flood", or "during flood #2" when there are several.
        let name = |what: &str| match args.rounds {
            1 => what.to_string(),
            _ => format!("{what} #{round}"),
        };
        let take_sample = |at: &str| sample(target.pid, name(at), overflows);
        let started = Instant::now();
        let (holders, held) = start_holders(target.addr, args).await?;
        let flood_open_seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "  holding {} connections ({} failed) after {flood_open_seconds:.1}s",
            held.held, held.failed
        );
        flood.memory.push(take_sample("flood open")?);
        let holding = Instant::now();
        let until = tokio::time::sleep(args.hold_for);
        let during = healthz::phase_until(&name("during flood"), target.addr, PROBE_PAUSE, until).await;
        flood.phases.push(during);
        let hold_seconds = holding.elapsed().as_secs_f64();
        flood.memory.push(take_sample("end of hold")?);
        let released = release(holders).await;
        tokio::time::sleep(args.settle).await;
        flood.memory.push(take_sample("after flood")?);
        let after = healthz::phase(&name("after flood"), target.addr, args.requests).await;
        flood.phases.push(after);
        flood.rounds.push(Round {
            connections_held: held.held,
            connect_failures: held.failed,
            first_connect_error: held.first_error,
            flood_open_seconds,
            hold_seconds,
            released,
        });
    }
    Ok(flood)
}

/// `overflows_before`: [`procfs::listen_overflows`] at the first sample.
fn sample(pid: u32, at: String, overflows_before: Option<u64>) -> Result<Sample> {
    let memory = procfs::memory(pid)?;
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("cannot list /proc/{pid}/fd"))?
        .count();
    Ok(Sample {
        at,
        rss_mib: procfs::mib(memory.rss_bytes),
        peak_rss_mib: procfs::mib(memory.peak_rss_bytes),
        open_fds,
        listen_overflows: procfs::listen_overflows()
            .zip(overflows_before)
            .map(|(now, before)| now.saturating_sub(before)),
    })
}

/// Spawns the holders and waits until each has opened its share.
async fn start_holders(addr: SocketAddr, args: &FloodArgs) -> Result<(Vec<Holder>, Held)> {
    let exe = std::env::current_exe().context("cannot find this benchmark's executable")?;
    let mut holders = Vec::with_capacity(args.holders);
    for index in 0..args.holders {
        let share = args.connections / args.holders + usize::from(index < args.connections % args.holders);
        let source = Ipv4Addr::new(127, 0, 0, FIRST_HOLDER_SOURCE + index as u8);
        let mut command = Command::new(&exe);
        command
            .args([
                "flood",
                "--hold",
                &addr.to_string(),
                "--hold-source",
                &source.to_string(),
            ])
            .args(["--connections", &share.to_string()])
            .args(args.reconnect.then_some("--reconnect"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: runs in the forked child before exec; one async-signal-safe call.
        unsafe {
            command.pre_exec(|| {
                // A holder must not outlive the benchmark, even a killed one.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().context("cannot start a holder process")?;
        let stdout = child.stdout.take().context("holder has no stdout")?;
        holders.push(Holder {
            child,
            reports: BufReader::new(stdout),
        });
    }
    let mut total = Held::default();
    for holder in &mut holders {
        let held: Held = read_report(&mut holder.reports).await?;
        total.held += held.held;
        total.failed += held.failed;
        total.first_error = total.first_error.or(held.first_error);
    }
    Ok((holders, total))
}

async fn read_report<T: serde::de::DeserializeOwned>(reports: &mut BufReader<ChildStdout>) -> Result<T> {
    let mut line = String::new();
    reports
        .read_line(&mut line)
        .await
        .context("cannot read a holder's report")?;
    serde_json::from_str(&line).with_context(|| format!("holder reported {line:?}"))
}

/// Closing a holder's stdin tells it to report, close its connections and
/// exit. A holder that does not report counts nothing.
async fn release(holders: Vec<Holder>) -> Released {
    let mut total = Released::default();
    for Holder { mut child, mut reports } in holders {
        drop(child.stdin.take());
        let report = tokio::time::timeout(Duration::from_secs(10), read_report::<Released>(&mut reports)).await;
        if let Ok(Ok(released)) = report {
            total.closed_by_server += released.closed_by_server;
            total.reconnected += released.reconnected;
            total.reconnect_failures += released.reconnect_failures;
        }
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
    total
}

/// What a holder's connection watchers count.
#[derive(Default)]
struct Counters {
    closed_by_server: AtomicUsize,
    reconnected: AtomicUsize,
    reconnect_failures: AtomicUsize,
}

/// The holder child: opens `connections` silent connections from `source`,
/// reports, holds them (and with `reconnect` replaces those the server
/// closes) until its stdin closes, then reports what the server closed.
async fn hold(addr: SocketAddr, source: IpAddr, connections: usize, reconnect: bool) -> Result<()> {
    raise_fd_limit();
    let results: Vec<Result<TcpStream>> = futures::stream::iter(0..connections)
        .map(|_| connect_from(source, addr))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let mut held = Vec::with_capacity(connections);
    let mut report = Held::default();
    for result in results {
        match result {
            Ok(stream) => held.push(stream),
            Err(error) => {
                report.failed += 1;
                report.first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    report.held = held.len();
    println!("{}", serde_json::to_string(&report)?);
    let counters = Arc::new(Counters::default());
    let mut watchers = tokio::task::JoinSet::new();
    for stream in held {
        watchers.spawn(watch(stream, source, addr, reconnect, counters.clone()));
    }
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink()))
        .await
        .context("the stdin reader panicked")?
        .context("cannot read stdin")?;
    let released = Released {
        closed_by_server: counters.closed_by_server.load(Ordering::Relaxed),
        reconnected: counters.reconnected.load(Ordering::Relaxed),
        reconnect_failures: counters.reconnect_failures.load(Ordering::Relaxed),
    };
    println!("{}", serde_json::to_string(&released)?);
    // Dropping the watchers closes every connection.
    watchers.abort_all();
    Ok(())
}

/// Holds one connection; counts it when the server closes it (the server
/// never sends a silent connection anything, so any read result means it
/// ended) and, with `reconnect`, opens a new one in its place.
async fn watch(mut stream: TcpStream, source: IpAddr, addr: SocketAddr, reconnect: bool, counters: Arc<Counters>) {
    loop {
        let mut byte = [0u8; 1];
        let _ = stream.read(&mut byte).await;
        counters.closed_by_server.fetch_add(1, Ordering::Relaxed);
        if !reconnect {
            return;
        }
        stream = loop {
            match connect_from(source, addr).await {
                Ok(stream) => break stream,
                Err(_) => {
                    counters.reconnect_failures.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        };
        counters.reconnected.fetch_add(1, Ordering::Relaxed);
    }
}

async fn connect_from(source: IpAddr, addr: SocketAddr) -> Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .context("cannot create a socket")?;
    socket
        .bind(SocketAddr::new(source, 0))
        .with_context(|| format!("cannot bind to {source}"))?;
    tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr))
        .await
        .with_context(|| format!("connect timed out after {}s", CONNECT_TIMEOUT.as_secs()))?
        .context("cannot connect")
}

/// Soft `RLIMIT_NOFILE` up to the hard limit: a holder needs one descriptor
/// per connection.
pub(crate) fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn print(report: &FloodReport) {
    let [one, five, fifteen] = report.load_average_start;
    let [end_one, ..] = report.load_average_end;
    println!(
        "\nflood — {} CPU(s) {}; {}; load average {one:.2} {five:.2} {fifteen:.2} at the start, {end_one:.2} at the end",
        report.machine.cpus, report.machine.cpu_model, report.server
    );
    if let Some(flood) = &report.connections {
        print_connections(flood);
    }
    eval_flood::print(&report.eval);
}

fn print_connections(flood: &ConnectionFlood) {
    println!(
        "\n/healthz under a flood of {} half-open connections{}",
        flood.connections_requested,
        if flood.reconnect {
            ", each replaced when the server closes it"
        } else {
            ""
        }
    );
    for (index, round) in flood.rounds.iter().enumerate() {
        let released = &round.released;
        println!(
            "round {}: {} held by the holders ({} failed{}), opened in {:.1}s, held {:.1}s; \
             the server closed {} of them meanwhile; {} reconnects ({} failed)",
            index + 1,
            round.connections_held,
            round.connect_failures,
            round
                .first_connect_error
                .as_deref()
                .map(|error| format!(", first: {error}"))
                .unwrap_or_default(),
            round.flood_open_seconds,
            round.hold_seconds,
            released.closed_by_server,
            released.reconnected,
            released.reconnect_failures
        );
    }
    let rows: Vec<Vec<String>> = flood.phases.iter().map(Phase::row).collect();
    print_table(&Phase::HEADER, &rows);
    let rows: Vec<Vec<String>> = flood
        .memory
        .iter()
        .map(|s| {
            vec![
                s.at.clone(),
                format!("{:.1}", s.rss_mib),
                format!("{:.1}", s.peak_rss_mib),
                s.open_fds.to_string(),
                s.listen_overflows.map_or_else(|| "?".into(), |n| n.to_string()),
            ]
        })
        .collect();
    println!();
    print_table(
        &["server", "RSS MiB", "peak MiB", "open fds", "accept queue overflows"],
        &rows,
    );
}
