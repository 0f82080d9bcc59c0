//! The retry budget of one upstream, after Envoy's: retries may add at most
//! [`RATIO_PERCENT`]% to the requests an upstream received over the last
//! [`WINDOW_SECS`] seconds, but never fewer than [`MIN_PER_SEC`] retries per
//! second on average ([`MIN_PER_SEC`] × [`WINDOW_SECS`] = 30 per window), so a
//! quiet upstream can still retry its occasional failure.
//!
//! Without a budget, `retries: 2` lets a fleet that fails every request see
//! three times its normal load exactly when it can least take it. With it,
//! a failing fleet sees at most 1.2× its normal load (plus the small floor).
//!
//! The window is a ring of one-second buckets of atomic counters: counting a
//! request is one relaxed `fetch_add`; a retry reads the ring and adds one.
//! A bucket is recycled by the first caller to see it is stale (one
//! compare-and-swap on its second stamp). The counts are therefore
//! approximate under races — a handful of requests or retries at a second's
//! boundary may be missed — which is all a budget needs, and there is no lock.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::net::clock::{coarse_now, epoch};

/// Length of the sliding window, in one-second buckets.
pub(crate) const WINDOW_SECS: u64 = 10;
/// Retries allowed as a share of requests in the window.
pub(crate) const RATIO_PERCENT: u64 = 20;
/// Retries always allowed, per second of window, whatever the traffic.
pub(crate) const MIN_PER_SEC: u64 = 3;

#[derive(Debug, Default)]
struct Bucket {
    /// The second (since the process epoch, plus one) this bucket counts; 0 = never used.
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

#[derive(Debug, Default)]
pub(crate) struct RetryBudget {
    buckets: [Bucket; WINDOW_SECS as usize],
    /// Retries refused because the budget was spent, ever (for metrics).
    pub refused_total: AtomicU64,
    /// Retries made, ever (for metrics).
    pub retries_total: AtomicU64,
}

fn now_second() -> u64 {
    coarse_now().saturating_duration_since(epoch()).as_secs() + 1
}

impl RetryBudget {
    /// Counts a request (a first attempt) to the upstream.
    #[inline]
    pub(crate) fn note_request(&self) {
        self.note_request_at(now_second());
    }

    /// Asks to make one retry; true (and counted) if the budget allows it.
    pub(crate) fn try_retry(&self) -> bool {
        self.try_retry_at(now_second())
    }

    fn bucket(&self, second: u64) -> &Bucket {
        let bucket = &self.buckets[(second % WINDOW_SECS) as usize];
        let seen = bucket.second.load(Ordering::Relaxed);
        if seen != second && bucket.second.compare_exchange(seen, second, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            bucket.requests.store(0, Ordering::Relaxed);
            bucket.retries.store(0, Ordering::Relaxed);
        }
        bucket
    }

    fn note_request_at(&self, second: u64) {
        self.bucket(second).requests.fetch_add(1, Ordering::Relaxed);
    }

    fn try_retry_at(&self, second: u64) -> bool {
        let (requests, retries) = self.window(second);
        let allowed = (requests * RATIO_PERCENT / 100).max(MIN_PER_SEC * WINDOW_SECS);
        if retries >= allowed {
            self.refused_total.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.bucket(second).retries.fetch_add(1, Ordering::Relaxed);
        self.retries_total.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Requests and retries counted in the window that ends at `second`.
    fn window(&self, second: u64) -> (u64, u64) {
        let oldest = second.saturating_sub(WINDOW_SECS - 1);
        let (mut requests, mut retries) = (0, 0);
        for bucket in &self.buckets {
            let s = bucket.second.load(Ordering::Relaxed);
            if s >= oldest && s <= second && s != 0 {
                requests += bucket.requests.load(Ordering::Relaxed);
                retries += bucket.retries.load(Ordering::Relaxed);
            }
        }
        (requests, retries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retries_allowed(budget: &RetryBudget, second: u64, asked: u64) -> u64 {
        (0..asked).filter(|_| budget.try_retry_at(second)).count() as u64
    }

    #[test]
    fn quiet_upstream_gets_the_floor() {
        let b = RetryBudget::default();
        b.note_request_at(1);
        assert_eq!(retries_allowed(&b, 1, 100), MIN_PER_SEC * WINDOW_SECS);
        assert_eq!(b.refused_total.load(Ordering::Relaxed), 100 - MIN_PER_SEC * WINDOW_SECS);
    }

    #[test]
    fn busy_upstream_gets_twenty_percent() {
        let b = RetryBudget::default();
        for _ in 0..1000 {
            b.note_request_at(5);
        }
        assert_eq!(retries_allowed(&b, 5, 1000), 200);
    }

    #[test]
    fn the_window_slides() {
        let b = RetryBudget::default();
        for _ in 0..1000 {
            b.note_request_at(3);
        }
        assert_eq!(retries_allowed(&b, 3, 1000), 200);
        // Still inside the window: spent.
        assert_eq!(retries_allowed(&b, 12, 10), 0);
        // Second 3 has left the window: only the floor again, and bucket 3's slot is reused.
        assert_eq!(retries_allowed(&b, 13, 1000), MIN_PER_SEC * WINDOW_SECS);
        let (requests, _) = b.window(13);
        assert_eq!(requests, 0);
    }

    #[test]
    fn ratio_holds_over_a_steady_stream() {
        // 500 requests a second, each wanting 2 retries, for 30 seconds.
        let b = RetryBudget::default();
        let mut made = 0;
        for second in 1..=30 {
            for _ in 0..500 {
                b.note_request_at(second);
                made += retries_allowed(&b, second, 2);
            }
        }
        let ratio = made as f64 / (30.0 * 500.0);
        assert!((0.19..=0.22).contains(&ratio), "retries/request = {ratio}");
    }
}
