package hallpass.request_test

import rego.v1

import data.hallpass.request

# A weekday request from an engineer with no special groups; each test
# changes only what it is about.
base_input := {
	"principal": {"name": "alice", "kind": "user", "groups": ["dev"]},
	"role": {
		"name": "staging-db",
		"target": "staging-pg",
		"target_type": "postgres",
		"max_duration_seconds": 14400,
		"labels": {"env": "staging", "access": "read"},
	},
	"request": {
		"duration_seconds": 3600,
		"reason": "debugging INC-1",
		"ticket": null,
		"emergency": false,
		"extension": false,
		"scheduled_start": null,
	},
	"context": {"now": "2026-11-18T10:00:00Z", "weekday": "Wed", "hour": 10, "active_grants": 0},
}

oncall_input(seconds) := object.union(base_input, {
	"principal": {"groups": ["dev", "oncall"]},
	"request": {"duration_seconds": seconds},
})

test_oncall_up_to_one_hour_is_auto_approved if {
	request.auto_approve with input as oncall_input(3600)
	request.auto_approve with input as oncall_input(900)
}

test_oncall_longer_than_one_hour_goes_through_the_flow if {
	not request.auto_approve with input as oncall_input(3601)
	count(request.deny) == 0 with input as oncall_input(7200)
}

test_oncall_extension_up_to_one_hour_is_auto_approved if {
	request.auto_approve with input as object.union(oncall_input(1800), {"request": {"extension": true}})
}

test_not_oncall_is_not_auto_approved if {
	not request.auto_approve with input as base_input
}
