//! A target's `secrets = { NAME = VALUE, ... }`. So that secrets need not be
//! written into a file that lives in a repository, a value may be
//! `env("VARIABLE")` (read from the environment of `hallpass apply`) or
//! `file("PATH")` (read from a file, relative to the HCL file's directory,
//! without one trailing newline); a plain string is accepted too. These are
//! the only functions in Hallpass's HCL, and only here. Messages name the
//! secret, the variable or the file, never a value.

use std::collections::BTreeMap;
use std::path::Path;

use hallpass_api::WriteOnly;
use hcl_edit::Span;
use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::structure::{Block, Structure};

use crate::error::{Reporter, start_of};

const USAGE: &str = "write secrets = { NAME = env(\"VARIABLE\") }, file(\"PATH\") or a plain string";

fn without_trailing_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

impl Reporter<'_> {
    /// Reads the `secrets` attribute of target `target`'s block.
    pub(crate) fn secrets(
        &mut self,
        block: &Block,
        owner: &str,
        base_dir: &Path,
    ) -> Option<BTreeMap<String, WriteOnly>> {
        let expr = block.body.iter().find_map(|structure| match structure {
            Structure::Attribute(attribute) if attribute.key.as_str() == "secrets" => Some(&attribute.value),
            _ => None,
        })?;
        let Expression::Object(object) = expr else {
            self.error(start_of(expr), format!("secrets in {owner} must be an object; {USAGE}"));
            return None;
        };
        let mut secrets = BTreeMap::new();
        let mut ok = true;
        for (key, value) in object.iter() {
            let at = key.span().map_or(0, |range| range.start);
            let name = match key {
                ObjectKey::Ident(ident) => ident.as_str().to_string(),
                ObjectKey::Expression(Expression::String(text)) => text.value().clone(),
                ObjectKey::Expression(_) => {
                    self.error(at, format!("secret names in {owner} must be plain names"));
                    ok = false;
                    continue;
                }
            };
            let what = format!("secret \"{name}\" of {owner}");
            match self.secret_value(value.expr(), &what, base_dir, "export it before `hallpass apply`") {
                Some(secret) => {
                    secrets.insert(name, WriteOnly::new(secret));
                }
                None => ok = false,
            }
        }
        ok.then_some(secrets)
    }

    /// A secret written as a plain string, `env("VARIABLE")` or
    /// `file("PATH")` (relative to `base_dir`); `what` names it in messages
    /// and `unset_hint` says where an unset variable must be set.
    pub(crate) fn secret_value(
        &mut self,
        expr: &Expression,
        what: &str,
        base_dir: &Path,
        unset_hint: &str,
    ) -> Option<String> {
        let call = match expr {
            Expression::String(text) => return Some(text.value().clone()),
            Expression::FuncCall(call) => call,
            _ => {
                self.error(
                    start_of(expr),
                    format!("{what} must be a plain string, env(\"VARIABLE\") or file(\"PATH\")"),
                );
                return None;
            }
        };
        let function = call.name.name.as_str();
        let argument = match call.args.iter().collect::<Vec<_>>().as_slice() {
            [Expression::String(text)] => text.value().clone(),
            _ => {
                self.error(
                    start_of(expr),
                    format!("{what}: {function}(...) takes one quoted string"),
                );
                return None;
            }
        };
        match function {
            "env" => match std::env::var(&argument) {
                Ok(value) if !value.is_empty() => Some(value),
                _ => {
                    let message =
                        format!("{what}: environment variable {argument} is not set (or empty); {unset_hint}");
                    self.error(start_of(expr), message);
                    None
                }
            },
            "file" => {
                let path = base_dir.join(&argument);
                match std::fs::read_to_string(&path) {
                    Ok(text) => Some(without_trailing_newline(text)),
                    Err(error) => {
                        let message = format!("{what}: cannot read {}: {error}", path.display());
                        self.error(start_of(expr), message);
                        None
                    }
                }
            }
            other => {
                let message = format!(
                    "{what}: unknown function {other}(...); only env(\"VARIABLE\") and file(\"PATH\") are allowed"
                );
                self.error(start_of(expr), message);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::parse_apply_str;

    fn target(secrets: &str) -> String {
        format!(
            "target \"panel\" {{\n  type = \"webhook\"\n  config = {{ url = \"https://x/h\" }}\n  secrets = {secrets}\n}}\n"
        )
    }

    #[test]
    fn secrets_come_from_strings_env_and_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key.txt"), "from-a-file\n").unwrap();
        // SAFETY (test only): no other thread of this test reads this variable.
        unsafe { std::env::set_var("HALLPASS_TEST_SECRET_A1", "from-the-env") };
        let file = dir.path().join("access.hcl");
        let text = target("{ a = env(\"HALLPASS_TEST_SECRET_A1\"), b = file(\"key.txt\"), c = \"plain\" }");
        let request = parse_apply_str(&text, &file.to_string_lossy()).unwrap();
        let secrets = request.targets[0].secrets.as_ref().unwrap();
        let values: Vec<&str> = secrets.values().map(|v| v.expose()).collect();
        assert_eq!(values, ["from-the-env", "from-a-file", "plain"]);
    }

    #[test]
    fn a_target_without_secrets_leaves_them_alone() {
        let text = "target \"t\" {\n  type = \"jwt\"\n}\n";
        assert_eq!(parse_apply_str(text, "a.hcl").unwrap().targets[0].secrets, None);
    }

    #[test]
    fn problems_name_the_secret_never_a_value() {
        let errors = parse_apply_str(&target("{ a = env(\"HALLPASS_TEST_SURELY_UNSET_9\") }"), "a.hcl").unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("a.hcl:4:"), "{text}");
        assert!(
            text.contains(
                "secret \"a\" of target \"panel\": environment variable HALLPASS_TEST_SURELY_UNSET_9 is not set"
            ),
            "{text}"
        );
        let errors = parse_apply_str(&target("{ a = upper(\"x\") }"), "a.hcl").unwrap_err();
        assert!(errors.to_string().contains("unknown function upper(...)"), "{errors}");
        let errors = parse_apply_str(&target("\"s3cr3t\""), "a.hcl").unwrap_err();
        assert!(errors.to_string().contains("must be an object"), "{errors}");
        assert!(!errors.to_string().contains("s3cr3t"), "{errors}");
    }

    #[test]
    fn functions_stay_refused_everywhere_else() {
        let text = "target \"t\" {\n  type = env(\"X\")\n}\n";
        let errors = parse_apply_str(text, "a.hcl").unwrap_err();
        assert!(
            errors.to_string().contains("only literal values are supported here"),
            "{errors}"
        );
    }
}
