# Contractors get short grants, and only while the team that answers for them
# is at work: weekdays, 08:00 to 18:00 UTC.
package hallpass.request

import rego.v1

contractor_max_seconds := 7200

contractor_days := {"Mon", "Tue", "Wed", "Thu", "Fri"}

contractor_first_hour := 8

contractor_end_hour := 18

is_contractor if "contractors" in input.principal.groups

# A cap, not a refusal: the server refuses longer requests and shortens the
# default duration to it. Other files may add their own caps; the lowest wins.
max_duration_seconds contains contractor_max_seconds if is_contractor

deny contains msg if {
	is_contractor
	not contractor_working_hours
	msg := sprintf(
		"contractors may request access Mon-Fri, %02d:00-%02d:00 UTC only (it is %s %02d:00 UTC)",
		[contractor_first_hour, contractor_end_hour, input.context.weekday, input.context.hour],
	)
}

contractor_working_hours if {
	input.context.weekday in contractor_days
	input.context.hour >= contractor_first_hour
	input.context.hour < contractor_end_hour
}
