# Break-glass (`hallpass request --emergency`) skips approval, so only the SRE
# team, who are trained and audited for it, may use it.
package hallpass.request

import rego.v1

deny contains "break-glass is reserved for the sre group; ask for normal access instead" if {
	input.request.emergency == true
	not "sre" in input.principal.groups
}
