//! A compiled policy set and how it is evaluated.
//!
//! # How `evaluate` runs
//!
//! Compiling parses every module into one regorus `Engine` and prepares it
//! (analysis, scheduling, loop hoisting) once. Each evaluation then takes a
//! prepared engine from a small pool (a clone of that template when the pool
//! is empty), sets the input, evaluates each decision rule the set declares
//! with `eval_rule`, and puts the engine back.
//!
//! Measured on the example policies (release build, 2 vCPUs shared with
//! other builds, 20,000 evaluations, two runs; p50 in µs; the p99s, 60 to
//! 700 µs, moved with the machine's load more than with the method):
//!
//! | way                                                                | p50       |
//! |--------------------------------------------------------------------|-----------|
//! | pooled engine, `eval_rule` per declared rule, direct input (this)   | 19.1–19.9 |
//! | the same with an `Engine` clone per evaluation instead of the pool  | 21.1–21.2 |
//! | clone, input through regorus's `From<serde_json::Value>`            | 22.4–22.7 |
//! | `compile_with_entrypoint` + `CompiledPolicy::eval_with_input`       | 29.2–29.3 |
//! | pooled engine, one generated rule collecting all four fields        | 29.2–29.5 |
//! | clone, one generated rule collecting all four fields                | 30.0      |
//!
//! The collecting rule is slower than four small `eval_rule` calls because
//! its comprehensions (needed so an undefined rule does not make the whole
//! result undefined) cost more than the rule evaluations they save. The
//! `CompiledPolicy` path builds a fresh interpreter per call. Cloning a
//! prepared engine is cheap (its compiled state is shared behind an `Arc`),
//! but a reused engine keeps its allocations, and that is what the pool saves.
//! A pool rather than thread-locals: it lives and dies with the set, so a
//! replaced policy set frees its engines, and no key by set is needed.
//!
//! # Packages split over several modules
//!
//! When a package is read as a whole (`import data.hallpass.request` then
//! `request.deny`, the usual way tests are written, or `data.hallpass.lib`
//! as a value), regorus 0.14 evaluates its modules one after the other and
//! marks the package done after the first one. A rule of a later module that
//! refers to a rule of the package not evaluated yet then reads it as
//! undefined: `deny contains "x" if not has_ticket` would deny although the
//! ticket is there, or a deny would silently not apply.
//!
//! So for each package split over several modules, compile puts first a
//! small generated module of that package whose rules refer to every rule
//! the package declares. regorus evaluates it first, which evaluates every
//! rule of the package the ordinary, correct way (rule by rule, following
//! dependencies) before the package is marked done. Its rules always end in
//! `false`, so they never appear in `data`. Packages of one module, and
//! evaluations of single rules (what `evaluate` does), are not affected.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, LimitError, Value};
use sha2::{Digest, Sha256};

use crate::PolicyError;
use crate::ast;
use crate::decision::{DecisionRule, PolicyDecision};
use crate::error::{compile_error, error_text, one_line};
use crate::input::to_regorus;

/// How long one evaluation may run before it is stopped with an error.
pub(crate) const EVALUATION_TIME_LIMIT: Duration = Duration::from_millis(100);

/// Work units (loop iterations, rule and call evaluations) between two reads
/// of the clock: often enough to stop within a fraction of a millisecond of
/// the limit, rare enough not to show in the latency.
const TIMER_CHECK_INTERVAL: u32 = 32;

/// Idle engines kept per set: more than the threads that evaluate at once on
/// the machines we run on; beyond it, engines are dropped after use.
const MAX_IDLE_ENGINES: usize = 64;

/// Names of the modules and rules `forcing_modules` adds; user modules may
/// not use the prefix.
const FORCING_MODULE_PREFIX: &str = "(hallpass) forcing ";
const FORCING_RULE_PREFIX: &str = "hallpass_internal_force_";

/// The package whose rules make the decision.
const DECISION_PACKAGE: [&str; 2] = ["hallpass", "request"];

/// One Rego module: its name (a file path, or the name it was stored under)
/// and its source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyModule {
    pub name: String,
    pub source: String,
}

/// Policy modules compiled together, ready to evaluate requests.
///
/// Cheap to clone (shared behind an `Arc`) and safe to evaluate from many
/// threads at once.
#[derive(Clone)]
pub struct PolicySet {
    inner: Arc<Inner>,
}

struct Inner {
    hash: String,
    /// The modules as given, for a sandbox worker that compiles its own copy.
    sources: Vec<PolicyModule>,
    modules: Vec<CompiledModule>,
    /// Every module, prepared; engines for evaluation are clones of it.
    template: Engine,
    /// The decision rules some module declares, in [`DecisionRule::ALL`] order.
    rules: Vec<DecisionRule>,
    idle: Mutex<Vec<Engine>>,
}

/// What we keep of each module after compiling it.
pub(crate) struct CompiledModule {
    pub name: String,
    pub package: Vec<String>,
    /// Its `test_` rules, for run_tests.
    pub tests: Vec<String>,
    /// How to refer to each of its rules, for `forcing_modules`.
    pub rules: Vec<String>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("hash", &self.inner.hash)
            .field(
                "modules",
                &self.inner.modules.iter().map(|m| &m.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl PolicySet {
    /// Compiles all modules together. An empty slice is valid: it decides the
    /// default decision (nothing denied, nothing auto-approved).
    ///
    /// Refused, as [`PolicyError::Compile`]: Rego that does not parse (Rego
    /// v1 only), a package not under `hallpass` or below a decision rule
    /// (`hallpass.request.deny`), two modules with the same name, a name
    /// starting with the reserved `(hallpass) `, calls to functions that are
    /// neither builtins nor defined, and what regorus's analysis finds.
    pub fn compile(modules: &[PolicyModule]) -> Result<PolicySet, PolicyError> {
        check_module_names(modules)?;
        let compiled = parse_modules(modules)?;
        let engine = prepare_engine(modules, &compiled)?;
        let rules = declared_rules(&engine, &compiled, modules)?;
        Ok(PolicySet {
            inner: Arc::new(Inner {
                hash: set_hash(modules),
                sources: modules.to_vec(),
                modules: compiled,
                template: engine,
                rules,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Hex SHA-256 of the modules sorted by name; see [`set_hash`].
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    /// True when the set has no modules.
    pub fn is_empty(&self) -> bool {
        self.inner.modules.is_empty()
    }

    /// Decides about one request. `input` is the document described in
    /// `docs/policies.md`. Rules that are undefined are absent from the
    /// decision; an error is never a decision, so callers must fail closed.
    pub fn evaluate(&self, input: &serde_json::Value) -> Result<PolicyDecision, PolicyError> {
        self.evaluate_with_limit(input, EVALUATION_TIME_LIMIT)
    }

    /// [`PolicySet::evaluate`] with `limit` instead of the default time limit.
    pub(crate) fn evaluate_with_limit(
        &self,
        input: &serde_json::Value,
        limit: Duration,
    ) -> Result<PolicyDecision, PolicyError> {
        let inner = &*self.inner;
        if inner.rules.is_empty() {
            return Ok(PolicyDecision::default());
        }
        let mut engine = inner.take_engine();
        // Set on every evaluation (a plain store): pooled engines are shared
        // by callers that may use different limits.
        engine.set_execution_timer_config(timer(limit));
        engine.set_input(to_regorus(input));
        let mut decision = PolicyDecision::default();
        for rule in &inner.rules {
            // On an error the engine is dropped rather than pooled: it is not
            // known to be broken, but nothing is saved by finding out.
            let value = engine
                .eval_rule(rule.path().to_string())
                .map_err(|error| evaluation_error(&error))?;
            if value != Value::Undefined {
                rule.apply(&value, &mut decision)?;
            }
        }
        // Infallible in regorus (a `mem::take`); the prints are not used.
        let _ = engine.take_prints();
        inner.put_back(engine);
        Ok(decision)
    }

    pub(crate) fn modules(&self) -> &[CompiledModule] {
        &self.inner.modules
    }

    pub(crate) fn sources(&self) -> &[PolicyModule] {
        &self.inner.sources
    }

    /// True when no module declares a decision rule, so every evaluation
    /// decides the default without running anything.
    pub(crate) fn decides_nothing(&self) -> bool {
        self.inner.rules.is_empty()
    }

    /// A prepared engine of its own for the caller, with `limit` as its
    /// evaluation time limit and `print` writing to stderr.
    pub(crate) fn engine_with_limit(&self, limit: Duration) -> Engine {
        let mut engine = self.inner.template.clone();
        engine.set_execution_timer_config(timer(limit));
        // Tests are run by a person: `print` goes to stderr, as with `opa test`.
        engine.set_gather_prints(false);
        engine
    }
}

impl Inner {
    fn take_engine(&self) -> Engine {
        let pooled = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        pooled.unwrap_or_else(|| self.template.clone())
    }

    fn put_back(&self, engine: Engine) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_ENGINES {
            idle.push(engine);
        }
    }
}

/// Refuses reserved and repeated module names.
fn check_module_names(modules: &[PolicyModule]) -> Result<(), PolicyError> {
    let mut names = BTreeSet::new();
    for module in modules {
        if module.name.starts_with(FORCING_MODULE_PREFIX) {
            return Err(PolicyError::Compile {
                module: module.name.clone(),
                line: 1,
                column: 1,
                message: format!("module names starting with {FORCING_MODULE_PREFIX:?} are reserved"),
            });
        }
        if !names.insert(module.name.as_str()) {
            return Err(PolicyError::Compile {
                module: module.name.clone(),
                line: 1,
                column: 1,
                message: format!("two modules are named {:?}; module names must be unique", module.name),
            });
        }
    }
    Ok(())
}

/// First pass: parses and checks the modules on their own (packages, calls
/// to unknown functions) and keeps what later steps need of each.
fn parse_modules(modules: &[PolicyModule]) -> Result<Vec<CompiledModule>, PolicyError> {
    let mut parsed = new_engine(EVALUATION_TIME_LIMIT);
    for module in modules {
        parsed
            .add_policy(module.name.clone(), module.source.clone())
            .map_err(|error| compile_error(&module.name, &error))?;
    }
    let packages = parsed
        .get_policy_package_components()
        .map_err(|error| internal_compile_error(modules, &error))?;
    let asts = parsed.get_modules().clone();
    let mut compiled = Vec::with_capacity(modules.len());
    for ((module, package), tree) in modules.iter().zip(packages).zip(&asts) {
        if let Some(message) = package_refusal(&package.components) {
            let place = ast::package_place(tree);
            return Err(PolicyError::Compile {
                module: module.name.clone(),
                line: place.line,
                column: place.column,
                message,
            });
        }
        compiled.push(CompiledModule {
            name: module.name.clone(),
            package: package.components,
            tests: ast::test_rules(tree),
            rules: ast::rule_refs(tree),
        });
    }
    if let Some((place, name)) = ast::unknown_call(asts.iter().map(|tree| &**tree)) {
        return Err(PolicyError::Compile {
            module: place.file,
            line: place.line,
            column: place.column,
            message: format!(
                "unknown function {name}: it is not a builtin available in Hallpass, \
                 nor a function defined in these policies"
            ),
        });
    }
    Ok(compiled)
}

/// Why a module may not declare this package, if it may not: it must be
/// under `hallpass`, and not below a decision rule.
fn package_refusal(components: &[String]) -> Option<String> {
    if components.len() < 2 || components[0] != "hallpass" {
        Some(format!(
            "package {} is not allowed here: use package hallpass.request for decision rules, \
             hallpass.request_test for tests, or hallpass.NAME for helpers",
            components.join(".")
        ))
    } else if components.len() > 2
        && components[..2] == DECISION_PACKAGE
        && DecisionRule::ALL.iter().any(|rule| rule.name() == components[2])
    {
        Some(format!(
            "package {} would make hallpass.request.{} an object of rules; \
             declare that rule in package hallpass.request instead",
            components.join("."),
            components[2]
        ))
    } else {
        None
    }
}

/// Second pass: the engine evaluations use, with the forcing modules first
/// (see the module documentation), analysed and scheduled.
fn prepare_engine(modules: &[PolicyModule], compiled: &[CompiledModule]) -> Result<Engine, PolicyError> {
    let mut engine = new_engine(EVALUATION_TIME_LIMIT);
    for (name, source) in forcing_modules(compiled) {
        engine
            .add_policy(name, source)
            .map_err(|error| internal_compile_error(modules, &error))?;
    }
    for module in modules {
        engine
            .add_policy(module.name.clone(), module.source.clone())
            .map_err(|error| compile_error(&module.name, &error))?;
    }
    if !modules.is_empty() {
        // Analyse and schedule the modules now, so what that finds is a
        // compile error here rather than an evaluation error later, and
        // every engine cloned from this one starts prepared.
        engine
            .eval_query("true".to_string(), false)
            .map_err(|error| match error_text(&error) {
                text if text.contains("--> ") => compile_error(&modules[0].name, &error),
                _ => internal_compile_error(modules, &error),
            })?;
    }
    // `print` output is kept in the engine, not written to the server's
    // stderr at request rate, and dropped after each evaluation.
    engine.set_gather_prints(true);
    Ok(engine)
}

/// The decision rules some module declares, in [`DecisionRule::ALL`] order.
fn declared_rules(
    engine: &Engine,
    compiled: &[CompiledModule],
    modules: &[PolicyModule],
) -> Result<Vec<DecisionRule>, PolicyError> {
    let mut rules = Vec::new();
    for rule in DecisionRule::ALL {
        for module in compiled {
            if declares(engine, module, rule).map_err(|error| internal_compile_error(modules, &error))? {
                rules.push(rule);
                break;
            }
        }
    }
    Ok(rules)
}

/// For each package split over several modules, a module of that package
/// whose rules refer to every rule the package declares (and are never
/// themselves defined), named `FORCING_MODULE_PREFIX` + the package.
fn forcing_modules(compiled: &[CompiledModule]) -> Vec<(String, String)> {
    let mut by_package: BTreeMap<&[String], (usize, Vec<&str>)> = BTreeMap::new();
    for module in compiled {
        let (count, refs) = by_package.entry(&module.package[..]).or_default();
        *count += 1;
        for rule in &module.rules {
            if !refs.contains(&rule.as_str()) {
                refs.push(rule);
            }
        }
    }
    by_package
        .into_iter()
        .filter(|(_, (count, _))| *count > 1)
        .map(|(package, (_, refs))| {
            let path = rego_path("", package);
            let mut source = format!("package {path}\n\n");
            for (i, rule) in refs.iter().enumerate() {
                // Evaluates `rule` (and with it every rule it depends on), then
                // fails, so the forcing rule never shows up in `data`.
                source.push_str(&format!(
                    "{FORCING_RULE_PREFIX}{i} if {{\n\t_ = {rule}\n\tfalse\n}}\n\n"
                ));
            }
            (format!("{FORCING_MODULE_PREFIX}{path}"), source)
        })
        .collect()
}

/// `root.a.b`, or `a.b` for an empty root, with bracket notation for a part
/// that is not an identifier (`hallpass["odd-name"]`).
pub(crate) fn rego_path(root: &str, parts: &[impl AsRef<str>]) -> String {
    let mut path = String::from(root);
    for part in parts.iter().map(AsRef::as_ref) {
        let identifier = part.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if identifier {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(part);
        } else {
            path.push('[');
            path.push_str(&serde_json::Value::from(part).to_string());
            path.push(']');
        }
    }
    path
}

/// Hex SHA-256 over the modules sorted by name: for each, the byte length of
/// the name (u64, big-endian), the name, the byte length of the source, the
/// source. The lengths make the encoding unambiguous. Equal to
/// [`PolicySet::hash`] for the same modules, without compiling them.
pub fn set_hash(modules: &[PolicyModule]) -> String {
    let mut sorted: Vec<&PolicyModule> = modules.iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.source).cmp(&(&b.name, &b.source)));
    let mut hasher = Sha256::new();
    for module in sorted {
        for part in [&module.name, &module.source] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hex::encode(hasher.finalize())
}

pub(crate) fn new_engine(limit: Duration) -> Engine {
    let mut engine = Engine::new();
    // Rego v1 (OPA 1.0) is regorus's default; said here so it stays so.
    engine.set_rego_v0(false);
    // A builtin given bad arguments is an error, not an undefined value that
    // could quietly skip a deny rule.
    engine.set_strict_builtin_errors(true);
    engine.set_execution_timer_config(timer(limit));
    engine
}

fn timer(limit: Duration) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit,
        check_interval: NonZeroU32::new(TIMER_CHECK_INTERVAL).unwrap_or(NonZeroU32::MIN),
    }
}

/// Whether `module` declares `rule` of the decision package. Only a module
/// of `package hallpass.request` can: every other package allowed is beside
/// it, so no ref head (`request.deny contains ...`) reaches it from elsewhere.
fn declares(engine: &Engine, module: &CompiledModule, rule: DecisionRule) -> anyhow::Result<bool> {
    if module.package[..] != DECISION_PACKAGE {
        return Ok(false);
    }
    engine.has_declared_rule_rooted_at(&module.name, rule.name())
}

/// The error for an evaluation that failed.
pub(crate) fn evaluation_error(error: &anyhow::Error) -> PolicyError {
    let limit = error
        .chain()
        .find_map(|cause| match cause.downcast_ref::<LimitError>() {
            Some(LimitError::TimeLimitExceeded { limit, .. }) => Some(*limit),
            _ => None,
        });
    match limit {
        Some(limit) => PolicyError::Evaluation(format!(
            "stopped at the time limit of {} ms (a loop over too much data?)",
            limit.as_millis()
        )),
        None => PolicyError::Evaluation(one_line(&error_text(error))),
    }
}

/// A failure regorus reports without a place, which our own checks should
/// have made impossible; blamed on the first module so it is still reported.
fn internal_compile_error(modules: &[PolicyModule], error: &anyhow::Error) -> PolicyError {
    PolicyError::Compile {
        module: modules.first().map_or_else(String::new, |m| m.name.clone()),
        line: 1,
        column: 1,
        message: one_line(&error_text(error)),
    }
}
