//! `resource "hallpass_notifier"` and `data "hallpass_notifier"`: a
//! notifier (`PUT/GET/DELETE /v1/notifiers/{name}`), where Hallpass tells
//! people about requests, decisions and grants: its settings as the
//! `dynamic` attribute `config` and its credentials (a webhook's signing
//! key) as the **write-only** map `secrets`, sent as a target's are (see
//! [`super::configured`]).

use hallpass_api::{Notifier, NotifierSpec};

use super::configured::{Kind, SpecParts, StoredParts, Texts};

/// Notifiers as a [`Kind`].
pub struct NotifierKind;

impl Kind for NotifierKind {
    type Spec = NotifierSpec;
    type Stored = Notifier;

    const TEXTS: Texts = Texts {
        type_name: "hallpass_notifier",
        noun: "notifier",
        collection: "notifiers",
        resource: "A Hallpass notifier: where Hallpass tells people about requests, decisions and grants (a \
                   signed webhook, Slack, email), as a `notifier` block of `hallpass apply` declares it.",
        data_source: "A Hallpass notifier, read by name, with the server's values; secrets by name only.",
        id: "The notifier's name.",
        name: "The notifier's name; changing it replaces the notifier.",
        type_: "How it notifies: `webhook`, `slack` or `email` (as the server supports); changing it replaces \
                the notifier.",
        data_type: "How it notifies, e.g. `webhook`.",
        config: "The type's settings as an object, as in the HCL of `hallpass apply`: \
                 `config = { url = \"https://bot.internal/hallpass\", roles = [\"prod-db\"] }`. Every type also \
                 takes `roles`, `topics`, `security`, `expiry_warning` and `recipients`. Readable by anyone \
                 signed in; no credentials here.",
        secrets: "Credentials the type takes (a webhook's `signing_secret` and `bearer_token`). Write-only: never \
                  in the plan or the state. Sent when the notifier is created and when `secrets_version` \
                  changes; exactly these secrets are then kept.",
        config_example: "config = { url = \"https://bot.internal/hallpass\" }",
    };

    fn spec(parts: SpecParts) -> NotifierSpec {
        NotifierSpec {
            name: parts.name,
            notifier_type: parts.kind,
            config: parts.config,
            secrets: parts.secrets,
        }
    }

    fn stored(notifier: &Notifier) -> StoredParts<'_> {
        StoredParts {
            name: &notifier.name,
            kind: &notifier.notifier_type,
            config: &notifier.config,
            secrets: &notifier.secrets,
            created_at: notifier.created_at,
            updated_at: notifier.updated_at,
        }
    }
}
