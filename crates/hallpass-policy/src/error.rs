//! The crate's errors, and turning regorus's error text into them.
//!
//! regorus reports problems as `anyhow` errors whose text is a small source
//! excerpt:
//!
//! ```text
//!
//! --> oncall.rego:3:7
//!   |
//! 3 | deny contains msg if {
//!   |       ^
//! error: MESSAGE
//! ```
//!
//! It keeps no structured position, so [`Located::parse`] reads that text
//! back. Errors that carry no excerpt (limits, internal errors) are kept whole.

use std::path::PathBuf;

/// Why policies could not be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A module is not valid Rego, or not acceptable here (wrong package,
    /// duplicate name, unknown function). `line` and `column` are 1-based.
    #[error("{module}:{line}:{column}: {message}")]
    Compile {
        module: String,
        line: u32,
        column: u32,
        message: String,
    },
    /// Evaluation failed: a runtime or builtin error, conflicting values for a
    /// rule, or the time limit.
    #[error("policy evaluation failed: {0}")]
    Evaluation(String),
    /// A decision rule produced a value of the wrong type.
    #[error("policy decision is invalid: {0}")]
    Decision(String),
}

/// Why [`crate::load_dir`] could not read a directory of policies.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Listing a directory or reading a file failed (a `.rego` file that is
    /// not UTF-8 is reported here too).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no `.rego` file at any depth.
    #[error("no .rego files in {}", dir.display())]
    NoRegoFiles { dir: PathBuf },
}

/// A regorus error split into its place and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl Located {
    /// Reads the `--> FILE:LINE:COL` excerpt format; `None` when `text` has
    /// no such excerpt.
    pub(crate) fn parse(text: &str) -> Option<Located> {
        let start = text.find("--> ")?;
        let after_arrow = &text[start + 4..];
        let (location, rest) = after_arrow.split_once('\n')?;
        // The file name may itself contain ':', so split from the right.
        let mut parts = location.trim_end().rsplitn(3, ':');
        let column = parts.next()?.parse().ok()?;
        let line = parts.next()?.parse().ok()?;
        let file = parts.next()?.to_string();
        // The excerpt is three lines (` |`, `N | source`, ` | ^`), then
        // `KIND: MESSAGE`, where the message may run over several lines.
        let mut lines = rest.splitn(4, '\n');
        let (Some(_), Some(_), Some(_), Some(tail)) = (lines.next(), lines.next(), lines.next(), lines.next()) else {
            return None;
        };
        let message = match tail.split_once(": ") {
            Some((kind, message)) if !kind.contains(' ') => message,
            _ => tail,
        };
        Some(Located {
            file,
            line,
            column,
            message: flatten(message),
        })
    }
}

/// One line out of a message that embeds more excerpts (regorus's recursion
/// error lists each rule of the cycle that way): each excerpt becomes its
/// `FILE:LINE:COL`, the source lines and carets are dropped.
fn flatten(message: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for line in message.lines() {
        let trimmed = line.trim();
        if let Some(location) = trimmed.strip_prefix("--> ") {
            parts.push(location);
        } else if trimmed.is_empty() || is_excerpt_line(trimmed) {
            continue;
        } else {
            parts.push(trimmed);
        }
    }
    parts.join(" ")
}

/// `|`, `12 | source` or `| ^`: the body of an excerpt.
fn is_excerpt_line(trimmed: &str) -> bool {
    let after_number = trimmed.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
    after_number.starts_with('|')
}

/// The whole text of an `anyhow` error, with its context chain.
pub(crate) fn error_text(error: &anyhow::Error) -> String {
    format!("{error:#}")
}

/// One line for an evaluation error: `FILE:LINE:COL: MESSAGE` when regorus
/// placed it, otherwise its text without the leading blank line.
pub(crate) fn one_line(text: &str) -> String {
    match Located::parse(text) {
        Some(at) => format!("{}:{}:{}: {}", at.file, at.line, at.column, at.message),
        None => text.trim().to_string(),
    }
}

/// A compile error for `module`, placed where regorus placed it (1:1 when it
/// gave no place).
pub(crate) fn compile_error(module: &str, error: &anyhow::Error) -> PolicyError {
    let text = error_text(error);
    match Located::parse(&text) {
        Some(at) => PolicyError::Compile {
            // regorus names the file the problem is in, which for errors found
            // while preparing all modules together need not be `module`.
            module: at.file,
            line: at.line,
            column: at.column,
            message: with_hint(at.message),
        },
        None => PolicyError::Compile {
            module: module.to_string(),
            line: 1,
            column: 1,
            message: with_hint(text.trim().to_string()),
        },
    }
}

/// Adds what to do to the messages people meet most when coming from older
/// Rego.
fn with_hint(message: String) -> String {
    if message.contains("`if` keyword is required") || message.contains("`contains` keyword is required") {
        format!("{message} (policies are Rego v1, the syntax of OPA 1.0)")
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_regorus_excerpt() {
        let text = "\n--> dir/a:b.rego:6:13\n  |\n6 | }\n  |             ^\nerror: expecting expression";
        let at = Located::parse(text).unwrap();
        assert_eq!(
            at,
            Located {
                file: "dir/a:b.rego".into(),
                line: 6,
                column: 13,
                message: "expecting expression".into()
            }
        );
        assert_eq!(one_line(text), "dir/a:b.rego:6:13: expecting expression");
    }

    #[test]
    fn nested_excerpts_become_places() {
        let text = "\n--> one.rego:2:1\n  |\n2 | a if b\n  | ^\nerror: recursion detected when evaluating rule:\n\
                    --> one.rego:4:1\n  |\n4 | deny contains \"x\" if a\n  | ^\ndepends on: \n\
                    --> one.rego:2:1\n  |\n2 | a if b\n  | ^\ndepends on: cyclic evaluation";
        assert_eq!(
            one_line(text),
            "one.rego:2:1: recursion detected when evaluating rule: one.rego:4:1 depends on: one.rego:2:1 \
             depends on: cyclic evaluation"
        );
    }

    #[test]
    fn text_without_an_excerpt_is_kept() {
        assert_eq!(Located::parse("something broke"), None);
        assert_eq!(one_line("\nsomething broke\n"), "something broke");
    }
}
