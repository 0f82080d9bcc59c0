//! Opening a new connection to a server: TCP (plus TLS for `https://`
//! servers), then an HTTP/1.1 or HTTP/2 handshake whose connection task runs
//! on its own. HTTP/2 is h2c with prior knowledge on `http://` servers and
//! ALPN `h2` on `https://` ones, where a server that picks `http/1.1` gets
//! HTTP/1.1.
//!
//! The TCP connect goes to the server's addresses in turn, starting one
//! further along for each new connection, so a name that resolves to several
//! addresses spreads its connections over them, and an address that refuses
//! hands over to the next. The whole of it — every address tried, TLS and the
//! HTTP handshake — is bounded by the `connect` timeout.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::config::Scheme;

use super::server::Server;

/// An HTTP/1.1 connection to a server, and the address it went to (so the
/// pool can drop connections to addresses that DNS no longer returns).
#[derive(Debug)]
pub struct UpstreamSender {
    sender: http1::SendRequest<RequestBody>,
    pub addr: SocketAddr,
}

impl Deref for UpstreamSender {
    type Target = http1::SendRequest<RequestBody>;
    fn deref(&self) -> &Self::Target {
        &self.sender
    }
}

impl DerefMut for UpstreamSender {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.sender
    }
}

/// An HTTP/2 connection to a server; the sender is cloned for each stream.
#[derive(Debug, Clone)]
pub(crate) struct Http2Sender {
    pub sender: http2::SendRequest<RequestBody>,
    pub addr: SocketAddr,
}

/// The protocol a connection is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    Http1,
    /// HTTP/2; over TLS only if the server agrees through ALPN, else HTTP/1.1.
    Http2,
}

/// A new connection, in the protocol it ended up speaking.
#[derive(Debug)]
pub(crate) enum Connection {
    Http1(UpstreamSender),
    Http2(Http2Sender),
}

/// Idle HTTP/2 connections are pinged this often, and closed when a ping is not
/// answered within the timeout: a server that vanished without a FIN leaves the pool.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) enum ConnectError {
    Timeout,
    Io(std::io::Error),
    Tls(std::io::Error),
    Handshake(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "connect failed: {e}"),
            ConnectError::Tls(e) => write!(f, "TLS to upstream failed: {e}"),
            ConnectError::Handshake(e) => write!(f, "HTTP handshake failed: {e}"),
        }
    }
}

/// Why a connection is opened: requests' connections and health checks' are counted apart
/// (`porter_upstream_server_connects_total` and `porter_upstream_health_check_connects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Requests,
    HealthCheck,
}

pub(crate) async fn connect(server: &Server, timeout: Duration, want: Want) -> Result<Connection, ConnectError> {
    connect_for(server, timeout, want, Purpose::Requests).await
}

pub(crate) async fn connect_for(
    server: &Server,
    timeout: Duration,
    want: Want,
    purpose: Purpose,
) -> Result<Connection, ConnectError> {
    match tokio::time::timeout(timeout, connect_inner(server, want, purpose)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// A connection for porter's own HTTP/1.1 client (the pool of HTTP/1.1 servers).
pub(crate) async fn connect_own(server: &Server, timeout: Duration) -> Result<super::http1::Conn, ConnectError> {
    match tokio::time::timeout(timeout, connect_own_inner(server)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout),
    }
}

async fn connect_own_inner(server: &Server) -> Result<super::http1::Conn, ConnectError> {
    use super::http1::{Conn, ServerIo};
    let (tcp, addr) = open_server_tcp(server, Purpose::Requests).await?;
    match server.url.scheme {
        Scheme::Http => Ok(Conn::new(ServerIo::Plain(tcp), addr)),
        Scheme::Https => {
            let (tls, name) = server.tls();
            let name = name.ok_or_else(|| {
                ConnectError::Tls(std::io::Error::other(format!("{} is not a valid TLS server name", server.url.host)))
            })?;
            let stream = tokio_rustls::TlsConnector::from(tls.http1.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| tls_failed(server, e))?;
            tls_verified(server);
            Ok(Conn::new(ServerIo::Tls(Box::new(stream)), addr))
        }
    }
}

/// An HTTP/1.1 connection on hyper's client (upgrades, health checks).
pub(crate) async fn connect_http1(server: &Server, timeout: Duration) -> Result<UpstreamSender, ConnectError> {
    match connect(server, timeout, Want::Http1).await? {
        Connection::Http1(sender) => Ok(sender),
        Connection::Http2(_) => unreachable!("HTTP/2 is only spoken when asked for"),
    }
}

async fn connect_inner(server: &Server, want: Want, purpose: Purpose) -> Result<Connection, ConnectError> {
    let (tcp, addr) = open_server_tcp(server, purpose).await?;
    match (server.url.scheme, want) {
        (Scheme::Http, Want::Http1) => handshake(tcp, addr).await,
        (Scheme::Http, Want::Http2) => handshake_h2(tcp, addr).await,
        (Scheme::Https, _) => {
            let (tls, name) = server.tls();
            let config = if want == Want::Http2 { &tls.http2 } else { &tls.http1 };
            let name = name.ok_or_else(|| {
                ConnectError::Tls(std::io::Error::other(format!("{} is not a valid TLS server name", server.url.host)))
            })?;
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| tls_failed(server, e))?;
            tls_verified(server);
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                handshake_h2(stream, addr).await
            } else {
                handshake(stream, addr).await
            }
        }
    }
}

/// A TLS handshake with an `https://` server failed. When porter refused the server's
/// certificate (untrusted issuer, expired, or not for the name porter verifies), that is
/// a configuration problem the operator must see, not a network blip: it is logged as a
/// warning naming the server and the reason, once until a handshake succeeds again.
fn tls_failed(server: &Server, e: std::io::Error) -> ConnectError {
    let refused = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).and_then(|e| match e {
        rustls::Error::InvalidCertificate(reason) => Some(reason),
        _ => None,
    });
    if let Some(reason) = refused {
        if !server.live.tls_refused.swap(true, std::sync::atomic::Ordering::Relaxed) {
            let what = match reason {
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. } => {
                    "its certificate is not for the name porter verifies"
                }
                _ => "its certificate was refused",
            };
            let verified = server.tls_name().map_or_else(|| server.url.host.clone(), |n| n.to_str().into_owned());
            tracing::warn!(
                server = %server.url.original,
                name = %verified,
                reason = %reason,
                "upstream TLS: {what} (set the upstream's tls.ca_file or tls.server_name if the server is right)"
            );
        }
    }
    ConnectError::Tls(e)
}

/// A handshake succeeded: a later certificate refusal is news again.
fn tls_verified(server: &Server) {
    if server.live.tls_refused.load(std::sync::atomic::Ordering::Relaxed) {
        server.live.tls_refused.store(false, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(server = %server.url.original, "upstream TLS: the server's certificate is accepted again");
    }
}

/// A TCP connection to one of the server's addresses (resolving its name first
/// if the resolver task has not yet), counted as a new connection.
async fn open_server_tcp(server: &Server, purpose: Purpose) -> Result<(TcpStream, SocketAddr), ConnectError> {
    let mut addrs = server.addrs();
    if addrs.is_empty() {
        // A DNS name not resolved yet (the resolver task starts with the snapshot).
        super::dns::refresh(server).await;
        addrs = server.addrs();
        if addrs.is_empty() {
            let msg = format!("{} does not resolve to any address", server.url.host);
            return Err(ConnectError::Io(std::io::Error::new(std::io::ErrorKind::NotFound, msg)));
        }
    }
    let opened = open_tcp(&addrs, server.next_addr_index()).await.map_err(ConnectError::Io)?;
    let counter = match purpose {
        Purpose::Requests => &server.live.connects_total,
        Purpose::HealthCheck => &server.live.check_connects_total,
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(opened)
}

/// Connects to the first address that accepts, trying them in turn from `start`.
async fn open_tcp(addrs: &[SocketAddr], start: usize) -> std::io::Result<(TcpStream, SocketAddr)> {
    let mut last = None;
    for i in 0..addrs.len() {
        let addr = addrs[(start + i) % addrs.len()];
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Requests and responses are written whole; Nagle would only add latency.
                stream.set_nodelay(true)?;
                return Ok((stream, addr));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")))
}

async fn handshake<IO>(io: IO, addr: SocketAddr) -> Result<Connection, ConnectError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        http1::Builder::new().writev(false).handshake(TokioIo::new(io)).await.map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(Connection::Http1(UpstreamSender { sender, addr }))
}

async fn handshake_h2<IO>(io: IO, addr: SocketAddr) -> Result<Connection, ConnectError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .keep_alive_while_idle(true);
    let (sender, conn) = builder.handshake(TokioIo::new(io)).await.map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(Connection::Http2(Http2Sender { sender, addr }))
}
