//! The stored form of a request record: lean JSON, packed, read back as
//! written, and records written in full (and as text) by earlier builds
//! read as before.

use hallpass_core::RequestState;
use hallpass_core::request::RequestRecord;

use crate::support::{Db, Fixture, active, approved, at, break_glass, denied, expired, revoke_failed};

on_both_backends!(
    records_in_every_state_read_back_as_written_and_are_stored_lean,
    records_written_in_full_by_an_earlier_build_read_as_before,
    stored_documents_show_what_packed_rows_hold,
);

async fn read(f: &Fixture, id: &str) -> RequestRecord {
    let id = id.to_string();
    let found = f.store.read(move |r| r.request(&id)).await.expect("read");
    found.expect("the record exists").0
}

async fn records_in_every_state_read_back_as_written_and_are_stored_lean(db: Db) {
    let f = Fixture::open(db);
    let records = [
        approved("approved", "alice", "web", at(0)),
        active("active", "alice", "db", at(1), 3600),
        expired("expired", "alice", "db", at(2)),
        denied("denied", "alice", "ssh", at(3)),
        revoke_failed("failed", "bob", "db", at(4), at(600)),
        break_glass("review", "bob", "ssh", at(5), false),
        break_glass("reviewed", "bob", "vpn", at(6), true),
    ];
    for record in &records {
        f.put(record).await;
    }
    for record in &records {
        assert_eq!(&read(&f, &record.id).await, record);
    }
    for (stored, text) in f.db.documents("SELECT record FROM requests") {
        assert!(!text.contains("null"), "nothing empty is stored: {text}");
        assert!(stored * 2 < text.len(), "stored packed: {stored} bytes for {text}");
    }
}

/// Release 0.1's records (its upgrade fixture), in the full form every
/// build before the lean one wrote: a pending request half-way through a
/// two-stage flow, and a grant extended once.
const PENDING_FULL: &str = r#"{"id":"01a22a9e-c8e3-7686-a2cc-d335aa29e553","role":"demo-flow","target":"demo","requester":{"name":"alice","groups":["dev"]},"state":"pending","duration_seconds":3600,"reason":"INC-3 migrate","ticket":null,"created_at":"2026-11-30T04:02:58.915832876Z","updated_at":"2026-11-30T04:02:59.024196268Z","auto_approved":false,"pending_expires_at":"2026-11-30T06:02:58.915832876Z","approval":{"flow":{"name":"two-step","pending_ttl_seconds":7200,"stages":[{"approvers":["group:approvers"],"required":1,"timeout_seconds":900,"escalate_to":["group:security"]},{"approvers":["group:security"],"required":1,"timeout_seconds":null,"escalate_to":[]}],"distinct_approvers":true,"allow_self_approval":false},"stages":[{"approvals":[{"approver":"bob","comment":"stage one ok","at":"2026-11-30T04:02:59.024196268Z"}],"opened_at":"2026-11-30T04:02:58.915832876Z","escalated_at":null},{"approvals":[],"opened_at":"2026-11-30T04:02:59.024196268Z","escalated_at":null}],"current":1},"role_approvers":["group:approvers","group:security"],"policy":{"approval_flow":null,"auto_approve":false,"deny":[],"error":null,"max_duration_seconds":null,"policy_hash":"ee751f6410fdaed1795af1f8029eb4f5dc9230e2d582f47fc480282f13d4dabe"},"decision":null,"activated_at":null,"expires_at":null,"end":null,"ended_by":null,"ended_at":null,"credential":null,"revoke_error":null,"revoke_attempts":0,"next_revoke_at":null}"#;
const ACTIVE_FULL: &str = r#"{"id":"01a22a9e-c849-73db-aee5-f4248056110d","role":"demo-read","target":"demo","requester":{"name":"alice","groups":["dev"]},"state":"active","duration_seconds":1800,"reason":"INC-1 look at logs","ticket":null,"created_at":"2026-11-30T04:02:58.761617534Z","updated_at":"2026-11-30T04:02:58.880340732Z","auto_approved":true,"policy":{"approval_flow":null,"auto_approve":false,"deny":[],"error":null,"max_duration_seconds":null,"policy_hash":"ee751f6410fdaed1795af1f8029eb4f5dc9230e2d582f47fc480282f13d4dabe"},"decision":null,"activated_at":"2026-11-30T04:02:58.761617534Z","expires_at":"2026-11-30T04:42:58.761617534Z","end":null,"ended_by":null,"ended_at":null,"credential":{"audience":"demo","issuer":"http://127.0.0.1:7392","jti":"01a22a9e-c849-73db-aee5-f4248056110d","key_id":"acef357af52040d4","type":"jwt"},"revoke_error":null,"revoke_attempts":0,"next_revoke_at":null,"extensions":[{"number":1,"by_seconds":600,"reason":"need more","ticket":null,"requested_at":"2026-11-30T04:02:58.880340732Z","state":"approved","auto_approved":true,"approval":null,"decision":null,"policy":{"approval_flow":null,"auto_approve":false,"deny":[],"error":null,"max_duration_seconds":null,"policy_hash":"ee751f6410fdaed1795af1f8029eb4f5dc9230e2d582f47fc480282f13d4dabe"}}]}"#;

async fn records_written_in_full_by_an_earlier_build_read_as_before(db: Db) {
    let f = Fixture::open(db);
    f.db.execute(&format!(
        "INSERT INTO requests (id, state, requester, role, activated, next_deadline, created_at, version, record,
             review, open_key) VALUES
         ('01a22a9e-c8e3-7686-a2cc-d335aa29e553', 'pending', 'alice', 'demo-flow', 0,
          '2026-11-30T06:02:58.915832Z', '2026-11-30T04:02:58.915832Z', 21, '{PENDING_FULL}', 0, 'alice demo-flow'),
         ('01a22a9e-c849-73db-aee5-f4248056110d', 'active', 'alice', 'demo-read', 1,
          '2026-11-30T04:42:58.761617Z', '2026-11-30T04:02:58.761617Z', 17, '{ACTIVE_FULL}', 0, 'alice demo-read')"
    ));
    let pending = read(&f, "01a22a9e-c8e3-7686-a2cc-d335aa29e553").await;
    let progress = pending.approval.as_ref().expect("a flow");
    assert_eq!((pending.state, progress.current), (RequestState::Pending, 1));
    assert_eq!(progress.flow.stages[0].timeout_seconds, Some(900));
    assert_eq!(progress.stages[0].approvals[0].comment.as_deref(), Some("stage one ok"));
    let grant = read(&f, "01a22a9e-c849-73db-aee5-f4248056110d").await;
    assert_eq!(grant.extensions[0].by_seconds, 600);
    assert_eq!(
        grant.credential.as_ref().map(|c| c["key_id"].clone()),
        Some("acef357af52040d4".into())
    );
    // Every way the store reads a record takes the full form.
    let open = f
        .store
        .read(|r| r.open_requests_of("alice"))
        .await
        .expect("open requests");
    let open: Vec<RequestRecord> = open.into_iter().map(|(record, _)| record).collect();
    assert_eq!(open, [grant.clone(), pending.clone()]);
    let holding = f.store.read(|r| r.grants_holding_on("demo")).await.expect("grants");
    assert_eq!(holding, ["01a22a9e-c849-73db-aee5-f4248056110d"]);

    // Written again, the same record is stored lean and reads the same.
    for record in [&pending, &grant] {
        f.put(record).await;
        assert_eq!(&read(&f, &record.id).await, record);
    }
    let stored = f.db.documents("SELECT record FROM requests ORDER BY created_at");
    let lengths: Vec<usize> = stored.iter().map(|(_, json)| json.len()).collect();
    assert_eq!((ACTIVE_FULL.len(), PENDING_FULL.len()), (1261, 1379));
    assert_eq!(lengths, [894, 978], "{stored:?}");
    // And packed: under half the lean JSON.
    for (packed, json) in &stored {
        assert!(packed * 2 < json.len(), "{packed} bytes for {json}");
    }
}

/// Packed rows hide nothing from someone reading the database: checks for
/// secrets at rest read them through `stored_documents`.
async fn stored_documents_show_what_packed_rows_hold(db: Db) {
    let f = Fixture::open(db);
    let mut record = approved("r1", "alice", "db", at(0));
    record.reason = "pasted by mistake: hp_SENTINEL_0123456789".into();
    f.put(&record).await;
    f.store
        .write(|w| {
            w.append_audit(hallpass_core::audit::AuditDraft::new(
                "alice",
                "request.created",
                Some("r1".into()),
                serde_json::json!({"reason": "hp_EVENT_SENTINEL_987"}),
            ))
        })
        .await
        .expect("append");
    let documents = hallpass_store::stored_documents(&f.db.backend).expect("documents");
    assert!(documents.contains("hp_SENTINEL_0123456789"), "{documents}");
    assert!(documents.contains("hp_EVENT_SENTINEL_987"), "{documents}");
}
