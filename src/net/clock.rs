//! porter's millisecond clock: one process-wide epoch, and `now_ms` counting
//! from it. Timestamps kept in atomics (a server's ejection, a connection's
//! last activity, a body's last frame) are these milliseconds: a `u64`
//! compares and stores without a lock, where an `Instant` would not fit.

use std::sync::OnceLock;
use std::time::Instant;

/// The process-wide reference instant that the millisecond clocks count from.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub(crate) fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}
