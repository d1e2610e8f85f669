package hallpass.request_test

import rego.v1

import data.hallpass.request

contractor_input(weekday, hour) := object.union(base_input, {
	"principal": {"name": "carol", "groups": ["contractors"]},
	"context": {"weekday": weekday, "hour": hour},
})

test_contractor_is_capped_at_two_hours if {
	request.max_duration_seconds == {7200} with input as contractor_input("Wed", 10)
}

test_employee_has_no_cap if {
	count(request.max_duration_seconds) == 0 with input as base_input
}

test_contractor_in_working_hours_is_allowed if {
	count(request.deny) == 0 with input as contractor_input("Mon", 8)
	count(request.deny) == 0 with input as contractor_input("Fri", 17)
}

test_contractor_on_weekend_is_denied if {
	msg := "contractors may request access Mon-Fri, 08:00-18:00 UTC only (it is Sat 10:00 UTC)"
	msg in request.deny with input as contractor_input("Sat", 10)
}

test_contractor_outside_hours_is_denied if {
	count(request.deny) == 1 with input as contractor_input("Tue", 7)
	count(request.deny) == 1 with input as contractor_input("Tue", 18)
}

test_employee_at_night_is_allowed if {
	count(request.deny) == 0 with input as object.union(base_input, {"context": {"weekday": "Sun", "hour": 3}})
}
