//! What the postgres provider's tests set up on the real server: a test
//! database with a readable and a forbidden table, a role allowed to read,
//! and a non-superuser admin with CREATEROLE and a password, all with
//! unique names; plus the real `psql` client, a check of stored SCRAM
//! verifiers, and a TLS-terminating proxy for the sslmode tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::process::Output;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{Duration, Utc};
use hallpass_providers::{GrantContext, SecretCredential, SecretValue, Seed, TargetContext, TargetSecrets};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::{Client, NoTls};

use super::support;

/// `"name"` for SQL the fixture sends itself.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

pub async fn connect(config: &tokio_postgres::Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The superuser's connection settings, from HALLPASS_TEST_POSTGRES_URL.
pub fn superuser_config() -> tokio_postgres::Config {
    tokio_postgres::Config::from_str(&support::postgres_url()).unwrap()
}

pub struct Fixture {
    /// The superuser, connected to the test database.
    pub su: Client,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub admin: String,
    pub admin_password: String,
    /// A NOLOGIN role that may SELECT `orders` (and nothing else).
    pub app_read: String,
    pub target_name: String,
    pub server_version: i32,
}

impl Fixture {
    /// A fresh database named `<database_prefix><unique>` and roles.
    pub async fn new(database_prefix: &str) -> Self {
        let config = superuser_config();
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let postgres = connect(&config).await;
        let database = support::unique(database_prefix);
        let admin = support::unique("hpadm_");
        let admin_password = format!("Adm1n-{}-S3cret", support::unique("pw"));
        let app_read = support::unique("app_read_");
        let server_version: i32 = postgres
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .unwrap()
            .get(0);
        // Alone: CREATE DATABASE cannot run in a multi-statement batch.
        postgres
            .batch_execute(&format!("CREATE DATABASE {}", quote(&database)))
            .await
            .unwrap();
        postgres
            .batch_execute(&format!(
                "CREATE ROLE {admin} LOGIN CREATEROLE PASSWORD {password};
                 GRANT pg_signal_backend TO {admin};
                 CREATE ROLE {app_read} NOLOGIN;",
                admin = quote(&admin),
                password = literal(&admin_password),
                app_read = quote(&app_read),
            ))
            .await
            .unwrap();
        let fixture = Self {
            su: connect(superuser_config().dbname(&database)).await,
            host,
            port,
            database,
            admin,
            admin_password,
            app_read,
            target_name: support::unique("pg-target-"),
            server_version,
        };
        fixture
            .su
            .batch_execute(&format!(
                "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2), (3);
                 CREATE TABLE secrets (x text); INSERT INTO secrets VALUES ('s');
                 GRANT SELECT ON orders TO {app_read};",
                app_read = quote(&fixture.app_read)
            ))
            .await
            .unwrap();
        fixture.let_admin_grant(&fixture.app_read).await;
        fixture
    }

    /// On PostgreSQL 16 and later a CREATEROLE admin may grant only roles
    /// it holds WITH ADMIN OPTION; on 15 it needs nothing.
    pub async fn let_admin_grant(&self, role: &str) {
        if self.server_version >= 160_000 {
            self.su
                .batch_execute(&format!(
                    "GRANT {} TO {} WITH ADMIN OPTION",
                    quote(role),
                    quote(&self.admin)
                ))
                .await
                .unwrap();
        }
    }

    pub fn config(&self) -> Map<String, Value> {
        json!({
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "username": self.admin,
            "sslmode": "disable",
            "connect_timeout_seconds": 5,
            "statement_timeout_seconds": 10,
        })
        .as_object()
        .unwrap()
        .clone()
    }

    pub fn target(&self) -> TargetContext {
        self.target_with(self.config(), Some(&self.admin_password))
    }

    pub fn target_with(&self, config: Map<String, Value>, password: Option<&str>) -> TargetContext {
        let mut secrets = TargetSecrets::new();
        if let Some(password) = password {
            secrets.insert("password", SecretValue::new(password));
        }
        TargetContext {
            name: self.target_name.clone(),
            config,
            secrets,
            seed: Seed::for_grant(b"test key", &self.target_name, "-"),
        }
    }

    /// A grant of `roles` to `principal` on `target`, valid for an hour.
    pub fn grant(&self, target: TargetContext, principal: &str, grant_id: &str, roles: &[&str]) -> GrantContext {
        let now = Utc::now();
        let mut grant = GrantContext::new(
            grant_id,
            principal,
            "orders-read",
            target,
            Seed::for_grant(b"test key", &self.target_name, grant_id),
            now,
            now + Duration::hours(1),
        );
        grant.grant = json!({ "roles": roles }).as_object().unwrap().clone();
        grant
    }

    pub fn read_grant(&self, principal: &str) -> GrantContext {
        self.grant(self.target(), principal, &support::unique("grant-"), &[&self.app_read])
    }

    /// How many roles are named `name`.
    pub async fn roles_named(&self, name: &str) -> i64 {
        self.su
            .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&name])
            .await
            .unwrap()
            .get(0)
    }

    /// The roles `login` is a member of, sorted.
    pub async fn memberships(&self, login: &str) -> Vec<String> {
        self.su
            .query(
                "SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
                 JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1 ORDER BY 1",
                &[&login],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    pub async fn sessions_of(&self, login: &str) -> i64 {
        self.su
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", &[&login])
            .await
            .unwrap()
            .get(0)
    }

    /// Whether `password` is what the server would accept for `role`,
    /// checked against its stored SCRAM-SHA-256 verifier (RFC 5802
    /// StoredKey). Needed because the test servers trust local logins,
    /// so a wrong password would still get in.
    pub async fn password_matches(&self, role: &str, password: &str) -> bool {
        let verifier: Option<String> = self
            .su
            .query_one("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&role])
            .await
            .unwrap()
            .get(0);
        scram_verifier_matches(&verifier.expect("the role has a password"), password)
    }

    /// Drops what the fixture made (also after a failed test, by hand).
    pub async fn cleanup(self) {
        let postgres = connect(&superuser_config()).await;
        drop(self.su);
        postgres
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote(&self.database)
            ))
            .await
            .unwrap();
        postgres
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS {}; DROP ROLE IF EXISTS {};",
                quote(&self.admin),
                quote(&self.app_read)
            ))
            .await
            .unwrap();
    }
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` against a
/// password.
pub fn scram_verifier_matches(verifier: &str, password: &str) -> bool {
    let rest = verifier.strip_prefix("SCRAM-SHA-256$").expect("a SCRAM verifier");
    let (parameters, keys) = rest.split_once('$').unwrap();
    let (iterations, salt) = parameters.split_once(':').unwrap();
    let (stored_key, _) = keys.split_once(':').unwrap();
    let mut salted = [0u8; 32];
    aws_lc_rs::pbkdf2::derive(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(iterations.parse().unwrap()).unwrap(),
        &STANDARD.decode(salt).unwrap(),
        password.as_bytes(),
        &mut salted,
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &salted);
    let client_key = aws_lc_rs::hmac::sign(&key, b"Client Key");
    let computed = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, client_key.as_ref());
    STANDARD.encode(computed.as_ref()) == stored_key
}

/// Runs the real `psql` with the credential's variables (and `extra`),
/// nothing from the test's own environment.
pub async fn psql(credential: &SecretCredential, extra: &[(&str, &str)], sql: &str) -> Output {
    psql_command(&credential.env, extra, sql).output().await.unwrap()
}

pub fn psql_command(env: &BTreeMap<String, String>, extra: &[(&str, &str)], sql: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("psql");
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGGSSENCMODE", "disable")
        .envs(env)
        .envs(extra.iter().copied())
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .kill_on_drop(true);
    command
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_string()
}

/// A certificate authority and a server certificate for `localhost` it
/// signed, as (CA PEM, server certificate DER, server key DER).
pub fn certificates() -> (String, Vec<u8>, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hallpass test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    (ca.pem(), server.der().to_vec(), server_key.serialize_der())
}

/// PostgreSQL's SSLRequest and GSSENCRequest packets.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

/// A PostgreSQL front that speaks TLS with `certificate` and forwards the
/// decrypted protocol to the real server in plain TCP: a TLS-enabled
/// server for the sslmode tests whatever the test server's own `ssl`.
pub async fn tls_proxy(upstream: SocketAddr, certificate: Vec<u8>, key: Vec<u8>) -> u16 {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 8];
                client.read_exact(&mut request).await?;
                if request == GSSENC_REQUEST {
                    client.write_all(b"N").await?;
                    client.read_exact(&mut request).await?;
                }
                if request != SSL_REQUEST {
                    return Ok::<(), std::io::Error>(());
                }
                client.write_all(b"S").await?;
                let mut tls = acceptor.accept(client).await?;
                let mut server = tokio::net::TcpStream::connect(upstream).await?;
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                Ok(())
            });
        }
    });
    port
}

/// A server that answers every SSLRequest with "no TLS here", as one with
/// `ssl = off` does.
pub async fn server_without_tls() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let mut request = [0u8; 8];
            if client.read_exact(&mut request).await.is_ok() && request == SSL_REQUEST {
                let _ = client.write_all(b"N").await;
            }
        }
    });
    port
}
