//! What we read from regorus's syntax trees: where a module's `package` line
//! is, which rules are tests, and calls to functions that do not exist.
//!
//! regorus exposes its AST only under `regorus::unstable` (the trees come
//! from `Engine::get_modules`, hidden from its documentation), so what we
//! read from it is read in this file; the workspace pins regorus 0.14, and a
//! change of these types shows up here as a compile error, not as wrong
//! behaviour.
//!
//! [`rule_refs`] serves the workaround described in `set.rs` (whole-package
//! evaluation of a package split over several modules).
//!
//! regorus finds an unknown function only when a rule calling it runs, so a
//! typo in a builtin's name would pass upload and then fail (and, failing
//! closed, deny) every request that reaches it. [`unknown_call`] finds such
//! calls before the policy is stored.

use std::collections::BTreeSet;

use regorus::unstable::{BUILTINS, Expr, Literal, Module, Query, Rule, RuleHead, Span};

/// A 1-based place in a module, named as regorus names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl Place {
    fn of(span: &Span) -> Place {
        Place {
            file: span.source.get_path().clone(),
            line: span.line,
            column: span.col,
        }
    }
}

/// Where `package ...` is in `module`.
pub(crate) fn package_place(module: &Module) -> Place {
    Place::of(&module.package.span)
}

/// The names of `module`'s rules that are tests (`test_...`), in source
/// order, each once.
pub(crate) fn test_rules(module: &Module) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for rule in &module.policy {
        // A test is a plain rule (`test_x if { ... }`), not a function, a
        // default or a partial set.
        let Rule::Spec {
            head: RuleHead::Compr { refr, .. },
            ..
        } = rule.as_ref()
        else {
            continue;
        };
        if let Expr::Var { span, .. } = refr.as_ref() {
            let name = span.text();
            if name.starts_with("test_") && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// How to refer, from inside the module's package, to each rule it
/// declares that is not a function: `deny`, `a.b`, `a["x-y"]`. A ref head
/// with a variable part (`a[x] := ...`) is referred to up to that part.
pub(crate) fn rule_refs(module: &Module) -> Vec<String> {
    let mut refs = Vec::new();
    for rule in &module.policy {
        let refr = match rule.as_ref() {
            Rule::Spec {
                head: RuleHead::Func { .. },
                ..
            } => continue,
            Rule::Default { args, .. } if !args.is_empty() => continue,
            Rule::Spec { head, .. } => match head {
                RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } | RuleHead::Func { refr, .. } => refr,
            },
            Rule::Default { refr, .. } => refr,
        };
        if let Some(text) = static_ref(refr)
            && !refs.contains(&text)
        {
            refs.push(text);
        }
    }
    refs
}

/// The constant leading part of a reference, as Rego text.
fn static_ref(refr: &Expr) -> Option<String> {
    match refr {
        Expr::Var { span, .. } => Some(span.text().to_string()),
        Expr::RefDot { refr, field, .. } => {
            let parent = static_ref(refr)?;
            Some(format!("{parent}.{}", field.0.text()))
        }
        Expr::RefBrack { refr, index, .. } => {
            let parent = static_ref(refr)?;
            match index.as_ref() {
                Expr::String { value, .. } => match value.as_string() {
                    Ok(key) => Some(format!("{parent}[{}]", serde_json::Value::from(key.as_ref()))),
                    Err(_) => Some(parent),
                },
                _ => Some(parent),
            }
        }
        _ => None,
    }
}

/// The first call, in module order, to a function that is neither a builtin
/// of this build nor the name of any rule in `modules`, with its name.
///
/// Deliberately generous: a call counts as known when its last name part
/// matches any rule anywhere, so imports and aliases can never make a valid
/// policy fail here. What it refuses would fail at run time in regorus.
pub(crate) fn unknown_call<'a>(modules: impl IntoIterator<Item = &'a Module> + Clone) -> Option<(Place, String)> {
    let mut rule_names = BTreeSet::new();
    for module in modules.clone() {
        for rule in &module.policy {
            let refr = match rule.as_ref() {
                Rule::Spec { head, .. } => match head {
                    RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } | RuleHead::Func { refr, .. } => refr,
                },
                Rule::Default { refr, .. } => refr,
            };
            if let Some(name) = last_name(refr) {
                rule_names.insert(name);
            }
        }
    }
    let mut finder = CallFinder {
        rule_names: &rule_names,
        found: None,
    };
    for module in modules {
        for rule in &module.policy {
            finder.rule(rule);
            if finder.found.is_some() {
                return finder.found;
            }
        }
    }
    None
}

/// The last part of a rule or function name (`f` of `data.lib.f`).
fn last_name(refr: &Expr) -> Option<String> {
    match refr {
        Expr::Var { span, .. } => Some(span.text().to_string()),
        Expr::RefDot { field, .. } => Some(field.0.text().to_string()),
        Expr::RefBrack { index, .. } => match index.as_ref() {
            Expr::String { value, .. } => value.as_string().ok().map(|s| s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// `a.b.c` for a dotted name, `None` for anything else.
fn dotted_name(refr: &Expr) -> Option<String> {
    match refr {
        Expr::Var { span, .. } => Some(span.text().to_string()),
        Expr::RefDot { refr, field, .. } => Some(format!("{}.{}", dotted_name(refr)?, field.0.text())),
        _ => None,
    }
}

struct CallFinder<'a> {
    rule_names: &'a BTreeSet<String>,
    found: Option<(Place, String)>,
}

impl CallFinder<'_> {
    fn rule(&mut self, rule: &Rule) {
        match rule {
            Rule::Spec { head, bodies, .. } => {
                match head {
                    RuleHead::Compr { assign, .. } | RuleHead::Func { assign, .. } => {
                        if let Some(assign) = assign {
                            self.expr(&assign.value);
                        }
                    }
                    RuleHead::Set { key, .. } => {
                        if let Some(key) = key {
                            self.expr(key);
                        }
                    }
                }
                for body in bodies {
                    if let Some(assign) = &body.assign {
                        self.expr(&assign.value);
                    }
                    self.query(&body.query);
                }
            }
            Rule::Default { value, .. } => self.expr(value),
        }
    }

    fn query(&mut self, query: &Query) {
        for stmt in &query.stmts {
            match &stmt.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn {
                    key, value, collection, ..
                } => {
                    if let Some(key) = key {
                        self.expr(key);
                    }
                    self.expr(value);
                    self.expr(collection);
                }
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
                Literal::Every { domain, query, .. } => {
                    self.expr(domain);
                    self.query(query);
                }
            }
            for with in &stmt.with_mods {
                self.expr(&with.r#as);
            }
        }
    }

    fn expr(&mut self, expr: &Expr) {
        if self.found.is_some() {
            return;
        }
        match expr {
            Expr::Call { fcn, params, .. } => {
                if let Some(name) = dotted_name(fcn) {
                    let last = name.rsplit('.').next().unwrap_or(&name);
                    let known =
                        name == "print" || BUILTINS.contains_key(name.as_str()) || self.rule_names.contains(last);
                    if !known {
                        // Placed at the name, where regorus would put the caret.
                        self.found = Some((Place::of(fcn.span()), name));
                        return;
                    }
                }
                for param in params {
                    self.expr(param);
                }
            }
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                for item in items {
                    self.expr(item);
                }
            }
            Expr::Object { fields, .. } => {
                for (_, key, value) in fields {
                    self.expr(key);
                    self.expr(value);
                }
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.expr(term);
                self.query(query);
            }
            Expr::ObjectCompr { key, value, query, .. } => {
                self.expr(key);
                self.expr(value);
                self.query(query);
            }
            Expr::UnaryExpr { expr, .. } => self.expr(expr),
            Expr::RefDot { refr, .. } => self.expr(refr),
            Expr::RefBrack { refr, index, .. } => {
                self.expr(refr);
                self.expr(index);
            }
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            Expr::Membership {
                key, value, collection, ..
            } => {
                if let Some(key) = key {
                    self.expr(key);
                }
                self.expr(value);
                self.expr(collection);
            }
            // Scalars and variables hold no calls. (A wildcard, not a list,
            // so a variant added under a regorus feature still compiles.)
            _ => {}
        }
    }
}
