//! The quick check of one exported line: for the common case, the hash is
//! recomputed straight from the line's text in one pass, without building
//! an [`super::AuditEvent`] or a JSON tree.
//!
//! A line qualifies when everything in it already has its canonical
//! spelling, so the canonical bytes are the line's own bytes put in order:
//! strings without escapes or control characters, integers written plainly
//! up to 2^53, member names of `data` in ASCII, each name once. Anything
//! else (an escape, a fraction, a non-ASCII name, a checkpoint, a hash that
//! does not match) is left to the full reading in `verify.rs`, which
//! explains problems and knows the previous release's form. So this path
//! may decline any line, but the bytes it hashes for a line it accepts must
//! be exactly the RFC 8785 form; the tests compare the two on every kind of
//! value.

use sha2::{Digest, Sha256};

use super::checkpoint::CHECKPOINT_KIND;

/// Nesting deeper than this is left to the full reading.
const MAX_DEPTH: usize = 32;
/// Integers above this are written through a double in RFC 8785.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// What the chain checks of an event beyond its own hash: where it sits
/// and what it links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChainLink<'a> {
    pub seq: u64,
    pub kind: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

/// The line's link when it qualifies and its hash matches its RFC 8785
/// body; `None` sends it to the full reading. `scratch` is reused across
/// lines to keep allocation off the per-line path.
pub(super) fn intact_link<'a>(line: &'a [u8], scratch: &mut Scratch) -> Option<ChainLink<'a>> {
    let text = std::str::from_utf8(line).ok()?;
    let fields = read_fields(text, scratch)?;
    if fields.kind == CHECKPOINT_KIND {
        return None;
    }
    let body = &mut scratch.body;
    body.clear();
    body.extend_from_slice(b"{\"actor\":");
    body.extend_from_slice(fields.actor.as_bytes());
    body.extend_from_slice(b",\"data\":");
    body.extend_from_slice(&scratch.data);
    body.extend_from_slice(b",\"kind\":");
    body.extend_from_slice(fields.kind_raw.as_bytes());
    body.extend_from_slice(b",\"prev_hash\":\"");
    body.extend_from_slice(fields.prev_hash.as_bytes());
    body.extend_from_slice(b"\",\"request_id\":");
    body.extend_from_slice(fields.request_id.as_bytes());
    body.extend_from_slice(b",\"seq\":");
    body.extend_from_slice(fields.seq_raw.as_bytes());
    body.extend_from_slice(b",\"time\":");
    body.extend_from_slice(fields.time.as_bytes());
    body.push(b'}');
    let mut hasher = Sha256::new();
    hasher.update(fields.prev_hash.as_bytes());
    hasher.update(&body[..]);
    let digest = hasher.finalize();
    hex_equals(fields.hash, &digest).then_some(ChainLink {
        seq: fields.seq,
        kind: fields.kind,
        prev_hash: fields.prev_hash,
        hash: fields.hash,
    })
}

/// Buffers kept between lines.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// The canonical `data` of the line being read.
    data: Vec<u8>,
    /// The canonical body that is hashed.
    body: Vec<u8>,
    /// Members of the objects being read, to sort those that are not in
    /// order: where each `"name":value` starts and ends in `data`.
    members: Vec<(usize, usize)>,
    /// Where reordered members are assembled.
    reorder: Vec<u8>,
}

/// The members of a line as raw text. Strings keep their quotes: with no
/// escapes, the raw text is the canonical text.
struct Fields<'a> {
    seq: u64,
    seq_raw: &'a str,
    time: &'a str,
    actor: &'a str,
    /// Without quotes, and with them.
    kind: &'a str,
    kind_raw: &'a str,
    /// A quoted string or `null`.
    request_id: &'a str,
    prev_hash: &'a str,
    hash: &'a str,
}

/// Reads the line's top-level object; `data` lands canonical in
/// `scratch.data`.
fn read_fields<'a>(text: &'a str, scratch: &mut Scratch) -> Option<Fields<'a>> {
    let mut reader = Reader { text, at: 0 };
    let [
        mut seq,
        mut time,
        mut actor,
        mut kind,
        mut request_id,
        mut prev_hash,
        mut hash,
    ] = [None; 7];
    let mut data_seen = false;
    reader.expect(b'{')?;
    loop {
        let quoted = reader.plain_string()?;
        let name = &quoted[1..quoted.len() - 1];
        reader.expect(b':')?;
        let slot = match name {
            "seq" => &mut seq,
            "time" => &mut time,
            "actor" => &mut actor,
            "kind" => &mut kind,
            "request_id" => &mut request_id,
            "prev_hash" => &mut prev_hash,
            "hash" => &mut hash,
            "data" if !data_seen => {
                data_seen = true;
                scratch.data.clear();
                reader.canonical_value(scratch, 0)?;
                if !reader.next_member()? {
                    break;
                }
                continue;
            }
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(match name {
            "seq" => reader.plain_integer()?,
            "request_id" if reader.peek()? == b'n' => reader.literal("null")?,
            _ => reader.plain_string()?,
        });
        if !reader.next_member()? {
            break;
        }
    }
    reader.end()?;
    let seq_raw = seq?;
    let seq_value: u64 = seq_raw.parse().ok().filter(|n| (1..=MAX_EXACT_INTEGER).contains(n))?;
    let kind_raw = kind?;
    Some(Fields {
        seq: seq_value,
        seq_raw,
        time: time?,
        actor: actor?,
        kind: &kind_raw[1..kind_raw.len() - 1],
        kind_raw,
        request_id: request_id?,
        prev_hash: hex_digest(prev_hash?)?,
        // Compared with the digest's own hex, which is checked form enough.
        hash: hash.map(|quoted| &quoted[1..quoted.len() - 1])?,
    })
    .filter(|_| data_seen)
}

/// A quoted string's content when it is a SHA-256 digest in lowercase hex.
fn hex_digest(quoted: &str) -> Option<&str> {
    let inner = &quoted[1..quoted.len() - 1];
    let bad = inner
        .bytes()
        .fold(false, |bad, b| bad | !(b.is_ascii_digit() | (b'a'..=b'f').contains(&b)));
    (inner.len() == 64 && !bad).then_some(inner)
}

/// Whether 64 lowercase hex digits spell `digest`.
fn hex_equals(hex: &str, digest: &[u8]) -> bool {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    hex.len() == digest.len() * 2
        && digest
            .iter()
            .zip(hex.as_bytes().chunks_exact(2))
            .all(|(byte, pair)| pair[0] == HEX[usize::from(byte >> 4)] && pair[1] == HEX[usize::from(byte & 0xf)])
}

/// A cursor over JSON text that accepts only canonically spelled tokens.
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.byte() {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.byte()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// After a member or element: true on `,`, false on the closing `close`.
    fn next_in(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                Some(true)
            }
            byte if byte == close => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }

    fn next_member(&mut self) -> Option<bool> {
        self.next_in(b'}')
    }

    /// Nothing but whitespace may follow the line's object.
    fn end(&mut self) -> Option<()> {
        self.skip_space();
        (self.at == self.text.len()).then_some(())
    }

    /// The text read since `start`. The reader only ever stops before an
    /// ASCII byte or at the end, so this is always on character bounds.
    fn slice(&self, start: usize) -> Option<&'a str> {
        self.text.get(start..self.at)
    }

    /// A string with quotes, when it holds no escape and no control
    /// character (its raw text is then its canonical text).
    fn plain_string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at - 1;
        let rest = self.text.as_bytes().get(self.at..)?;
        let length = memchr::memchr(b'"', rest)?;
        // Without an early exit, so that it compiles to vector code.
        let escaped = rest[..length]
            .iter()
            .fold(false, |seen, &byte| seen | (byte == b'\\') | (byte < 0x20));
        if escaped {
            return None;
        }
        self.at += length + 1;
        self.slice(start)
    }

    /// An integer in its canonical spelling (no sign of zero, no leading
    /// zero, no fraction or exponent) whose magnitude is at most 2^53.
    fn plain_integer(&mut self) -> Option<&'a str> {
        self.skip_space();
        let start = self.at;
        if self.byte() == Some(b'-') {
            self.at += 1;
        }
        let digits = self.at;
        while let Some(b'0'..=b'9') = self.byte() {
            self.at += 1;
        }
        let count = self.at - digits;
        if count == 0 || count > 16 {
            return None;
        }
        // `0` alone is canonical; `-0`, `007` are not.
        let leading_zero = self.text.as_bytes()[digits] == b'0' && (count > 1 || digits > start);
        if leading_zero || matches!(self.byte(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let magnitude: u64 = self.slice(digits)?.parse().ok()?;
        (magnitude <= MAX_EXACT_INTEGER).then(|| self.slice(start))?
    }

    fn literal(&mut self, word: &'static str) -> Option<&'a str> {
        self.skip_space();
        let start = self.at;
        self.text
            .get(start..)?
            .starts_with(word)
            .then(|| self.at += word.len())?;
        self.slice(start)
    }

    /// Appends the canonical form of the next value to `scratch.data`.
    fn canonical_value(&mut self, scratch: &mut Scratch, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let token = match self.peek()? {
            b'{' => return self.canonical_object(scratch, depth),
            b'[' => return self.canonical_array(scratch, depth),
            b'"' => self.plain_string()?,
            b't' => self.literal("true")?,
            b'f' => self.literal("false")?,
            b'n' => self.literal("null")?,
            _ => self.plain_integer()?,
        };
        scratch.data.extend_from_slice(token.as_bytes());
        Some(())
    }

    fn canonical_array(&mut self, scratch: &mut Scratch, depth: usize) -> Option<()> {
        self.expect(b'[')?;
        scratch.data.push(b'[');
        if self.peek()? == b']' {
            self.at += 1;
        } else {
            loop {
                self.canonical_value(scratch, depth + 1)?;
                if !self.next_in(b']')? {
                    break;
                }
                scratch.data.push(b',');
            }
        }
        scratch.data.push(b']');
        Some(())
    }

    /// Members are written in the order read; if the names were not in
    /// ascending order they are sorted afterwards. Names are ASCII, where
    /// byte order is UTF-16 order; an equal pair sends the line to the full
    /// reading, which refuses it.
    fn canonical_object(&mut self, scratch: &mut Scratch, depth: usize) -> Option<()> {
        self.expect(b'{')?;
        scratch.data.push(b'{');
        let open = scratch.data.len();
        let first_member = scratch.members.len();
        let mut sorted = true;
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                let name = self.plain_string()?;
                if !name.is_ascii() {
                    return None;
                }
                self.expect(b':')?;
                let start = scratch.data.len();
                scratch.data.extend_from_slice(name.as_bytes());
                scratch.data.push(b':');
                self.canonical_value(scratch, depth + 1)?;
                if let Some(&(previous, _)) = scratch.members[first_member..].last() {
                    sorted &= member_name(&scratch.data, previous) < &name.as_bytes()[1..name.len() - 1];
                }
                scratch.members.push((start, scratch.data.len()));
                if !self.next_member()? {
                    break;
                }
                scratch.data.push(b',');
            }
        }
        if !sorted {
            reorder_members(scratch, open, first_member)?;
        }
        scratch.members.truncate(first_member);
        scratch.data.push(b'}');
        Some(())
    }
}

/// The name (without quotes) of the member written at `start` in `data`:
/// names hold no escapes, so the first quote after the opening one ends it.
fn member_name(data: &[u8], start: usize) -> &[u8] {
    let rest = data.get(start + 1..).unwrap_or_default();
    let end = rest.iter().position(|b| *b == b'"').unwrap_or(rest.len());
    &rest[..end]
}

/// Rewrites the members from `open` on in name order; `None` if two names
/// are equal.
fn reorder_members(scratch: &mut Scratch, open: usize, first_member: usize) -> Option<()> {
    let data = &scratch.data;
    let members = &mut scratch.members[first_member..];
    members.sort_unstable_by(|a, b| member_name(data, a.0).cmp(member_name(data, b.0)));
    if members
        .windows(2)
        .any(|pair| member_name(data, pair[0].0) == member_name(data, pair[1].0))
    {
        return None;
    }
    scratch.reorder.clear();
    for (index, &(start, end)) in members.iter().enumerate() {
        if index > 0 {
            scratch.reorder.push(b',');
        }
        scratch.reorder.extend_from_slice(&data[start..end]);
    }
    scratch.data.truncate(open);
    scratch.data.extend_from_slice(&scratch.reorder);
    Some(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::audit::{AuditDraft, AuditEvent};

    fn sealed(data: Value, request_id: Option<&str>) -> AuditEvent {
        AuditDraft::new("alice", "request.created", request_id.map(str::to_string), data).seal(
            41,
            "2026-11-21T10:00:07.000000Z".into(),
            &"ab".repeat(32),
        )
    }

    fn line(event: &AuditEvent) -> String {
        serde_json::to_string(event).unwrap()
    }

    /// The full reading's verdict on a line: its link when it is an intact
    /// audit event.
    fn full_reading(line: &str) -> Option<(u64, String, String, String)> {
        let event: AuditEvent = serde_json::from_str(line).ok()?;
        event
            .hash_is_intact()
            .then_some((event.seq, event.kind, event.prev_hash, event.hash))
    }

    /// Soundness: a line the quick check accepts is one the full reading
    /// finds intact, with the same link.
    fn agrees(text: &str) -> Result<bool, TestCaseError> {
        let quick = intact_link(text.as_bytes(), &mut Scratch::default());
        if let Some(link) = quick {
            let full = full_reading(text);
            let expected = Some((
                link.seq,
                link.kind.to_string(),
                link.prev_hash.to_string(),
                link.hash.to_string(),
            ));
            prop_assert_eq!(full, expected, "the quick check accepted {}", text);
        }
        Ok(quick.is_some())
    }

    #[test]
    fn ordinary_lines_are_checked_quickly_and_agree() {
        let samples = [
            sealed(
                json!({"role": "db-admin", "minutes": 90, "groups": ["dev", "ops"], "flags": {"z": true, "a": null}}),
                Some("r1"),
            ),
            sealed(json!({}), None),
            sealed(json!([]), Some("r2")),
            sealed(json!("text with <img src=x onerror=alert(1)> and é, 😀"), Some("r3")),
            sealed(
                json!({"n": -9007199254740992_i64, "m": 9007199254740992_u64, "zero": 0, "neg": -1}),
                None,
            ),
        ];
        for event in samples {
            assert!(agrees(&line(&event)).unwrap(), "{}", line(&event));
        }
    }

    #[test]
    fn members_out_of_order_and_whitespace_are_put_in_canonical_order() {
        let event = sealed(
            json!({"b": {"y": 1, "x": [1, 2]}, "a": "1", "a b": 2, "a!": 3}),
            Some("r1"),
        );
        let text = format!(
            "  {{ \"hash\" : \"{}\", \"data\": {{ \"b\" : {{\"y\":1, \"x\" :[ 1 ,2 ]}}, \"a b\":2, \"a!\":3, \"a\" : \"1\" }},\n\
             \"prev_hash\":\"{}\", \"request_id\":\"r1\", \"seq\": 41, \"time\":\"{}\", \"kind\":\"{}\", \"actor\":\"alice\" }}\r\n",
            event.hash, event.prev_hash, event.time, event.kind
        );
        assert!(agrees(&text).unwrap(), "{text}");
    }

    /// What the quick check cannot spell canonically from the text alone
    /// goes to the full reading (which still finds these intact).
    #[test]
    fn lines_outside_the_quick_form_are_declined() {
        let intact = [
            sealed(json!({"ratio": 1.5}), None),
            sealed(json!({"big": 9007199254740993_u64}), None),
            sealed(json!({"quote": "say \"hi\"\n"}), None),
            sealed(json!({"é": 1}), None),
        ];
        for event in intact {
            let text = line(&event);
            assert!(!agrees(&text).unwrap(), "{text}");
            assert!(full_reading(&text).is_some());
        }
        let event = sealed(json!({"a": 1}), None);
        let plain = line(&event);
        let declined = [
            plain.replace("\"a\":1", "\"a\":1,\"a\":1"),
            plain.replace("\"a\":1", "\"a\":01"),
            plain.replace("\"a\":1", "\"a\":-0"),
            plain.replace("\"a\":1", "\"a\":1e0"),
            plain.replace("\"seq\":41", "\"seq\":41.0"),
            plain.replace("alice", "al\\u0069ce"),
            plain.replace('}', "},"),
            format!("{plain} x"),
            plain.replace("\"data\"", "\"extra\":1,\"data\""),
            plain.replace(&event.hash, &event.hash.to_uppercase()),
        ];
        for text in declined {
            assert!(!agrees(&text).unwrap(), "{text}");
        }
        let mut checkpoint = event;
        checkpoint.kind = CHECKPOINT_KIND.into();
        checkpoint.hash = checkpoint.compute_hash();
        assert!(!agrees(&line(&checkpoint)).unwrap(), "checkpoints get the full check");
    }

    #[test]
    fn a_changed_value_is_never_accepted() {
        let event = sealed(json!({"role": "db-admin", "minutes": 90}), Some("r1"));
        let text = line(&event);
        for edited in [
            text.replace("90", "91"),
            text.replace("db-admin", "db-admim"),
            text.replace("\"seq\":41", "\"seq\":42"),
            text.replace("alice", "mallory"),
            text.replace("\"r1\"", "null"),
        ] {
            assert!(!agrees(&edited).unwrap(), "{edited}");
        }
    }

    /// Data whose every token the quick check takes as it is written.
    fn is_plain(value: &Value) -> bool {
        let plain_text = |text: &str| !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
        match value {
            Value::Null | Value::Bool(_) => true,
            Value::Number(n) => n
                .as_i64()
                .map(i64::unsigned_abs)
                .or(n.as_u64())
                .is_some_and(|m| m <= MAX_EXACT_INTEGER),
            Value::String(text) => plain_text(text),
            Value::Array(items) => items.iter().all(is_plain),
            Value::Object(map) => map
                .iter()
                .all(|(name, item)| name.is_ascii() && plain_text(name) && is_plain(item)),
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let name = prop_oneof![
            "[a-c ]{0,3}",
            "[a-z_!~0-9]{1,6}",
            any::<String>().prop_map(|s| s.chars().take(4).collect::<String>()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-(1_i64 << 54)..(1_i64 << 54)).prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "[a-z <>&é😀]{0,8}".prop_map(Value::String),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((name.clone(), inner), 0..5)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any data: an accepted line is intact by the full reading; and
        /// data that is all plain (ASCII names, plain strings, exact
        /// integers) is accepted.
        #[test]
        fn the_quick_check_agrees_with_the_full_reading(data in json_value(), id in proptest::option::of("[a-z0-9-]{1,8}")) {
            let plain = is_plain(&data);
            let event = sealed(data, id.as_deref());
            let accepted = agrees(&line(&event))?;
            prop_assert!(accepted || !plain, "plain data was declined: {}", line(&event));
        }

        /// Random edits of a good line: whatever the quick check accepts,
        /// the full reading finds intact.
        #[test]
        fn edited_lines_are_accepted_only_when_intact(
            data in json_value(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = line(&sealed(data, Some("r1"))).into_bytes();
            for (at, byte) in edits {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            if let Ok(text) = String::from_utf8(bytes) {
                agrees(&text)?;
            }
        }
    }
}
