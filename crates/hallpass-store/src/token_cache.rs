//! Token look-ups kept in memory between API calls, for a store no other
//! server writes (SQLite). Every API call authenticates, and reading the
//! token from the store costs a hop to a reader thread and back; most calls
//! come from tokens seen a moment before.
//!
//! Exactness comes from a generation number. Every write batch that changed
//! a token or a lock moves it on after its commit and before anyone hears
//! of the commit (its callers, the change counter). An entry is served only
//! while the generation it was read at is still current, and a look-up
//! stores what it read only if no such batch finished meanwhile. So once a
//! revocation, a lock or a change of groups has returned, no call sees the
//! token as it was before.
//!
//! Not used on PostgreSQL: there other replicas change tokens too, and this
//! one hears of their commits only afterwards, through a notification; a
//! cache would let a revoked token work on it for that moment.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::TokenRow;

/// Most tokens kept; when full, the cache starts again empty (a look-up is
/// only a store read away). Each entry is a few hundred bytes.
const MAX_ENTRIES: usize = 16_384;

/// What [`crate::ReadTx::token_for_auth`] answers for a token that exists:
/// its row, and whether its principal is locked.
pub type TokenForAuth = (TokenRow, bool);

#[derive(Default)]
pub(crate) struct TokenCache {
    generation: AtomicU64,
    /// By secret hash: the generation the entry was read at, and the entry.
    entries: Mutex<HashMap<String, (u64, TokenForAuth)>>,
}

impl TokenCache {
    /// The generation a look-up starts at: take it before reading the store.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The entry for `secret_hash`, if one was read at the current generation.
    pub(crate) fn get(&self, secret_hash: &str) -> Option<TokenForAuth> {
        let entries = self.entries.lock().ok()?;
        let (read_at, found) = entries.get(secret_hash)?;
        (*read_at == self.generation()).then(|| found.clone())
    }

    /// Keeps what a look-up that started at `read_at` found, unless a batch
    /// that touched tokens finished since (what was read may predate it).
    pub(crate) fn put(&self, secret_hash: &str, read_at: u64, found: &TokenForAuth) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if read_at != self.generation() {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(secret_hash.to_string(), (read_at, found.clone()));
    }

    /// A batch that touched tokens or locks committed (or failed): nothing
    /// read before now may be served.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn token(principal: &str) -> TokenForAuth {
        let row = TokenRow {
            id: format!("tok-{principal}"),
            secret_hash: format!("hash-{principal}"),
            principal: principal.into(),
            groups: vec![],
            created_at: DateTime::UNIX_EPOCH,
            created_by: "admin".into(),
            expires_at: None,
            revoked_at: None,
        };
        (row, false)
    }

    #[test]
    fn an_entry_is_served_until_a_token_write_commits() {
        let cache = TokenCache::default();
        let at = cache.generation();
        cache.put("h", at, &token("alice"));
        assert_eq!(cache.get("h"), Some(token("alice")));
        cache.invalidate();
        assert_eq!(cache.get("h"), None);
    }

    #[test]
    fn a_read_that_overlapped_a_token_write_is_not_kept() {
        let cache = TokenCache::default();
        let started = cache.generation();
        // The write commits while the look-up reads the store...
        cache.invalidate();
        // ...so what the look-up read may be from before it.
        cache.put("h", started, &token("alice"));
        assert_eq!(cache.get("h"), None);
        cache.put("h", cache.generation(), &token("alice"));
        assert_eq!(cache.get("h"), Some(token("alice")));
    }

    #[test]
    fn a_full_cache_starts_again_instead_of_growing() {
        let cache = TokenCache::default();
        let at = cache.generation();
        for n in 0..=MAX_ENTRIES {
            cache.put(&format!("h{n}"), at, &token("alice"));
        }
        let held = cache.entries.lock().map(|entries| entries.len()).unwrap_or(usize::MAX);
        assert!(held <= MAX_ENTRIES, "{held} entries");
        assert_eq!(cache.get(&format!("h{MAX_ENTRIES}")), Some(token("alice")));
    }
}
