//! Signing webhook calls as Standard Webhooks does: a `whsec_` key, and a
//! `v1` HMAC-SHA256 signature over `{webhook-id}.{webhook-timestamp}.{body}`,
//! so that any Standard Webhooks receiver library can check our calls.

use std::fmt;
use std::ops::RangeInclusive;

use aws_lc_rs::{hmac, rand};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::{HMAC_SECRET, invalid};
use crate::{ProviderError, SecretValue};

/// What every signing key starts with.
pub const KEY_PREFIX: &str = "whsec_";
/// Allowed sizes of the key once base64-decoded, in bytes.
pub const KEY_BYTES: RangeInclusive<usize> = 24..=64;
/// Size of the keys [`SigningKey::generate`] makes.
pub const GENERATED_KEY_BYTES: usize = 32;
/// How a user makes a key of the right form.
pub const GENERATE_HINT: &str = "echo \"whsec_$(openssl rand -base64 32)\"";

/// The HMAC key of a webhook target; never prints.
pub struct SigningKey(hmac::Key);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// Reads the `hmac_secret` secret: `whsec_` and the standard, padded
    /// base64 of 24 to 64 bytes. Surrounding whitespace (a file's final
    /// newline) is ignored. Errors never repeat the value.
    pub fn parse(secret: &SecretValue) -> Result<Self, ProviderError> {
        let refuse = |problem: &str| {
            invalid(format!(
                "secret `{HMAC_SECRET}` {problem}; it must be `{KEY_PREFIX}` followed by the base64 of {} to {} \
                 random bytes; generate one with: {GENERATE_HINT}",
                KEY_BYTES.start(),
                KEY_BYTES.end()
            ))
        };
        let Some(encoded) = secret.expose().trim().strip_prefix(KEY_PREFIX) else {
            return Err(refuse(&format!("does not start with `{KEY_PREFIX}`")));
        };
        let bytes = Zeroizing::new(
            STANDARD
                .decode(encoded)
                .map_err(|_| refuse(&format!("is not valid base64 after `{KEY_PREFIX}`")))?,
        );
        if !KEY_BYTES.contains(&bytes.len()) {
            return Err(refuse(&format!("holds {} bytes", bytes.len())));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// A new random key in `whsec_` form.
    pub fn generate() -> Result<SecretValue, ProviderError> {
        let mut bytes = Zeroizing::new([0u8; GENERATED_KEY_BYTES]);
        rand::fill(bytes.as_mut())
            .map_err(|_| ProviderError::Credential("the system random generator failed".into()))?;
        Ok(SecretValue::new(format!(
            "{KEY_PREFIX}{}",
            STANDARD.encode(bytes.as_ref())
        )))
    }

    /// The `webhook-signature` header value for one call: `v1,` and the
    /// base64 of HMAC-SHA256 over `{webhook_id}.{timestamp}.{body}`.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(format!("{webhook_id}.{timestamp}.").as_bytes());
        context.update(body);
        format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
    }
}
