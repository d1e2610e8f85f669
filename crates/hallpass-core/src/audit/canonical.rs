//! The bytes an audit event's hash is computed over: RFC 8785 (JSON
//! Canonicalization Scheme) for every event written from now on, and the
//! form the previous release wrote, so that logs made before the upgrade
//! still verify.
//!
//! docs/audit.md specifies both forms exactly; a verifier written from that
//! page alone must produce the same bytes, so any change here is a change
//! of the file format.

use serde_json::{Number, Value};

/// The largest integer an IEEE 754 double holds exactly (2^53). Integers up
/// to this magnitude are written digit for digit; larger ones go through
/// the double, as RFC 8785 requires.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Appends the RFC 8785 canonical form of `value`: no whitespace, object
/// members sorted by the UTF-16 code units of their names, strings escaped
/// as ECMAScript's `JSON.stringify` does, numbers as ECMAScript writes a
/// double.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    write_form(Form::Rfc8785, value, out);
}

/// The form the previous release hashed: the same layout and strings, but
/// members sorted by UTF-8 bytes and non-integer numbers as serde_json 1.0.154
/// wrote them (`5.0`, `1e+16`). It equals the RFC 8785 form unless an event
/// holds a non-integer number or names the two orders sort differently, so
/// only such old events ever need it. (Events are hashed through
/// [`write_event_body`]; the tests compare the two.)
#[cfg(test)]
pub(crate) fn write_legacy(value: &Value, out: &mut Vec<u8>) {
    write_form(Form::Legacy, value, out);
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Rfc8785,
    Legacy,
}

/// The hashed body of an audit event in `form`, written member by member
/// without building a JSON tree of the event first: the same bytes as
/// [`write_form`] of `{"seq", "time", "actor", "kind", "request_id",
/// "data", "prev_hash"}` (its names sort the same by UTF-16 and by bytes).
pub(crate) fn write_event_body(form: Form, event: &super::AuditEvent, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"actor\":");
    write_string(&event.actor, out);
    out.extend_from_slice(b",\"data\":");
    write_form(form, &event.data, out);
    out.extend_from_slice(b",\"kind\":");
    write_string(&event.kind, out);
    out.extend_from_slice(b",\"prev_hash\":");
    write_string(&event.prev_hash, out);
    out.extend_from_slice(b",\"request_id\":");
    match &event.request_id {
        Some(id) => write_string(id, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"seq\":");
    write_number(form, &Number::from(event.seq), out);
    out.extend_from_slice(b",\"time\":");
    write_string(&event.time, out);
    out.push(b'}');
}

fn write_form(form: Form, value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_number(form, number, out),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_form(form, item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            match form {
                // UTF-16 order differs from byte (UTF-8) order once
                // characters above U+FFFF meet U+E000..U+FFFF.
                Form::Rfc8785 => members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16())),
                Form::Legacy => members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes())),
            }
            out.push(b'{');
            for (index, (name, item)) in members.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_form(form, item, out);
            }
            out.push(b'}');
        }
    }
}

/// `"`, `\` and the C0 controls are escaped (the six with a short form use
/// it, the rest `\u00xx` in lower case); everything else is literal UTF-8.
fn write_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for byte in text.bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            control @ 0x00..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(control >> 4)]);
                out.push(HEX[usize::from(control & 0xf)]);
            }
            // UTF-8 continuation and lead bytes are never ASCII controls, so
            // copying byte by byte keeps every other character intact.
            other => out.push(other),
        }
    }
    out.push(b'"');
}

fn write_number(form: Form, number: &Number, out: &mut Vec<u8>) {
    let limit = match form {
        Form::Rfc8785 => MAX_EXACT_INTEGER,
        // serde_json wrote every integer it held exactly.
        Form::Legacy => u64::MAX,
    };
    let double = if let Some(unsigned) = number.as_u64() {
        if unsigned <= limit {
            out.extend_from_slice(unsigned.to_string().as_bytes());
            return;
        }
        // Rounds to the nearest double, as parsing the JSON text would.
        unsigned as f64
    } else if let Some(signed) = number.as_i64() {
        if signed.unsigned_abs() <= limit {
            out.extend_from_slice(signed.to_string().as_bytes());
            return;
        }
        signed as f64
    } else if let Some(double) = number.as_f64() {
        double
    } else {
        // Only reachable with serde_json's `arbitrary_precision`, which this
        // workspace does not enable; its text is the best remaining answer.
        out.extend_from_slice(number.to_string().as_bytes());
        return;
    };
    match form {
        Form::Rfc8785 => write_double(double, out),
        Form::Legacy => write_legacy_double(double, out),
    }
}

/// The shortest decimal digits that read back as a double, with the
/// position of the decimal point: `value = 0.d1d2...dk × 10^point`.
struct Decimal {
    digits: Vec<u8>,
    point: i32,
}

impl Decimal {
    /// For a finite, non-zero, positive `value`. Ryu yields the shortest
    /// round-tripping digits (the closest to `value` when several are that
    /// short), which is exactly the digit string ECMAScript asks for; only
    /// its layout differs, so the digits are taken out of it here.
    fn of(value: f64) -> Self {
        let mut buffer = ryu::Buffer::new();
        let text = buffer.format_finite(value);
        let (mantissa, exponent) = match text.split_once('e') {
            Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().unwrap_or(0)),
            None => (text, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let mut digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).collect();
        let mut point = i32::try_from(whole.len()).unwrap_or(0) + exponent;
        let leading_zeros = digits.iter().take_while(|d| **d == b'0').count();
        digits.drain(..leading_zeros);
        point -= i32::try_from(leading_zeros).unwrap_or(0);
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        Self { digits, point }
    }
}

/// ECMAScript's Number::toString for a finite double (RFC 8785 section
/// 3.2.2.3): plain digits while the decimal point is within 21 places,
/// exponent form (`1e+21`, `1.5e-7`) outside.
fn write_double(value: f64, out: &mut Vec<u8>) {
    if value == 0.0 {
        // Negative zero too.
        out.push(b'0');
    } else {
        write_nonzero(value, -5..=21, b"", out);
    }
}

/// serde_json 1.0.154's float form, which the previous release hashed:
/// plain digits with at least one fraction digit while the leading digit's
/// exponent is within -5..=15, else exponent form with an explicit sign.
fn write_legacy_double(value: f64, out: &mut Vec<u8>) {
    if value == 0.0 {
        out.extend_from_slice(if value.is_sign_negative() { b"-0.0" } else { b"0.0" });
    } else {
        write_nonzero(value, -4..=16, b".0", out);
    }
}

/// A non-zero double: plain digits while the decimal point position is in
/// `plain` (integers followed by `integer_suffix`), exponent form outside.
fn write_nonzero(value: f64, plain: std::ops::RangeInclusive<i32>, integer_suffix: &[u8], out: &mut Vec<u8>) {
    if value < 0.0 {
        out.push(b'-');
    }
    let Decimal { digits, point } = Decimal::of(value.abs());
    let count = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if !plain.contains(&point) {
        write_exponent_form(&digits, point, out);
    } else if count <= point {
        out.extend_from_slice(&digits);
        out.extend(std::iter::repeat_n(b'0', (point - count) as usize));
        out.extend_from_slice(integer_suffix);
    } else {
        write_fraction(&digits, point, out);
    }
}

/// `12.34` or `0.001234`: digits with the decimal point inside or before them.
fn write_fraction(digits: &[u8], point: i32, out: &mut Vec<u8>) {
    if point > 0 {
        let (whole, fraction) = digits.split_at(point as usize);
        out.extend_from_slice(whole);
        out.push(b'.');
        out.extend_from_slice(fraction);
    } else {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', point.unsigned_abs() as usize));
        out.extend_from_slice(digits);
    }
}

/// `1e+21`, `1.5e-7`: one digit before the point, the exponent signed.
fn write_exponent_form(digits: &[u8], point: i32, out: &mut Vec<u8>) {
    let (first, rest) = digits.split_at(1);
    out.extend_from_slice(first);
    if !rest.is_empty() {
        out.push(b'.');
        out.extend_from_slice(rest);
    }
    let exponent = point - 1;
    out.push(b'e');
    out.push(if exponent < 0 { b'-' } else { b'+' });
    out.extend_from_slice(exponent.unsigned_abs().to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canonical(value: &Value) -> String {
        let mut out = Vec::new();
        write_canonical(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// The forms docs/audit.md shows for its test vector of the two forms.
    #[test]
    fn the_documented_vector_of_both_forms() {
        let doc = |start: &str, language: &str| {
            hallpass_doc_examples::example("audit.md", start, language)
                .trim_end()
                .to_string()
        };
        let value: Value = serde_json::from_str(&doc("differs from `C` only in `data` values", "json")).unwrap();
        let mut legacy = Vec::new();
        write_legacy(&value, &mut legacy);
        let (current, legacy) = (canonical(&value), String::from_utf8(legacy).unwrap());
        assert_eq!(current, doc("Its `C` form is", "text"));
        assert_eq!(legacy, doc("and its `C'` form is", "text"));
        assert_ne!(current, legacy);
    }

    fn double(bits: u64) -> String {
        let mut out = Vec::new();
        write_double(f64::from_bits(bits), &mut out);
        String::from_utf8(out).unwrap()
    }

    /// The IEEE 754 bit patterns and expected strings of RFC 8785's number
    /// serialization table (Appendix B).
    #[test]
    fn numbers_match_the_rfc_8785_table() {
        let table: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, expected) in table {
            assert_eq!(double(*bits), *expected, "bits {bits:#018x}");
        }
    }

    #[test]
    fn the_rfc_8785_example_object_canonicalizes_as_published() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let value: Value = serde_json::from_str(input).unwrap();
        assert_eq!(
            canonical(&value),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn member_names_sort_by_utf16_code_units_not_bytes() {
        // The RFC's sorting example: the emoji (a surrogate pair, D83D DE00)
        // sorts before U+FB33 in UTF-16 but after it in UTF-8.
        let value = json!({
            "\u{20ac}": "Euro Sign",
            "\r": "Carriage Return",
            "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\u{1f600}": "Emoji: Grinning Face",
            "\u{0080}": "Control",
            "\u{00f6}": "Latin Small Letter O With Diaeresis",
        });
        assert_eq!(
            canonical(&value),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
        let mut legacy = Vec::new();
        write_legacy(&value, &mut legacy);
        assert_ne!(
            String::from_utf8(legacy).unwrap(),
            canonical(&value),
            "byte order differs here"
        );
    }

    #[test]
    fn strings_escape_only_what_json_stringify_escapes() {
        let value = json!("\u{0}\u{7}\u{8}\t\n\u{b}\u{c}\r\u{1f} \"\\/\u{7f}\u{2028}é😀");
        assert_eq!(
            canonical(&value),
            "\"\\u0000\\u0007\\b\\t\\n\\u000b\\f\\r\\u001f \\\"\\\\/\u{7f}\u{2028}é😀\""
        );
    }

    #[test]
    fn integers_are_exact_up_to_2_pow_53_and_doubles_beyond() {
        assert_eq!(canonical(&json!(9007199254740992u64)), "9007199254740992");
        assert_eq!(canonical(&json!(-9007199254740992i64)), "-9007199254740992");
        // 2^53 + 1 is not a double; it reads back as 2^53.
        assert_eq!(canonical(&json!(9007199254740993u64)), "9007199254740992");
        assert_eq!(canonical(&json!(u64::MAX)), "18446744073709552000");
        assert_eq!(canonical(&json!(i64::MIN)), "-9223372036854776000");
        assert_eq!(
            canonical(&json!([1.0, -0.0, 100.0, 1e21, 1.5e-7, 0.1])),
            "[1,0,100,1e+21,1.5e-7,0.1]"
        );
    }

    #[test]
    fn the_legacy_form_is_what_the_previous_release_hashed() {
        let value = json!({"b": [1.0, 7, -0.0, u64::MAX, i64::MIN], "a": "x"});
        let mut legacy = Vec::new();
        write_legacy(&value, &mut legacy);
        assert_eq!(
            String::from_utf8(legacy).unwrap(),
            r#"{"a":"x","b":[1.0,7,-0.0,18446744073709551615,-9223372036854775808]}"#
        );
        assert_eq!(
            canonical(&value),
            r#"{"a":"x","b":[1,7,0,18446744073709552000,-9223372036854776000]}"#
        );
        // serde_json 1.0.154 (the previous release's) around its switch points.
        let table: &[(f64, &str)] = &[
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1234567890123456.8, "1234567890123456.8"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (0.00001, "0.00001"),
            (0.000012345, "0.000012345"),
            (1e-6, "1e-6"),
            (1.5e-7, "1.5e-7"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (100.0, "100.0"),
            (0.1, "0.1"),
        ];
        for (double, expected) in table {
            let mut out = Vec::new();
            write_legacy_double(*double, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), *expected);
        }
    }

    proptest::proptest! {
        /// Whatever the double, the written number reads back as the same
        /// double, and never with more digits than Ryu's shortest form.
        #[test]
        fn every_double_round_trips(bits in proptest::num::u64::ANY) {
            let value = f64::from_bits(bits);
            proptest::prop_assume!(value.is_finite());
            let mut out = Vec::new();
            write_double(value, &mut out);
            let text = String::from_utf8(out).unwrap();
            let back: f64 = text.parse().unwrap();
            proptest::prop_assert!(back == value, "{value:e} written as {text}");
            let significant = text.trim_start_matches('-').split('e').next().unwrap().replace('.', "");
            let significant = significant.trim_matches('0');
            proptest::prop_assert!(significant.len() <= 17, "{text}");
        }

        /// The legacy float form is serde_json's own. (Should a newer
        /// serde_json change how it writes floats, this comparison goes and
        /// the table above, taken from 1.0.154, stays.)
        #[test]
        fn the_legacy_float_form_is_serde_jsons(bits in proptest::num::u64::ANY) {
            let value = f64::from_bits(bits);
            proptest::prop_assume!(value.is_finite());
            let mut out = Vec::new();
            write_legacy_double(value, &mut out);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), Value::from(value).to_string());
        }
    }
}
