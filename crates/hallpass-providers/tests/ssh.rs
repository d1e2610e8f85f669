//! The ssh target against the real OpenSSH: each test starts its own
//! throwaway sshd that trusts the test target's CA and reads its KRL, then
//! logs in with the real `ssh` client using the certificates Hallpass
//! issues, revokes them, and asks `ssh-keygen -Q` (OpenSSH's own KRL
//! checker) what it makes of the list Hallpass wrote.

mod support;

use support::sshd::{Sshd, login_user, run};

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::Utc;
use futures::executor::block_on;
use hallpass_providers::ssh::{CERTIFICATE_ENV, PRIVATE_KEY_ENV, SshProvider};
use hallpass_providers::{CredentialProvider, GrantContext, RevokedGrant, Seed, TargetContext, Verification};
use serde_json::{Value, json};

/// A target with its own CA (a unique name and seed) and KRL file.
struct Setup {
    dir: tempfile::TempDir,
    target: TargetContext,
    krl: PathBuf,
    sshd: Sshd,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let krl = dir.path().join("revoked.krl");
    let name = support::unique("ssh");
    let target = TargetContext {
        name: name.clone(),
        config: json!({"krl_path": krl.to_str().unwrap()}).as_object().cloned().unwrap(),
        secrets: Default::default(),
        seed: Seed::for_target(b"integration-key", &name, Utc::now()),
    };
    // sshd refuses every key while its RevokedKeys file is missing, so the
    // list starts out empty, as an administrator sets it up.
    fs::write(&krl, SshProvider.revocation_list(&target, &[]).unwrap().unwrap()).unwrap();
    let anchor = SshProvider.trust_anchor(&target).unwrap().unwrap();
    let sshd = Sshd::start(&anchor, &krl);
    Setup { dir, target, krl, sshd }
}

impl Setup {
    fn grant(&self, block: Value) -> GrantContext {
        let id = support::unique("grant-");
        let now = Utc::now();
        let mut grant = GrantContext::new(
            id.clone(),
            "alice@example.com",
            "ssh-role",
            self.target.clone(),
            Seed::for_grant(b"integration-key", &self.target.name, &id),
            now,
            now + chrono::Duration::minutes(10),
        );
        grant.grant = block.as_object().cloned().unwrap();
        grant
    }

    /// Issues and fetches the credential; writes the certificate (and the
    /// generated private key, or `own_key`) for the ssh client.
    fn issue(&self, grant: &GrantContext, own_key: Option<&Path>) -> (Value, PathBuf, PathBuf) {
        let metadata = block_on(SshProvider.issue(grant)).unwrap();
        let credential = block_on(SshProvider.credential(grant, &metadata)).unwrap();
        let cert = self.dir.path().join(format!("{}-cert.pub", grant.grant_id));
        fs::write(&cert, format!("{}\n", credential.env[CERTIFICATE_ENV])).unwrap();
        let key = match own_key {
            Some(key) => key.to_path_buf(),
            None => {
                let key = self.dir.path().join(&grant.grant_id);
                fs::write(&key, &credential.once[PRIVATE_KEY_ENV]).unwrap();
                fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
                key
            }
        };
        (metadata, key, cert)
    }

    fn revoke(&self, grant: &mut GrantContext, metadata: &Value, earlier: &[RevokedGrant]) {
        grant.revoked = earlier.to_vec();
        grant.revoked.push(RevokedGrant {
            grant_id: grant.grant_id.clone(),
            metadata: metadata.clone(),
            expires_at: grant.expires_at,
        });
        block_on(SshProvider.revoke(grant, metadata)).unwrap();
    }

    /// `ssh-keygen -Q`: true when OpenSSH reads `cert` as revoked in the KRL.
    fn openssh_says_revoked(&self, cert: &Path) -> bool {
        let out = run(Command::new("ssh-keygen").arg("-Q").arg("-f").arg(&self.krl).arg(cert));
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {
                assert!(text.contains(": ok"), "{text}");
                false
            }
            Some(1) => {
                assert!(text.contains("REVOKED"), "{text}");
                true
            }
            _ => panic!("ssh-keygen -Q failed: {text}"),
        }
    }
}

fn user_keygen(dir: &Path, kind: &[&str]) -> (PathBuf, String) {
    let key = dir.join(support::unique("userkey"));
    let out = run(Command::new("ssh-keygen")
        .arg("-q")
        .args(kind)
        .args(["-N", "", "-C", "me@laptop", "-f"])
        .arg(&key));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn assert_logs_in(setup: &Setup, key: &Path, cert: &Path, user: &str) {
    let out = setup.sshd.ssh(key, cert, user, &[], &["echo", "ok"]);
    assert!(
        out.status.success() && stdout(&out) == "ok",
        "login failed: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        setup.sshd.log()
    );
}

fn assert_refused(setup: &Setup, key: &Path, cert: &Path, user: &str, extra: &[&str]) {
    let out = setup.sshd.ssh(key, cert, user, extra, &["echo", "ok"]);
    assert!(
        !out.status.success() && stdout(&out).is_empty(),
        "login should have been refused; sshd log:\n{}",
        setup.sshd.log()
    );
}

#[test]
fn a_generated_key_pair_logs_in_until_revoked() {
    let s = setup();
    let user = login_user();
    let mut grant = s.grant(json!({"principals": [user]}));
    let (metadata, key, cert) = s.issue(&grant, None);
    assert_eq!(metadata["key_generated"], json!(true));
    assert_logs_in(&s, &key, &cert, &user);
    // The certificate is the same bytes on every call.
    let again = block_on(SshProvider.credential(&grant, &metadata)).unwrap();
    assert_eq!(format!("{}\n", again.token), fs::read_to_string(&cert).unwrap());
    assert!(!s.openssh_says_revoked(&cert));

    s.revoke(&mut grant, &metadata, &[]);
    assert!(s.openssh_says_revoked(&cert));
    assert_refused(&s, &key, &cert, &user, &[]);
    assert!(s.sshd.log().contains("revoked"), "{}", s.sshd.log());
    assert_eq!(
        block_on(SshProvider.verify(&grant, &metadata)).unwrap(),
        Verification::Gone
    );
}

#[test]
fn the_requesters_own_keys_are_certified() {
    let s = setup();
    let user = login_user();
    for kind in [
        &["-t", "ed25519"][..],
        &["-t", "ecdsa", "-b", "384"],
        &["-t", "rsa", "-b", "3072"],
    ] {
        let (key, public) = user_keygen(s.dir.path(), kind);
        SshProvider.validate_public_key(&public).unwrap();
        let mut grant = s.grant(json!({"principals": [user]}));
        grant.public_key = Some(public);
        let (metadata, _, cert) = s.issue(&grant, Some(&key));
        assert_eq!(metadata["key_generated"], json!(false));
        let credential = block_on(SshProvider.credential(&grant, &metadata)).unwrap();
        assert!(!credential.env.contains_key(PRIVATE_KEY_ENV), "{kind:?}");
        assert_logs_in(&s, &key, &cert, &user);
        // Another key with this certificate does not log in.
        let (other, _) = user_keygen(s.dir.path(), &["-t", "ed25519"]);
        assert_refused(&s, &other, &cert, &user, &[]);
    }
    let (_, small) = user_keygen(s.dir.path(), &["-t", "rsa", "-b", "1024"]);
    let error = SshProvider.validate_public_key(&small).unwrap_err().to_string();
    assert!(error.contains("1024 bits"), "{error}");
}

#[test]
fn revoking_keeps_earlier_revocations_and_spares_other_grants() {
    let s = setup();
    let user = login_user();
    let mut first = s.grant(json!({"principals": [user]}));
    let (first_meta, first_key, first_cert) = s.issue(&first, None);
    let mut second = s.grant(json!({"principals": [user]}));
    let (second_meta, second_key, second_cert) = s.issue(&second, None);
    let kept = s.grant(json!({"principals": [user]}));
    let (kept_meta, kept_key, kept_cert) = s.issue(&kept, None);

    s.revoke(&mut first, &first_meta, &[]);
    let earlier = first.revoked.clone();
    // A reader that opened the list before (sshd, mid-login) keeps reading
    // the whole old list: the file is replaced by a rename, never
    // rewritten in place.
    let old_bytes = fs::read(&s.krl).unwrap();
    let held = fs::File::open(&s.krl).unwrap();
    s.revoke(&mut second, &second_meta, &earlier);
    assert_ne!(held.metadata().unwrap().ino(), fs::metadata(&s.krl).unwrap().ino());
    let mut still = Vec::new();
    std::io::Read::read_to_end(&mut &held, &mut still).unwrap();
    assert_eq!(still, old_bytes);
    // Revoking again is fine and changes nothing that matters.
    s.revoke(&mut second, &second_meta, &earlier);
    let after = fs::metadata(&s.krl).unwrap();
    assert_eq!(after.permissions().mode() & 0o777, 0o644);
    let leftovers: Vec<_> = fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    assert!(s.openssh_says_revoked(&first_cert));
    assert!(s.openssh_says_revoked(&second_cert));
    assert!(!s.openssh_says_revoked(&kept_cert));
    assert_refused(&s, &first_key, &first_cert, &user, &[]);
    assert_refused(&s, &second_key, &second_cert, &user, &[]);
    assert_logs_in(&s, &kept_key, &kept_cert, &user);
    assert_eq!(
        block_on(SshProvider.verify(&first, &first_meta)).unwrap(),
        Verification::Gone
    );
    assert!(matches!(
        block_on(SshProvider.verify(&kept, &kept_meta)).unwrap(),
        Verification::Remaining(_)
    ));
    // OpenSSH reads the list as Hallpass meant it.
    let listed = run(Command::new("ssh-keygen").args(["-Q", "-l", "-f"]).arg(&s.krl));
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    for meta in [&first_meta, &second_meta] {
        assert!(listed.contains(meta["serial"].as_str().unwrap()), "{listed}");
    }
    assert!(!listed.contains(kept_meta["serial"].as_str().unwrap()), "{listed}");
}

#[test]
fn principals_are_enforced() {
    let s = setup();
    let user = login_user();
    let grant = s.grant(json!({"principals": ["someone-else", "deploy@corp"]}));
    let (_, key, cert) = s.issue(&grant, None);
    assert_refused(&s, &key, &cert, &user, &[]);
    assert!(s.sshd.log().contains("not a listed principal"), "{}", s.sshd.log());
    // Any one of the listed principals is enough.
    let grant = s.grant(json!({"principals": ["someone-else", user]}));
    let (_, key, cert) = s.issue(&grant, None);
    assert_logs_in(&s, &key, &cert, &user);
}

#[test]
fn force_command_overrides_the_command_asked_for() {
    let s = setup();
    let user = login_user();
    let grant = s.grant(json!({"principals": [user], "force_command": "echo forced \"$SSH_ORIGINAL_COMMAND\""}));
    let (_, key, cert) = s.issue(&grant, None);
    let out = s.sshd.ssh(&key, &cert, &user, &[], &["echo", "ok"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out), "forced echo ok");
}

#[test]
fn source_address_is_enforced() {
    let s = setup();
    let user = login_user();
    let elsewhere = s.grant(json!({"principals": [user], "source_address": "192.0.2.0/24,2001:db8::/32"}));
    let (_, key, cert) = s.issue(&elsewhere, None);
    assert_refused(&s, &key, &cert, &user, &[]);
    assert!(s.sshd.log().contains("source address"), "{}", s.sshd.log());
    let here = s.grant(json!({"principals": [user], "source_address": "10.0.0.0/8, 127.0.0.0/8"}));
    let (_, key, cert) = s.issue(&here, None);
    assert_logs_in(&s, &key, &cert, &user);
}

#[test]
fn extensions_are_enforced_and_forwarding_is_off_by_default() {
    let s = setup();
    let user = login_user();
    // A remote forward is requested at once; sshd refuses it without
    // permit-port-forwarding, and the client then gives up.
    let forward = ["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"];
    let default = s.grant(json!({"principals": [user]}));
    let (_, key, cert) = s.issue(&default, None);
    assert_logs_in(&s, &key, &cert, &user);
    assert_refused(&s, &key, &cert, &user, &forward);
    let allowed = s.grant(json!({"principals": [user], "extensions": ["permit-pty", "permit-port-forwarding"]}));
    let (_, key, cert) = s.issue(&allowed, None);
    let out = s.sshd.ssh(&key, &cert, &user, &forward, &["echo", "ok"]);
    assert_eq!(stdout(&out), "ok", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn hostile_values_are_refused_before_reaching_a_certificate() {
    let s = setup();
    for principals in [
        json!(["root,admin"]),
        json!(["*"]),
        json!(["a b"]),
        json!([format!("x{}", "y".repeat(200))]),
    ] {
        let grant = s.grant(json!({"principals": principals}));
        assert!(SshProvider.validate_grant(&grant.grant).is_err(), "{principals}");
        assert!(block_on(SshProvider.issue(&grant)).is_err(), "{principals}");
    }
    let mut grant = s.grant(json!({"principals": ["root"]}));
    grant.grant_id = "x\" (serial 1) signed by evil; \n".into();
    let error = block_on(SshProvider.issue(&grant)).unwrap_err().to_string();
    assert!(error.contains("key id"), "{error}");
    let mut grant = s.grant(json!({"principals": ["root"]}));
    grant.public_key = Some("ssh-ed25519-cert-v01@openssh.com AAAA".into());
    assert!(
        block_on(SshProvider.issue(&grant))
            .unwrap_err()
            .to_string()
            .contains("certificate")
    );
}

#[test]
fn openssh_made_lists_are_read_the_way_openssh_reads_them() {
    let s = setup();
    let user = login_user();
    let grants: Vec<_> = (0..3).map(|_| s.grant(json!({"principals": [user]}))).collect();
    let issued: Vec<_> = grants.iter().map(|g| s.issue(g, None)).collect();
    let serial = |i: usize| issued[i].0["serial"].as_str().unwrap().parse::<u64>().unwrap();
    // A list ssh-keygen makes: one serial, a range around another, and a
    // key id; it picks its own encodings (lists, ranges, bitmaps).
    let ca = s.dir.path().join("ca.pub");
    fs::write(&ca, SshProvider.trust_anchor(&s.target).unwrap().unwrap()).unwrap();
    let spec = s.dir.path().join("spec");
    fs::write(
        &spec,
        format!(
            "serial: {}\nserial: {}-{}\nid: {}\n",
            serial(0),
            serial(1).saturating_sub(3).max(1),
            serial(1).saturating_add(3),
            grants[2].grant_id
        ),
    )
    .unwrap();
    let out = run(Command::new("ssh-keygen")
        .args(["-k", "-s"])
        .arg(&ca)
        .arg("-f")
        .arg(&s.krl)
        .arg(&spec));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (grant, (metadata, key, cert)) in grants.iter().zip(&issued) {
        assert!(s.openssh_says_revoked(cert));
        assert_refused(&s, key, cert, &user, &[]);
        assert_eq!(
            block_on(SshProvider.verify(grant, metadata)).unwrap(),
            Verification::Gone
        );
    }
    let other = s.grant(json!({"principals": [user]}));
    let (other_meta, _, _) = s.issue(&other, None);
    assert!(matches!(
        block_on(SshProvider.verify(&other, &other_meta)).unwrap(),
        Verification::Remaining(_)
    ));
}

#[test]
fn sshd_refuses_everyone_while_the_list_is_missing_or_broken_and_a_revoke_repairs_it() {
    let s = setup();
    let user = login_user();
    let checks = block_on(SshProvider.test(&s.target)).unwrap();
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
    let mut gone = s.grant(json!({"principals": [user]}));
    let (gone_meta, _, _) = s.issue(&gone, None);
    let kept = s.grant(json!({"principals": [user]}));
    let (_, key, cert) = s.issue(&kept, None);
    assert_logs_in(&s, &key, &cert, &user);

    fs::remove_file(&s.krl).unwrap();
    assert_refused(&s, &key, &cert, &user, &[]);
    let checks = block_on(SshProvider.test(&s.target)).unwrap();
    assert!(checks.iter().any(|c| c.name == "krl" && !c.ok), "{checks:?}");
    fs::write(&s.krl, b"not a KRL").unwrap();
    assert_refused(&s, &key, &cert, &user, &[]);
    assert!(matches!(
        block_on(SshProvider.verify(&gone, &gone_meta)).unwrap(),
        Verification::Remaining(_)
    ));

    s.revoke(&mut gone, &gone_meta, &[]);
    assert_logs_in(&s, &key, &cert, &user);
    assert_eq!(
        block_on(SshProvider.verify(&gone, &gone_meta)).unwrap(),
        Verification::Gone
    );
}
