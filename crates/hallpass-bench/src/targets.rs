//! The goals of issue #14 as target rows: for each run (one backend) what
//! was measured against each goal, met, MISSED or not applicable, and the
//! rows side by side when several backends ran.
//!
//! Some goals depend on the backend (expiry lag: 250 ms on SQLite, 1 s on
//! PostgreSQL; throughput: 5,000 grants/s on SQLite, 3,000 on one
//! PostgreSQL replica), and some compare two runs (three replicas against
//! one): [`replica_targets`] adds those to the runs with several replicas
//! once every run is done. A row's name is the same on every backend, so
//! the comparison lines rows up by name; the goal may differ.

use serde::Serialize;

use crate::server::Backend;
use crate::stats::{self, fmt_ms};
use crate::{Run, audit_chain, audit_verify, expiry, million, overload, revocation, throughput};

/// One product target and whether this run met it.
#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub status: Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Met,
    Missed,
    /// The run was smaller than the target's scale (a smoke run).
    NotAtScale,
    /// The goal cannot apply (open ssh sessions: OpenSSH never ends them;
    /// a gauge the server under test does not have).
    NotApplicable,
    /// A figure the goal asks for, with no threshold of its own.
    Figure,
}

impl Status {
    pub fn of(at_scale: bool, met: bool) -> Status {
        match (at_scale, met) {
            (false, _) => Status::NotAtScale,
            (true, true) => Status::Met,
            (true, false) => Status::Missed,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Missed => "MISSED",
            Status::NotAtScale => "n/a: smaller run",
            Status::NotApplicable => "n/a",
            Status::Figure => "reported",
        }
    }
}

/// Client count of the throughput goals.
pub const TARGET_CLIENTS: usize = 32;
/// Request path: grants/s at 32 clients, SQLite and one PostgreSQL replica.
pub const TARGET_OPS_SQLITE: f64 = 5000.0;
pub const TARGET_OPS_POSTGRES: f64 = 3000.0;
/// SQLite request path p99 at 32 clients.
pub const TARGET_P99_MS: f64 = 10.0;
/// Expiry lag p99 with 100,000 grants due within 10 s.
pub const TARGET_LAG_P99_MS_SQLITE: f64 = 250.0;
pub const TARGET_LAG_P99_MS_POSTGRES: f64 = 1000.0;
pub const TARGET_EXPIRY_GRANTS: usize = 100_000;
pub const TARGET_EXPIRY_WINDOW_SECONDS: u64 = 10;

fn lag_goal_ms(backend: &Backend) -> f64 {
    match backend {
        Backend::Sqlite => TARGET_LAG_P99_MS_SQLITE,
        Backend::Postgres { .. } => TARGET_LAG_P99_MS_POSTGRES,
    }
}

/// The grants/s goal of a backend; none for several replicas, which are
/// held against one replica instead ([`replica_targets`]).
fn ops_goal(backend: &Backend) -> Option<f64> {
    match backend {
        Backend::Sqlite => Some(TARGET_OPS_SQLITE),
        Backend::Postgres { replicas: 1, .. } => Some(TARGET_OPS_POSTGRES),
        Backend::Postgres { .. } => None,
    }
}

/// `" (200 grants)"` below the goal's scale, else nothing.
fn scale_note(full: bool, what: String) -> String {
    if full { String::new() } else { format!(" ({what})") }
}

/// Every goal a run has figures for, in a fixed order.
pub fn targets(run: &Run) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(report) = &run.throughput {
        out.extend(throughput_targets(&run.backend, report));
    }
    if let Some(report) = &run.expiry {
        out.extend(expiry_targets(report));
        // The million scenario measures RSS at the goal's scale.
        if run.million.is_none() {
            out.push(rss_target(&report.memory.active_rss_mib, report.creation.created));
        }
    }
    if let Some(report) = &run.rss {
        out.push(rss_target(&report.memory.active_rss_mib, report.creation.created));
    }
    if let Some(report) = &run.million {
        out.extend(million_targets(report));
    }
    if let Some(report) = &run.overload {
        out.extend(overload_targets(report));
    }
    if let Some(report) = &run.audit_verify {
        out.push(audit_verify_target(report));
    }
    if run.backend.replicas() > 1
        && let Some(target) = chain_target(run)
    {
        out.push(target);
    }
    if let Some(report) = &run.revocation {
        out.extend(revocation_targets(report));
    }
    out
}

fn throughput_targets(backend: &Backend, report: &throughput::Report) -> Vec<Target> {
    let Some(level) = report.levels.iter().find(|l| l.clients == TARGET_CLIENTS) else {
        return Vec::new();
    };
    let ops = level.operations_per_second;
    let rate = match ops_goal(backend) {
        Some(goal) => Target {
            name: format!("grants/s at {TARGET_CLIENTS} clients (request + credential)"),
            target: format!(">= {goal:.0}"),
            measured: format!("{ops:.0}"),
            status: Status::of(true, ops >= goal),
        },
        None => Target {
            name: format!("grants/s at {TARGET_CLIENTS} clients (request + credential)"),
            target: "see 3 replicas vs 1".into(),
            measured: format!("{ops:.0}"),
            status: Status::Figure,
        },
    };
    let p99 = level.pair.p99_ms;
    let latency = match backend {
        Backend::Sqlite => Target {
            name: format!("p99 latency at {TARGET_CLIENTS} clients"),
            target: format!("<= {TARGET_P99_MS} ms"),
            measured: format!("{} ms", fmt_ms(p99)),
            status: Status::of(true, p99 <= TARGET_P99_MS),
        },
        Backend::Postgres { .. } => Target {
            name: format!("p99 latency at {TARGET_CLIENTS} clients"),
            target: "-".into(),
            measured: format!("{} ms", fmt_ms(p99)),
            status: Status::Figure,
        },
    };
    vec![rate, latency]
}

fn expiry_targets(report: &expiry::ExpiryReport) -> Vec<Target> {
    let full = report.grants >= TARGET_EXPIRY_GRANTS && report.window_seconds <= TARGET_EXPIRY_WINDOW_SECONDS;
    let scale = scale_note(full, format!("{} grants in {} s", report.grants, report.window_seconds));
    let goal = lag_goal_ms(&report.backend);
    vec![
        Target {
            name: format!("expiry lag p99, {TARGET_EXPIRY_GRANTS} grants due within {TARGET_EXPIRY_WINDOW_SECONDS} s"),
            target: format!("<= {goal:.0} ms"),
            measured: format!("{} ms{scale}", fmt_ms(report.lag.p99_ms)),
            status: Status::of(full, report.count_ok && report.lag.p99_ms <= goal),
        },
        Target {
            name: "expiry: every grant ended exactly once".into(),
            target: "all, once".into(),
            measured: format!(
                "{} of {}, {} missing, {} twice, {} unexpected{scale}",
                report.matched, report.creation.created, report.missing, report.duplicated, report.unexpected
            ),
            status: Status::of(full, report.count_ok),
        },
    ]
}

/// Against the largest replica: each server process has the budget.
fn rss_target(active_rss_mib: &[f64], grants: usize) -> Target {
    let full = grants >= million::TARGET_GRANTS;
    let per_replica = if active_rss_mib.len() > 1 {
        ", largest replica"
    } else {
        ""
    };
    let rss = expiry::max(active_rss_mib);
    Target {
        name: format!("server RSS with {} active grants", million::TARGET_GRANTS),
        target: format!("<= {:.0} MiB", million::TARGET_RSS_MIB),
        measured: format!(
            "{rss:.1} MiB{per_replica}{}",
            scale_note(full, format!("{grants} grants"))
        ),
        status: Status::of(full, rss <= million::TARGET_RSS_MIB),
    }
}

fn million_targets(report: &million::MillionReport) -> Vec<Target> {
    let created = report.creation.created;
    let full = created >= million::TARGET_GRANTS;
    let scale = scale_note(full, format!("{created} grants"));
    let restart = &report.restart;
    let overdue = &restart.overdue;
    let mut out = vec![
        rss_target(&report.footprint.active_rss_mib, created),
        Target {
            name: "on disk per active grant, with its events".into(),
            target: format!("<= {:.0} bytes", million::TARGET_BYTES_PER_GRANT),
            measured: format!(
                "{:.0} bytes (after the restart {:.0}){scale}",
                report.footprint.bytes_per_grant, restart.bytes_per_grant_after_restart
            ),
            status: Status::of(
                full,
                report.footprint.bytes_per_grant <= million::TARGET_BYTES_PER_GRANT,
            ),
        },
        Target {
            name: format!("restart with {} active grants: API answers", million::TARGET_GRANTS),
            target: format!("<= {:.0} s", million::TARGET_SERVING_SECONDS),
            measured: format!(
                "{} ms (healthz {} ms){scale}",
                fmt_ms(restart.serving_ms),
                fmt_ms(restart.healthz_ms)
            ),
            status: Status::of(full, restart.serving_ms <= million::TARGET_SERVING_SECONDS * 1000.0),
        },
    ];
    let valid = overdue.checked > 0 && restart.overdue_due_while_down == overdue.checked;
    let invalid = if valid {
        String::new()
    } else {
        format!(", only {} fell due while down", restart.overdue_due_while_down)
    };
    out.push(Target {
        name: "restart: every overdue grant ended before the API answers".into(),
        target: "all".into(),
        measured: format!(
            "{} of {}{}{invalid}{scale}",
            overdue.ended_before_api,
            overdue.checked,
            if restart.replicas.len() > 1 {
                format!(
                    " ({} before every replica answered)",
                    overdue.ended_before_every_replica_served
                )
            } else {
                String::new()
            }
        ),
        status: Status::of(full && valid, overdue.ended_before_api == overdue.checked),
    });
    out.push(match restart.timers_ms {
        Some(ms) => Target {
            name: "restart: expiry timers rebuilt".into(),
            target: format!("<= {:.0} s", million::TARGET_TIMERS_SECONDS),
            measured: format!("{} ms{scale}", fmt_ms(ms)),
            status: Status::of(full, ms <= million::TARGET_TIMERS_SECONDS * 1000.0),
        },
        None => Target {
            name: "restart: expiry timers rebuilt".into(),
            target: format!("<= {:.0} s", million::TARGET_TIMERS_SECONDS),
            measured: "not reported by this server".into(),
            status: Status::NotApplicable,
        },
    });
    out
}

fn overload_targets(report: &overload::OverloadReport) -> Vec<Target> {
    let full = report.at_scale();
    let scale = scale_note(
        full,
        format!("{} clients, {:.0} s", report.clients, report.duration_seconds),
    );
    let answers = &report.answers;
    vec![
        Target {
            name: "audit under overload: no acknowledged event lost".into(),
            target: "0 lost, chain verifies".into(),
            measured: format!(
                "{} of {} lost, {} refused, chain {}{scale}",
                report.lost,
                answers.acknowledged,
                answers.refused,
                if report.audit.ok { "verified" } else { "NOT verified" }
            ),
            status: Status::of(full, report.nothing_lost()),
        },
        Target {
            name: "audit under overload: events/s sustained".into(),
            target: "-".into(),
            measured: format!("{:.0}{scale}", report.events_per_second),
            status: Status::Figure,
        },
    ]
}

pub fn audit_verify_target(report: &audit_verify::Report) -> Target {
    let goal = audit_verify::TARGET_EVENTS_PER_SECOND;
    let full = report.events >= goal as u64;
    Target {
        name: "audit verify --file, events/s on one core".into(),
        target: format!(">= {goal:.0}"),
        measured: format!(
            "{:.0}{}",
            report.events_per_second,
            scale_note(full, format!("{} events", report.events))
        ),
        status: Status::of(full, report.events_per_second >= goal),
    }
}

/// Every `GET /v1/audit/verify` of a run with several replicas passed.
fn chain_target(run: &Run) -> Option<Target> {
    let checks = run
        .throughput
        .iter()
        .flat_map(|t| t.levels.iter().filter_map(|l| l.audit.as_ref()))
        .chain(run.expiry.iter().filter_map(|e| e.audit.as_ref()))
        .chain(run.overload.iter().map(|o| &o.audit));
    let (count, failed) = audit_chain::summarize(checks)?;
    Some(Target {
        name: "replicas: the audit log stays one verifiable chain".into(),
        target: "verifies".into(),
        measured: match failed {
            None => format!("verified after every run ({count})"),
            Some(check) => check.describe(),
        },
        status: Status::of(true, failed.is_none()),
    })
}

/// Three replicas against one on the same PostgreSQL: at least the grants/s
/// at 32 clients, with p99 no worse. Returns (index of the run, row).
pub fn replica_targets(runs: &[Run]) -> Vec<(usize, Target)> {
    let level = |run: &Run| {
        run.throughput
            .as_ref()
            .and_then(|t| t.levels.iter().find(|l| l.clients == TARGET_CLIENTS))
            .map(|l| (l.operations_per_second, l.pair.p99_ms))
    };
    let one = runs
        .iter()
        .find(|run| matches!(run.backend, Backend::Postgres { replicas: 1, .. }))
        .and_then(level);
    let Some((one_ops, one_p99)) = one else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let replicas = run.backend.replicas();
        let Some((ops, p99)) = level(run).filter(|_| replicas > 1) else {
            continue;
        };
        out.push((
            i,
            Target {
                name: format!("replicas vs 1: grants/s at {TARGET_CLIENTS} clients"),
                target: format!(">= 1 replica's ({one_ops:.0})"),
                measured: format!("{ops:.0} ({:.2}x)", ops / one_ops.max(1e-9)),
                status: Status::of(true, ops >= one_ops),
            },
        ));
        out.push((
            i,
            Target {
                name: format!("replicas vs 1: p99 at {TARGET_CLIENTS} clients"),
                target: format!("<= 1 replica's ({} ms)", fmt_ms(one_p99)),
                measured: format!("{} ms", fmt_ms(p99)),
                status: Status::of(true, p99 <= one_p99),
            },
        ));
    }
    out
}

/// Per type: (a) and (b) p99 ≤ 1 s at 1,000 grants, every grant's access
/// seen gone; on postgres, Hallpass's issue + revoke ≤ 1.5× the raw SQL.
fn revocation_targets(report: &revocation::Report) -> Vec<Target> {
    let goal = format!("<= {:.0} ms", revocation::GOAL_P99_MS);
    let mut out = Vec::new();
    for result in &report.types {
        let full = result.created >= revocation::GOAL_GRANTS;
        let scale = if full {
            String::new()
        } else {
            format!(" (only {} grants run)", result.created)
        };
        let kind = result.target_type;
        let probes = [
            ("new login refused", result.login_refused.as_ref()),
            ("open session ended", result.session_ended.as_ref()),
        ];
        for (what, probe) in probes {
            let Some(probe) = probe else { continue };
            let seen_all = probe.still_there == 0 && probe.probed > 0;
            let measured = if seen_all {
                format!("{} ms", revocation::signed_ms(probe.latency.p99_ms))
            } else {
                format!("{} of {} not seen", probe.still_there, probe.probed)
            };
            // ssh logins are probed on a sample of the grants.
            let sample = if probe.probed < result.created {
                format!(", {} of them probed", probe.probed)
            } else {
                String::new()
            };
            out.push(Target {
                name: format!("{kind}: {what} p99, {} grants{scale}{sample}", revocation::GOAL_GRANTS),
                target: goal.clone(),
                measured,
                status: Status::of(full, seen_all && probe.latency.p99_ms <= revocation::GOAL_P99_MS),
            });
        }
        if kind == revocation::Kind::Ssh {
            out.push(Target {
                name: "ssh: open session ended (OpenSSH checks at login only)".into(),
                target: goal.clone(),
                measured: result.ssh.as_ref().map_or_else(
                    || "-".into(),
                    |ssh| {
                        format!(
                            "{} of {} still open",
                            ssh.sessions_alive_after_expiry, ssh.sessions_opened
                        )
                    },
                ),
                status: Status::NotApplicable,
            });
        }
        if let Some(baseline) = &result.baseline {
            out.push(Target {
                name: "postgres: issue + revoke, Hallpass ÷ raw SQL (p50)".into(),
                target: format!("<= {:.1}x", revocation::GOAL_RATIO),
                measured: format!("{:.2}x", baseline.ratio_p50),
                status: Status::of(true, baseline.ratio_p50 <= revocation::GOAL_RATIO),
            });
        }
    }
    out
}

pub fn print_targets(targets: &[Target]) {
    if targets.is_empty() {
        return;
    }
    println!("\nTargets:");
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.target.clone(),
                t.measured.clone(),
                t.status.label().to_string(),
            ]
        })
        .collect();
    stats::print_table(&["target", "goal", "measured", ""], &rows);
}

/// One backend's cell: the figure, its status unless met, and its goal
/// when the goal differs between backends.
fn cell(target: Option<&Target>, own_goal: bool) -> String {
    let Some(t) = target else {
        return "-".into();
    };
    let mut text = t.measured.clone();
    if !matches!(t.status, Status::Met | Status::Figure) {
        text = format!("{text} {}", t.status.label());
    }
    if own_goal && t.target != "-" {
        text = format!("{text} [{}]", t.target);
    }
    text
}

/// Targets side by side when several backends ran, lined up by name.
pub fn print_target_comparison(runs: &[Run]) {
    if runs.len() < 2 {
        return;
    }
    let mut names: Vec<&str> = Vec::new();
    for target in runs.iter().flat_map(|run| &run.targets) {
        if !names.contains(&target.name.as_str()) {
            names.push(&target.name);
        }
    }
    if names.is_empty() {
        return;
    }
    println!("\nTargets by backend ([goal] where it differs by backend):");
    let labels: Vec<String> = runs.iter().map(|run| run.backend.label()).collect();
    let mut header = vec!["target", "goal"];
    header.extend(labels.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|name| {
            let found: Vec<Option<&Target>> = runs
                .iter()
                .map(|run| run.targets.iter().find(|t| t.name == *name))
                .collect();
            let mut goals: Vec<&str> = found.iter().flatten().map(|t| t.target.as_str()).collect();
            goals.sort_unstable();
            goals.dedup();
            let own_goal = goals.len() > 1;
            let mut row = vec![
                name.to_string(),
                if own_goal {
                    "by backend".into()
                } else {
                    goals.first().map_or("-".into(), |g| g.to_string())
                },
            ];
            row.extend(found.iter().map(|t| cell(*t, own_goal)));
            row
        })
        .collect();
    stats::print_table(&header, &rows);
}
