# Write access to production must be traceable to a change or an incident, so
# a request for a prod write role must name a ticket.
package hallpass.request

import rego.v1

deny contains "prod write roles need a ticket: pass --ticket" if {
	input.role.labels.env == "prod"
	input.role.labels.access == "write"
	not prod_write_ticket_given
}

# A ticket that is null, missing or only blanks does not count.
prod_write_ticket_given if {
	is_string(input.request.ticket)
	trim_space(input.request.ticket) != ""
}
