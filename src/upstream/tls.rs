//! TLS to `https://` servers: which certificates are trusted (the public
//! Mozilla roots, or an upstream's own `tls.ca_file`), which name is sent as
//! SNI and verified (`tls.server_name`, else the URL's host), and which
//! protocols ALPN offers (`h2` first when the upstream has `http2: true`).
//!
//! The rustls configs are built once per upstream and shared by its servers,
//! so session resumption works across their connections.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::config::{ServerUrl, UpstreamTls};

/// What a server's TLS connections use.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// ALPN `http/1.1` only: HTTP/1.1 upstreams, and upgrades (WebSocket) on any.
    pub http1: Arc<ClientConfig>,
    /// ALPN `h2`, `http/1.1`: what an `http2: true` upstream offers.
    pub http2: Arc<ClientConfig>,
}

impl ClientTls {
    pub fn new(settings: &UpstreamTls) -> ClientTls {
        let roots = match &settings.ca {
            Some(bundle) => {
                let mut roots = rustls::RootCertStore::empty();
                // Checked at load: every entry parsed as a certificate. One that is not a
                // usable trust anchor is skipped, as the system trust store would.
                let (added, ignored) = roots.add_parsable_certificates(bundle.certs.iter().cloned());
                if ignored > 0 {
                    tracing::warn!(file = %bundle.path.display(), added, ignored, "tls.ca_file: some certificates are not usable as trust anchors");
                }
                roots
            }
            None => rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        };
        let mut config = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("the crypto provider supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http1 = Arc::new(config.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        ClientTls { http1, http2: Arc::new(config) }
    }
}

/// The name a server's certificate must carry: `tls.server_name`, else the URL's host.
pub(crate) fn server_name(url: &ServerUrl, settings: &UpstreamTls) -> Option<ServerName<'static>> {
    let name = settings.server_name.as_deref().unwrap_or(&url.host);
    ServerName::try_from(name.to_string()).ok()
}
