//! The example policies in `examples/policies`: their own tests pass, and
//! they decide as their README says for a few concrete requests.

use std::path::PathBuf;

use hallpass_policy::{PolicyDecision, PolicyModule, PolicySet, load_dir, run_tests};
use serde_json::{Value, json};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}

fn examples() -> Vec<PolicyModule> {
    load_dir(&examples_dir()).expect("examples/policies loads")
}

/// The example set without its tests, as it would be uploaded.
fn policy_set() -> PolicySet {
    let modules: Vec<PolicyModule> = examples()
        .into_iter()
        .filter(|m| !m.name.ends_with("_test.rego"))
        .collect();
    PolicySet::compile(&modules).expect("the example policies compile")
}

/// A dev asking for a read role on staging, on a Wednesday morning.
fn request() -> Value {
    json!({
        "principal": {"name": "alice", "kind": "user", "groups": ["dev"]},
        "role": {"name": "staging-db", "target": "staging-pg", "target_type": "postgres",
                 "max_duration_seconds": 14400, "labels": {"env": "staging", "access": "read"}},
        "request": {"duration_seconds": 3600, "reason": "debugging", "ticket": null,
                    "emergency": false, "extension": false, "scheduled_start": null},
        "context": {"now": "2026-11-18T10:00:00Z", "weekday": "Wed", "hour": 10, "active_grants": 0}
    })
}

#[test]
fn example_tests_all_pass() {
    let modules = examples();
    let names: Vec<&str> = modules.iter().filter_map(|m| m.name.rsplit('/').next()).collect();
    for file in ["oncall.rego", "prod_write.rego", "contractors.rego", "breakglass.rego"] {
        assert!(names.contains(&file), "{file} missing from {names:?}");
        let test = file.replace(".rego", "_test.rego");
        assert!(names.contains(&test.as_str()), "{test} missing from {names:?}");
    }
    let report = run_tests(&modules).expect("the examples compile");
    let failures: Vec<String> = report
        .results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{} {}: {:?}", r.module, r.name, r.error))
        .collect();
    assert!(failures.is_empty(), "failing example tests: {failures:#?}");
    assert!(report.passed() >= 18, "only {} tests ran", report.passed());
}

#[test]
fn ordinary_request_gets_the_default_decision() {
    assert_eq!(policy_set().evaluate(&request()).unwrap(), PolicyDecision::default());
}

#[test]
fn oncall_self_serves_up_to_an_hour() {
    let set = policy_set();
    let mut input = request();
    input["principal"]["groups"] = json!(["dev", "oncall"]);
    assert!(set.evaluate(&input).unwrap().auto_approve);
    input["request"]["duration_seconds"] = json!(7200);
    assert_eq!(set.evaluate(&input).unwrap(), PolicyDecision::default());
}

#[test]
fn prod_write_needs_a_ticket() {
    let set = policy_set();
    let mut input = request();
    input["role"]["labels"] = json!({"env": "prod", "access": "write"});
    assert_eq!(
        set.evaluate(&input).unwrap().deny,
        vec!["prod write roles need a ticket: pass --ticket"]
    );
    input["request"]["ticket"] = json!("CHG-7");
    assert!(set.evaluate(&input).unwrap().deny.is_empty());
}

#[test]
fn contractors_are_capped_and_kept_to_working_hours() {
    let set = policy_set();
    let mut input = request();
    input["principal"] = json!({"name": "carol", "kind": "user", "groups": ["contractors"]});
    let decision = set.evaluate(&input).unwrap();
    assert_eq!(decision.max_duration_seconds, Some(7200));
    assert!(decision.deny.is_empty());

    input["context"]["weekday"] = json!("Sat");
    input["context"]["hour"] = json!(9);
    let decision = set.evaluate(&input).unwrap();
    assert_eq!(
        decision.deny,
        vec!["contractors may request access Mon-Fri, 08:00-18:00 UTC only (it is Sat 09:00 UTC)"]
    );
}

#[test]
fn only_sre_may_break_glass_and_denials_add_up() {
    let set = policy_set();
    let mut input = request();
    input["request"]["emergency"] = json!(true);
    input["principal"]["groups"] = json!(["sre"]);
    assert!(set.evaluate(&input).unwrap().deny.is_empty());

    // A contractor breaking glass into a prod write role on Sunday night
    // collects every refusal.
    input["principal"]["groups"] = json!(["contractors"]);
    input["role"]["labels"] = json!({"env": "prod", "access": "write"});
    input["context"]["weekday"] = json!("Sun");
    input["context"]["hour"] = json!(23);
    let decision = set.evaluate(&input).unwrap();
    assert_eq!(decision.deny.len(), 3, "{:?}", decision.deny);
    assert!(
        decision.deny[0].starts_with("break-glass is reserved"),
        "{:?}",
        decision.deny
    );
}
