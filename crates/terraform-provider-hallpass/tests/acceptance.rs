//! Acceptance tests: the real `terraform` binary runs the provider built
//! from this source (through `dev_overrides`, no `terraform init`) against
//! a live `hallpass server --dev`.
//!
//! Terraform is looked for on the PATH. Without it the Terraform tests are
//! skipped with a note, except under `CI=true`, where that is a failure.

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
