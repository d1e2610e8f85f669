//! Normalisation and validation of roles and flows.

use super::*;

fn role() -> RoleSpec {
    RoleSpec {
        name: "r".into(),
        target: "t".into(),
        description: " d ".into(),
        default_duration: None,
        max_duration: "240m".into(),
        requestable_by: vec!["group:dev".into(), "group:dev".into()],
        labels: Default::default(),
        approval: Some(ApprovalSpec {
            approvers: vec!["user:carol".into(), "group:approvers".into()],
            required: 1,
        }),
        approval_flow: None,
        max_total_duration: None,
        auto_approve: false,
        emergency_access: false,
        extension_requires_approval: true,
        grant: Default::default(),
    }
}

fn flow() -> ApprovalFlowSpec {
    ApprovalFlowSpec {
        name: "peer-then-security".into(),
        description: String::new(),
        pending_ttl: Some("120m".into()),
        stages: vec![
            hallpass_api::StageSpec {
                approvers: vec!["group:dev-leads".into()],
                required: 1,
                timeout: Some("900s".into()),
                escalate_to: vec!["group:security".into()],
            },
            hallpass_api::StageSpec {
                approvers: vec!["group:security".into()],
                required: 2,
                timeout: None,
                escalate_to: vec![],
            },
        ],
        distinct_approvers: true,
        allow_self_approval: false,
    }
}

#[test]
fn flows_normalise_and_carry_their_rules() {
    let (spec, rules) = normalize_flow(&flow()).unwrap();
    assert_eq!(spec.pending_ttl.as_deref(), Some("2h"));
    assert_eq!(spec.stages[0].timeout.as_deref(), Some("15m"));
    assert_eq!(rules.pending_ttl_seconds, 7200);
    assert_eq!(rules.stages[0].timeout_seconds, Some(900));
    assert_eq!(rules.total_required(), 3);
    let mut none = flow();
    none.pending_ttl = None;
    assert_eq!(
        normalize_flow(&none).unwrap().1.pending_ttl_seconds,
        DEFAULT_PENDING_TTL_SECONDS
    );
}

#[test]
fn broken_flows_are_refused_with_the_stage_named() {
    type Breaks = Box<dyn Fn(&mut ApprovalFlowSpec)>;
    let cases: Vec<(Breaks, &str)> = vec![
        (Box::new(|f| f.stages.clear()), "has no stage"),
        (
            Box::new(|f| f.stages[1].approvers.clear()),
            "stage 2, approvers is empty",
        ),
        (
            Box::new(|f| f.stages[1].required = 0),
            "stage 2, required must be between 1 and 100",
        ),
        (
            Box::new(|f| f.stages[0].timeout = None),
            "stage 1, escalate_to needs a timeout",
        ),
        (
            Box::new(|f| f.stages[0].escalate_to.clear()),
            "stage 1, timeout has no effect without escalate_to",
        ),
        (
            Box::new(|f| f.stages[0].timeout = Some("soon".into())),
            "stage 1, timeout",
        ),
        (
            Box::new(|f| f.stages[1].approvers = vec!["security".into()]),
            "stage 2, approvers",
        ),
        (Box::new(|f| f.pending_ttl = Some("0s".into())), "pending_ttl"),
    ];
    for (breaks, expected) in cases {
        let mut spec = flow();
        breaks(&mut spec);
        let error = normalize_flow(&spec).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidApprovalFlow, "{}", error.message);
        assert!(
            error.message.contains(expected),
            "{:?} lacks {expected:?}",
            error.message
        );
    }
}

#[test]
fn roles_choose_exactly_one_way_to_approve() {
    let mut named = role();
    named.approval = None;
    named.approval_flow = Some("peer-then-security".into());
    let rules = normalize_role(&named).unwrap().1;
    assert_eq!(rules.approval, RoleApproval::Named("peer-then-security".into()));
    let mut two = role();
    two.approval_flow = Some("x".into());
    assert!(normalize_role(&two).unwrap_err().message.contains("more than once"));
    let mut none = role();
    none.approval = None;
    assert!(normalize_role(&none).unwrap_err().message.contains("does not say"));
}

#[test]
fn normalises_to_a_canonical_form() {
    let (spec, rules) = normalize_role(&role()).unwrap();
    assert_eq!(
        (rules.default_duration_seconds, rules.max_duration_seconds),
        (3600, 14400)
    );
    assert_eq!(
        rules.max_total_duration_seconds,
        3 * 14400,
        "three times max_duration by default"
    );
    assert_eq!(spec.max_total_duration, None);
    assert_eq!(spec.max_duration, "4h");
    assert_eq!(spec.default_duration.as_deref(), Some("1h"));
    assert_eq!(spec.requestable_by, vec!["group:dev"]);
    assert_eq!(spec.approval.unwrap().approvers, vec!["group:approvers", "user:carol"]);
    assert_eq!(spec.description, "d");
}

#[test]
fn rejects_contradictions() {
    let mut both = role();
    both.auto_approve = true;
    assert_eq!(normalize_role(&both).unwrap_err().code, ErrorCode::InvalidRole);
    let mut long_default = role();
    long_default.default_duration = Some("5h".into());
    assert_eq!(
        normalize_role(&long_default).unwrap_err().code,
        ErrorCode::InvalidDuration
    );
    let mut zero = role();
    zero.approval = Some(ApprovalSpec {
        approvers: vec!["group:a".into()],
        required: 0,
    });
    assert_eq!(normalize_role(&zero).unwrap_err().code, ErrorCode::InvalidRole);
    let mut bad_subject = role();
    bad_subject.requestable_by = vec!["dev".into()];
    assert_eq!(
        normalize_role(&bad_subject).unwrap_err().code,
        ErrorCode::InvalidSubject
    );
}

#[test]
fn total_duration_is_at_least_the_maximum() {
    let mut short = role();
    short.max_total_duration = Some("1h".into());
    let error = normalize_role(&short).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidDuration);
    assert!(
        error.message.contains("shorter than max_duration 4h"),
        "{}",
        error.message
    );
    let mut day = role();
    day.max_total_duration = Some("1440m".into());
    let (document, rules) = normalize_role(&day).unwrap();
    assert_eq!(document.max_total_duration.as_deref(), Some("1d"));
    assert_eq!(rules.max_total_duration_seconds, 86_400);
}
