//! ssh targets with OpenSSH: `hallpass ssh` logs in to a real sshd that
//! trusts the target's CA, and a revoke puts the certificate in the KRL
//! that sshd reads, so the same key and certificate are refused. Open SSH
//! sessions are not ended (OpenSSH checks a certificate at login only; see
//! docs/targets.md), so none is held here.

use std::path::Path;
use std::process::Command;

use super::support::sshd::{Sshd, login_user};
use super::{World, printed, private_file, run};

/// A target whose KRL sshd reads, the list written first with
/// `hallpass target krl` as an administrator sets it up, and sshd trusting
/// the CA line `hallpass target show` prints.
fn setup(world: &World) -> (Sshd, std::path::PathBuf) {
    let krl = world.dir.path().join("revoked.krl");
    let user = login_user();
    world.apply(
        &format!(
            "  type = \"ssh\"\n  config = {{ krl_path = {} }}",
            serde_json::to_string(&krl).expect("json")
        ),
        &format!("{{ principals = [\"{user}\"] }}"),
    );
    let server = &world.server;
    let written = server.run(
        &server.admin,
        &["target", "krl", &world.name, "--to", &krl.to_string_lossy()],
    );
    assert!(written.status.success(), "{}", printed(&written));
    let target = server.json(&server.admin, &["target", "show", &world.name]);
    let anchor = target["ca_public_key"].as_str().expect("ca_public_key");
    assert!(anchor.starts_with("ssh-ed25519 "), "{anchor}");
    (Sshd::start(anchor, &krl), krl)
}

/// `hallpass ssh ROLE OPTIONS -- ... user@127.0.0.1 echo WORD` as the
/// world's requester, against the test's sshd; asserts that the command
/// ran there.
fn hallpass_ssh(world: &World, sshd: &Sshd, options: &[&str], word: &str) {
    let known_hosts = format!("UserKnownHostsFile={}", sshd.known_hosts().display());
    let (port, destination) = (sshd.port.to_string(), format!("{}@127.0.0.1", login_user()));
    let mut args = vec!["ssh", &world.name, "--reason", "end-to-end test"];
    args.extend_from_slice(options);
    args.extend([
        "--",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
    ]);
    args.extend(["-o", &known_hosts, "-p", &port, &destination, "echo", word]);
    let output = world.server.run(&world.token, &args);
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == word,
        "{}\nsshd log:\n{}",
        printed(&output),
        sshd.log()
    );
}

/// The credential of the world's one grant (`hallpass credentials`).
fn only_credential(world: &World) -> (String, serde_json::Value) {
    let mine = world.server.json(&world.token, &["requests", "--mine"]);
    let id = mine[0]["id"].as_str().expect("id").to_string();
    let credential = world
        .server
        .json(&world.token, &["credentials", &id, "--format", "json"]);
    (id, credential)
}

/// `ssh-keygen -Q`: whether OpenSSH reads `cert` as revoked in `krl`.
fn revoked_in(krl: &Path, cert: &Path) -> bool {
    let output = run(Command::new("ssh-keygen").arg("-Q").arg("-f").arg(krl).arg(cert));
    match output.status.code() {
        Some(0) => false,
        Some(1) => true,
        _ => panic!("ssh-keygen -Q failed: {}", printed(&output)),
    }
}

#[test]
fn hallpass_ssh_logs_in_with_a_certificate_that_a_revoke_puts_in_sshds_krl() {
    let world = World::new("ssh");
    let (sshd, krl) = setup(&world);
    hallpass_ssh(&world, &sshd, &["--for", "20m"], "granted");

    // The grant `hallpass ssh` made: its private key came with the first
    // fetch only, and is kept for the grant where that run put it.
    let (id, credential) = only_credential(&world);
    assert!(
        credential["env"].get("HALLPASS_SSH_PRIVATE_KEY").is_none(),
        "a second fetch carries no private key: {credential}"
    );
    assert_eq!(credential["one_time"]["included"], false, "{credential}");
    let kept = world.server.keys_dir().join(&id).join("id");
    let private = std::fs::read_to_string(&kept).expect("the key `hallpass ssh` kept");
    assert_eq!(mode(&kept), 0o600);
    assert_eq!(mode(kept.parent().expect("grant dir")), 0o700);
    let key = private_file(world.dir.path(), "id", &private);
    let certificate = credential["env"]["HALLPASS_SSH_CERTIFICATE"]
        .as_str()
        .expect("certificate");
    let cert = private_file(world.dir.path(), "id-cert.pub", &format!("{certificate}\n"));
    let user = login_user();
    let again = sshd.ssh(&key, &cert, &user, &[], &["echo", "ok"]);
    assert!(again.status.success(), "{}", printed(&again));
    // A second `hallpass ssh` on the same grant uses the kept key.
    hallpass_ssh(&world, &sshd, &[], "again");
    assert!(!revoked_in(&krl, &cert));
    // The private key is handed over, never kept by the server.
    let body = private.lines().nth(1).expect("a key body line");
    world.assert_not_stored(body);
    let delivered = world.end_event(&id, "grant.secret_delivered");
    assert_eq!(
        delivered["data"]["names"],
        serde_json::json!(["HALLPASS_SSH_PRIVATE_KEY"])
    );

    world.revoke_verified(&id);
    assert!(revoked_in(&krl, &cert), "the certificate is in the KRL sshd reads");
    let refused = sshd.ssh(&key, &cert, &user, &[], &["echo", "ok"]);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stdout).trim().is_empty(),
        "the revoked certificate still logs in; sshd log:\n{}",
        sshd.log()
    );
    // The list served to hosts that fetch it says what the one on disk
    // says (each carries the second it was made, so bytes may differ).
    let served = world.dir.path().join("served.krl");
    let fetched = world.server.run(
        &world.server.admin,
        &["target", "krl", &world.name, "--to", &served.to_string_lossy()],
    );
    assert!(fetched.status.success(), "{}", printed(&fetched));
    assert_eq!(krl_contents(&served), krl_contents(&krl));
    assert!(krl_contents(&krl).contains("serial:"), "{}", krl_contents(&krl));
}

/// The private key goes out once: `hallpass request --wait` keeps it for
/// `hallpass ssh`, and on a machine without it `hallpass ssh` says how to
/// get a new pair rather than failing in ssh.
#[test]
fn the_private_key_goes_out_once_and_is_kept_where_it_arrived() {
    let world = World::new("sshonce");
    let (sshd, _krl) = setup(&world);
    let asked = world.server.run(
        &world.token,
        &["request", &world.name, "--reason", "one key", "--for", "20m", "--wait"],
    );
    assert!(asked.status.success(), "{}", printed(&asked));
    let stdout = String::from_utf8_lossy(&asked.stdout);
    assert!(stdout.starts_with("ssh-ed25519-cert-v01@openssh.com "), "{stdout}");
    assert!(
        !stdout.contains("PRIVATE KEY"),
        "the token format prints the certificate only: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&asked.stderr);
    assert!(stderr.contains("handed out this once only: kept in "), "{stderr}");
    hallpass_ssh(&world, &sshd, &[], "kept");

    // Another machine (another key directory) has no key for the grant.
    let elsewhere = world.dir.path().join("other-machine");
    let output = world
        .server
        .cli(&world.token)
        .env("HALLPASS_KEYS_DIR", &elsewhere)
        .args(["ssh", &world.name, "--reason", "elsewhere", "--", "-p"])
        .arg(sshd.port.to_string())
        .arg(format!("{}@127.0.0.1", login_user()))
        .arg("true")
        .output()
        .expect("run hallpass");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{}", printed(&output));
    assert!(
        stderr.contains("is never shown again") && stderr.contains("hallpass release"),
        "{stderr}"
    );
    // Fetching it again as JSON says when it went out, without it.
    let (id, credential) = only_credential(&world);
    assert!(
        credential["env"].get("HALLPASS_SSH_PRIVATE_KEY").is_none(),
        "{credential}"
    );
    assert!(credential["one_time"]["delivered_at"].is_string(), "{credential}");
    let export = world.server.run(&world.server.admin, &["audit", "export"]);
    let delivered = String::from_utf8_lossy(&export.stdout)
        .lines()
        .filter(|line| line.contains("grant.secret_delivered") && line.contains(&id))
        .count();
    assert_eq!(delivered, 1);
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// What `ssh-keygen -Q -l` reads in a KRL: its revoked serials and keys.
fn krl_contents(krl: &Path) -> String {
    let output = run(Command::new("ssh-keygen").args(["-Q", "-l", "-f"]).arg(krl));
    assert!(output.status.success(), "{}", printed(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with("# KRL version") && !line.starts_with("# Generated at"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn hallpass_ssh_certifies_the_users_own_key() {
    let world = World::new("sshown");
    let (sshd, _krl) = setup(&world);
    let key = world.dir.path().join("own");
    let made = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "me@laptop", "-f"])
        .arg(&key));
    assert!(made.status.success(), "{}", printed(&made));
    hallpass_ssh(&world, &sshd, &["-i", &key.to_string_lossy()], "own");
    let (_, credential) = only_credential(&world);
    assert!(
        credential["env"].get("HALLPASS_SSH_PRIVATE_KEY").is_none(),
        "no key pair is made for a key of one's own: {credential}"
    );
}

/// Twenty grants on one target revoked at once: every revoke writes the
/// whole list, so each must see the others' grants; none is left
/// `revoke_failed` and OpenSSH reads every certificate as revoked.
#[test]
fn parallel_revokes_leave_every_certificate_in_the_krl() {
    let world = World::new("sshmany");
    let (_sshd, krl) = setup(&world);
    let server = &world.server;
    let grants: Vec<(String, std::path::PathBuf)> = (0..20)
        .map(|n| {
            let token = server.token(&format!("{}-{n}@example.com", world.name), "dev");
            let request = server.json(&token, &["request", &world.name, "--reason", "parallel revokes"]);
            let id = request["id"].as_str().expect("id").to_string();
            let credential = server.json(&token, &["credentials", &id, "--format", "json"]);
            let certificate = credential["env"]["HALLPASS_SSH_CERTIFICATE"]
                .as_str()
                .expect("certificate");
            let cert = private_file(world.dir.path(), &format!("{n}-cert.pub"), &format!("{certificate}\n"));
            (id, cert)
        })
        .collect();
    std::thread::scope(|scope| {
        for (id, _) in &grants {
            scope.spawn(|| world.revoke(id));
        }
    });
    for (id, cert) in &grants {
        let request = server.json(&server.admin, &["show", id]);
        assert_eq!(request["state"], "revoked", "{request}");
        assert!(revoked_in(&krl, cert), "grant {id} is missing from the KRL");
    }
}
