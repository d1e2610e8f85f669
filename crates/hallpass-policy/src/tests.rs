//! Unit tests of compile, evaluate, hash, run_tests and load_dir together.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::*;

fn module(name: &str, source: &str) -> PolicyModule {
    PolicyModule {
        name: name.to_string(),
        source: source.to_string(),
    }
}

fn compile(modules: &[(&str, &str)]) -> Result<PolicySet, PolicyError> {
    let modules: Vec<PolicyModule> = modules.iter().map(|(name, source)| module(name, source)).collect();
    PolicySet::compile(&modules)
}

fn input() -> serde_json::Value {
    json!({
        "principal": {"name": "alice", "kind": "user", "groups": ["dev"]},
        "role": {"name": "prod-db", "target": "prod-pg", "target_type": "postgres",
                 "max_duration_seconds": 14400, "labels": {"env": "prod"}},
        "request": {"duration_seconds": 3600, "reason": "INC-1", "ticket": "INC-1",
                    "emergency": false, "extension": false, "scheduled_start": null},
        "context": {"now": "2026-11-21T10:00:00Z", "weekday": "Sat", "hour": 10, "active_grants": 1}
    })
}

fn compile_error(result: Result<PolicySet, PolicyError>) -> (String, u32, u32, String) {
    match result {
        Err(PolicyError::Compile {
            module,
            line,
            column,
            message,
        }) => (module, line, column, message),
        Err(other) => panic!("expected a compile error, got {other}"),
        Ok(_) => panic!("expected a compile error, it compiled"),
    }
}

#[test]
fn policy_set_is_send_sync_and_cheap_to_share() {
    fn shared<T: Send + Sync + Clone>() {}
    shared::<PolicySet>();
}

#[test]
fn syntax_error_is_placed_at_its_line_and_column() {
    let source = "package hallpass.request\n\ndeny contains \"x\" if input.a ==\n";
    let (module, line, column, message) = compile_error(compile(&[("policies/a.rego", source)]));
    assert_eq!(module, "policies/a.rego");
    assert_eq!((line, column), (4, 1), "{message}");
    assert_eq!(message, "expecting expression");

    let source = "package hallpass.request\n\ndeny contains \"x\" if { input.a == ] }\n";
    let error = compile(&[("a.rego", source)]).unwrap_err();
    assert!(error.to_string().starts_with("a.rego:3:"), "{error}");
    let (_, line, column, _) = compile_error(compile(&[("a.rego", source)]));
    assert_eq!((line, column), (3, 35));
}

#[test]
fn rego_v0_is_refused_with_a_hint() {
    let source = "package hallpass.request\n\nauto_approve { input.x }\n";
    let (_, line, column, message) = compile_error(compile(&[("old.rego", source)]));
    assert_eq!((line, column), (3, 14));
    assert!(message.contains("`if` keyword is required"), "{message}");
    assert!(message.contains("Rego v1"), "{message}");
}

#[test]
fn rego_v1_with_and_without_the_import() {
    let with = "package hallpass.request\nimport rego.v1\ndeny contains \"a\" if \"dev\" in input.principal.groups\n";
    let without = "package hallpass.request\ndeny contains \"b\" if \"dev\" in input.principal.groups\n";
    let set = compile(&[("with.rego", with), ("without.rego", without)]).unwrap();
    assert_eq!(set.evaluate(&input()).unwrap().deny, vec!["a", "b"]);
}

#[test]
fn packages_outside_hallpass_are_refused_at_the_package_line() {
    let source = "# A helper.\npackage foo\n\nx := 1\n";
    let (module, line, column, message) = compile_error(compile(&[("foo.rego", source)]));
    assert_eq!((module.as_str(), line, column), ("foo.rego", 2, 1));
    assert!(message.contains("package foo is not allowed"), "{message}");
    assert!(message.contains("hallpass.request_test"), "{message}");

    let (_, line, _, message) = compile_error(compile(&[("h.rego", "package hallpass\nx := 1\n")]));
    assert_eq!(line, 1);
    assert!(message.contains("package hallpass is not allowed"), "{message}");

    let (_, _, _, message) = compile_error(compile(&[("d.rego", "package hallpass.request.deny\nx := 1\n")]));
    assert!(
        message.contains("declare that rule in package hallpass.request"),
        "{message}"
    );

    let helper = "package hallpass.lib\nis_sre if \"sre\" in input.principal.groups\n";
    let rule = "package hallpass.request\nimport data.hallpass.lib\ndeny contains \"sre\" if lib.is_sre\n";
    assert!(compile(&[("lib.rego", helper), ("rule.rego", rule)]).is_ok());
}

#[test]
fn duplicate_module_names_are_refused() {
    let source = "package hallpass.request\n";
    let (module, _, _, message) = compile_error(compile(&[("a.rego", source), ("a.rego", source)]));
    assert_eq!(module, "a.rego");
    assert!(message.contains("module names must be unique"), "{message}");
}

#[test]
fn unknown_functions_are_refused_at_upload() {
    let source = "package hallpass.request\n\ndeny contains msg if {\n  msg := sprintf_x(\"%s\", [input.a])\n}\n";
    let (module, line, column, message) = compile_error(compile(&[("typo.rego", source)]));
    assert_eq!((module.as_str(), line, column), ("typo.rego", 4, 10));
    assert!(message.starts_with("unknown function sprintf_x"), "{message}");

    // Builtins, functions of other modules (also through imports) and print pass.
    let lib = "package hallpass.lib\nshout(s) := upper(s)\n";
    let rule = "package hallpass.request\nimport data.hallpass.lib\n\
                deny contains lib.shout(\"no\") if { print(\"x\"); time.now_ns() > 0 }\n";
    let set = compile(&[("lib.rego", lib), ("rule.rego", rule)]).unwrap();
    assert_eq!(set.evaluate(&input()).unwrap().deny, vec!["NO"]);
}

#[test]
fn deny_combines_across_modules() {
    let one = "package hallpass.request\ndeny contains \"prod needs a ticket\" if input.role.labels.env == \"prod\"\n";
    let two = "package hallpass.request\ndeny contains \"no weekends\" if input.context.weekday in {\"Sat\", \"Sun\"}\n\
               deny contains \"prod needs a ticket\" if true\n";
    let set = compile(&[("one.rego", one), ("two.rego", two)]).unwrap();
    let decision = set.evaluate(&input()).unwrap();
    assert_eq!(decision.deny, vec!["no weekends", "prod needs a ticket"]);
    assert!(!decision.auto_approve);
}

#[test]
fn max_duration_is_the_lowest_cap_of_all_modules() {
    let one = "package hallpass.request\nmax_duration_seconds contains 7200 if input.role.labels.env == \"prod\"\n";
    let two = "package hallpass.request\nmax_duration_seconds contains 1800 if input.context.weekday == \"Sat\"\n\
               max_duration_seconds contains 3600 if true\n";
    let set = compile(&[("one.rego", one), ("two.rego", two)]).unwrap();
    assert_eq!(set.evaluate(&input()).unwrap().max_duration_seconds, Some(1800));

    let single = "package hallpass.request\nmax_duration_seconds := 900 if true\n";
    let set = compile(&[("single.rego", single)]).unwrap();
    assert_eq!(set.evaluate(&input()).unwrap().max_duration_seconds, Some(900));
}

#[test]
fn every_decision_rule_is_read() {
    let source = "package hallpass.request\n\
                  auto_approve if \"dev\" in input.principal.groups\n\
                  approval_flow := \"two-person\" if input.role.labels.env == \"prod\"\n\
                  max_duration_seconds := 3600\n";
    let decision = compile(&[("all.rego", source)]).unwrap().evaluate(&input()).unwrap();
    assert_eq!(
        decision,
        PolicyDecision {
            deny: vec![],
            auto_approve: true,
            approval_flow: Some("two-person".into()),
            max_duration_seconds: Some(3600),
        }
    );
}

#[test]
fn undefined_rules_are_absent() {
    let source = "package hallpass.request\n\
                  auto_approve if input.nothing\n\
                  approval_flow := \"x\" if input.nothing\n\
                  max_duration_seconds := 1 if input.nothing\n\
                  deny contains \"x\" if input.nothing\n";
    let decision = compile(&[("a.rego", source)]).unwrap().evaluate(&input()).unwrap();
    assert_eq!(decision, PolicyDecision::default());
}

#[test]
fn wrong_types_are_decision_errors() {
    for (source, says) in [
        (
            "auto_approve := \"yes\"",
            "auto_approve is a string: \"yes\"; expected a boolean",
        ),
        ("approval_flow := 3", "approval_flow is a number: 3"),
        ("max_duration_seconds := \"1h\"", "max_duration_seconds is a string"),
        (
            "max_duration_seconds contains -1 if true",
            "max_duration_seconds contains a number: -1",
        ),
        ("deny contains 42 if true", "deny contains a number: 42"),
        ("deny := \"no\"", "deny is a string"),
    ] {
        let source = format!("package hallpass.request\n{source}\n");
        let error = compile(&[("a.rego", &source)]).unwrap().evaluate(&input()).unwrap_err();
        assert!(matches!(error, PolicyError::Decision(_)), "{source}: {error}");
        assert!(error.to_string().contains(says), "{source}: {error}");
    }
}

#[test]
fn conflicting_values_are_evaluation_errors() {
    let one = "package hallpass.request\nauto_approve := true if input.principal.name == \"alice\"\n";
    let two = "package hallpass.request\nauto_approve := false if input.context.weekday == \"Sat\"\n";
    let set = compile(&[("one.rego", one), ("two.rego", two)]).unwrap();
    let error = set.evaluate(&input()).unwrap_err();
    let PolicyError::Evaluation(message) = &error else {
        panic!("expected an evaluation error, got {error}");
    };
    assert!(message.contains(".rego:2:"), "{message}");
    // Only one of them applies on Sunday, so no conflict then.
    let mut sunday = input();
    sunday["context"]["weekday"] = json!("Sun");
    assert!(set.evaluate(&sunday).unwrap().auto_approve);
}

#[test]
fn builtin_errors_are_evaluation_errors() {
    let source = "package hallpass.request\ndeny contains \"x\" if to_number(input.request.reason) > 1\n";
    let error = compile(&[("a.rego", source)]).unwrap().evaluate(&input()).unwrap_err();
    assert!(matches!(error, PolicyError::Evaluation(_)), "{error}");
    assert!(error.to_string().contains("a.rego:2:"), "{error}");
}

#[test]
fn empty_set_decides_the_default() {
    let set = PolicySet::compile(&[]).unwrap();
    assert!(set.is_empty());
    assert_eq!(set.evaluate(&input()).unwrap(), PolicyDecision::default());
    assert_eq!(set.hash(), set_hash(&[]));

    // Modules, but none in hallpass.request: the default too.
    let set = compile(&[("lib.rego", "package hallpass.lib\nx := 1\n")]).unwrap();
    assert!(!set.is_empty());
    assert_eq!(set.evaluate(&input()).unwrap(), PolicyDecision::default());
}

#[test]
fn runaway_policy_is_stopped() {
    let source = "package hallpass.request\n\
                  deny contains \"never\" if {\n\
                    some i in numbers.range(1, 100000)\n\
                    some j in numbers.range(1, 100000)\n\
                    i + j < 0\n\
                  }\n";
    let set = compile(&[("loop.rego", source)]).unwrap();
    let started = Instant::now();
    let error = set.evaluate(&input()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(
        error.to_string(),
        "policy evaluation failed: stopped at the time limit of 100 ms (a loop over too much data?)"
    );
    // The set still works afterwards.
    assert!(set.evaluate(&json!({})).is_err());
}

#[test]
fn evaluates_from_many_threads() {
    let source = "package hallpass.request\n\
                  deny contains sprintf(\"%s may not\", [input.principal.name]) if input.principal.name != \"sam\"\n";
    let set = compile(&[("a.rego", source)]).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let set = set.clone();
            scope.spawn(move || {
                for i in 0..200 {
                    let name = format!("user{thread}-{i}");
                    let decision = set.evaluate(&json!({"principal": {"name": name}})).unwrap();
                    assert_eq!(decision.deny, vec![format!("{name} may not")]);
                }
            });
        }
    });
}

#[test]
fn hash_is_stable_and_independent_of_order() {
    let a = module("a.rego", "package hallpass.request\n");
    let b = module("b.rego", "package hallpass.lib\n");
    let forward = set_hash(&[a.clone(), b.clone()]);
    assert_eq!(forward, set_hash(&[b.clone(), a.clone()]));
    assert_eq!(forward.len(), 64);
    assert_eq!(PolicySet::compile(&[b.clone(), a.clone()]).unwrap().hash(), forward);
    // Known value: pins the encoding, which audit events refer to.
    assert_eq!(
        set_hash(&[]),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // The length prefixes keep name and source apart.
    assert_ne!(set_hash(&[module("ab", "c")]), set_hash(&[module("a", "bc")]));
    assert_ne!(forward, set_hash(&[a, module("b.rego", "package hallpass.lib\n\n")]));
}

#[test]
fn run_tests_reports_pass_fail_and_error() {
    let policy = "package hallpass.request\nauto_approve if \"oncall\" in input.principal.groups\n";
    let tests = "package hallpass.request_test\n\
                 import data.hallpass.request\n\
                 test_oncall_passes if request.auto_approve with input as {\"principal\": {\"groups\": [\"oncall\"]}}\n\
                 test_dev_fails if request.auto_approve with input as {\"principal\": {\"groups\": [\"dev\"]}}\n\
                 test_errors if to_number(\"x\") == 1\n\
                 test_value := 3\n\
                 helper := 1\n";
    let modules = [module("p.rego", policy), module("p_test.rego", tests)];
    let report = run_tests(&modules).unwrap();
    let outcome: Vec<(&str, bool, bool)> = report
        .results
        .iter()
        .map(|r| (r.name.as_str(), r.passed, r.error.is_some()))
        .collect();
    assert_eq!(
        outcome,
        vec![
            ("test_oncall_passes", true, false),
            ("test_dev_fails", false, false),
            ("test_errors", false, true),
            ("test_value", false, true),
        ]
    );
    assert_eq!((report.passed(), report.failed(), report.ok()), (1, 3, false));
    let error = report.results[2].error.as_deref().unwrap();
    assert!(error.contains("p_test.rego:5:"), "{error}");
    assert_eq!(report.results[0].package, "hallpass.request_test");
    assert_eq!(report.results[0].module, "p_test.rego");

    let broken = [module("p.rego", "package hallpass.request\nx := \n")];
    assert!(matches!(run_tests(&broken), Err(PolicyError::Compile { .. })));
    let none = run_tests(&[module("p.rego", policy)]).unwrap();
    assert!(none.ok() && none.results.is_empty());
}

#[test]
fn load_dir_reads_rego_files_recursively_and_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("b.rego"), "package hallpass.request\n").unwrap();
    std::fs::write(root.join("sub/deeper/a.rego"), "package hallpass.lib\n").unwrap();
    std::fs::write(root.join("a.rego"), "package hallpass.request_test\n").unwrap();
    std::fs::write(root.join("notes.md"), "not rego").unwrap();
    let modules = load_dir(root).unwrap();
    let names: Vec<String> = modules.iter().map(|m| m.name.clone()).collect();
    let expected: Vec<String> = ["a.rego", "b.rego", "sub/deeper/a.rego"]
        .iter()
        .map(|name| root.join(name).to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, expected);
    assert_eq!(modules[2].source, "package hallpass.lib\n");

    // One file may be given instead of a directory.
    let single = load_dir(&root.join("b.rego")).unwrap();
    assert_eq!(single.len(), 1);

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("README.md"), "").unwrap();
    let error = load_dir(empty.path()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("no .rego files in {}", empty.path().display())
    );

    let missing = root.join("missing");
    let error = load_dir(&missing).unwrap_err();
    assert!(matches!(error, LoadError::Io { .. }));
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot read {}:", missing.display())),
        "{error}"
    );
}

/// regorus 0.14 misreads a package split over modules when it is read as a
/// whole; see "Packages split over several modules" in set.rs.
#[test]
fn packages_split_over_modules_read_as_a_whole() {
    let header = "package hallpass.request\n";
    let first = format!("{header}deny contains \"other\" if input.nothing\n");
    // `has_ticket` is declared after the rule that uses it, in the second
    // module of the package: the case regorus gets wrong on its own.
    let second = format!(
        "{header}deny contains \"ticket\" if not has_ticket\n\
         auto_approve if has_ticket\n\
         has_ticket if input.ticket == \"T-1\"\n"
    );
    let tests = "package hallpass.request_test\n\
                 import data.hallpass.request\n\
                 import data.hallpass\n\
                 test_alias if count(request.deny) == 0 with input as {\"ticket\": \"T-1\"}\n\
                 test_alias_auto if request.auto_approve with input as {\"ticket\": \"T-1\"}\n\
                 test_alias_denied if request.deny == {\"ticket\"} with input as {}\n\
                 test_parent if count(hallpass.request.deny) == 0 with input as {\"ticket\": \"T-1\"}\n\
                 test_bracket if count(data.hallpass.request[\"deny\"]) == 0 with input as {\"ticket\": \"T-1\"}\n";
    let modules = [
        module("a.rego", &first),
        module("b.rego", &second),
        module("t.rego", tests),
    ];
    let report = run_tests(&modules).unwrap();
    let failed: Vec<&str> = report
        .results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.name.as_str())
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(report.passed(), 5);

    // The same in a policy: a helper package of two modules, imported.
    let lib_one = "package hallpass.lib\nreasons contains \"one\" if input.nothing\n";
    let lib_two =
        "package hallpass.lib\nreasons contains \"two\" if weekend\nweekend if input.context.weekday == \"Sat\"\n";
    let policy = "package hallpass.request\nimport data.hallpass.lib\ndeny contains r if some r in lib.reasons\n";
    let set = compile(&[("l1.rego", lib_one), ("l2.rego", lib_two), ("p.rego", policy)]).unwrap();
    assert_eq!(set.evaluate(&input()).unwrap().deny, vec!["two"]);
    // The generated rules never show in data.
    let peek = "package hallpass.request\nimport data.hallpass.lib\n\
                deny contains k if some k, _ in lib\n";
    let set = compile(&[("l1.rego", lib_one), ("l2.rego", lib_two), ("p.rego", peek)]).unwrap();
    assert_eq!(set.evaluate(&input()).unwrap().deny, vec!["reasons", "weekend"]);
}
