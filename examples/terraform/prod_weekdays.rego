package hallpass.request

import rego.v1

# Write access to production only on weekdays, unless it is break-glass.
deny contains "production write access only on weekdays (use --emergency if it cannot wait)" if {
	input.role.labels.env == "prod"
	input.context.weekday in {"Sat", "Sun"}
	not input.request.emergency
}
