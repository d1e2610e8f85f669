//! The start of a plugin process: what Terraform puts in the environment,
//! and the one line the provider answers with on stdout.
//!
//! Terraform (through go-plugin) starts the provider with a magic cookie in
//! the environment, the plugin protocol versions it speaks, a port range
//! and, unless TLS is off, the PEM certificate it will present as a client.
//! The provider answers with
//! `CORE|PROTOCOL|NETWORK|ADDRESS|grpc|CERT`: core protocol 1, plugin
//! protocol 6, `tcp` and `host:port`, and its own server certificate as
//! unpadded standard base64 of the DER (an empty field without TLS).
//! Anything else on stdout before that line makes Terraform give up.

use std::net::SocketAddr;

use base64::Engine;

/// Name and value of the cookie Terraform sets for its providers. A process
/// without it was not started by Terraform.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
pub const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// go-plugin's own protocol version, the first field of the handshake line.
const CORE_PROTOCOL_VERSION: u32 = 1;
/// The Terraform plugin protocol this provider speaks.
pub const PLUGIN_PROTOCOL_VERSION: u32 = 6;

/// Why the process cannot serve Terraform.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(
        "terraform-provider-hallpass is a Terraform provider plugin: Terraform starts it, it is not meant to be \
         run by hand. Name it in a `required_providers` block (source \"hallpass/hallpass\") and run `terraform \
         plan`; see docs/terraform.md for installing it with dev_overrides."
    )]
    NotStartedByTerraform,
    #[error(
        "Terraform offers plugin protocol versions {offered:?}, and this provider speaks version 6 only \
         (Terraform 1.0 and later)"
    )]
    NoCommonProtocol { offered: String },
    #[error("{var} is {value:?}, not a port number")]
    BadPort { var: &'static str, value: String },
    #[error("Terraform set no client certificate (PLUGIN_CLIENT_CERT) and did not turn TLS off")]
    NoClientCertificate,
}

/// What the provider needs from the environment Terraform set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEnv {
    /// Terraform's client certificate (PEM), or `None` when
    /// `TF_DISABLE_PLUGIN_TLS` turned TLS off.
    pub client_cert_pem: Option<String>,
    /// The ports the provider may listen on, inclusive; `None` means any.
    pub ports: Option<(u16, u16)>,
}

impl PluginEnv {
    /// Reads the environment through `var` (`std::env::var` in the binary;
    /// a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, HandshakeError> {
        if var(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
            return Err(HandshakeError::NotStartedByTerraform);
        }
        // Absent means an old go-plugin client that only knows the
        // handshake's default version; Terraform always sets it.
        if let Some(offered) = var("PLUGIN_PROTOCOL_VERSIONS") {
            let speaks_ours = offered
                .split(',')
                .any(|version| version.trim().parse::<u32>() == Ok(PLUGIN_PROTOCOL_VERSION));
            if !speaks_ours {
                return Err(HandshakeError::NoCommonProtocol { offered });
            }
        }
        let ports = match (var("PLUGIN_MIN_PORT"), var("PLUGIN_MAX_PORT")) {
            (Some(min), Some(max)) => {
                let min = parse_port("PLUGIN_MIN_PORT", &min)?;
                let max = parse_port("PLUGIN_MAX_PORT", &max)?;
                (min <= max).then_some((min, max))
            }
            _ => None,
        };
        // The value does not matter to Terraform's own check, only that it
        // is set and not empty.
        let tls_disabled = var("TF_DISABLE_PLUGIN_TLS").is_some_and(|value| !value.is_empty());
        let client_cert_pem = if tls_disabled {
            None
        } else {
            Some(
                var("PLUGIN_CLIENT_CERT")
                    .filter(|pem| !pem.trim().is_empty())
                    .ok_or(HandshakeError::NoClientCertificate)?,
            )
        };
        Ok(Self { client_cert_pem, ports })
    }
}

fn parse_port(var: &'static str, value: &str) -> Result<u16, HandshakeError> {
    value.trim().parse().map_err(|_| HandshakeError::BadPort {
        var,
        value: value.to_string(),
    })
}

/// The handshake line (without newline) for a server on `addr` presenting
/// `server_cert_der`, or plaintext when `None`.
pub fn handshake_line(addr: SocketAddr, server_cert_der: Option<&[u8]>) -> String {
    // go-plugin decodes with RawStdEncoding: padding makes it fail.
    let cert = server_cert_der
        .map(|der| base64::engine::general_purpose::STANDARD_NO_PAD.encode(der))
        .unwrap_or_default();
    format!("{CORE_PROTOCOL_VERSION}|{PLUGIN_PROTOCOL_VERSION}|tcp|{addr}|grpc|{cert}")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn without_the_cookie_the_user_is_told_this_is_a_plugin() {
        let error = PluginEnv::from_vars(env(&[])).unwrap_err();
        assert!(matches!(error, HandshakeError::NotStartedByTerraform));
        assert!(error.to_string().contains("Terraform provider plugin"));
        let wrong = PluginEnv::from_vars(env(&[(MAGIC_COOKIE_KEY, "nope")])).unwrap_err();
        assert!(matches!(wrong, HandshakeError::NotStartedByTerraform));
    }

    #[test]
    fn terraform_environment_is_read() {
        let read = PluginEnv::from_vars(env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_PROTOCOL_VERSIONS", "5,6"),
            ("PLUGIN_MIN_PORT", "10000"),
            ("PLUGIN_MAX_PORT", "25000"),
            ("PLUGIN_CLIENT_CERT", "-----BEGIN CERTIFICATE-----\n..."),
        ]))
        .unwrap();
        assert_eq!(read.ports, Some((10000, 25000)));
        assert!(read.client_cert_pem.is_some());

        let plain = PluginEnv::from_vars(env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("TF_DISABLE_PLUGIN_TLS", "1"),
        ]))
        .unwrap();
        assert_eq!(plain.client_cert_pem, None);
        assert_eq!(plain.ports, None);
    }

    #[test]
    fn refusals_say_why() {
        let cookie = (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE);
        let five_only = PluginEnv::from_vars(env(&[cookie, ("PLUGIN_PROTOCOL_VERSIONS", "5")])).unwrap_err();
        assert!(five_only.to_string().contains("version 6 only"), "{five_only}");
        let no_cert = PluginEnv::from_vars(env(&[cookie])).unwrap_err();
        assert!(matches!(no_cert, HandshakeError::NoClientCertificate));
        let bad_port = PluginEnv::from_vars(env(&[
            cookie,
            ("PLUGIN_MIN_PORT", "x"),
            ("PLUGIN_MAX_PORT", "2"),
            ("TF_DISABLE_PLUGIN_TLS", "1"),
        ]))
        .unwrap_err();
        assert!(bad_port.to_string().contains("PLUGIN_MIN_PORT"), "{bad_port}");
    }

    #[test]
    fn the_line_carries_unpadded_base64() {
        let addr: SocketAddr = "127.0.0.1:10123".parse().unwrap();
        // 4 bytes encode to 6 characters plus "==" when padded.
        assert_eq!(
            handshake_line(addr, Some(&[1, 2, 3, 4])),
            "1|6|tcp|127.0.0.1:10123|grpc|AQIDBA"
        );
        assert_eq!(handshake_line(addr, None), "1|6|tcp|127.0.0.1:10123|grpc|");
    }
}
