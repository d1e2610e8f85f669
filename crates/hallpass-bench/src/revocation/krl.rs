//! ssh grants revoked before their expiry, through the target's KRL: how
//! soon `ssh` is refused once the revoke is sent.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;

use super::issue::{Setup, samples};
use super::probe::{self, Outcome, Spread};
use super::{KrlReport, ssh};
use crate::stats::Latencies;

/// Grants of principals `first..first + count`, each revoked while its
/// certificate still logs in, then `ssh` tried until refused (30 s at most).
pub async fn revoke_before_expiry(setup: &Setup<'_>, first: usize, count: usize) -> Result<KrlReport> {
    eprintln!("revocation (ssh): {count} grants revoked before expiry through the KRL");
    let (grants, failures) = setup
        .issue_many(first, count, 4, &|_| 3600, &|_| false, &|_| false)
        .await;
    if !failures.is_empty() {
        bail!("cannot create the KRL grants: {}", samples(&failures).join(" | "));
    }
    let mut call = Latencies::new()?;
    let mut refused_after = Vec::new();
    let mut refused_at_first_login = 0;
    for grant in &grants {
        if !matches!(ssh::Ssh::try_login(&grant.login).await, Outcome::Live) {
            bail!("a fresh certificate of grant {} does not log in", grant.id);
        }
        let sent = Utc::now();
        let started = Instant::now();
        setup
            .admin
            .revoke(&grant.id, "hallpass-bench: revoke before expiry")
            .await
            .with_context(|| format!("cannot revoke grant {}", grant.id))?;
        call.record(started.elapsed());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut first_login = true;
        loop {
            match ssh::Ssh::try_login(&grant.login).await {
                Outcome::Ended(_) => {
                    refused_after.push(probe::ms_between(sent, Utc::now()));
                    if first_login {
                        refused_at_first_login += 1;
                    }
                    break;
                }
                _ if Instant::now() >= deadline => break,
                _ => first_login = false,
            }
        }
    }
    Ok(KrlReport {
        revoked: grants.len(),
        revoke_call: call.summary(),
        refused_after: Spread::of(refused_after),
        refused_at_first_login,
    })
}
