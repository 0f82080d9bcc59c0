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
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::net::clock::coarse_now;

use super::connect::UpstreamSender;
use super::h2::H2Pool;
use super::http1::Conn;

/// An idle connection: porter's own HTTP/1.1 client's, or hyper's (requests
/// with large or unsized bodies, which hyper sends while reading the answer).
#[derive(Debug)]
enum Pooled {
    Own(Conn),
    Hyper(UpstreamSender),
}

impl Pooled {
    fn is_usable(&self) -> bool {
        match self {
            Pooled::Own(conn) => conn.is_usable(),
            Pooled::Hyper(sender) => !sender.is_closed(),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Pooled::Own(conn) => conn.addr,
            Pooled::Hyper(sender) => sender.addr,
        }
    }
}

#[derive(Debug)]
struct Idle {
    conn: Pooled,
    since: Instant,
}

#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Shared HTTP/2 connections, for servers of an `http2: true` upstream.
    pub h2: Option<H2Pool>,
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration, http2: bool) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
            h2: http2.then(|| H2Pool::new(max_idle, idle_timeout)),
        }
    }

    /// The most recently used live connection (warm, least likely to have been closed).
    pub fn has_settings(&self, cfg: &crate::config::PoolConfig) -> bool {
        self.max_idle == cfg.max_idle_per_server && self.idle_timeout == cfg.idle_timeout
    }

    /// The most recently used live connection of porter's own client.
    pub fn checkout(&self) -> Option<Conn> {
        match self.checkout_where(|c| matches!(c, Pooled::Own(_)))? {
            Pooled::Own(conn) => Some(conn),
            Pooled::Hyper(_) => None,
        }
    }

    /// The most recently used live connection of hyper's client.
    pub fn checkout_hyper(&self) -> Option<UpstreamSender> {
        match self.checkout_where(|c| matches!(c, Pooled::Hyper(_)))? {
            Pooled::Hyper(sender) => Some(sender),
            Pooled::Own(_) => None,
        }
    }

    fn checkout_where(&self, kind: impl Fn(&Pooled) -> bool) -> Option<Pooled> {
        let now = coarse_now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(at) = idle.iter().rposition(|e| kind(&e.conn)) {
            let entry = idle.remove(at);
            if !entry.conn.is_usable() || now.saturating_duration_since(entry.since) > self.idle_timeout {
                continue;
            }
            return Some(entry.conn);
        }
        None
    }

    pub fn checkin(&self, conn: Conn) {
        self.checkin_pooled(Pooled::Own(conn));
    }

    pub fn checkin_hyper(&self, sender: UpstreamSender) {
        if !sender.is_closed() {
            self.checkin_pooled(Pooled::Hyper(sender));
        }
    }

    fn checkin_pooled(&self, conn: Pooled) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= self.max_idle {
            // Keep the newest; the oldest is the likeliest to be closed by the server.
            idle.remove(0);
        }
        idle.push(Idle { conn, since: coarse_now() });
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
        let (timeout, now) = (self.idle_timeout, coarse_now());
        idle.retain(|e| e.conn.is_usable() && now.saturating_duration_since(e.since) <= timeout);
    }

    /// Drops idle connections to addresses not in `addrs` (after DNS stopped
    /// returning them); connections busy with a request finish it and are not
    /// pooled again. Returns how many were dropped.
    pub fn drain_except(&self, addrs: &[SocketAddr]) -> usize {
        let shared = self.h2.as_ref().map_or(0, |h2| h2.drain_except(addrs));
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let before = idle.len();
        idle.retain(|e| addrs.contains(&e.conn.addr()));
        before - idle.len() + shared
    }
}
