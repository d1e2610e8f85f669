//! The policy sandbox with the real `hallpass` binary as its worker: the
//! same decisions as in-process, builtins and memory bombs stopped at the
//! limits, a pool that serves many threads and refuses a flood, and no
//! worker process left behind. The memory limit is checked against the
//! allocator the binary really uses, jemalloc, for Rust and C code alike.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hallpass_policy::{Evaluator, PolicyModule, PolicySandbox, PolicySet, SandboxConfig, load_dir};
use serde_json::{Value, json};

const TIME_LIMIT: Duration = Duration::from_millis(100);

fn config(workers: usize) -> SandboxConfig {
    let mut config = SandboxConfig::new(env!("CARGO_BIN_EXE_hallpass"));
    config.workers = workers;
    config.time_limit = TIME_LIMIT;
    config
}

fn compile(source: &str) -> PolicySet {
    PolicySet::compile(&[PolicyModule {
        name: "test.rego".into(),
        source: format!("package hallpass.request\n\n{source}\n"),
    }])
    .unwrap()
}

fn examples() -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let modules: Vec<PolicyModule> = load_dir(&dir)
        .unwrap()
        .into_iter()
        .filter(|module| !module.name.ends_with("_test.rego"))
        .collect();
    PolicySet::compile(&modules).unwrap()
}

/// Requests the example policies decide differently: plain dev, on-call,
/// contractor at night, prod write without a ticket, break-glass.
fn inputs() -> Vec<Value> {
    let people: [(&str, &[&str], &str, bool); 5] = [
        ("alice", &["dev"], "staging", false),
        ("bob", &["oncall"], "prod", false),
        ("carol", &["contractors"], "prod", false),
        ("dave", &["dev"], "prod", false),
        ("sam", &["dev"], "prod", true),
    ];
    people
        .iter()
        .map(|(name, groups, env, emergency)| {
            json!({
                "principal": {"name": name, "kind": "user", "groups": groups},
                "role": {"name": format!("db-{env}"), "target": "pg", "target_type": "postgres",
                         "max_duration_seconds": 14400, "labels": {"env": env, "access": "write"}},
                "request": {"duration_seconds": 10800, "reason": "INC-1", "ticket": null,
                            "emergency": emergency, "extension": false, "scheduled_start": null},
                "context": {"now": "2026-11-21T22:00:00Z", "weekday": "Sat", "hour": 22, "active_grants": 0}
            })
        })
        .collect()
}

/// Fails with how long it took when `run` did not end within a small
/// multiple of the time limit (generous for a loaded machine).
fn within_limit<T>(what: &str, run: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let outcome = run();
    let took = started.elapsed();
    assert!(took < TIME_LIMIT * 5 + Duration::from_secs(1), "{what} took {took:?}");
    outcome
}

fn is_gone(pid: u32) -> bool {
    // A zombie (not reaped) still has its /proc entry.
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn decisions_and_errors_are_the_same_as_in_process() {
    let sandbox = PolicySandbox::new(config(2)).unwrap();
    let set = examples();
    let in_process = Evaluator::default();
    let mut denied = 0;
    for input in inputs() {
        let expected = in_process.evaluate(&set, &input).unwrap();
        denied += usize::from(!expected.deny.is_empty());
        assert_eq!(sandbox.evaluate(&set, &input).unwrap(), expected, "{input}");
    }
    assert!(
        denied > 0 && denied < inputs().len(),
        "the inputs should not all decide alike"
    );

    let failing = compile("deny contains msg if msg := sprintf(\"%d\", [1 / 0])");
    let expected = in_process.evaluate(&failing, &json!({})).unwrap_err();
    assert_eq!(sandbox.evaluate(&failing, &json!({})).unwrap_err(), expected);

    // Switching between sets: each worker compiles each once, then keeps it.
    let other = compile("max_duration_seconds := 600");
    for _ in 0..3 {
        assert_eq!(
            sandbox.evaluate(&other, &json!({})).unwrap().max_duration_seconds,
            Some(600)
        );
        assert_eq!(
            sandbox.evaluate(&set, &inputs()[0]).unwrap(),
            in_process.evaluate(&set, &inputs()[0]).unwrap()
        );
    }
}

#[test]
fn numbers_range_over_a_huge_range_is_stopped_and_the_pool_recovers() {
    let sandbox = PolicySandbox::new(config(1)).unwrap();
    let bombs = [
        compile("deny contains \"x\" if count(numbers.range(1, 1000000000)) > 0"),
        compile("deny contains \"x\" if {\n\txs := [x | some x in numbers.range(1, 1000000000)]\n\tcount(xs) > 0\n}"),
        compile("deny contains \"x\" if {\n\tsome i in numbers.range(1, 1000000000)\n\ti < 0\n}"),
        // A range that fits in memory, and a comprehension looping over it.
        compile("deny contains \"x\" if count([y | some x in numbers.range(1, 5000000); y := x * 2]) < 0"),
    ];
    let fine = compile("deny contains \"no\" if input.x == 1");
    for bomb in &bombs {
        let error = within_limit("the huge range", || sandbox.evaluate(bomb, &json!({}))).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("time limit of 100 ms") || text.contains("memory limit of 256 MiB"),
            "{text}"
        );
        let decision = within_limit("the next evaluation", || sandbox.evaluate(&fine, &json!({"x": 1}))).unwrap();
        assert_eq!(decision.deny, ["no"]);
    }
}

#[test]
fn a_builtin_running_past_the_time_limit_is_killed() {
    // Enough memory for the array, so only the clock can stop the builtin,
    // which fills 50 million elements without checking regorus's timer.
    let mut config = config(1);
    config.memory_limit_bytes = 2 << 30;
    let sandbox = PolicySandbox::new(config).unwrap();
    let before = sandbox.idle_worker_pids();
    let slow = compile("deny contains \"x\" if count(numbers.range(1, 50000000)) > 0");
    let error = within_limit("numbers.range", || sandbox.evaluate(&slow, &json!({}))).unwrap_err();
    assert_eq!(
        error.to_string(),
        "policy evaluation failed: stopped at the time limit of 100 ms (a loop over too much data, \
         or a builtin such as numbers.range given a huge range?)"
    );
    assert!(is_gone(before[0]), "the killed worker {} was reaped", before[0]);
    assert!(sandbox.idle_worker_pids().is_empty(), "the replacement starts lazily");
    let decision = sandbox.evaluate(&compile("auto_approve := true"), &json!({})).unwrap();
    assert!(decision.auto_approve);
    assert_eq!(sandbox.idle_worker_pids().len(), 1);
}

#[test]
fn memory_bombs_are_stopped_by_the_memory_limit() {
    // A long time limit, so only memory can stop them.
    let mut config = config(1);
    config.time_limit = Duration::from_secs(20);
    config.memory_limit_bytes = 64 << 20;
    let sandbox = PolicySandbox::new(config).unwrap();
    let thousand = "0123456789".repeat(100);
    let bombs = [
        // 120 MB in one array.
        compile("deny contains \"x\" if count(numbers.range(1, 5000000)) > 0"),
        // A 200 MB string from small parts.
        compile(&format!(
            "part := \"{thousand}\"\n\n\
             deny contains \"x\" if count(concat(\"\", [part | some _ in numbers.range(1, 200000)])) > 0"
        )),
    ];
    for bomb in &bombs {
        let error = sandbox.evaluate(bomb, &json!({})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "policy evaluation failed: exceeded the memory limit of 64 MiB (a huge array, set or string?)"
        );
    }
    let small = compile("deny contains \"x\" if count(numbers.range(1, 100000)) > 0");
    assert_eq!(sandbox.evaluate(&small, &json!({})).unwrap().deny, ["x"]);
}

#[test]
fn sixteen_threads_at_once_all_get_their_answer() {
    let mut config = config(2);
    config.queue_timeout = Duration::from_secs(60);
    let sandbox = PolicySandbox::new(config).unwrap();
    let set = Arc::new(examples());
    let inputs = Arc::new(inputs());
    let threads: Vec<_> = (0..16)
        .map(|thread| {
            let (sandbox, set, inputs) = (sandbox.clone(), set.clone(), inputs.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
                    let input = &inputs[(thread + i) % inputs.len()];
                    let expected = set.evaluate(input).unwrap();
                    assert_eq!(sandbox.evaluate(&set, input).unwrap(), expected);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn callers_get_an_error_when_no_worker_frees_up_in_time() {
    let mut config = config(1);
    config.time_limit = Duration::from_secs(2);
    config.queue_timeout = Duration::from_millis(200);
    let sandbox = PolicySandbox::new(config).unwrap();
    // A loop regorus's timer stops at 2 s: the only worker is busy until then.
    let stuck = compile(
        "deny contains \"x\" if {\n\tsome i in numbers.range(1, 100000)\n\tsome j in numbers.range(1, 100000)\n\ti * j < 0\n}",
    );
    let busy = {
        let sandbox = sandbox.clone();
        std::thread::spawn(move || sandbox.evaluate(&stuck, &json!({})))
    };
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let error = sandbox
        .evaluate(&compile("auto_approve := true"), &json!({}))
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(
        error.to_string(),
        "policy evaluation failed: no policy worker became free within 200 ms: all 1 are busy (slow policies, \
         or more requests at once than workers); the evaluation is refused rather than queued longer"
    );
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let stopped = busy.join().unwrap().unwrap_err();
    assert!(stopped.to_string().contains("time limit of 2000 ms"), "{stopped}");
    assert!(
        sandbox
            .evaluate(&compile("auto_approve := true"), &json!({}))
            .unwrap()
            .auto_approve
    );
}

#[test]
fn no_worker_is_left_after_the_sandbox_is_dropped() {
    let sandbox = PolicySandbox::new(config(2)).unwrap();
    let clone = sandbox.clone();
    let mut pids = sandbox.idle_worker_pids();
    assert_eq!(pids.len(), 2);
    // Both workers killed at a limit, then one replacement started.
    let bomb = compile("deny contains \"x\" if count(numbers.range(1, 1000000000)) > 0");
    for _ in 0..2 {
        let error = sandbox.evaluate(&bomb, &json!({})).unwrap_err();
        assert!(error.to_string().contains("limit"), "{error}");
    }
    assert!(sandbox.idle_worker_pids().is_empty());
    assert!(
        sandbox
            .evaluate(&compile("auto_approve := true"), &json!({}))
            .unwrap()
            .auto_approve
    );
    let replacement = sandbox.idle_worker_pids();
    assert_eq!(replacement.len(), 1);
    assert!(!pids.contains(&replacement[0]));
    for pid in &pids {
        assert!(is_gone(*pid), "the killed worker {pid} was reaped");
    }
    pids.extend(replacement);

    drop(sandbox);
    assert!(!is_gone(pids[2]), "a clone still holds the workers");
    drop(clone);
    for pid in &pids {
        assert!(is_gone(*pid), "worker {pid} is still there (or a zombie)");
    }
}

#[test]
fn workers_inherit_no_environment_but_the_loaders_and_backtraces() {
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some() || std::env::var_os("PATH").is_some());
    let sandbox = PolicySandbox::new(config(1)).unwrap();
    let pid = sandbox.idle_worker_pids()[0];
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let names: Vec<String> = environ
        .split(|byte| *byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry.split(|b| *b == b'=').next().unwrap_or_default()).into_owned())
        .collect();
    for name in &names {
        let allowed = ["LD_LIBRARY_PATH", "RUST_BACKTRACE", "MALLOC_ARENA_MAX"];
        assert!(allowed.contains(&name.as_str()), "{names:?}");
    }
}

#[test]
fn the_worker_subcommand_is_hidden_from_help() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("policy"), "{help}");
    assert!(!help.contains(hallpass_policy::WORKER_SUBCOMMAND), "{help}");
}

/// The binary allocates with jemalloc, SQLite's C code included: jemalloc
/// (and only jemalloc) prints its statistics at exit when `MALLOC_CONF`
/// asks it to, and it reads the unprefixed variable only when it has
/// replaced `malloc` itself rather than sitting beside glibc's.
#[test]
fn the_binary_allocates_with_jemalloc_in_place_of_malloc() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hallpass"))
        .arg("--version")
        .env("MALLOC_CONF", "stats_print:true")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Begin jemalloc statistics"), "{stderr}");
}
