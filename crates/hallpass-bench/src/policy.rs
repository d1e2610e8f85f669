//! `hallpass-bench policy`: in-process decision latency of
//! `hallpass_policy::PolicySet::evaluate`, beside a bare regorus evaluation
//! of the same modules, so the cost of our wrapper shows, and beside
//! `PolicySandbox::evaluate` (one worker process of the `hallpass` binary,
//! found like the other benchmarks find it), so the cost of the sandbox's
//! pipe round trip shows.
//!
//! Two policy sets: the example policies (`examples/policies`, tests left
//! out) and a generated set of 1,000 rules over role names, labels, groups
//! and principals, spread over ten modules as a large deployment would
//! write them. Each is measured for `--iterations` evaluations after
//! `--warmup`, on one thread, cycling through a few different requests.
//!
//! "Bare" is the plainest use of regorus: one `Engine` holding the same
//! modules, `set_input(Value::from(json))`, then `eval_rule` of each decision
//! rule the set declares. Before timing, both ways must decide the same for
//! every input, or the run fails; so must the sandbox. Without a `hallpass`
//! binary the sandbox rows are left out, with a note.
//!
//! No server is started.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use hallpass_policy::{PolicyDecision, PolicyModule, PolicySandbox, PolicySet, SandboxConfig, load_dir};
use serde::Serialize;
use serde_json::{Value, json};

use crate::procfs::Machine;
use crate::stats::{Latencies, Summary, print_table};

/// The product target: p99 of one decision on the example set.
const TARGET_P99_MICROS: f64 = 100.0;

/// The decision rules, as bare regorus evaluates them.
const DECISION_RULES: [&str; 4] = ["deny", "auto_approve", "approval_flow", "max_duration_seconds"];

#[derive(Debug, Clone)]
pub struct Options {
    pub iterations: u64,
    pub warmup: u64,
    /// Rules in the generated set.
    pub rules: usize,
    /// The example policies' directory.
    pub examples: PathBuf,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    started_at: DateTime<Utc>,
    machine: Machine,
    iterations: u64,
    warmup: u64,
    cases: Vec<Case>,
    /// p99 of `PolicySet::evaluate` on the example set against 100 µs.
    target_met: bool,
}

#[derive(Debug, Serialize)]
struct Case {
    /// `examples` or `generated`.
    policy_set: String,
    modules: usize,
    /// `deny`/`max_duration_seconds`/... rules written in the set.
    rules: usize,
    /// `PolicySet::evaluate`, `bare regorus` or `PolicySandbox::evaluate`.
    engine: String,
    /// Milliseconds, like every other summary of hallpass-bench.
    latency: Summary,
    /// Evaluations that failed (timed ones only; their time is not in
    /// `latency`). With the inputs here only the 100 ms time limit of
    /// `PolicySet::evaluate` can fail one, when the machine stalls it.
    errors: Errors,
}

#[derive(Debug, Default, Serialize)]
struct Errors {
    count: u64,
    first: Option<String>,
}

/// Runs the benchmark on a blocking thread; dropping the returned future
/// (Ctrl-C) stops it at the next evaluation.
pub async fn run(options: Options) -> Result<Report> {
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let _guard = StopOnDrop(stop.clone());
    tokio::task::spawn_blocking(move || measure(&options, &stop))
        .await
        .context("the policy benchmark thread failed")?
}

fn measure(options: &Options, stop: &AtomicBool) -> Result<Report> {
    let started_at = Utc::now();
    let examples: Vec<PolicyModule> = load_dir(&options.examples)
        .with_context(|| format!("cannot load the example policies from {}", options.examples.display()))?
        .into_iter()
        .filter(|module| !module.name.ends_with("_test.rego"))
        .collect();
    let generated = generated_modules(options.rules);
    let inputs = inputs();
    let sandbox = start_sandbox();

    let mut cases = Vec::new();
    for (label, modules, rules) in [
        ("examples", &examples, count_rules(&examples)),
        ("generated", &generated, options.rules),
    ] {
        let set = PolicySet::compile(modules).with_context(|| format!("the {label} policies do not compile"))?;
        let mut bare = Bare::new(modules)?;
        for input in &inputs {
            let ours = set
                .evaluate(input)
                .with_context(|| format!("{label}: evaluate failed"))?;
            let theirs = bare.decide(input)?;
            if ours != theirs {
                bail!("{label}: PolicySet::evaluate and bare regorus disagree on {input}: {ours:?} != {theirs:?}");
            }
        }
        eprintln!(
            "policy: {label} ({} modules, {rules} rules): {} evaluations each way",
            modules.len(),
            options.iterations
        );
        let ours = time(options, stop, &inputs, |input| {
            set.evaluate(input).map(drop).map_err(anyhow::Error::from)
        })?;
        let theirs = time(options, stop, &inputs, |input| bare.evaluate(input).map(drop))?;
        let mut rows = vec![("PolicySet::evaluate", ours), ("bare regorus", theirs)];
        if let Some(sandbox) = &sandbox {
            for input in &inputs {
                let sandboxed = sandbox
                    .evaluate(&set, input)
                    .with_context(|| format!("{label}: sandbox failed"))?;
                if sandboxed != set.evaluate(input)? {
                    bail!("{label}: the sandbox and PolicySet::evaluate disagree on {input}");
                }
            }
            let sandboxed = time(options, stop, &inputs, |input| {
                sandbox.evaluate(&set, input).map(drop).map_err(anyhow::Error::from)
            })?;
            rows.push(("PolicySandbox::evaluate", sandboxed));
        }
        for (engine, (latency, errors)) in rows {
            cases.push(Case {
                policy_set: label.to_string(),
                modules: modules.len(),
                rules,
                engine: engine.to_string(),
                latency,
                errors,
            });
        }
    }
    let target_met = cases
        .first()
        .is_some_and(|case| case.latency.p99_ms * 1000.0 <= TARGET_P99_MICROS);
    Ok(Report {
        started_at,
        machine: Machine::detect(),
        iterations: options.iterations,
        warmup: options.warmup,
        cases,
        target_met,
    })
}

/// A sandbox of one worker (the measurement is on one thread), or `None`
/// with a note when there is no `hallpass` binary to run as the worker.
fn start_sandbox() -> Option<PolicySandbox> {
    let started = crate::server::resolve_binary(None).and_then(|binary| {
        let mut config = SandboxConfig::new(binary);
        config.workers = 1;
        Ok(PolicySandbox::new(config)?)
    });
    match started {
        Ok(sandbox) => Some(sandbox),
        Err(error) => {
            eprintln!("policy: no sandbox rows: {error:#}");
            None
        }
    }
}

/// Latency of `evaluate` over the inputs in turn, after a warm-up, and the
/// evaluations that failed.
fn time(
    options: &Options,
    stop: &AtomicBool,
    inputs: &[Value],
    mut evaluate: impl FnMut(&Value) -> Result<()>,
) -> Result<(Summary, Errors)> {
    let mut latencies = Latencies::new()?;
    let mut errors = Errors::default();
    for i in 0..options.warmup + options.iterations {
        if stop.load(Ordering::Relaxed) {
            bail!("stopped");
        }
        let input = &inputs[(i % inputs.len() as u64) as usize];
        let started = Instant::now();
        let outcome = evaluate(input);
        let elapsed = started.elapsed();
        match outcome {
            Ok(()) if i >= options.warmup => latencies.record(elapsed),
            Ok(()) => {}
            // Counted rather than fatal: one evaluation stalled past the time
            // limit on a busy machine says something, but not that the run
            // is worthless.
            Err(error) => {
                errors.count += 1;
                errors.first.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    Ok((latencies.summary(), errors))
}

pub fn print(report: &Report) {
    println!(
        "\nPolicy decision latency, one thread (PolicySandbox: one worker process) — {} CPU(s) {}; \
         {} evaluations per row after {} warm-up",
        report.machine.cpus, report.machine.cpu_model, report.iterations, report.warmup
    );
    let micros = |ms: f64| {
        let us = ms * 1000.0;
        if us >= 100.0 {
            format!("{us:.0}")
        } else {
            format!("{us:.1}")
        }
    };
    let rows: Vec<Vec<String>> = report
        .cases
        .iter()
        .map(|case| {
            vec![
                format!("{} ({} rules)", case.policy_set, case.rules),
                case.engine.clone(),
                micros(case.latency.p50_ms),
                micros(case.latency.p99_ms),
                micros(case.latency.mean_ms),
                micros(case.latency.max_ms),
                case.errors.count.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "policy set",
            "engine",
            "p50 µs",
            "p99 µs",
            "mean µs",
            "max µs",
            "errors",
        ],
        &rows,
    );
    for case in &report.cases {
        if let Some(first) = &case.errors.first {
            println!(
                "  {} / {}: {} failed, the first with: {first}",
                case.policy_set, case.engine, case.errors.count
            );
        }
    }
    if let Some(case) = report.cases.first() {
        println!(
            "\nTarget: p99 of PolicySet::evaluate on the examples <= {TARGET_P99_MICROS:.0} µs: {} µs, {}",
            micros(case.latency.p99_ms),
            if report.target_met { "met" } else { "MISSED" }
        );
    }
}

/// The decision rules written in `modules`, by a rough count of rule heads.
fn count_rules(modules: &[PolicyModule]) -> usize {
    modules
        .iter()
        .flat_map(|m| m.source.lines())
        .filter(|line| DECISION_RULES.iter().any(|rule| line.starts_with(rule)))
        .count()
}

/// Bare regorus: one engine, the same modules, `eval_rule` per rule.
struct Bare {
    engine: regorus::Engine,
    /// The decision rules the modules declare (evaluating another is an error).
    rules: Vec<&'static str>,
}

impl Bare {
    fn new(modules: &[PolicyModule]) -> Result<Bare> {
        let mut engine = regorus::Engine::new();
        for module in modules {
            engine
                .add_policy(module.name.clone(), module.source.clone())
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        }
        engine.set_input(regorus::Value::new_object());
        let rules = DECISION_RULES
            .into_iter()
            .filter(|rule| engine.eval_rule(format!("data.hallpass.request.{rule}")).is_ok())
            .collect();
        Ok(Bare { engine, rules })
    }

    fn evaluate(&mut self, input: &Value) -> Result<Vec<regorus::Value>> {
        self.engine.set_input(regorus::Value::from(input.clone()));
        let mut values = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let value = self
                .engine
                .eval_rule(format!("data.hallpass.request.{rule}"))
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
            values.push(value);
        }
        Ok(values)
    }

    /// The same decision `PolicySet::evaluate` makes, for the check.
    fn decide(&mut self, input: &Value) -> Result<PolicyDecision> {
        let values = self.evaluate(input)?;
        let mut decision = PolicyDecision::default();
        for (rule, value) in self.rules.iter().zip(values) {
            let json: Value = match value {
                regorus::Value::Undefined => continue,
                value => serde_json::from_str(&value.to_string())?,
            };
            match *rule {
                "deny" => {
                    let set: BTreeSet<String> = serde_json::from_value(json)?;
                    decision.deny = set.into_iter().collect();
                }
                "auto_approve" => decision.auto_approve = json.as_bool().unwrap_or(false),
                "approval_flow" => decision.approval_flow = json.as_str().map(str::to_string),
                _ => {
                    decision.max_duration_seconds = match json {
                        Value::Array(caps) => caps.iter().filter_map(Value::as_u64).min(),
                        other => other.as_u64(),
                    }
                }
            }
        }
        Ok(decision)
    }
}

/// Requests that exercise different rules: an ordinary dev, on-call inside
/// and beyond an hour, a contractor in and out of hours, a prod write with
/// and without a ticket, break-glass by SRE and by someone else. The
/// generated set's role names and principals are mixed in so its rules fire.
fn inputs() -> Vec<Value> {
    let people: [(&str, &[&str]); 6] = [
        ("alice", &["dev"]),
        ("bob", &["dev", "oncall"]),
        ("carol", &["contractors"]),
        ("sam", &["sre"]),
        ("user-0002", &["team-2"]),
        ("dave", &["team-17", "dev"]),
    ];
    let mut inputs = Vec::new();
    for (i, (name, groups)) in people.iter().enumerate() {
        for variant in 0..2 {
            let n = i * 2 + variant;
            let prod_write = n % 3 == 0;
            inputs.push(json!({
                "principal": {"name": name, "kind": "user", "groups": groups},
                "role": {
                    "name": if prod_write { format!("svc-{:04}-prod", n * 4) } else { format!("svc-{:04}-staging", n * 4 + 3) },
                    "target": "pg-main",
                    "target_type": "postgres",
                    "max_duration_seconds": 14400,
                    "labels": {
                        "env": if prod_write { "prod" } else { "staging" },
                        "access": if prod_write { "write" } else { "read" },
                        "team": format!("team-{}", n + 1),
                    },
                },
                "request": {
                    "duration_seconds": if variant == 0 { 3600 } else { 10800 },
                    "reason": "INC-1",
                    "ticket": if n % 2 == 0 { Value::Null } else { json!("INC-1") },
                    "emergency": name == &"sam" || n == 11,
                    "extension": false,
                    "scheduled_start": null,
                },
                "context": {
                    "now": "2026-11-18T10:00:00Z",
                    "weekday": if variant == 0 { "Wed" } else { "Sat" },
                    "hour": if variant == 0 { 10 } else { 21 },
                    "active_grants": n % 3,
                },
            }));
        }
    }
    inputs
}

/// `rules` rules in package hallpass.request, in modules of 100, each kind a
/// quarter: a prod role reserved to one team, a team's duration limit, a
/// principal barred from prod, and a per-role cap.
fn generated_modules(rules: usize) -> Vec<PolicyModule> {
    const PER_MODULE: usize = 100;
    let mut modules = Vec::new();
    for start in (0..rules).step_by(PER_MODULE) {
        let mut source = String::from("package hallpass.request\n\nimport rego.v1\n\n");
        for i in start..(start + PER_MODULE).min(rules) {
            let rule = match i % 4 {
                0 => format!(
                    "deny contains \"svc-{i:04}-prod is reserved to team-{i}\" if {{\n\
                     \tinput.role.name == \"svc-{i:04}-prod\"\n\
                     \tnot \"team-{i}\" in input.principal.groups\n}}\n"
                ),
                1 => format!(
                    "deny contains \"team-{i} roles: at most 2h\" if {{\n\
                     \tinput.role.labels.team == \"team-{i}\"\n\
                     \tinput.request.duration_seconds > 7200\n}}\n"
                ),
                2 => format!(
                    "deny contains \"user-{i:04} may not use prod roles\" if {{\n\
                     \tinput.principal.name == \"user-{i:04}\"\n\
                     \tinput.role.labels.env == \"prod\"\n}}\n"
                ),
                _ => format!(
                    "max_duration_seconds contains {} if input.role.name == \"svc-{i:04}-staging\"\n",
                    1800 + i
                ),
            };
            source.push_str(&rule);
            source.push('\n');
        }
        modules.push(PolicyModule {
            name: format!("generated/rules-{:04}.rego", start / PER_MODULE),
            source,
        });
    }
    modules
}

/// The examples directory of this source tree.
pub fn default_examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}
