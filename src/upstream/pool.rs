//! Idle keep-alive connections to one server.
//!
//! A connection goes back to the pool when the response body it carried has
//! been read to the end (see `upstream::lease`), and is taken out by the next
//! request. Stale entries — closed by the server, or idle past
//! `idle_timeout` — are dropped when met. The lock is held only to push or
//! pop one entry. Servers of an `http2: true` upstream also have an
//! [`H2Pool`] of shared connections; what a request holds of either is a
//! [`super::Lease`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::connect::UpstreamSender;
use super::h2::H2Pool;

#[derive(Debug)]
struct Idle {
    sender: UpstreamSender,
    since: Instant,
}

#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// New connections opened to the server, ever.
    pub connects_total: AtomicU64,
    /// Shared HTTP/2 connections, for servers of an `http2: true` upstream.
    pub h2: Option<H2Pool>,
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration, http2: bool) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
            connects_total: AtomicU64::new(0),
            h2: http2.then(|| H2Pool::new(max_idle, idle_timeout)),
        }
    }

    /// The most recently used live connection (warm, least likely to have been closed).
    pub fn has_settings(&self, cfg: &crate::config::PoolConfig) -> bool {
        self.max_idle == cfg.max_idle_per_server && self.idle_timeout == cfg.idle_timeout
    }

    pub fn checkout(&self) -> Option<UpstreamSender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(entry) = idle.pop() {
            if entry.sender.is_closed() || entry.since.elapsed() > self.idle_timeout {
                continue;
            }
            return Some(entry.sender);
        }
        None
    }

    pub fn checkin(&self, sender: UpstreamSender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= self.max_idle {
            // Keep the newest; the oldest is the likeliest to be closed by the server.
            idle.remove(0);
        }
        idle.push(Idle { sender, since: Instant::now() });
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Drops connections that are closed or idle too long; run periodically so
    /// a quiet pool does not hold sockets the server has given up on.
    pub fn sweep(&self) {
        if let Some(h2) = &self.h2 {
            h2.sweep();
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = self.idle_timeout;
        idle.retain(|e| !e.sender.is_closed() && e.since.elapsed() <= timeout);
    }

    /// Drops idle connections to addresses not in `addrs` (after DNS stopped
    /// returning them); connections busy with a request finish it and are not
    /// pooled again. Returns how many were dropped.
    pub fn drain_except(&self, addrs: &[SocketAddr]) -> usize {
        let shared = self.h2.as_ref().map_or(0, |h2| h2.drain_except(addrs));
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let before = idle.len();
        idle.retain(|e| addrs.contains(&e.sender.addr));
        before - idle.len() + shared
    }

    pub fn note_connect(&self) {
        self.connects_total.fetch_add(1, Ordering::Relaxed);
    }
}
