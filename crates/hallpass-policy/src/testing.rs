//! `run_tests`: the `test_` rules of a set of modules, run like `opa test`.

use std::time::{Duration, Instant};

use regorus::Value;

use crate::PolicyError;
use crate::set::{PolicyModule, PolicySet, evaluation_error, rego_path};

/// How long one test rule may run. Longer than a request's limit: a test
/// evaluates the policy several times over, with `with input as ...`.
const TEST_TIME_LIMIT: Duration = Duration::from_secs(5);

/// The outcome of every test rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReport {
    /// In module order, then in source order within a module.
    pub results: Vec<TestResult>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// True when no test failed (also when there were none).
    pub fn ok(&self) -> bool {
        self.failed() == 0
    }
}

/// One test rule and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The module that defines the test (the first one, when several add
    /// bodies to the same rule).
    pub module: String,
    /// Dotted, e.g. `hallpass.request_test`.
    pub package: String,
    /// The rule's name, e.g. `test_oncall_is_auto_approved`.
    pub name: String,
    /// The rule evaluated to `true`.
    pub passed: bool,
    /// Why it did not pass when that is not just "undefined or false": the
    /// evaluation error, or the value it had instead of `true`.
    pub error: Option<String>,
    pub duration: Duration,
}

/// Compiles `modules` and evaluates every rule whose name starts with `test_`,
/// in any package. A test passes when it evaluates to `true`; undefined,
/// `false`, any other value and errors fail it. Compile errors are returned
/// as such, before any test runs.
pub fn run_tests(modules: &[PolicyModule]) -> Result<TestReport, PolicyError> {
    let set = PolicySet::compile(modules)?;
    let mut engine = set.engine_with_limit(TEST_TIME_LIMIT);
    let mut results = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for module in set.modules() {
        let package = module.package.join(".");
        for name in &module.tests {
            // Rules of one package can be spread over several modules.
            if !seen.insert((package.clone(), name.clone())) {
                continue;
            }
            let started = Instant::now();
            let outcome = engine.eval_rule(rule_path(&module.package, name));
            let duration = started.elapsed();
            let (passed, error) = match outcome {
                Ok(Value::Bool(true)) => (true, None),
                Ok(Value::Bool(false) | Value::Undefined) => (false, None),
                Ok(other) => (false, Some(format!("evaluated to {other}, not true"))),
                Err(error) => (false, Some(evaluation_error(&error).to_string())),
            };
            results.push(TestResult {
                module: module.name.clone(),
                package: package.clone(),
                name: name.clone(),
                passed,
                error,
                duration,
            });
        }
    }
    Ok(TestReport { results })
}

/// `data.a.b.name`.
fn rule_path(package: &[String], name: &str) -> String {
    let parts: Vec<&str> = package.iter().map(String::as_str).chain([name]).collect();
    rego_path("data", &parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_paths_quote_what_is_not_an_identifier() {
        let package = vec!["hallpass".to_string(), "odd-name".to_string()];
        assert_eq!(rule_path(&package, "test_x"), r#"data.hallpass["odd-name"].test_x"#);
    }
}
