//! `data "hallpass_audit_public_key"`: the Ed25519 key that signs the
//! server's audit checkpoints (`GET /v1/audit/public-key`), for handing to
//! whatever verifies exported audit logs elsewhere.

use futures::future::BoxFuture;
use rmpv::Value;

use super::DataSource;
use crate::api::Api;
use crate::diag;
use crate::proto::tfplugin6::{Diagnostic, DynamicValue};
use crate::schema::{Attribute, Block, Presence, Type};
use crate::value::Object;

pub struct AuditPublicKey;

impl DataSource for AuditPublicKey {
    fn type_name(&self) -> &'static str {
        "hallpass_audit_public_key"
    }

    fn schema(&self) -> Block {
        Block {
            version: 0,
            description: "The public key that signs the Hallpass server's audit checkpoints. Feed it to \
                          `hallpass audit verify --file F --public-key KEY` wherever exported audit logs are \
                          checked.",
            attributes: vec![
                Attribute::new(
                    "key_id",
                    Type::String,
                    Presence::Computed,
                    "RFC 7638 thumbprint of the key; each signed checkpoint names the key by it.",
                ),
                Attribute::new(
                    "pem",
                    Type::String,
                    Presence::Computed,
                    "The key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).",
                ),
                Attribute::new(
                    "jwk",
                    Type::String,
                    Presence::Computed,
                    "The key as a JSON Web Key (`kty` OKP, `crv` Ed25519), as a JSON string: \
                     `jsondecode()` it for its members.",
                ),
            ],
            blocks: Vec::new(),
        }
    }

    fn validate(&self, _config: &Object) -> Vec<Diagnostic> {
        // Nothing to configure: every attribute is computed, and Terraform
        // itself refuses values given for them.
        Vec::new()
    }

    fn read<'a>(&'a self, api: &'a Api, _config: &'a Object) -> BoxFuture<'a, Result<DynamicValue, Vec<Diagnostic>>> {
        Box::pin(async move {
            let key = api.audit_public_key().await.map_err(|error| {
                vec![diag::error(
                    "Cannot read the Hallpass audit public key",
                    error.to_string(),
                )]
            })?;
            Ok(self.schema().encode(vec![
                ("key_id", Value::from(key.key_id)),
                ("pem", Value::from(key.pem)),
                ("jwk", Value::from(key.jwk.to_string())),
            ]))
        })
    }
}
