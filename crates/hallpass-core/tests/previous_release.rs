//! A real export written by the previous release (byte-sorted canonical
//! JSON, no checkpoints) still verifies with this release's verifier.

use hallpass_core::audit::{AuditEvent, ChainVerifier, GENESIS_HASH};

fn previous_export() -> Vec<AuditEvent> {
    let text = include_str!("fixtures/audit-prev.jsonl");
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn an_export_of_the_previous_release_verifies_as_a_chain() {
    let events = previous_export();
    assert_eq!(events.len(), 28);
    assert_eq!(events[0].prev_hash, GENESIS_HASH);
    let mut verifier = ChainVerifier::for_export();
    events.iter().for_each(|event| verifier.push(event));
    let report = verifier.finish();
    assert!(report.ok, "{report:?}");
    assert_eq!(
        (report.first_seq, report.last_seq, report.events_checked),
        (Some(1), Some(28), 28)
    );
    assert_eq!(report.head_hash.as_deref(), Some(events[27].hash.as_str()));
    assert!(
        !report.complete,
        "it carries no checkpoints, so nothing proves it complete"
    );
}

#[test]
fn its_hashes_are_the_rfc_8785_hashes() {
    // Its events hold only integers and ASCII names, where the two forms
    // agree: these hashes need no fall-back to the old form.
    for event in previous_export() {
        assert_eq!(event.compute_hash(), event.hash, "seq {}", event.seq);
    }
}

#[test]
fn an_edit_to_it_is_still_caught() {
    let mut events = previous_export();
    events[6].data["spec"]["config"]["timeout_seconds"] = serde_json::json!(50);
    let mut verifier = ChainVerifier::for_export();
    events.iter().for_each(|event| verifier.push(event));
    assert_eq!(verifier.finish().first_bad_seq, Some(7));
}
