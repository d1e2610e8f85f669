//! The audit log on the wire. The exported line and the verify report are
//! defined by `hallpass-core` (the line is hashed, so its exact form is a
//! domain fact) and re-exported here; this adds the audit public key.

pub use hallpass_core::audit::{AuditEvent, VerifyReport};
pub use hallpass_core::events::AuditKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The key that signs audit checkpoints, for offline verification
/// (`hallpass audit verify --file F --public-key KEY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditPublicKey {
    /// RFC 7638 thumbprint of the key; checkpoints name it.
    pub key_id: String,
    /// The key as a JSON Web Key (`kty` OKP, `crv` Ed25519).
    #[schema(value_type = Object)]
    pub jwk: serde_json::Value,
    /// The key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub pem: String,
}
