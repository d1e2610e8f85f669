//! The `redis` target: one ACL user per grant, given the role's ACL rules in
//! a single (atomic) `ACL SETUSER`, its password sent only as a SHA-256 hash
//! so the cleartext never travels; revoked with `ACL DELUSER` and by ending
//! its connections. The password is derived from the grant's seed on every
//! call, never stored. See docs/targets.md, `## redis`.

mod acl;
mod checks;
mod conn;
#[cfg(test)]
mod tests;
mod users;

use futures::future::{BoxFuture, FutureExt};
use serde_json::{Map, Value, json};

use crate::admin::{Pools, Settings, Timeouts, credential_uri, secret_credential};
use crate::{
    CredentialProvider, GrantContext, ProviderError, SecretCredential, SecretSpec, SecretValue, TargetContext,
    TargetSecrets, TestCheck, Verification, login_name,
};

use acl::Rules;
use conn::{Admin, Link};

const TYPE: &str = "redis";
/// Redis has no limit; 63 keeps names readable in `ACL LIST`.
const MAX_USER_LEN: usize = 63;

const SETTINGS: &[&str] = &[
    "host",
    "port",
    "username",
    "tls",
    "ca_file",
    "connect_timeout_seconds",
    "command_timeout_seconds",
];

const SECRETS: &[SecretSpec] = &[SecretSpec {
    name: "password",
    required: false,
    description: "the admin user's password",
}];

/// A target's settings, checked. No secret in it.
#[derive(Debug, Clone)]
struct Config {
    host: String,
    port: u16,
    username: String,
    tls: bool,
    ca_file: Option<String>,
    timeouts: Timeouts,
}

impl Config {
    fn read(config: &Map<String, Value>) -> Result<Self, ProviderError> {
        let settings = Settings::new(TYPE, config);
        settings.only(SETTINGS)?;
        let tls = settings.flag("tls", false)?;
        let ca_file = settings.string("ca_file")?.map(str::to_string);
        if ca_file.is_some() && !tls {
            return Err(settings.invalid("`ca_file` is used only with tls = true; set `tls` too"));
        }
        let username = settings.string("username")?.unwrap_or("default");
        if username.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(settings.invalid("`username` must not contain spaces or control characters"));
        }
        Ok(Self {
            host: settings.host()?.to_string(),
            port: settings.port("port", 6379)?,
            username: username.to_string(),
            tls,
            ca_file,
            timeouts: Timeouts::read(&settings, "command_timeout_seconds")?,
        })
    }
}

/// Issues Redis ACL users. Holds one admin connection per target.
#[derive(Debug, Default)]
pub struct RedisProvider {
    pools: Pools<Admin>,
}

impl RedisProvider {
    pub fn new() -> Self {
        Self::default()
    }

    async fn link(&self, target: &TargetContext) -> Result<Link, ProviderError> {
        let config = Config::read(&target.config)?;
        let admin = self.pools.get(target, || {
            Admin::new(config, &target.name, target.secrets.get("password"))
        })?;
        Link::open(admin, &target.name).await
    }
}

fn user(grant: &GrantContext) -> String {
    login_name(&grant.principal, &grant.grant_id, MAX_USER_LEN)
}

impl CredentialProvider for RedisProvider {
    fn target_type(&self) -> &'static str {
        TYPE
    }

    fn secrets(&self) -> &'static [SecretSpec] {
        SECRETS
    }

    fn validate_config(&self, config: &Map<String, Value>, secrets: &TargetSecrets) -> Result<(), ProviderError> {
        let parsed = Config::read(config)?;
        if parsed.username != "default" && secrets.get("password").is_none() {
            return Err(Settings::new(TYPE, config).invalid(format!(
                "secret `password` is required when `username` is not \"default\" (here {:?})",
                parsed.username
            )));
        }
        Ok(())
    }

    fn validate_grant(&self, grant: &Map<String, Value>) -> Result<(), ProviderError> {
        Rules::parse(grant).map(|_| ())
    }

    fn issue<'a>(&'a self, grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
        async move {
            let config = Config::read(&grant.target.config)?;
            let rules = Rules::parse(&grant.grant)?;
            let name = user(grant);
            let mut link = self.link(&grant.target).await?;
            users::create(&mut link, &name, &grant.derive_secret("password"), &rules).await?;
            Ok(json!({
                "type": TYPE,
                "user": name,
                "host": config.host,
                "port": config.port,
                "acl": rules.text(),
            }))
        }
        .boxed()
    }

    fn credential<'a>(
        &'a self,
        grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>> {
        async move {
            let config = Config::read(&grant.target.config)?;
            let name = user(grant);
            let password = grant.derive_secret("password");
            let scheme = if config.tls { "rediss" } else { "redis" };
            let token = credential_uri(scheme, &name, password.expose(), &config.host, config.port);
            let env = [
                ("REDIS_HOST", config.host.clone()),
                ("REDIS_PORT", config.port.to_string()),
                ("REDIS_USER", name),
                ("REDISCLI_AUTH", password.expose().to_string()),
            ];
            Ok(secret_credential(TYPE, token, env))
        }
        .boxed()
    }

    fn revoke<'a>(&'a self, grant: &'a GrantContext, _metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>> {
        async move {
            let mut link = self.link(&grant.target).await?;
            users::remove(&mut link, &user(grant)).await
        }
        .boxed()
    }

    fn verify<'a>(
        &'a self,
        grant: &'a GrantContext,
        _metadata: &'a Value,
    ) -> BoxFuture<'a, Result<Verification, ProviderError>> {
        async move {
            let mut link = self.link(&grant.target).await?;
            users::remaining(&mut link, &user(grant)).await
        }
        .boxed()
    }

    fn test<'a>(&'a self, target: &'a TargetContext) -> BoxFuture<'a, Result<Vec<TestCheck>, ProviderError>> {
        async move {
            self.validate_config(&target.config, &target.secrets)?;
            let mut link = match self.link(target).await {
                Ok(link) => link,
                Err(error) => return Ok(vec![TestCheck::failed("connect", error.to_string())]),
            };
            Ok(checks::run(&mut link).await)
        }
        .boxed()
    }

    fn forget_target(&self, name: &str) {
        self.pools.forget(name);
    }

    fn rotatable_secret(&self) -> Option<&'static str> {
        Some("password")
    }

    fn rotate<'a>(
        &'a self,
        target: &'a TargetContext,
        new: &'a SecretValue,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        async move {
            let config = Config::read(&target.config)?;
            checks::rotate(&config, &target.name, target.secrets.get("password"), new).await
        }
        .boxed()
    }
}
