//! Rego policies: `policy put|list|show|delete` on the server, and
//! `policy test DIR` / `policy eval --dir DIR`, which run here with no server.
//!
//! `policy put` compiles the file locally before uploading it, so a syntax
//! error names the file being edited (`FILE:LINE:COL: message`) rather than
//! the policy's name on the server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use hallpass_api::PolicyDecision;
use hallpass_policy::{PolicyModule, PolicySet};
use serde::Serialize;

use super::detail::render_decision;
use super::{CmdResult, Ctx, ok};
use crate::output::{Table, escape_controls, escape_source, print_json, print_message, short_hash, time};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Compile a Rego file and store it on the server as policy NAME.
    Put {
        /// Policy name on the server.
        name: String,
        /// The Rego module.
        #[arg(short = 'f', long = "file", value_name = "FILE.rego")]
        file: PathBuf,
    },
    /// List stored policies.
    List,
    /// Print a policy's source (`--output json`: the policy object).
    Show { name: String },
    /// Delete a policy.
    Delete { name: String },
    /// Run the `test_` rules of the .rego files in DIR (no server needed).
    Test {
        /// Directory of .rego files, policies and tests together.
        dir: PathBuf,
    },
    /// What the policies decide for a hypothetical request.
    Eval {
        /// Policy input: a JSON object with `principal`, `role`, `request`
        /// and `context`, as the server builds it.
        #[arg(long, value_name = "FILE.json")]
        input: PathBuf,
        /// Evaluate the .rego files in DIR here instead of the server's
        /// stored policies (no server needed).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

pub async fn run(ctx: &Ctx, command: PolicyCommand) -> CmdResult {
    match command {
        PolicyCommand::Put { name, file } => put(ctx, &name, &file).await,
        PolicyCommand::List => {
            let policies = ctx.client()?.list_policies().await?;
            if ctx.json() {
                print_json(&policies)?;
                return ok();
            }
            let mut table = Table::new(["NAME", "SHA256", "UPDATED"]);
            for policy in &policies {
                table.row([
                    policy.name.clone(),
                    short_hash(&policy.source_hash),
                    time(&policy.updated_at),
                ]);
            }
            table.print_or("no policies");
            ok()
        }
        PolicyCommand::Show { name } => {
            let policy = ctx.client()?.get_policy(&name).await?;
            if ctx.json() {
                print_json(&policy)?;
            } else {
                // The source alone, so `hallpass policy show x > x.rego` round-trips.
                print!("{}", escape_source(&policy.source));
                if !policy.source.ends_with('\n') {
                    println!();
                }
            }
            ok()
        }
        PolicyCommand::Delete { name } => {
            ctx.client()?.delete_policy(&name).await?;
            if !ctx.json() {
                println!("deleted policy {name}");
            }
            ok()
        }
        PolicyCommand::Test { dir } => test(ctx, &dir),
        PolicyCommand::Eval { input, dir } => eval(ctx, &input, dir.as_deref()).await,
    }
}

async fn put(ctx: &Ctx, name: &str, file: &Path) -> CmdResult {
    let source = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let module = PolicyModule {
        name: file.display().to_string(),
        source,
    };
    // Compiled under the file's name, so errors read `FILE:LINE:COL: message`.
    PolicySet::compile(std::slice::from_ref(&module)).map_err(|error| anyhow!("{error}"))?;
    let policy = ctx.client()?.put_policy(name, module.source).await?;
    if ctx.json() {
        print_json(&policy)?;
    } else {
        print_message(&format!(
            "policy {name} stored (sha256 {})",
            short_hash(&policy.source_hash)
        ));
    }
    ok()
}

/// One test's outcome, as printed and as `--output json` carries it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestOutcome {
    pub module: String,
    pub package: String,
    pub name: String,
    pub passed: bool,
    pub error: Option<String>,
    pub duration_ms: f64,
}

/// `--output json` of `policy test`.
#[derive(Debug, Serialize)]
struct TestSummary<'a> {
    ok: bool,
    passed: usize,
    failed: usize,
    total: usize,
    results: &'a [TestOutcome],
}

fn test(ctx: &Ctx, dir: &Path) -> CmdResult {
    let modules = hallpass_policy::load_dir(dir).map_err(|error| anyhow!("{error}"))?;
    let report = hallpass_policy::run_tests(&modules).map_err(|error| anyhow!("{error}"))?;
    let outcomes: Vec<TestOutcome> = report
        .results
        .iter()
        .map(|result| TestOutcome {
            module: result.module.clone(),
            package: result.package.clone(),
            name: result.name.clone(),
            passed: result.passed,
            error: result.error.clone(),
            duration_ms: millis(result.duration),
        })
        .collect();
    if outcomes.is_empty() {
        bail!(
            "no test_ rules found in {}; write rules named test_... in .rego files there",
            dir.display()
        );
    }
    let passed = outcomes.iter().filter(|outcome| outcome.passed).count();
    let all_passed = passed == outcomes.len();
    if ctx.json() {
        print_json(&TestSummary {
            ok: all_passed,
            passed,
            failed: outcomes.len() - passed,
            total: outcomes.len(),
            results: &outcomes,
        })?;
    } else {
        for outcome in &outcomes {
            // Test names and errors quote the .rego files, whoever wrote them.
            println!("{}", escape_controls(&test_line(outcome)));
        }
        println!("{}", test_summary(&outcomes));
    }
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `hallpass.request_test.test_x`: the rule's full name without `data.`.
fn qualified(outcome: &TestOutcome) -> String {
    let package = outcome.package.strip_prefix("data.").unwrap_or(&outcome.package);
    if package.is_empty() {
        outcome.name.clone()
    } else {
        format!("{package}.{}", outcome.name)
    }
}

/// `PASS hallpass.request_test.test_oncall_self_serves (0.2ms)`, or
/// `FAIL ... (0.1ms): error`.
pub fn test_line(outcome: &TestOutcome) -> String {
    let took = if outcome.duration_ms < 1000.0 {
        format!("{:.1}ms", outcome.duration_ms)
    } else {
        format!("{:.2}s", outcome.duration_ms / 1000.0)
    };
    let verdict = if outcome.passed { "PASS" } else { "FAIL" };
    let mut line = format!("{verdict} {} ({took})", qualified(outcome));
    if !outcome.passed
        && let Some(error) = &outcome.error
    {
        line.push_str(&format!(": {error}"));
    }
    line
}

/// `PASS: 12/12` when every test passed, else `FAIL: 1/12` (failed/total).
pub fn test_summary(outcomes: &[TestOutcome]) -> String {
    let failed = outcomes.iter().filter(|outcome| !outcome.passed).count();
    if failed == 0 {
        format!("PASS: {}/{}", outcomes.len(), outcomes.len())
    } else {
        format!("FAIL: {failed}/{}", outcomes.len())
    }
}

async fn eval(ctx: &Ctx, input_path: &Path, dir: Option<&Path>) -> CmdResult {
    let text = std::fs::read_to_string(input_path).with_context(|| format!("cannot read {}", input_path.display()))?;
    let input = parse_input(&input_path.display().to_string(), &text)?;
    let decision = match dir {
        Some(dir) => eval_locally(dir, &input)?,
        None => {
            let object = input.as_object().cloned().unwrap_or_default();
            ctx.client()?.eval_policy(object).await?
        }
    };
    if ctx.json() {
        print_json(&decision)?;
    } else {
        print!("{}", render_decision(&decision));
    }
    ok()
}

/// The input file as JSON; syntax errors as `FILE:LINE:COL: message`.
pub fn parse_input(file: &str, text: &str) -> anyhow::Result<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|error| {
        // serde_json ends its message with " at line L column C"; say it the
        // way the other file errors do instead.
        let message = error.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(head, _)| head)
            .to_string();
        anyhow!("{file}:{}:{}: not valid JSON: {message}", error.line(), error.column())
    })?;
    if !value.is_object() {
        bail!(
            "{file}: the policy input must be a JSON object with principal, role, request and context, not {}",
            json_kind(&value)
        );
    }
    Ok(value)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Compiles the .rego files of `dir` and evaluates `input` against them, as
/// the server would against its stored policies.
fn eval_locally(dir: &Path, input: &serde_json::Value) -> anyhow::Result<PolicyDecision> {
    let modules = hallpass_policy::load_dir(dir).map_err(|error| anyhow!("{error}"))?;
    if modules.is_empty() {
        bail!("no .rego files in {}", dir.display());
    }
    let set = PolicySet::compile(&modules).map_err(|error| anyhow!("{error}"))?;
    let decision = set.evaluate(input).map_err(|error| anyhow!("{error}"))?;
    Ok(PolicyDecision {
        policy_hash: set.hash().to_string(),
        deny: decision.deny,
        auto_approve: decision.auto_approve,
        approval_flow: decision.approval_flow,
        max_duration_seconds: decision.max_duration_seconds,
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(package: &str, name: &str, passed: bool, error: Option<&str>, duration_ms: f64) -> TestOutcome {
        TestOutcome {
            module: "policies/request_test.rego".into(),
            package: package.into(),
            name: name.into(),
            passed,
            error: error.map(Into::into),
            duration_ms,
        }
    }

    #[test]
    fn test_lines_name_the_rule_and_its_time() {
        let pass = outcome(
            "data.hallpass.request_test",
            "test_oncall_self_serves",
            true,
            None,
            0.24,
        );
        assert_eq!(
            test_line(&pass),
            "PASS hallpass.request_test.test_oncall_self_serves (0.2ms)"
        );
        let fail = outcome(
            "hallpass.request_test",
            "test_prod_needs_ticket",
            false,
            Some("rule evaluated to false"),
            1500.0,
        );
        assert_eq!(
            test_line(&fail),
            "FAIL hallpass.request_test.test_prod_needs_ticket (1.50s): rule evaluated to false"
        );
        let bare = outcome("hallpass.x", "test_y", false, None, 0.0);
        assert_eq!(test_line(&bare), "FAIL hallpass.x.test_y (0.0ms)");
    }

    #[test]
    fn the_summary_counts_passes_or_failures() {
        let all = vec![outcome("p", "test_a", true, None, 1.0); 12];
        assert_eq!(test_summary(&all), "PASS: 12/12");
        let mut some = all.clone();
        some[3].passed = false;
        assert_eq!(test_summary(&some), "FAIL: 1/12");
    }

    #[test]
    fn input_errors_point_at_line_and_column() {
        let err = parse_input("in.json", "{\n  \"role\": {\"name\": \"x\"}\n  \"request\": {}\n}").unwrap_err();
        assert_eq!(err.to_string(), "in.json:3:3: not valid JSON: expected `,` or `}`");
        let err = parse_input("in.json", "[1, 2]").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("in.json: the policy input must be a JSON object")
        );
        assert!(err.to_string().ends_with("not an array"));
        let value = parse_input("in.json", r#"{"principal": {"name": "alice"}}"#).unwrap();
        assert_eq!(value["principal"]["name"], "alice");
    }
}
