//! docs/configuration.md, Upstream TLS: an `https://` server whose certificate comes from a
//! private CA is reached with `tls.ca_file` and refused (502) without it;
//! `tls.server_name` is the name sent and verified when the URL is an IP;
//! with `http2: true`, ALPN picks h2, or HTTP/1.1 when the server only has that.

use std::path::PathBuf;
use std::sync::Arc;

use crate::harness::*;

/// A private CA and a certificate for `backend.internal` (only) signed by it.
/// Returns the server's TLS config (ALPN as given) and the CA's PEM file.
pub(crate) fn private_ca(dir: &std::path::Path, alpn: &[&[u8]]) -> (Arc<rustls::ServerConfig>, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "porter test: private upstream CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["backend.internal".to_string()]).unwrap().signed_by(&key, &*ca).unwrap();
    let ca_file = dir.join("internal-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(porter::testing::tls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (Arc::new(config), ca_file)
}

fn yaml(backend: &Backend, upstream_extra: &str) -> String {
    let url = format!("https://{}", backend.addr);
    format!(
        "{}http:\n  redirect: false\nupstreams:\n  web:\n{upstream_extra}    servers:\n      - url: \"{url}\"\nroutes:\n  - upstream: web\n",
        listen_block()
    )
}

#[tokio::test]
async fn a_private_ca_is_trusted_with_ca_file_and_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let (config, ca_file) = private_ca(dir.path(), &[b"http/1.1"]);
    let backend = Backend::start_wire("private", Wire::Tls(config)).await;
    let c = plain_client();
    let ca = ca_file.display();

    // Public roots (the default): the private CA is not trusted.
    let p = TestPorter::start(&yaml(&backend, "")).await;
    let r = c.get(p.http_url("/")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    p.stop().await;

    // The CA trusted, but the URL's IP is not a name in the certificate.
    let p = TestPorter::start(&yaml(&backend, &format!("    tls:\n      ca_file: \"{ca}\"\n"))).await;
    assert_eq!(c.get(p.http_url("/")).send().await.unwrap().status(), 502);

    // server_name: SNI and verification use backend.internal; a reload applies it.
    p.reload(&yaml(&backend, &format!("    tls:\n      ca_file: \"{ca}\"\n      server_name: backend.internal\n")));
    let r = c.get(p.http_url("/")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["x-version"].to_str().unwrap()), (200, "HTTP/1.1"));
    assert_eq!(r.headers()["x-backend"], "private");
    p.stop().await;
}

#[tokio::test]
async fn http2_over_tls_by_alpn_or_http1_when_the_server_has_only_that() {
    let dir = tempfile::tempdir().unwrap();
    let tls = |d: &str| format!("    http2: true\n    tls: {{ca_file: \"{d}\", server_name: backend.internal}}\n");
    let (h2_config, ca_file) = private_ca(dir.path(), &[b"h2", b"http/1.1"]);
    let h2 = Backend::start_wire("h2", Wire::Tls(h2_config)).await;
    let p = TestPorter::start(&yaml(&h2, &tls(&ca_file.display().to_string()))).await;
    let c = plain_client();
    for _ in 0..5 {
        let r = c.get(p.http_url("/")).send().await.unwrap();
        assert_eq!((r.status().as_u16(), r.headers()["x-version"].to_str().unwrap()), (200, "HTTP/2.0"));
    }
    assert_eq!(h2.accepts(), 1, "one multiplexed TLS connection");
    p.stop().await;

    let other = tempfile::tempdir().unwrap();
    let (h1_config, ca_file) = private_ca(other.path(), &[b"http/1.1"]);
    let h1 = Backend::start_wire("h1", Wire::Tls(h1_config)).await;
    let p = TestPorter::start(&yaml(&h1, &tls(&ca_file.display().to_string()))).await;
    for _ in 0..3 {
        let r = c.get(p.http_url("/")).send().await.unwrap();
        assert_eq!((r.status().as_u16(), r.headers()["x-version"].to_str().unwrap()), (200, "HTTP/1.1"));
    }
    p.stop().await;
}
