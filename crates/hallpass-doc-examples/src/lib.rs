//! The examples in the project's Markdown docs, for tests.
//!
//! A test of "the documented example" reads the example from the doc it
//! documents instead of keeping a copy: when the doc changes, the test sees
//! the change. Used only as a dev-dependency; it panics with a message that
//! names the doc and the section when an example is missing, which is a test
//! failure the doc's author has to fix.

use std::path::PathBuf;

/// `docs/NAME` of this repository.
pub fn doc_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs")).join(name)
}

/// The first fenced block tagged `language` in `docs/DOC`, searched from the
/// first line containing `start` to the end of that `## ` section.
///
/// # Panics
/// When the doc cannot be read or has no such block, naming both.
pub fn example(doc: &str, start: &str, language: &str) -> String {
    let path = doc_path(doc);
    let markdown =
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    fenced_block(&markdown, start, language).unwrap_or_else(|| {
        panic!(
            "docs/{doc} has no ```{language} block in the section starting at {start:?}; \
             the test reads its example from there"
        )
    })
}

/// A CommonMark code fence line: its character, length and info string.
fn fence(line: &str) -> Option<(char, usize, &str)> {
    let rest = line.trim_start_matches(' ');
    if line.len() - rest.len() > 3 {
        return None;
    }
    let marker = rest.chars().next().filter(|c| matches!(c, '`' | '~'))?;
    let length = rest.chars().take_while(|c| *c == marker).count();
    (length >= 3).then(|| (marker, length, rest[length..].trim()))
}

/// The first fenced block tagged `language` in `markdown`, from the first
/// occurrence of `start` up to the next `## ` heading outside a block.
pub fn fenced_block(markdown: &str, start: &str, language: &str) -> Option<String> {
    let from = markdown.find(start)?;
    // The block being read: (marker, length, whether it is the one wanted).
    let mut open: Option<(char, usize, bool)> = None;
    let mut code = String::new();
    // The line holding `start` is the section's own heading when it is one.
    for line in markdown[from..].lines().skip(1) {
        match (open, fence(line)) {
            (None, Some((marker, length, info))) => {
                open = Some((marker, length, info.split_whitespace().next() == Some(language)));
            }
            (None, None) if line.starts_with("## ") => return None,
            (Some((marker, length, wanted)), Some((closing, closing_length, "")))
                if closing == marker && closing_length >= length =>
            {
                if wanted {
                    return Some(code);
                }
                open = None;
            }
            (Some((_, _, true)), _) => {
                code.push_str(line);
                code.push('\n');
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_are_read_as_commonmark_does() {
        let markdown =
            "## A\n```sh\nnot this\n```\n````hcl extra\nx = 1\n```\nstill inside\n````\n## B\n```hcl\ny\n```\n";
        assert_eq!(
            fenced_block(markdown, "## A", "hcl").as_deref(),
            Some("x = 1\n```\nstill inside\n")
        );
        assert_eq!(fenced_block(markdown, "## B", "hcl").as_deref(), Some("y\n"));
        assert_eq!(
            fenced_block(markdown, "## A", "python"),
            None,
            "a block of section B is not section A's"
        );
        assert_eq!(fenced_block(markdown, "## C", "hcl"), None);
        assert_eq!(fenced_block("## A\n    ```hcl\nindented code\n", "## A", "hcl"), None);
        assert_eq!(
            fenced_block("## A\n~~~hcl\nz\n~~~\n", "## A", "hcl").as_deref(),
            Some("z\n")
        );
        let mixed = "intro\n```hcl\nx = 1\n```python\n```\n~~~~ python extra\nok()\n~~~\n```\n~~~~\nafter\n";
        assert_eq!(
            fenced_block(mixed, "intro", "python").as_deref(),
            Some("ok()\n~~~\n```\n")
        );
    }

    #[test]
    fn every_doc_named_by_the_tests_exists() {
        for doc in ["access-config.md", "approval-flows.md", "policies.md"] {
            assert!(doc_path(doc).is_file(), "{}", doc_path(doc).display());
        }
    }
}
