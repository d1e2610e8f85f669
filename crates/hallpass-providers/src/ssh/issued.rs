//! What an issued ssh grant is: every field of its certificate, kept as
//! the grant's (non-secret) metadata, so that the certificate — the same
//! bytes each time — can be signed again whenever its requester asks,
//! whatever became of the role since.

use serde_json::{Map, Value, json};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::{Certificate, PrivateKey, PublicKey};

use super::grant::GrantSpec;
use super::keys;
use crate::Seed;

/// One issued certificate's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub serial: u64,
    pub key_id: String,
    pub spec: GrantSpec,
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds: the grant's expiry.
    pub valid_before: u64,
    /// The CA that signed it, `SHA256:...`.
    pub ca_fingerprint: String,
    /// The certified key, without comment.
    pub user_key: PublicKey,
    /// Whether Hallpass generated the key pair (and hands out its private
    /// half) rather than certifying the requester's own public key.
    pub key_generated: bool,
}

impl Issued {
    /// The metadata of the grant: only public values. The serial is a
    /// string, since JSON readers lose digits above 2⁵³.
    pub fn to_metadata(&self) -> Result<Value, String> {
        let mut out = Map::new();
        out.insert("type".into(), json!("ssh"));
        out.insert("serial".into(), json!(self.serial.to_string()));
        out.insert("key_id".into(), json!(self.key_id));
        self.spec.to_metadata(&mut out);
        out.insert("valid_after".into(), json!(self.valid_after));
        out.insert("valid_before".into(), json!(self.valid_before));
        out.insert("ca_fingerprint".into(), json!(self.ca_fingerprint));
        out.insert(
            "user_key_fingerprint".into(),
            json!(keys::fingerprint(self.user_key.key_data())),
        );
        out.insert("key_generated".into(), json!(self.key_generated));
        if !self.key_generated {
            let line = self
                .user_key
                .to_openssh()
                .map_err(|e| format!("cannot encode the public key: {e}"))?;
            out.insert("user_public_key".into(), json!(line));
        }
        Ok(Value::Object(out))
    }

    /// Reads [`Issued::to_metadata`] back; a generated key is derived again
    /// from the grant's seed and must match the fingerprint recorded.
    pub fn from_metadata(metadata: &Value, grant_seed: &Seed) -> Result<Self, String> {
        let map = metadata.as_object().ok_or("the grant's metadata is not an object")?;
        let text = |field: &str| {
            map.get(field)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("the grant's metadata has no `{field}`"))
        };
        let number = |field: &str| {
            map.get(field)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("the grant's metadata has no `{field}`"))
        };
        let key_id = text("key_id")?.to_string();
        let key_generated = map
            .get("key_generated")
            .and_then(Value::as_bool)
            .ok_or("the grant's metadata has no `key_generated`")?;
        let user_key = if key_generated {
            keys::generated_key(grant_seed, &key_id)?.public_key().clone()
        } else {
            keys::parse_public_key(text("user_public_key")?)?
        };
        let fingerprint = keys::fingerprint(user_key.key_data());
        if fingerprint != text("user_key_fingerprint")? {
            return Err("the grant's key no longer matches the fingerprint recorded at issue".into());
        }
        Ok(Self {
            serial: metadata_serial(metadata).ok_or("the grant's metadata has no `serial`")?,
            key_id,
            spec: GrantSpec::from_metadata(map)?,
            valid_after: number("valid_after")?,
            valid_before: number("valid_before")?,
            ca_fingerprint: text("ca_fingerprint")?.to_string(),
            user_key,
            key_generated,
        })
    }

    /// Signs the certificate with `ca`: the same bytes on every call.
    pub fn certificate(&self, ca: &PrivateKey, grant_seed: &Seed) -> Result<Certificate, String> {
        let signing = |e: ssh_key::Error| format!("cannot sign the certificate: {e}");
        let mut builder = Builder::new(
            keys::nonce(grant_seed),
            self.user_key.key_data().clone(),
            self.valid_after,
            self.valid_before,
        )
        .map_err(signing)?;
        builder.serial(self.serial).map_err(signing)?;
        builder.cert_type(CertType::User).map_err(signing)?;
        builder.key_id(self.key_id.clone()).map_err(signing)?;
        builder.comment(self.key_id.clone()).map_err(signing)?;
        for principal in &self.spec.principals {
            builder.valid_principal(principal.clone()).map_err(signing)?;
        }
        if let Some(command) = &self.spec.force_command {
            builder
                .critical_option("force-command", command.clone())
                .map_err(signing)?;
        }
        if let Some(addresses) = &self.spec.source_address {
            builder
                .critical_option("source-address", addresses.clone())
                .map_err(signing)?;
        }
        for extension in &self.spec.extensions {
            builder.extension(extension.clone(), "").map_err(signing)?;
        }
        builder.sign(ca).map_err(signing)
    }
}

/// The certificate serial recorded in a grant's metadata (a decimal string,
/// or a number from a hand-made record).
pub fn metadata_serial(metadata: &Value) -> Option<u64> {
    match metadata.get("serial")? {
        Value::String(text) => text.parse().ok(),
        other => other.as_u64(),
    }
    .filter(|serial| *serial != 0)
}
