//! Positioned configuration errors, and the [`Reporter`] that collects them
//! while a file is checked.
//!
//! hcl-edit hands out byte ranges; people want `FILE:LINE:COLUMN`, so the
//! reporter keeps an index of line starts and converts on demand.

use hcl_edit::Span;
use thiserror::Error;

/// One problem in a configuration file.
///
/// `line` and `column` are 1-based (the column counts characters, not bytes).
/// They are 0 only when the problem concerns the file as a whole, e.g. it
/// cannot be read; [`Display`](fmt::Display) then leaves the position out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ConfigError {
    fn render(&self) -> String {
        if self.line == 0 {
            format!("{}: {}", self.file, self.message)
        } else {
            format!("{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

/// Every problem found in one file, in source order; never empty.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", render_lines(&self.0))]
pub struct ConfigErrors(Vec<ConfigError>);

fn render_lines(errors: &[ConfigError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl ConfigErrors {
    /// The individual errors, ordered by position.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }

    /// A single error about the file as a whole (no position).
    pub(crate) fn whole_file(file: &str, message: String) -> ConfigErrors {
        ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            line: 0,
            column: 0,
            message,
        }])
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Byte offset of the start of something hcl-edit parsed. Values built by the
/// parser always carry a span; 0 is only a fallback that keeps us panic-free.
pub(crate) fn start_of(item: &impl Span) -> usize {
    item.span().map_or(0, |range| range.start)
}

/// Collects errors for one source file, converting byte offsets to lines and
/// columns.
pub(crate) struct Reporter<'s> {
    file: &'s str,
    source: &'s str,
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
}

impl<'s> Reporter<'s> {
    pub(crate) fn new(source: &'s str, file: &'s str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Reporter {
            file,
            source,
            line_starts,
            errors: Vec::new(),
        }
    }

    /// 1-based line and character column of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let line_index = self.line_starts.partition_point(|&start| start <= offset).max(1) - 1;
        let line_start = self.line_starts.get(line_index).copied().unwrap_or(0);
        let column = match self.source.get(line_start..offset) {
            Some(prefix) => prefix.chars().count(),
            // Not on a char boundary (should not happen): bytes are close enough.
            None => offset.saturating_sub(line_start),
        };
        (line_index + 1, column + 1)
    }

    /// "line L, column C", for messages that refer to another place.
    pub(crate) fn describe_position(&self, offset: usize) -> String {
        let (line, column) = self.position(offset);
        format!("line {line}, column {column}")
    }

    /// The name of the file being checked, as shown in messages.
    pub(crate) fn file(&self) -> &'s str {
        self.file
    }

    /// The text being checked, for callers that map positions inside it.
    pub(crate) fn source(&self) -> &'s str {
        self.source
    }

    pub(crate) fn error(&mut self, offset: usize, message: impl Into<String>) {
        let (line, column) = self.position(offset);
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        });
    }

    /// An error in another file the checked one refers to (a policy's Rego
    /// source), already positioned in that file.
    pub(crate) fn error_in(&mut self, file: String, line: usize, column: usize, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file,
            line,
            column,
            message: message.into(),
        });
    }

    /// `Ok(value)` when nothing was reported, otherwise every error, sorted.
    pub(crate) fn finish<T>(mut self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(value);
        }
        // Checks run block by block, so a few errors (e.g. a missing attribute
        // reported at its block) come out of order; sort for readability.
        // Errors in other files follow, in the order their blocks appear: the
        // stable sort keeps that order, and mixing their lines with this
        // file's would make no sense.
        let file = self.file;
        self.errors.sort_by_key(|error| {
            if error.file == file {
                (false, error.line, error.column)
            } else {
                (true, 0, 0)
            }
        });
        Err(ConfigErrors(self.errors))
    }
}

/// Parses HCL into a body, turning a syntax error into a positioned error.
pub(crate) fn parse_body(source: &str, file: &str) -> Result<hcl_edit::structure::Body, ConfigErrors> {
    source.parse::<hcl_edit::structure::Body>().map_err(|error| {
        ConfigErrors::from(ConfigError {
            file: file.to_string(),
            line: error.location().line(),
            column: error.location().column(),
            message: format!("syntax error: {}", error.message()),
        })
    })
}

/// Reads a file for one of the `parse_*_file` functions.
pub(crate) fn read_file(path: &std::path::Path) -> Result<(String, String), ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(source) => Ok((source, file)),
        Err(error) => Err(ConfigErrors::whole_file(
            &file,
            format!("cannot read the file: {error}"),
        )),
    }
}
