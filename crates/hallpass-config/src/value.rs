//! Literal HCL values with their positions, and typed reads of them.
//!
//! Hallpass configuration is data, not a program: every attribute value is
//! first reduced to a [`Literal`] (refusing interpolation, variables, calls,
//! operators...), then read as the type the attribute needs. Both parsers share
//! these helpers so their messages read the same.

use std::collections::BTreeMap;

use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::{Number, Span};

use crate::error::{Reporter, start_of};

/// A literal value and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Literal {
    pub at: usize,
    pub value: LiteralValue,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LiteralValue {
    String(String),
    Number(Number),
    Bool(bool),
    Null,
    Array(Vec<Literal>),
    /// Entries in source order, each with the offset of its key.
    Object(Vec<(String, usize, Literal)>),
}

impl LiteralValue {
    /// "a string", "a number"...: the "found ..." part of a type error.
    fn kind(&self) -> &'static str {
        match self {
            LiteralValue::String(_) => "a string",
            LiteralValue::Number(_) => "a number",
            LiteralValue::Bool(_) => "a bool",
            LiteralValue::Null => "null",
            LiteralValue::Array(_) => "a list",
            LiteralValue::Object(_) => "an object",
        }
    }
}

/// What a non-literal expression is, so the error can name it.
fn describe_non_literal(expr: &Expression) -> &'static str {
    match expr {
        Expression::StringTemplate(_) | Expression::HeredocTemplate(_) => {
            "a template with ${...} interpolation or %{...} directives"
        }
        Expression::Variable(_) => "a variable reference",
        Expression::Traversal(_) => "an attribute or index reference",
        Expression::FuncCall(_) => "a function call",
        Expression::Conditional(_) => "a conditional expression",
        Expression::UnaryOp(_) | Expression::BinaryOp(_) => "an operator expression",
        Expression::ForExpr(_) => "a for expression",
        Expression::Parenthesis(_) => "a parenthesized expression",
        _ => "an expression",
    }
}

/// The text of a heredoc that contains no interpolation, after `<<-` dedent.
fn plain_heredoc(heredoc: &hcl_edit::template::HeredocTemplate) -> Option<String> {
    let mut heredoc = heredoc.clone();
    heredoc.dedent();
    heredoc
        .template
        .iter()
        .map(|element| element.as_literal().map(|text| text.as_str()))
        .collect::<Option<Vec<_>>>()
        .map(|parts| parts.concat())
}

impl Reporter<'_> {
    /// Reduces an expression to a literal, reporting every non-literal part.
    pub(crate) fn literal(&mut self, expr: &Expression) -> Option<Literal> {
        let at = start_of(expr);
        let value = match expr {
            Expression::String(text) => LiteralValue::String(text.value().clone()),
            Expression::Number(number) => LiteralValue::Number(*number.value()),
            Expression::Bool(flag) => LiteralValue::Bool(*flag.value()),
            Expression::Null(_) => LiteralValue::Null,
            Expression::Array(array) => {
                // Convert every item (not just up to the first failure) so all
                // problems are reported in one go.
                let items: Vec<_> = array.iter().map(|item| self.literal(item)).collect();
                LiteralValue::Array(items.into_iter().collect::<Option<_>>()?)
            }
            Expression::Object(object) => {
                let entries: Vec<_> = object
                    .iter()
                    .map(|(key, value)| {
                        let key = self.object_key(key);
                        let value = self.literal(value.expr());
                        let (name, key_at) = key?;
                        Some((name, key_at, value?))
                    })
                    .collect();
                LiteralValue::Object(entries.into_iter().collect::<Option<_>>()?)
            }
            Expression::HeredocTemplate(heredoc) => match plain_heredoc(heredoc) {
                Some(text) => LiteralValue::String(text),
                None => return self.not_literal(expr),
            },
            other => return self.not_literal(other),
        };
        Some(Literal { at, value })
    }

    fn not_literal(&mut self, expr: &Expression) -> Option<Literal> {
        // Point at the offending `${...}` rather than the string's opening quote.
        let template = match expr {
            Expression::StringTemplate(template) => Some(&**template),
            Expression::HeredocTemplate(heredoc) => Some(&heredoc.template),
            _ => None,
        };
        let at = template
            .and_then(|template| template.iter().find(|element| !element.is_literal()))
            .and_then(Span::span)
            .map_or_else(|| start_of(expr), |range| range.start);
        self.error(
            at,
            format!(
                "only literal values are supported here, but this is {}; \
                 write a plain string, number, bool, list or object instead",
                describe_non_literal(expr)
            ),
        );
        None
    }

    fn object_key(&mut self, key: &ObjectKey) -> Option<(String, usize)> {
        let at = key.span().map_or(0, |range| range.start);
        match key {
            ObjectKey::Ident(ident) => Some((ident.as_str().to_string(), at)),
            ObjectKey::Expression(Expression::String(text)) => Some((text.value().clone(), at)),
            ObjectKey::Expression(_) => {
                self.error(
                    at,
                    "only literal values are supported here: object keys must be names or \
                     quoted strings, like env = \"dev\" or \"team.name\" = \"x\"",
                );
                None
            }
        }
    }

    fn wrong_type(&mut self, literal: &Literal, what: &str, expected: &str) {
        let message = format!("{what} must be {expected}, found {}", literal.value.kind());
        self.error(literal.at, message);
    }

    pub(crate) fn string(&mut self, literal: &Literal, what: &str) -> Option<String> {
        match &literal.value {
            LiteralValue::String(text) => Some(text.clone()),
            _ => {
                self.wrong_type(literal, what, "a string");
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, literal: &Literal, what: &str) -> Option<bool> {
        match literal.value {
            LiteralValue::Bool(flag) => Some(flag),
            _ => {
                self.wrong_type(literal, what, "a bool (true or false)");
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    pub(crate) fn whole_number(&mut self, literal: &Literal, what: &str, min: u64, max: u64) -> Option<u64> {
        let LiteralValue::Number(number) = &literal.value else {
            self.wrong_type(literal, what, "a whole number");
            return None;
        };
        let message = match (number.as_u64(), number.as_i64()) {
            (Some(n), _) if (min..=max).contains(&n) => return Some(n),
            (Some(n), _) if n > max => format!("{what} must be at most {max}, found {n}"),
            (Some(n), _) => format!("{what} must be at least {min}, found {n}"),
            (None, Some(n)) => format!("{what} must be at least {min}, found {n}"),
            (None, None) => format!("{what} must be a whole number, found {number}"),
        };
        self.error(literal.at, message);
        None
    }

    /// A list of strings, each with its offset (for later validation errors).
    pub(crate) fn string_list(&mut self, literal: &Literal, what: &str) -> Option<Vec<(String, usize)>> {
        let LiteralValue::Array(items) = &literal.value else {
            self.wrong_type(literal, what, "a list of strings");
            return None;
        };
        let items: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let text = self.string(item, &format!("item {} of {what}", index + 1))?;
                Some((text, item.at))
            })
            .collect();
        items.into_iter().collect()
    }

    /// An object whose values are all strings.
    pub(crate) fn string_map(&mut self, literal: &Literal, what: &str) -> Option<BTreeMap<String, String>> {
        let LiteralValue::Object(entries) = &literal.value else {
            self.wrong_type(literal, what, "an object of strings, like { env = \"dev\" }");
            return None;
        };
        let entries: Vec<_> = entries
            .iter()
            .map(|(key, _, value)| Some((key.clone(), self.string(value, &format!("{what}, key \"{key}\""))?)))
            .collect();
        entries.into_iter().collect()
    }

    /// An object converted to JSON, for free-form settings such as a target's
    /// `config`.
    pub(crate) fn json_object(
        &mut self,
        literal: &Literal,
        what: &str,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        match self.json(literal)? {
            serde_json::Value::Object(map) => Some(map),
            _ => {
                self.wrong_type(literal, what, "an object, like { audience = \"demo\" }");
                None
            }
        }
    }

    /// Any literal as JSON; `null` is refused because the API has no use for it
    /// and it usually means a value was forgotten.
    pub(crate) fn json(&mut self, literal: &Literal) -> Option<serde_json::Value> {
        use serde_json::Value;
        Some(match &literal.value {
            LiteralValue::String(text) => Value::String(text.clone()),
            LiteralValue::Bool(flag) => Value::Bool(*flag),
            LiteralValue::Number(number) => {
                let json = if let Some(n) = number.as_u64() {
                    Some(n.into())
                } else if let Some(n) = number.as_i64() {
                    Some(n.into())
                } else {
                    number.as_f64().and_then(serde_json::Number::from_f64)
                };
                match json {
                    Some(json) => Value::Number(json),
                    None => {
                        self.error(
                            literal.at,
                            format!("number {number} cannot be represented; use a finite number"),
                        );
                        return None;
                    }
                }
            }
            LiteralValue::Null => {
                self.error(
                    literal.at,
                    "null is not allowed here; remove the entry or give it a value",
                );
                return None;
            }
            LiteralValue::Array(items) => {
                let items: Vec<_> = items.iter().map(|item| self.json(item)).collect();
                Value::Array(items.into_iter().collect::<Option<_>>()?)
            }
            LiteralValue::Object(entries) => {
                let entries: Vec<_> = entries
                    .iter()
                    .map(|(key, _, value)| Some((key.clone(), self.json(value)?)))
                    .collect();
                Value::Object(entries.into_iter().collect::<Option<_>>()?)
            }
        })
    }
}
