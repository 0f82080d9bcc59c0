//! TLS clients for the tests: rustls configurations that accept any certificate (the
//! tests check *which* one porter serves), connecting with a chosen SNI, reading the
//! leaf served, and a keep-alive HTTP/1.1 connection held across changes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Accepts any server certificate (test certificates are self-signed or from
/// a throwaway CA): these tests check *which* certificate porter serves. The
/// handshake signature is still verified, so the key really matches.
#[derive(Debug)]
pub(crate) struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &signature_algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &signature_algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signature_algorithms().supported_schemes()
    }
}

/// The handshake signatures aws-lc-rs (porter's provider) verifies.
fn signature_algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
}

pub(crate) static TLS12_AND_13: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];

/// A rustls client config with the given versions and ALPN, trusting anything,
/// and with session resumption off: every handshake is a full one, so it shows
/// the certificate porter chooses *now* (a resumed session would not).
pub(crate) fn tls_config(versions: &[&'static SupportedProtocolVersion], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// TCP + TLS handshake to `addr` with SNI `sni`.
pub(crate) async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

/// The leaf certificate (DER) of an established TLS connection.
pub(crate) fn peer_leaf(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().expect("server sent certificates")[0].to_vec()
}

/// The leaf certificate porter serves for `sni` right now (a fresh full handshake).
pub(crate) async fn served_leaf(addr: SocketAddr, sni: &str) -> Vec<u8> {
    let tls = tls_connect(addr, sni, tls_config(&TLS12_AND_13, &[b"http/1.1"]))
        .await
        .unwrap_or_else(|e| panic!("TLS handshake for {sni}: {e}"));
    peer_leaf(&tls)
}

/// Polls (fresh handshakes every 50 ms) until porter serves `want` for `sni`,
/// or panics after `within`. Returns how long it took.
pub(crate) async fn wait_for_leaf(addr: SocketAddr, sni: &str, want: &[u8], within: Duration, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        if served_leaf(addr, sni).await == want {
            let took = start.elapsed();
            eprintln!("timing: {what}: served after {took:?}");
            return took;
        }
        assert!(start.elapsed() < within, "{what}: not served for SNI {sni} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The DER of the first certificate in a PEM file.
pub(crate) fn first_cert_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .next()
        .unwrap_or_else(|| panic!("no certificate in {}", path.display()))
        .unwrap()
        .to_vec()
}

/// An HTTP/1.1 keep-alive connection to porter over TLS, held open across changes.
pub(crate) struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    pub(crate) leaf: Vec<u8>,
    host: String,
}

impl KeepAlive {
    pub(crate) async fn open(addr: SocketAddr, sni: &str) -> KeepAlive {
        let tls = tls_connect(addr, sni, tls_config(&TLS12_AND_13, &[b"http/1.1"])).await.unwrap();
        let leaf = peer_leaf(&tls);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        KeepAlive { sender, leaf, host: format!("{sni}:{}", addr.port()) }
    }

    /// One GET on this very connection (hyper's http1 sender never reconnects).
    pub(crate) async fn get(&mut self, path: &str) -> u16 {
        self.sender.ready().await.expect("keep-alive connection still open");
        let request = hyper::Request::get(path).header("host", &self.host).body(Empty::new()).unwrap();
        let response = self.sender.send_request(request).await.expect("request on the kept-alive connection");
        let status = response.status().as_u16();
        response.into_body().collect().await.unwrap();
        status
    }
}
