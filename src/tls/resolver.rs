//! rustls glue: the SNI resolver over an atomically swapped `CertStore` (and
//! the ACME TLS-ALPN-01 answers), and the `ServerConfig` built around it.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls::SupportedProtocolVersion;

use super::challenges::{Challenges, ACME_TLS_ALPN};
use super::watch::ReloadState;
use super::CertStore;
use crate::config::TlsVersion;

/// Serves certificates from the current `CertStore`. A reload swaps the
/// whole store; handshakes in flight keep the store they loaded, open
/// connections keep the certificate they were given.
pub(crate) struct CertResolver {
    store: ArcSwap<CertStore>,
    /// Serialises rescans (watcher vs SIGHUP) and remembers what was logged.
    pub(crate) reload: Mutex<ReloadState>,
    /// TLS-ALPN-01 validation certificates (and HTTP-01 answers) of open ACME orders.
    challenges: Arc<Challenges>,
}

impl CertResolver {
    pub(crate) fn new(store: CertStore) -> Arc<Self> {
        Arc::new(CertResolver {
            store: ArcSwap::from_pointee(store),
            reload: Mutex::new(ReloadState::default()),
            challenges: Arc::default(),
        })
    }

    /// The current store (one atomic load).
    pub(crate) fn store(&self) -> Arc<CertStore> {
        self.store.load_full()
    }

    pub(crate) fn replace(&self, store: CertStore) {
        self.store.store(Arc::new(store));
    }

    /// The answers of open ACME orders: the resolver serves the TLS-ALPN-01 ones,
    /// the http listener the HTTP-01 ones.
    pub(crate) fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    /// The certificate a handshake with this SNI gets now (the tests' view of a swap).
    #[cfg(test)]
    pub(crate) fn chosen(&self, sni: Option<&str>) -> Option<Arc<super::LoadedCert>> {
        self.store.load().choose(sni).cloned()
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = self.store.load();
        let names: Vec<&str> = store.certs().iter().map(|c| c.name.as_str()).collect();
        f.debug_struct("CertResolver").field("certs", &names).finish()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737 §3: a validation handshake offers `acme-tls/1` and nothing else.
        if let Some(mut alpn) = client_hello.alpn() {
            if alpn.next() == Some(ACME_TLS_ALPN) && alpn.next().is_none() {
                let sni = client_hello.server_name()?.to_ascii_lowercase();
                super::sni::note(None);
                let cert = self.challenges.tls_alpn01(&sni);
                tracing::info!(domain = %sni, answered = cert.is_some(), "ACME TLS-ALPN-01 validation handshake");
                return cert;
            }
        }
        // `by_sni` lowercases; rustls hands over the SNI as sent.
        let store = self.store.load();
        let chosen = store.choose(client_hello.server_name());
        // The certificate the SNI names exactly, for the 421 check (`ConnContext::sni_cert`).
        super::sni::note(client_hello.server_name().and_then(|sni| store.by_sni(sni).cloned()));
        if chosen.is_none() {
            tracing::warn!("TLS handshake refused: no certificate loaded");
        }
        chosen.map(|c| c.certified_key.clone())
    }
}

type Resumption = (Arc<dyn StoresServerSessions>, Option<Arc<dyn ProducesTickets>>);

/// Session cache and ticket keys shared by every `ServerConfig` built in
/// this process, so a config rebuilt on SIGHUP still resumes sessions.
fn resumption() -> &'static Resumption {
    static SHARED: OnceLock<Resumption> = OnceLock::new();
    SHARED.get_or_init(|| {
        // 256 entries: rustls' own default for the stateful cache (TLS 1.2
        // clients without ticket support).
        let cache: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(256);
        let ticketer = match rustls::crypto::aws_lc_rs::Ticketer::new() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("TLS session tickets disabled: {e}");
                None
            }
        };
        (cache, ticketer)
    })
}

/// rustls server config over `resolver`: porter's aws-lc-rs provider with
/// X25519MLKEM768 first (never a process default), TLS 1.2+1.3 or 1.3 only, safe default suites, ALPN h2 then
/// http/1.1, stateful session cache plus stateless tickets.
pub(crate) fn server_config(resolver: Arc<CertResolver>, min_version: TlsVersion) -> Arc<ServerConfig> {
    static BOTH: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    let versions: &[&'static SupportedProtocolVersion] = match min_version {
        TlsVersion::V1_2 => &BOTH,
        TlsVersion::V1_3 => &TLS13_ONLY,
    };
    let mut config = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(versions)
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // `acme-tls/1` last: rustls picks the first of ours a client offers, so only a
    // TLS-ALPN-01 validator (which offers nothing else) ever gets it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    let (cache, ticketer) = resumption();
    config.session_storage = cache.clone();
    if let Some(ticketer) = ticketer {
        config.ticketer = ticketer.clone();
    }
    Arc::new(config)
}

/// rustls server config for QUIC (HTTP/3) over the same `resolver`: TLS 1.3 only
/// (QUIC has no other), ALPN `h3`, the same session resumption, and no early data
/// (0-RTT requests can be replayed; `max_early_data_size` stays 0).
pub(crate) fn quic_server_config(resolver: Arc<CertResolver>) -> ServerConfig {
    let mut config = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("aws-lc-rs supports TLS 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h3".to_vec()];
    config.max_early_data_size = 0;
    let (cache, ticketer) = resumption();
    config.session_storage = cache.clone();
    if let Some(ticketer) = ticketer {
        config.ticketer = ticketer.clone();
    }
    config
}

#[cfg(test)]
mod tests {
    use super::super::load::cert_facts;
    use super::super::testutil::*;
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, HandshakeKind};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Starts a TLS server answering "ok" on each connection.
    async fn serve(config: Arc<ServerConfig>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tls.write_all(b"ok").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        addr
    }

    fn client(versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
        let mut c = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(accept_any())
            .with_no_client_auth();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(c)
    }

    /// Handshakes as `name`; returns the served leaf's DNS names, the ALPN
    /// protocol and how the handshake went.
    async fn hello(
        addr: std::net::SocketAddr,
        config: &Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> std::io::Result<(Vec<String>, Option<Vec<u8>>, Option<HandshakeKind>)> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let mut tls = connector.connect(name, tcp).await?;
        let mut buf = Vec::new();
        // Reading to the end also takes in the TLS 1.3 session tickets.
        tls.read_to_end(&mut buf).await?;
        assert_eq!(buf, b"ok");
        let conn = tls.get_ref().1;
        let leaf = conn.peer_certificates().unwrap()[0].clone();
        let names = cert_facts(&leaf).unwrap().dns_names;
        Ok((names, conn.alpn_protocol().map(<[u8]>::to_vec), conn.handshake_kind()))
    }

    fn dns(name: &str) -> ServerName<'static> {
        ServerName::try_from(name.to_string()).unwrap()
    }

    #[tokio::test]
    async fn real_handshake_picks_by_sni() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        write_pair(d, "a.example.com", &["a.example.com"], KeyKind::EcPkcs8);
        write_pair(d, "wild", &["*.example.com"], KeyKind::EcSec1);
        write_pair(d, "default", &["fallback.example.org"], KeyKind::EcPkcs8);
        let (store, problems) = CertStore::scan(d, None);
        assert!(problems.is_empty(), "{problems:?}");
        let resolver = CertResolver::new(store);
        assert!(format!("{resolver:?}").contains("a.example.com"));
        let addr = serve(server_config(resolver, TlsVersion::V1_2)).await;
        let both = client(&[&rustls::version::TLS13, &rustls::version::TLS12]);

        let (names, alpn, kind) = hello(addr, &both, dns("a.example.com")).await.unwrap();
        assert_eq!(names, vec!["a.example.com"]);
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        assert_eq!(kind, Some(HandshakeKind::Full));

        // Same client again: resumed from the ticket it was sent.
        let (names, _, kind) = hello(addr, &both, dns("a.example.com")).await.unwrap();
        assert_eq!(names, vec!["a.example.com"]);
        assert_eq!(kind, Some(HandshakeKind::Resumed));

        let (names, ..) = hello(addr, &both, dns("B.Example.COM")).await.unwrap();
        assert_eq!(names, vec!["*.example.com"]);

        // An IP server name sends no SNI.
        let ip = ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into());
        let (names, ..) = hello(addr, &both, ip).await.unwrap();
        assert_eq!(names, vec!["fallback.example.org"]);
        let (names, ..) = hello(addr, &both, dns("unknown.test")).await.unwrap();
        assert_eq!(names, vec!["fallback.example.org"]);

        // TLS 1.2 only client, fresh session cache.
        let tls12 = client(&[&rustls::version::TLS12]);
        let (names, alpn, _) = hello(addr, &tls12, dns("x.example.com")).await.unwrap();
        assert_eq!(names, vec!["*.example.com"]);
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    }

    #[tokio::test]
    async fn tls13_only_and_empty_store() {
        let resolver = CertResolver::new(CertStore::self_signed_localhost());
        let addr = serve(server_config(resolver.clone(), TlsVersion::V1_3)).await;
        let tls12 = client(&[&rustls::version::TLS12]);
        assert!(hello(addr, &tls12, dns("localhost")).await.is_err());
        let tls13 = client(&[&rustls::version::TLS13]);
        let (names, ..) = hello(addr, &tls13, dns("localhost")).await.unwrap();
        assert_eq!(names, vec!["localhost"]);

        // No certificate at all: the handshake fails, nothing panics.
        resolver.replace(CertStore::default());
        assert!(hello(addr, &tls13, dns("localhost")).await.is_err());
        assert!(resolver.chosen(None).is_none());
    }
}
