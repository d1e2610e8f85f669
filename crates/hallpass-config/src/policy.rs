//! `policy "NAME" { source_file = "x.rego" }` blocks: Rego modules the server
//! evaluates for every request and extension.
//!
//! The Rego source is read and compiled here, with the same engine as the
//! server, so a syntax error is reported at its place in the `.rego` file
//! (or in the HCL file, for an inline heredoc) before anything is applied.

use std::path::Path;

use hallpass_api::PolicySpec;
use hallpass_policy::{PolicyError, PolicyModule, PolicySet};
use hcl_edit::structure::Block;

use crate::body::Shape;
use crate::error::{Reporter, start_of};
use crate::value::Literal;

const POLICY: Shape = Shape {
    attributes: &["source_file", "source"],
    blocks: &[],
    verbatim: &[],
};

/// Where a policy's Rego text came from, to place its compile errors.
enum Origin<'a> {
    /// A file of its own, named by the `source_file` value at `at`: errors are
    /// positioned in that file, under the name it was compiled with.
    File { at: usize },
    /// The `source` attribute's value, whose text is `text`.
    Inline { literal: &'a Literal, text: &'a str },
}

impl Reporter<'_> {
    /// A policy block; `base_dir` is the directory `source_file` is relative to.
    pub(crate) fn policy(&mut self, block: &Block, name: String, base_dir: &Path) -> Option<PolicySpec> {
        let place = format!("in policy \"{name}\"");
        let at = start_of(&block.ident);
        let (attrs, _) = self.walk(&block.body, &POLICY, place, at);

        match (attrs.get("source_file"), attrs.get("source")) {
            (None, None) => {
                let message = format!(
                    "policy \"{name}\" has no source; add source_file = \"{name}.rego\" (relative to this file) \
                     or source = <<EOT ... EOT"
                );
                self.error(at, message);
                None
            }
            (Some(file), Some(inline)) => {
                // Point at whichever comes second, like a duplicate.
                let message = format!("policy \"{name}\" sets both source_file and source; keep one of them");
                self.error(file.at.max(inline.at), message);
                None
            }
            (Some(literal), None) => {
                let written = attrs.optional(self, "source_file", Self::string)?;
                if written.is_empty() {
                    let message = format!(
                        "{} is empty; give the path of a .rego file, relative to this file",
                        attrs.what("source_file")
                    );
                    self.error(literal.at, message);
                    return None;
                }
                let path = base_dir.join(&written);
                let shown = path.display().to_string();
                let source = match std::fs::read_to_string(&path) {
                    Ok(source) => source,
                    Err(error) => {
                        self.error(literal.at, format!("cannot read policy file {shown}: {error}"));
                        return None;
                    }
                };
                self.compile_policy(&name, shown, &source, Origin::File { at: literal.at });
                Some(PolicySpec { name, source })
            }
            (None, Some(literal)) => {
                let source = attrs.optional(self, "source", Self::string)?;
                let module = format!("{} (policy \"{name}\")", self.file());
                self.compile_policy(&name, module, &source, Origin::Inline { literal, text: &source });
                Some(PolicySpec { name, source })
            }
        }
    }

    /// Compiles one policy on its own, so every policy's errors are reported
    /// (the compiler stops at the first), and reports them where they are.
    fn compile_policy(&mut self, name: &str, module: String, source: &str, origin: Origin<'_>) {
        let modules = [PolicyModule {
            name: module.clone(),
            source: source.to_string(),
        }];
        let (line, column, message) = match PolicySet::compile(&modules) {
            Ok(_) => return,
            Err(PolicyError::Compile {
                line, column, message, ..
            }) => (line, column, message),
            // Not expected from compiling, but never dropped.
            Err(other) => {
                let at = match origin {
                    Origin::File { at } => at,
                    Origin::Inline { literal, .. } => literal.at,
                };
                self.error(at, format!("policy \"{name}\" cannot be compiled: {other}"));
                return;
            }
        };
        let (line, column) = (usize::try_from(line).unwrap_or(0), usize::try_from(column).unwrap_or(0));
        match origin {
            Origin::File { .. } => self.error_in(module, line, column, message),
            Origin::Inline { literal, text } => match heredoc_offset(self.source(), literal.at, text, line, column) {
                Some(offset) => self.error(offset, format!("policy \"{name}\": {message}")),
                // A quoted string has escapes, so its Rego lines do not map
                // onto the file's; say where in the Rego text instead.
                None => {
                    let message = format!("policy \"{name}\", Rego line {line}, column {column}: {message}");
                    self.error(literal.at, message);
                }
            },
        }
    }
}

/// The byte offset in `hcl` of 1-based Rego `line`/`column` within the
/// heredoc starting at `at`, whose (dedented) text is `text`. `None` when the
/// value is not a heredoc or the line cannot be matched up, e.g. because of
/// `$${` escapes.
fn heredoc_offset(hcl: &str, at: usize, text: &str, line: usize, column: usize) -> Option<usize> {
    let rest = hcl.get(at..)?;
    if !rest.starts_with("<<") {
        return None;
    }
    // The heredoc's text starts on the line after `<<EOT`.
    let mut line_start = at + rest.find('\n')? + 1;
    let index = line.checked_sub(1)?;
    let raw_lines = hcl.get(line_start..)?.split('\n');
    let mut raw_line = "";
    for (number, raw) in raw_lines.enumerate() {
        if number == index {
            raw_line = raw;
            break;
        }
        line_start += raw.len() + 1;
    }
    let raw_line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
    let text_line = text.split('\n').nth(index)?;
    if text_line.is_empty() {
        // An empty line, or the one after the text (the closing `EOT`), where
        // "unexpected end of input" is reported: its start is close enough.
        return Some(line_start);
    }
    // `<<-EOT` strips the common indentation, so the Rego line is the end of
    // the raw line; what precedes it is the indentation to add back.
    let indent = raw_line.len().checked_sub(text_line.len())?;
    if !raw_line.ends_with(text_line) {
        return None;
    }
    let within = text_line
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(text_line.len(), |(offset, _)| offset);
    Some(line_start + indent + within)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_apply_file;
    use crate::parse_apply_str;
    use crate::testing::{assert_error, errors};

    const GUARDRAILS: &str = "package hallpass.request\n\ndeny contains msg if {\n  input.request.duration_seconds > 7200\n  msg := \"too long\"\n}\n";

    /// Writes `files` into a fresh directory and returns it.
    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    /// All errors as `FILE:LINE:COLUMN: MESSAGE`.
    fn all_errors(result: Result<hallpass_api::ApplyRequest, crate::ConfigErrors>) -> Vec<String> {
        match result {
            Ok(request) => panic!("expected errors, parsed {request:?}"),
            Err(errors) => errors.errors().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn source_file_is_relative_to_the_hcl_file() {
        let dir = dir_with(&[
            (
                "config/access.hcl",
                "policy \"guardrails\" {\n  source_file = \"rego/guardrails.rego\"\n}\n",
            ),
            ("config/rego/guardrails.rego", GUARDRAILS),
            // A file of the same name where the process runs must not be used.
            ("rego/guardrails.rego", "package other\n"),
        ]);
        let request = parse_apply_file(&dir.path().join("config/access.hcl")).unwrap();
        assert_eq!(
            request.policies,
            [PolicySpec {
                name: "guardrails".into(),
                source: GUARDRAILS.into(),
            }]
        );
        // parse_apply_str resolves against the directory of its file name.
        let hcl = std::fs::read_to_string(dir.path().join("config/access.hcl")).unwrap();
        let file_name = dir.path().join("config/access.hcl").display().to_string();
        assert_eq!(parse_apply_str(&hcl, &file_name).unwrap(), request);
    }

    #[test]
    fn missing_policy_file_is_reported_at_the_value() {
        let dir = dir_with(&[("access.hcl", "policy \"p\" {\n  source_file = \"nope.rego\"\n}\n")]);
        let hcl = dir.path().join("access.hcl");
        let errors = all_errors(parse_apply_file(&hcl));
        let missing = dir.path().join("nope.rego");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let expected = format!(
            "{}:2:17: cannot read policy file {}: ",
            hcl.display(),
            missing.display()
        );
        assert!(errors[0].starts_with(&expected), "{errors:#?}");
        assert!(errors[0].contains("No such file"), "{errors:#?}");
    }

    #[test]
    fn bare_file_names_resolve_against_the_current_directory() {
        // No directory in the name: the path is shown as written.
        assert_error(
            "policy \"p\" {\n  source_file = \"surely-not-here-7c1f.rego\"\n}\n",
            "2:17",
            "cannot read policy file surely-not-here-7c1f.rego: ",
        );
    }

    #[test]
    fn rego_syntax_errors_are_reported_in_the_rego_file() {
        let broken = "package hallpass.request\n\ndeny contains msg if {\n  msg := \n}\n";
        let dir = dir_with(&[
            (
                "access.hcl",
                "policy \"p\" {\n  source_file = \"p.rego\"\n}\nrole \"r\" {}\n",
            ),
            ("p.rego", broken),
        ]);
        let hcl = dir.path().join("access.hcl");
        let errors = parse_apply_file(&hcl).unwrap_err();
        let errors = errors.errors();
        // The HCL file's own errors first, then the Rego file's.
        assert_eq!(errors[0].file, hcl.display().to_string());
        // `msg := ` with nothing after it: the parser notices at line 4, column 7.
        let rego = errors.last().unwrap();
        let rego_file = dir.path().join("p.rego").display().to_string();
        assert_eq!(rego.to_string(), format!("{rego_file}:4:7: {}", rego.message));
        assert!(!rego.message.is_empty());
    }

    #[test]
    fn inline_heredoc_errors_map_onto_the_hcl_file() {
        let source = "policy \"p\" {\n  source = <<-EOT\n    package hallpass.request\n\n    deny contains msg if {\n      msg := \n    }\n  EOT\n}\n";
        let errors = errors(source);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        // Rego line 4, column 7 (as in the file case) is line 6 of the HCL
        // file, and the 4 spaces `<<-` stripped move it to column 11.
        assert!(errors[0].starts_with("6:11: policy \"p\": "), "{errors:#?}");
    }

    #[test]
    fn inline_sources_parse() {
        let source = "policy \"p\" {\n  source = <<-EOT\n    package hallpass.request\n    default auto_approve := false\n  EOT\n}\n";
        let request = parse_apply_str(source, "a.hcl").unwrap();
        assert_eq!(
            request.policies,
            [PolicySpec {
                name: "p".into(),
                source: "package hallpass.request\ndefault auto_approve := false\n".into(),
            }]
        );
    }

    #[test]
    fn the_documented_policies_compile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        let guardrails = "package hallpass.request\n\ndefault auto_approve := false\n";
        std::fs::write(dir.path().join("policies/guardrails.rego"), guardrails).unwrap();
        let example = hallpass_doc_examples::example("access-config.md", "## Policies", "hcl");
        let file = dir.path().join("access.hcl");
        let request = parse_apply_str(&example, &file.to_string_lossy()).unwrap();
        let names: Vec<&str> = request.policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["guardrails", "weekdays"]);
        assert_eq!(
            request.policies[0].source, guardrails,
            "source_file is read relative to the HCL file"
        );
        assert!(
            request.policies[1]
                .source
                .starts_with("package hallpass.request\n\ndeny contains"),
            "the heredoc loses its indentation: {:?}",
            request.policies[1].source
        );
    }

    #[test]
    fn quoted_inline_errors_give_the_rego_position() {
        let source = "policy \"p\" {\n  source = \"package hallpass.request\\ndeny contains msg if {\"\n}\n";
        let errors = errors(source);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with("2:12: policy \"p\", Rego line "), "{errors:#?}");
    }

    #[test]
    fn exactly_one_source() {
        assert_error(
            "policy \"p\" {\n}\n",
            "1:1",
            "policy \"p\" has no source; add source_file = \"p.rego\" (relative to this file) or source = <<EOT ... EOT",
        );
        assert_error(
            "policy \"p\" {\n  source_file = \"p.rego\"\n  source = \"package x\"\n}\n",
            "3:12",
            "policy \"p\" sets both source_file and source; keep one of them",
        );
        assert_error(
            "policy \"p\" {\n  source_file = \"\"\n}\n",
            "2:17",
            "attribute \"source_file\" in policy \"p\" is empty; give the path of a .rego file",
        );
        assert_eq!(
            errors("policy \"p\" {\n  sourcefile = \"p.rego\"\n}\n"),
            [
                "1:1: policy \"p\" has no source; add source_file = \"p.rego\" (relative to this file) \
                 or source = <<EOT ... EOT",
                "2:3: unknown attribute \"sourcefile\" in policy \"p\"; expected one of: source_file, source; \
                 did you mean \"source_file\"?",
            ]
        );
    }

    #[test]
    fn duplicate_policy_names_point_at_the_second() {
        let one = "policy \"p\" {\n  source = \"package hallpass.request\\n\"\n}\n";
        assert_error(
            &format!("{one}{one}"),
            "4:8",
            "duplicate policy \"p\": it is already defined at line 1, column 8",
        );
    }

    #[test]
    fn heredoc_offsets() {
        let hcl = "x = <<-EOT\n    ab\n      cd\n  EOT\n";
        let at = hcl.find("<<").unwrap();
        // Dedented by 4: "ab\n  cd\n".
        let text = "ab\n  cd\n";
        assert_eq!(heredoc_offset(hcl, at, text, 1, 2), Some(hcl.find("b\n").unwrap()));
        assert_eq!(heredoc_offset(hcl, at, text, 2, 3), Some(hcl.find("cd").unwrap()));
        assert_eq!(heredoc_offset(hcl, at, text, 9, 1), None);
        assert_eq!(heredoc_offset("x = \"ab\"", 4, "ab", 1, 1), None);
    }
}
