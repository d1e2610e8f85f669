//! The tamper-evident audit chain.
//!
//! Each event's `hash` is `SHA-256(prev_hash || canonical(event without hash))`
//! where `canonical` is RFC 8785 JSON ([`write_canonical`]), so anyone can
//! recompute it offline from an exported file. The first event's
//! `prev_hash` is [`GENESIS_HASH`]. Changing, removing or reordering an event
//! breaks the chain at that event's sequence number; signed checkpoints
//! ([`checkpoint`]) also catch a chain recomputed after an edit and an
//! export cut at either end. docs/audit.md specifies the format exactly.

mod canonical;
pub mod checkpoint;
mod line_check;
mod strict;
mod unique_keys;
mod verify;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use canonical::write_canonical;
pub use checkpoint::{
    AuditKeyError, AuditPublicKey, CHECKPOINT_ACTOR, CHECKPOINT_KIND, CheckpointData, CheckpointSigner,
};
pub use verify::{ChainVerifier, VerifyReport};

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
    #[serde(deserialize_with = "strict::seq")]
    pub seq: u64,
    /// RFC 3339 time, exactly as hashed.
    pub time: String,
    pub actor: String,
    pub kind: String,
    pub request_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    #[serde(deserialize_with = "unique_keys::deserialize")]
    pub data: Value,
    #[serde(deserialize_with = "strict::hash")]
    pub prev_hash: String,
    #[serde(deserialize_with = "strict::hash")]
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
        self.hash_over(canonical::Form::Rfc8785)
    }

    /// Whether `hash` matches the other fields: in the RFC 8785 form, or in
    /// the form the previous release hashed (which differs only for events
    /// holding non-integer numbers or names ordered differently by bytes
    /// and by UTF-16), so logs written before the upgrade still verify.
    pub fn hash_is_intact(&self) -> bool {
        self.compute_hash() == self.hash || self.hash_over(canonical::Form::Legacy) == self.hash
    }

    fn hash_over(&self, form: canonical::Form) -> String {
        let mut canonical = Vec::with_capacity(512);
        canonical::write_event_body(form, self, &mut canonical);
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(&canonical);
        hex::encode(hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: Value) -> AuditEvent {
        AuditDraft::new("alice", "request.created", Some("r1".into()), data).seal(
            7,
            "2026-11-21T10:00:07.000000Z".into(),
            "ab".repeat(32).as_str(),
        )
    }

    #[test]
    fn the_hash_covers_prev_hash_then_the_rfc_8785_form() {
        let sealed = event(json!({"minutes": 90.0, "role": "db-admin"}));
        let canonical = format!(
            r#"{{"actor":"alice","data":{{"minutes":90,"role":"db-admin"}},"kind":"request.created","prev_hash":"{0}","request_id":"r1","seq":7,"time":"2026-11-21T10:00:07.000000Z"}}"#,
            "ab".repeat(32)
        );
        let expected = hex::encode(Sha256::digest(format!("{}{canonical}", "ab".repeat(32))));
        assert_eq!(sealed.hash, expected);
        assert!(sealed.hash_is_intact());
    }

    /// The event's body written member by member is exactly the canonical
    /// form of the whole body as one JSON object, in both forms.
    #[test]
    fn the_body_written_directly_equals_the_canonical_form_of_the_object() {
        let mut unusual = event(json!({"\u{1f600}": [1.5, 1e16, -0.0, null], "\u{fb33}": {"b": "\u{0}\"\\", "a": 1}}));
        unusual.seq = (1 << 53) + 1;
        unusual.request_id = None;
        unusual.actor = "tab\there \u{7f} é".into();
        for sample in [event(json!({"role": "db-admin", "minutes": 90.0})), unusual] {
            let body = json!({
                "seq": sample.seq, "time": sample.time, "actor": sample.actor, "kind": sample.kind,
                "request_id": sample.request_id, "data": sample.data, "prev_hash": sample.prev_hash,
            });
            for (form, whole) in [
                (
                    canonical::Form::Rfc8785,
                    canonical::write_canonical as fn(&Value, &mut Vec<u8>),
                ),
                (canonical::Form::Legacy, canonical::write_legacy),
            ] {
                let (mut direct, mut expected) = (Vec::new(), Vec::new());
                canonical::write_event_body(form, &sample, &mut direct);
                whole(&body, &mut expected);
                assert_eq!(String::from_utf8_lossy(&direct), String::from_utf8_lossy(&expected));
            }
        }
    }

    #[test]
    fn an_event_hashed_by_the_previous_release_still_verifies() {
        // The previous release wrote 5.0 as `5.0`; RFC 8785 writes `5`.
        let mut old = event(json!({"timeout": 5.0, "\u{1f600}": 1, "\u{fb33}": 2}));
        old.hash = old.hash_over(canonical::Form::Legacy);
        assert_ne!(old.hash, old.compute_hash(), "the two forms differ for this event");
        assert!(old.hash_is_intact());
        old.data["timeout"] = json!(6.0);
        assert!(!old.hash_is_intact(), "an edit still breaks it");
    }

    #[test]
    fn lines_with_malformed_seq_or_hashes_are_unreadable() {
        let line = serde_json::to_value(event(json!({}))).unwrap();
        assert!(serde_json::from_value::<AuditEvent>(line.clone()).is_ok());
        let malformed = [
            ("seq", json!(0)),
            ("seq", json!(2.0)),
            ("seq", json!(-1)),
            ("seq", serde_json::from_str::<Value>("18446744073709551616").unwrap()),
            ("prev_hash", json!("zz")),
            ("prev_hash", json!("AB".repeat(32))),
            ("hash", json!("ab".repeat(33))),
        ];
        for (member, value) in malformed {
            let mut bad = line.clone();
            bad[member] = value.clone();
            assert!(
                serde_json::from_value::<AuditEvent>(bad).is_err(),
                "{member} = {value} must make the line unreadable"
            );
        }
    }

    #[test]
    fn any_changed_field_changes_the_hash() {
        let sealed = event(json!({"role": "db-admin"}));
        let mut edits: Vec<AuditEvent> = vec![sealed.clone(); 6];
        edits[0].seq += 1;
        edits[1].time.push('0');
        edits[2].actor = "mallory".into();
        edits[3].kind = "request.approved".into();
        edits[4].request_id = None;
        edits[5].data = json!({"role": "db-admin "});
        for edited in edits {
            assert!(!edited.hash_is_intact(), "{edited:?}");
        }
        let mut moved = sealed;
        moved.prev_hash = "cd".repeat(32);
        assert!(!moved.hash_is_intact());
    }
}
