//! Tests of the revocation policy builder: statements as AWS evaluates
//! them, idempotence, pruning, the size-limit fallback and reading back.

use super::*;
use chrono::TimeZone;

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, hour, minute, 0).unwrap()
}

fn statements(policy: &RevocationPolicy) -> Vec<Value> {
    let document: Value = serde_json::from_str(&policy.document().unwrap()).unwrap();
    assert_eq!(document["Version"], "2012-10-17");
    document["Statement"].as_array().unwrap().clone()
}

const ALICE: &str = "AROA3XFRBF535PLBIFPI4:hp_alice_0123456789abcdef";
const BOB: &str = "AROA3XFRBF535PLBIFPI4:hp_bob_fedcba9876543210";

#[test]
fn a_revocation_denies_the_grants_sessions_issued_until_then() {
    let mut policy = RevocationPolicy::default();
    assert_eq!(policy.document(), None);
    assert_eq!(policy.revoke(ALICE, at(10, 0), POLICY_SIZE_LIMIT), Revoked::Statement);
    let [statement] = statements(&policy).try_into().unwrap();
    assert_eq!(
        statement,
        json!({
            "Sid": grant_sid(ALICE),
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "StringLike": {"aws:userid": ALICE},
                "DateLessThan": {"aws:TokenIssueTime": "2026-03-01T10:05:00Z"},
            },
        })
    );
    let sid = statement["Sid"].as_str().unwrap();
    assert!(sid.chars().all(|c| c.is_ascii_alphanumeric()), "{sid}");
    assert!(policy.covers(ALICE, at(23, 0)));
    assert!(!policy.covers(BOB, at(10, 0)));
}

#[test]
fn revoking_twice_keeps_one_statement_and_reads_back_the_same() {
    let mut policy = RevocationPolicy::default();
    policy.revoke(ALICE, at(10, 0), POLICY_SIZE_LIMIT);
    let first = policy.document().unwrap();
    let mut again = RevocationPolicy::parse(Some(&first)).unwrap();
    assert_eq!(again, policy);
    assert_eq!(again.revoke(ALICE, at(10, 30), POLICY_SIZE_LIMIT), Revoked::Unchanged);
    assert_eq!(again.document().unwrap(), first);
    assert_eq!(again.revoke(BOB, at(10, 30), POLICY_SIZE_LIMIT), Revoked::Statement);
    assert_eq!(again.len(), 2);
}

#[test]
fn iams_url_encoded_document_is_read() {
    let mut policy = RevocationPolicy::default();
    policy.revoke(ALICE, at(10, 0), POLICY_SIZE_LIMIT);
    let document = policy.document().unwrap();
    let encoded = percent_encoding::utf8_percent_encode(&document, percent_encoding::NON_ALPHANUMERIC).to_string();
    assert!(encoded.starts_with("%7B"), "{encoded}");
    assert_eq!(RevocationPolicy::parse(Some(&encoded)).unwrap(), policy);
    assert_eq!(RevocationPolicy::parse(None).unwrap(), RevocationPolicy::default());
    assert!(RevocationPolicy::parse(Some("{not json")).is_err());
}

#[test]
fn statements_whose_sessions_all_expired_are_pruned() {
    let mut policy = RevocationPolicy::default();
    policy.revoke(ALICE, at(0, 0), POLICY_SIZE_LIMIT);
    // Twelve hours after the statement's time (revocation + 5 minutes) some
    // session might still live; a minute later none can.
    policy.revoke(BOB, at(12, 5), POLICY_SIZE_LIMIT);
    assert_eq!(policy.len(), 2);
    policy.revoke("AROA3XFRBF535PLBIFPI4:hp_carol_1", at(12, 6), POLICY_SIZE_LIMIT);
    let users: Vec<Value> = statements(&policy)
        .iter()
        .map(|s| s["Condition"]["StringLike"]["aws:userid"].clone())
        .collect();
    assert_eq!(users, vec![json!(BOB), json!("AROA3XFRBF535PLBIFPI4:hp_carol_1")]);
    // A repeated revoke that only prunes still writes.
    let mut pruning = RevocationPolicy::default();
    pruning.revoke(ALICE, at(0, 0), POLICY_SIZE_LIMIT);
    pruning.revoke(BOB, at(12, 5), POLICY_SIZE_LIMIT);
    assert_eq!(pruning.revoke(BOB, at(12, 5), POLICY_SIZE_LIMIT), Revoked::Unchanged);
    assert_eq!(pruning.revoke(BOB, at(12, 6), POLICY_SIZE_LIMIT), Revoked::Statement);
    assert_eq!(pruning.len(), 1);
    let mut empty = RevocationPolicy::default();
    empty.revoke(ALICE, at(0, 0), POLICY_SIZE_LIMIT);
    empty.statements.retain(|s| !s.expired(at(13, 0)));
    assert_eq!(empty.document(), None, "no statement left: the policy is deleted");
}

#[test]
fn statements_edited_by_hand_are_kept() {
    let foreign = json!({"Sid": "Mine", "Effect": "Deny", "Action": "s3:*", "Resource": "*"});
    let text = json!({"Version": "2012-10-17", "Statement": foreign.clone()}).to_string();
    let mut policy = RevocationPolicy::parse(Some(&text)).unwrap();
    policy.revoke(ALICE, at(10, 0), POLICY_SIZE_LIMIT);
    policy.revoke(BOB, at(23, 0) + Duration::days(2), POLICY_SIZE_LIMIT);
    assert_eq!(statements(&policy)[0], foreign);
    assert_eq!(policy.len(), 2, "Alice's statement was pruned, the foreign one kept");
}

#[test]
fn a_full_policy_falls_back_to_one_role_wide_statement() {
    let mut policy = RevocationPolicy::default();
    let mut grants = 0;
    while policy.revoke(
        &format!("AROA3XFRBF535PLBIFPI4:hp_user{grants}_0123456789abcdef"),
        at(10, 0),
        POLICY_SIZE_LIMIT,
    ) == Revoked::Statement
    {
        grants += 1;
        assert!(policy.document().unwrap().len() <= POLICY_SIZE_LIMIT);
    }
    assert!(grants >= 35, "only {grants} grants fit");
    // Ten minutes later: earlier grants' statements are covered by the
    // role-wide one and go; the grant revoked now keeps its own.
    let mut later = RevocationPolicy::default();
    for n in 0..grants {
        later.revoke(
            &format!("AROA3XFRBF535PLBIFPI4:hp_user{n}_0123456789abcdef"),
            at(10, 0),
            POLICY_SIZE_LIMIT,
        );
    }
    assert_eq!(later.revoke(ALICE, at(10, 10), POLICY_SIZE_LIMIT), Revoked::RoleWide);
    let all = statements(&later);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        all[0],
        json!({
            "Sid": ROLE_WIDE_SID,
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2026-03-01T10:10:00Z"}},
        })
    );
    assert_eq!(all[1]["Condition"]["StringLike"]["aws:userid"], ALICE);
    assert_eq!(later.role_wide(), Some(at(10, 10)));
    // The role-wide statement covers grants whose sessions were all issued
    // before it, not those that could issue sessions after it.
    assert!(later.covers("AROA3XFRBF535PLBIFPI4:hp_user0_0123456789abcdef", at(10, 10)));
    assert!(!later.covers("AROA3XFRBF535PLBIFPI4:hp_user0_0123456789abcdef", at(11, 0)));
    // And it survives a read back.
    assert_eq!(RevocationPolicy::parse(later.document().as_deref()).unwrap(), later);
}

#[test]
fn a_fallback_within_the_margin_keeps_uncovered_grants() {
    let mut policy = RevocationPolicy::default();
    for n in 0..3 {
        policy.revoke(&format!("AROA3XFRBF535PLBIFPI4:hp_old{n}"), at(9, 0), POLICY_SIZE_LIMIT);
    }
    policy.revoke(BOB, at(10, 0), POLICY_SIZE_LIMIT);
    let expected = RevocationPolicy {
        statements: vec![
            Statement::RoleWide { before: at(10, 1) },
            Statement::Grant {
                user_id: BOB.into(),
                before: at(10, 5),
            },
            Statement::Grant {
                user_id: ALICE.into(),
                before: at(10, 6),
            },
        ],
    };
    // The old grants' statements (to 9:05) are covered by a role-wide one
    // at 10:01 and go; Bob's reaches 10:05, is not covered, and stays.
    assert_eq!(policy.revoke(ALICE, at(10, 1), expected.size()), Revoked::RoleWide);
    assert_eq!(policy, expected);
    // With no room at all: role-wide, the grant revoked now, nothing else.
    let mut tight = RevocationPolicy::default();
    tight.revoke(BOB, at(10, 0), POLICY_SIZE_LIMIT);
    tight.revoke(ALICE, at(10, 1), POLICY_SIZE_LIMIT);
    tight.fall_back(ALICE, at(10, 2), 0);
    let all = statements(&tight);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["Sid"], ROLE_WIDE_SID);
    assert_eq!(all[1]["Condition"]["StringLike"]["aws:userid"], ALICE);
    // A later fallback moves the role-wide time forward, never adds a second.
    tight.fall_back(BOB, at(11, 0), 0);
    assert_eq!(tight.role_wide(), Some(at(11, 0)));
    assert_eq!(
        statements(&tight).iter().filter(|s| s["Sid"] == ROLE_WIDE_SID).count(),
        1
    );
}

#[test]
fn the_documented_statements_are_the_ones_written() {
    let mut policy = RevocationPolicy::default();
    policy.revoke(ALICE, at(10, 0), POLICY_SIZE_LIMIT);
    let [written] = statements(&policy).try_into().unwrap();
    let mut documented: Value =
        serde_json::from_str(&hallpass_doc_examples::example("targets.md", "**Revoke.**", "json")).unwrap();
    assert_eq!(documented["Sid"], "HallpassRevokedGrant<16 hex digits>");
    documented["Sid"] = written["Sid"].clone();
    assert_eq!(documented, written);

    policy.fall_back(ALICE, at(10, 0), 0);
    let role_wide = &statements(&policy)[0];
    let mut documented: Value =
        serde_json::from_str(&hallpass_doc_examples::example("targets.md", "Revoke active", "json")).unwrap();
    assert_eq!(documented["Condition"]["DateLessThan"]["aws:TokenIssueTime"], "<now>");
    documented["Condition"]["DateLessThan"]["aws:TokenIssueTime"] = json!("2026-03-01T10:00:00Z");
    assert_eq!(&documented, role_wide);
}
