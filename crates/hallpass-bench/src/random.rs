//! Random names, tokens and keys for the benchmark's servers and databases,
//! read from `/dev/urandom`.

use std::fs::File;
use std::io::Read;

use anyhow::{Context, Result};

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes)
}

/// `2 × N` random lowercase hex digits.
pub fn random_hex<const N: usize>() -> Result<String> {
    Ok(random_bytes::<N>()?.iter().map(|b| format!("{b:02x}")).collect())
}

/// A random 32-byte seal key, standard base64 as `HALLPASS_SEAL_KEY` wants it.
pub fn random_seal_key() -> Result<String> {
    Ok(base64(&random_bytes::<32>()?))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_keys_are_32_bytes_of_base64() {
        assert_eq!(
            base64(b"hallpass-e2e-seal-key-32-bytes.!"),
            "aGFsbHBhc3MtZTJlLXNlYWwta2V5LTMyLWJ5dGVzLiE="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(random_seal_key().unwrap().len(), 44);
    }
}
