//! One upstream server: its address, weight, live state and connection pool.
//!
//! Live state is atomics only, read on every pick without a lock. A server
//! takes requests when it has weight, active checks have not failed it, and
//! passive ejection has not taken it out.
//!
//! Passive ejection (docs/configuration.md, Health): `max_failures` consecutive failures
//! (connect error, reset, timeout) eject the server for `cooldown`. When the
//! cooldown is over the server gets traffic again but stays on probation: its
//! first success readmits it for good, its first failure ejects it again at
//! once. Each change is logged once, with the reason, by whichever request
//! makes it (a compare-and-swap decides, so concurrent requests never log a
//! change twice). An active check that brings a server back also ends any
//! passive ejection: the checker has just seen it answer.
//!
//! Servers named by a DNS name keep the addresses last resolved for them
//! (see `dns.rs`); new connections go round-robin over those addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use rustls_pki_types::ServerName;

use crate::config::{PassiveConfig, PoolConfig, ServerConfig, UpstreamTls};
use crate::net::clock::now_ms;

use super::pool::Pool;
use super::tls::ClientTls;

/// How an upstream's servers are spoken to: the protocol and, for `https://`, TLS.
#[derive(Debug, Clone)]
pub struct Transport {
    pub http2: bool,
    pub tls_settings: UpstreamTls,
    /// Built once per upstream, when it has an `https://` server.
    pub tls: Option<ClientTls>,
}

impl Transport {
    pub fn new(http2: bool, tls_settings: &UpstreamTls, any_https: bool) -> Transport {
        let tls = any_https.then(|| ClientTls::new(tls_settings));
        Transport { http2, tls_settings: tls_settings.clone(), tls }
    }

    /// HTTP/1.1 over plain TCP, as unit tests use.
    pub fn plain() -> Transport {
        Transport { http2: false, tls_settings: UpstreamTls::default(), tls: None }
    }
}

#[derive(Debug)]
pub struct Server {
    pub url: crate::config::ServerUrl,
    pub weight: u32,
    /// "host:port", for logs and the access log's upstream field.
    pub label: Arc<str>,
    /// Shared with the server of the same address in the next configuration, as long
    /// as the pool and transport settings stay the same.
    pub pool: Arc<Pool>,
    passive: PassiveConfig,
    transport: Transport,
    /// The SNI sent to an `https://` server and the name its certificate must carry.
    tls_name: Option<ServerName<'static>>,
    /// The host is a DNS name (re-resolved), not an IP literal.
    by_name: bool,
    /// What the server has been through: kept across every reload that keeps its address.
    pub live: Arc<Live>,
}

/// A server's live state, apart from its settings: a reload that keeps the server's
/// address (`url`) keeps this whole — health, ejection, requests in flight, counters,
/// resolved addresses — and changes only the settings around it (weight, passive,
/// pool, TLS). Requests that started on the old configuration count down the same
/// `in_flight` the new one reads, so a server drained with `weight: 0` is seen going idle.
#[derive(Debug)]
pub struct Live {
    /// Addresses to connect to: the IP itself, or what the host name last
    /// resolved to (empty until the first resolution).
    addrs: ArcSwap<Vec<SocketAddr>>,
    next_addr: AtomicUsize,
    /// Set by active health checks; true until a check says otherwise.
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Milliseconds since [`epoch`] until which the server is ejected; 0 = not
    /// ejected. A value in the past means "on probation" (see the module doc).
    ejected_until_ms: AtomicU64,
    pub in_flight: AtomicU32,
    pub requests_total: AtomicU64,
    pub failures_total: AtomicU64,
    pub ejections_total: AtomicU64,
    /// New connections opened for requests, ever.
    pub connects_total: AtomicU64,
    /// New connections opened by active health checks (one per check), ever.
    pub check_connects_total: AtomicU64,
    /// A refused certificate was logged; cleared by the next good handshake (one line
    /// per episode, not one per request).
    pub tls_refused: AtomicBool,
}

/// What the server's state is, for logs, /status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Taking requests.
    Up,
    /// Weight 0: no new requests.
    Drained,
    /// Failed its active health checks.
    Unhealthy,
    /// Out for its passive cooldown.
    Ejected,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Drained => "drained",
            State::Unhealthy => "unhealthy",
            State::Ejected => "ejected",
        }
    }
}

impl Server {
    pub fn new(cfg: &ServerConfig, passive: &PassiveConfig, pool: &PoolConfig, transport: &Transport) -> Server {
        let addrs = match cfg.url.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, cfg.url.port)],
            Err(_) => Vec::new(),
        };
        let by_name = addrs.is_empty();
        Server {
            url: cfg.url.clone(),
            weight: cfg.weight,
            label: cfg.url.authority().into(),
            pool: Arc::new(Pool::new(pool.max_idle_per_server, pool.idle_timeout, transport.http2)),
            passive: passive.clone(),
            transport: transport.clone(),
            tls_name: super::tls::server_name(&cfg.url, &transport.tls_settings),
            by_name,
            live: Arc::new(Live {
                addrs: ArcSwap::from_pointee(addrs),
                next_addr: AtomicUsize::new(0),
                healthy: AtomicBool::new(true),
                consecutive_failures: AtomicU32::new(0),
                ejected_until_ms: AtomicU64::new(0),
                in_flight: AtomicU32::new(0),
                requests_total: AtomicU64::new(0),
                failures_total: AtomicU64::new(0),
                ejections_total: AtomicU64::new(0),
                connects_total: AtomicU64::new(0),
                check_connects_total: AtomicU64::new(0),
                tls_refused: AtomicBool::new(false),
            }),
        }
    }

    /// The server of the next configuration at the same address as `previous`: new
    /// settings around `previous`'s live state, and its pool too unless the pool or
    /// transport settings changed (connections made under other settings are not reused).
    pub fn carry_over(
        previous: &Server,
        cfg: &ServerConfig,
        passive: &PassiveConfig,
        pool: &PoolConfig,
        transport: &Transport,
    ) -> Server {
        let mut server = Server::new(cfg, passive, pool, transport);
        server.live = previous.live.clone();
        if previous.pool.has_settings(pool)
            && previous.transport.http2 == transport.http2
            && previous.transport.tls_settings == transport.tls_settings
        {
            server.pool = previous.pool.clone();
        }
        server
    }

    /// The name an `https://` server's certificate must carry (and the SNI sent).
    pub fn tls_name(&self) -> Option<&ServerName<'static>> {
        self.tls_name.as_ref()
    }

    /// Requests go over shared HTTP/2 connections (`http2: true`, and the server did
    /// not answer ALPN with `http/1.1`).
    #[inline]
    pub fn speaks_http2(&self) -> bool {
        self.pool.h2.as_ref().is_some_and(|h2| !h2.is_http1_only())
    }

    /// The TLS configs and the server name for an `https://` server.
    pub(crate) fn tls(&self) -> (ClientTls, Option<&ServerName<'static>>) {
        let tls = self.transport.tls.clone().unwrap_or_else(|| ClientTls::new(&self.transport.tls_settings));
        (tls, self.tls_name.as_ref())
    }

    /// Can take a new request: weight above zero, not failed by active checks, not ejected.
    #[inline]
    pub fn is_available(&self) -> bool {
        if self.weight == 0 || !self.live.healthy.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.live.ejected_until_ms.load(Ordering::Relaxed);
        until == 0 || now_ms() >= until
    }

    pub fn state(&self) -> State {
        if self.weight == 0 {
            State::Drained
        } else if !self.is_healthy() {
            State::Unhealthy
        } else if self.is_ejected() {
            State::Ejected
        } else {
            State::Up
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.live.healthy.load(Ordering::Relaxed)
    }

    /// Out for a passive cooldown right now.
    pub fn is_ejected(&self) -> bool {
        let until = self.live.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }

    /// Records an active-check verdict; true if it changed the server's health.
    /// Coming back healthy also ends a passive ejection.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        let changed = self.live.healthy.swap(healthy, Ordering::Relaxed) != healthy;
        if changed && healthy {
            self.live.consecutive_failures.store(0, Ordering::Relaxed);
            self.live.ejected_until_ms.store(0, Ordering::Relaxed);
        }
        changed
    }

    /// The addresses new connections go to.
    pub fn addrs(&self) -> Arc<Vec<SocketAddr>> {
        self.live.addrs.load_full()
    }

    /// Where a new connection starts in [`Server::addrs`], turning round-robin.
    pub(crate) fn next_addr_index(&self) -> usize {
        self.live.next_addr.fetch_add(1, Ordering::Relaxed)
    }

    /// True if the host is a DNS name that needs resolving (not an IP literal).
    pub fn needs_resolution(&self) -> bool {
        self.by_name
    }

    /// Whether a connection to `addr` may still be reused: always for an IP
    /// literal; for a DNS name, while the name still resolves to it.
    #[inline]
    pub fn is_current(&self, addr: SocketAddr) -> bool {
        !self.by_name || self.live.addrs.load().contains(&addr)
    }

    /// Replaces the resolved addresses (sorted, deduplicated by the caller).
    pub(crate) fn set_addrs(&self, addrs: Vec<SocketAddr>) {
        self.live.addrs.store(Arc::new(addrs));
    }

    pub fn record_success(&self) {
        if self.live.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.live.consecutive_failures.store(0, Ordering::Relaxed);
        }
        let until = self.live.ejected_until_ms.load(Ordering::Relaxed);
        // Only a success after the cooldown readmits; a success from a request
        // that started before the ejection does not cut the cooldown short.
        if until != 0
            && now_ms() >= until
            && self.live.ejected_until_ms.compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::info!(server = %self.label, reason = "answered after its cooldown", "server back in rotation");
        }
    }

    /// A connect error, reset or timeout. Returns true if this failure ejected the server.
    pub fn record_failure(&self, reason: &str) -> bool {
        self.live.failures_total.fetch_add(1, Ordering::Relaxed);
        let max = self.passive.max_failures;
        if max == 0 {
            return false;
        }
        let now = now_ms();
        let until = self.live.ejected_until_ms.load(Ordering::Relaxed);
        let cooldown = duration_ms(self.passive.cooldown);
        if until != 0 {
            if now < until {
                // Already out: a request that started before the ejection.
                return false;
            }
            // On probation after the cooldown: out again at the first failure.
            let again = (now + cooldown).max(1);
            if self.live.ejected_until_ms.compare_exchange(until, again, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                self.live.ejections_total.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    server = %self.label,
                    cooldown = ?self.passive.cooldown,
                    reason,
                    "server still failing after its cooldown: ejected again"
                );
                return true;
            }
            return false;
        }
        let failures = self.live.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < max {
            return false;
        }
        let out = (now + cooldown).max(1);
        if self.live.ejected_until_ms.compare_exchange(0, out, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.live.consecutive_failures.store(0, Ordering::Relaxed);
            self.live.ejections_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                server = %self.label,
                failures,
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
    d.as_millis().min(u128::from(u64::MAX / 2)) as u64
}

/// Counts a request in flight on a server for as long as it lives.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Server>);

impl InFlight {
    pub(crate) fn new(server: Arc<Server>) -> InFlight {
        server.live.in_flight.fetch_add(1, Ordering::Relaxed);
        server.live.requests_total.fetch_add(1, Ordering::Relaxed);
        InFlight(server)
    }
    pub(crate) fn server(&self) -> &Arc<Server> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.live.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A server for unit tests: `http://HOST_PORT` with a weight.
#[cfg(test)]
pub(crate) fn test_server(host_port: &str, weight: u32, passive: PassiveConfig) -> Arc<Server> {
    let (host, port) = host_port.rsplit_once(':').expect("host:port");
    let url = crate::config::ServerUrl {
        original: format!("http://{host_port}"),
        scheme: crate::config::Scheme::Http,
        host: host.to_string(),
        port: port.parse().expect("port"),
    };
    Arc::new(Server::new(&ServerConfig { url, weight }, &passive, &PoolConfig::default(), &Transport::plain()))
}

/// Servers for unit tests, one per weight, on consecutive ports from `first_port`.
#[cfg(test)]
pub(crate) fn test_servers(weights: &[u32], first_port: u16) -> Vec<Arc<Server>> {
    (0u16..)
        .zip(weights)
        .map(|(i, &w)| test_server(&format!("127.0.0.1:{}", first_port + i), w, PassiveConfig::default()))
        .collect()
}

#[cfg(test)]
mod tests;
