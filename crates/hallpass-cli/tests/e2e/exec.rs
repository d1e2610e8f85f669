//! `hallpass exec`: the command runs with the grant's credential in its
//! environment, exits with its own status, receives the signals sent to
//! `hallpass exec`, and the access is given back when it ends (released,
//! or cancelled while still waiting for approval); a grant held before is
//! used and left alone.
//!
//! The roles are on a `hallpass` target (a grant is an API token with the
//! group `admins`), so the command can be the CLI itself and show what the
//! grant allows, with no other service involved.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::hallpass_bin;
use crate::real_targets::World;

/// A world whose role gives an API token in group `admins`.
fn admin_world(prefix: &str) -> World {
    let world = World::new(prefix);
    world.apply("  type = \"hallpass\"", "{ groups = [\"admins\"] }");
    world
}

/// `hallpass exec ROLE --reason ... --for 10m -- COMMAND` as the world's requester.
fn exec(world: &World, command: &[&str]) -> Command {
    let mut cli = world.server.cli(&world.token);
    cli.args(["exec", &world.name, "--reason", "end-to-end test", "--for", "10m", "--"])
        .args(command);
    cli
}

fn output(mut command: Command) -> Output {
    command.output().expect("run hallpass exec")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The world's requests, newest first.
fn my_requests(world: &World) -> Vec<Value> {
    let mine = world.server.json(&world.token, &["requests", "--mine"]);
    mine.as_array().cloned().unwrap_or_default()
}

fn only_request(world: &World) -> Value {
    let mine = my_requests(world);
    assert_eq!(mine.len(), 1, "{mine:?}");
    mine[0].clone()
}

fn send(child: &Child, signal: i32) {
    // SAFETY: kill(2) on a child this test started and has not reaped.
    let sent = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(sent, 0, "kill {signal}");
}

#[test]
fn the_command_runs_with_the_grant_and_the_access_is_given_back() {
    let world = admin_world("exec");
    let token_file = world.dir.path().join("grant-token");
    let bin = hallpass_bin();
    // The command: the CLI itself, with the grant's token from the
    // environment; an admin-only call works during the grant.
    let script = format!(
        "printf %s \"$HALLPASS_TOKEN\" > '{}' && test -n \"$HALLPASS_GRANT_ID\" && '{bin}' --output json token list \
         > /dev/null && '{bin}' --output json whoami",
        token_file.display(),
        bin = bin.display()
    );
    let ran = output(exec(&world, &["sh", "-c", &script]));
    assert!(ran.status.success(), "{}", stderr(&ran));
    let whoami: Value = serde_json::from_slice(&ran.stdout).expect("whoami JSON");
    assert_eq!(whoami["admin"], true, "{whoami}");
    assert_eq!(whoami["groups"], serde_json::json!(["admins"]), "{whoami}");
    assert_eq!(whoami["principal"], format!("{}@example.com", world.name));
    assert!(stderr(&ran).contains("released"), "{}", stderr(&ran));

    // Given back: the grant is released, its token refused.
    let request = only_request(&world);
    assert_eq!(request["state"], "released", "{request}");
    let grant_token = std::fs::read_to_string(&token_file).expect("the token the command saw");
    assert!(grant_token.starts_with("hp_"), "{grant_token}");
    let (code, refused) = world.server.fails(&grant_token, &["whoami"]);
    assert_eq!(code, 1);
    assert!(refused.contains("unknown, revoked or expired"), "{refused}");
    // Without the grant the requester is no admin.
    let (_, forbidden) = world.server.fails(&world.token, &["token", "list"]);
    assert!(forbidden.contains("admin"), "{forbidden}");
    let id = request["id"].as_str().expect("id");
    let created = world.end_event(id, "token.created");
    assert_eq!(created["actor"], "hallpass");
    assert_eq!(created["data"]["groups"], serde_json::json!(["admins"]));
    world.end_event(id, "token.revoked");
    let released = world.end_event(id, "grant.released");
    assert_eq!(released["data"]["verified"], true, "{released}");
    world.assert_not_stored(&grant_token);
}

#[test]
fn the_exit_status_is_the_commands_and_the_grant_is_released_either_way() {
    let world = admin_world("exitst");
    let failed = output(exec(&world, &["sh", "-c", "exit 7"]));
    assert_eq!(failed.status.code(), Some(7), "{}", stderr(&failed));
    let missing = output(exec(&world, &["/nonexistent/hallpass-test-command"]));
    assert_eq!(missing.status.code(), Some(127), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("cannot run /nonexistent/hallpass-test-command"));
    let states: Vec<Value> = my_requests(&world).iter().map(|r| r["state"].clone()).collect();
    assert_eq!(states, ["released", "released"], "each run released its grant");
}

#[test]
fn signals_sent_to_exec_reach_the_command_before_the_grant_is_released() {
    let world = admin_world("execsig");
    for (signal, name, status) in [(libc::SIGTERM, "TERM", 9), (libc::SIGINT, "INT", 10)] {
        let script = format!("trap 'echo got-{name}; exit {status}' {name}; echo ready; while :; do sleep 0.05; done");
        let mut child = exec(&world, &["sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hallpass exec");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().expect("a line").expect("read");
        assert_eq!(first, "ready");
        send(&child, signal);
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let finished = child.wait_with_output().expect("wait");
        assert_eq!(finished.status.code(), Some(status), "{}", stderr(&finished));
        assert_eq!(rest, [format!("got-{name}")]);
        assert!(
            my_requests(&world).iter().all(|r| r["state"] == "released"),
            "{:?}",
            my_requests(&world)
        );
    }
}

#[test]
fn a_grant_held_before_is_used_and_left_alone() {
    let world = admin_world("exechold");
    let held = world.request();
    let ran = output(exec(
        &world,
        &["sh", "-c", "test \"$HALLPASS_GRANT_ID\" = \"$0\"", &held.id],
    ));
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert!(stderr(&ran).contains("already had"), "{}", stderr(&ran));
    assert_eq!(only_request(&world)["state"], "active");
}

#[test]
fn interrupting_the_wait_for_approval_cancels_the_request() {
    let world = World::new("execwait");
    let name = &world.name;
    world.server.apply(
        world.dir.path(),
        &format!(
            "target \"{name}\" {{\n  type = \"hallpass\"\n}}\nrole \"{name}\" {{\n  target = \"{name}\"\n  \
             max_duration = \"1h\"\n  requestable_by = [\"group:dev\"]\n  grant = {{ groups = [\"admins\"] }}\n  \
             approval {{\n    approvers = [\"group:approvers\"]\n  }}\n}}\n"
        ),
    );
    let child = exec(&world, &["true"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hallpass exec");
    let deadline = Instant::now() + Duration::from_secs(20);
    while my_requests(&world).is_empty() {
        assert!(Instant::now() < deadline, "no request was made");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(only_request(&world)["state"], "pending");
    send(&child, libc::SIGINT);
    let finished = child.wait_with_output().expect("wait");
    assert_eq!(finished.status.code(), Some(130), "{}", stderr(&finished));
    assert_eq!(only_request(&world)["state"], "cancelled");
}
