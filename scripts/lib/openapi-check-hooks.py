"""Schemathesis hooks for scripts/lib/openapi-check.

Schemathesis's `positive_data_acceptance` check fails any schema-valid
request the server refuses with 400. Most of Hallpass's 400s are for values
the OpenAPI document does describe (names, subjects, durations, free text,
limits): those must never appear for schema-valid input, and this file
keeps that check for them. A few rules cannot be written in JSON Schema:
they depend on other fields of the same body, on what is stored, on the
clock, or on a Rego compiler. For exactly those, a 400 with the listed
error code (and, where the code is shared with describable rules, a message
fragment) is accepted. Every entry says why.

The built-in check is switched off in openapi-check.toml and runs from here,
unchanged, for everything else.
"""

import json

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance as builtin_positive_data_acceptance

# (operation label, error code, message fragment or None): why.
SCHEMA_CANNOT_SAY = {
    # Cross-field and stored-state rules of the access configuration.
    ("PUT /v1/roles/{name}", "invalid_role", "how requests are approved"): (
        "exactly one of `approval`, `approval_flow`, `auto_approve: true` (a rule across three fields)"
    ),
    ("PUT /v1/roles/{name}", "invalid_duration", "than max_duration"): (
        "default_duration <= max_duration <= max_total_duration compares fields"
    ),
    ("PUT /v1/roles/{name}", "unknown_target", None): "the target must already exist",
    ("PUT /v1/roles/{name}", "unknown_approval_flow", None): "the approval flow must already exist",
    ("PUT /v1/approval-flows/{name}", "invalid_approval_flow", "escalate_to"): (
        "a stage's `timeout` and `escalate_to` are given together or not at all (a rule across two fields)"
    ),
    ("PUT /v1/targets/{name}", "invalid_target_config", None): (
        "settings and secrets depend on the target type and are checked by its provider"
    ),
    ("PUT /v1/policies/{name}", "policy_compile_error", None): "only a Rego compiler can say whether source compiles",
    ("PUT /v1/policies/{name}", "invalid_policy", "bytes"): "the size limit is in UTF-8 bytes; maxLength counts characters",
    ("PUT /v1/notifiers/{name}", "invalid_notifier_config", None): (
        "settings and secrets depend on the notifier type and are checked by it"
    ),
    # The URL names the thing and so does the body; they must agree.
    ("PUT /v1/targets/{name}", "name_mismatch", None): "the body's name must equal the path's",
    ("PUT /v1/notifiers/{name}", "name_mismatch", None): "the body's name must equal the path's",
    ("PUT /v1/roles/{name}", "name_mismatch", None): "the body's name must equal the path's",
    ("PUT /v1/approval-flows/{name}", "name_mismatch", None): "the body's name must equal the path's",
    # `apply` takes all of the above at once, and more than one of each.
    ("POST /v1/apply", "invalid_role", "how requests are approved"): "as for PUT /v1/roles/{name}",
    ("POST /v1/apply", "invalid_duration", "than max_duration"): "as for PUT /v1/roles/{name}",
    ("POST /v1/apply", "unknown_target", None): "a role's target must exist or be in the same apply",
    ("POST /v1/apply", "unknown_approval_flow", None): "a role's flow must exist or be in the same apply",
    ("POST /v1/apply", "invalid_approval_flow", "escalate_to"): "as for PUT /v1/approval-flows/{name}",
    ("POST /v1/apply", "invalid_target_config", None): "as for PUT /v1/targets/{name}",
    ("POST /v1/apply", "invalid_notifier_config", None): "as for PUT /v1/notifiers/{name}",
    ("POST /v1/apply", "policy_compile_error", None): "as for PUT /v1/policies/{name}",
    ("POST /v1/apply", "invalid_policy", "bytes"): "as for PUT /v1/policies/{name}",
    ("POST /v1/apply", "duplicate", None): "names must be unique within each list (uniqueItems cannot look at one field)",
    # Requests and extensions are checked against the role and the clock.
    ("POST /v1/requests", "duration_above_max", None): "the longest duration is the role's, not the document's",
    ("POST /v1/requests", "total_duration_above_max", None): "a held grant's extension is bounded by the role",
    ("POST /v1/requests", "emergency_scheduled", None): (
        "`emergency: true` and `scheduled_start` exclude each other (a rule across two fields)"
    ),
    ("POST /v1/requests", "invalid_start", None): "`scheduled_start` must lie in the future, which moves",
    ("POST /v1/requests", "invalid_public_key", None): (
        "whether `ssh_public_key` is taken, and which key types, depends on the role's target type"
    ),
    ("POST /v1/requests", "invalid_plan", "resource changes"): (
        "a plan's limit counts its four address lists together (maxItems bounds each one)"
    ),
    ("POST /v1/requests/{id}/extend", "duration_above_max", None): "as for POST /v1/requests",
    ("POST /v1/requests/{id}/extend", "total_duration_above_max", None): "as for POST /v1/requests",
    # Names Hallpass records its own actions under.
    ("POST /v1/tokens", "reserved_name", None): "a few valid names are reserved; JSON Schema has no 'not' here",
    # Pagination cursors are opaque.
    ("GET /v1/requests", "invalid_cursor", None): "only a value the server handed out in x-next-cursor is a cursor",
    ("GET /v1/grants", "invalid_cursor", None): "only a value the server handed out in x-next-cursor is a cursor",
}


def _error(response):
    try:
        detail = json.loads(response.content)["error"]
        return detail.get("code"), detail.get("message", "")
    except (ValueError, KeyError, TypeError):
        return None, ""


def _documented(label, response):
    if response.status_code != 400:
        return False
    code, message = _error(response)
    return any(
        op == label and want == code and (fragment is None or fragment in message)
        for (op, want, fragment) in SCHEMA_CANNOT_SAY
    )


@schemathesis.check
def positive_data_acceptance_documented(ctx, response, case):
    """positive_data_acceptance, with the exceptions listed in SCHEMA_CANNOT_SAY."""
    try:
        return builtin_positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if _documented(case.operation.label, response):
            return None
        raise
