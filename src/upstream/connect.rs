//! Opening a new connection to a server: TCP (plus TLS for `https://`
//! servers), then an HTTP/1.1 handshake whose connection task runs on its own.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::config::Scheme;
use crate::proxy::body::RequestBody;

use super::server::Server;

pub type UpstreamSender = http1::SendRequest<RequestBody>;

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
    let tcp = open_tcp(&server.url.host, server.url.port).await.map_err(ConnectError::Io)?;
    server.pool.note_connect();
    match server.url.scheme {
        Scheme::Http => handshake(tcp).await,
        Scheme::Https => {
            let name = ServerName::try_from(server.url.host.clone())
                .map_err(|e| ConnectError::Tls(std::io::Error::other(e)))?;
            let tls = tokio_rustls::TlsConnector::from(client_tls_config())
                .connect(name, tcp)
                .await
                .map_err(ConnectError::Tls)?;
            handshake(tls).await
        }
    }
}

async fn open_tcp(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let stream = match host.parse::<IpAddr>() {
        Ok(ip) => TcpStream::connect(SocketAddr::new(ip, port)).await?,
        Err(_) => TcpStream::connect((host, port)).await?,
    };
    // Requests and responses are written whole; Nagle would only add latency.
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn handshake<IO>(io: IO) -> Result<UpstreamSender, ConnectError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(io)).await.map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Servers behind `https://` are verified against the Mozilla roots.
fn client_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            let mut config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}
