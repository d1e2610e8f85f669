//! The `mysql` target (MariaDB and MySQL): one account per grant, created
//! locked, given the role's privileges, then unlocked, so a failure half way
//! leaves nothing anyone can log in with; revoked by locking it, ending its
//! connections and dropping it. The password is derived from the grant's
//! seed on every call, never stored. See docs/targets.md, `## mysql`.

mod account;
mod checks;
mod grant;
mod privileges;
mod session;
#[cfg(test)]
mod tests;

use futures::future::{BoxFuture, FutureExt};
use serde_json::{Map, Value, json};

use crate::admin::{Pools, Settings, Timeouts, credential_uri, secret_credential};
use crate::{
    CredentialProvider, GrantContext, ProviderError, SecretCredential, SecretSpec, SecretValue, TargetContext,
    TargetSecrets, TestCheck, Verification, login_name,
};

use account::Account;
use grant::GrantSpec;
use session::{Admin, Session};

const TYPE: &str = "mysql";
/// MySQL 8 allows 32 characters in a user name (MariaDB 80).
const MAX_USER_LEN: usize = 32;
/// Appended to the derived password so that it meets MySQL's
/// `validate_password` policies (a digit, both cases, a special character)
/// whatever the derived part happens to contain.
const PASSWORD_SUFFIX: &str = "-Aa1";

const SETTINGS: &[&str] = &[
    "host",
    "port",
    "username",
    "tls",
    "ca_file",
    "user_host",
    "connect_timeout_seconds",
    "statement_timeout_seconds",
];

const SECRETS: &[SecretSpec] = &[SecretSpec {
    name: "password",
    required: false,
    description: "the admin account's password",
}];

/// How the admin connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Disabled,
    /// Encrypted, the certificate not checked.
    Required,
    /// The certificate checked against the CA, not the host name.
    VerifyCa,
    /// The certificate checked against the CA and the host name.
    VerifyFull,
}

/// A target's settings, checked. No secret in it.
#[derive(Debug, Clone)]
struct Config {
    host: String,
    port: u16,
    username: String,
    tls: Tls,
    ca_file: Option<String>,
    /// The host part of the accounts Hallpass creates.
    user_host: String,
    timeouts: Timeouts,
}

impl Config {
    fn read(config: &Map<String, Value>) -> Result<Self, ProviderError> {
        let settings = Settings::new(TYPE, config);
        settings.only(SETTINGS)?;
        let tls = match settings.string("tls")? {
            None | Some("disabled") => Tls::Disabled,
            Some("required") => Tls::Required,
            Some("verify-ca") => Tls::VerifyCa,
            Some("verify-full") => Tls::VerifyFull,
            Some(_) => {
                return Err(settings.invalid(
                    "`tls` must be one of \"disabled\", \"required\" (encrypted, certificate not checked), \"verify-ca\" or \"verify-full\" (certificate and host name checked)",
                ));
            }
        };
        let ca_file = settings.string("ca_file")?.map(str::to_string);
        if ca_file.is_some() && !matches!(tls, Tls::VerifyCa | Tls::VerifyFull) {
            return Err(
                settings.invalid("`ca_file` is used only with tls = \"verify-ca\" or \"verify-full\"; set `tls` too")
            );
        }
        let user_host = settings.string("user_host")?.unwrap_or("%");
        account::check_user_host(user_host).map_err(|message| settings.invalid(message))?;
        Ok(Self {
            host: settings.host()?.to_string(),
            port: settings.port("port", 3306)?,
            username: settings.required("username", "\"hallpass\"")?.to_string(),
            tls,
            ca_file,
            user_host: user_host.to_string(),
            timeouts: Timeouts::read(&settings, "statement_timeout_seconds")?,
        })
    }
}

/// Issues MariaDB and MySQL accounts. Holds one admin pool per target.
#[derive(Debug, Default)]
pub struct MysqlProvider {
    pools: Pools<Admin>,
}

impl MysqlProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// An admin connection from the target's pool.
    async fn session(&self, target: &TargetContext) -> Result<Session, ProviderError> {
        let config = Config::read(&target.config)?;
        let admin = self
            .pools
            .get(target, || Admin::new(config, target.secrets.get("password")))?;
        Session::open(admin, &target.name).await
    }
}

/// The grant's password: derived, so the same on every call.
fn password(grant: &GrantContext) -> SecretValue {
    SecretValue::new(format!("{}{PASSWORD_SUFFIX}", grant.derive_secret("password").expose()))
}

/// The settings and the account of an issued grant.
fn issued(grant: &GrantContext, metadata: &Value) -> Result<(Config, Account), ProviderError> {
    let config = Config::read(&grant.target.config)?;
    let account = Account::issued(grant, metadata, &config, MAX_USER_LEN);
    Ok((config, account))
}

fn metadata(account: &Account, config: &Config, spec: &GrantSpec) -> Value {
    json!({
        "type": TYPE,
        "user": account.user,
        "user_host": account.host,
        "host": config.host,
        "port": config.port,
        "privileges": spec.privileges,
        "on": spec.objects.iter().map(|object| object.sql(false)).collect::<Vec<_>>(),
    })
}

impl CredentialProvider for MysqlProvider {
    fn target_type(&self) -> &'static str {
        TYPE
    }

    fn secrets(&self) -> &'static [SecretSpec] {
        SECRETS
    }

    fn validate_config(&self, config: &Map<String, Value>, _secrets: &TargetSecrets) -> Result<(), ProviderError> {
        Config::read(config).map(|_| ())
    }

    fn validate_grant(&self, grant: &Map<String, Value>) -> Result<(), ProviderError> {
        GrantSpec::parse(grant).map(|_| ())
    }

    fn issue<'a>(&'a self, grant: &'a GrantContext) -> BoxFuture<'a, Result<Value, ProviderError>> {
        async move {
            let config = Config::read(&grant.target.config)?;
            let spec = GrantSpec::parse(&grant.grant)?;
            let account = Account::new(login_name(&grant.principal, &grant.grant_id, MAX_USER_LEN), &config);
            let mut session = self.session(&grant.target).await?;
            let password = password(grant);
            session.hide(&password);
            account::create(&mut session, &account, &password, &spec).await?;
            Ok(metadata(&account, &config, &spec))
        }
        .boxed()
    }

    fn credential<'a>(
        &'a self,
        grant: &'a GrantContext,
        metadata: &'a Value,
    ) -> BoxFuture<'a, Result<SecretCredential, ProviderError>> {
        async move {
            let (config, account) = issued(grant, metadata)?;
            let password = password(grant);
            let mut token = credential_uri(TYPE, &account.user, password.expose(), &config.host, config.port);
            token.push('/');
            let env = [
                ("MYSQL_HOST", config.host.clone()),
                ("MYSQL_TCP_PORT", config.port.to_string()),
                ("MYSQL_USER", account.user.clone()),
                ("MYSQL_PWD", password.expose().to_string()),
            ];
            Ok(secret_credential(TYPE, token, env))
        }
        .boxed()
    }

    fn revoke<'a>(&'a self, grant: &'a GrantContext, metadata: &'a Value) -> BoxFuture<'a, Result<(), ProviderError>> {
        async move {
            let (_, account) = issued(grant, metadata)?;
            let mut session = self.session(&grant.target).await?;
            account::remove(&mut session, &account).await
        }
        .boxed()
    }

    fn verify<'a>(
        &'a self,
        grant: &'a GrantContext,
        metadata: &'a Value,
    ) -> BoxFuture<'a, Result<Verification, ProviderError>> {
        async move {
            let (_, account) = issued(grant, metadata)?;
            let mut session = self.session(&grant.target).await?;
            account::remaining(&mut session, &account).await
        }
        .boxed()
    }

    fn test<'a>(&'a self, target: &'a TargetContext) -> BoxFuture<'a, Result<Vec<TestCheck>, ProviderError>> {
        async move {
            let config = Config::read(&target.config)?;
            let mut session = match self.session(target).await {
                Ok(session) => session,
                Err(error) => return Ok(vec![TestCheck::failed("connect", error.to_string())]),
            };
            Ok(checks::run(&mut session, &config).await)
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
            session::rotate(&config, &target.name, target.secrets.get("password"), new).await
        }
        .boxed()
    }
}
