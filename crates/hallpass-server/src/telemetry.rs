//! Logs and metrics. Every counter and gauge is registered at 0 at start-up,
//! so an alert on "any increase" sees the very first failure (a counter
//! that appears only when it first counts has no earlier value to rise
//! from). A unit test finds every metric the source names and fails when
//! one is missing here.

use hallpass_config::LogFormat;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::Settings;

/// Every counter the server increments, with its help text.
pub const COUNTERS: [(&str, &str); 16] = [
    ("hallpass_requests_total", "Access requests made, by outcome"),
    (
        "hallpass_grants_activated_total",
        "Grants whose credentials were issued",
    ),
    (
        "hallpass_revoke_failures_total",
        "Failed attempts to end a grant on its target (retried)",
    ),
    (
        "hallpass_requests_timed_out_total",
        "Requests still pending at their pending TTL",
    ),
    ("hallpass_auth_failures_total", "Failed authentications"),
    (
        "hallpass_connections_evicted_total",
        "Idle connections closed to make room",
    ),
    (
        "hallpass_connections_refused_total",
        "Connections refused at the connection limit",
    ),
    (
        "hallpass_policy_evaluation_failures_total",
        "Policy evaluations that failed (time, memory, errors)",
    ),
    (
        "hallpass_accept_errors_total",
        "Failures to accept a connection (e.g. out of file descriptors)",
    ),
    (
        "hallpass_notifications_delivered_total",
        "Notifications a receiver took, by notifier",
    ),
    (
        "hallpass_notification_failures_total",
        "Failed attempts to deliver a notification (retried), by notifier",
    ),
    (
        "hallpass_notifications_dead_lettered_total",
        "Notifications that gave up after their retry budget, by notifier",
    ),
    (
        "hallpass_notifications_dropped_total",
        "Notifications not sent: outdated, notifier deleted, or nobody to tell",
    ),
    (
        "hallpass_audit_sink_events_total",
        "Audit events an audit sink's receiver acknowledged, by sink",
    ),
    (
        "hallpass_audit_sink_failures_total",
        "Failed deliveries to an audit sink (retried), by sink",
    ),
    (
        "hallpass_slack_interactions_total",
        "Clicks on Slack's Approve / Deny buttons, by outcome",
    ),
];

/// Every gauge the server sets, with its help text; 0 until first set.
pub const GAUGES: [(&str, &str); 4] = [
    ("hallpass_connections_open", "Connections open on the listener"),
    (
        "hallpass_expiry_timers_ready",
        "1 once the scheduler has loaded its expiry timers after start-up",
    ),
    (
        "hallpass_audit_sink_lag_events",
        "Audit events written but not yet acknowledged by an audit sink, by sink",
    ),
    (
        "hallpass_audit_sink_rewrite_detected",
        "1 when an audit sink stopped because the database no longer holds what it sent, by sink",
    ),
];

/// The metrics labelled `sink`: registered at 0 for each configured sink
/// ([`register_audit_sink`]) rather than once without a label.
const PER_SINK: [&str; 4] = [
    "hallpass_audit_sink_events_total",
    "hallpass_audit_sink_failures_total",
    "hallpass_audit_sink_lag_events",
    "hallpass_audit_sink_rewrite_detected",
];

/// The outcomes `hallpass_requests_total` is labelled with.
pub const REQUEST_OUTCOMES: [&str; 4] = ["pending", "auto_approved", "emergency", "denied"];

/// The outcomes `hallpass_slack_interactions_total` is labelled with.
pub const SLACK_INTERACTION_OUTCOMES: [&str; 6] = ["approved", "denied", "refused", "rejected", "invalid", "ignored"];

/// Installs the Prometheus recorder (once per process) and registers every
/// counter at 0. Returns the handle `/metrics` renders.
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Several servers in one test process share the first recorder.
            let _ = metrics::set_global_recorder(recorder);
            for (name, help) in COUNTERS {
                metrics::describe_counter!(name, help);
                if PER_SINK.contains(&name) {
                    continue;
                }
                if name == "hallpass_requests_total" {
                    for outcome in REQUEST_OUTCOMES {
                        metrics::counter!(name, "outcome" => outcome).absolute(0);
                    }
                } else if name == "hallpass_slack_interactions_total" {
                    for outcome in SLACK_INTERACTION_OUTCOMES {
                        metrics::counter!(name, "outcome" => outcome).absolute(0);
                    }
                } else {
                    metrics::counter!(name).absolute(0);
                }
            }
            for (name, help) in GAUGES {
                metrics::describe_gauge!(name, help);
                if !PER_SINK.contains(&name) {
                    metrics::gauge!(name).set(0.0);
                }
            }
            handle
        })
        .clone()
}

/// Registers the metrics of audit sink `sink` at 0 (after
/// [`install_metrics`]).
pub fn register_audit_sink(sink: &str) {
    for (name, _) in COUNTERS.iter().filter(|(name, _)| PER_SINK.contains(name)) {
        metrics::counter!(*name, "sink" => sink.to_string()).absolute(0);
    }
    for (name, _) in GAUGES.iter().filter(|(name, _)| PER_SINK.contains(name)) {
        metrics::gauge!(*name, "sink" => sink.to_string()).set(0.0);
    }
}

pub fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Already initialised (several servers in one test process) is fine.
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{COUNTERS, GAUGES};

    /// The names of every `metrics::KIND!("name"...)` under `dir`.
    fn named_in(dir: &Path, kind: &str, found: &mut Vec<String>) {
        let pattern = format!("metrics::{kind}!(\"");
        for entry in std::fs::read_dir(dir).expect("read the source directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                named_in(&path, kind, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).expect("read a source file");
                for (at, _) in source.match_indices(&pattern) {
                    let rest = &source[at + pattern.len()..];
                    found.extend(rest.split('"').next().map(str::to_string));
                }
            }
        }
    }

    #[test]
    fn every_counter_and_gauge_the_server_sets_is_registered_at_start_up() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let names = |metrics: &[(&'static str, &str)]| metrics.iter().map(|m| m.0).collect::<Vec<_>>();
        for (kind, registered) in [("counter", names(&COUNTERS)), ("gauge", names(&GAUGES))] {
            let mut found = Vec::new();
            named_in(&src, kind, &mut found);
            assert!(!found.is_empty(), "no {kind} found: the pattern is wrong");
            for name in found {
                assert!(
                    registered.contains(&name.as_str()),
                    "{kind} {name} is not in telemetry.rs, so it is missing from /metrics until it first changes"
                );
            }
        }
    }
}
