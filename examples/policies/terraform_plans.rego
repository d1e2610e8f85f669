# Terraform plans (`hallpass terraform plan`): on roles labelled
# `apply = "self-service"`, a plan that destroys nothing (no deletions, no
# replacements) is approved at once, and any other goes to the role's
# approvers. On any role, a plan that creates or changes IAM resources goes
# to the `security` approval flow.
package hallpass.request

import rego.v1

plan_destroys if {
	count(input.request.plan.delete) + count(input.request.plan.replace) > 0
}

auto_approve if {
	input.role.labels.apply == "self-service"
	is_object(input.request.plan)
	not plan_destroys
}

approval_flow := "security" if {
	some address in array.concat(input.request.plan.create, input.request.plan.update)
	contains(address, "aws_iam_")
}
