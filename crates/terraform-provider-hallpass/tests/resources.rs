//! Acceptance tests of the resources beyond `hallpass_role`: approval
//! flows, policies, targets, notifiers and tokens, each through create, a
//! plan with no change, an update, drift, import and destroy, with the real
//! `terraform` against a live `hallpass server --dev` (see
//! `acceptance.rs`; skipped without Terraform except under `CI=true`).

#[allow(dead_code)]
mod support;

use support::{HallpassServer, ROOT_TOKEN, Workspace, terraform};

const PROVIDER: &str = r#"
terraform {
  required_providers {
    hallpass = { source = "hallpass/hallpass" }
  }
}

provider "hallpass" {
  address = "ADDRESS"
}
"#;

const TOKEN: [(&str, &str); 1] = [("HALLPASS_TOKEN", ROOT_TOKEN)];

/// The provider block for `server`, then `resources`.
fn config(server: &HallpassServer, resources: &str) -> String {
    format!("{}{resources}", PROVIDER.replace("ADDRESS", &server.addr))
}

/// `GET path` on the server: the JSON, or `None` on 404.
fn server_get(server: &HallpassServer, path: &str) -> Option<serde_json::Value> {
    let (status, body) = server.call("GET", path, None);
    match status {
        200 => Some(serde_json::from_str(&body).expect("JSON")),
        404 => None,
        other => panic!("GET {path}: {other} {body}"),
    }
}

fn put(server: &HallpassServer, path: &str, body: serde_json::Value) {
    let (status, answer) = server.call("PUT", path, Some(&body));
    assert_eq!(status, 200, "PUT {path}: {answer}");
}

/// `terraform plan -detailed-exitcode`: 0 no changes, 2 changes.
fn plan_exit(workspace: &Workspace) -> (i32, String) {
    plan_exit_with(workspace, &TOKEN)
}

/// [`plan_exit`] with `env` (the token and more).
fn plan_exit_with(workspace: &Workspace, env: &[(&str, &str)]) -> (i32, String) {
    let plan = workspace.run(&["plan", "-detailed-exitcode", "-input=false", "-no-color"], env);
    let code = plan.code.expect("terraform exited");
    assert!(code != 1, "terraform plan failed:\n{}\n{}", plan.stdout, plan.stderr);
    (code, plan.stdout)
}

fn apply(workspace: &Workspace) -> String {
    apply_with(workspace, &TOKEN)
}

/// [`apply`] with `env` (the token and more).
fn apply_with(workspace: &Workspace, env: &[(&str, &str)]) -> String {
    let apply = workspace.run(&["apply", "-auto-approve", "-input=false", "-no-color"], env);
    apply.assert_success("terraform apply");
    apply.stdout
}

fn destroy(workspace: &Workspace) {
    destroy_with(workspace, &TOKEN);
}

fn destroy_with(workspace: &Workspace, env: &[(&str, &str)]) {
    workspace
        .run(&["destroy", "-auto-approve", "-input=false", "-no-color"], env)
        .assert_success("terraform destroy");
}

fn import(workspace: &Workspace, address: &str, id: &str) {
    workspace
        .run(&["import", "-input=false", "-no-color", address, id], &TOKEN)
        .assert_success("terraform import");
}

const FLOW_TF: &str = r#"
resource "hallpass_approval_flow" "main" {
  name        = "peer-then-security"
  description = "DESCRIPTION"
  pending_ttl = "120m"

  stage {
    approvers   = ["group:dev-leads", "user:carol"]
    timeout     = "15m"
    escalate_to = ["group:security"]
  }
  stage {
    approvers = ["group:security"]
    required  = 2
  }
}
"#;

#[test]
fn an_approval_flow_through_its_whole_life() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let flow_tf = |description: &str| config(&server, &FLOW_TF.replace("DESCRIPTION", description));
    let path = "/v1/approval-flows/peer-then-security";

    let workspace = Workspace::new(&terraform, &flow_tf("one"));
    let out = apply(&workspace);
    assert!(out.contains("1 added, 0 changed, 0 destroyed"), "{out}");
    let flow = server_get(&server, path).expect("the flow was created");
    assert_eq!(flow["pending_ttl"], "2h");
    assert_eq!(flow["stages"][0]["escalate_to"], serde_json::json!(["group:security"]));
    assert_eq!(flow["stages"][1]["required"], 2);
    let (code, out) = plan_exit(&workspace);
    assert_eq!(code, 0, "no changes after apply:\n{out}");
    workspace.write("main.tf", &flow_tf("one").replace("\"120m\"", "\"2h\""));
    let (code, out) = plan_exit(&workspace);
    assert_eq!(code, 0, "a new spelling of the same values changes nothing:\n{out}");

    // Update in place.
    workspace.write("main.tf", &flow_tf("two"));
    let out = apply(&workspace);
    assert!(out.contains("0 added, 1 changed, 0 destroyed"), "{out}");
    assert_eq!(server_get(&server, path).unwrap()["description"], "two");

    // Drift: a stage changed by hand shows in the plan, and apply puts it back.
    let mut changed = server_get(&server, path).unwrap();
    changed["stages"][1]["required"] = 3.into();
    let spec = serde_json::json!({"name": "peer-then-security", "description": "two",
        "pending_ttl": "2h", "stages": changed["stages"]});
    put(&server, path, spec);
    let (code, out) = plan_exit(&workspace);
    assert!(code == 2 && out.contains("3 -> 2"), "the plan shows the drift:\n{out}");
    apply(&workspace);
    assert_eq!(server_get(&server, path).unwrap()["stages"][1]["required"], 2);

    // Import, by name, into a fresh state: it matches its configuration.
    let imported = Workspace::new(&terraform, &flow_tf("two"));
    import(&imported, "hallpass_approval_flow.main", "peer-then-security");
    let (code, out) = plan_exit(&imported);
    assert_eq!(code, 0, "the imported flow matches its configuration:\n{out}");

    // A stage problem is found at validate, at the stage's attribute.
    workspace.write(
        "main.tf",
        &flow_tf("two").replace("    escalate_to = [\"group:security\"]\n", ""),
    );
    let validate = workspace.run(&["validate", "-no-color"], &[]);
    let words = validate.stderr_words();
    assert!(!validate.success && words.contains("Invalid stage"), "{words}");
    assert!(words.contains(r#"timeout = "15m""#), "points at the attribute: {words}");

    workspace.write("main.tf", &flow_tf("two"));
    destroy(&workspace);
    assert!(server_get(&server, path).is_none(), "destroy deleted the flow");
}

const POLICY_TF: &str = r#"
resource "hallpass_policy" "oncall" {
  name   = "oncall"
  source = file("oncall.rego")
}
"#;

const ONCALL: &str = "package hallpass.request\n\nimport rego.v1\n\nauto_approve if {\n\t\"oncall\" in input.principal.groups\n\tinput.request.duration_seconds <= SECONDS\n}\n";

#[test]
fn a_policy_through_its_whole_life() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let path = "/v1/policies/oncall";
    let workspace = Workspace::new(&terraform, &config(&server, POLICY_TF));
    workspace.write("oncall.rego", &ONCALL.replace("SECONDS", "3600"));

    let out = apply(&workspace);
    assert!(out.contains("1 added, 0 changed, 0 destroyed"), "{out}");
    let policy = server_get(&server, path).expect("the policy was created");
    assert!(policy["source"].as_str().unwrap().contains("3600"));
    let state = workspace.read("terraform.tfstate");
    assert!(
        state.contains(policy["source_hash"].as_str().unwrap()),
        "the state has the server's hash"
    );
    let (code, out) = plan_exit(&workspace);
    assert_eq!(code, 0, "no changes after apply:\n{out}");

    // Update in place.
    workspace.write("oncall.rego", &ONCALL.replace("SECONDS", "1800"));
    let out = apply(&workspace);
    assert!(out.contains("0 added, 1 changed, 0 destroyed"), "{out}");
    assert!(
        server_get(&server, path).unwrap()["source"]
            .as_str()
            .unwrap()
            .contains("1800")
    );

    // Drift: the source changed by hand shows in the plan.
    put(
        &server,
        path,
        serde_json::json!({"source": ONCALL.replace("SECONDS", "60")}),
    );
    let (code, out) = plan_exit(&workspace);
    assert!(code == 2 && out.contains("60"), "the plan shows the drift:\n{out}");
    apply(&workspace);
    assert!(
        server_get(&server, path).unwrap()["source"]
            .as_str()
            .unwrap()
            .contains("1800")
    );

    // Import by name into a fresh state.
    let imported = Workspace::new(&terraform, &config(&server, POLICY_TF));
    imported.write("oncall.rego", &ONCALL.replace("SECONDS", "1800"));
    import(&imported, "hallpass_policy.oncall", "oncall");
    let (code, out) = plan_exit(&imported);
    assert_eq!(code, 0, "the imported policy matches its configuration:\n{out}");

    // Rego that does not parse: an error at validate, on `source`, with its place.
    workspace.write("oncall.rego", "package hallpass.request\n\nauto_approve if {\n");
    let validate = workspace.run(&["validate", "-no-color"], &[]);
    let words = validate.stderr_words();
    assert!(!validate.success && words.contains("Error: Invalid Rego"), "{words}");
    assert!(words.contains("oncall:"), "the module, line and column: {words}");
    assert!(
        words.contains("source = file(\"oncall.rego\")"),
        "points at source: {words}"
    );

    // A module only the server refuses: the apply fails with its message on `source`.
    workspace.write("oncall.rego", "package elsewhere\n\nimport rego.v1\n\nx := 1\n");
    let refused = workspace.run(&["apply", "-auto-approve", "-input=false", "-no-color"], &TOKEN);
    let words = refused.stderr_words();
    assert!(
        !refused.success && words.contains("Cannot store policy \"oncall\""),
        "{words}"
    );
    assert!(words.contains("oncall:1:"), "the server's line and column: {words}");
    assert!(
        words.contains("source = file(\"oncall.rego\")"),
        "points at source: {words}"
    );

    workspace.write("oncall.rego", &ONCALL.replace("SECONDS", "1800"));
    destroy(&workspace);
    assert!(server_get(&server, path).is_none(), "destroy deleted the policy");
}

const TARGET_TF: &str = r#"
variable "hmac_secret" {
  type      = string
  ephemeral = true
}

resource "hallpass_target" "panel" {
  name            = "panel"
  type            = "webhook"
  config          = { url = "https://panel.internal/hallpass", timeout_seconds = TIMEOUT }
  secrets         = { hmac_secret = var.hmac_secret }
  secrets_version = VERSION
}

resource "hallpass_target" "web" {
  name = "web"
  type = "ssh"
}

data "hallpass_target" "panel" {
  name = hallpass_target.panel.name
}

data "hallpass_target" "web" {
  name = hallpass_target.web.name
}

output "panel_secret_names" {
  value = data.hallpass_target.panel.secret_names
}

output "panel_timeout" {
  value = data.hallpass_target.panel.config.timeout_seconds
}

output "web_ca" {
  value = data.hallpass_target.web.ca_public_key
}
"#;

/// A webhook signing key: `whsec_` and the base64 of 32 bytes.
const SECRET_ONE: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SECRET_TWO: &str = "whsec_ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

fn target_tf(server: &HallpassServer, timeout: u32, version: u32) -> String {
    config(
        server,
        &TARGET_TF
            .replace("TIMEOUT", &timeout.to_string())
            .replace("VERSION", &version.to_string()),
    )
}

/// The token, and `secret` for the ephemeral variable `variable`.
fn secret_env<'a>(variable: &'a str, secret: &'a str) -> [(&'a str, &'a str); 2] {
    [("HALLPASS_TOKEN", ROOT_TOKEN), (variable, secret)]
}

/// When the server last stored the only secret of the object at `path`,
/// which must be `name`.
fn secret_updated_at(server: &HallpassServer, path: &str, name: &str) -> serde_json::Value {
    let stored = server_get(server, path).unwrap_or_else(|| panic!("nothing at {path}"));
    assert_eq!(stored["secrets"][0]["name"], name, "{stored}");
    assert_eq!(stored["secrets"].as_array().map(Vec::len), Some(1), "{stored}");
    stored["secrets"][0]["updated_at"].clone()
}

/// Drift of a webhook's settings: sets the `url` of the webhook at `path`
/// by hand (a `PUT` without secrets, which keeps the stored ones), checks
/// that the next plan shows it, and applies the configuration back.
fn drift_url(server: &HallpassServer, workspace: &Workspace, env: &[(&str, &str)], path: &str) {
    let name = path.rsplit('/').next().unwrap_or_default();
    let changed = serde_json::json!({"name": name, "type": "webhook",
        "config": {"url": "https://elsewhere.internal/hook"}});
    put(server, path, changed);
    let (code, out) = plan_exit_with(workspace, env);
    assert!(
        code == 2 && out.contains("elsewhere.internal"),
        "the plan shows the drift:\n{out}"
    );
    apply_with(workspace, env);
}

/// Saves a plan with `env` and checks that `terraform show -json` of it
/// has `visible` (it is the plan looked for) and not `secret`.
fn assert_saved_plan_hides(workspace: &Workspace, env: &[(&str, &str)], visible: &str, secret: &str) {
    workspace
        .run(&["plan", "-out=saved.tfplan", "-input=false", "-no-color"], env)
        .assert_success("terraform plan -out");
    let shown = workspace.run(&["show", "-json", "saved.tfplan"], &[]);
    shown.assert_success("terraform show -json");
    assert!(shown.stdout.contains(visible), "the plan is there:\n{}", shown.stdout);
    assert!(
        !shown.stdout.contains(secret),
        "the secret is in the plan:\n{}",
        shown.stdout
    );
}

/// Checks that `terraform.tfstate` has `visible` and not `secret`.
fn assert_state_hides(workspace: &Workspace, visible: &str, secret: &str) {
    let state = workspace.read("terraform.tfstate");
    assert!(state.contains(visible), "{state}");
    assert!(!state.contains(secret), "the secret is in the state:\n{state}");
}

#[test]
fn a_target_with_a_write_only_secret_through_its_whole_life() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let workspace = Workspace::new(&terraform, &target_tf(&server, 5, 1));
    let one = secret_env("TF_VAR_hmac_secret", SECRET_ONE);
    let two = secret_env("TF_VAR_hmac_secret", SECRET_TWO);
    let stored_at = || secret_updated_at(&server, "/v1/targets/panel", "hmac_secret");

    // The saved plan holds no secret, nor does the state after apply.
    assert_saved_plan_hides(&workspace, &one, "panel.internal", SECRET_ONE);
    let out = apply_with(&workspace, &one);
    assert!(out.contains("2 added, 0 changed, 0 destroyed"), "{out}");
    assert_state_hides(&workspace, "panel.internal", SECRET_ONE);
    let stored = stored_at();
    let outputs = workspace.run(&["output", "-json"], &[]);
    let outputs: serde_json::Value = serde_json::from_str(&outputs.stdout).expect("outputs as JSON");
    assert_eq!(
        outputs["panel_secret_names"]["value"],
        serde_json::json!(["hmac_secret"])
    );
    assert_eq!(
        outputs["panel_timeout"]["value"], 5,
        "the data source's config: {outputs}"
    );
    let ca = outputs["web_ca"]["value"].as_str().unwrap_or_default();
    assert!(ca.starts_with("ssh-ed25519 "), "the ssh target's CA: {outputs}");
    let (code, out) = plan_exit_with(&workspace, &one);
    assert_eq!(code, 0, "no changes after apply:\n{out}");

    // A new secret value alone plans nothing: Terraform cannot see it.
    workspace.write("main.tf", &target_tf(&server, 5, 1));
    let (code, out) = plan_exit_with(&workspace, &two);
    assert_eq!(code, 0, "a write-only value is not compared:\n{out}");

    // An update without a new version keeps the stored secret as it was.
    workspace.write("main.tf", &target_tf(&server, 7, 1));
    let out = apply_with(&workspace, &two);
    assert!(out.contains("0 added, 1 changed, 0 destroyed"), "{out}");
    let target = server_get(&server, "/v1/targets/panel").unwrap();
    assert_eq!(target["config"]["timeout_seconds"], 7);
    assert_eq!(stored_at(), stored, "the secret was not sent again");

    // A new secrets_version sends the secrets again.
    workspace.write("main.tf", &target_tf(&server, 7, 2));
    let out = apply_with(&workspace, &two);
    assert!(out.contains("0 added, 1 changed, 0 destroyed"), "{out}");
    assert_ne!(stored_at(), stored, "the secret was sent again");
    assert!(!workspace.read("terraform.tfstate").contains(SECRET_TWO));

    // Drift: settings changed by hand show in the plan; the secret stays.
    drift_url(&server, &workspace, &two, "/v1/targets/panel");
    let target = server_get(&server, "/v1/targets/panel").unwrap();
    assert_eq!(target["config"]["url"], "https://panel.internal/hallpass");
    assert_eq!(target["secrets"][0]["name"], "hmac_secret");

    // A new type replaces the target.
    let ssh_to_jwt =
        target_tf(&server, 7, 2).replace("type = \"ssh\"", "type = \"jwt\"\n  config = { audience = \"web\" }");
    workspace.write("main.tf", &ssh_to_jwt);
    let out = apply_with(&workspace, &two);
    assert!(
        out.contains("must be replaced") && out.contains("1 added, 0 changed, 1 destroyed"),
        "{out}"
    );

    // Import by name: a target without secrets matches its configuration.
    let imported = Workspace::new(
        &terraform,
        &config(
            &server,
            "resource \"hallpass_target\" \"web\" {\n  name = \"web\"\n  type = \"jwt\"\n  config = { audience = \"web\" }\n}\n",
        ),
    );
    import(&imported, "hallpass_target.web", "web");
    let (code, out) = plan_exit(&imported);
    assert_eq!(code, 0, "the imported target matches its configuration:\n{out}");

    destroy_with(&workspace, &two);
    assert!(
        server_get(&server, "/v1/targets/panel").is_none(),
        "destroy deleted the target"
    );
    assert!(
        server_get(&server, "/v1/targets/web").is_none(),
        "destroy deleted the target"
    );
}

const NOTIFIER_TF: &str = r#"
variable "signing_secret" {
  type      = string
  ephemeral = true
}

resource "hallpass_notifier" "bot" {
  name            = "audit-bot"
  type            = "webhook"
  config          = { url = "URL", timeout_seconds = 5, topics = ["request.pending", "grant.active"] }
  secrets         = { signing_secret = var.signing_secret }
  secrets_version = 1
}

data "hallpass_notifier" "bot" {
  name = hallpass_notifier.bot.name
}

output "bot" {
  value = data.hallpass_notifier.bot
}
"#;

/// A notifier made through the API, as a configuration to import it into.
const PAGER_TF: &str = r#"
resource "hallpass_notifier" "pager" {
  name   = "pager"
  type   = "webhook"
  config = { url = "https://pager.internal/hook", security = true }
}
"#;

#[test]
fn a_webhook_notifier_with_a_write_only_secret_through_its_whole_life() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let notifier_tf = |url: &str| config(&server, &NOTIFIER_TF.replace("URL", url));
    let path = "/v1/notifiers/audit-bot";
    let env = secret_env("TF_VAR_signing_secret", SECRET_ONE);
    let workspace = Workspace::new(&terraform, &notifier_tf("https://bot.internal/hallpass"));

    // Created with its secret, which is in neither the saved plan nor the state.
    assert_saved_plan_hides(&workspace, &env, "bot.internal", SECRET_ONE);
    let out = apply_with(&workspace, &env);
    assert!(out.contains("1 added, 0 changed, 0 destroyed"), "{out}");
    assert_state_hides(&workspace, "bot.internal", SECRET_ONE);
    let stored = server_get(&server, path).expect("the notifier was created");
    assert_eq!(stored["type"], "webhook");
    assert_eq!(stored["config"]["timeout_seconds"], 5);
    assert_eq!(
        stored["config"]["topics"],
        serde_json::json!(["request.pending", "grant.active"])
    );
    let created = secret_updated_at(&server, path, "signing_secret");
    // The data source: the server's values, the secret by name only.
    let read = &outputs(&workspace)["bot"]["value"];
    assert_eq!(read["secret_names"], serde_json::json!(["signing_secret"]), "{read}");
    assert_eq!(read["config"]["url"], "https://bot.internal/hallpass", "{read}");
    assert_eq!(read["type"], "webhook", "{read}");
    let instant = |time: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(time.as_str().unwrap()).unwrap();
    assert_eq!(instant(&read["created_at"]), instant(&stored["created_at"]), "{read}");
    let (code, out) = plan_exit_with(&workspace, &env);
    assert_eq!(code, 0, "no changes after apply:\n{out}");

    // Update in place: the settings change, the stored secret stays as it was.
    workspace.write("main.tf", &notifier_tf("https://bot.internal/v2"));
    let out = apply_with(&workspace, &env);
    assert!(out.contains("0 added, 1 changed, 0 destroyed"), "{out}");
    assert_eq!(
        server_get(&server, path).unwrap()["config"]["url"],
        "https://bot.internal/v2"
    );
    assert_eq!(
        secret_updated_at(&server, path, "signing_secret"),
        created,
        "an update without a new secrets_version does not send the secret"
    );

    // Settings the server refuses: the apply fails with the server's
    // message, pointing at `config`, and the notifier is left as it was.
    workspace.write("main.tf", &notifier_tf("ftp://x"));
    let refused = workspace.run(&["apply", "-auto-approve", "-input=false", "-no-color"], &env);
    let words = refused.stderr_words();
    assert!(!refused.success, "the apply fails:\n{}", refused.stdout);
    assert!(words.contains(r#"Error: Cannot store notifier "audit-bot""#), "{words}");
    assert!(
        words.contains("`url` must be http:// or https://"),
        "the server's message: {words}"
    );
    assert!(
        words.contains(r#"config = { url = "ftp://x""#),
        "points at config: {words}"
    );
    assert_eq!(
        server_get(&server, path).unwrap()["config"]["url"],
        "https://bot.internal/v2"
    );

    // Drift: settings changed outside Terraform show in the plan, and the
    // apply puts them back.
    workspace.write("main.tf", &notifier_tf("https://bot.internal/v2"));
    drift_url(&server, &workspace, &env, path);
    assert_eq!(
        server_get(&server, path).unwrap()["config"]["url"],
        "https://bot.internal/v2"
    );

    // Import by name of a notifier made through the API.
    put(
        &server,
        "/v1/notifiers/pager",
        serde_json::json!({"name": "pager", "type": "webhook",
            "config": {"url": "https://pager.internal/hook", "security": true},
            "secrets": {"signing_secret": SECRET_TWO}}),
    );
    let imported = Workspace::new(&terraform, &config(&server, PAGER_TF));
    import(&imported, "hallpass_notifier.pager", "pager");
    let (code, out) = plan_exit(&imported);
    assert_eq!(code, 0, "the imported notifier matches its configuration:\n{out}");
    assert_state_hides(&imported, "pager.internal", SECRET_TWO);

    destroy_with(&workspace, &env);
    assert!(server_get(&server, path).is_none(), "destroy deleted the notifier");
    destroy(&imported);
    assert!(
        server_get(&server, "/v1/notifiers/pager").is_none(),
        "destroy deleted the imported notifier"
    );
}

const TOKEN_TF: &str = r#"
resource "hallpass_token" "ci" {
  principal = "ci-deploy"
  groups    = ["ci"]
  ttl       = "TTL"
}

output "token" {
  value     = hallpass_token.ci.token
  sensitive = true
}

output "id" {
  value = hallpass_token.ci.id
}
"#;

/// The token `id` as `GET /v1/tokens` lists it.
fn server_token(server: &HallpassServer, id: &str) -> serde_json::Value {
    let tokens = server_get(server, "/v1/tokens").expect("the token list");
    tokens
        .as_array()
        .and_then(|all| all.iter().find(|token| token["id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("no token {id} in {tokens}"))
}

/// `terraform output -json`.
fn outputs(workspace: &Workspace) -> serde_json::Value {
    let run = workspace.run(&["output", "-json"], &[]);
    run.assert_success("terraform output");
    serde_json::from_str(&run.stdout).expect("outputs as JSON")
}

#[test]
fn a_token_through_its_whole_life() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    let token_tf = |ttl: &str| config(&server, &TOKEN_TF.replace("TTL", ttl));
    let workspace = Workspace::new(&terraform, &token_tf("30d"));

    let out = apply(&workspace);
    assert!(out.contains("1 added, 0 changed, 0 destroyed"), "{out}");
    let first = outputs(&workspace);
    let id = first["id"]["value"].as_str().expect("an id").to_string();
    assert!(
        first["token"]["value"].as_str().is_some_and(|t| t.starts_with("hp_")),
        "{first}"
    );
    let listed = server_token(&server, &id);
    assert_eq!(listed["principal"], "ci-deploy");
    assert_eq!(listed["groups"], serde_json::json!(["ci"]));
    assert!(
        listed["expires_at"].is_string() && listed["revoked_at"].is_null(),
        "{listed}"
    );
    let (code, out) = plan_exit(&workspace);
    assert_eq!(code, 0, "no changes after apply:\n{out}");

    // Any change replaces the token: a new one, the old one revoked.
    workspace.write("main.tf", &token_tf("7d"));
    let out = apply(&workspace);
    assert!(
        out.contains("must be replaced") && out.contains("1 added, 0 changed, 1 destroyed"),
        "{out}"
    );
    assert!(
        server_token(&server, &id)["revoked_at"].is_string(),
        "the old token was revoked"
    );
    let second = outputs(&workspace)["id"]["value"].as_str().unwrap().to_string();
    assert_ne!(second, id);

    // Revoked outside Terraform: the plan makes a new one.
    let (status, body) = server.call("DELETE", &format!("/v1/tokens/{second}"), None);
    assert_eq!(status, 204, "{body}");
    let (code, out) = plan_exit(&workspace);
    assert!(
        code == 2 && out.contains("1 to add, 0 to change, 0 to destroy"),
        "{out}"
    );
    apply(&workspace);

    // Import is refused, with the reason.
    let fresh = Workspace::new(&terraform, &token_tf("7d"));
    let import = fresh.run(
        &["import", "-input=false", "-no-color", "hallpass_token.ci", &id],
        &TOKEN,
    );
    let words = import.stderr_words();
    assert!(
        !import.success && words.contains("hallpass_token cannot be imported"),
        "{words}"
    );

    let third = outputs(&workspace)["id"]["value"].as_str().unwrap().to_string();
    destroy(&workspace);
    assert!(
        server_token(&server, &third)["revoked_at"].is_string(),
        "destroy revoked the token"
    );
}

const MISSING_FLOW_TF: &str = r#"
resource "hallpass_role" "gated" {
  name           = "gated"
  target         = "demo"
  max_duration   = "1h"
  requestable_by = ["group:dev"]
  approval_flow  = "FLOW"
}
"#;

const CREATED_FLOW_TF: &str = r#"
resource "hallpass_approval_flow" "created" {
  name = "created-here"
  stage {
    approvers = ["group:leads"]
  }
}
"#;

#[test]
fn a_role_naming_a_flow_the_server_lacks_warns_at_plan_and_fails_at_apply() {
    let Some(terraform) = terraform() else { return };
    let server = HallpassServer::start();
    put(
        &server,
        "/v1/targets/demo",
        serde_json::json!({"name": "demo", "type": "jwt", "config": {"audience": "demo"}}),
    );
    let workspace = Workspace::new(
        &terraform,
        &config(&server, &MISSING_FLOW_TF.replace("FLOW", "nowhere")),
    );
    let plan = workspace.run(&["plan", "-input=false", "-no-color"], &TOKEN);
    plan.assert_success("terraform plan");
    let words = format!("{} {}", plan.stdout, plan.stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        words.contains(r#"Warning: No approval flow "nowhere" on the server"#) && words.contains("approval_flow"),
        "{words}"
    );
    assert!(words.contains("will fail unless the same run creates it"), "{words}");
    assert!(!words.contains("No target"), "the target exists: {words}");
    let failed = workspace.run(&["apply", "-auto-approve", "-input=false", "-no-color"], &TOKEN);
    assert!(!failed.success, "the apply fails:\n{}", failed.stdout);
    assert!(
        failed.stderr_words().contains(r#"Cannot store role "gated""#),
        "{}",
        failed.stderr
    );
    assert!(server_get(&server, "/v1/roles/gated").is_none());

    // A flow the same run creates: the warning, then an apply that works.
    workspace.write(
        "main.tf",
        &config(
            &server,
            &(MISSING_FLOW_TF.replace("\"FLOW\"", "hallpass_approval_flow.created.name") + CREATED_FLOW_TF),
        ),
    );
    let out = apply(&workspace);
    assert!(out.contains("2 added") && out.contains("No approval flow"), "{out}");
    assert!(server_get(&server, "/v1/roles/gated").is_some());
    let plan = workspace.run(&["plan", "-input=false", "-no-color"], &TOKEN);
    plan.assert_success("terraform plan");
    assert!(
        !plan.stdout.contains("No approval flow"),
        "the flow exists now:\n{}",
        plan.stdout
    );
    destroy(&workspace);
}
