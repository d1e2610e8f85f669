//! Rendering for humans and scripts: a small column-aligned table, aligned
//! `key: value` blocks, pretty JSON, and the time and text formatting the
//! tables share.
//!
//! Everything here is pure (returns `String`s) except the thin `print_*`
//! wrappers, so it can be tested without capturing stdout.
//!
//! Text that came from the server (reasons, comments, names, policy
//! messages, errors) is written by other people, so human output never lets
//! it reach the terminal raw: [`escape_controls`] turns everything that could
//! move the cursor, recolour, erase or reorder what an approver reads into
//! visible, inert escapes. The table and `key: value` renderers apply it to
//! every cell and value themselves; free-form lines go through
//! [`escape_message`], [`push_line`] or the `print_message` wrappers. JSON
//! output is left exactly as the server sent it (serde escapes it already).

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::ValueEnum;
use serde::Serialize;

/// `--output`: human tables, or the API's JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// `text` with every character that could change how a terminal shows it
/// made visible and inert, on one line:
///
/// - C0 controls (`\0`, `\t`, `\n`, `\r`, and `\x07`, `\x1b`, ... for the
///   rest), DEL (`\x7f`) and C1 controls (`\u{9b}`, the one-byte CSI, ...):
///   they erase, overwrite, move the cursor or start escape sequences;
/// - bidirectional formatting (U+061C, U+200E, U+200F, U+202A–U+202E,
///   U+2066–U+2069, and the deprecated U+206A–U+206F): they reorder what is
///   shown, so `\u{202e}` can make `fdp.exe` read as `exe.pdf`;
/// - invisible characters that make two different strings look the same or
///   hide text: soft hyphen U+00AD, Mongolian vowel separator U+180E, zero
///   width space U+200B, word joiner and invisible operators U+2060–U+2064,
///   BOM U+FEFF, interlinear annotations U+FFF9–U+FFFB and tag characters
///   U+E0000–U+E007F (invisible copies of ASCII);
/// - line and paragraph separators U+2028/U+2029, which some viewers break on.
///
/// Zero width (non-)joiners U+200C/U+200D stay: Persian and Indic scripts and
/// emoji sequences need them, and they only change how neighbours join.
///
/// A backslash in the input is left as it is, so `\x1b` in the output may be
/// an escaped ESC or the four characters someone typed. That is deliberate:
/// both are equally inert, so nobody gains anything by typing an escape; the
/// escaping stays idempotent (tables escape cells that [`truncate`] already
/// escaped); and Windows paths, regular expressions and `policy show` sources
/// are not mangled by doubled backslashes. The exact text is in
/// `--output json`.
///
/// Text with nothing to escape is returned as it is, without copying.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    escape_with(text, |_, _| false)
}

/// Like [`escape_controls`], but keeps the layout of a source file: line
/// feeds, tabs, and a carriage return right before a line feed (CRLF files)
/// pass through, so `hallpass policy show x > x.rego` round-trips. None of
/// them can overwrite what was already printed.
pub fn escape_source(text: &str) -> Cow<'_, str> {
    escape_with(text, |c, rest| match c {
        '\n' | '\t' => true,
        '\r' => rest.starts_with('\n'),
        _ => false,
    })
}

/// Escapes the risky characters of `text` except those `keep` accepts given
/// the text that follows them.
fn escape_with(text: &str, keep: impl Fn(char, &str) -> bool) -> Cow<'_, str> {
    let escaped = |index: usize, c: char| is_risky(c) && !keep(c, &text[index + c.len_utf8()..]);
    let Some(first) = text
        .char_indices()
        .find(|&(index, c)| escaped(index, c))
        .map(|(index, _)| index)
    else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for (index, c) in text[first..].char_indices() {
        if escaped(first + index, c) {
            push_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The characters [`escape_controls`] documents.
fn is_risky(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{61c}'
                | '\u{180e}'
                | '\u{200b}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

/// `\0`, `\t`, `\n`, `\r`; `\xHH` for the other ASCII controls, `\u{HEX}`
/// beyond ASCII (so a C1 control never reads as a stray UTF-8 byte).
fn push_escape(out: &mut String, c: char) {
    match c {
        '\0' => out.push_str("\\0"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if c.is_ascii() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
        c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
    }
}

/// [`escape_controls`] for an owned string, copying only when it must.
fn escape_owned(text: String) -> String {
    match escape_controls(&text) {
        Cow::Owned(escaped) => Some(escaped),
        Cow::Borrowed(_) => None,
    }
    .unwrap_or(text)
}

/// Text that may span lines, such as a policy denial with several messages:
/// each line escaped, and every line after the first starting with `indent`
/// so that it can be told from the lines around the block.
pub fn escape_lines(text: &str, indent: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (number, line) in text.split('\n').enumerate() {
        if number > 0 {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(indent);
            }
        }
        out.push_str(&escape_controls(line));
    }
    out
}

/// A message for people (`request r1 was denied by policy:` and the
/// policies' messages): escaped, continuation lines indented two spaces so
/// none can pass for a message of its own.
pub fn escape_message(text: &str) -> String {
    escape_lines(text, "  ")
}

/// Prints [`escape_message`] of `text` on stdout.
pub fn print_message(text: &str) {
    println!("{}", escape_message(text));
}

/// Prints [`escape_message`] of `text` on stderr.
pub fn eprint_message(text: &str) {
    eprintln!("{}", escape_message(text));
}

/// Appends one line of a nested listing: `indent`, then `text` escaped onto
/// that single line, so nothing in it can start a line of its own.
pub fn push_line(out: &mut String, indent: &str, text: &str) {
    out.push_str(indent);
    out.push_str(&escape_controls(text));
    out.push('\n');
}

/// Prints any API object as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Columns separated by two spaces, each as wide as its widest cell; the last
/// column is not padded so lines carry no trailing blanks.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped. Every
    /// cell is escaped onto one line here, so no column can forget it.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut cells: Vec<String> = cells.into_iter().map(|cell| escape_owned(cell.into())).collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate() {
                widths[index] = widths[index].max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (index, cell) in row.iter().enumerate() {
                if index > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if index + 1 < row.len() {
                    line.extend(std::iter::repeat_n(' ', widths[index] - width(cell)));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table, or `empty` when it has no rows.
    pub fn print_or(&self, empty: &str) {
        if self.is_empty() {
            println!("{empty}");
        } else {
            print!("{}", self.render());
        }
    }
}

/// `key: value` lines with the values aligned. A row with an empty key
/// continues the value above it (a second deny message) and has no colon.
/// Values are escaped; one that spans lines continues two spaces right of the
/// value column, so none of its lines can pass for a field of its own.
pub fn fields(rows: &[(&str, String)]) -> String {
    let key_width = rows.iter().map(|(key, _)| width(key)).max().unwrap_or(0);
    let continuation = " ".repeat(key_width + 4);
    let mut out = String::new();
    for (key, value) in rows {
        let label = if key.is_empty() {
            " ".repeat(key_width + 1)
        } else {
            format!("{key}:{}", " ".repeat(key_width - width(key)))
        };
        let text = format!("{label} {}", escape_lines(value, &continuation));
        for line in text.split('\n') {
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

pub fn print_fields(rows: &[(&str, String)]) {
    print!("{}", fields(rows));
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// UTC, RFC 3339, to the second: `2026-11-21T10:00:00Z`.
pub fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn opt_time(at: Option<&DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".to_string(), time)
}

/// The time plus a relative hint: `2026-11-21T10:30:00Z (in 29m)`.
pub fn time_relative(at: &DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ({})", time(at), relative(*at, now))
}

pub fn opt_time_relative(at: Option<&DateTime<Utc>>, now: DateTime<Utc>) -> String {
    at.map_or_else(|| "-".to_string(), |at| time_relative(at, now))
}

/// `in 29m`, `3h5m ago`, `now`; rounded so the hint stays short.
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (at - now).num_seconds();
    let magnitude = seconds.unsigned_abs();
    let rounded = if magnitude < 60 {
        magnitude
    } else if magnitude < 86_400 {
        magnitude / 60 * 60
    } else {
        magnitude / 3_600 * 3_600
    };
    if rounded == 0 {
        return "now".to_string();
    }
    let text = hallpass_core::format_duration(rounded);
    if seconds > 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// At most `max` characters of the escaped text, ending in `…` when cut;
/// an escape such as `\x1b` is kept whole or left out, never cut in two.
pub fn truncate(text: &str, max: usize) -> String {
    let escaped = escape_controls(text);
    if width(&escaped) <= max {
        return escaped.into_owned();
    }
    let budget = max.saturating_sub(1);
    let mut cut = String::new();
    let mut used = 0;
    for c in text.chars() {
        let before = cut.len();
        if is_risky(c) {
            push_escape(&mut cut, c);
        } else {
            cut.push(c);
        }
        used += width(&cut[before..]);
        if used > budget {
            cut.truncate(before);
            break;
        }
    }
    cut.push('…');
    cut
}

pub fn or_dash(text: Option<&str>) -> String {
    match text {
        Some(text) if !text.is_empty() => text.to_string(),
        _ => "-".to_string(),
    }
}

pub fn join_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

/// The first 12 hex digits of a SHA-256: enough to tell versions apart in a
/// table; `--output json` carries the whole hash.
pub fn short_hash(hash: &str) -> String {
    hash.chars().take(12).collect()
}

pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn table_columns_line_up() {
        let mut table = Table::new(["ID", "STATE", "REASON"]);
        table.row(["r1", "pending", "deploy"]);
        table.row(["r-long-id", "active", ""]);
        table.row(["r3"]);
        assert_eq!(
            table.render(),
            "ID         STATE    REASON\n\
             r1         pending  deploy\n\
             r-long-id  active\n\
             r3\n"
        );
    }

    #[test]
    fn table_counts_characters_not_bytes() {
        let mut table = Table::new(["A", "B"]);
        table.row(["héllo", "x"]);
        table.row(["h", "y"]);
        assert_eq!(table.render(), "A      B\nhéllo  x\nh      y\n");
    }

    #[test]
    fn fields_align_values() {
        assert_eq!(
            fields(&[
                ("id", "r1".into()),
                ("requester", "alice".into()),
                ("ticket", String::new())
            ]),
            "id:        r1\nrequester: alice\nticket:\n"
        );
    }

    #[test]
    fn times_are_utc_seconds_with_a_short_hint() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        let later = now + chrono::Duration::seconds(29 * 60 + 59);
        assert_eq!(time_relative(&later, now), "2026-11-21T10:29:59Z (in 29m)");
        let earlier = now - chrono::Duration::seconds(2 * 86_400 + 3_700);
        assert_eq!(relative(earlier, now), "2d1h ago");
        assert_eq!(relative(now, now), "now");
        assert_eq!(relative(now + chrono::Duration::seconds(5), now), "in 5s");
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("a very long reason", 8), "a very …");
        assert_eq!(truncate("two\nlines", 20), "two\\nlines");
    }

    #[test]
    fn truncation_escapes_and_never_splits_an_escape() {
        assert_eq!(truncate("ok\x1b[2Kapproved", 40), "ok\\x1b[2Kapproved");
        // `ok\x1b` is 6 characters: with room for 5 before the `…`, the
        // escape is left out whole rather than shown as `\x1`.
        assert_eq!(truncate("ok\x1b[2Kapproved", 6), "ok…");
        assert_eq!(truncate("ok\x1b[2Kapproved", 7), "ok\\x1b…");
    }

    /// What a forger would put in a reason: a carriage return and an
    /// erase-line sequence to overwrite the line, and a NUL.
    const FORGED: &str = "fix\r\x1b[2Kapproved by security\0";
    const FORGED_SHOWN: &str = r"fix\r\x1b[2Kapproved by security\0";

    #[test]
    fn c0_controls_del_and_c1_controls_are_escaped() {
        for (raw, shown) in [
            ("\0", r"\0"),
            ("\x07", r"\x07"),
            ("\x08", r"\x08"),
            ("\t", r"\t"),
            ("\n", r"\n"),
            ("\x0b", r"\x0b"),
            ("\x0c", r"\x0c"),
            ("\r", r"\r"),
            ("\x1b", r"\x1b"),
            ("\x1f", r"\x1f"),
            ("\x7f", r"\x7f"),
            ("\u{80}", r"\u{80}"),
            ("\u{85}", r"\u{85}"),
            ("\u{9b}", r"\u{9b}"),
            ("\u{9f}", r"\u{9f}"),
        ] {
            assert_eq!(escape_controls(&format!("a{raw}b")), format!("a{shown}b"), "{raw:?}");
        }
        assert_eq!(escape_controls(FORGED), FORGED_SHOWN);
    }

    #[test]
    fn bidi_and_invisible_format_characters_are_escaped() {
        for c in [
            '\u{061c}',
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{202e}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{206a}',
            '\u{206f}',
            '\u{ad}',
            '\u{180e}',
            '\u{200b}',
            '\u{2028}',
            '\u{2029}',
            '\u{2060}',
            '\u{2064}',
            '\u{feff}',
            '\u{fff9}',
            '\u{fffb}',
            '\u{e0001}',
            '\u{e0041}',
            '\u{e007f}',
        ] {
            let shown = escape_controls(&format!("x{c}y")).into_owned();
            assert_eq!(shown, format!("x\\u{{{:x}}}y", u32::from(c)), "{c:?}");
        }
        // The classic disguise: `exe.pdf` on screen, `fdp.exe` in fact.
        assert_eq!(escape_controls("invoice\u{202e}fdp.exe"), r"invoice\u{202e}fdp.exe");
    }

    #[test]
    fn ordinary_text_passes_through_without_a_copy() {
        for text in [
            "",
            "INC-7: fail over db-1 (prod) ~ 100% <ok> {\"x\": [1]}",
            "Zoë 東京",
            "ünïcödé Ελληνικά עברית العربية",
            "emoji 👩‍💻 and ZWNJ: می‌خواهم",
            r"C:\Users\zoe and ^INC-\d+$ and \x1b typed by hand",
        ] {
            assert!(matches!(escape_controls(text), Cow::Borrowed(_)), "{text:?} was copied");
            assert!(matches!(escape_source(text), Cow::Borrowed(_)), "{text:?} was copied");
        }
    }

    #[test]
    fn escaping_is_idempotent_because_backslashes_stay() {
        let once = escape_controls("a\\b\x1b\u{202e}\n").into_owned();
        assert_eq!(once, r"a\b\x1b\u{202e}\n");
        assert!(matches!(escape_controls(&once), Cow::Borrowed(_)));
    }

    #[test]
    fn sources_keep_their_lines_and_tabs_but_nothing_else() {
        let rego = "package x\r\n\nallow if {\n\tinput.x == \"\\t\"\n}\n";
        assert!(matches!(escape_source(rego), Cow::Borrowed(_)));
        assert_eq!(
            escape_source("deny contains \"x\" # \x1b[8mhidden\r\u{202e}\n"),
            "deny contains \"x\" # \\x1b[8mhidden\\r\\u{202e}\n"
        );
    }

    #[test]
    fn a_forged_reason_stays_on_its_own_table_row() {
        let mut table = Table::new(["ID", "REASON", "STATE"]);
        table.row(["r1", FORGED, "pending"]);
        table.row(["r2", "two\nlines\tand a tab", "active"]);
        assert_eq!(
            table.render(),
            format!(
                "ID  REASON                              STATE\n\
                 r1  {FORGED_SHOWN}  pending\n\
                 r2  two\\nlines\\tand a tab               active\n"
            )
        );
    }

    #[test]
    fn a_forged_value_stays_on_its_own_field_line() {
        let text = fields(&[("reason", FORGED.into()), ("state", "pending".into())]);
        assert_eq!(text, format!("reason: {FORGED_SHOWN}\nstate:  pending\n"));
    }

    #[test]
    fn values_that_span_lines_continue_indented_past_the_value_column() {
        let text = fields(&[
            (
                "decision",
                "policy at T: needs a ticket\nstate: approved\x1b[0m\n".into(),
            ),
            ("ticket", "-".into()),
        ]);
        assert_eq!(
            text,
            "decision: policy at T: needs a ticket\n\
             \x20           state: approved\\x1b[0m\n\
             \n\
             ticket:   -\n"
        );
        // A row without a key continues the one above, without a colon.
        assert_eq!(
            fields(&[("Deny", "a".into()), ("", "b".into()), ("Max", "1h".into())]),
            "Deny: a\n      b\nMax:  1h\n"
        );
    }

    #[test]
    fn messages_escape_every_line_and_indent_the_rest() {
        assert_eq!(
            escape_message("request r1 was denied by policy:\nneeds a ticket\rok\n\nfrozen"),
            "request r1 was denied by policy:\n  needs a ticket\\rok\n\n  frozen"
        );
        let mut out = String::new();
        push_line(&mut out, "    ", "approved by bob: ok\n    approved by mallory");
        assert_eq!(out, "    approved by bob: ok\\n    approved by mallory\n");
    }
}
