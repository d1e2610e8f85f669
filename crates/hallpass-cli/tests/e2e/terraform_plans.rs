//! Approval bound to a Terraform plan, with the real `terraform` and
//! `terraform_data` resources: `hallpass terraform plan` requests the role
//! with the plan's digest and changes, approvers see them, a second plan
//! cannot ride on the first one's request, `hallpass terraform apply`
//! refuses a plan file changed after approval and applies the approved one
//! with the grant before releasing it, and a policy reading
//! `input.request.plan` refuses a plan that deletes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::Server;

/// The `terraform` on the PATH; its absence fails the test under CI
/// (scripts/test installs nothing for it: the machines carry it).
fn terraform() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("terraform"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "terraform is not on the PATH, and CI=true: install Terraform 1.10 or later"
        );
        eprintln!("terraform is not on the PATH: skipping the plan-bound approval test");
    }
    found
}

const POLICY: &str = "package hallpass.request\n\nimport rego.v1\n\n\
deny contains \"plans that delete resources go through the change board\" if {\n\
\tcount(input.request.plan.delete) > 0\n}\n";

fn config() -> String {
    format!(
        "target \"tf\" {{\n  type = \"hallpass\"\n}}\n\
         role \"tf-apply\" {{\n  target = \"tf\"\n  max_duration = \"1h\"\n  requestable_by = [\"group:dev\"]\n  \
         grant = {{ groups = [\"ops\"] }}\n  approval {{\n    approvers = [\"group:approvers\"]\n  }}\n}}\n\
         policy \"plans\" {{\n  source = <<-EOT\n{POLICY}  EOT\n}}\n"
    )
}

fn main_tf(with_b: bool) -> String {
    let b = if with_b {
        "resource \"terraform_data\" \"b\" {\n  input = var.b\n}\n"
    } else {
        ""
    };
    format!(
        "variable \"b\" {{\n  default = \"two\"\n}}\nresource \"terraform_data\" \"a\" {{\n  input = \"one\"\n}}\n{b}"
    )
}

fn run_terraform(terraform: &Path, dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(terraform)
        .args(args)
        .current_dir(dir)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .expect("run terraform");
    assert!(output.status.success(), "terraform {args:?}: {}", text(&output.stderr));
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `hallpass terraform plan` for role tf-apply, saving `plan_file`.
fn hallpass_plan(server: &Server, token: &str, dir: &Path, plan_file: &str, extra: &[&str]) -> Output {
    let mut command = server.cli(token);
    command
        .args([
            "terraform",
            "plan",
            "--role",
            "tf-apply",
            "--reason",
            "ship the change",
            "--dir",
        ])
        .arg(dir)
        .arg("--plan-file")
        .arg(dir.join(plan_file))
        .env("CHECKPOINT_DISABLE", "1");
    if !extra.is_empty() {
        command.arg("--").args(extra);
    }
    command.output().expect("run hallpass terraform plan")
}

fn hallpass_apply(server: &Server, token: &str, dir: &Path, id: &str, plan_file: &str) -> Output {
    server
        .cli(token)
        .args(["terraform", "apply", "--request", id, "--dir"])
        .arg(dir)
        .arg("--plan-file")
        .arg(dir.join(plan_file))
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("run hallpass terraform apply")
}

/// The resources Terraform's state holds.
fn state_resources(dir: &Path) -> Vec<String> {
    let Ok(state) = std::fs::read_to_string(dir.join("terraform.tfstate")) else {
        return Vec::new();
    };
    let state: Value = serde_json::from_str(&state).expect("state JSON");
    state["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{}.{}",
                r["type"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn approval_is_for_one_plan_file_and_policies_read_the_plan() {
    let Some(terraform) = terraform() else {
        return;
    };
    let server = Server::dev();
    let work = tempfile::tempdir().expect("temp dir");
    server.apply(work.path(), &config());
    let pipeline = server.token("pipeline@example.com", "dev");
    let approver = server.token("carol@example.com", "approvers");
    let dir = work.path().join("infra");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("main.tf"), main_tf(true)).expect("main.tf");
    run_terraform(&terraform, &dir, &["init", "-input=false"]);

    // The plan is requested with its digest and changes.
    let planned = hallpass_plan(&server, &pipeline, &dir, "app.tfplan", &[]);
    assert!(planned.status.success(), "{}", text(&planned.stderr));
    assert!(
        text(&planned.stderr).contains("(2 to create)"),
        "{}",
        text(&planned.stderr)
    );
    let id = text(&planned.stdout).trim().to_string();
    let request = server.json(&server.admin, &["show", &id]);
    assert_eq!(request["state"], "pending", "{request}");
    assert_eq!(
        request["plan"]["create"],
        serde_json::json!(["terraform_data.a", "terraform_data.b"])
    );
    let digest = request["plan"]["sha256"].as_str().expect("sha256").to_string();
    let shown = server.run(&approver, &["show", &id]);
    assert!(
        text(&shown.stdout).contains("create: terraform_data.b"),
        "{}",
        text(&shown.stdout)
    );
    let created = crate::real_targets::audit_event(&server, &id, "request.created");
    assert_eq!(created["data"]["plan"]["sha256"], digest.as_str());

    // Another plan cannot use this request: it needs its own approval.
    let other = hallpass_plan(&server, &pipeline, &dir, "other.tfplan", &["-var=b=three"]);
    assert_eq!(other.status.code(), Some(1), "{}", text(&other.stderr));
    assert!(
        text(&other.stderr).contains("needs an approval of its own"),
        "{}",
        text(&other.stderr)
    );

    let approved = server.run(&approver, &["approve", &id, "--comment", "plan reviewed"]);
    assert!(approved.status.success(), "{}", text(&approved.stderr));

    // A plan file changed after approval is refused, and nothing is applied.
    std::fs::copy(dir.join("app.tfplan"), dir.join("approved.tfplan")).expect("copy");
    std::fs::copy(dir.join("other.tfplan"), dir.join("app.tfplan")).expect("swap");
    let refused = hallpass_apply(&server, &pipeline, &dir, &id, "app.tfplan");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("is not the plan approved"),
        "{}",
        text(&refused.stderr)
    );
    assert!(state_resources(&dir).is_empty());

    // The approved file is applied with the grant, which is then released.
    let applied = hallpass_apply(&server, &pipeline, &dir, &id, "approved.tfplan");
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    assert_eq!(state_resources(&dir), ["terraform_data.a", "terraform_data.b"]);
    let ended = server.json(&server.admin, &["show", &id]);
    assert_eq!(ended["state"], "released", "{ended}");
    let activated = crate::real_targets::audit_event(&server, &id, "grant.activated");
    assert_eq!(activated["data"]["plan_sha256"], digest.as_str());

    // A plan that deletes is refused by the policy reading it.
    std::fs::write(dir.join("main.tf"), main_tf(false)).expect("main.tf");
    let denied = hallpass_plan(&server, &pipeline, &dir, "delete.tfplan", &[]);
    assert_eq!(denied.status.code(), Some(3), "{}", text(&denied.stderr));
    assert!(
        text(&denied.stderr).contains("plans that delete resources go through the change board"),
        "{}",
        text(&denied.stderr)
    );
}

/// A malformed plan is refused with what is wrong and where, and nothing
/// is requested.
#[test]
fn malformed_plans_are_refused_and_change_nothing() {
    let server = Server::dev();
    let work = tempfile::tempdir().expect("temp dir");
    server.apply(work.path(), &config());
    let pipeline = server.token("pipeline@example.com", "dev");
    for (plan, code, expected) in [
        (serde_json::json!({"sha256": "abc"}), 400, "64 lower-case hex"),
        (
            serde_json::json!({"sha256": "a".repeat(64), "delete": ["ok", "bad\u{202e}address"]}),
            400,
            "plan.delete[1] holds a control or direction-changing character",
        ),
        // A field that is not part of a plan is a body of the wrong shape.
        (
            serde_json::json!({"sha256": "a".repeat(64), "destroy": []}),
            422,
            "plan.destroy: unknown field `destroy`",
        ),
    ] {
        let body = serde_json::json!({"role": "tf-apply", "reason": "x", "plan": plan});
        let (status, answer) = server.http(
            "POST",
            "/v1/requests",
            Some(&pipeline),
            Some(("application/json", body.to_string().into_bytes())),
        );
        assert_eq!(status, code, "{answer}");
        assert!(answer.to_string().contains(expected), "{answer}");
    }
    let mine = server.json(&pipeline, &["requests", "--mine"]);
    assert_eq!(mine, serde_json::json!([]));
}
