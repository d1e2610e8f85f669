//! Acceptance tests of `ephemeral "hallpass_credentials"` with the real
//! `terraform`: a pipeline's non-admin token gets admin rights just in time
//! from a `hallpass` target, a second provider instance uses them to manage
//! a role, the grant is released when Terraform closes the resource, and
//! the credential is written to neither the state nor the saved plan.

#[allow(dead_code)]
mod support;

use serde_json::json;
use support::{HallpassServer, Workspace, terraform};

/// The world: a `hallpass` target, an auto-approved role on it granting
/// `admins`, a role that needs an admin's approval, both requestable by
/// the group `ci`; returns the token of `pipeline@example.com` (group
/// `ci`, not an admin).
fn world(server: &HallpassServer) -> String {
    let put = |path: &str, body: serde_json::Value| {
        let (status, answer) = server.call("PUT", path, Some(&body));
        assert_eq!(status, 200, "PUT {path}: {answer}");
    };
    put(
        "/v1/targets/hallpass",
        json!({ "name": "hallpass", "type": "hallpass" }),
    );
    put(
        "/v1/roles/pipeline-admin",
        json!({
            "name": "pipeline-admin", "target": "hallpass", "max_duration": "1h",
            "requestable_by": ["group:ci"], "auto_approve": true, "grant": { "groups": ["admins"] },
        }),
    );
    put(
        "/v1/roles/gated-admin",
        json!({
            "name": "gated-admin", "target": "hallpass", "max_duration": "1h",
            "requestable_by": ["group:ci"], "approval": { "approvers": ["group:admins"], "required": 1 },
            "grant": { "groups": ["admins"] },
        }),
    );
    let (status, created) = server.call(
        "POST",
        "/v1/tokens",
        Some(&json!({ "principal": "pipeline@example.com", "groups": ["ci"] })),
    );
    assert_eq!(status, 201, "POST /v1/tokens: {created}");
    let created: serde_json::Value = serde_json::from_str(&created).expect("JSON");
    created["token"].as_str().expect("a token").to_string()
}

const MAIN_TF: &str = r#"
terraform {
  required_providers {
    hallpass = { source = "hallpass/hallpass" }
  }
}

# The pipeline's own token (HALLPASS_TOKEN): it may only request roles.
provider "hallpass" {
  address = "ADDRESS"
}

ephemeral "hallpass_credentials" "admin" {
  role     = "ROLE"
  reason   = "terraform run of the access configuration"
  duration = "15m"
  TIMEOUT
}

provider "hallpass" {
  alias   = "admin"
  address = "ADDRESS"
  token   = ephemeral.hallpass_credentials.admin.token
}

resource "hallpass_role" "deploy" {
  provider       = hallpass.admin
  name           = "deploy"
  target         = "hallpass"
  max_duration   = "30m"
  requestable_by = ["group:ci"]
  auto_approve   = true
  grant          = { groups = ["ops"] }
}

# Keeps the apply's credential for the test to check, outside Terraform's
# files (provisioners may use ephemeral values).
resource "terraform_data" "probe" {
  provisioner "local-exec" {
    command     = "printf '%s' \"$T\" > credential.txt"
    environment = { T = ephemeral.hallpass_credentials.admin.token }
  }
}
"#;

fn main_tf(server: &HallpassServer, role: &str, timeout: Option<&str>) -> String {
    MAIN_TF.replace("ADDRESS", &server.addr).replace("ROLE", role).replace(
        "TIMEOUT",
        &timeout.map(|t| format!("timeout  = {t:?}")).unwrap_or_default(),
    )
}

/// The pipeline's requests for `role`, newest first.
fn requests(server: &HallpassServer, token: &str, role: &str) -> Vec<serde_json::Value> {
    let (status, body) = server.call_as(token, "GET", "/v1/requests?mine=true", None);
    assert_eq!(status, 200, "GET /v1/requests: {body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    list.as_array()
        .expect("a list")
        .iter()
        .filter(|r| r["role"] == role)
        .cloned()
        .collect()
}

#[test]
fn ephemeral_admin_credentials_manage_a_role_and_are_released_unstored() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let pipeline = world(&server);
    // The pipeline's own token cannot manage roles.
    let (status, _) = server.call_as(
        &pipeline,
        "PUT",
        "/v1/roles/deploy",
        Some(&json!({ "name": "deploy", "target": "hallpass", "max_duration": "30m", "auto_approve": true })),
    );
    assert_eq!(status, 403, "a non-admin token may not write roles");

    let workspace = Workspace::new(&terraform, &main_tf(&server, "pipeline-admin", None));
    let env = [("HALLPASS_TOKEN", pipeline.as_str())];
    let plan = workspace.run(&["plan", "-input=false", "-no-color", "-out=tfplan"], &env);
    plan.assert_success("terraform plan");
    assert!(
        plan.stdout.contains("hallpass_role.deploy will be created"),
        "{}",
        plan.stdout
    );
    // The plan's grant was released when Terraform closed the resource.
    let after_plan = requests(&server, &pipeline, "pipeline-admin");
    assert_eq!(after_plan.len(), 1, "{after_plan:?}");
    assert_eq!(after_plan[0]["state"], "released", "{}", after_plan[0]);

    let apply = workspace.run(&["apply", "-input=false", "-no-color", "tfplan"], &env);
    apply.assert_success("terraform apply");
    let (status, role) = server.call("GET", "/v1/roles/deploy", None);
    assert_eq!(status, 200, "the admin provider created the role: {role}");
    let role: serde_json::Value = serde_json::from_str(&role).expect("JSON");
    assert_eq!(role["grant"], json!({ "groups": ["ops"] }));

    // Close ran: the apply's grant is released, its token refused.
    let grants = requests(&server, &pipeline, "pipeline-admin");
    assert_eq!(grants.len(), 2, "one grant for the plan, one for the apply: {grants:?}");
    for grant in &grants {
        assert_eq!(grant["state"], "released", "{grant}");
    }
    let credential = workspace.read("credential.txt");
    assert!(
        credential.starts_with("hp_"),
        "the provisioner saw the token: {credential:?}"
    );
    let (status, refused) = server.call_as(&credential, "GET", "/v1/whoami", None);
    assert_eq!(status, 401, "the released grant's token is refused: {refused}");

    // Neither the state nor the saved plan holds it.
    let state = workspace.read("terraform.tfstate");
    assert!(state.contains("hallpass_role"), "a state was written");
    assert!(!state.contains(&credential), "the credential is in terraform.tfstate");
    let show = workspace.run(&["show", "-json", "-no-color", "tfplan"], &env);
    show.assert_success("terraform show -json tfplan");
    assert!(show.stdout.contains("hallpass_credentials"), "{}", show.stdout);
    assert!(
        !show.stdout.contains(&credential),
        "the credential is in the saved plan"
    );
    assert!(!show.stdout.contains("hp_"), "a token is in the saved plan");
    assert!(!state.contains("hp_"), "a token is in terraform.tfstate");

    // The plan now shows no changes (and again opens and releases a grant).
    let again = workspace.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode"], &env);
    assert_eq!(
        again.code,
        Some(0),
        "no changes expected:\n{}\n{}",
        again.stdout,
        again.stderr
    );
    let grants = requests(&server, &pipeline, "pipeline-admin");
    assert!(grants.iter().all(|g| g["state"] == "released"), "{grants:?}");
}

#[test]
fn terraform_renews_while_the_run_lasts_and_the_grant_is_re_read() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let pipeline = world(&server);
    // A one-minute grant: Terraform renews at 30 s, while the provisioner
    // still runs; `extend = false`: Renew only re-reads.
    let config = main_tf(&server, "pipeline-admin", None)
        .replace("duration = \"15m\"", "duration = \"1m\"\n  extend   = false")
        .replace("> credential.txt", "> credential.txt; sleep 33");
    let workspace = Workspace::new(&terraform, &config);
    let env = [("HALLPASS_TOKEN", pipeline.as_str())];
    let apply = workspace.run(&["apply", "-auto-approve", "-input=false", "-no-color"], &env);
    apply.assert_success("terraform apply");
    assert!(
        workspace.log().contains("renewal: the grant is still active"),
        "Terraform called Renew"
    );
    let grants = requests(&server, &pipeline, "pipeline-admin");
    assert!(grants.iter().all(|g| g["state"] == "released"), "{grants:?}");
}

#[test]
fn a_grant_near_its_end_is_extended_at_renewal_and_released() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let pipeline = world(&server);
    let (status, answer) = server.call(
        "PUT",
        "/v1/roles/pipeline-extend",
        Some(&json!({
            "name": "pipeline-extend", "target": "hallpass", "max_duration": "1h",
            "requestable_by": ["group:ci"], "auto_approve": true, "extension_requires_approval": false,
            "grant": { "groups": ["admins"] },
        })),
    );
    assert_eq!(status, 200, "{answer}");
    // A one-minute grant and a run of 33 s: at the renewal (30 s left,
    // under the margin) the grant is extended by a minute.
    let config = main_tf(&server, "pipeline-extend", None)
        .replace("duration = \"15m\"", "duration = \"1m\"")
        .replace("> credential.txt", "> credential.txt; sleep 33");
    let workspace = Workspace::new(&terraform, &config);
    let env = [("HALLPASS_TOKEN", pipeline.as_str())];
    let apply = workspace.run(&["apply", "-auto-approve", "-input=false", "-no-color"], &env);
    apply.assert_success("terraform apply");
    assert!(
        workspace.log().contains("renewal: extended the grant"),
        "Terraform called Renew, which extended the grant"
    );
    // One grant for the plan phase, one (newest, the long one) for the apply.
    let grants = requests(&server, &pipeline, "pipeline-extend");
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert!(grants.iter().all(|g| g["state"] == "released"), "{grants:?}");
    let id = grants[0]["id"].as_str().expect("an id");
    let (status, grant) = server.call("GET", &format!("/v1/requests/{id}"), None);
    assert_eq!(status, 200, "{grant}");
    let grant: serde_json::Value = serde_json::from_str(&grant).expect("JSON");
    assert_eq!(grant["state"], "released", "Close released it: {grant}");
    let extensions = grant["extensions"].as_array().expect("extensions");
    assert_eq!(extensions.len(), 1, "one extension: {grant}");
    assert_eq!(extensions[0]["state"], "approved", "{grant}");
    assert_eq!(extensions[0]["by_seconds"], 60, "{grant}");
    assert_eq!(
        extensions[0]["reason"], "terraform run of the access configuration (extended by Terraform)",
        "{grant}"
    );
}

#[test]
fn a_grant_the_pipeline_already_held_is_used_and_not_released() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let pipeline = world(&server);
    let (status, held) = server.call_as(
        &pipeline,
        "POST",
        "/v1/requests",
        Some(&json!({ "role": "pipeline-admin", "reason": "held before the run", "duration": "5m" })),
    );
    assert_eq!(status, 201, "{held}");
    let held: serde_json::Value = serde_json::from_str(&held).expect("JSON");
    assert_eq!(held["state"], "active", "{held}");

    let workspace = Workspace::new(&terraform, &main_tf(&server, "pipeline-admin", None));
    let env = [("HALLPASS_TOKEN", pipeline.as_str())];
    let apply = workspace.run(&["apply", "-auto-approve", "-input=false", "-no-color"], &env);
    apply.assert_success("terraform apply");
    // The run asked for 15m: the server extended the held grant (the role
    // is auto-approved) rather than making a second one.
    let grants = requests(&server, &pipeline, "pipeline-admin");
    assert_eq!(grants.len(), 1, "no new request: {grants:?}");
    assert_eq!(grants[0]["id"], held["id"]);
    assert_eq!(grants[0]["state"], "active", "the run left it as it found it");
}

#[test]
fn a_request_that_needs_approval_times_out_with_a_clear_diagnostic_and_is_cancelled() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let pipeline = world(&server);
    let workspace = Workspace::new(&terraform, &main_tf(&server, "gated-admin", Some("3s")));
    let env = [("HALLPASS_TOKEN", pipeline.as_str())];
    let plan = workspace.run(&["plan", "-input=false", "-no-color"], &env);
    assert!(!plan.success, "the plan should fail:\n{}", plan.stdout);
    let words = plan.stderr_words();
    assert!(
        words.contains("Error: Timed out waiting for approval of role \"gated-admin\""),
        "{words}"
    );
    assert!(words.contains("was still pending after 3s"), "{words}");
    assert!(words.contains("approvers: group:admins"), "{words}");
    let requests = requests(&server, &pipeline, "gated-admin");
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["state"], "cancelled", "the waiting request was withdrawn");
}

#[test]
fn a_denied_request_shows_the_servers_decision() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let pipeline = world(&server);
    let policy = "package hallpass.request\n\nimport rego.v1\n\ndeny contains msg if {\n\tinput.role.name == \"gated-admin\"\n\tmsg := \"pipelines may not hold gated-admin\"\n}\n";
    let (status, answer) = server.call("PUT", "/v1/policies/no-gated", Some(&json!({ "source": policy })));
    assert_eq!(status, 200, "{answer}");
    let workspace = Workspace::new(&terraform, &main_tf(&server, "gated-admin", Some("30s")));
    let env = [("HALLPASS_TOKEN", pipeline.as_str())];
    let plan = workspace.run(&["plan", "-input=false", "-no-color"], &env);
    assert!(!plan.success, "the plan should fail:\n{}", plan.stdout);
    let words = plan.stderr_words();
    assert!(words.contains("Error: No access to role \"gated-admin\""), "{words}");
    assert!(words.contains("was denied by policy"), "{words}");
    assert!(words.contains("pipelines may not hold gated-admin"), "{words}");
}
