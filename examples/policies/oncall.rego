# On-call engineers may give themselves short access without waiting for an
# approver: whoever carries the pager needs to act before anyone can approve.
# Longer requests from on-call are not refused; they go through the role's
# normal approval flow like anyone else's.
package hallpass.request

import rego.v1

# The longest request (or extension) on-call may approve for themselves.
oncall_self_serve_seconds := 3600

auto_approve if {
	"oncall" in input.principal.groups
	input.request.duration_seconds <= oncall_self_serve_seconds
}
