//! The HTTPS client instant-acme talks to the CA through: hyper over
//! tokio-rustls with porter's own crypto provider (never the process default,
//! which panics when two providers are linked in), trusting `acme.ca_file` or
//! the public roots. A connection per request: an order is a dozen requests
//! a few times a year, not worth a pool.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// Bounds one request, connect to last byte, so a CA that stalls cannot hang an order.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct AcmeHttp {
    tls: tokio_rustls::TlsConnector,
}

impl AcmeHttp {
    pub(super) fn new(ca_file: Option<&Path>) -> Result<AcmeHttp, String> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let certs =
                    CertificateDer::pem_file_iter(path).map_err(|e| format!("acme.ca_file {}: {e}", path.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("acme.ca_file {}: {e}", path.display()))?;
                    roots.add(cert).map_err(|e| format!("acme.ca_file {}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("acme.ca_file {}: no certificate in it", path.display()));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = crate::tls::provider();
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(AcmeHttp { tls: tokio_rustls::TlsConnector::from(Arc::new(config)) })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, send(tls, req)).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(e)) => Err(instant_acme::Error::Other(e)),
                Err(_) => Err(instant_acme::Error::Str("ACME request timed out")),
            }
        })
    }
}

async fn send(
    tls: tokio_rustls::TlsConnector,
    mut req: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, BoxError> {
    let uri = req.uri().clone();
    let host = uri.host().ok_or("ACME URL without a host")?.to_string();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("ACME URL {uri} is not http(s)").into()),
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((bare, port)).await?;
    let _ = tcp.set_nodelay(true);
    // HTTP/1.1 wants origin-form on the wire and a Host header.
    let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or(host.clone());
    req.headers_mut().insert(http::header::HOST, http::HeaderValue::from_str(&authority)?);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = path.parse()?;
    if https {
        let name = ServerName::try_from(bare.to_string())?;
        let stream = tls.connect(name, tcp).await?;
        exchange(TokioIo::new(stream), req).await
    } else {
        exchange(TokioIo::new(tcp), req).await
    }
}

async fn exchange<T>(io: T, req: Request<BodyWrapper<Bytes>>) -> Result<BytesResponse, BoxError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender.send_request(req).await?;
    // Read the body now, while the connection task runs, so the response owns its bytes.
    let (parts, body) = response.into_parts();
    let bytes = http_body_util::BodyExt::collect(body).await?.to_bytes();
    Ok(BytesResponse::from(http::Response::from_parts(parts, http_body_util::Full::new(bytes))))
}
