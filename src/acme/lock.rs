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
pub const LEASE: Duration = Duration::from_secs(600);

pub struct LockGuard {
    path: PathBuf,
    owner: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Acquire {
    Got,
    /// Another live owner holds it (their owner string).
    Held(String),
}

/// This process: the same string for every lock it takes.
pub fn owner_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}:{}:{:08x}", host.trim(), std::process::id(), fastrand::u32(..))
    })
}

pub fn try_lock(certs: &Path, name: &str, owner: &str) -> std::io::Result<(Acquire, Option<LockGuard>)> {
    let dir = certs.join(STATE_DIR);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.lock"));
    for _ in 0..2 {
        let expires = unix(SystemTime::now() + LEASE);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                file.write_all(format!("owner={owner}\nexpires={expires}\n").as_bytes())?;
                file.sync_all()?;
                return Ok((Acquire::Got, Some(LockGuard { path, owner: owner.to_string() })));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let (holder, expires) = read_lock(&path);
                let expired = expires.is_none_or(|t| t <= unix(SystemTime::now()));
                if !expired {
                    return Ok((Acquire::Held(holder), None));
                }
                // The owner died mid-order (or wrote garbage): take the lock over. If
                // two instances race here, `create_new` lets only one of them in.
                tracing::warn!(lock = %path.display(), %holder, "ACME order lock expired; taking it over");
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => return Err(e),
        }
    }
    let (holder, _) = read_lock(&path);
    Ok((Acquire::Held(holder), None))
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
}
