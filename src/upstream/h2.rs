//! Multiplexed HTTP/2 connections to one server (`http2: true`).
//!
//! Where an HTTP/1.1 connection carries one request at a time and is lent
//! out whole, an HTTP/2 connection is shared: each request takes one stream
//! on the least busy connection, and gives it back when its response body is
//! done (the [`Stream`] guard's Drop). A new connection is opened only when
//! every open one carries [`MAX_STREAMS`] streams, at most one at a time per
//! server, and never more than `pool.max_idle_per_server` in all; requests
//! that arrive while it is being opened wait for it rather than open their
//! own, so a burst of 1000 requests opens a handful of connections, not 1000.
//! At the cap, requests share the least busy connection, and hyper queues
//! the streams beyond the server's own limit.
//!
//! Connections leave the pool when they close — the server sent GOAWAY, the
//! socket died, or a keep-alive ping went unanswered — and after
//! `pool.idle_timeout` without a stream. An `https://` server whose ALPN
//! answer is `http/1.1` is spoken to in HTTP/1.1 from then on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::client::conn::http2;
use tokio::sync::watch;

use super::connect::{self, ConnectError, Connection, Http2Sender, Want};
use super::server::Server;
use crate::body::RequestBody;
use crate::net::clock::now_ms;

/// Streams per connection before another connection is opened. RFC 9113 §6.5.2
/// recommends servers allow at least 100; hyper sends no more than that before
/// the server's SETTINGS arrive, and queues beyond the server's own limit.
pub(crate) const MAX_STREAMS: u32 = 100;

/// How many connection attempts one request waits through before giving up
/// (a server that accepts and closes at once must not keep a request looping).
const MAX_CONNECT_ROUNDS: u32 = 3;

#[derive(Debug)]
struct Conn {
    sender: Http2Sender,
    streams: AtomicU32,
    /// When the last stream ended (milliseconds of `net::clock::now_ms`).
    idle_since_ms: AtomicU64,
}

impl Conn {
    fn is_usable(&self, server: &Server) -> bool {
        !self.sender.sender.is_closed() && server.is_current(self.sender.addr)
    }
}

/// Why no connection could be had; the request was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectFailure {
    Timeout,
    Failed,
}

/// The outcome of a connection attempt, as the requests waiting for it see it.
type Outcome = Option<Result<(), ConnectFailure>>;

#[derive(Debug, Default)]
struct State {
    conns: Vec<Arc<Conn>>,
    /// The attempt under way, if any.
    connecting: Option<watch::Receiver<Outcome>>,
}

#[derive(Debug)]
pub struct H2Pool {
    state: Mutex<State>,
    max_conns: usize,
    idle_timeout: Duration,
    /// The server answered ALPN with `http/1.1`: its requests take the HTTP/1.1 pool.
    http1_only: AtomicBool,
}

/// One request's stream on a shared connection; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Stream {
    conn: Arc<Conn>,
}

impl Stream {
    /// A handle to send this stream's request on (a cheap clone of the connection's sender).
    pub(crate) fn sender(&self) -> http2::SendRequest<RequestBody> {
        self.conn.sender.sender.clone()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.conn.streams.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.conn.idle_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }
}

/// What [`acquire`] found.
#[derive(Debug)]
pub(crate) enum Acquired {
    Stream(Stream),
    /// The server speaks HTTP/1.1 only (ALPN): use the HTTP/1.1 pool.
    Http1,
}

impl H2Pool {
    pub fn new(max_idle_per_server: usize, idle_timeout: Duration) -> H2Pool {
        H2Pool {
            state: Mutex::new(State::default()),
            max_conns: max_idle_per_server.max(1),
            idle_timeout,
            http1_only: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_http1_only(&self) -> bool {
        self.http1_only.load(Ordering::Relaxed)
    }

    /// Open connections (busy or not).
    pub fn connection_count(&self) -> usize {
        self.lock().conns.len()
    }

    /// Drops connections that closed, and those idle past `idle_timeout`.
    pub fn sweep(&self) {
        let now = now_ms();
        let timeout = self.idle_timeout.as_millis() as u64;
        self.lock().conns.retain(|c| {
            let idle = c.streams.load(Ordering::Relaxed) == 0
                && now.saturating_sub(c.idle_since_ms.load(Ordering::Relaxed)) > timeout;
            !c.sender.sender.is_closed() && !idle
        });
    }

    /// Stops using connections to addresses not in `addrs`; their open streams finish.
    pub fn drain_except(&self, addrs: &[SocketAddr]) -> usize {
        let mut state = self.lock();
        let before = state.conns.len();
        state.conns.retain(|c| addrs.contains(&c.sender.addr));
        before - state.conns.len()
    }
}

/// A stream on a connection to `server` (whose pool must have HTTP/2 on),
/// opening a connection when none has room.
pub(crate) async fn acquire(server: &Arc<Server>, connect_timeout: Duration) -> Result<Acquired, ConnectFailure> {
    let pool = server.pool.h2.as_ref().expect("acquire is only called for http2 upstreams");
    for _ in 0..MAX_CONNECT_ROUNDS {
        if pool.is_http1_only() {
            return Ok(Acquired::Http1);
        }
        let mut attempt = {
            let mut state = pool.lock();
            state.conns.retain(|c| c.is_usable(server));
            let least = state.conns.iter().min_by_key(|c| c.streams.load(Ordering::Relaxed)).cloned();
            match least {
                // Claimed under the lock, so two requests never both take the last slot.
                Some(conn) if conn.streams.load(Ordering::Relaxed) < MAX_STREAMS => {
                    return Ok(Acquired::Stream(claim(conn)))
                }
                // At the cap, with no attempt to wait for: share the least busy connection.
                Some(conn) if state.connecting.is_none() && state.conns.len() >= pool.max_conns => {
                    return Ok(Acquired::Stream(claim(conn)))
                }
                _ => {}
            }
            match &state.connecting {
                Some(attempt) => attempt.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    state.connecting = Some(rx.clone());
                    // Its own task: the connection is worth finishing even if this request is cancelled.
                    tokio::spawn(open(server.clone(), connect_timeout, tx));
                    rx
                }
            }
        };
        // A dropped sender (a panic in the attempt) just means: look again.
        let outcome = attempt.wait_for(Option::is_some).await.map(|seen| *seen);
        if let Ok(Some(Err(failure))) = outcome {
            return Err(failure);
        }
    }
    Err(ConnectFailure::Failed)
}

fn claim(conn: Arc<Conn>) -> Stream {
    conn.streams.fetch_add(1, Ordering::Relaxed);
    Stream { conn }
}

/// Opens one connection, adds it to the pool and tells the waiting requests.
async fn open(server: Arc<Server>, timeout: Duration, tx: watch::Sender<Outcome>) {
    let pool = server.pool.h2.as_ref().expect("http2 pool");
    let result = connect::connect(&server, timeout, Want::Http2).await;
    let mut state = pool.lock();
    state.connecting = None;
    let outcome = match result {
        Ok(Connection::Http2(sender)) => {
            let idle_since_ms = AtomicU64::new(now_ms());
            state.conns.push(Arc::new(Conn { sender, streams: AtomicU32::new(0), idle_since_ms }));
            Ok(())
        }
        Ok(Connection::Http1(sender)) => {
            tracing::info!(server = %server.label, "server chose HTTP/1.1 over h2 (ALPN): using HTTP/1.1");
            pool.http1_only.store(true, Ordering::Relaxed);
            // Requests now go over porter's own HTTP/1.1 client, which opens its own.
            drop(sender);
            Ok(())
        }
        Err(e) => {
            tracing::debug!(server = %server.label, error = %e, "upstream HTTP/2 connect failed");
            Err(match e {
                ConnectError::Timeout => ConnectFailure::Timeout,
                _ => ConnectFailure::Failed,
            })
        }
    };
    drop(state);
    let _ = tx.send(Some(outcome));
}
