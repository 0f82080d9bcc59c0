//! porter's millisecond clock: one process-wide epoch, and `now_ms` counting
//! from it. Timestamps kept in atomics (a server's ejection, a connection's
//! last activity, a body's last frame) are these milliseconds: a `u64`
//! compares and stores without a lock, where an `Instant` would not fit. And
//! `coarse_now`, an `Instant` from the kernel's tick-old clock, for deadlines
//! and ages counted in seconds.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The process-wide reference instant that the millisecond clocks count from.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub(crate) fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// `Instant::now()` from the kernel's coarse clock: never earlier than it, and at most
/// two timer ticks (8 ms at 250 Hz) later, for a fifth of the cost. For what is timed
/// in seconds on every request: the keep-alive wait, the wait for a server's answer,
/// an idle pooled connection's age, the retry budget's second.
pub(crate) fn coarse_now() -> Instant {
    // Read together once: the coarse clock then lagged the precise one by less than a
    // tick, and adding a tick to every reading keeps it from running early.
    static ANCHOR: OnceLock<(Instant, Duration)> = OnceLock::new();
    let (instant, coarse) = *ANCHOR.get_or_init(|| {
        let coarse = crate::sys::monotonic_coarse();
        (Instant::now(), coarse.saturating_sub(crate::sys::monotonic_coarse_resolution()))
    });
    instant + crate::sys::monotonic_coarse().saturating_sub(coarse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_is_never_early_and_never_far_behind_the_precise_one() {
        let tick = crate::sys::monotonic_coarse_resolution();
        assert!(tick > Duration::ZERO && tick <= Duration::from_millis(10), "tick {tick:?}");
        let mut last = coarse_now();
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until {
            let before = Instant::now();
            let coarse = coarse_now();
            let after = Instant::now();
            assert!(coarse >= before, "{:?} early", before - coarse);
            assert!(coarse <= after + 2 * tick, "{:?} late", coarse - after);
            assert!(coarse >= last, "went back");
            last = coarse;
        }
    }
}
