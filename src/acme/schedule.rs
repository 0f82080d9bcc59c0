//! When to renew and when to retry, as pure functions of the certificate's
//! dates, the settings and the number of failures (so they are tested alone).
//!
//! - Renewal: `renew_before` ahead of expiry, but never later than a third of
//!   the lifetime ahead (a 90-day certificate with `renew_before: 30d` renews
//!   at day 60; a 6-day one after 4 days), so a `renew_before` longer than the
//!   lifetime cannot make porter renew over and over.
//! - ARI (RFC 9773): when the CA suggests a window, a uniformly random moment
//!   in it, if that is earlier (a CA that revokes early moves it forward).
//! - Failures: exponential backoff from `retry_min` (1 minute) doubling up to
//!   `retry_max` (1 day), each delay jittered ±20 % so many instances or names
//!   that failed together do not retry in lockstep.

use std::time::{Duration, SystemTime};

pub(super) fn renewal_due(not_before: SystemTime, not_after: SystemTime, renew_before: Duration) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let ahead = renew_before.min(lifetime / 3);
    not_after.checked_sub(ahead).unwrap_or(not_after)
}

/// A random moment in the CA's suggested window; its start if the window is empty.
pub(super) fn in_window(start: SystemTime, end: SystemTime) -> SystemTime {
    let width = end.duration_since(start).unwrap_or_default();
    start + width.mul_f64(fastrand::f64())
}

/// The delay before attempt number `failures + 1`, after `failures` (≥ 1) failures in a row.
pub(super) fn backoff(retry_min: Duration, retry_max: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(32);
    let base = retry_min.saturating_mul(1u32 << doublings.min(31)).min(retry_max);
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn renewal_before_expiry_capped_at_a_third_of_the_lifetime() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        assert_eq!(renewal_due(start, start + 90 * DAY, 30 * DAY), start + 60 * DAY);
        assert_eq!(renewal_due(start, start + 90 * DAY, 10 * DAY), start + 80 * DAY);
        assert_eq!(renewal_due(start, start + 6 * DAY, 30 * DAY), start + 4 * DAY);
        // Garbage dates never panic.
        assert_eq!(renewal_due(start + DAY, start, 30 * DAY), start);
    }

    #[test]
    fn window_pick_is_inside() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        for _ in 0..100 {
            let t = in_window(start, start + DAY);
            assert!(t >= start && t <= start + DAY);
        }
        assert_eq!(in_window(start, start - DAY), start);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let (min, max) = (Duration::from_secs(60), DAY);
        for (failures, expected) in [(1, 60.0), (2, 120.0), (3, 240.0), (6, 1920.0), (20, 86_400.0), (900, 86_400.0)] {
            for _ in 0..50 {
                let d = backoff(min, max, failures).as_secs_f64();
                assert!(d >= expected * 0.8 - 1e-6 && d <= expected * 1.2 + 1e-6, "{failures}: {d} vs {expected}");
            }
        }
    }
}
