//! `resource "hallpass_target"` and `data "hallpass_target"`: a target
//! (`PUT/GET/DELETE /v1/targets/{name}`), with its settings as the
//! `dynamic` attribute `config` and its credentials as the **write-only**
//! map `secrets` (see [`super::configured`] for how they are sent). The
//! data source adds, for `ssh` targets, the CA's public key line.

use hallpass_api::{Target, TargetSpec};
use rmpv::Value;

use super::configured::{Kind, SpecParts, StoredParts, Texts};
use crate::schema::{Attribute, Presence, Type};

/// Targets as a [`Kind`].
pub struct TargetKind;

impl Kind for TargetKind {
    type Spec = TargetSpec;
    type Stored = Target;

    const TEXTS: Texts = Texts {
        type_name: "hallpass_target",
        noun: "target",
        collection: "targets",
        resource: "A Hallpass target: a system Hallpass issues credentials on, as a `target` block of \
                   `hallpass apply` declares it.",
        data_source: "A Hallpass target, read by name, with the server's values; secrets by name only.",
        id: "The target's name.",
        name: "The target's name; changing it replaces the target.",
        type_: "The kind of system: `postgres`, `mysql`, `redis`, `ssh`, `aws`, `jwt`, `webhook`, ...; \
                changing it replaces the target.",
        data_type: "The kind of system, e.g. `ssh`.",
        config: "The type's settings as an object, as in the HCL of `hallpass apply`: \
                 `config = { host = \"db\", port = 5432 }`. Readable by anyone who may read targets; no \
                 credentials here.",
        secrets: "Credentials the type takes (e.g. a webhook's `hmac_secret`). Write-only: never in the plan or \
                  the state. Sent when the target is created and when `secrets_version` changes; exactly these \
                  secrets are then kept.",
        config_example: "config = { audience = \"demo\" }",
    };

    fn spec(parts: SpecParts) -> TargetSpec {
        TargetSpec {
            name: parts.name,
            target_type: parts.kind,
            config: parts.config,
            secrets: parts.secrets,
        }
    }

    fn stored(target: &Target) -> StoredParts<'_> {
        StoredParts {
            name: &target.name,
            kind: &target.target_type,
            config: &target.config,
            secrets: &target.secrets,
            created_at: target.created_at,
            updated_at: target.updated_at,
        }
    }

    fn data_attributes() -> Vec<Attribute> {
        vec![Attribute::new(
            "ca_public_key",
            Type::String,
            Presence::Computed,
            "For an `ssh` target, the CA's public key line for sshd's `TrustedUserCAKeys`; else null.",
        )]
    }

    fn data_values(target: &Target) -> Vec<(&'static str, Value)> {
        vec![(
            "ca_public_key",
            target.ca_public_key.as_deref().map_or(Value::Nil, Value::from),
        )]
    }
}
