//! The target test of a mysql target: whether its admin can create
//! accounts (tried with a locked throw-away account), see and end other
//! accounts' connections, and grant privileges on — each failure with the
//! GRANT statement that fixes it.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::grant::quote_string;
use super::privileges::{Held, create_user_fix, kill_fix, kill_privileges, process_fix};
use super::session::{Server, Session};
use super::{Config, PASSWORD_SUFFIX};
use crate::{SecretValue, TestCheck};

pub(super) async fn run(session: &mut Session, config: &Config) -> Vec<TestCheck> {
    let server = session.server().clone();
    let mut checks = vec![TestCheck::passed(
        "connect",
        format!(
            "connected to {}:{} ({}) as {}",
            config.host, config.port, server.version, server.admin
        ),
    )];
    checks.push(create_user(session, config).await);
    let lines: Vec<String> = match session.rows("SHOW GRANTS").await {
        Ok(lines) => lines,
        Err(failure) => {
            let error = session.error("SHOW GRANTS", failure, "");
            checks.push(TestCheck::failed("privileges", error.to_string()));
            return checks;
        }
    };
    let held = Held::parse(&lines);
    checks.push(privilege(
        &held,
        &server,
        "process",
        &["PROCESS"],
        "to see the accounts' connections when revoking",
        &process_fix(&server),
    ));
    checks.push(privilege(
        &held,
        &server,
        "connection admin",
        kill_privileges(&server),
        "to end the accounts' connections when revoking",
        &kill_fix(&server),
    ));
    checks.push(grant_option(&held, &server));
    checks
}

/// Creates and drops a locked account with a random name and password.
async fn create_user(session: &mut Session, config: &Config) -> TestCheck {
    let random = SystemRandom::new();
    let mut bytes = [0u8; 32];
    if random.fill(&mut bytes).is_err() {
        return TestCheck::failed("create user", "no random bytes for a test account");
    }
    let user = format!("hp_probe_{}", hex::encode(&bytes[..8]));
    let password = SecretValue::new(format!("{}{PASSWORD_SUFFIX}", URL_SAFE_NO_PAD.encode(&bytes[8..])));
    session.hide(&password);
    let who = format!("{}@{}", quote_string(&user), quote_string(&config.user_host));
    let create = format!(
        "CREATE USER {who} IDENTIFIED BY {} ACCOUNT LOCK",
        quote_string(password.expose())
    );
    if let Err(failure) = session.run(&create).await {
        let fix = format!("the admin needs CREATE USER: {}", create_user_fix(session.server()));
        let error = session.error(&format!("CREATE USER {who}"), failure, &fix);
        return TestCheck::failed("create user", error.to_string());
    }
    let drop = format!("DROP USER IF EXISTS {who}");
    if let Err(failure) = session.run(&drop).await {
        return TestCheck::failed("create user", session.error(&drop, failure, "").to_string());
    }
    TestCheck::passed(
        "create user",
        format!("created and dropped the locked test account {who}"),
    )
}

fn privilege(held: &Held, server: &Server, name: &str, any: &[&str], why: &str, fix: &str) -> TestCheck {
    let wanted = any.join(" or ");
    match held.holds(any) {
        Some(true) => TestCheck::passed(name, format!("{} holds {wanted} on *.*, {why}", server.admin)),
        Some(false) => TestCheck::failed(
            name,
            format!("{} lacks {wanted}, needed {why}; fix: {fix}", server.admin),
        ),
        None => TestCheck::passed(
            name,
            format!(
                "{} is not granted {wanted} directly; its roles may give it (not checked here), needed {why}; otherwise: {fix}",
                server.admin
            ),
        ),
    }
}

fn grant_option(held: &Held, server: &Server) -> TestCheck {
    let per_grant = "whether it holds each role's privileges WITH GRANT OPTION on the role's `on` is known only when a grant is issued";
    if held.grant_option_global {
        return TestCheck::passed(
            "grant option",
            format!("{} holds GRANT OPTION on *.*; {per_grant}", server.admin),
        );
    }
    if !held.grant_option_on.is_empty() {
        return TestCheck::passed(
            "grant option",
            format!(
                "{} holds GRANT OPTION on {}; {per_grant}",
                server.admin,
                held.grant_option_on.join(", ")
            ),
        );
    }
    if held.roles {
        return TestCheck::passed(
            "grant option",
            format!(
                "{} holds GRANT OPTION on nothing directly; its roles may give it; {per_grant}",
                server.admin
            ),
        );
    }
    TestCheck::failed(
        "grant option",
        format!(
            "{0} holds GRANT OPTION on nothing, so it cannot grant any role's privileges; for each database roles use: GRANT SELECT, INSERT, UPDATE, DELETE ON `app`.* TO {0} WITH GRANT OPTION; (the privileges the roles give)",
            server.admin
        ),
    )
}
