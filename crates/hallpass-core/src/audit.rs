//! The tamper-evident audit chain.
//!
//! Each event's `hash` is `SHA-256(prev_hash || canonical(event without hash))`
//! where `canonical` is compact JSON with object keys sorted by byte order, so
//! anyone can recompute it offline from an exported file. The first event's
//! `prev_hash` is [`GENESIS_HASH`]. Changing, removing or reordering an event
//! breaks the chain at that event's sequence number.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of the very first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One event as recorded and exported: one line of `GET /v1/audit/export`,
/// and what the offline verifier reads. This is the only definition of the
/// line; the API re-exports it. Unknown fields are refused because every
/// field but `hash` is hashed: a field this build does not know could not
/// be checked. `time` is an RFC 3339 string so that the hashed bytes never
/// depend on how a reader parses timestamps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    pub seq: u64,
    /// RFC 3339 time, exactly as hashed.
    pub time: String,
    pub actor: String,
    pub kind: String,
    pub request_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// An event before it is placed in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub actor: String,
    pub kind: String,
    pub request_id: Option<String>,
    pub data: Value,
}

impl AuditDraft {
    pub fn new(actor: impl Into<String>, kind: impl Into<String>, request_id: Option<String>, data: Value) -> Self {
        Self {
            actor: actor.into(),
            kind: kind.into(),
            request_id,
            data,
        }
    }

    /// Places the draft after `prev_hash` as number `seq`.
    pub fn seal(self, seq: u64, time: String, prev_hash: &str) -> AuditEvent {
        let mut event = AuditEvent {
            seq,
            time,
            actor: self.actor,
            kind: self.kind,
            request_id: self.request_id,
            data: self.data,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        event
    }
}

impl AuditEvent {
    /// The hash this event should carry, from its other fields.
    pub fn compute_hash(&self) -> String {
        let body = serde_json::json!({
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "kind": self.kind,
            "request_id": self.request_id,
            "data": self.data,
            "prev_hash": self.prev_hash,
        });
        let mut canonical = Vec::with_capacity(256);
        write_canonical(&body, &mut canonical);
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(&canonical);
        hex::encode(hasher.finalize())
    }
}

/// Compact JSON with object keys in byte order, independent of how the `Value`
/// was built or which serde_json features are on.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Scalars have one compact form in serde_json already.
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

/// Outcome of checking a run of events, online (`GET /v1/audit/verify`) or
/// offline (`hallpass audit verify --file`). The only definition; the API
/// re-exports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReport {
    pub ok: bool,
    pub events_checked: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub head_hash: Option<String>,
    /// The first sequence number at which the chain is broken.
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
}

/// Incremental verifier: feed events in order, read the report at the end.
/// Memory stays constant however long the log is.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    previous: Option<(u64, String)>,
    report: Option<VerifyReport>,
    checked: u64,
    first_seq: Option<u64>,
}

impl ChainVerifier {
    /// Starts at the very beginning of the log: the first event must be seq 1
    /// chained to [`GENESIS_HASH`].
    pub fn from_genesis() -> Self {
        Self {
            previous: Some((0, GENESIS_HASH.to_string())),
            ..Self::default()
        }
    }

    /// Starts at whatever event comes first (an export made with `--since`).
    pub fn from_anywhere() -> Self {
        Self::default()
    }

    /// True once a break has been found; later events are not examined.
    pub fn failed(&self) -> bool {
        self.report.is_some()
    }

    fn fail(&mut self, seq: u64, problem: String) {
        if self.report.is_none() {
            self.report = Some(VerifyReport {
                ok: false,
                events_checked: self.checked,
                first_seq: self.first_seq,
                last_seq: self.previous.as_ref().map(|p| p.0),
                head_hash: None,
                first_bad_seq: Some(seq),
                problem: Some(problem),
            });
        }
    }

    /// Records a line that could not even be parsed. `after_seq` is the last
    /// good sequence number, so the bad one is reported as the next.
    pub fn push_unreadable(&mut self, line_number: usize, error: &str) {
        let seq = self.previous.as_ref().map_or(1, |p| p.0 + 1);
        self.fail(seq, format!("line {line_number} is not a valid audit event: {error}"));
    }

    pub fn push(&mut self, event: &AuditEvent) {
        if self.failed() {
            return;
        }
        if let Some((prev_seq, prev_hash)) = self.previous.clone() {
            if event.seq != prev_seq + 1 {
                let expected = prev_seq + 1;
                let problem = if event.seq > expected {
                    format!(
                        "event {expected} is missing: event {} follows event {prev_seq}",
                        event.seq
                    )
                } else {
                    format!("event {} is out of order: it follows event {prev_seq}", event.seq)
                };
                self.fail(expected, problem);
                return;
            }
            if event.prev_hash != prev_hash {
                self.fail(
                    event.seq,
                    format!(
                        "event {} does not chain to event {prev_seq}: prev_hash differs",
                        event.seq
                    ),
                );
                return;
            }
        }
        if event.compute_hash() != event.hash {
            self.fail(
                event.seq,
                format!("event {} was changed: its hash does not match its contents", event.seq),
            );
            return;
        }
        self.first_seq.get_or_insert(event.seq);
        self.checked += 1;
        self.previous = Some((event.seq, event.hash.clone()));
    }

    pub fn finish(self) -> VerifyReport {
        if let Some(report) = self.report {
            return report;
        }
        let (last_seq, head_hash) = match self.previous {
            Some((seq, hash)) if self.checked > 0 => (Some(seq), Some(hash)),
            _ => (None, None),
        };
        VerifyReport {
            ok: true,
            events_checked: self.checked,
            first_seq: self.first_seq,
            last_seq,
            head_hash,
            first_bad_seq: None,
            problem: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let draft = AuditDraft::new(
                    "alice",
                    "request.created",
                    Some(format!("r{seq}")),
                    json!({"b": 1, "a": [seq]}),
                );
                let event = draft.seal(seq, format!("2026-11-21T10:00:{seq:02}.000000Z"), &prev);
                prev = event.hash.clone();
                event
            })
            .collect()
    }

    fn verify(events: &[AuditEvent]) -> VerifyReport {
        let mut verifier = ChainVerifier::from_genesis();
        events.iter().for_each(|e| verifier.push(e));
        verifier.finish()
    }

    #[test]
    fn canonical_form_sorts_keys_at_every_level() {
        let mut out = Vec::new();
        write_canonical(&json!({"b": {"z": 1, "a": "x"}, "a": [true, null]}), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":[true,null],"b":{"a":"x","z":1}}"#
        );
    }

    #[test]
    fn an_intact_chain_verifies() {
        let report = verify(&chain(5));
        assert!(report.ok);
        assert_eq!(report.events_checked, 5);
        assert_eq!(report.last_seq, Some(5));
    }

    #[test]
    fn a_changed_event_is_named() {
        let mut events = chain(5);
        events[2].actor = "mallory".into();
        let report = verify(&events);
        assert!(!report.ok);
        assert_eq!(report.first_bad_seq, Some(3));
    }

    #[test]
    fn a_changed_event_with_recomputed_hash_breaks_the_next_link() {
        let mut events = chain(5);
        events[2].data = json!({"forged": true});
        events[2].hash = events[2].compute_hash();
        assert_eq!(verify(&events).first_bad_seq, Some(4));
    }

    #[test]
    fn a_removed_event_is_named() {
        let mut events = chain(5);
        events.remove(1);
        assert_eq!(verify(&events).first_bad_seq, Some(2));
    }

    #[test]
    fn reordered_events_are_named() {
        let mut events = chain(5);
        events.swap(2, 3);
        assert_eq!(verify(&events).first_bad_seq, Some(3));
    }

    #[test]
    fn a_partial_export_verifies_from_anywhere() {
        let events = chain(6);
        let mut verifier = ChainVerifier::from_anywhere();
        events[3..].iter().for_each(|e| verifier.push(e));
        let report = verifier.finish();
        assert!(report.ok);
        assert_eq!(report.first_seq, Some(4));
    }
}
