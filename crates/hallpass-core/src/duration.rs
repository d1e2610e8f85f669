//! Human durations: `30s`, `15m`, `1h30m`, `7d`.
//!
//! Only positive whole seconds are accepted, up to ten years: anything longer
//! is a typo, not an access window.

use thiserror::Error;

/// The longest duration Hallpass accepts anywhere (ten years).
pub const MAX_DURATION_SECONDS: u64 = 10 * 365 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    #[error("duration is empty; write it like 30s, 15m, 1h30m or 7d")]
    Empty,
    #[error("duration {0:?} is negative; durations must be positive, like 15m")]
    Negative(String),
    #[error("duration {0:?} is not valid: use whole numbers with the units s, m, h or d, like 30s, 15m, 1h30m or 7d")]
    Malformed(String),
    #[error("duration {0:?} is zero; it must be at least 1s")]
    Zero(String),
    #[error("duration {0:?} is longer than the 10-year limit")]
    TooLong(String),
}

/// Parses `1h30m`-style durations into seconds.
pub fn parse_duration(text: &str) -> Result<u64, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    if trimmed.starts_with('-') {
        return Err(DurationError::Negative(text.to_string()));
    }
    let malformed = || DurationError::Malformed(text.to_string());
    let too_long = || DurationError::TooLong(text.to_string());
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit_rank = usize::MAX;
    for ch in trimmed.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let (rank, unit_seconds) = match ch {
            'd' => (3, 86_400u64),
            'h' => (2, 3_600),
            'm' => (1, 60),
            's' => (0, 1),
            _ => return Err(malformed()),
        };
        // Units must appear once each, largest first: `1h30m`, not `30m1h`.
        if digits.is_empty() || rank >= last_unit_rank {
            return Err(malformed());
        }
        last_unit_rank = rank;
        let amount: u64 = digits.parse().map_err(|_| too_long())?;
        digits.clear();
        total = amount
            .checked_mul(unit_seconds)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(too_long)?;
    }
    if !digits.is_empty() {
        // A bare number: refuse rather than guess the unit.
        return Err(malformed());
    }
    if total == 0 {
        return Err(DurationError::Zero(text.to_string()));
    }
    if total > MAX_DURATION_SECONDS {
        return Err(too_long());
    }
    Ok(total)
}

/// Formats seconds in the same notation [`parse_duration`] reads, shortest form.
pub fn format_duration(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".to_string();
    }
    let mut rest = seconds;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400u64), ("h", 3_600), ("m", 60), ("s", 1)] {
        let amount = rest / size;
        if amount > 0 {
            out.push_str(&format!("{amount}{unit}"));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_forms() {
        // The forms docs/access-config.md shows, read from the page: its
        // sentence "Durations are ... largest first: `30s`, `15m`, ...;".
        let page = std::fs::read_to_string(hallpass_doc_examples::doc_path("access-config.md")).unwrap();
        let start = page
            .find("Durations are whole numbers")
            .expect("the sentence on durations");
        let sentence = &page[start..start + page[start..].find(';').expect("its end")];
        let documented: Vec<&str> = sentence.split('`').skip(1).step_by(2).collect();
        let units = ["s", "m", "h", "d"].map(String::from);
        let forms: Vec<&str> = documented
            .into_iter()
            .filter(|form| !units.contains(&form.to_string()))
            .collect();
        assert!(forms.len() >= 4, "{sentence}");
        for form in forms {
            assert!(parse_duration(form).is_ok(), "the documented {form:?} is refused");
        }
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration(" 2h "), Ok(7200));
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        assert!(matches!(parse_duration("abc"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse_duration("0s"), Err(DurationError::Zero(_))));
        assert!(matches!(parse_duration("-5m"), Err(DurationError::Negative(_))));
        assert!(matches!(parse_duration(""), Err(DurationError::Empty)));
        assert!(matches!(parse_duration("10"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse_duration("30m1h"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse_duration("1h1h"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse_duration("h"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse_duration("1.5h"), Err(DurationError::Malformed(_))));
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(parse_duration("3651d"), Err(DurationError::TooLong(_))));
    }

    #[test]
    fn formats_shortest_form() {
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(3600), "1h");
        assert_eq!(format_duration(90_061), "1d1h1m1s");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(seconds in 1u64..MAX_DURATION_SECONDS) {
            prop_assert_eq!(parse_duration(&format_duration(seconds)), Ok(seconds));
        }

        #[test]
        fn never_panics(text in ".{0,24}") {
            let _ = parse_duration(&text);
        }
    }
}
