//! Acceptance tests: the real `terraform` binary runs the provider built
//! from this source (through `dev_overrides`, no `terraform init`) against
//! a live `hallpass server --dev`.
//!
//! Terraform is looked for on the PATH. Without it the Terraform tests are
//! skipped with a note, except under `CI=true`, where that is a failure.

#[allow(dead_code)]
mod support;

use std::process::{Command, Stdio};

use support::{HallpassServer, Workspace, run_provider_by_hand, terraform};

const MAIN_TF: &str = r#"
terraform {
  required_providers {
    hallpass = { source = "hallpass/hallpass" }
  }
}

provider "hallpass" {
  address = "ADDRESS"
}

data "hallpass_audit_public_key" "k" {}

output "key_id" {
  value = data.hallpass_audit_public_key.k.key_id
}

output "pem" {
  value = data.hallpass_audit_public_key.k.pem
}

output "jwk" {
  value = jsondecode(data.hallpass_audit_public_key.k.jwk)
}
"#;

#[test]
fn the_audit_public_key_data_source_reads_what_the_server_serves() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let expected = server.get_json("/v1/audit/public-key");

    let workspace = Workspace::new(&terraform, &MAIN_TF.replace("ADDRESS", &server.addr));
    let plan = workspace.run(
        &["plan", "-input=false", "-no-color"],
        &[("HALLPASS_TOKEN", support::ROOT_TOKEN)],
    );
    plan.assert_success("terraform plan");
    assert!(
        plan.stdout.contains("key_id"),
        "the plan shows the outputs:\n{}",
        plan.stdout
    );

    let apply = workspace.run(
        &["apply", "-auto-approve", "-input=false", "-no-color"],
        &[("HALLPASS_TOKEN", support::ROOT_TOKEN)],
    );
    apply.assert_success("terraform apply");

    let output = workspace.run(&["output", "-json", "-no-color"], &[]);
    output.assert_success("terraform output");
    let outputs: serde_json::Value = serde_json::from_str(&output.stdout).expect("terraform output -json is JSON");
    assert_eq!(outputs["key_id"]["value"], expected["key_id"]);
    assert_eq!(outputs["pem"]["value"], expected["pem"]);
    assert_eq!(outputs["jwk"]["value"], expected["jwk"]);
    assert!(expected["pem"].as_str().is_some_and(|pem| pem.contains("PUBLIC KEY")));

    // Every provider process left on Terraform's request, none was killed
    // after the 2 s grace.
    let log = workspace.log();
    assert!(log.contains("plugin exited"), "no provider process in the log");
    assert!(
        !log.contains("plugin failed to exit gracefully"),
        "a provider had to be killed"
    );
    // go-plugin races its own stdout reader against the exit of a plugin
    // that leaves promptly ("read |0: file already closed"): that line is
    // Terraform's, not a provider error.
    let errors: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("[ERROR]") && !line.contains("error encountered while scanning stdout"))
        .collect();
    assert!(errors.is_empty(), "errors in Terraform's log:\n{}", errors.join("\n"));
}

#[test]
fn plaintext_when_terraform_turns_plugin_tls_off() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let workspace = Workspace::new(&terraform, &MAIN_TF.replace("ADDRESS", &server.addr));
    let plan = workspace.run(
        &["plan", "-input=false", "-no-color"],
        &[("HALLPASS_TOKEN", support::ROOT_TOKEN), ("TF_DISABLE_PLUGIN_TLS", "1")],
    );
    plan.assert_success("terraform plan without plugin TLS");
}

#[test]
fn a_provider_block_without_address_fails_the_plan_with_the_way_out() {
    let Some(terraform) = terraform() else { return };
    let config = MAIN_TF.replace("  address = \"ADDRESS\"\n", "");
    let workspace = Workspace::new(&terraform, &config);
    let plan = workspace.run(
        &["plan", "-input=false", "-no-color"],
        &[("HALLPASS_TOKEN", "hp_whatever")],
    );
    assert!(!plan.success, "the plan should fail:\n{}", plan.stdout);
    assert!(
        plan.stderr.contains("Error: Missing Hallpass address"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr_words()
            .contains("set `address` in the `provider \"hallpass\"` block or the HALLPASS_ADDR environment variable"),
        "{}",
        plan.stderr
    );
    // The token came from the environment: only the address is missing.
    assert!(!plan.stderr.contains("Missing Hallpass token"), "{}", plan.stderr);
}

#[test]
fn an_invalid_address_is_reported_at_the_attribute() {
    let Some(terraform) = terraform() else { return };
    let workspace = Workspace::new(&terraform, &MAIN_TF.replace("ADDRESS", "ftp://hallpass.example.com"));
    let validate = workspace.run(&["validate", "-no-color"], &[]);
    assert!(!validate.success, "validate should fail:\n{}", validate.stdout);
    assert!(
        validate.stderr.contains("Error: Invalid Hallpass address"),
        "{}",
        validate.stderr
    );
    assert!(
        validate.stderr_words().contains("the scheme must be http or https"),
        "{}",
        validate.stderr
    );
    // Terraform quotes the attribute's line when the diagnostic has a path.
    assert!(
        validate.stderr.contains("address = \"ftp://hallpass.example.com\""),
        "{}",
        validate.stderr
    );
}

#[test]
fn an_unreachable_server_fails_the_read_with_a_diagnostic() {
    let Some(terraform) = terraform() else { return };
    // A port nothing listens on.
    let addr = format!("http://127.0.0.1:{}", support::free_port());
    let workspace = Workspace::new(&terraform, &MAIN_TF.replace("ADDRESS", &addr));
    let plan = workspace.run(
        &["plan", "-input=false", "-no-color"],
        &[("HALLPASS_TOKEN", "hp_whatever")],
    );
    assert!(!plan.success);
    assert!(
        plan.stderr.contains("Cannot read the Hallpass audit public key"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr_words().contains("cannot reach Hallpass at"),
        "{}",
        plan.stderr
    );
}

#[test]
fn ca_file_names_the_ca_to_trust() {
    let Some(terraform) = terraform() else { return };
    let (server, ca_pem) = HallpassServer::start_tls();
    let token = [("HALLPASS_TOKEN", support::ROOT_TOKEN)];
    let plan = ["plan", "-input=false", "-no-color"];

    // The public web CAs do not know this server's CA.
    let public_roots = Workspace::new(&terraform, &MAIN_TF.replace("ADDRESS", &server.addr));
    let refused = public_roots.run(&plan, &token);
    assert!(!refused.success, "{}", refused.stdout);
    assert!(refused.stderr_words().contains("UnknownIssuer"), "{}", refused.stderr);

    let with_ca = MAIN_TF.replace(
        "  address = \"ADDRESS\"\n",
        &format!("  address = \"{}\"\n  ca_file = \"ca.pem\"\n", server.addr),
    );
    let trusted = Workspace::new(&terraform, &with_ca);
    trusted.write("ca.pem", &ca_pem);
    trusted.run(&plan, &token).assert_success("terraform plan with ca_file");

    trusted.write("ca.pem", "not a certificate");
    let unusable = trusted.run(&plan, &token);
    assert!(!unusable.success);
    assert!(
        unusable.stderr.contains("Error: Unusable CA file"),
        "{}",
        unusable.stderr
    );
    assert!(unusable.stderr.contains("ca_file = \"ca.pem\""), "{}", unusable.stderr);
}

#[test]
fn run_by_hand_the_binary_explains_what_it_is() {
    let output = run_provider_by_hand();
    assert!(!output.status.success());
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout, where Terraform expects the handshake"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is a Terraform provider plugin"), "{stderr}");
    assert!(stderr.contains("not meant to be run by hand"), "{stderr}");
}

#[test]
fn the_handshake_line_and_sigint() {
    // Started the way Terraform starts it, with TLS off (no client
    // certificate needed); killed at the end since nothing sends Shutdown.
    let mut child = Command::new(support::provider_bin())
        .env(support::COOKIE_KEY, support::COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env("TF_DISABLE_PLUGIN_TLS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the provider");
    let line = support::first_line(&mut child);
    let fields: Vec<&str> = line.split('|').collect();
    assert_eq!(fields.len(), 6, "{line}");
    assert_eq!(&fields[..3], ["1", "6", "tcp"], "{line}");
    assert!(fields[3].starts_with("127.0.0.1:"), "{line}");
    assert_eq!(&fields[4..], ["grpc", ""], "{line}");

    // Ctrl-C is Terraform's to handle: the provider lives on.
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(interrupted.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(child.try_wait().expect("wait").is_none(), "SIGINT ended the provider");
    child.kill().expect("kill the provider");
    let _ = child.wait();
}

const ROLE_TF: &str = r#"
terraform {
  required_providers {
    hallpass = { source = "hallpass/hallpass" }
  }
}

provider "hallpass" {
  address = "ADDRESS"
}

resource "hallpass_role" "main" {
  name           = "NAME"
  target         = "demo"
  description    = "DESCRIPTION"
  max_duration   = "240m"
  requestable_by = ["user:alice", "group:dev"]
  labels         = { env = "dev" }
  approval {
    approvers = ["user:carol", "group:approvers"]
    required  = 2
  }
}

resource "hallpass_role" "cache" {
  name           = "cache-read"
  target         = "cache"
  max_duration   = "1h"
  requestable_by = ["group:dev"]
  auto_approve   = true
  grant          = { acl = "~app:* +@read" }
}

data "hallpass_role" "main" {
  name = hallpass_role.main.name
}

output "data_max_duration" {
  value = data.hallpass_role.main.max_duration
}

output "data_approval_required" {
  value = data.hallpass_role.main.approval.required
}
"#;

const IMPORTED_TF: &str = r#"
resource "hallpass_role" "imported" {
  name                        = "imported"
  target                      = "demo"
  default_duration            = "30m"
  max_duration                = "2h"
  requestable_by              = ["group:dev"]
  auto_approve                = true
  extension_requires_approval = false
}
"#;

fn role_tf(server: &support::HallpassServer, name: &str, description: &str) -> String {
    ROLE_TF
        .replace("ADDRESS", &server.addr)
        .replace("NAME", name)
        .replace("DESCRIPTION", description)
}

/// The role `name` as the server has it, or `None` when it has none.
fn server_role(server: &support::HallpassServer, name: &str) -> Option<serde_json::Value> {
    let (status, body) = server.call("GET", &format!("/v1/roles/{name}"), None);
    match status {
        200 => Some(serde_json::from_str(&body).expect("a role as JSON")),
        404 => None,
        other => panic!("GET /v1/roles/{name}: {other} {body}"),
    }
}

fn put(server: &support::HallpassServer, path: &str, body: serde_json::Value) {
    let (status, answer) = server.call("PUT", path, Some(&body));
    assert_eq!(status, 200, "PUT {path}: {answer}");
}

/// `terraform plan -detailed-exitcode`: 0 no changes, 2 changes.
fn plan_exit(workspace: &Workspace) -> (i32, String) {
    let plan = workspace.run(
        &["plan", "-detailed-exitcode", "-input=false", "-no-color"],
        &[("HALLPASS_TOKEN", support::ROOT_TOKEN)],
    );
    let code = plan.code.expect("terraform exited");
    assert!(code != 1, "terraform plan failed:\n{}\n{}", plan.stdout, plan.stderr);
    (code, plan.stdout)
}

fn apply(workspace: &Workspace) -> String {
    let apply = workspace.run(
        &["apply", "-auto-approve", "-input=false", "-no-color"],
        &[("HALLPASS_TOKEN", support::ROOT_TOKEN)],
    );
    apply.assert_success("terraform apply");
    apply.stdout
}

#[test]
fn a_role_through_its_whole_life() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    put(
        &server,
        "/v1/targets/demo",
        serde_json::json!({"name": "demo", "type": "jwt", "config": {"audience": "demo"}}),
    );
    put(
        &server,
        "/v1/targets/cache",
        serde_json::json!({"name": "cache", "type": "redis", "config": {"host": "127.0.0.1"}}),
    );

    // Create: the server normalises, the state keeps the configuration.
    let workspace = Workspace::new(&terraform, &role_tf(&server, "first", "one"));
    let out = apply(&workspace);
    assert!(out.contains("2 added, 0 changed, 0 destroyed"), "{out}");
    let cache = server_role(&server, "cache-read").expect("the role with a grant was created");
    assert_eq!(cache["grant"], serde_json::json!({"acl": "~app:* +@read"}));
    let (code, out) = plan_exit(&workspace);
    assert_eq!(code, 0, "the grant as the server holds it plans no change:\n{out}");
    // A grant changed by hand shows in the plan; the apply puts it back.
    put(
        &server,
        "/v1/roles/cache-read",
        serde_json::json!({"name": "cache-read", "target": "cache", "max_duration": "1h",
            "requestable_by": ["group:dev"], "auto_approve": true, "grant": {"acl": "~app:* +@write"}}),
    );
    let (code, out) = plan_exit(&workspace);
    assert!(
        code == 2 && out.contains("+@write"),
        "the plan shows the grant's drift:\n{out}"
    );
    apply(&workspace);
    let cache = server_role(&server, "cache-read").unwrap();
    assert_eq!(cache["grant"], serde_json::json!({"acl": "~app:* +@read"}));
    let role = server_role(&server, "first").expect("the role was created");
    assert_eq!(role["max_duration"], "4h");
    assert_eq!(role["requestable_by"], serde_json::json!(["group:dev", "user:alice"]));
    assert_eq!(role["approval"]["required"], 2);
    assert_eq!(role["labels"]["env"], "dev");
    let outputs = workspace.run(&["output", "-json"], &[]);
    let outputs: serde_json::Value = serde_json::from_str(&outputs.stdout).expect("outputs as JSON");
    assert_eq!(outputs["data_max_duration"]["value"], "4h");
    assert_eq!(outputs["data_approval_required"]["value"], 2);
    let (code, out) = plan_exit(&workspace);
    assert_eq!(code, 0, "no changes after apply:\n{out}");
    // The same values spelled differently: still nothing to do.
    let respelled = role_tf(&server, "first", "one")
        .replace("\"240m\"", "\"4h\"")
        .replace("[\"user:alice\", \"group:dev\"]", "[\"group:dev\", \"user:alice\"]");
    workspace.write("main.tf", &respelled);
    let (code, out) = plan_exit(&workspace);
    assert_eq!(code, 0, "a new spelling of the same values changes nothing:\n{out}");

    // Update in place.
    workspace.write("main.tf", &role_tf(&server, "first", "two"));
    let out = apply(&workspace);
    assert!(out.contains("0 added, 1 changed, 0 destroyed"), "{out}");
    assert_eq!(server_role(&server, "first").unwrap()["description"], "two");

    // A new name replaces the role.
    workspace.write("main.tf", &role_tf(&server, "second", "two"));
    let out = apply(&workspace);
    assert!(out.contains("must be replaced"), "{out}");
    assert!(out.contains("1 added, 0 changed, 1 destroyed"), "{out}");
    assert!(server_role(&server, "first").is_none(), "the old role is gone");
    assert!(server_role(&server, "second").is_some());

    // Import a role made through the API: the configuration matches it.
    put(
        &server,
        "/v1/roles/imported",
        serde_json::json!({"name": "imported", "target": "demo", "default_duration": "30m",
            "max_duration": "120m", "requestable_by": ["group:dev"], "auto_approve": true,
            "extension_requires_approval": false}),
    );
    workspace.write("imported.tf", IMPORTED_TF);
    let import = workspace.run(
        &[
            "import",
            "-input=false",
            "-no-color",
            "hallpass_role.imported",
            "imported",
        ],
        &[("HALLPASS_TOKEN", support::ROOT_TOKEN)],
    );
    import.assert_success("terraform import");
    let (code, out) = plan_exit(&workspace);
    assert_eq!(code, 0, "the imported role matches its configuration:\n{out}");

    // Drift: a change on the server shows in the next plan.
    put(
        &server,
        "/v1/roles/imported",
        serde_json::json!({"name": "imported", "target": "demo", "description": "changed by hand",
            "max_duration": "3h", "requestable_by": ["group:dev"], "auto_approve": true}),
    );
    let (code, out) = plan_exit(&workspace);
    assert_eq!(code, 2, "the plan shows the drift:\n{out}");
    for change in ["changed by hand", "\"3h\" -> \"2h\"", "extension_requires_approval"] {
        assert!(out.contains(change), "{change} in:\n{out}");
    }
    apply(&workspace);
    assert_eq!(server_role(&server, "imported").unwrap()["max_duration"], "2h");

    // Deleted on the server: the plan creates it again.
    let (status, _) = server.call("DELETE", "/v1/roles/imported", None);
    assert_eq!(status, 204);
    let (code, out) = plan_exit(&workspace);
    assert!(
        code == 2 && out.contains("1 to add, 0 to change, 0 to destroy"),
        "{out}"
    );

    // Destroy.
    let destroy = workspace.run(
        &["destroy", "-auto-approve", "-input=false", "-no-color"],
        &[("HALLPASS_TOKEN", support::ROOT_TOKEN)],
    );
    destroy.assert_success("terraform destroy");
    assert!(server_role(&server, "second").is_none(), "destroy deleted the role");
    assert!(server_role(&server, "cache-read").is_none(), "destroy deleted the role");

    // What only the server checks fails the apply with its message.
    workspace.write("imported.tf", &IMPORTED_TF.replace("\"demo\"", "\"nowhere\""));
    // main.tf keeps only its terraform and provider blocks.
    let provider_only = role_tf(&server, "second", "two");
    let provider_only = provider_only
        .split("resource \"hallpass_role\"")
        .next()
        .unwrap_or_default();
    workspace.write("main.tf", provider_only);
    let refused = workspace.run(
        &["apply", "-auto-approve", "-input=false", "-no-color"],
        &[("HALLPASS_TOKEN", support::ROOT_TOKEN)],
    );
    let words = refused.stderr_words();
    assert!(
        !refused.success && words.contains("Cannot store role \"imported\""),
        "{words}"
    );
    assert!(words.contains("nowhere"), "the server's message: {words}");
}

#[test]
fn a_bad_duration_is_reported_at_its_attribute() {
    let Some(terraform) = terraform() else { return };
    let config = ROLE_TF
        .replace("ADDRESS", "http://127.0.0.1:1")
        .replace("NAME", "r")
        .replace("DESCRIPTION", "d")
        .replace("\"240m\"", "\"4 hours\"");
    let workspace = Workspace::new(&terraform, &config);
    let validate = workspace.run(&["validate", "-no-color"], &[]);
    assert!(!validate.success, "validate should fail:\n{}", validate.stdout);
    let words = validate.stderr_words();
    assert!(words.contains("Error: Invalid duration"), "{words}");
    assert!(
        words.contains(r#"max_duration = "4 hours""#),
        "points at the attribute: {words}"
    );
    assert!(words.contains("use whole numbers with the units"), "{words}");
}

#[test]
fn a_grant_that_is_not_an_object_is_reported_at_its_attribute() {
    let Some(terraform) = terraform() else { return };
    let config = ROLE_TF
        .replace("ADDRESS", "http://127.0.0.1:1")
        .replace("NAME", "r")
        .replace("DESCRIPTION", "d")
        .replace(
            r#"grant          = { acl = "~app:* +@read" }"#,
            r#"grant          = ["~app:* +@read"]"#,
        );
    let workspace = Workspace::new(&terraform, &config);
    let validate = workspace.run(&["validate", "-no-color"], &[]);
    assert!(!validate.success, "validate should fail:\n{}", validate.stdout);
    let words = validate.stderr_words();
    assert!(words.contains("Error: Invalid grant"), "{words}");
    assert!(words.contains("grant must be an object"), "{words}");
    assert!(
        words.contains(r#"grant = ["~app:* +@read"]"#),
        "points at the attribute: {words}"
    );
}
