//! The counters that events record into, as plain atomics: responses by
//! status class, a fixed-bucket latency histogram, per-listener connection
//! counts, and the reload record. The structs that see an event own these
//! (a route its responses, an upstream its latencies, a listener its
//! connections); the admin module only reads them when scraped.
//!
//! Recording is one or two relaxed `fetch_add`s: no lock, no allocation, no
//! label looked up by name. Histograms keep per-bucket counts (made
//! cumulative at scrape time), so a request touches one bucket.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Responses counted by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
#[derive(Debug, Default)]
pub(crate) struct StatusCounts([AtomicU64; 5]);

/// The label values of [`StatusCounts`], in order.
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl StatusCounts {
    #[inline]
    pub(crate) fn record(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.0[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts per class, in the order of [`STATUS_CLASSES`].
    pub(crate) fn get(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }

    pub(crate) fn total(&self) -> u64 {
        self.get().iter().sum()
    }

    /// 5xx answers: what an error rate counts.
    pub(crate) fn server_errors(&self) -> u64 {
        self.0[4].load(Ordering::Relaxed)
    }
}

/// Requests by the HTTP version the client spoke: HTTP/1.x, HTTP/2, HTTP/3.
#[derive(Debug, Default)]
pub(crate) struct ProtocolCounts([AtomicU64; 3]);

/// The label values of [`ProtocolCounts`], in order.
pub(crate) const PROTOCOLS: [&str; 3] = ["http1", "h2", "h3"];

impl ProtocolCounts {
    #[inline]
    pub(crate) fn record(&self, version: http::Version) {
        let slot = match version {
            http::Version::HTTP_2 => 1,
            http::Version::HTTP_3 => 2,
            _ => 0,
        };
        self.0[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts in the order of [`PROTOCOLS`].
    pub(crate) fn get(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// Upper bounds of the latency buckets, in microseconds (1 ms .. 10 s, then +Inf).
pub(crate) const LATENCY_BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram with the fixed buckets of [`LATENCY_BOUNDS_US`].
#[derive(Debug, Default)]
pub(crate) struct Latency {
    /// Non-cumulative counts; the last slot is everything above the largest bound.
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

/// A consistent-enough copy of a [`Latency`] for one scrape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LatencySnapshot {
    /// (upper bound in seconds, count in this bucket alone), +Inf last.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Latency {
    #[inline]
    pub(crate) fn record(&self, elapsed: Duration) {
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        let slot = LATENCY_BOUNDS_US.iter().position(|&bound| us <= bound).unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LatencySnapshot {
        let bounds = LATENCY_BOUNDS_US.iter().map(|&us| us as f64 / 1e6).chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(&self.buckets).map(|(b, n)| (b, n.load(Ordering::Relaxed))).collect();
        LatencySnapshot {
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// What one listener has seen. Shared by its accept loop and its connections.
#[derive(Debug)]
pub(crate) struct ListenerStats {
    /// "https" or "http": the `listener` label.
    pub name: &'static str,
    /// Terminates TLS (its handshakes are counted).
    pub tls: bool,
    pub open_connections: AtomicI64,
    pub accepted_total: AtomicU64,
    /// TLS listeners only.
    pub tls_handshakes_total: AtomicU64,
    pub tls_handshake_failures_total: AtomicU64,
}

impl ListenerStats {
    pub(crate) fn new(name: &'static str, tls: bool) -> ListenerStats {
        ListenerStats {
            name,
            tls,
            open_connections: AtomicI64::new(0),
            accepted_total: AtomicU64::new(0),
            tls_handshakes_total: AtomicU64::new(0),
            tls_handshake_failures_total: AtomicU64::new(0),
        }
    }
}

/// Counts a connection open on a listener for as long as it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection(std::sync::Arc<ListenerStats>);

impl OpenConnection {
    pub(crate) fn new(stats: std::sync::Arc<ListenerStats>) -> OpenConnection {
        stats.accepted_total.fetch_add(1, Ordering::Relaxed);
        stats.open_connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(stats)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The configuration's history: which generation runs and how the last reload went.
#[derive(Debug, Default)]
pub(crate) struct ReloadStats {
    /// 1 for the configuration porter started with, +1 per applied reload.
    generation: AtomicU64,
    reloads_total: AtomicU64,
    failures_total: AtomicU64,
    last: Mutex<Option<LastReload>>,
    /// Unix time in milliseconds when a configuration was last applied (start, then each
    /// applied reload): what `porter_config_last_reload_success_timestamp_seconds` says.
    last_success_ms: AtomicU64,
}

/// The outcome of the most recent reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LastReload {
    pub at: SystemTime,
    /// `None` when it was applied; the reason when it was refused.
    pub error: Option<String>,
}

impl ReloadStats {
    pub(crate) fn started() -> ReloadStats {
        ReloadStats {
            generation: AtomicU64::new(1),
            last_success_ms: AtomicU64::new(unix_ms()),
            ..ReloadStats::default()
        }
    }

    pub(crate) fn applied(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.reloads_total.fetch_add(1, Ordering::Relaxed);
        self.last_success_ms.store(unix_ms(), Ordering::Relaxed);
        self.set_last(None);
    }

    /// Whether the most recent reload was applied (true before any reload: the
    /// configuration at start was applied), as Prometheus' own
    /// `prometheus_config_last_reload_successful` reads.
    pub(crate) fn last_successful(&self) -> bool {
        self.last().is_none_or(|last| last.error.is_none())
    }

    /// When a configuration was last applied (start, or the last applied reload).
    pub(crate) fn last_success(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.last_success_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn refused(&self, error: &str) {
        self.reloads_total.fetch_add(1, Ordering::Relaxed);
        self.failures_total.fetch_add(1, Ordering::Relaxed);
        self.set_last(Some(error.to_string()));
    }

    fn set_last(&self, error: Option<String>) {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = Some(LastReload { at: SystemTime::now(), error });
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Reload attempts, applied or not.
    pub(crate) fn reloads_total(&self) -> u64 {
        self.reloads_total.load(Ordering::Relaxed)
    }

    pub(crate) fn failures_total(&self) -> u64 {
        self.failures_total.load(Ordering::Relaxed)
    }

    pub(crate) fn last(&self) -> Option<LastReload> {
        self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let counts = StatusCounts::default();
        for status in [101, 200, 204, 301, 404, 421, 502, 504, 599] {
            counts.record(status);
        }
        assert_eq!(counts.get(), [1, 2, 1, 2, 3]);
        assert_eq!(counts.total(), 9);
        assert_eq!(counts.server_errors(), 3);
    }

    #[test]
    fn latency_buckets_are_inclusive_upper_bounds() {
        let latency = Latency::default();
        latency.record(Duration::from_micros(1_000));
        latency.record(Duration::from_micros(1_001));
        latency.record(Duration::from_secs(60));
        let snap = latency.snapshot();
        assert_eq!(snap.count, 3);
        assert_eq!(snap.buckets[0], (0.001, 1));
        assert_eq!(snap.buckets[1], (0.0025, 1));
        assert_eq!(*snap.buckets.last().unwrap(), (f64::INFINITY, 1));
        assert!((snap.sum_seconds - 60.002001).abs() < 1e-9);
    }

    #[test]
    fn reloads_counted_with_their_outcome() {
        let reloads = ReloadStats::started();
        assert_eq!(reloads.generation(), 1);
        assert!(reloads.last_successful(), "the configuration at start was applied");
        let started = reloads.last_success();
        assert!(started.elapsed().unwrap() < Duration::from_secs(5));
        reloads.refused("bad file");
        assert!(!reloads.last_successful());
        assert_eq!(reloads.last_success(), started);
        assert_eq!((reloads.generation(), reloads.reloads_total(), reloads.failures_total()), (1, 1, 1));
        assert_eq!(reloads.last().unwrap().error.as_deref(), Some("bad file"));
        reloads.applied();
        assert_eq!((reloads.generation(), reloads.reloads_total(), reloads.failures_total()), (2, 2, 1));
        assert_eq!(reloads.last().unwrap().error, None);
        assert!(reloads.last_successful());
        assert!(reloads.last_success() >= started);
    }
}
