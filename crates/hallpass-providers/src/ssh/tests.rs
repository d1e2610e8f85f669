//! Unit tests of the ssh target: settings, grant blocks and public keys are
//! checked strictly; serials, key ids and certificates are stable; no
//! private key reaches metadata, errors or Debug output. The tests against
//! a real sshd are in `tests/ssh.rs`.

use chrono::{Duration, TimeZone, Utc};
use futures::executor::block_on;
use serde_json::json;

use super::*;
use crate::Seed;

fn target(config: Value) -> TargetContext {
    TargetContext {
        name: "web".into(),
        config: config.as_object().cloned().unwrap_or_default(),
        secrets: TargetSecrets::new(),
        seed: Seed::for_target(b"unit-key", "web", Utc.timestamp_opt(1_700_000_000, 0).unwrap()),
    }
}

fn grant(id: &str, block: Value) -> GrantContext {
    let now = Utc::now();
    let mut grant = GrantContext::new(
        id,
        "alice@example.com",
        "web-deploy",
        target(json!({})),
        Seed::for_grant(b"unit-key", "web", id),
        now,
        now + Duration::minutes(30),
    );
    grant.grant = block.as_object().cloned().unwrap_or_default();
    grant
}

const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7S1qwahl4eSf7YqVmEHm/0KgnxM32rh3xS9FFivltR alice@laptop";

fn grant_error(block: Value) -> String {
    SshProvider
        .validate_grant(block.as_object().unwrap())
        .unwrap_err()
        .to_string()
}

#[test]
fn settings_are_checked() {
    let ok = |config: Value| SshConfig::parse(config.as_object().unwrap());
    assert_eq!(ok(json!({})).unwrap().backdate_seconds, DEFAULT_BACKDATE_SECONDS);
    let full = ok(json!({"krl_path": "/etc/ssh/web.krl", "backdate_seconds": 0})).unwrap();
    assert_eq!(full.krl_path, Some(PathBuf::from("/etc/ssh/web.krl")));
    assert_eq!(full.backdate_seconds, 0);
    for (config, expected) in [
        (json!({"krl": "/x"}), "unknown setting \"krl\""),
        (json!({"krl_path": "relative.krl"}), "absolute path"),
        (json!({"krl_path": "/etc/ssh/"}), "absolute path"),
        (json!({"krl_path": "/etc/../x.krl"}), "`..`"),
        (json!({"krl_path": "/etc/x\n.krl"}), "not a usable"),
        (json!({"krl_path": 5}), "must be a string"),
        (json!({"backdate_seconds": 3601}), "from 0 to 3600"),
        (json!({"backdate_seconds": -1}), "from 0 to 3600"),
    ] {
        let error = ok(config.clone()).unwrap_err().to_string();
        assert!(error.contains(expected), "{config}: {error}");
    }
    assert!(SshProvider.secrets().is_empty(), "an ssh target holds no secret");
}

#[test]
fn grant_blocks_are_checked() {
    let spec = GrantSpec::parse(json!({"principals": ["deploy", "svc.web-1@corp"]}).as_object().unwrap()).unwrap();
    assert_eq!(spec.extensions, vec!["permit-pty"], "the safe default");
    let spec = GrantSpec::parse(
        json!({"principals": ["a"], "extensions": ["permit-pty", "permit-agent-forwarding"],
               "force_command": "/usr/bin/backup --now", "source_address": " 10.0.0.0/8, 192.0.2.7,2001:db8::/32"})
        .as_object()
        .unwrap(),
    )
    .unwrap();
    assert_eq!(spec.extensions, vec!["permit-agent-forwarding", "permit-pty"]);
    assert_eq!(
        spec.source_address.as_deref(),
        Some("10.0.0.0/8,192.0.2.7,2001:db8::/32")
    );
    let listed = GrantSpec::parse(
        json!({"principals": ["a"], "source_address": ["10.1.0.0/16"]})
            .as_object()
            .unwrap(),
    );
    assert_eq!(listed.unwrap().source_address.as_deref(), Some("10.1.0.0/16"));

    for (block, expected) in [
        (json!({}), "`principals` is required"),
        (json!({"principals": []}), "at least one"),
        (json!({"principals": "root"}), "list of strings"),
        (json!({"principals": ["a", "a"]}), "listed twice"),
        (json!({"principals": ["*"]}), "not a login name"),
        (json!({"principals": ["a,b"]}), "not a login name"),
        (json!({"principals": ["-oProxyCommand"]}), "not a login name"),
        (json!({"principals": ["ro ot"]}), "not a login name"),
        (json!({"principals": ["é"]}), "not a login name"),
        (json!({"principals": ["x'; rm -rf /"]}), "not a login name"),
        (json!({"principals": ["x".repeat(200)]}), "1 to 64"),
        (
            json!({"principals": ["a"], "extensions": ["permit-everything"]}),
            "unknown extension",
        ),
        (
            json!({"principals": ["a"], "extensions": ["permit-pty", "permit-pty"]}),
            "listed twice",
        ),
        (json!({"principals": ["a"], "force_command": ""}), "must not be empty"),
        (
            json!({"principals": ["a"], "force_command": "ls\nrm -rf /"}),
            "control characters",
        ),
        (
            json!({"principals": ["a"], "source_address": "10.0.0.1/8"}),
            "host bits",
        ),
        (
            json!({"principals": ["a"], "source_address": "10.0.0.0/33"}),
            "not an IP address",
        ),
        (
            json!({"principals": ["a"], "source_address": "10.0.0.0/+8"}),
            "not an IP address",
        ),
        (
            json!({"principals": ["a"], "source_address": "10.0.0.0/8,"}),
            "not an IP address",
        ),
        (json!({"principals": ["a"], "source_address": "*"}), "not an IP address"),
        (
            json!({"principals": ["a"], "source_address": "example.com"}),
            "not an IP address",
        ),
        (
            json!({"principals": ["a"], "shell": "/bin/sh"}),
            "unknown setting \"shell\"",
        ),
    ] {
        let error = grant_error(block.clone());
        assert!(error.contains(expected), "{block}: {error}");
        assert!(!error.contains('\n'), "{error}");
    }
    // Hostile values are shown quoted and cut short.
    let error = grant_error(json!({"principals": [format!("\"; DROP {}", "y".repeat(300))]}));
    assert!(error.len() < 300, "{error}");
}

#[test]
fn public_keys_are_checked() {
    let key = keys::parse_public_key(ED25519).unwrap();
    assert_eq!(key.comment(), "", "the comment is dropped");
    assert!(SshProvider.validate_public_key(&format!("  {ED25519}\n")).is_ok());
    let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMmXNhapHYQGaivH+o0PVb7mYMVTevbwfBNPO0YRoKzukJpCwqJAzFvK4xaAkMBaa0+5a1QZegBeG0F2sH4YAkY=";
    assert!(SshProvider.validate_public_key(ecdsa).is_ok());
    let cert = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t";
    for (text, expected) in [
        ("", "empty"),
        (cert, "certificate, not a public key"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "DSA keys"),
        ("sk-ssh-ed25519@openssh.com AAAA", "security-key"),
        ("command=\"id\" ssh-ed25519 AAAA", "without authorized_keys options"),
        ("ssh-foo AAAA", "unsupported key type"),
        (
            "ssh-ed25519 AAAAnot-base64!",
            "not a valid OpenSSH ssh-ed25519 public key",
        ),
        (
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIK7S1qwahl4eSf7YqVmEHm/0KgnxM32rh3xS9FFivltR",
            "not a valid",
        ),
    ] {
        let error = SshProvider.validate_public_key(text).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}: {error}");
    }
    let two = format!("{ED25519}\n{ED25519}");
    assert!(
        SshProvider
            .validate_public_key(&two)
            .unwrap_err()
            .to_string()
            .contains("one line")
    );
    let huge = format!("ssh-rsa {}", "A".repeat(keys::MAX_PUBLIC_KEY_LEN));
    assert!(
        SshProvider
            .validate_public_key(&huge)
            .unwrap_err()
            .to_string()
            .contains("longer than")
    );
    // A 1024-bit RSA key: e = 65537, n = 1024 bits with the top bit set.
    let mut blob = Vec::new();
    for part in [&b"ssh-rsa"[..], &[1, 0, 1], &[&[0u8][..], &[0x80; 128]].concat()] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    use base64::Engine as _;
    let small = format!("ssh-rsa {}", base64::engine::general_purpose::STANDARD.encode(&blob));
    let error = SshProvider.validate_public_key(&small).unwrap_err().to_string();
    assert!(error.contains("has 1024 bits; at least 2048"), "{error}");
}

#[test]
fn serials_are_stable_distinct_and_never_zero() {
    assert_eq!(keys::serial("g-1"), keys::serial("g-1"));
    assert_ne!(keys::serial("g-1"), keys::serial("g-2"));
    let serials: std::collections::BTreeSet<u64> = (0..10_000).map(|i| keys::serial(&format!("g{i}"))).collect();
    assert_eq!(serials.len(), 10_000);
    assert!(!serials.contains(&0));
}

#[test]
fn key_ids_are_plain_grant_ids() {
    assert_eq!(
        keys::key_id("0192b3c4-aaaa-7bbb-8ccc-123456789abc").unwrap(),
        "0192b3c4-aaaa-7bbb-8ccc-123456789abc"
    );
    for hostile in ["", "a b", "a\"b", "id\nFake log line", "é", &"x".repeat(129)] {
        assert!(keys::key_id(hostile).is_err(), "{hostile:?}");
    }
    let error = block_on(SshProvider.issue(&grant("evil\ngrant", json!({"principals": ["root"]})))).unwrap_err();
    assert!(error.to_string().contains("cannot be a certificate key id"), "{error}");
}

#[test]
fn certificates_are_the_same_bytes_every_time_and_match_the_grant() {
    let grant = grant("g-cert", json!({"principals": ["deploy"], "force_command": "uptime"}));
    let metadata = block_on(SshProvider.issue(&grant)).unwrap();
    assert_eq!(
        metadata,
        block_on(SshProvider.issue(&grant)).unwrap(),
        "issue is idempotent"
    );
    let a = block_on(SshProvider.credential(&grant, &metadata)).unwrap();
    let b = block_on(SshProvider.credential(&grant, &metadata)).unwrap();
    assert_eq!(a.token, b.token);
    assert_eq!(a.once[PRIVATE_KEY_ENV], b.once[PRIVATE_KEY_ENV]);
    // The private key is a one-time part: never in the repeatable `env`.
    assert!(!a.env.contains_key(PRIVATE_KEY_ENV));
    assert_eq!(a.once.keys().collect::<Vec<_>>(), [PRIVATE_KEY_ENV]);
    assert_eq!(a.credential_type, "ssh");
    assert_eq!(a.env[CERTIFICATE_ENV], a.token);

    let cert = ssh_key::Certificate::from_openssh(&a.token).unwrap();
    assert_eq!(cert.serial(), keys::serial("g-cert"));
    assert_eq!(cert.key_id(), "g-cert");
    assert_eq!(cert.valid_principals(), ["deploy".to_string()]);
    assert_eq!(cert.valid_before(), grant.expires_at.timestamp() as u64);
    assert_eq!(
        cert.valid_after(),
        grant.activated_at.timestamp() as u64 - DEFAULT_BACKDATE_SECONDS
    );
    assert_eq!(
        cert.critical_options().get("force-command").map(String::as_str),
        Some("uptime")
    );
    assert!(cert.extensions().contains_key("permit-pty"));
    assert!(!cert.extensions().contains_key("permit-port-forwarding"));
    let anchor = SshProvider.trust_anchor(&grant.target).unwrap().unwrap();
    assert!(
        anchor.starts_with("ssh-ed25519 AAAA") && anchor.ends_with(" hallpass-ca@web"),
        "{anchor}"
    );
    let ca = ssh_key::PublicKey::from_openssh(&anchor).unwrap();
    cert.validate([&ca.fingerprint(ssh_key::HashAlg::Sha256)]).unwrap();

    // The private key matches the certified one.
    let private = ssh_key::PrivateKey::from_openssh(&a.once[PRIVATE_KEY_ENV]).unwrap();
    assert_eq!(private.public_key().key_data(), cert.public_key());
}

#[test]
fn a_sent_public_key_is_certified_and_no_private_key_is_handed_out() {
    let mut grant = grant("g-own", json!({"principals": ["deploy"]}));
    grant.public_key = Some(ED25519.into());
    let metadata = block_on(SshProvider.issue(&grant)).unwrap();
    assert_eq!(metadata["key_generated"], json!(false));
    let credential = block_on(SshProvider.credential(&grant, &metadata)).unwrap();
    assert!(!credential.env.contains_key(PRIVATE_KEY_ENV));
    assert!(credential.once.is_empty());
    let cert = ssh_key::Certificate::from_openssh(&credential.token).unwrap();
    assert_eq!(cert.public_key(), keys::parse_public_key(ED25519).unwrap().key_data());
}

#[test]
fn metadata_is_public_and_enough_once_the_role_changed() {
    let grant = grant(
        "g-meta",
        json!({"principals": ["deploy", "ops"], "source_address": "10.0.0.0/8"}),
    );
    let metadata = block_on(SshProvider.issue(&grant)).unwrap();
    let credential = block_on(SshProvider.credential(&grant, &metadata)).unwrap();
    let text = metadata.to_string();
    let private = &credential.once[PRIVATE_KEY_ENV];
    assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    let pem_body: String = private.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!text.contains(&pem_body[..40]), "{text}");
    for field in [
        "serial",
        "key_id",
        "principals",
        "valid_before",
        "ca_fingerprint",
        "user_key_fingerprint",
    ] {
        assert!(metadata.get(field).is_some(), "{field} missing from {text}");
    }
    assert_eq!(metadata["serial"], json!(keys::serial("g-meta").to_string()));
    assert_eq!(metadata["key_generated"], json!(true));
    assert!(!format!("{credential:?}").contains("PRIVATE"));

    // The role now grants something else: the certificate is still the one issued.
    let mut changed = grant.clone();
    changed.grant = json!({"principals": ["root"]}).as_object().cloned().unwrap();
    let again = block_on(SshProvider.credential(&changed, &metadata)).unwrap();
    assert_eq!(again.token, credential.token);

    // Another CA (the target recreated) cannot make it any more.
    let mut recreated = grant.clone();
    recreated.target.seed = Seed::for_target(b"unit-key", "web", Utc::now());
    let error = block_on(SshProvider.credential(&recreated, &metadata))
        .unwrap_err()
        .to_string();
    assert!(error.contains("CA key changed"), "{error}");
}

#[test]
fn revocation_lists_hold_the_serials_of_the_revoked_grants() {
    let target = target(json!({}));
    let revoked: Vec<RevokedGrant> = ["g-a", "g-b"]
        .iter()
        .map(|id| {
            let grant = grant(id, json!({"principals": ["deploy"]}));
            RevokedGrant {
                grant_id: id.to_string(),
                metadata: block_on(SshProvider.issue(&grant)).unwrap(),
                expires_at: grant.expires_at,
            }
        })
        .collect();
    let bytes = SshProvider.revocation_list(&target, &revoked).unwrap().unwrap();
    let list = krl::parse(&bytes).unwrap();
    let ca = SshProvider::ca_blob(&SshProvider::ca(&target).unwrap()).unwrap();
    let mut expected = vec![keys::serial("g-a"), keys::serial("g-b")];
    expected.sort_unstable();
    assert_eq!(list.certificates[0].serials, expected);
    assert_eq!(list.certificates[0].ca_key, ca);
    assert!(!list.revokes(&ca, keys::serial("g-c"), "g-c"));
}

#[test]
fn without_a_krl_path_revoke_succeeds_and_verify_says_gone() {
    let grant = grant("g-served", json!({"principals": ["deploy"]}));
    let metadata = block_on(SshProvider.issue(&grant)).unwrap();
    block_on(SshProvider.revoke(&grant, &metadata)).unwrap();
    assert_eq!(
        block_on(SshProvider.verify(&grant, &metadata)).unwrap(),
        Verification::Gone
    );
}

#[test]
fn verify_reads_the_krl_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.krl");
    let mut grant = grant("g-file", json!({"principals": ["deploy"]}));
    grant.target = target(json!({"krl_path": path.to_str().unwrap()}));
    let metadata = block_on(SshProvider.issue(&grant)).unwrap();
    let remaining = block_on(SshProvider.verify(&grant, &metadata)).unwrap();
    assert!(
        matches!(&remaining, Verification::Remaining(m) if m.contains("no KRL")),
        "{remaining:?}"
    );
    std::fs::write(&path, b"garbage").unwrap();
    let remaining = block_on(SshProvider.verify(&grant, &metadata)).unwrap();
    assert!(
        matches!(&remaining, Verification::Remaining(m) if m.contains("not a valid KRL")),
        "{remaining:?}"
    );
    // `revoked` lacks this grant: revoke adds it all the same.
    block_on(SshProvider.revoke(&grant, &metadata)).unwrap();
    assert_eq!(
        block_on(SshProvider.verify(&grant, &metadata)).unwrap(),
        Verification::Gone
    );
    // Another grant's serial is not in it.
    let other = {
        let mut other = grant.clone();
        other.grant_id = "g-other".into();
        other.seed = Seed::for_grant(b"unit-key", "web", "g-other");
        other
    };
    let other_metadata = block_on(SshProvider.issue(&other)).unwrap();
    let remaining = block_on(SshProvider.verify(&other, &other_metadata)).unwrap();
    assert!(
        matches!(&remaining, Verification::Remaining(m) if m.contains("does not revoke")),
        "{remaining:?}"
    );
    // An expired certificate is gone whatever the list says.
    let mut expired = other_metadata.clone();
    expired["valid_before"] = json!(1);
    assert_eq!(
        block_on(SshProvider.verify(&other, &expired)).unwrap(),
        Verification::Gone
    );
}

#[test]
fn target_test_reports_the_ca_line_and_the_krl_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.krl");
    let target = target(json!({"krl_path": path.to_str().unwrap()}));
    let checks = block_on(SshProvider.test(&target)).unwrap();
    let anchor = SshProvider.trust_anchor(&target).unwrap().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c.name == "ca" && c.ok && c.detail.contains(&anchor))
    );
    let krl = checks.iter().find(|c| c.name == "krl").unwrap();
    assert!(!krl.ok && krl.detail.contains("does not exist yet"), "{krl:?}");
    std::fs::write(&path, SshProvider.revocation_list(&target, &[]).unwrap().unwrap()).unwrap();
    let checks = block_on(SshProvider.test(&target)).unwrap();
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
    let missing_dir = self::target(json!({"krl_path": "/nonexistent-hallpass-dir/x.krl"}));
    let checks = block_on(SshProvider.test(&missing_dir)).unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c.name == "krl" && !c.ok && c.detail.contains("does not exist"))
    );
}
