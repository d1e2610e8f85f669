# Hallpass's access configuration for the orders database, managed with
# Terraform, by a pipeline that holds no standing admin rights: it asks for
# the `hallpass-admin` role just in time (ephemeral "hallpass_credentials")
# and hands the short-lived admin token to a second provider instance.
# See README.md.

terraform {
  required_version = ">= 1.11"
  required_providers {
    hallpass = {
      source = "hallpass/hallpass"
    }
  }
}

variable "hallpass_address" {
  type        = string
  description = "The Hallpass API, e.g. https://hallpass.example.com."
}

variable "orders_db_admin_password" {
  type        = string
  description = "Password of the database user Hallpass creates logins with."
  sensitive   = true
  ephemeral   = true
}

variable "orders_db_password_version" {
  type        = number
  description = "Bump to send a changed orders_db_admin_password (write-only, never stored)."
  default     = 1
}

variable "orders_bot_signing_secret" {
  type        = string
  description = "Key that signs the orders bot's notifications: whsec_ and base64 of 32 random bytes."
  sensitive   = true
  ephemeral   = true
}

variable "orders_bot_secret_version" {
  type        = number
  description = "Bump to send a changed orders_bot_signing_secret (write-only, never stored)."
  default     = 1
}

# The pipeline's own identity (HALLPASS_TOKEN, e.g. exchanged from the CI
# system's OIDC token): it may request roles, nothing more.
provider "hallpass" {
  address = var.hallpass_address
}

# Admin rights for this run only. Requested in each phase that needs them
# (plan, apply), released when Terraform is done with them; the token is
# never written to the plan or the state.
ephemeral "hallpass_credentials" "admin" {
  role     = "hallpass-admin"
  reason   = "terraform: access configuration of the orders database"
  duration = "30m"
  timeout  = "15m"
}

provider "hallpass" {
  alias   = "admin"
  address = var.hallpass_address
  token   = ephemeral.hallpass_credentials.admin.token
}

resource "hallpass_target" "orders_db" {
  provider = hallpass.admin
  name     = "orders-db"
  type     = "postgres"
  config = {
    host     = "orders-db.internal"
    port     = 5432
    database = "orders"
    username = "hallpass_admin"
  }
  # Write-only: sent to Hallpass, never stored by Terraform.
  secrets         = { password = var.orders_db_admin_password }
  secrets_version = var.orders_db_password_version
}

resource "hallpass_approval_flow" "db_write" {
  provider    = hallpass.admin
  name        = "orders-db-write"
  pending_ttl = "4h"

  stage {
    approvers   = ["group:orders-leads"]
    required    = 1
    timeout     = "30m"
    escalate_to = ["group:sre"]
  }
}

resource "hallpass_role" "orders_read" {
  provider       = hallpass.admin
  name           = "orders-read"
  target         = hallpass_target.orders_db.name
  max_duration   = "8h"
  requestable_by = ["group:engineering"]
  auto_approve   = true
  grant          = { roles = ["app_read"], connection_limit = 2 }
}

resource "hallpass_role" "orders_write" {
  provider       = hallpass.admin
  name           = "orders-write"
  target         = hallpass_target.orders_db.name
  max_duration   = "2h"
  requestable_by = ["group:orders"]
  approval_flow  = hallpass_approval_flow.db_write.name
  labels         = { env = "prod" }
  grant          = { roles = ["app_write"], connection_limit = 1 }
}

# Tells the orders team's bot about write requests waiting for approval
# and their outcome, as signed webhook calls.
resource "hallpass_notifier" "orders_bot" {
  provider = hallpass.admin
  name     = "orders-bot"
  type     = "webhook"
  config = {
    url             = "https://orders-bot.internal/hallpass"
    timeout_seconds = 5
    roles           = [hallpass_role.orders_write.name]
    topics          = ["request.pending", "request.approved", "request.denied", "grant.expiring"]
    expiry_warning  = "15m"
  }
  # Write-only, like the target's password.
  secrets         = { signing_secret = var.orders_bot_signing_secret }
  secrets_version = var.orders_bot_secret_version
}

resource "hallpass_policy" "prod_weekdays" {
  provider = hallpass.admin
  name     = "prod-weekdays"
  source   = file("${path.module}/prod_weekdays.rego")
}

# A service principal for the nightly report job; its token goes to the
# job's secret store (shown once: `terraform output -raw report_job_token`).
resource "hallpass_token" "report_job" {
  provider  = hallpass.admin
  principal = "svc-report@example.com"
  groups    = ["engineering"]
  ttl       = "720h"
}

output "report_job_token" {
  value     = hallpass_token.report_job.token
  sensitive = true
}
