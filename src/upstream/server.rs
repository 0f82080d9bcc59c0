//! One upstream server: its address, weight, live state and connection pool.
//!
//! Live state is atomics only, read on every pick without a lock. Passive
//! ejection (SPEC §3 `passive`) lives here: consecutive failures take the
//! server out for `cooldown`, after which it is tried again and ejected again
//! at the first failure if it still fails.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::{PassiveConfig, PoolConfig, ServerConfig};

use super::pool::Pool;

#[derive(Debug)]
pub struct Server {
    pub url: crate::config::ServerUrl,
    pub weight: u32,
    /// "host:port", for logs and the access log's upstream field.
    pub label: Box<str>,
    pub pool: Pool,
    passive: PassiveConfig,
    /// Set by active health checks; true until a check says otherwise.
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Milliseconds since [`epoch`] until which the server is ejected; 0 = not ejected.
    ejected_until_ms: AtomicU64,
    pub in_flight: AtomicU32,
    pub requests_total: AtomicU64,
    pub failures_total: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

impl Server {
    pub fn new(cfg: &ServerConfig, passive: &PassiveConfig, pool: &PoolConfig) -> Server {
        let label = if cfg.url.host.contains(':') {
            format!("[{}]:{}", cfg.url.host, cfg.url.port)
        } else {
            format!("{}:{}", cfg.url.host, cfg.url.port)
        };
        Server {
            url: cfg.url.clone(),
            weight: cfg.weight,
            label: label.into(),
            pool: Pool::new(pool.max_idle_per_server, pool.idle_timeout),
            passive: passive.clone(),
            healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            requests_total: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
        }
    }

    /// Can take a new request: weight above zero, not failed by active checks, not ejected.
    pub fn is_available(&self) -> bool {
        if self.weight == 0 || !self.healthy.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until == 0 || now_ms() >= until
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }

    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.ejected_until_ms.load(Ordering::Relaxed) != 0 {
            self.ejected_until_ms.store(0, Ordering::Relaxed);
            tracing::info!(server = %self.label, "server answers again after passive ejection");
        }
    }

    /// A connect error, reset or timeout. Returns true if this failure ejected the server.
    pub fn record_failure(&self, reason: &str) -> bool {
        self.failures_total.fetch_add(1, Ordering::Relaxed);
        let max = self.passive.max_failures;
        if max == 0 {
            return false;
        }
        let ejected_before = self.ejected_until_ms.load(Ordering::Relaxed) != 0;
        // A server back from cooldown is ejected again at its first failure.
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= max || ejected_before {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            let until = now_ms() + duration_ms(self.passive.cooldown).max(1);
            self.ejected_until_ms.store(until, Ordering::Relaxed);
            tracing::warn!(
                server = %self.label,
                cooldown = ?self.passive.cooldown,
                reason,
                "server ejected after consecutive failures"
            );
            return true;
        }
        false
    }
}

fn duration_ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// Counts a request in flight on a server for as long as it lives.
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<Server>);

impl InFlight {
    pub fn new(server: std::sync::Arc<Server>) -> InFlight {
        server.in_flight.fetch_add(1, Ordering::Relaxed);
        server.requests_total.fetch_add(1, Ordering::Relaxed);
        InFlight(server)
    }
    pub fn server(&self) -> &std::sync::Arc<Server> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
