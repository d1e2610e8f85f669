//! Walking an HCL body against the attributes and blocks it may contain.
//!
//! Both file kinds are "a fixed set of names, anything else is a typo", so one
//! walker reports unknown, misplaced and repeated entries, and hands back the
//! known attributes already reduced to literals.

use hcl_edit::structure::{Block, Body, Structure};

use crate::error::{Reporter, start_of};
use crate::value::Literal;

/// The known attributes of one body, ready to be read.
pub(crate) struct Attrs {
    /// Where the body is, for messages: `in role "admin"`.
    place: String,
    /// Offset of the enclosing block, where a missing attribute is reported.
    at: usize,
    values: Vec<(&'static str, Literal)>,
}

impl Attrs {
    /// `attribute "NAME" in role "x"`: the subject of a value error.
    pub(crate) fn what(&self, name: &str) -> String {
        format!("attribute \"{name}\" {}", self.place)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Literal> {
        self.values
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, literal)| literal)
    }

    /// Reads an attribute when present; `None` when absent or invalid (the
    /// latter is already reported).
    pub(crate) fn optional<'s, T>(
        &self,
        reporter: &mut Reporter<'s>,
        name: &str,
        read: impl FnOnce(&mut Reporter<'s>, &Literal, &str) -> Option<T>,
    ) -> Option<T> {
        let literal = self.get(name)?;
        read(reporter, literal, &self.what(name))
    }

    /// Like [`optional`](Self::optional), but reports a missing attribute;
    /// `example` shows how to write it.
    pub(crate) fn required<'s, T>(
        &self,
        reporter: &mut Reporter<'s>,
        name: &str,
        example: &str,
        read: impl FnOnce(&mut Reporter<'s>, &Literal, &str) -> Option<T>,
    ) -> Option<T> {
        if self.get(name).is_none() {
            let message = format!(
                "missing required attribute \"{name}\" {}; add it, e.g. {example}",
                self.place
            );
            reporter.error(self.at, message);
            return None;
        }
        self.optional(reporter, name, read)
    }
}

/// The entries a body may hold.
pub(crate) struct Shape {
    pub attributes: &'static [&'static str],
    pub blocks: &'static [&'static str],
    /// Attributes the walker accepts without reducing them to literals;
    /// the caller reads them itself (a target's `secrets`, whose values may
    /// be `env(...)` or `file(...)`).
    pub verbatim: &'static [&'static str],
}

impl Reporter<'_> {
    /// Checks `body` against `shape`: reports unknown or repeated attributes
    /// and unknown blocks, and returns the known attributes and blocks.
    /// `place` describes the body (`in role "x"`), `at` is where it starts.
    pub(crate) fn walk<'b>(
        &mut self,
        body: &'b Body,
        shape: &Shape,
        place: String,
        at: usize,
    ) -> (Attrs, Vec<&'b Block>) {
        let mut attrs = Attrs {
            place,
            at,
            values: Vec::new(),
        };
        let mut blocks = Vec::new();
        for structure in body.iter() {
            match structure {
                Structure::Attribute(attribute) => {
                    let key = attribute.key.as_str();
                    let key_at = start_of(&attribute.key);
                    let Some(&name) = shape.attributes.iter().find(|name| **name == key) else {
                        let message = unknown_entry("attribute", key, &attrs.place, shape.attributes, shape.blocks);
                        self.error(key_at, message);
                        continue;
                    };
                    if attrs.get(name).is_some() {
                        let message = format!("attribute \"{name}\" is set twice {}; remove one of them", attrs.place);
                        self.error(key_at, message);
                        continue;
                    }
                    if shape.verbatim.contains(&name) {
                        attrs.values.push((
                            name,
                            Literal {
                                at: key_at,
                                value: crate::value::LiteralValue::Null,
                            },
                        ));
                        continue;
                    }
                    if let Some(literal) = self.literal(&attribute.value) {
                        attrs.values.push((name, literal));
                    }
                }
                Structure::Block(block) => {
                    let ident = block.ident.as_str();
                    if shape.blocks.contains(&ident) {
                        blocks.push(block);
                    } else {
                        let message = unknown_entry("block", ident, &attrs.place, shape.blocks, shape.attributes);
                        self.error(start_of(&block.ident), message);
                    }
                }
            }
        }
        (attrs, blocks)
    }
}

/// The message for an attribute or block that does not belong: says what is
/// allowed, suggests a near miss, and catches block/attribute mix-ups.
fn unknown_entry(kind: &str, name: &str, place: &str, expected: &[&str], other_kind: &[&str]) -> String {
    if other_kind.contains(&name) {
        return match kind {
            "attribute" => {
                format!("\"{name}\" {place} is a block, not an attribute; write {name} {{ ... }} without \"=\"")
            }
            _ => format!("\"{name}\" {place} is an attribute, not a block; write {name} = ..."),
        };
    }
    let mut message = if expected.is_empty() && other_kind.is_empty() {
        format!("unexpected {kind} \"{name}\" {place}; nothing is allowed here, leave the block empty")
    } else if expected.is_empty() {
        let other = if kind == "block" { "attribute" } else { "block" };
        format!(
            "unexpected {kind} \"{name}\" {place}; no {kind}s are allowed here, only the {other}s: {}",
            other_kind.join(", ")
        )
    } else {
        format!(
            "unknown {kind} \"{name}\" {place}; expected one of: {}",
            expected.join(", ")
        )
    };
    if let Some(close) = closest(name, expected) {
        message.push_str(&format!("; did you mean \"{close}\"?"));
    }
    message
}

/// The candidate within a small edit distance of `word`, if any.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}
