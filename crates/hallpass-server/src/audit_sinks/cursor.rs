//! Where a webhook or syslog sink has got to, kept in the `meta` table:
//! `audit_sink.NAME.seq`, the last seq the receiver acknowledged, and, with
//! several replicas, `audit_sink.NAME.lease`, `"<replica> <until>"` (Unix
//! milliseconds), so that one replica at a time drives the sink.
//!
//! The lease is taken, renewed and checked in store writes, which every
//! replica serialises on the audit head: a compare-and-set. The cursor
//! moves in the same write that checks the lease, so a replica that lost
//! it never moves the cursor; what it sent meanwhile is sent again by the
//! next holder, and the receiver drops it by seq.

use std::time::Duration;

use hallpass_store::{Store, StoreError, WriteTx};

/// How long a lease lasts unless renewed.
pub(super) const LEASE: Duration = Duration::from_secs(10);
/// How often the holder renews it.
pub(super) const RENEW_EVERY: Duration = Duration::from_secs(3);

/// One sink's cursor (and lease) in the store.
pub(super) struct Cursor {
    store: Store,
    seq_key: String,
    lease_key: String,
    /// This replica's id; `None` when the store has one server (SQLite,
    /// whose directory lock already makes this server the only one).
    owner: Option<String>,
}

/// Whether this replica holds the lease after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    Yes,
    No,
}

/// `"<owner> <until>"` → its parts; anything else reads as free.
fn parse_lease(value: &str) -> Option<(&str, i64)> {
    let (owner, until) = value.split_once(' ')?;
    Some((owner, until.parse().ok()?))
}

/// Takes or renews the lease for `owner` unless another replica holds
/// one that has not run out.
fn take_lease(wtx: &mut WriteTx<'_>, key: &str, owner: &str) -> Result<Held, StoreError> {
    let now = wtx.now().timestamp_millis();
    let current = wtx.read().meta(key)?;
    if let Some((holder, until)) = current.as_deref().and_then(parse_lease)
        && holder != owner
        && until > now
    {
        return Ok(Held::No);
    }
    let until = now + i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
    wtx.put_meta(key, &format!("{owner} {until}"))?;
    Ok(Held::Yes)
}

impl Cursor {
    pub(super) fn new(store: Store, sink: &str, owner: Option<String>) -> Self {
        Self {
            store,
            seq_key: format!("audit_sink.{sink}.seq"),
            lease_key: format!("audit_sink.{sink}.lease"),
            owner,
        }
    }

    /// The last seq acknowledged, 0 when nothing was sent yet.
    pub(super) async fn load(&self) -> Result<u64, StoreError> {
        let key = self.seq_key.clone();
        let value = self.store.read(move |r| r.meta(&key)).await?;
        match value {
            None => Ok(0),
            Some(text) => text
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("meta {} holds {text:?}, not a seq", self.seq_key))),
        }
    }

    /// Takes or renews the lease.
    pub(super) async fn hold(&self) -> Result<Held, StoreError> {
        let Some(owner) = self.owner.clone() else {
            return Ok(Held::Yes);
        };
        let key = self.lease_key.clone();
        self.store.write(move |w| take_lease(w, &key, &owner)).await
    }

    /// Records `seq` as acknowledged, if this replica still holds the
    /// lease (which is renewed); `Held::No` means nothing was written.
    pub(super) async fn advance(&self, seq: u64) -> Result<Held, StoreError> {
        let (seq_key, lease_key, owner) = (self.seq_key.clone(), self.lease_key.clone(), self.owner.clone());
        self.store
            .write(move |w| {
                if let Some(owner) = &owner
                    && take_lease(w, &lease_key, owner)? == Held::No
                {
                    return Ok(Held::No);
                }
                w.put_meta(&seq_key, &seq.to_string())?;
                Ok(Held::Yes)
            })
            .await
    }

    /// Gives the lease up at shutdown, so another replica takes over at
    /// once rather than when it runs out.
    pub(super) async fn release(&self) {
        let Some(owner) = self.owner.clone() else {
            return;
        };
        let key = self.lease_key.clone();
        let released = self
            .store
            .write(move |w| -> Result<(), StoreError> {
                let current = w.read().meta(&key)?;
                if current
                    .as_deref()
                    .and_then(parse_lease)
                    .is_some_and(|(holder, _)| holder == owner)
                {
                    w.put_meta(&key, &format!("{owner} 0"))?;
                }
                Ok(())
            })
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, "cannot release an audit sink's lease; another replica takes it when it runs out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_lease;

    #[test]
    fn leases_read_back_or_count_as_free() {
        assert_eq!(
            parse_lease("0190-replica 1700000000000"),
            Some(("0190-replica", 1_700_000_000_000))
        );
        assert_eq!(parse_lease("replica"), None);
        assert_eq!(parse_lease("replica soon"), None);
        assert_eq!(parse_lease(""), None);
    }
}
