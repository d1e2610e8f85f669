//! Free text people type into requests (reasons, tickets, comments): its
//! limits, and the characters it may not hold.
//!
//! Reasons and comments are shown to approvers in terminals and pages.
//! Control characters (carriage return, escape sequences, NUL) and Unicode
//! direction overrides could make one person's text look like another line,
//! another field or another decision, so they are refused at the door; the
//! CLI escapes them again on output for anything stored before.

// The field names live with the errors that name them, so the errors need
// nothing from here.
use crate::error::RuleError;
pub use crate::error::TextField;

/// Longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1024;
/// Longest ticket reference accepted, in characters.
pub const MAX_TICKET_CHARS: usize = 128;
/// Longest approval or denial comment accepted, in characters.
pub const MAX_COMMENT_CHARS: usize = 1024;

/// The longest `field` accepted, in characters.
fn max_chars(field: TextField) -> usize {
    match field {
        TextField::Reason => MAX_REASON_CHARS,
        TextField::Ticket => MAX_TICKET_CHARS,
        TextField::Comment => MAX_COMMENT_CHARS,
    }
}

/// The characters [`is_disguising_char`] finds, as a regular-expression
/// character-class body (the syntax ECMA-262, Python and Rust share), for
/// the OpenAPI document's patterns.
pub const DISGUISING_PATTERN: &str = r"\x00-\x1F\x7F-\x9F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069";

/// True for characters that change how text is displayed rather than
/// being displayed: C0 and C1 controls, DEL, and the bidirectional
/// formatting characters.
pub fn is_disguising_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Describes the first disguising character of `text` as `U+000D at
/// character 5`, if there is one.
pub fn first_disguising_char(text: &str) -> Option<String> {
    text.chars()
        .enumerate()
        .find(|(_, c)| is_disguising_char(*c))
        .map(|(index, c)| format!("U+{:04X} at character {}", u32::from(c), index + 1))
}

/// Trims `text` and checks its length and characters; empty means absent.
pub fn optional(field: TextField, text: &Option<String>) -> Result<Option<String>, RuleError> {
    let Some(trimmed) = text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let chars = trimmed.chars().count();
    if chars > max_chars(field) {
        return Err(RuleError::TooLong {
            field,
            chars,
            max: max_chars(field),
        });
    }
    if let Some(found) = first_disguising_char(trimmed) {
        return Err(RuleError::ControlCharacter { field, found });
    }
    Ok(Some(trimmed.to_string()))
}

/// Like [`optional`], but the text must be there.
pub fn required(field: TextField, text: &str) -> Result<String, RuleError> {
    optional(field, &Some(text.to_string()))?.ok_or(RuleError::Required(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_trimmed_and_kept() {
        assert_eq!(
            required(TextField::Reason, "  INC-1: Zoë's 東京 rollout  ").unwrap(),
            "INC-1: Zoë's 東京 rollout"
        );
        assert_eq!(optional(TextField::Ticket, &Some("   ".into())).unwrap(), None);
        assert_eq!(optional(TextField::Ticket, &None).unwrap(), None);
    }

    #[test]
    fn required_text_must_be_there() {
        assert_eq!(
            required(TextField::Reason, " \t "),
            Err(RuleError::Required(TextField::Reason))
        );
    }

    #[test]
    fn disguising_characters_are_refused_with_their_position() {
        for (text, code) in [
            ("fix\rapproved", "U+000D at character 4"),
            ("a\u{1b}[2Kb", "U+001B at character 2"),
            ("nul\0", "U+0000 at character 4"),
            ("two\nlines", "U+000A at character 4"),
            ("abc\u{202e}cba", "U+202E at character 4"),
            ("x\u{85}y", "U+0085 at character 2"),
        ] {
            let error = required(TextField::Reason, text).unwrap_err();
            assert_eq!(
                error,
                RuleError::ControlCharacter {
                    field: TextField::Reason,
                    found: code.into()
                }
            );
            assert!(error.to_string().contains(code), "{error}");
        }
    }

    #[test]
    fn lengths_are_counted_in_characters() {
        let long = "é".repeat(MAX_TICKET_CHARS + 1);
        assert!(matches!(
            optional(TextField::Ticket, &Some(long)),
            Err(RuleError::TooLong { chars: 129, .. })
        ));
        assert!(optional(TextField::Ticket, &Some("é".repeat(MAX_TICKET_CHARS))).is_ok());
    }
}
