//! Accept loops. Each listener accepts TCP connections up to
//! `max_connections` (beyond it new connections wait in the kernel backlog),
//! and hands each to its own task: a panic or error there ends that
//! connection only. Shutdown stops accepting and lets connections finish.

pub(crate) mod acme;
pub(crate) mod dual_stack;
pub(crate) mod h3;
pub(crate) mod http;
pub(crate) mod http1;
pub(crate) mod https;
pub(crate) mod idle;
pub(crate) mod inherit;
pub(crate) mod redirect;
mod slots;

pub(crate) use slots::Slots;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::ClientBody;
use crate::config::Limits;
use crate::http1::view::RawRequest;
use crate::net::io::ClientIo;
use crate::proxy::{headers::ClientHeaders, ConnContext};
use crate::runtime::Runtime;
use crate::shutdown::DrainWatch;
use crate::stats::{ListenerStats, OpenConnection};
use crate::tls::LoadedCert;

/// What the pipeline knows about a TLS connection, over TCP or QUIC: forwarded as
/// https, on the port the TLS listener names.
fn tls_conn_context(
    client: SocketAddr,
    runtime: &Runtime,
    sni_cert: Option<Arc<LoadedCert>>,
    tls_version: Option<&'static str>,
) -> Arc<ConnContext> {
    Arc::new(ConnContext {
        client,
        client_headers: ClientHeaders::new(
            client.ip(),
            true,
            runtime.https_port.unwrap_or(443),
            runtime.trusts(client.ip()),
        ),
        sni_cert,
        tls_version,
    })
}

/// Which HTTP a client connection speaks: TLS connections say so by ALPN; the
/// plaintext listener speaks HTTP/1.1 (no h2c, as nginx and Caddy by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
}

/// HTTP/2 limits per client connection (docs/security.md, HTTP/2, lists them).
pub(crate) const H2_MAX_CONCURRENT_STREAMS: u32 = 256;
pub(crate) const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
pub(crate) const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;
pub(crate) const H2_PING_AFTER_IDLE: Duration = Duration::from_secs(10);
pub(crate) const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// How a client connection is served, made from the snapshot it opened on (so a
/// reload applies to new connections): porter's own HTTP/1.1 loop or hyper's HTTP/2
/// server. Choosing the protocol before building the connection (rather than
/// hyper-util's auto builder sniffing it) keeps each idle connection to the state of
/// the one protocol it speaks. The snapshot holds only the plain settings.
pub(crate) enum ConnectionServer {
    Http1(http1::Settings),
    Http2 { builder: hyper::server::conn::http2::Builder<TokioExecutor>, idle_timeout: Duration },
}

impl ConnectionServer {
    /// `hsts`: the header porter's own refusals carry on TLS connections (`tls.hsts`).
    pub(crate) fn new(protocol: Protocol, limits: &Limits, hsts: Option<&::http::HeaderValue>) -> ConnectionServer {
        let header_bytes = limits.max_header_bytes.clamp(8192, u64::from(u32::MAX)) as usize;
        if protocol == Protocol::Http1 {
            return ConnectionServer::Http1(http1::Settings {
                max_head: header_bytes,
                header_read_timeout: limits.header_read_timeout,
                idle_timeout: limits.idle_timeout,
                body_timeout: limits.body_timeout,
                keep_underscores: limits.underscores_in_headers,
                hsts: hsts.cloned(),
            });
        }
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            // Bounds a header block however many CONTINUATION frames carry it.
            .max_header_list_size(header_bytes as u32)
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            // Rapid reset (CVE-2023-44487): streams the client resets before porter took
            // them; beyond this many pending, GOAWAY.
            .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
            // "MadeYouReset" (CVE-2025-8671): streams porter had to reset for the
            // client's protocol errors; beyond this many, GOAWAY.
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
            // Pings find dead peers under long quiet streams. They start only after
            // idle_timeout has passed without a frame from the client, so a ping's answer
            // never keeps an idle connection open past idle_timeout.
            .keep_alive_interval(limits.idle_timeout + H2_PING_AFTER_IDLE)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        ConnectionServer::Http2 { builder, idle_timeout: limits.idle_timeout }
    }
}

/// The client of a new connection: with `proxy_protocol`, the address its PROXY header
/// names (bounded by `header_read_timeout`; `None` closes the connection), else the peer.
pub(crate) async fn accept_client(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    runtime: &crate::runtime::Runtime,
) -> Option<(crate::net::proxy_protocol::ClientStream, std::net::SocketAddr)> {
    if !runtime.proxy_protocol {
        return Some((crate::net::proxy_protocol::ClientStream::new(stream), peer));
    }
    // Boxed: its buffer would otherwise sit in every connection's task for its life.
    match Box::pin(crate::net::proxy_protocol::read_header(stream, runtime.limits.header_read_timeout)).await {
        Ok((source, stream)) => Some((stream, source.unwrap_or(peer))),
        Err(reason) => {
            tracing::debug!(peer = %peer, reason, "connection closed: PROXY protocol header missing or invalid");
            None
        }
    }
}

/// The future that serves a client connection with `handler` as its service until it
/// ends or, after a drain signal, until its requests in flight have finished. HTTP/1.1
/// is served by porter's own layer (`listener::http1`), HTTP/2 by hyper.
///
/// Boxed here, one box per protocol: the connection's task holds it for the
/// connection's life, idle or not, so it is exactly the one protocol's loop, with no
/// slot for the other's state or a second copy of the arguments.
pub(crate) fn serve_connection<F, Fut>(
    io: ClientIo,
    server: ConnectionServer,
    drain: DrainWatch,
    handler: F,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    F: Fn(crate::body::ClientRequest, Option<RawRequest>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = crate::proxy::Reply> + Send + 'static,
{
    match server {
        ConnectionServer::Http1(settings) => Box::pin(http1::serve(io, settings, drain, handler)),
        ConnectionServer::Http2 { builder, idle_timeout } => {
            Box::pin(serve_http2(io, builder, idle_timeout, drain, handler))
        }
    }
}

async fn serve_http2<F, Fut>(
    io: ClientIo,
    builder: hyper::server::conn::http2::Builder<TokioExecutor>,
    idle_timeout: Duration,
    drain: DrainWatch,
    handler: F,
) where
    F: Fn(crate::body::ClientRequest, Option<RawRequest>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = crate::proxy::Reply> + Send + 'static,
{
    // The request's future is boxed: hyper keeps a slot the size of the service future
    // in every connection, idle or not, and moves the future into it per request.
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let response = crate::net::boxed::pin_in_place(|| handler(Box::new(request.map(ClientBody::Hyper)), None));
        async move { Ok::<_, Infallible>(*response.await) }
    });
    let activity = idle::Activity::new();
    let io = TokioIo::new(idle::IdleIo::new(io, activity.clone()));
    let idle = Idle { activity, timeout: idle_timeout };
    // Boxed: hyper's HTTP/2 connection state is large, and inline it would sit beside
    // this future's own arguments.
    let conn = builder.serve_connection(io, service);
    if let Err(e) = Box::pin(until_drained(conn, drain, idle, |c| c.graceful_shutdown())).await {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

struct Idle {
    activity: std::sync::Arc<idle::Activity>,
    timeout: std::time::Duration,
}

/// Runs `conn` to its end; a drain signal or `idle_timeout` without traffic starts its
/// graceful shutdown (requests in flight finish, keep-alive ends).
async fn until_drained<C>(
    conn: C,
    mut drain: DrainWatch,
    idle: Idle,
    graceful_shutdown: impl FnOnce(std::pin::Pin<&mut C>),
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        _ = drain.signalled() => {
            graceful_shutdown(conn.as_mut());
            conn.await
        }
        _ = idle.activity.expired(idle.timeout) => {
            graceful_shutdown(conn.as_mut());
            conn.await
        }
    }
}

/// Accepts until `stop` flips, giving each connection to `on_connection` in its own task;
/// `slots` bounds the connections open at once, `stats` counts them.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    slots: Arc<Slots>,
    stats: Arc<ListenerStats>,
    mut stop: watch::Receiver<bool>,
    on_connection: F,
) where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let permit = tokio::select! {
            permit = slots.semaphore.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            _ = stop.changed() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let open = OpenConnection::new(stats.clone());
                tokio::spawn(Connection { serving: on_connection(stream, peer), _held: (permit, open) });
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection's task: its future in place, and what the connection holds until
    /// it ends (its slot, its count). Not an async block around the future, which would
    /// hold the future twice (as captured and as awaited) for the connection's life.
    struct Connection<F> {
        #[pin]
        serving: F,
        _held: (tokio::sync::OwnedSemaphorePermit, OpenConnection),
    }
}

impl<F: Future<Output = ()>> Future for Connection<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.project().serving.poll(cx)
    }
}
