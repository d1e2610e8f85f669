//! The `provider "hallpass"` block: its schema, its checks at validate
//! time, and the settings it resolves to (attributes first, then the
//! environment) when Terraform configures the provider.

use std::path::PathBuf;

use crate::diag;
use crate::proto::tfplugin6::Diagnostic;
use crate::schema::{Attribute, Block, Presence, Type};
use crate::value::{Known, Object};

pub const ADDRESS: &str = "address";
pub const TOKEN: &str = "token";
pub const CA_FILE: &str = "ca_file";
pub const ADDRESS_ENV: &str = "HALLPASS_ADDR";
pub const TOKEN_ENV: &str = "HALLPASS_TOKEN";

/// The provider block's schema.
pub fn schema() -> Block {
    Block {
        version: 0,
        description: "Manages Hallpass, the just-in-time access broker, through its HTTP API.",
        attributes: vec![
            Attribute::new(
                ADDRESS,
                Type::String,
                Presence::Optional,
                "URL of the Hallpass server, e.g. `https://hallpass.example.com` (a bare `host:port` means \
                 `http://host:port`). Defaults to the `HALLPASS_ADDR` environment variable.",
            ),
            Attribute::new(
                TOKEN,
                Type::String,
                Presence::Optional,
                "Hallpass API token the provider acts with. Defaults to the `HALLPASS_TOKEN` environment \
                 variable; prefer that to writing the token in the configuration.",
            )
            .sensitive(),
            Attribute::new(
                CA_FILE,
                Type::String,
                Presence::Optional,
                "Path of a PEM file with the CA certificate(s) to trust for an `https` address, instead of \
                 the public web CAs.",
            ),
        ],
        blocks: Vec::new(),
    }
}

/// The provider's settings once every value is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub address: String,
    pub token: String,
    pub ca_file: Option<PathBuf>,
}

/// Checks what can be checked before the values are final: the types, and
/// the syntax of an address that is already known.
pub fn validate(config: &Object) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for name in [ADDRESS, TOKEN, CA_FILE] {
        let value = match config.string(name) {
            Ok(value) => value,
            Err(error) => {
                diagnostics.push(diag::attribute_error(name, "Invalid value", error.to_string()));
                continue;
            }
        };
        let Known::Value(text) = value else { continue };
        if text.trim().is_empty() {
            diagnostics.push(diag::attribute_error(
                name,
                "Empty value",
                format!("`{name}` is set to an empty string; leave it out to use the default."),
            ));
        } else if name == ADDRESS
            && let Err(error) = crate::api::parse_address(&text)
        {
            diagnostics.push(diag::attribute_error(
                ADDRESS,
                "Invalid Hallpass address",
                error.to_string(),
            ));
        }
    }
    diagnostics
}

/// The settings from the block, falling back on the environment (`env`).
/// Every missing or unusable value is a diagnostic naming the attribute and
/// the variable that would set it.
pub fn resolve(config: &Object, env: impl Fn(&str) -> Option<String>) -> Result<Settings, Vec<Diagnostic>> {
    let mut diagnostics = validate(config);
    let address = required(config, ADDRESS, ADDRESS_ENV, &env, &mut diagnostics);
    let token = required(config, TOKEN, TOKEN_ENV, &env, &mut diagnostics);
    let ca_file = match config.string(CA_FILE) {
        Ok(Known::Unknown) => {
            diagnostics.push(not_known_yet(CA_FILE));
            None
        }
        Ok(known) => known.value().map(PathBuf::from),
        // Reported by validate above.
        Err(_) => None,
    };
    match (address, token) {
        (Some(address), Some(token)) if !diag::has_errors(&diagnostics) => Ok(Settings {
            address,
            token,
            ca_file,
        }),
        _ => Err(diagnostics),
    }
}

/// A value the provider cannot work without: the attribute, else the
/// environment variable.
fn required(
    config: &Object,
    name: &str,
    env_var: &str,
    env: &impl Fn(&str) -> Option<String>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<String> {
    match config.string(name) {
        Ok(Known::Value(value)) => Some(value),
        Ok(Known::Null) => {
            let from_env = env(env_var).filter(|value| !value.trim().is_empty());
            if from_env.is_none() {
                diagnostics.push(diag::attribute_error(
                    name,
                    format!("Missing Hallpass {name}"),
                    format!(
                        "The provider needs the Hallpass server's {what}: set `{name}` in the `provider \
                         \"hallpass\"` block or the {env_var} environment variable.",
                        what = if name == ADDRESS { "address" } else { "API token" },
                    ),
                ));
            }
            from_env
        }
        Ok(Known::Unknown) => {
            diagnostics.push(not_known_yet(name));
            None
        }
        // Reported by validate.
        Err(_) => None,
    }
}

fn not_known_yet(name: &str) -> Diagnostic {
    diag::attribute_error(
        name,
        format!("Hallpass {name} not known yet"),
        format!(
            "`{name}` depends on a value Terraform only knows after apply, and the provider needs it to plan. \
             Apply the resources it depends on first (`terraform apply -target=...`), or set it from a value \
             known at plan time."
        ),
    )
}

#[cfg(test)]
mod tests {
    use rmpv::Value;

    use super::*;
    use crate::value::to_dynamic;

    fn config(entries: Vec<(&str, Value)>) -> Object {
        let map = Value::Map(entries.into_iter().map(|(k, v)| (Value::from(k), v)).collect());
        Object::decode(Some(&to_dynamic(&map))).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn attributes_win_over_the_environment() {
        let block = config(vec![
            (ADDRESS, Value::from("http://127.0.0.1:7070")),
            (TOKEN, Value::Nil),
            (CA_FILE, Value::from("/etc/hallpass/ca.pem")),
        ]);
        let env = |var: &str| match var {
            ADDRESS_ENV => Some("http://other:1".to_string()),
            TOKEN_ENV => Some("hp_env".to_string()),
            _ => None,
        };
        let settings = resolve(&block, env).unwrap();
        assert_eq!(settings.address, "http://127.0.0.1:7070");
        assert_eq!(settings.token, "hp_env");
        assert_eq!(settings.ca_file, Some(PathBuf::from("/etc/hallpass/ca.pem")));
    }

    #[test]
    fn missing_values_name_the_attribute_and_the_variable() {
        let diagnostics = resolve(&config(vec![]), no_env).unwrap_err();
        assert_eq!(diagnostics.len(), 2);
        assert!(diagnostics[0].detail.contains("`address`"), "{:?}", diagnostics[0]);
        assert!(diagnostics[0].detail.contains("HALLPASS_ADDR"));
        assert!(diagnostics[1].detail.contains("HALLPASS_TOKEN"));
        assert!(diagnostics.iter().all(|d| d.attribute.is_some()));
    }

    #[test]
    fn bad_and_unknown_values() {
        let block = config(vec![
            (ADDRESS, Value::from("ftp://h")),
            (TOKEN, Value::Ext(0, vec![])),
            (CA_FILE, Value::from(3)),
        ]);
        let diagnostics = validate(&block);
        let summaries: Vec<_> = diagnostics.iter().map(|d| d.summary.as_str()).collect();
        assert_eq!(summaries, ["Invalid Hallpass address", "Invalid value"]);
        let resolved = resolve(&block, no_env).unwrap_err();
        assert!(resolved.iter().any(|d| d.summary == "Hallpass token not known yet"));
        let empty = validate(&config(vec![(TOKEN, Value::from(" "))]));
        assert_eq!(empty[0].summary, "Empty value");
    }
}
