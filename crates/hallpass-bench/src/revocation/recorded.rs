//! When Hallpass recorded each end: the `grant.expired` audit events of the
//! run's grants, with the lag Hallpass measured itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Recorded;
use crate::expiry::{Expired, any_active, expired_events};
use crate::server::Deployment;
use crate::stats::Latencies;

/// Waits until no grant is active any more, then reads the `grant.expired`
/// events of `ids` from the audit export.
pub async fn ends(deployment: &Deployment, ids: &[String], timeout: Duration) -> Result<Recorded> {
    let admin = deployment.admin(0)?;
    let deadline = Instant::now() + timeout;
    while any_active(&admin).await? {
        if Instant::now() >= deadline {
            eprintln!(
                "WARNING: grants were still active {}s after the probes ended",
                timeout.as_secs()
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let events = expired_events(deployment).await?;
    let by_id: HashMap<&str, &Expired> = events
        .iter()
        .filter_map(|e| e.request_id.as_deref().map(|id| (id, e)))
        .collect();
    let mut lag = Latencies::new()?;
    let (mut found, mut verified, mut not_verified) = (0, 0, 0);
    for id in ids {
        if let Some(event) = by_id.get(id.as_str()) {
            found += 1;
            lag.record_micros(event.lag_ms.max(0) as u64 * 1000);
            match event.verified {
                Some(true) => verified += 1,
                _ => not_verified += 1,
            }
        }
    }
    Ok(Recorded {
        events: found,
        missing: ids.len() - found,
        lag: lag.summary(),
        verified,
        not_verified,
    })
}
