package hallpass.request_test

import rego.v1

import data.hallpass.request

breakglass_msg := "break-glass is reserved for the sre group; ask for normal access instead"

emergency_input(groups) := object.union(base_input, {
	"principal": {"groups": groups},
	"request": {"emergency": true},
})

test_sre_may_break_glass if {
	count(request.deny) == 0 with input as emergency_input(["sre"])
}

test_others_may_not_break_glass if {
	breakglass_msg in request.deny with input as emergency_input(["dev", "oncall"])
}

test_normal_request_is_not_break_glass if {
	not breakglass_msg in request.deny with input as base_input
}
