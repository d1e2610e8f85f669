//! Checking a run of audit lines: the hash chain always, and with the
//! server's public audit key also the signed checkpoints that prove an
//! export is complete (nothing cut at either end, nothing rewritten and
//! rehashed). The algorithm is the one docs/audit.md specifies.

use serde::{Deserialize, Serialize};

use super::checkpoint::{AuditPublicKey, CHECKPOINT_ACTOR, CHECKPOINT_KIND, CheckpointData, signed_message};
use super::line_check::{self, ChainLink, Scratch};
use super::{AuditEvent, GENESIS_HASH};

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
    /// The first sequence number at which the chain is broken (none when the
    /// problem has no place, as for an empty file).
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
    /// Signed checkpoints prove that nothing is missing between `first_seq`
    /// and `last_seq`: the run starts at seq 1 or at a signed checkpoint and
    /// ends with a signed checkpoint of its last event (on the server: at
    /// the writer's head). False when no key was given.
    #[serde(default)]
    pub complete: bool,
    /// How many checkpoint signatures were verified.
    #[serde(default)]
    pub checkpoints: u64,
    /// Sequence number of the last checkpoint verified.
    #[serde(default)]
    pub last_checkpoint_seq: Option<u64>,
    /// Key id (RFC 7638 thumbprint) of the key checkpoints were verified with.
    #[serde(default)]
    pub key_id: Option<String>,
}

/// Where the first event may be.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Seq 1, chained to [`GENESIS_HASH`]: the live log.
    Genesis,
    /// Anywhere (a chain-only look at part of the log).
    #[default]
    Anywhere,
    /// An exported file: seq 1 from genesis; anything else starts right
    /// after a signed checkpoint (with a key) or anywhere (without).
    Export,
}

/// Incremental verifier: feed events in order, read the report at the end.
/// Memory stays constant however long the log is.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    start: Start,
    key: Option<(AuditPublicKey, String)>,
    /// An exported file must hold events and, with a key, end at a checkpoint.
    export: bool,
    previous: Option<(u64, String)>,
    report: Option<VerifyReport>,
    /// After a gap (expected, found): the next line shows whether it was a
    /// removal or a swap, so one more line is read before giving up.
    gap: Option<(u64, u64)>,
    checked: u64,
    first_seq: Option<u64>,
    checkpoints: u64,
    last_checkpoint_seq: Option<u64>,
    ends_at_checkpoint: bool,
    /// Buffers of the quick line check, kept between lines.
    scratch: Scratch,
}

impl ChainVerifier {
    /// Starts at the very beginning of the log: the first event must be seq 1
    /// chained to [`GENESIS_HASH`]. Chain only: checkpoints are not checked.
    pub fn from_genesis() -> Self {
        Self {
            start: Start::Genesis,
            previous: Some((0, GENESIS_HASH.to_string())),
            ..Self::default()
        }
    }

    /// Starts at whatever event comes first. Chain only.
    pub fn from_anywhere() -> Self {
        Self::default()
    }

    /// The live log with the server's own key: from genesis, every
    /// checkpoint's signature checked. The log need not end at a checkpoint
    /// (events written since the last one); the caller compares the end
    /// with the writer's head.
    pub fn from_genesis_with_key(key: AuditPublicKey) -> Self {
        Self {
            key: Some(key_with_id(key)),
            ..Self::from_genesis()
        }
    }

    /// An exported file without a key: the chain from seq 1 (genesis) or
    /// from wherever a partial export starts. An empty file fails; the
    /// report never claims completeness.
    pub fn for_export() -> Self {
        Self {
            start: Start::Export,
            export: true,
            ..Self::default()
        }
    }

    /// An exported file with the server's public audit key: the chain, every
    /// checkpoint, a start at seq 1 or right after a signed checkpoint the
    /// file carries as its first line, and an end at a signed checkpoint of
    /// the last event. Proves the file complete between its ends.
    pub fn with_key(key: AuditPublicKey) -> Self {
        Self {
            key: Some(key_with_id(key)),
            ..Self::for_export()
        }
    }

    /// True once a break has been found; later events are not examined.
    pub fn failed(&self) -> bool {
        self.report.is_some() && self.gap.is_none()
    }

    fn summary(&self, ok: bool, first_bad_seq: Option<u64>, problem: Option<String>) -> VerifyReport {
        let (last_seq, head_hash) = match &self.previous {
            Some((seq, hash)) if self.checked > 0 => (Some(*seq), ok.then(|| hash.clone())),
            _ => (None, None),
        };
        VerifyReport {
            ok,
            events_checked: self.checked,
            first_seq: self.first_seq,
            last_seq,
            head_hash,
            first_bad_seq,
            problem,
            complete: ok && self.key.is_some() && self.ends_at_checkpoint,
            checkpoints: self.checkpoints,
            last_checkpoint_seq: self.last_checkpoint_seq,
            key_id: self.key.as_ref().map(|(_, id)| id.clone()),
        }
    }

    fn fail(&mut self, seq: Option<u64>, problem: String) {
        if self.report.is_none() {
            self.report = Some(self.summary(false, seq, Some(problem)));
        }
    }

    /// Records a line that could not even be parsed; the bad sequence number
    /// is the one after the last good event, when there was one.
    pub fn push_unreadable(&mut self, line_number: usize, error: &str) {
        self.gap = None;
        let seq = self.previous.as_ref().map(|p| p.0 + 1);
        self.fail(seq, format!("line {line_number} is not a valid audit event: {error}"));
    }

    /// Checks one line of an exported file (`line_number` counts from 1,
    /// for messages). Most lines are checked straight from their text;
    /// any other is read whole, with the reading's error if it is not an
    /// audit event.
    pub fn push_line(&mut self, line_number: usize, line: &[u8]) {
        if let Some(link) = line_check::intact_link(line, &mut self.scratch) {
            self.push_link(&link, |_| Ok(()));
            return;
        }
        match serde_json::from_slice::<AuditEvent>(line) {
            Ok(event) => self.push(&event),
            Err(error) => self.push_unreadable(line_number, &error.to_string()),
        }
    }

    pub fn push(&mut self, event: &AuditEvent) {
        let link = ChainLink {
            seq: event.seq,
            kind: &event.kind,
            prev_hash: &event.prev_hash,
            hash: &event.hash,
        };
        self.push_link(&link, |verifier| {
            check_hash(event).and_then(|()| verifier.check_checkpoint(event))
        });
    }

    /// The chain's checks of one event; `check_content` adds those of its
    /// hash and checkpoint signature, when they are not already done.
    fn push_link(&mut self, link: &ChainLink<'_>, check_content: impl FnOnce(&Self) -> Result<(), (u64, String)>) {
        if self.report.is_some() {
            self.explain_gap(link.seq);
            return;
        }
        if self.previous.is_none() && self.start == Start::Export && link.seq == 1 {
            self.previous = Some((0, GENESIS_HASH.to_string()));
        }
        let checked = self.check_link(link).and_then(|()| check_content(self));
        if let Err((seq, problem)) = checked {
            self.fail(Some(seq), problem);
            return;
        }
        let verified_checkpoint = self.key.is_some() && link.kind == CHECKPOINT_KIND;
        if verified_checkpoint {
            self.checkpoints += 1;
            self.last_checkpoint_seq = Some(link.seq);
        }
        self.ends_at_checkpoint = verified_checkpoint;
        self.first_seq.get_or_insert(link.seq);
        self.checked += 1;
        match &mut self.previous {
            // The hash's buffer is reused: no allocation per event.
            Some((seq, hash)) => {
                *seq = link.seq;
                hash.clear();
                hash.push_str(link.hash);
            }
            None => self.previous = Some((link.seq, link.hash.to_string())),
        }
    }

    /// A gap followed by the missing event means lines were swapped, not
    /// removed; the report says so.
    fn explain_gap(&mut self, seq: u64) {
        if let (Some((expected, found)), Some(report)) = (self.gap.take(), self.report.as_mut())
            && seq == expected
        {
            report.problem = Some(format!(
                "events {expected} and {found} are out of order: event {found} comes before event {expected}"
            ));
        }
    }

    /// Sequence and `prev_hash` against the line before; a first line
    /// without one must be allowed to start where it does.
    fn check_link(&mut self, event: &ChainLink<'_>) -> Result<(), (u64, String)> {
        let seq = event.seq;
        let Some((prev_seq, prev_hash)) = &self.previous else {
            if self.key.is_some() && self.start == Start::Export && event.kind != CHECKPOINT_KIND {
                return Err((
                    seq,
                    format!(
                        "the file starts at seq {seq} without a signed checkpoint before it: events before it may have been cut \
                         (a whole export starts at seq 1, a partial one with the checkpoint of the event before its first)"
                    ),
                ));
            }
            return Ok(());
        };
        let (prev_seq, expected) = (*prev_seq, *prev_seq + 1);
        if seq == expected {
            if event.prev_hash == *prev_hash {
                return Ok(());
            }
            let problem = if prev_seq == 0 {
                "event 1 does not start from the genesis hash: its prev_hash is not 64 zeros".to_string()
            } else {
                format!("event {seq} does not chain to event {prev_seq}: prev_hash differs")
            };
            return Err((seq, problem));
        }
        if seq == prev_seq {
            let problem = if event.hash == *prev_hash {
                format!("event {seq} appears twice")
            } else {
                format!("event {seq} appears twice, with different contents")
            };
            return Err((seq, problem));
        }
        if seq > expected {
            self.gap = Some((expected, seq));
            let problem = if prev_seq == 0 {
                format!("event 1 is missing: the events start at seq {seq}")
            } else {
                format!("event {expected} is missing: event {seq} follows event {prev_seq}")
            };
            return Err((expected, problem));
        }
        Err((
            expected,
            format!("event {seq} is repeated or out of order: it follows event {prev_seq}"),
        ))
    }

    /// With a key, a checkpoint must vouch, with a good signature, for
    /// exactly the line before it.
    fn check_checkpoint(&self, event: &AuditEvent) -> Result<(), (u64, String)> {
        let Some((key, key_id)) = &self.key else {
            return Ok(());
        };
        if event.kind != CHECKPOINT_KIND {
            return Ok(());
        }
        let seq = event.seq;
        let bad = |problem: String| Err((seq, problem));
        let data: CheckpointData = match serde_json::from_value(event.data.clone()) {
            Ok(data) => data,
            Err(error) => {
                return bad(format!(
                    "checkpoint {seq} is malformed: {error}; its data holds exactly covers_seq, covers_hash, key_id and signature"
                ));
            }
        };
        let Some(covered) = seq.checked_sub(1).filter(|covered| *covered == data.covers_seq) else {
            return bad(format!(
                "checkpoint {seq} covers event {}, not the line right before it",
                data.covers_seq
            ));
        };
        if data.key_id != *key_id {
            return bad(format!(
                "checkpoint {seq} is signed by key {}, not by the given key {key_id}: verify with the public key of the server that wrote this log",
                data.key_id
            ));
        }
        if data.covers_hash != event.prev_hash {
            let problem = match self.last_checkpoint_seq.or(self.first_seq) {
                Some(from) => format!(
                    "checkpoint {seq} vouches for another hash of event {covered} than the chain holds: a line from seq {from} to {covered} was changed and the chain rehashed"
                ),
                None => format!("checkpoint {seq} vouches for another hash of event {covered} than its own prev_hash"),
            };
            return bad(problem);
        }
        if event.actor != CHECKPOINT_ACTOR || event.request_id.is_some() {
            return bad(format!(
                "checkpoint {seq} is malformed: a checkpoint's actor is {CHECKPOINT_ACTOR:?} and its request_id null"
            ));
        }
        let message = signed_message(covered, &data.covers_hash, key_id, &event.time);
        if !key.verifies(&message, &data.signature) {
            return bad(format!(
                "checkpoint {seq} has an invalid signature: what it vouches for was altered, or key {key_id} did not sign it"
            ));
        }
        Ok(())
    }

    pub fn finish(mut self) -> VerifyReport {
        if let Some(report) = self.report.take() {
            return report;
        }
        if self.export && self.checked == 0 {
            return self.summary(false, None, Some("the file holds no audit events".into()));
        }
        if self.export && self.key.is_some() && !self.ends_at_checkpoint {
            let last = self.previous.as_ref().map_or(0, |p| p.0);
            let last_checkpoint = match self.last_checkpoint_seq {
                Some(seq) => format!("the last signed checkpoint is at seq {seq}"),
                None => "it holds no signed checkpoint".to_string(),
            };
            return self.summary(
                false,
                Some(last + 1),
                Some(format!(
                    "the file ends at seq {last} without a checkpoint: events may have been cut ({last_checkpoint})"
                )),
            );
        }
        self.summary(true, None, None)
    }
}

fn key_with_id(key: AuditPublicKey) -> (AuditPublicKey, String) {
    let id = key.key_id();
    (key, id)
}

fn check_hash(event: &AuditEvent) -> Result<(), (u64, String)> {
    if event.hash_is_intact() {
        Ok(())
    } else {
        Err((
            event.seq,
            format!("event {} was changed: its hash does not match its contents", event.seq),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::tests::{random_signer, rfc8032_signer};
    use crate::audit::{AuditDraft, CheckpointSigner};
    use serde_json::json;

    fn append(lines: &mut Vec<AuditEvent>, draft: AuditDraft) {
        let (seq, prev) = lines
            .last()
            .map_or((1, GENESIS_HASH.to_string()), |last| (last.seq + 1, last.hash.clone()));
        lines.push(draft.seal(seq, time_of(seq), &prev));
    }

    /// The time the test logs give line `seq`.
    fn time_of(seq: u64) -> String {
        format!("2026-11-21T10:00:{:02}.000000Z", seq % 60)
    }

    fn append_checkpoint(lines: &mut Vec<AuditEvent>, signer: &CheckpointSigner) {
        let (seq, hash) = lines.last().map(|l| (l.seq, l.hash.clone())).unwrap();
        append(lines, signer.checkpoint_draft(seq, &hash, &time_of(seq + 1)));
    }

    /// Eight events with a checkpoint after every third and one at the end,
    /// as the server writes and exports them: checkpoints at 4, 8 and 11.
    fn log(signer: &CheckpointSigner) -> Vec<AuditEvent> {
        let mut lines = Vec::new();
        for n in 1..=8u64 {
            let data = json!({"n": n, "ratio": 0.5, "role": "demo"});
            append(
                &mut lines,
                AuditDraft::new("alice", "request.created", Some(format!("r{n}")), data),
            );
            if n % 3 == 0 || n == 8 {
                append_checkpoint(&mut lines, signer);
            }
        }
        lines
    }

    fn run(mut verifier: ChainVerifier, lines: &[AuditEvent]) -> VerifyReport {
        for line in lines {
            verifier.push(line);
            if verifier.failed() {
                break;
            }
        }
        verifier.finish()
    }

    fn with_key(lines: &[AuditEvent]) -> VerifyReport {
        run(ChainVerifier::with_key(rfc8032_signer().public_key().clone()), lines)
    }

    fn without_key(lines: &[AuditEvent]) -> VerifyReport {
        run(ChainVerifier::for_export(), lines)
    }

    /// Asserts a failure at `seq` whose problem contains `words`.
    fn assert_fails(report: &VerifyReport, seq: Option<u64>, words: &str) {
        assert!(!report.ok, "{report:?}");
        assert!(!report.complete);
        assert_eq!(report.first_bad_seq, seq, "{report:?}");
        let problem = report.problem.as_deref().unwrap();
        assert!(problem.contains(words), "expected {words:?} in {problem:?}");
    }

    /// Recomputes every hash from `lines[index]` on, as someone rewriting
    /// the file after an edit would; signatures cannot be recomputed.
    fn rehash_from(lines: &mut [AuditEvent], index: usize) {
        for i in index..lines.len() {
            if i > 0 {
                lines[i].prev_hash = lines[i - 1].hash.clone();
            }
            lines[i].hash = lines[i].compute_hash();
        }
    }

    #[test]
    fn a_signed_export_verifies_complete() {
        let lines = log(&rfc8032_signer());
        assert_eq!(lines.len(), 11);
        let report = with_key(&lines);
        assert!(report.ok && report.complete, "{report:?}");
        assert_eq!(report.events_checked, 11);
        assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(11)));
        assert_eq!((report.checkpoints, report.last_checkpoint_seq), (3, Some(11)));
        assert_eq!(report.head_hash.as_deref(), Some(lines[10].hash.as_str()));
        assert_eq!(
            report.key_id.as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
    }

    #[test]
    fn without_a_key_the_chain_verifies_but_completeness_is_not_claimed() {
        let report = without_key(&log(&rfc8032_signer()));
        assert!(report.ok, "{report:?}");
        assert!(!report.complete);
        assert_eq!((report.checkpoints, report.key_id.as_deref()), (0, None));
    }

    #[test]
    fn an_edited_event_is_named() {
        let mut lines = log(&rfc8032_signer());
        lines[5].actor = "mallory".into();
        assert_fails(&with_key(&lines), Some(6), "event 6 was changed");
        assert_fails(&without_key(&lines), Some(6), "event 6 was changed");
    }

    #[test]
    fn a_rehashed_chain_is_caught_by_the_next_checkpoint() {
        let mut lines = log(&rfc8032_signer());
        lines[5].data["role"] = json!("admin");
        rehash_from(&mut lines, 5);
        assert_fails(
            &with_key(&lines),
            Some(8),
            "a line from seq 4 to 7 was changed and the chain rehashed",
        );
        // The chain alone cannot tell.
        assert!(without_key(&lines).ok);
        // Pointing the checkpoint at the new hash breaks its signature.
        lines[7].data["covers_hash"] = json!(lines[6].hash);
        rehash_from(&mut lines, 7);
        assert_fails(&with_key(&lines), Some(8), "checkpoint 8 has an invalid signature");
    }

    #[test]
    fn a_rehashed_tail_after_the_last_checkpoint_is_caught_by_the_final_one() {
        let mut lines = log(&rfc8032_signer());
        lines[9].actor = "mallory".into();
        rehash_from(&mut lines, 9);
        assert_fails(&with_key(&lines), Some(11), "a line from seq 8 to 10 was changed");
    }

    #[test]
    fn every_field_of_the_last_checkpoint_is_signed_or_fixed() {
        // Nothing after the final checkpoint covers its hash: were any of
        // its fields free, it could be edited and rehashed unnoticed.
        type Edit = fn(&mut AuditEvent);
        let edits: [(&str, Edit); 3] = [
            ("has an invalid signature", |line| line.time = time_of(59)),
            ("is malformed", |line| line.actor = "mallory".into()),
            ("is malformed", |line| line.request_id = Some("r1".into())),
        ];
        for (words, edit) in edits {
            let mut lines = log(&rfc8032_signer());
            let last = lines.len() - 1;
            edit(&mut lines[last]);
            rehash_from(&mut lines, last);
            assert_fails(&with_key(&lines), Some(11), &format!("checkpoint 11 {words}"));
        }
    }

    #[test]
    fn a_removed_line_is_named() {
        let mut lines = log(&rfc8032_signer());
        lines.remove(4);
        assert_fails(
            &with_key(&lines),
            Some(5),
            "event 5 is missing: event 6 follows event 4",
        );
        let mut lines = log(&rfc8032_signer());
        lines.remove(7); // a checkpoint
        assert_fails(&with_key(&lines), Some(8), "event 8 is missing");
    }

    #[test]
    fn a_duplicated_line_is_named() {
        let mut lines = log(&rfc8032_signer());
        lines.insert(5, lines[4].clone());
        assert_fails(&with_key(&lines), Some(5), "event 5 appears twice");
        let mut other = lines[4].clone();
        other.actor = "mallory".into();
        other.hash = other.compute_hash();
        lines[5] = other;
        assert_fails(
            &without_key(&lines),
            Some(5),
            "event 5 appears twice, with different contents",
        );
        let mut lines = log(&rfc8032_signer());
        lines.insert(6, lines[1].clone());
        assert_fails(
            &with_key(&lines),
            Some(7),
            "event 2 is repeated or out of order: it follows event 6",
        );
    }

    #[test]
    fn reordered_lines_are_named() {
        let mut lines = log(&rfc8032_signer());
        lines.swap(4, 5);
        assert_fails(
            &with_key(&lines),
            Some(5),
            "events 5 and 6 are out of order: event 6 comes before event 5",
        );
        assert_fails(&without_key(&lines), Some(5), "events 5 and 6 are out of order");
    }

    #[test]
    fn a_file_cut_at_the_end_is_named() {
        let lines = log(&rfc8032_signer());
        assert_fails(
            &with_key(&lines[..10]),
            Some(11),
            "the file ends at seq 10 without a checkpoint: events may have been cut (the last signed checkpoint is at seq 8)",
        );
        assert_fails(&with_key(&lines[..3]), Some(4), "it holds no signed checkpoint");
        // Without a key the cut goes unnoticed, which is why the report
        // never claims completeness then.
        assert!(without_key(&lines[..10]).ok);
    }

    #[test]
    fn a_file_cut_right_after_an_earlier_checkpoint_is_complete_only_up_to_it() {
        let report = with_key(&log(&rfc8032_signer())[..8]);
        assert!(report.ok && report.complete, "{report:?}");
        assert_eq!(
            report.last_seq,
            Some(8),
            "the report shows where proven completeness ends"
        );
    }

    #[test]
    fn a_file_cut_at_the_start_is_named() {
        let lines = log(&rfc8032_signer());
        assert_fails(
            &with_key(&lines[2..]),
            Some(3),
            "the file starts at seq 3 without a signed checkpoint before it: events before it may have been cut",
        );
        let report = without_key(&lines[2..]);
        assert!(report.ok && !report.complete, "{report:?}");
        assert_eq!(report.first_seq, Some(3));
    }

    #[test]
    fn a_partial_export_anchored_by_its_checkpoint_is_complete() {
        let lines = log(&rfc8032_signer());
        for start in [3, 7] {
            let report = with_key(&lines[start..]);
            assert!(report.ok && report.complete, "{report:?}");
            assert_eq!(report.first_seq, Some(lines[start].seq));
            assert_eq!(report.last_seq, Some(11));
        }
        // An anchor whose prev_hash was changed no longer matches its signature.
        let mut anchored = lines[3..].to_vec();
        anchored[0].prev_hash = "00".repeat(32);
        anchored[0].data["covers_hash"] = json!("00".repeat(32));
        rehash_from(&mut anchored, 0);
        assert_fails(&with_key(&anchored), Some(4), "checkpoint 4 has an invalid signature");
    }

    #[test]
    fn an_empty_file_is_refused() {
        assert_fails(&with_key(&[]), None, "the file holds no audit events");
        assert_fails(&without_key(&[]), None, "the file holds no audit events");
        // The live log of a fresh server is empty and intact.
        assert!(run(ChainVerifier::from_genesis(), &[]).ok);
    }

    #[test]
    fn a_checkpoint_by_another_key_names_both_keys() {
        let other = random_signer();
        let report = run(
            ChainVerifier::with_key(other.public_key().clone()),
            &log(&rfc8032_signer()),
        );
        let expected = format!(
            "checkpoint 4 is signed by key kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k, not by the given key {}",
            other.public_key().key_id()
        );
        assert_fails(&report, Some(4), &expected);
        // An anchor forged with the forger's own key fails the same way.
        let lines = log(&rfc8032_signer());
        let mut forged = lines[3..].to_vec();
        let anchor_prev = lines[3].prev_hash.clone();
        forged[0] =
            other
                .checkpoint_draft(3, &anchor_prev, &lines[3].time)
                .seal(4, lines[3].time.clone(), &anchor_prev);
        rehash_from(&mut forged, 1);
        let expected = format!(
            "checkpoint 4 is signed by key {}, not by the given key kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
            other.public_key().key_id()
        );
        assert_fails(&with_key(&forged), Some(4), &expected);
    }

    #[test]
    fn a_checkpoint_must_cover_the_line_right_before_it() {
        let signer = rfc8032_signer();
        let mut lines = log(&signer)[..3].to_vec();
        let stale = signer.checkpoint_draft(lines[1].seq, &lines[1].hash.clone(), &time_of(4));
        append(&mut lines, stale);
        assert_fails(
            &with_key(&lines),
            Some(4),
            "checkpoint 4 covers event 2, not the line right before it",
        );
    }

    #[test]
    fn a_checkpoint_with_other_data_is_malformed() {
        let mut lines = log(&rfc8032_signer());
        lines[3].data["note"] = json!("unsigned");
        rehash_from(&mut lines, 3);
        assert_fails(
            &with_key(&lines),
            Some(4),
            "checkpoint 4 is malformed: unknown field `note`",
        );
        // A line of any other kind is just an event, whatever it holds.
        let mut lines = log(&rfc8032_signer());
        lines[3].kind = "audit.checkpoint.v0".into();
        rehash_from(&mut lines, 3);
        assert_fails(&with_key(&lines), Some(8), "was changed and the chain rehashed");
    }

    #[test]
    fn the_live_log_checks_checkpoints_without_requiring_one_at_the_end() {
        let signer = rfc8032_signer();
        let mut lines = log(&signer);
        lines.pop();
        let report = run(
            ChainVerifier::from_genesis_with_key(signer.public_key().clone()),
            &lines,
        );
        assert!(report.ok && !report.complete, "{report:?}");
        assert_eq!((report.checkpoints, report.last_checkpoint_seq), (2, Some(8)));
        lines[1].request_id = None;
        rehash_from(&mut lines, 1);
        let report = run(
            ChainVerifier::from_genesis_with_key(signer.public_key().clone()),
            &lines,
        );
        assert_fails(&report, Some(4), "a line from seq 1 to 3 was changed");
        assert!(run(ChainVerifier::from_genesis(), &lines).ok, "chain only");
    }

    #[test]
    fn the_live_log_must_start_at_genesis() {
        let lines = log(&rfc8032_signer());
        assert_fails(
            &run(ChainVerifier::from_genesis(), &lines[2..]),
            Some(1),
            "event 1 is missing: the events start at seq 3",
        );
        let mut moved = lines.clone();
        moved[0].prev_hash = "11".repeat(32);
        rehash_from(&mut moved, 0);
        assert_fails(
            &run(ChainVerifier::from_genesis(), &moved),
            Some(1),
            "does not start from the genesis hash",
        );
    }

    #[test]
    fn an_unreadable_line_is_reported_as_the_seq_after_the_last_good_one() {
        let lines = log(&rfc8032_signer());
        let mut verifier = ChainVerifier::with_key(rfc8032_signer().public_key().clone());
        lines[..2].iter().for_each(|l| verifier.push(l));
        verifier.push_unreadable(3, "expected value");
        assert!(verifier.failed());
        assert_fails(
            &verifier.finish(),
            Some(3),
            "line 3 is not a valid audit event: expected value",
        );
        let mut verifier = ChainVerifier::for_export();
        verifier.push_unreadable(1, "expected value");
        assert_fails(&verifier.finish(), None, "line 1");
    }

    #[test]
    fn a_chain_only_look_can_start_anywhere() {
        let lines = log(&rfc8032_signer());
        let report = run(ChainVerifier::from_anywhere(), &lines[5..]);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.first_seq, Some(6));
    }
}
