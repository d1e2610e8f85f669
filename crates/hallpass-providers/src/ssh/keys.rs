//! The keys of the ssh target: the target's CA key and a grant's generated
//! key pair, both Ed25519 derived from seeds only the server can compute
//! (so neither is stored), and the checks on a public key a requester sends.

use sha2::{Digest, Sha256};
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PrivateKey, PublicKey};

use super::grant::shorten;
use crate::Seed;

/// Longest public key line accepted: a 16384-bit RSA key fits in 3 KiB.
pub const MAX_PUBLIC_KEY_LEN: usize = 8192;
/// Smallest RSA modulus certified; OpenSSH's own minimum is 1024.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus certified (OpenSSH's maximum).
pub const MAX_RSA_BITS: usize = 16384;

/// Seed purpose of a target's CA key.
const CA_PURPOSE: &str = "ssh-ca-ed25519";
/// Seed purpose of a grant's generated key pair.
const USER_PURPOSE: &str = "ssh-user-ed25519";
/// Seed purpose of a grant's certificate nonce.
const NONCE_PURPOSE: &str = "ssh-certificate-nonce";

/// The CA key of a target, from its seed. The comment names the target,
/// kept to characters that cannot break an `authorized_keys`-style line.
pub fn ca_key(target_seed: &Seed, target_name: &str) -> Result<PrivateKey, String> {
    let keypair = Ed25519Keypair::from_seed(&target_seed.bytes(CA_PURPOSE));
    let comment: String = target_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    PrivateKey::new(KeypairData::Ed25519(keypair), format!("hallpass-ca@{comment}"))
        .map_err(|e| format!("cannot make the CA key: {e}"))
}

/// The key pair Hallpass generates for a grant whose requester sent no
/// public key.
pub fn generated_key(grant_seed: &Seed, key_id: &str) -> Result<PrivateKey, String> {
    let keypair = Ed25519Keypair::from_seed(&grant_seed.bytes(USER_PURPOSE));
    PrivateKey::new(KeypairData::Ed25519(keypair), format!("hallpass-{key_id}"))
        .map_err(|e| format!("cannot make the grant's key pair: {e}"))
}

/// The certificate nonce of a grant: fixed, so the certificate is the same
/// bytes on every call (Ed25519 signatures are deterministic too).
pub fn nonce(grant_seed: &Seed) -> Vec<u8> {
    grant_seed.bytes(NONCE_PURPOSE).to_vec()
}

/// The certificate serial of a grant: the first 64 bits of
/// SHA-256 of its id, never 0 (OpenSSH cannot revoke serial 0). Two grants
/// of one target share a serial with odds of about n²/2⁶⁵.
pub fn serial(grant_id: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"hallpass ssh certificate serial v1\0")
        .chain_update(grant_id.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first).max(1)
}

/// The certificate key id, which sshd logs at every login: the grant id,
/// when it is a plain identifier (Hallpass's are UUIDs) that cannot forge
/// or break a log line.
pub fn key_id(grant_id: &str) -> Result<String, String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@' | '+' | '=');
    if grant_id.is_empty() || grant_id.len() > 128 || !grant_id.chars().all(plain) {
        return Err(format!(
            "grant id {:?} cannot be a certificate key id: it must be 1 to 128 letters, digits or `._-:@+=`",
            shorten(grant_id)
        ));
    }
    Ok(grant_id.to_string())
}

/// `SHA256:...`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Checks a public key a requester sent: one OpenSSH public key line
/// (`type base64 [comment]`) of an Ed25519, ECDSA or RSA (≥ 2048 bits) key.
/// Returns it without its comment.
pub fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    if text.len() > MAX_PUBLIC_KEY_LEN {
        return Err(format!("the public key is longer than {MAX_PUBLIC_KEY_LEN} bytes"));
    }
    let line = text.trim();
    if line.is_empty() {
        return Err("the public key is empty".into());
    }
    if line.contains(['\n', '\r', '\0']) {
        return Err("send one public key, on one line".into());
    }
    let key_type = line.split_ascii_whitespace().next().unwrap_or_default();
    check_key_type(key_type)?;
    let mut key = PublicKey::from_openssh(line)
        .map_err(|e| format!("not a valid OpenSSH {key_type} public key ({e}); send the contents of a .pub file"))?;
    if let KeyData::Rsa(rsa) = key.key_data() {
        let bits = rsa
            .n
            .as_positive_bytes()
            .map(|n| {
                let n = &n[n.iter().take_while(|b| **b == 0).count()..];
                n.first().map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize)
            })
            .unwrap_or(0);
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are needed (or use an Ed25519 key)"
            ));
        }
        if bits > MAX_RSA_BITS {
            return Err(format!(
                "the RSA key has {bits} bits; at most {MAX_RSA_BITS} are accepted"
            ));
        }
    }
    key.set_comment("");
    Ok(key)
}

fn check_key_type(key_type: &str) -> Result<(), String> {
    const ACCEPTED: [&str; 5] = [
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
    ];
    if ACCEPTED.contains(&key_type) {
        return Ok(());
    }
    let shown = shorten(key_type);
    Err(if key_type.ends_with("-cert-v01@openssh.com") {
        "this is an SSH certificate, not a public key; send the public key (the .pub file) itself".to_string()
    } else if key_type == "ssh-dss" {
        "DSA keys are not accepted (OpenSSH has dropped them); send an Ed25519, ECDSA or RSA key".to_string()
    } else if key_type.starts_with("sk-") {
        format!("security-key ({shown}) keys are not accepted; send an Ed25519, ECDSA or RSA key")
    } else if key_type.contains('=') || key_type.contains('"') {
        "send the public key alone, without authorized_keys options before it".to_string()
    } else {
        format!(
            "unsupported key type {shown:?}; send an OpenSSH public key line of type {}",
            ACCEPTED.join(", ")
        )
    })
}
