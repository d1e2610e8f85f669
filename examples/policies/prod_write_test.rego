package hallpass.request_test

import rego.v1

import data.hallpass.request

prod_write_msg := "prod write roles need a ticket: pass --ticket"

prod_write_input(ticket) := object.union(base_input, {
	"role": {"name": "prod-db-write", "labels": {"env": "prod", "access": "write"}},
	"request": {"ticket": ticket},
})

test_prod_write_without_ticket_is_denied if {
	prod_write_msg in request.deny with input as prod_write_input(null)
}

test_prod_write_with_blank_ticket_is_denied if {
	prod_write_msg in request.deny with input as prod_write_input("  ")
}

test_prod_write_with_ticket_is_allowed if {
	count(request.deny) == 0 with input as prod_write_input("CHG-1234")
}

test_prod_read_needs_no_ticket if {
	read := object.union(prod_write_input(null), {"role": {"labels": {"access": "read"}}})
	count(request.deny) == 0 with input as read
}

test_staging_write_needs_no_ticket if {
	staging := object.union(prod_write_input(null), {"role": {"labels": {"env": "staging"}}})
	count(request.deny) == 0 with input as staging
}
