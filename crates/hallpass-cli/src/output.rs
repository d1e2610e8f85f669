//! Rendering for humans and scripts: a small column-aligned table, aligned
//! `key: value` blocks, pretty JSON, and the time and text formatting the
//! tables share.
//!
//! Everything here is pure (returns `String`s) except the thin `print_*`
//! wrappers, so it can be tested without capturing stdout.

use chrono::{DateTime, SecondsFormat, Utc};
use clap::ValueEnum;
use serde::Serialize;

/// `--output`: human tables, or the API's JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
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

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut cells: Vec<String> = cells.into_iter().map(Into::into).collect();
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

/// `key: value` lines with the values aligned.
pub fn fields(rows: &[(&str, String)]) -> String {
    let key_width = rows.iter().map(|(key, _)| width(key)).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in rows {
        let pad = key_width - width(key);
        let line = format!("{key}:{} {value}", " ".repeat(pad));
        out.push_str(line.trim_end());
        out.push('\n');
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

/// At most `max` characters, ending in `…` when cut; newlines become spaces.
pub fn truncate(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
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
        assert_eq!(truncate("two\nlines", 20), "two lines");
    }
}
