//! A thin layer over SQLite's own page cache that skips truncations which
//! cannot drop anything.
//!
//! Why: when a B-tree split leaves its new pages out of order, SQLite swaps
//! their page numbers through a spare key (the page holding the lock bytes,
//! number 262,145 with 4 KiB pages) that no real page ever has. The default
//! cache remembers the largest key it has seen, so at the following commit
//! it believes pages beyond the end of the file are cached and scans its
//! whole hash table to drop them: one read per cached page (16,000 with the
//! writer's 64 MiB cache), on every commit, for nothing. A profile of the
//! request path put 4.4 % of the server's CPU there.
//!
//! This layer forwards every call to the default cache and keeps, per
//! cache, an upper bound of the keys it may hold (the spare key counted
//! apart). A truncation whose limit lies above that bound has nothing to
//! drop, so it is not forwarded; every other one is, and then lowers the
//! bound. The bound only ever overestimates (pages the default cache evicts
//! by itself are not subtracted), so a truncation that could drop a page is
//! never skipped.
//!
//! SQLite takes a page cache only before it initialises, so [`install`]
//! runs before the store opens its first connection; should something in
//! the process have used SQLite first, the default cache stays as it is.

use std::os::raw::{c_int, c_uint};
use std::sync::OnceLock;
#[cfg(test)]
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

/// SQLite's default lock-byte offset (`PENDING_BYTE`, 1 GiB); the page
/// after it is the spare key B-tree balancing borrows.
const PENDING_BYTE: c_uint = 0x4000_0000;

/// The default cache's methods, read once before ours replace them.
struct DefaultCache(ffi::sqlite3_pcache_methods2);

// The methods are function pointers and SQLite's own argument pointer,
// valid for the life of the process and safe to call from any thread (the
// default cache takes its own mutexes).
unsafe impl Send for DefaultCache {}
unsafe impl Sync for DefaultCache {}

static DEFAULT_CACHE: OnceLock<DefaultCache> = OnceLock::new();
static INSTALLED: OnceLock<bool> = OnceLock::new();

#[cfg(test)]
pub(crate) static TRUNCATIONS_SKIPPED: AtomicU64 = AtomicU64::new(0);
#[cfg(test)]
pub(crate) static TRUNCATIONS_FORWARDED: AtomicU64 = AtomicU64::new(0);

/// One cache as SQLite sees it: the default cache's handle and the bound
/// on its keys. SQLite calls a cache's methods from one connection at a
/// time, so the fields need no lock.
struct BoundedCache {
    inner: *mut ffi::sqlite3_pcache,
    spare_key: c_uint,
    spare_key_cached: bool,
    /// No page other than the spare key's has a larger key.
    max_key: c_uint,
}

impl BoundedCache {
    fn note_key(&mut self, key: c_uint) {
        if key == self.spare_key {
            self.spare_key_cached = true;
        } else if key > self.max_key {
            self.max_key = key;
        }
    }

    fn may_hold_key_from(&self, limit: c_uint) -> bool {
        self.max_key >= limit || (self.spare_key_cached && self.spare_key >= limit)
    }
}

/// Puts the layer in place, once per process. Returns whether it is in
/// place: false when SQLite was initialised before this was called.
pub(crate) fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        // SAFETY: both calls pass the struct SQLite's documentation names
        // for the option; SQLite copies the methods it is given, and
        // refuses either call once it has been initialised.
        unsafe {
            let mut default = std::mem::MaybeUninit::<ffi::sqlite3_pcache_methods2>::zeroed();
            if ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, default.as_mut_ptr()) != ffi::SQLITE_OK {
                return false;
            }
            let default = default.assume_init();
            let ours = ffi::sqlite3_pcache_methods2 {
                iVersion: default.iVersion,
                pArg: default.pArg,
                xInit: default.xInit,
                xShutdown: default.xShutdown,
                xCreate: Some(create),
                xCachesize: Some(cache_size),
                xPagecount: Some(page_count),
                xFetch: Some(fetch),
                xUnpin: Some(unpin),
                xRekey: Some(rekey),
                xTruncate: Some(truncate),
                xDestroy: Some(destroy),
                xShrink: Some(shrink),
            };
            if DEFAULT_CACHE.set(DefaultCache(default)).is_err() {
                return false;
            }
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &ours as *const ffi::sqlite3_pcache_methods2)
                == ffi::SQLITE_OK
        }
    })
}

/// One of the default cache's methods; `None` only if SQLite had none.
fn default_method<T>(pick: impl FnOnce(&ffi::sqlite3_pcache_methods2) -> Option<T>) -> Option<T> {
    // Our methods are handed to SQLite only after the default ones are set.
    DEFAULT_CACHE.get().and_then(|DefaultCache(methods)| pick(methods))
}

/// SAFETY (for every method below): SQLite passes back the pointer
/// `create` returned, until it calls `destroy`.
unsafe fn bounded<'a>(cache: *mut ffi::sqlite3_pcache) -> &'a mut BoundedCache {
    unsafe { &mut *(cache as *mut BoundedCache) }
}

unsafe extern "C" fn create(page_size: c_int, extra_size: c_int, purgeable: c_int) -> *mut ffi::sqlite3_pcache {
    let Some(create) = default_method(|m| m.xCreate) else {
        return std::ptr::null_mut();
    };
    let inner = unsafe { create(page_size, extra_size, purgeable) };
    if inner.is_null() {
        return inner;
    }
    let spare_key = match c_uint::try_from(page_size) {
        Ok(size) if size > 0 => PENDING_BYTE / size + 1,
        // Never a real key: nothing is counted apart.
        _ => 0,
    };
    let cache = BoundedCache {
        inner,
        spare_key,
        spare_key_cached: false,
        max_key: 0,
    };
    Box::into_raw(Box::new(cache)) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn cache_size(cache: *mut ffi::sqlite3_pcache, pages: c_int) {
    if let Some(method) = default_method(|m| m.xCachesize) {
        unsafe { method(bounded(cache).inner, pages) }
    }
}

unsafe extern "C" fn page_count(cache: *mut ffi::sqlite3_pcache) -> c_int {
    match default_method(|m| m.xPagecount) {
        Some(method) => unsafe { method(bounded(cache).inner) },
        None => 0,
    }
}

unsafe extern "C" fn fetch(
    cache: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let Some(method) = default_method(|m| m.xFetch) else {
        return std::ptr::null_mut();
    };
    let cache = unsafe { bounded(cache) };
    let page = unsafe { method(cache.inner, key, create) };
    if !page.is_null() {
        cache.note_key(key);
    }
    page
}

unsafe extern "C" fn unpin(cache: *mut ffi::sqlite3_pcache, page: *mut ffi::sqlite3_pcache_page, discard: c_int) {
    if let Some(method) = default_method(|m| m.xUnpin) {
        unsafe { method(bounded(cache).inner, page, discard) }
    }
}

unsafe extern "C" fn rekey(
    cache: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old_key: c_uint,
    new_key: c_uint,
) {
    let Some(method) = default_method(|m| m.xRekey) else {
        return;
    };
    let cache = unsafe { bounded(cache) };
    unsafe { method(cache.inner, page, old_key, new_key) };
    // Keys are unique within a cache: the page that had the spare key is
    // the one that just left it.
    if old_key == cache.spare_key {
        cache.spare_key_cached = false;
    }
    cache.note_key(new_key);
}

unsafe extern "C" fn truncate(cache: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let Some(method) = default_method(|m| m.xTruncate) else {
        return;
    };
    let cache = unsafe { bounded(cache) };
    if !cache.may_hold_key_from(limit) {
        #[cfg(test)]
        TRUNCATIONS_SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    #[cfg(test)]
    TRUNCATIONS_FORWARDED.fetch_add(1, Ordering::Relaxed);
    unsafe { method(cache.inner, limit) };
    cache.max_key = cache.max_key.min(limit.saturating_sub(1));
    if cache.spare_key >= limit {
        cache.spare_key_cached = false;
    }
}

unsafe extern "C" fn destroy(cache: *mut ffi::sqlite3_pcache) {
    let cache = unsafe { Box::from_raw(cache as *mut BoundedCache) };
    if let Some(method) = default_method(|m| m.xDestroy) {
        unsafe { method(cache.inner) }
    }
}

unsafe extern "C" fn shrink(cache: *mut ffi::sqlite3_pcache) {
    if let Some(method) = default_method(|m| m.xShrink) {
        unsafe { method(bounded(cache).inner) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn the_spare_key_does_not_raise_the_bound_once_it_is_left() {
        let mut cache = BoundedCache {
            inner: std::ptr::null_mut(),
            spare_key: PENDING_BYTE / 4096 + 1,
            spare_key_cached: false,
            max_key: 0,
        };
        cache.note_key(100);
        assert!(cache.may_hold_key_from(100));
        assert!(!cache.may_hold_key_from(101), "nothing past page 100 was ever cached");
        cache.note_key(cache.spare_key);
        assert_eq!(cache.max_key, 100);
        assert!(cache.may_hold_key_from(101), "the spare key is cached until it is left");
        cache.spare_key_cached = false;
        assert!(!cache.may_hold_key_from(101));
    }

    /// Random-order inserts into an indexed table split pages out of order
    /// (the spare-key swap); rolled-back growth leaves cached pages beyond
    /// the end of the file, which must still be dropped, or later reads
    /// would see pages of the rolled-back transaction.
    #[test]
    fn skips_only_truncations_that_cannot_drop_a_page() {
        assert!(install(), "the layer goes in before SQLite's first use in this process");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cache.db");
        let mut conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA cache_size = -65536;
             CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL); CREATE INDEX t_v ON t (v);",
        )
        .expect("schema");
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut committed = 0u64;
        for round in 0..60 {
            let tx = conn.transaction().expect("begin");
            for _ in 0..200 {
                tx.execute(
                    "INSERT INTO t (k, v) VALUES (?1, ?2)",
                    (format!("{:016x}", next()), format!("{:0200x}", next())),
                )
                .expect("insert");
            }
            if round % 5 == 4 {
                tx.rollback().expect("rollback");
            } else {
                tx.commit().expect("commit");
                committed += 200;
            }
        }
        let rows: u64 = conn
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .expect("count");
        assert_eq!(rows, committed);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok");
        // A fresh connection reads the file, not this cache.
        let fresh = Connection::open(&path).expect("reopen");
        let rows_again: u64 = fresh
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .expect("count");
        assert_eq!(rows_again, committed);
        assert!(
            TRUNCATIONS_SKIPPED.load(Ordering::Relaxed) > 0,
            "commits after an out-of-order split skip the scan"
        );
        assert!(
            TRUNCATIONS_FORWARDED.load(Ordering::Relaxed) > 0,
            "rollbacks of growth still drop pages"
        );
    }
}
