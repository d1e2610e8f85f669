//! What Linux says about a process and the machine: memory (`VmRSS`,
//! `VmHWM`), CPU time per process and per thread (to see which part of the
//! server is busy), and the machine description printed with every result.

use std::collections::BTreeMap;

use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::stats::{Latencies, Summary};

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// Current resident set size (`VmRSS`).
    pub rss_bytes: u64,
    /// Peak resident set size since the process started (`VmHWM`).
    pub peak_rss_bytes: u64,
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Reads `VmRSS` and `VmHWM` from `/proc/PID/status`.
pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let field = |name: &str| -> Result<u64> {
        let line = text
            .lines()
            .find(|line| line.starts_with(name))
            .with_context(|| format!("{path} has no {name} line"))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("unreadable {name} line in {path}: {line:?}"))?;
        Ok(kib * 1024)
    };
    Ok(Memory {
        rss_bytes: field("VmRSS:")?,
        peak_rss_bytes: field("VmHWM:")?,
    })
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The fields of a `stat` file the benchmark uses.
struct Stat {
    comm: String,
    parent: u32,
    /// utime + stime in seconds.
    cpu_seconds: f64,
    /// cutime + cstime in seconds: children that ended and were reaped.
    reaped_children_cpu_seconds: f64,
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name is in parentheses and may itself contain spaces.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3 of stat(5), ppid 4; utime 14 and stime 15.
    let parent: u32 = fields.get(1)?.parse().ok()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let cutime: f64 = fields.get(13)?.parse().ok()?;
    let cstime: f64 = fields.get(14)?.parse().ok()?;
    Some(Stat {
        comm,
        parent,
        cpu_seconds: (utime + stime) / ticks_per_second(),
        reaped_children_cpu_seconds: (cutime + cstime) / ticks_per_second(),
    })
}

/// CPU seconds used so far by one or more processes and by each of their
/// live threads.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    /// Process id → CPU seconds of the whole process.
    pub processes: BTreeMap<u32, f64>,
    /// Thread id → (thread name, CPU seconds).
    pub threads: BTreeMap<u32, (String, f64)>,
}

/// Samples the processes `pids` (all must exist).
pub fn cpu_sample(pids: &[u32]) -> Result<CpuSample> {
    let mut sample = CpuSample::default();
    for &pid in pids {
        add_process(&mut sample, pid, None)?;
    }
    Ok(sample)
}

/// Adds a process and its threads to `sample`; `name` overrides the thread
/// names (`comm`).
fn add_process(sample: &mut CpuSample, pid: u32, name: Option<&str>) -> Result<()> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let stat = parse_stat(&text).with_context(|| format!("unreadable {path}: {text:?}"))?;
    sample.processes.insert(pid, stat.cpu_seconds);
    let dir = format!("/proc/{pid}/task");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        // Threads come and go while we list them; skip the ones gone.
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(text) = std::fs::read_to_string(entry.path().join("stat"))
            && let Some(thread) = parse_stat(&text)
        {
            let name = name.map_or(thread.comm, str::to_string);
            sample.threads.insert(tid, (name, thread.cpu_seconds));
        }
    }
    Ok(())
}

/// A PostgreSQL server: the postmaster and its children, each named after
/// its role (`backend` for client connections, else what its process title
/// says: `walwriter`, `checkpointer`, ...). Children that exit while being
/// listed are skipped.
pub fn postgres_sample(postmaster: u32) -> Result<CpuSample> {
    let mut sample = CpuSample::default();
    add_process(&mut sample, postmaster, Some("postmaster"))?;
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Some(stat) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|text| parse_stat(&text))
        else {
            continue;
        };
        if stat.parent != postmaster {
            continue;
        }
        let title = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let _ = add_process(&mut sample, pid, Some(&postgres_role(&title)));
    }
    Ok(sample)
}

/// `postgres: walwriter` → `walwriter`; a client connection's title
/// (`postgres: USER DB 127.0.0.1(40000) idle`) → `backend`.
fn postgres_role(cmdline: &[u8]) -> String {
    let title = String::from_utf8_lossy(cmdline).replace('\0', " ");
    let title = title.trim().trim_start_matches("postgres:").trim();
    if title.contains('(') || title.contains("[local]") {
        "backend".into()
    } else if title.is_empty() {
        "postgres".into()
    } else {
        title.to_string()
    }
}

/// CPU used by one process between two samples, as cores busy on average.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// CPU seconds per wall-clock second (1.0 = one core fully busy).
    pub cores: f64,
    /// The same, per thread name (threads of one name summed), busiest first.
    /// Threads that ended between the samples are in `cores` only.
    pub by_thread: Vec<ThreadUse>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadUse {
    pub name: String,
    pub threads: usize,
    pub cores: f64,
}

impl CpuUse {
    /// Processes that started between the samples count from zero; those
    /// that ended are missing.
    pub fn between(before: &CpuSample, after: &CpuSample, wall_seconds: f64) -> CpuUse {
        let wall = wall_seconds.max(1e-9);
        let mut by_name: BTreeMap<String, (usize, f64)> = BTreeMap::new();
        for (tid, (name, seconds)) in &after.threads {
            let start = before.threads.get(tid).map_or(0.0, |(_, s)| *s);
            let entry = by_name.entry(name.clone()).or_default();
            entry.0 += 1;
            entry.1 += (seconds - start).max(0.0);
        }
        let mut by_thread: Vec<ThreadUse> = by_name
            .into_iter()
            .map(|(name, (threads, seconds))| ThreadUse {
                name,
                threads,
                cores: seconds / wall,
            })
            .collect();
        by_thread.sort_by(|a, b| b.cores.total_cmp(&a.cores));
        let seconds: f64 = after
            .processes
            .iter()
            .map(|(pid, seconds)| (seconds - before.processes.get(pid).copied().unwrap_or(0.0)).max(0.0))
            .sum();
        CpuUse {
            cores: seconds / wall,
            by_thread,
        }
    }

    /// `1.42 cores (hallpass-store- 0.61, tokio-runtime-w 0.75)`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .by_thread
            .iter()
            .filter(|t| t.cores >= 0.01)
            .take(3)
            .map(|t| format!("{} x{} {:.2}", t.name, t.threads, t.cores))
            .collect();
        if parts.is_empty() {
            format!("{:.2} cores", self.cores)
        } else {
            format!("{:.2} cores ({})", self.cores, parts.join(", "))
        }
    }
}

/// Process ids of the live children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .flat_map(|task| {
            let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            text.split_whitespace()
                .filter_map(|child| child.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// CPU seconds used so far by a process that runs helpers as child
/// processes (the server and its policy workers).
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeCpu {
    /// The process itself.
    pub own_seconds: f64,
    /// Its live children, and those that ended and were reaped.
    pub children_seconds: f64,
}

impl TreeCpu {
    /// Counted this way, a child that ends between two samples is not lost:
    /// what it used moves from the live sum into the parent's reaped sum.
    pub fn of(pid: u32) -> Result<TreeCpu> {
        let stat = |pid: u32| -> Result<Stat> {
            let path = format!("/proc/{pid}/stat");
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
            parse_stat(&text).with_context(|| format!("unreadable {path}: {text:?}"))
        };
        let own = stat(pid)?;
        let live: f64 = children(pid)
            .into_iter()
            // A child may end while we read it; its time is then reaped.
            .filter_map(|child| stat(child).ok())
            .map(|child| child.cpu_seconds + child.reaped_children_cpu_seconds)
            .sum();
        Ok(TreeCpu {
            own_seconds: own.cpu_seconds,
            children_seconds: own.reaped_children_cpu_seconds + live,
        })
    }
}

/// Connections the kernel dropped because a listener's accept queue was
/// full (`TcpExt: ListenOverflows` of `/proc/net/netstat`), for this network
/// namespace as a whole; `None` when unreadable.
pub fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut rows = text.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (rows.next()?, rows.next()?);
    let column = names.split_whitespace().position(|name| name == "ListenOverflows")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`), zeros when
/// unreadable.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0.0));
    [(); 3].map(|()| fields.next().unwrap_or(0.0))
}

/// Busy CPU seconds of the whole machine so far (all CPUs, from `/proc/stat`:
/// user, nice, system, irq and softirq; not idle, iowait or steal).
pub fn machine_busy_seconds() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let line = text
        .lines()
        .find(|line| line.starts_with("cpu "))
        .context("/proc/stat has no `cpu` line")?;
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let busy: f64 = [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| fields.get(i).copied().unwrap_or(0.0))
        .sum();
    Ok(busy / ticks_per_second())
}

/// CPU counters of the servers, PostgreSQL, the benchmark and the machine at
/// one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    server: CpuSample,
    database: Option<CpuSample>,
    bench: CpuSample,
    machine_busy_seconds: f64,
    at: Instant,
}

impl Snapshot {
    /// `server_pids`: every replica; `postmaster`: a local PostgreSQL server.
    pub fn take(server_pids: &[u32], postmaster: Option<u32>) -> Result<Snapshot> {
        Ok(Snapshot {
            server: cpu_sample(server_pids)?,
            database: postmaster.map(postgres_sample).transpose()?,
            bench: cpu_sample(&[std::process::id()])?,
            machine_busy_seconds: machine_busy_seconds()?,
            at: Instant::now(),
        })
    }
}

/// Where the CPUs went between two snapshots, in cores busy on average.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    /// All replicas together.
    pub server: CpuUse,
    /// The PostgreSQL server (all its processes, including other databases'),
    /// when it runs on this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<CpuUse>,
    pub bench: CpuUse,
    /// Busy time of the whole machine.
    pub machine_cores: f64,
    /// Machine minus servers, PostgreSQL and benchmark: other processes (say, a
    /// compiler running meanwhile, which would skew the figures) and
    /// interrupt time not charged to a process.
    pub others_cores: f64,
}

impl CpuReport {
    pub fn between(before: &Snapshot, after: &Snapshot) -> CpuReport {
        let wall = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let server = CpuUse::between(&before.server, &after.server, wall);
        let bench = CpuUse::between(&before.bench, &after.bench, wall);
        let database = match (&before.database, &after.database) {
            (Some(before), Some(after)) => Some(CpuUse::between(before, after, wall)),
            _ => None,
        };
        let database_cores = database.as_ref().map_or(0.0, |d| d.cores);
        let machine_cores = (after.machine_busy_seconds - before.machine_busy_seconds).max(0.0) / wall;
        let others_cores = (machine_cores - server.cores - bench.cores - database_cores).max(0.0);
        CpuReport {
            server,
            database,
            bench,
            machine_cores,
            others_cores,
        }
    }
}

/// The machine a result was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_total_mib: u64,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_total_mib = meminfo
            .lines()
            .find(|line| line.starts_with("MemTotal:"))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_string(), |s| s.trim().to_string());
        Machine {
            cpus,
            cpu_model,
            memory_total_mib,
            kernel,
        }
    }
}

/// Latency of `write(4 KiB) + fdatasync` in the temp dir's file system,
/// where the servers keep their data: the floor under every durable commit.
pub fn sync_latency(samples: usize) -> Result<Summary> {
    use std::io::Write;
    let mut file = tempfile::tempfile().context("cannot create a temp file to time fdatasync")?;
    let block = [0x5au8; 4096];
    let mut latencies = Latencies::new()?;
    for _ in 0..samples {
        let start = Instant::now();
        file.write_all(&block)
            .and_then(|()| file.sync_data())
            .context("cannot write and sync a temp file")?;
        latencies.record(start.elapsed());
    }
    Ok(latencies.summary())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let text = "42 (tokio runtime) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 0 0";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.comm, "tokio runtime");
        assert_eq!(stat.parent, 1);
        assert!((stat.cpu_seconds - 300.0 / ticks_per_second()).abs() < 1e-9);
        assert!(stat.reaped_children_cpu_seconds.abs() < 1e-9);
    }

    #[test]
    fn listen_overflows_are_readable() {
        assert!(listen_overflows().is_some());
    }

    #[test]
    fn reaped_children_count_toward_the_tree() {
        let before = TreeCpu::of(std::process::id()).unwrap();
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let after = TreeCpu::of(std::process::id()).unwrap();
        assert!(after.children_seconds > before.children_seconds, "{before:?} {after:?}");
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        let memory = memory(pid).unwrap();
        assert!(memory.rss_bytes > 0 && memory.peak_rss_bytes >= memory.rss_bytes);
        let sample = cpu_sample(&[pid]).unwrap();
        assert!(!sample.threads.is_empty());
    }

    #[test]
    fn postgres_process_titles_name_roles() {
        assert_eq!(postgres_role(b"postgres: walwriter \0\0"), "walwriter");
        assert_eq!(postgres_role(b"postgres: background writer "), "background writer");
        assert_eq!(
            postgres_role(b"postgres: postgres hp_bench_1 127.0.0.1(40000) idle"),
            "backend"
        );
    }
}
