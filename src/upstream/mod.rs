//! Upstreams: named pools of servers, the balancer that picks among them,
//! and the per-server state and connections that requests use.
//!
//! An upstream also owns its background tasks — one active health checker
//! per server when `health_check` is set, one DNS resolver per server named
//! by a host name. They run until the configuration snapshot that built the
//! upstream is replaced (its cancellation token), even when an old stream (a
//! WebSocket) still holds the upstream, so two generations of checkers never
//! write one server's health; dropping the upstream stops them too.

pub(crate) mod balancer;
pub(crate) mod budget;
pub(crate) mod connect;
pub(crate) mod dns;
pub(crate) mod h2;
pub(crate) mod health;
pub(crate) mod http1;
pub(crate) mod lease;
pub(crate) mod pool;
pub(crate) mod response_body;
pub(crate) mod server;
pub(crate) mod sticky;
pub(crate) mod tls;

pub(crate) use lease::Lease;
pub(crate) use response_body::{ResponseBody, ServerBody};

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Balance, UpstreamConfig};
use crate::http1::view::RequestFields;
use crate::stats::Latency;

use balancer::{Balancer, Tried};
use budget::RetryBudget;
use server::{Server, Transport};

#[derive(Debug)]
pub(crate) struct Upstream {
    pub name: Box<str>,
    pub servers: Vec<Arc<Server>>,
    balancer: Balancer,
    pub connect_timeout: Duration,
    pub response_header_timeout: Duration,
    /// `timeouts.read`: the longest wait between two reads of a response body.
    pub read_timeout: Duration,
    /// `timeouts.send`: the longest wait for a server to take more of a request body.
    pub send_timeout: Duration,
    pub retries: u32,
    pub budget: RetryBudget,
    /// `http2: true`: requests go over shared HTTP/2 connections.
    pub http2: bool,
    /// Every server has weight 0: requests get 503 without a pick.
    pub drained: bool,
    /// Carried over a reload while the upstream keeps its name.
    pub stats: Arc<UpstreamStats>,
    /// `sticky:`: clients pinned to a server by a cookie porter sets.
    pub sticky: Option<sticky::Sticky>,
    _tasks: Tasks,
}

/// What an upstream's requests record (docs/configuration.md, Metrics); read by the admin listener.
#[derive(Debug, Default)]
pub(crate) struct UpstreamStats {
    /// Time from the request's arrival to the response head (or error) sent back.
    pub latency: Latency,
    /// Requests sent to another server after a failure.
    pub retries_total: AtomicU64,
}

impl Upstream {
    /// Builds the upstream and starts its background tasks (needs a tokio runtime),
    /// which stop when `cancel` (the snapshot's token) is cancelled.
    /// Servers of `previous` (the same upstream before a reload) whose address did not
    /// change keep their live state (health, ejection, in flight, counters), and their
    /// pooled connections while the pool and transport settings stay.
    pub(crate) fn new(
        name: &str,
        cfg: &UpstreamConfig,
        previous: Option<&Upstream>,
        cancel: &CancellationToken,
    ) -> Upstream {
        let any_https = cfg.servers.iter().any(|s| s.url.scheme == crate::config::Scheme::Https);
        let transport = Transport::new(cfg.http2, &cfg.tls, any_https);
        // A server whose address stays keeps its live state (see `server::Live`); each old
        // server is carried over at most once, should a list name one address twice.
        let mut taken = vec![false; previous.map_or(0, |p| p.servers.len())];
        let servers: Vec<Arc<Server>> = cfg
            .servers
            .iter()
            .map(|s| {
                let old = previous.and_then(|p| {
                    let i = p.servers.iter().enumerate().position(|(i, old)| !taken[i] && old.url == s.url)?;
                    taken[i] = true;
                    Some(&p.servers[i])
                });
                Arc::new(match old {
                    Some(old) => {
                        if cfg.health_check.is_none() {
                            // No checker will bring it back: without active checks a server is healthy.
                            old.set_healthy(true);
                        }
                        Server::carry_over(old, s, &cfg.passive, &cfg.pool, &transport)
                    }
                    None => Server::new(s, &cfg.passive, &cfg.pool, &transport),
                })
            })
            .collect();
        let mut tasks = Tasks::default();
        for server in &servers {
            if server.needs_resolution() {
                tasks.spawn(cancel, dns::resolve_loop(server.clone(), dns::REFRESH));
            }
            if let Some(check) = &cfg.health_check {
                tasks.spawn(cancel, health::check_loop(server.clone(), check.clone(), cfg.timeouts.connect));
            }
        }
        Upstream {
            _tasks: tasks,
            name: name.into(),
            balancer: Balancer::new(cfg.balance, cfg.hash_on.as_ref(), &servers),
            sticky: cfg.sticky.as_ref().map(|s| sticky::Sticky::new(s, &servers)),
            servers,
            connect_timeout: cfg.timeouts.connect,
            response_header_timeout: cfg.timeouts.response_header,
            read_timeout: cfg.timeouts.read,
            send_timeout: cfg.timeouts.send,
            retries: cfg.retries,
            budget: RetryBudget::default(),
            http2: cfg.http2,
            drained: cfg.servers.iter().all(|s| s.weight == 0),
            stats: previous.map(|p| p.stats.clone()).unwrap_or_default(),
        }
    }

    /// The time limits of one exchange with a server of this upstream.
    pub(crate) fn timeouts(&self) -> http1::Timeouts {
        http1::Timeouts {
            response_header: self.response_header_timeout,
            send: self.send_timeout,
            read: self.read_timeout,
        }
    }

    pub(crate) fn balance(&self) -> Balance {
        self.balancer.kind()
    }

    /// The balancing key of a request (see [`Balancer::key`]); computed once per request.
    #[inline]
    pub(crate) fn key(&self, headers: RequestFields<'_>, client: IpAddr) -> u64 {
        self.balancer.key(headers, client)
    }

    /// The header `consistent_hash` hashes, if it hashes one.
    pub(crate) fn hash_header(&self) -> Option<&http::HeaderName> {
        match &self.balancer {
            Balancer::ConsistentHash(ch) => match &ch.hash_on {
                crate::config::HashOn::Header(name) => Some(name),
                _ => None,
            },
            _ => None,
        }
    }

    pub(crate) fn pick(&self, tried: Tried, key: u64) -> Option<(usize, &Arc<Server>)> {
        let index = self.balancer.pick(&self.servers, tried, key)?;
        Some((index, &self.servers[index]))
    }
}

/// Background tasks owned by an upstream; they end when the snapshot's token is
/// cancelled, and are aborted when the upstream is dropped.
#[derive(Debug, Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    fn spawn(&mut self, cancel: &CancellationToken, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let cancel = cancel.clone();
        self.0.push(tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = task => {}
            }
        }));
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
