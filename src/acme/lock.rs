//! The order lock: several porter instances on one `certs/` folder (a shared
//! volume, NFS) must not order the same certificate at once. Before ordering,
//! an instance creates `.porter-acme/NAME.lock` exclusively, holding its owner
//! (host, pid, a random id) and a lease end. Another instance finding a live
//! lease waits and then re-reads the certificate (which the owner has renewed
//! by then); an expired lease (its owner died mid-order) is taken over.
//! Dropping the guard removes the file if it is still ours.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::files::{unix, STATE_DIR};

/// Longer than any order takes (each request is bounded; an order is bounded
/// as a whole by `ORDER_TIMEOUT` in `order.rs`), short enough that a crashed
/// owner delays the others only minutes.
pub(super) const LEASE: Duration = Duration::from_secs(600);

pub(super) struct LockGuard {
    path: PathBuf,
    owner: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Acquire {
    Got,
    /// Another live owner holds it (their owner string).
    Held(String),
}

/// This process: the same string for every lock it takes.
pub(super) fn owner_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}:{}:{:08x}", host.trim(), std::process::id(), fastrand::u32(..))
    })
}

pub(super) fn try_lock(certs: &Path, name: &str, owner: &str) -> std::io::Result<(Acquire, Option<LockGuard>)> {
    let dir = certs.join(STATE_DIR);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.lock"));
    for _ in 0..2 {
        let expires = unix(SystemTime::now() + LEASE);
        let contents = format!("owner={owner}\nexpires={expires}\n");
        match create_whole(&dir, &path, name, contents.as_bytes()) {
            Ok(()) => return Ok((Acquire::Got, Some(LockGuard { path, owner: owner.to_string() }))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let (holder, expires) = read_lock(&path);
                let expired = match expires {
                    Some(t) => t <= unix(SystemTime::now()),
                    // Garbage (or a file being written by a system without hard links):
                    // only a file older than a lease is taken for abandoned.
                    None => modified_age(&path).is_some_and(|age| age > LEASE),
                };
                if !expired {
                    return Ok((Acquire::Held(holder), None));
                }
                // The owner died mid-order (or wrote garbage): take the lock over. If
                // two instances race here, the exclusive create lets only one of them in.
                tracing::warn!(lock = %path.display(), %holder, "ACME order lock expired; taking it over");
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => return Err(e),
        }
    }
    let (holder, _) = read_lock(&path);
    Ok((Acquire::Held(holder), None))
}

/// Creates `path` exclusively with `contents` already in it. A lock file that
/// appears empty and fills a moment later would let a second instance read it
/// as garbage and take it over, so the contents go into a private file first
/// and are hard-linked into place (atomic, and exclusive on NFS too). Where
/// the file system has no hard links, an exclusive create and write stands in.
fn create_whole(dir: &Path, path: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    let private = dir.join(format!(".{name}.lock.{}.{:08x}", std::process::id(), fastrand::u32(..)));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&private)?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&private, path));
    let _ = std::fs::remove_file(&private);
    match linked {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            tracing::debug!("hard link for the ACME lock failed ({e}); creating it in place");
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
            file.write_all(contents)?;
            file.sync_all()
        }
        other => other,
    }
}

fn modified_age(path: &Path) -> Option<Duration> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    SystemTime::now().duration_since(modified).ok()
}

fn read_lock(path: &Path) -> (String, Option<u64>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::to_string);
    (field("owner=").unwrap_or_else(|| "unknown".into()), field("expires=").and_then(|e| e.parse().ok()))
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Only our own: after an expiry another instance may hold it now.
        if read_lock(&self.path).0 == self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_at_a_time_and_expired_leases_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let (got, guard) = try_lock(dir.path(), "a.test", "one").unwrap();
        assert_eq!(got, Acquire::Got);
        assert_eq!(try_lock(dir.path(), "a.test", "two").unwrap().0, Acquire::Held("one".into()));
        drop(guard);
        let (got, guard) = try_lock(dir.path(), "a.test", "two").unwrap();
        assert_eq!(got, Acquire::Got);
        // A lease in the past: its owner is gone.
        std::fs::write(dir.path().join(STATE_DIR).join("a.test.lock"), "owner=dead\nexpires=5\n").unwrap();
        let (got, _three) = try_lock(dir.path(), "a.test", "three").unwrap();
        assert_eq!(got, Acquire::Got);
        // "two" no longer owns it: dropping its guard leaves three's lock alone.
        drop(guard);
        assert_eq!(try_lock(dir.path(), "a.test", "four").unwrap().0, Acquire::Held("three".into()));
    }

    #[test]
    fn racing_owners_get_the_lock_once_and_a_fresh_garbage_file_is_held() {
        for round in 0..50 {
            let dir = tempfile::tempdir().unwrap();
            let barrier = std::sync::Barrier::new(4);
            let got: Vec<bool> = std::thread::scope(|s| {
                let tries: Vec<_> = (0..4)
                    .map(|i| {
                        let (dir, barrier) = (dir.path(), &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            let (got, guard) = try_lock(dir, "a.test", &format!("owner{i}")).unwrap();
                            std::mem::forget(guard);
                            got == Acquire::Got
                        })
                    })
                    .collect();
                tries.into_iter().map(|t| t.join().unwrap()).collect()
            });
            assert_eq!(got.iter().filter(|g| **g).count(), 1, "round {round}: {got:?}");
            // Only the lock itself is left behind, no private files.
            assert_eq!(std::fs::read_dir(dir.path().join(STATE_DIR)).unwrap().count(), 1);
        }
        // A file without a lease that was just written is someone's, not garbage.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(STATE_DIR)).unwrap();
        std::fs::write(dir.path().join(STATE_DIR).join("a.test.lock"), "").unwrap();
        assert!(matches!(try_lock(dir.path(), "a.test", "one").unwrap().0, Acquire::Held(_)));
    }
}
