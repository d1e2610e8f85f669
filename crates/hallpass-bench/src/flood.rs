//! `hallpass-bench flood`: does a flood of half-open connections keep
//! `/healthz` from answering, and does the server's memory come back after?
//!
//! Starts a release `hallpass server --dev` (or attaches to a running server
//! with `--attach ADDR --attach-pid PID`, e.g. the `flood_target` example of
//! hallpass-server, which serves on the hardened listener), then:
//!
//! 1. at rest: N sequential `/healthz` requests, each over a fresh connection;
//! 2. during: child processes of this benchmark (`--holders`, each within its
//!    own descriptor limit, each from its own loopback source address so the
//!    ephemeral ports suffice) open `--connections` TCP connections that never
//!    send a byte and hold them; the same N requests run meanwhile;
//! 3. after: the holders close everything, `--settle` passes, N requests again.
//!
//! The server's RSS and open descriptors are read from `/proc/PID` before,
//! during and after. A request counts as failed when it is not answered 200
//! within [`REQUEST_TIMEOUT`].
//!
//! Smoke run: `hallpass-bench flood --connections 2000 --requests 20 --settle 1s`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};

use crate::procfs::{self, Machine};
use crate::server::{self, Backend, Deployment};
use crate::stats::{self, Latencies, Summary, print_table};

/// A `/healthz` request slower than this counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Per connection a holder opens.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections each holder has in progress at once.
const CONNECT_CONCURRENCY: usize = 256;
/// Holders bind to 127.0.0.2, .3, ...: each source address has its own
/// ephemeral ports, and 127.0.0.1 keeps its own for the measured requests.
const FIRST_HOLDER_SOURCE: u8 = 2;

#[derive(Debug, clap::Args)]
pub struct FloodArgs {
    /// Half-open connections to hold during the flood.
    #[arg(long, default_value_t = 20_000)]
    connections: usize,
    /// Child processes that hold them, each a share: no single process's
    /// descriptor limit has to fit them all.
    #[arg(long, default_value_t = 2)]
    holders: usize,
    /// Sequential `/healthz` requests per phase, each over a fresh connection.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Wait between releasing the flood and the "after" figures.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Flood this running server instead of starting `hallpass server --dev`.
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
#[derive(Debug, Serialize, Deserialize)]
struct Held {
    held: usize,
    failed: usize,
    first_error: Option<String>,
}

/// `/healthz` in one phase.
#[derive(Debug, Serialize)]
struct Phase {
    name: &'static str,
    /// Of the requests answered 200 in time.
    latency: Summary,
    failed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
}

/// The server process at one moment.
#[derive(Debug, Serialize)]
struct Sample {
    at: &'static str,
    rss_mib: f64,
    peak_rss_mib: f64,
    open_fds: usize,
}

#[derive(Debug, Serialize)]
struct FloodReport {
    machine: Machine,
    /// The `hallpass` binary, or the attached address.
    server: String,
    connections_requested: usize,
    connections_held: usize,
    connect_failures: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_connect_error: Option<String>,
    flood_open_seconds: f64,
    phases: Vec<Phase>,
    memory: Vec<Sample>,
    // The "policies/eval flood" scenario (policy evaluation under a flood of
    // requests) goes here as its own field when it is added.
}

/// The server being flooded.
struct Target {
    addr: SocketAddr,
    pid: u32,
    label: String,
    /// `None` when attached: not ours to stop.
    deployment: Option<Deployment>,
}

pub async fn run(args: FloodArgs, hallpass: Option<&Path>, json: Option<&Path>) -> Result<()> {
    if let Some(addr) = args.hold {
        return hold(addr, args.hold_source, args.connections).await;
    }
    if args.holders == 0 || args.requests == 0 {
        bail!("--holders and --requests must be at least 1");
    }
    if args.holders > usize::from(u8::MAX - FIRST_HOLDER_SOURCE) {
        bail!("--holders must be at most {}", u8::MAX - FIRST_HOLDER_SOURCE);
    }
    let target = start_target(&args, hallpass).await?;
    eprintln!("flood: {} (pid {}) on {}", target.label, target.pid, target.addr);
    let measured = measure(&target, &args).await;
    if let Some(deployment) = target.deployment {
        deployment.stop().await?;
    }
    let report = measured?;
    print(&report);
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).context("cannot encode the results")?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

async fn start_target(args: &FloodArgs, hallpass: Option<&Path>) -> Result<Target> {
    if let (Some(addr), Some(pid)) = (args.attach, args.attach_pid) {
        return Ok(Target {
            addr,
            pid,
            label: format!("attached server at {addr}"),
            deployment: None,
        });
    }
    let binary = server::resolve_binary(hallpass)?;
    let deployment = Deployment::start(&binary, &Backend::Sqlite).await?;
    let url = deployment.admin(0)?.base_url().to_string();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("the server's URL {url} is not http://HOST:PORT"))?;
    let pid = child_pid_named("hallpass")?;
    Ok(Target {
        addr,
        pid,
        label: binary.display().to_string(),
        deployment: Some(deployment),
    })
}

/// The one child process of this benchmark with that command name.
fn child_pid_named(name: &str) -> Result<u32> {
    let mut found = Vec::new();
    let tasks = std::fs::read_dir("/proc/self/task").context("cannot list /proc/self/task")?;
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|pid| pid.parse::<u32>().ok()) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == name {
                found.push(pid);
            }
        }
    }
    match found.as_slice() {
        [pid] => Ok(*pid),
        _ => bail!("expected one child process named {name}, found {found:?}"),
    }
}

async fn measure(target: &Target, args: &FloodArgs) -> Result<FloodReport> {
    let mut memory = vec![sample(target.pid, "before")?];
    let mut phases = vec![healthz_phase("at rest", target.addr, args.requests).await];
    let started = Instant::now();
    let (holders, held) = start_holders(target.addr, args).await?;
    let flood_open_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "  holding {} connections ({} failed) after {flood_open_seconds:.1}s",
        held.held, held.failed
    );
    memory.push(sample(target.pid, "flood open")?);
    phases.push(healthz_phase("during flood", target.addr, args.requests).await);
    memory.push(sample(target.pid, "during flood")?);
    release(holders).await;
    tokio::time::sleep(args.settle).await;
    memory.push(sample(target.pid, "after flood")?);
    phases.push(healthz_phase("after flood", target.addr, args.requests).await);
    Ok(FloodReport {
        machine: Machine::detect(),
        server: target.label.clone(),
        connections_requested: args.connections,
        connections_held: held.held,
        connect_failures: held.failed,
        first_connect_error: held.first_error,
        flood_open_seconds,
        phases,
        memory,
    })
}

fn sample(pid: u32, at: &'static str) -> Result<Sample> {
    let memory = procfs::memory(pid)?;
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("cannot list /proc/{pid}/fd"))?
        .count();
    Ok(Sample {
        at,
        rss_mib: procfs::mib(memory.rss_bytes),
        peak_rss_mib: procfs::mib(memory.peak_rss_bytes),
        open_fds,
    })
}

async fn healthz_phase(name: &'static str, addr: SocketAddr, requests: usize) -> Phase {
    let mut latencies = match Latencies::new() {
        Ok(latencies) => latencies,
        Err(error) => {
            return Phase {
                name,
                latency: Summary::default(),
                failed: requests,
                first_error: Some(format!("{error:#}")),
            };
        }
    };
    let (mut failed, mut first_error) = (0, None);
    for _ in 0..requests {
        match healthz(addr).await {
            Ok(latency) => latencies.record(latency),
            Err(error) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    Phase {
        name,
        latency: latencies.summary(),
        failed,
        first_error,
    }
}

/// One `/healthz` over a fresh connection: connect to last response byte.
async fn healthz(addr: SocketAddr) -> Result<Duration> {
    let started = Instant::now();
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.context("cannot connect")?;
        stream.set_nodelay(true)?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: hallpass-bench\r\nConnection: close\r\n\r\n")
            .await
            .context("cannot send the request")?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .context("cannot read the response")?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))??;
    if !response.starts_with(b"HTTP/1.1 200") {
        let status = String::from_utf8_lossy(&response);
        bail!("answered {:?}", status.lines().next().unwrap_or(""));
    }
    Ok(started.elapsed())
}

/// Spawns the holders and waits until each has opened its share.
async fn start_holders(addr: SocketAddr, args: &FloodArgs) -> Result<(Vec<Child>, Held)> {
    let exe = std::env::current_exe().context("cannot find this benchmark's executable")?;
    let mut children = Vec::with_capacity(args.holders);
    let mut total = Held {
        held: 0,
        failed: 0,
        first_error: None,
    };
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
        children.push(command.spawn().context("cannot start a holder process")?);
    }
    for child in &mut children {
        let stdout = child.stdout.take().context("holder has no stdout")?;
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .context("cannot read a holder's report")?;
        let held: Held = serde_json::from_str(&line).with_context(|| format!("holder reported {line:?}"))?;
        total.held += held.held;
        total.failed += held.failed;
        total.first_error = total.first_error.or(held.first_error);
    }
    Ok((children, total))
}

/// Closing a holder's stdin tells it to close its connections and exit.
async fn release(children: Vec<Child>) {
    for mut child in children {
        drop(child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

/// The holder child: opens `connections` silent connections from `source`,
/// reports, and holds them until its stdin closes.
async fn hold(addr: SocketAddr, source: IpAddr, connections: usize) -> Result<()> {
    raise_fd_limit();
    let results: Vec<Result<TcpStream>> = futures::stream::iter(0..connections)
        .map(|_| connect_from(source, addr))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let mut held = Vec::with_capacity(connections);
    let mut report = Held {
        held: 0,
        failed: 0,
        first_error: None,
    };
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
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink()))
        .await
        .context("the stdin reader panicked")?
        .context("cannot read stdin")?;
    drop(held);
    Ok(())
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
fn raise_fd_limit() {
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
    println!(
        "\nhealthz under a flood of half-open connections — {} CPU(s) {}; {}",
        report.machine.cpus, report.machine.cpu_model, report.server
    );
    println!(
        "flood: {} of {} connections held ({} failed{}), opened in {:.1}s",
        report.connections_held,
        report.connections_requested,
        report.connect_failures,
        report
            .first_connect_error
            .as_deref()
            .map(|error| format!(", first: {error}"))
            .unwrap_or_default(),
        report.flood_open_seconds
    );
    let rows: Vec<Vec<String>> = report
        .phases
        .iter()
        .map(|phase| {
            vec![
                phase.name.to_string(),
                phase.latency.count.to_string(),
                phase.failed.to_string(),
                stats::fmt_ms(phase.latency.p50_ms),
                stats::fmt_ms(phase.latency.p99_ms),
                stats::fmt_ms(phase.latency.max_ms),
                phase.first_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "/healthz, fresh connection",
            "ok",
            "failed",
            "p50 ms",
            "p99 ms",
            "max ms",
            "first failure",
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = report
        .memory
        .iter()
        .map(|s| {
            vec![
                s.at.to_string(),
                format!("{:.1}", s.rss_mib),
                format!("{:.1}", s.peak_rss_mib),
                s.open_fds.to_string(),
            ]
        })
        .collect();
    println!();
    print_table(&["server", "RSS MiB", "peak MiB", "open fds"], &rows);
}
