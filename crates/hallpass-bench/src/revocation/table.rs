//! The revocation scenario's tables, as printed after a run.

use super::watch::WATCH_INTERVAL;
use super::{AccountsGone, BaselineReport, Kind, ProbeReport, Recorded, Report, Spread, SshReport, TypeReport};
use crate::stats::{Summary, fmt_ms, print_table};

/// `-12.5` or `250`: signed milliseconds.
pub fn signed_ms(ms: f64) -> String {
    if ms < 0.0 {
        format!("-{}", fmt_ms(-ms))
    } else {
        fmt_ms(ms)
    }
}

/// p50, p90, p99 and max, signed; dashes when nothing was seen.
fn spread_cells(spread: &Spread) -> Vec<String> {
    if spread.count == 0 {
        return vec!["-".into(); 4];
    }
    [spread.p50_ms, spread.p90_ms, spread.p99_ms, spread.max_ms]
        .into_iter()
        .map(signed_ms)
        .collect()
}

/// Every type's tables, then the types that failed.
pub fn print(report: &Report) {
    for result in &report.types {
        print_type(result, report.window_seconds, report.clients);
    }
    if !report.failures.is_empty() {
        println!("\n  failed: {}", report.failures.join("\n  failed: "));
    }
}

/// One type's tables: what was set up and measured, then the latencies
/// from `expires_at`, then what fits no table.
fn print_type(report: &TypeReport, window: u64, clients: usize) {
    println!(
        "\nRevocation ({}): {} grants expiring within a {window}s window from {}",
        report.target_type,
        report.grants,
        report.planned_start.format("%H:%M:%S")
    );
    let mut rows = issue_rows(report, clients);
    rows.extend(run_rows(report));
    print_table(&["measure", "value"], &rows);
    println!("\n  From expires_at, ms:");
    print_table(
        &[
            "observed",
            "grants",
            "seen",
            "p50",
            "p90",
            "p99",
            "max",
            "bracket p99",
            "live after expiry",
            "probes / failed",
        ],
        &latency_rows(report),
    );
    print_failures(report);
    if let Some(ssh) = &report.ssh {
        print_ssh(ssh);
    }
    if let Some(baseline) = &report.baseline {
        print_baseline(baseline);
    }
}

/// `12.3 / 45.6 ms`: a summary's p50 and p99.
fn p50_p99(summary: &Summary) -> String {
    format!("{} / {} ms", fmt_ms(summary.p50_ms), fmt_ms(summary.p99_ms))
}

/// Creating the grants: how many, and how long each step took.
fn issue_rows(report: &TypeReport, clients: usize) -> Vec<Vec<String>> {
    let kind = report.target_type;
    let mut rows = vec![
        vec![
            format!("grants created ({clients} clients)"),
            format!(
                "{} ({} failed) in {:.1} s; calibration {} grants, {:.0}/s",
                report.created,
                report.failures,
                report.creation_seconds,
                report.calibration_grants,
                report.calibration_per_second
            ),
        ],
        vec!["POST /v1/requests p50 / p99".into(), p50_p99(&report.issue.request)],
        vec![
            "GET .../credentials p50 / p99".into(),
            p50_p99(&report.issue.credentials),
        ],
        vec![
            "issue (request + credential) p50 / p99".into(),
            p50_p99(&report.issue.total),
        ],
        vec![
            format!("sessions opened ({})", kind.client()),
            format!(
                "{} ({} answering before expiry), open p50 {} ms",
                report.sessions_opened,
                report.sessions_live_before,
                fmt_ms(report.session_open.p50_ms)
            ),
        ],
    ];
    if report.cli_sessions_opened > 0 {
        rows.push(vec![
            format!("sessions opened ({})", kind.cli()),
            report.cli_sessions_opened.to_string(),
        ]);
    }
    rows
}

/// The rest of the run: the window, the server, the audit events, the CPU.
fn run_rows(report: &TypeReport) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        "grants outside the planned window".into(),
        report.outside_window.to_string(),
    ]];
    if let Some(checked) = report.passwords_checked {
        rows.push(vec![
            "server checks the logins' passwords".into(),
            if checked {
                "yes (VALID UNTIL refuses at expiry by itself)".into()
            } else {
                "no (trust: only the revoke refuses)".into()
            },
        ]);
    }
    if let Some(recorded) = &report.recorded {
        rows.push(vec![
            "grant.expired events (verified / not)".into(),
            format!(
                "{} of {} ({} / {})",
                recorded.events, report.created, recorded.verified, recorded.not_verified
            ),
        ]);
    }
    rows.push(vec!["server CPU while revoking".into(), report.cpu.server.describe()]);
    rows.push(vec![
        "benchmark / other processes' CPU meanwhile".into(),
        format!(
            "{:.2} / {:.2} cores (others include the {} server and client processes)",
            report.cpu.bench.cores,
            report.cpu.others_cores,
            report.target_type.name()
        ),
    ]);
    rows
}

/// From `expires_at` to each end observed: the probes', the accounts', the
/// audit events'.
fn latency_rows(report: &TypeReport) -> Vec<Vec<String>> {
    let logins = [
        &report.login_refused,
        &report.login_refused_cli,
        &report.login_refused_cli_grants,
    ];
    let sessions = [
        &report.session_ended,
        &report.session_ended_cli,
        &report.session_ended_cli_grants,
    ];
    let mut rows: Vec<Vec<String>> = logins
        .into_iter()
        .flatten()
        .map(|probe| probe_row("new login refused", probe))
        .collect();
    rows.extend(
        sessions
            .into_iter()
            .flatten()
            .map(|probe| probe_row("open session ended", probe)),
    );
    if let Some(gone) = &report.accounts_gone {
        rows.push(accounts_row(report.target_type, gone));
    }
    if let Some(recorded) = &report.recorded {
        rows.push(recorded_row(report.created, recorded));
    }
    rows
}

/// One probe's row: `what` was seen, by its client.
fn probe_row(what: &str, report: &ProbeReport) -> Vec<String> {
    let mut row = vec![
        format!("{what} ({})", report.client),
        report.probed.to_string(),
        report.ended.to_string(),
    ];
    row.extend(spread_cells(&report.latency));
    row.push(if report.bracket.count == 0 {
        "-".into()
    } else {
        fmt_ms(report.bracket.p99_ms)
    });
    row.push(report.live_after_expiry.to_string());
    row.push(format!("{} / {}", report.attempts, report.failures));
    row
}

/// The server's own list of accounts, as polled.
fn accounts_row(kind: Kind, gone: &AccountsGone) -> Vec<String> {
    let mut row = vec![
        format!("{} ({} ms polls)", kind.account(), WATCH_INTERVAL.as_millis()),
        gone.watched.to_string(),
        gone.gone.to_string(),
    ];
    row.extend(spread_cells(&gone.latency));
    row.extend(["-".into(), "-".into(), format!("- / {}", gone.poll_errors)]);
    row
}

/// The lag the audit events give, of the `created` grants.
fn recorded_row(created: usize, recorded: &Recorded) -> Vec<String> {
    let lag = &recorded.lag;
    let mut row = vec![
        "grant.expired recorded (audit lag_ms)".into(),
        created.to_string(),
        recorded.events.to_string(),
    ];
    if lag.count == 0 {
        row.extend(["-".into(), "-".into(), "-".into(), "-".into()]);
    } else {
        row.extend([lag.p50_ms, lag.p90_ms, lag.p99_ms, lag.max_ms].map(fmt_ms));
    }
    row.extend(["-".into(), "-".into(), "-".into()]);
    row
}

/// Samples of the probes' and the creation's failures.
fn print_failures(report: &TypeReport) {
    for probe in [
        &report.login_refused,
        &report.login_refused_cli,
        &report.session_ended,
        &report.session_ended_cli,
    ]
    .into_iter()
    .flatten()
    {
        if !probe.failure_samples.is_empty() {
            println!(
                "  {} probe failures ({}), e.g.: {}",
                probe.client,
                probe.failures,
                probe.failure_samples.join(" | ")
            );
        }
    }
    if !report.failure_samples.is_empty() {
        println!("  creation failures, e.g.: {}", report.failure_samples.join(" | "));
    }
}

/// ssh: the open sessions after expiry, and the KRL revokes.
fn print_ssh(ssh: &SshReport) {
    println!(
        "  open ssh sessions: {} of {} still alive {:.1} s after the last expiry (OpenSSH checks certificates \
         at login only; Hallpass does not end them)",
        ssh.sessions_alive_after_expiry, ssh.sessions_opened, ssh.looked_after_seconds
    );
    if let Some(krl) = &ssh.krl {
        let cells = spread_cells(&krl.refused_after);
        println!(
            "  revoked before expiry through the KRL: {} grants; POST .../revoke p50 / p99 {} / {} ms; ssh \
             refused from sending the revoke p50 / p99 / max {} / {} / {} ms; refused at the first login \
             after the answer: {} of {}",
            krl.revoked,
            fmt_ms(krl.revoke_call.p50_ms),
            fmt_ms(krl.revoke_call.p99_ms),
            cells[0],
            cells[2],
            cells[3],
            krl.refused_at_first_login,
            krl.revoked
        );
    }
}

/// postgres: the cycles by hand against those through Hallpass.
fn print_baseline(baseline: &BaselineReport) {
    println!(
        "\n  Issue + revoke, PostgreSQL: {} cycles each, one at a time, alternating",
        baseline.cycles
    );
    let row = |name: &str, s: &Summary| {
        vec![
            name.to_string(),
            fmt_ms(s.p50_ms),
            fmt_ms(s.p90_ms),
            fmt_ms(s.p99_ms),
            fmt_ms(s.max_ms),
        ]
    };
    print_table(
        &["cycle", "p50 ms", "p90 ms", "p99 ms", "max ms"],
        &[
            row("the provider's SQL by hand (one connection)", &baseline.raw),
            row("through Hallpass: request + revoke", &baseline.hallpass),
            row("  POST /v1/requests (issue)", &baseline.hallpass_request),
            row("  POST /v1/grants/{id}/revoke (+ verify)", &baseline.hallpass_revoke),
        ],
    );
    println!("  Hallpass ÷ raw, medians: {:.2}×", baseline.ratio_p50);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_milliseconds_keep_their_sign() {
        assert_eq!(signed_ms(-12.34), "-12.3");
        assert_eq!(signed_ms(250.0), "250");
        assert_eq!(signed_ms(1.5), "1.50");
    }
}
