package hallpass.request_test

import rego.v1

import data.hallpass.request

plan(changes) := object.union(
	{
		"sha256": "3f1c0e6a9b2d4c8e7f5a1b3c9d0e2f4a6b8c0d1e3f5a7b9c1d3e5f7a9b1c3e9f",
		"create": [], "update": [], "replace": [], "delete": [],
	},
	changes,
)

self_service_plan(changes) := object.union(base_input, {
	"role": {"labels": {"apply": "self-service"}},
	"request": {"plan": plan(changes)},
})

test_a_plan_that_destroys_nothing_is_approved_at_once if {
	request.auto_approve with input as self_service_plan({"create": ["terraform_data.a"], "update": ["aws_s3_bucket.logs"]})
}

test_a_plan_that_deletes_or_replaces_waits_for_approvers if {
	not request.auto_approve with input as self_service_plan({"delete": ["aws_s3_bucket.old"]})
	not request.auto_approve with input as self_service_plan({"replace": ["aws_instance.web"]})
}

test_requests_without_a_plan_are_not_approved_by_it if {
	self_service := object.union(base_input, {"role": {"labels": {"apply": "self-service"}}})
	not request.auto_approve with input as self_service
	not request.auto_approve with input as object.union(self_service, {"request": {"plan": null}})
}

test_other_roles_are_not_self_service if {
	not request.auto_approve with input as object.union(base_input, {"request": {"plan": plan({"create": ["x.y"]})}})
}

test_iam_changes_go_to_security if {
	request.approval_flow == "security" with input as self_service_plan({"update": ["aws_iam_role.deploy"]})
}

test_other_changes_keep_the_roles_flow if {
	not request.approval_flow with input as self_service_plan({"create": ["aws_s3_bucket.logs"]})
}
