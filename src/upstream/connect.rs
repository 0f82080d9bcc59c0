//! Opening a new connection to a server: TCP (plus TLS for `https://`
//! servers), then an HTTP/1.1 handshake whose connection task runs on its own.
//!
//! The TCP connect goes to the server's addresses in turn, starting one
//! further along for each new connection, so a name that resolves to several
//! addresses spreads its connections over them, and an address that refuses
//! hands over to the next. The whole of it — every address tried, TLS and the
//! HTTP handshake — is bounded by the `connect` timeout.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
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

#[derive(Debug)]
pub enum ConnectError {
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

pub async fn connect(server: &Server, timeout: Duration) -> Result<UpstreamSender, ConnectError> {
    match tokio::time::timeout(timeout, connect_inner(server)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout),
    }
}

async fn connect_inner(server: &Server) -> Result<UpstreamSender, ConnectError> {
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
    let (tcp, addr) = open_tcp(&addrs, server.next_addr_index()).await.map_err(ConnectError::Io)?;
    server.pool.note_connect();
    match server.url.scheme {
        Scheme::Http => handshake(tcp, addr).await,
        Scheme::Https => {
            let name = ServerName::try_from(server.url.host.clone())
                .map_err(|e| ConnectError::Tls(std::io::Error::other(e)))?;
            let tls = tokio_rustls::TlsConnector::from(client_tls_config())
                .connect(name, tcp)
                .await
                .map_err(ConnectError::Tls)?;
            handshake(tls, addr).await
        }
    }
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

async fn handshake<IO>(io: IO, addr: SocketAddr) -> Result<UpstreamSender, ConnectError>
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
    Ok(UpstreamSender { sender, addr })
}

/// Servers behind `https://` are verified against the Mozilla roots.
fn client_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .expect("aws-lc-rs supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}
