//! docs/configuration.md, Certificates: the certificate is chosen by SNI; no SNI gets the default;
//! ALPN h2 works end to end.

use crate::harness::*;

async fn two_certs() -> (TestPorter, Backend, Vec<u8>, Vec<u8>) {
    let b = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let a_der = write_cert(&certs, "default", &["a.example.com"]);
    let b_der = write_cert(&certs, "b.example.com", &["b.example.com", "*.b.example.com"]);
    let yaml = proxy_yaml(&[(&b, 1)]);
    (TestPorter::start_in(dir, &yaml).await, b, a_der, b_der)
}

async fn served_cert(c: &reqwest::Client, url: String) -> (reqwest::Version, Vec<u8>, String) {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let der = r.extensions().get::<reqwest::tls::TlsInfo>().unwrap().peer_certificate().unwrap().to_vec();
    (r.version(), der, r.text().await.unwrap())
}

#[tokio::test]
async fn sni_picks_the_certificate() {
    let (p, _b, a_der, b_der) = two_certs().await;
    let port = p.https.unwrap().port();
    let hosts = ["a.example.com", "b.example.com", "x.b.example.com"];
    let c = client_for(p.https.unwrap(), &hosts);
    assert_eq!(served_cert(&c, format!("https://a.example.com:{port}/")).await.1, a_der);
    assert_eq!(served_cert(&c, format!("https://b.example.com:{port}/")).await.1, b_der);
    assert_eq!(served_cert(&c, format!("https://x.b.example.com:{port}/")).await.1, b_der, "wildcard");
    p.stop().await;
}

#[tokio::test]
async fn no_sni_gets_the_default_certificate() {
    let (p, _b, a_der, _) = two_certs().await;
    // rustls sends no SNI when connecting to an IP address.
    let c = client_for(p.https.unwrap(), &[]);
    let (_, der, _) = served_cert(&c, format!("https://127.0.0.1:{}/", p.https.unwrap().port())).await;
    assert_eq!(der, a_der);
    p.stop().await;
}

#[tokio::test]
async fn alpn_h2_is_negotiated_and_proxied() {
    let (p, _b, _, _) = two_certs().await;
    let port = p.https.unwrap().port();
    let c = client_for(p.https.unwrap(), &["a.example.com"]);
    let (version, _, body) = served_cert(&c, format!("https://a.example.com:{port}/h2?x=1")).await;
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert!(body.starts_with("a GET /h2?x=1\n"), "{body}");
    assert_eq!(echoed_header(&body, "host"), [format!("a.example.com:{port}")], "Host made from :authority");
    assert_eq!(echoed_header(&body, "via"), ["2.0 porter"]);
    p.stop().await;
}

#[tokio::test]
async fn misdirected_request_is_421_only_across_certificates() {
    let (p, _b, _, _) = two_certs().await;
    let port = p.https.unwrap().port();
    // One connection with SNI a.example.com, then a request for a host another certificate covers.
    let c = http_client()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .resolve("a.example.com", p.https.unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let raw = c
        .get(format!("https://a.example.com:{port}/"))
        .header("host", format!("b.example.com:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 421);
    // A host no certificate covers is routed as usual (the client accepted this certificate).
    let ok = c
        .get(format!("https://a.example.com:{port}/"))
        .header("host", format!("elsewhere.test:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    p.stop().await;
}

#[tokio::test]
async fn a_reload_can_point_at_another_certificate_folder() {
    let (p, _b, a_der, _) = two_certs().await;
    let other = p.dir.path().join("other-certs");
    let new_der = write_cert(&other, "a.example.com", &["a.example.com"]);
    let yaml = std::fs::read_to_string(p.dir.path().join("porter.yaml"))
        .unwrap()
        .replace("certs: certs", "certs: other-certs");
    std::fs::write(p.dir.path().join("porter.yaml"), yaml).unwrap();
    let config = porter::Config::load(&p.dir.path().join("porter.yaml")).unwrap();
    p.porter.as_ref().unwrap().reload(&config).unwrap();

    let port = p.https.unwrap().port();
    // A new client: no resumed session, so the handshake shows the certificate chosen now.
    let c = client_for(p.https.unwrap(), &["a.example.com"]);
    let (_, der, _) = served_cert(&c, format!("https://a.example.com:{port}/")).await;
    assert_eq!(der, new_der, "the reload kept serving the old folder");
    assert_ne!(der, a_der);
    p.stop().await;
}
