//! docs/security.md, TLS: porter's TLS listener offers the hybrid post-quantum key exchange
//! X25519MLKEM768 first. Real rustls clients (aws-lc-rs) with a chosen list of
//! key-exchange groups handshake with a real porter, make a request over the
//! connection, and check which group was negotiated.

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{ClientConfig, NamedGroup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;
use crate::tls_client::{tls_connect, AcceptAny};

/// A TLS 1.3 client config (no resumption: every handshake is full) that
/// offers exactly `groups`, in that order.
fn client_offering(groups: &[&'static dyn SupportedKxGroup]) -> Arc<ClientConfig> {
    let provider = CryptoProvider { kx_groups: groups.to_vec(), ..default_provider() };
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// Handshake with porter offering `groups`, then one HTTP/1.1 request over
/// the connection. Returns the negotiated group and the response head line.
async fn handshake_and_get(p: &TestPorter, groups: &[&'static dyn SupportedKxGroup]) -> (NamedGroup, String) {
    let mut tls = tls_connect(p.https.unwrap(), "localhost", client_offering(groups))
        .await
        .unwrap_or_else(|e| panic!("handshake offering {groups:?}: {e}"));
    let group = tls.get_ref().1.negotiated_key_exchange_group().expect("TLS 1.3 negotiates a group").name();
    tls.write_all(b"GET /pq HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    tls.read_to_end(&mut got).await.unwrap();
    let text = String::from_utf8_lossy(&got);
    (group, text.lines().next().unwrap_or_default().to_string())
}

#[tokio::test]
async fn a_client_offering_only_x25519mlkem768_is_served() {
    let b = Backend::start("a").await;
    let p = TestPorter::start(&proxy_yaml(&[(&b, 1)])).await;
    let (group, status) = handshake_and_get(&p, &[kx_group::X25519MLKEM768]).await;
    assert_eq!(group, NamedGroup::X25519MLKEM768);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(b.requests(), 1);
    p.stop().await;
}

#[tokio::test]
async fn browsers_get_the_hybrid_and_classical_clients_still_work() {
    let b = Backend::start("a").await;
    let p = TestPorter::start(&proxy_yaml(&[(&b, 1)])).await;
    // What Chrome and Firefox offer: the hybrid first, X25519 as a fallback share.
    let (group, status) = handshake_and_get(&p, &[kx_group::X25519MLKEM768, kx_group::X25519]).await;
    assert_eq!((group, status.as_str()), (NamedGroup::X25519MLKEM768, "HTTP/1.1 200 OK"));
    // Clients without ML-KEM keep working.
    let (group, status) = handshake_and_get(&p, &[kx_group::X25519]).await;
    assert_eq!((group, status.as_str()), (NamedGroup::X25519, "HTTP/1.1 200 OK"));
    let (group, status) = handshake_and_get(&p, &[kx_group::SECP256R1]).await;
    assert_eq!((group, status.as_str()), (NamedGroup::secp256r1, "HTTP/1.1 200 OK"));
    assert_eq!(b.requests(), 3);
    p.stop().await;
}
