//! The SQLite data directory: created private, never chmodded when it
//! already exists, refused when others may write to it, and used by one
//! server at a time.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use hallpass_core::SystemClock;
use hallpass_store::{Store, StoreError};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

fn open(dir: &Path) -> Result<Store, StoreError> {
    Store::open_sqlite(dir, Arc::new(SystemClock))
}

fn refusal(dir: &Path) -> String {
    match open(dir) {
        Ok(_) => panic!("{} was accepted", dir.display()),
        Err(error) => error.to_string(),
    }
}

/// A directory at `mode`, set explicitly so the umask does not matter.
fn dir_with_mode(parent: &Path, mode: u32) -> std::path::PathBuf {
    let dir = parent.join(format!("dir-{mode:o}"));
    fs::create_dir(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).expect("chmod");
    dir
}

#[test]
fn a_missing_data_dir_is_created_0700_with_its_parents() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("missing/parent/data");
    let store = open(&dir).expect("open");
    assert_eq!(mode(&dir), 0o700);
    assert!(dir.parent().expect("parent").is_dir());
    assert_eq!(mode(&dir.join("hallpass.db")), 0o600);
    assert_eq!(mode(&dir.join("hallpass.lock")), 0o600);
    store.close();
}

#[test]
fn a_world_writable_sticky_dir_is_refused_and_keeps_its_mode() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = dir_with_mode(temp.path(), 0o1777);
    let message = refusal(&dir);
    assert!(
        message.contains(&dir.display().to_string())
            && message.contains("mode 1777")
            && message.contains(&format!("chmod 700 {}", dir.display()))
            && message.contains("choose a private directory"),
        "names the path, the mode and the fix: {message}"
    );
    assert_eq!(mode(&dir), 0o1777, "the sticky bit and the mode are untouched");
    assert_eq!(
        fs::read_dir(&dir).expect("list").count(),
        0,
        "nothing was written into it"
    );
}

#[test]
fn a_group_writable_dir_is_refused() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = dir_with_mode(temp.path(), 0o770);
    let message = refusal(&dir);
    assert!(message.contains("group- or world-writable (mode 0770)"), "{message}");
    assert_eq!(mode(&dir), 0o770);
}

#[test]
fn an_existing_private_enough_dir_is_used_as_it_is() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = dir_with_mode(temp.path(), 0o750);
    let store = open(&dir).expect("a 0750 directory is fine");
    assert_eq!(mode(&dir), 0o750, "not chmodded");
    assert_eq!(mode(&dir.join("hallpass.db")), 0o600);
    store.close();
}

#[test]
fn a_file_is_not_a_data_dir() {
    let temp = tempfile::tempdir().expect("temp dir");
    let file = temp.path().join("file");
    fs::write(&file, "").expect("write");
    let message = refusal(&file);
    assert!(message.contains("not a directory"), "{message}");
}

#[test]
fn a_second_store_on_the_same_dir_is_refused_until_the_first_is_gone() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("data");
    let first = open(&dir).expect("open");
    let message = refusal(&dir);
    assert!(
        message.contains(&format!("another hallpass server is using {}", dir.display()))
            && message.contains("one server per SQLite data directory"),
        "{message}"
    );
    first.close();
    drop(first);
    open(&dir).expect("the lock went with the first store").close();
}

/// Committed pages reach `hallpass.db` from the checkpointer's thread,
/// while they are far fewer than the writer's own checkpoint limit: the
/// writer's commits never wait for a checkpoint and its `fsync`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_copies_commits_into_the_database_file() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("data");
    let store = open(&dir).expect("open");
    let before = fs::metadata(dir.join("hallpass.db")).expect("db").len();
    // About 2 MiB of events: some 500 pages, far below the 16,384 at which
    // the writer would checkpoint by itself.
    for batch in 0..20 {
        store
            .write(move |w| -> Result<(), StoreError> {
                for n in 0..100 {
                    // Stored packed, so the padding must not compress.
                    let data = serde_json::json!({"batch": batch, "n": n, "pad": noise(batch * 100 + n, 1400)});
                    w.append_audit(hallpass_core::audit::AuditDraft::new("alice", "test.event", None, data))?;
                }
                Ok(())
            })
            .await
            .expect("write");
    }
    let grown = |len: u64| len > before + 1_000_000;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !grown(fs::metadata(dir.join("hallpass.db")).expect("db").len()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the commits are still only in the WAL after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.close();
}

/// `len` characters that zstd cannot squeeze much (six bits of a
/// xorshift generator each), different for each `seed`.
fn noise(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[(state & 63) as usize])
        })
        .collect()
}
