//! docs/configuration.md, Forwarding: forwarding headers, hop-by-hop stripping, Host kept, bodies
//! streamed both ways.

use bytes::Bytes;
use http_body_util::Full;

use crate::harness::*;

async fn one_backend() -> (TestPorter, Backend) {
    let b = Backend::start("echo").await;
    let yaml = proxy_yaml(&[(&b, 1)]);
    (TestPorter::start(&yaml).await, b)
}

#[tokio::test]
async fn forwarding_headers_and_hop_by_hop() {
    let (p, _b) = one_backend().await;
    let port = p.http.unwrap().port();
    let request = hyper::Request::get("/echo-headers?x=1")
        .header("host", format!("app.example.com:{port}"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .header("x-kept", "yes")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = raw_http1(p.http.unwrap(), request).await;
    assert_eq!(response.status(), 200);
    let body = std::str::from_utf8(response.body()).unwrap().to_string();
    assert!(body.starts_with("echo GET /echo-headers?x=1\n"), "{body}");
    // The client is no trusted proxy (trusted_proxies is empty): its X-Forwarded-For is replaced.
    assert_eq!(echoed_header(&body, "x-forwarded-for"), ["127.0.0.1"], "{body}");
    assert_eq!(echoed_header(&body, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed_header(&body, "x-forwarded-host"), [format!("app.example.com:{port}")]);
    assert_eq!(echoed_header(&body, "x-real-ip"), ["127.0.0.1"]);
    assert_eq!(echoed_header(&body, "via"), ["1.1 porter"]);
    assert_eq!(echoed_header(&body, "host"), [format!("app.example.com:{port}")], "Host passes through unchanged");
    assert_eq!(echoed_header(&body, "x-kept"), ["yes"]);
    for gone in ["x-drop-me", "keep-alive", "proxy-connection", "te", "trailer"] {
        assert!(echoed_header(&body, gone).is_empty(), "{gone} was forwarded: {body}");
    }
    // porter talks keep-alive to the server itself; the client's Connection header is not passed on.
    assert!(echoed_header(&body, "connection").iter().all(|v| !v.contains("x-drop-me")));
    p.stop().await;
}

#[tokio::test]
async fn https_sets_forwarded_proto_https() {
    let (p, _b) = one_backend().await;
    let c = client_for(p.https.unwrap(), &["localhost"]);
    let body = c.get(p.https_url("/echo-headers")).send().await.unwrap().text().await.unwrap();
    assert_eq!(echoed_header(&body, "x-forwarded-proto"), ["https"], "{body}");
    p.stop().await;
}

#[tokio::test]
async fn fifty_megabytes_stream_up_and_down() {
    let (p, _b) = one_backend().await;
    let c = plain_client();
    const SIZE: usize = 50 * 1024 * 1024;

    // Up: a streamed request body, echoed back and counted as it arrives.
    let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
    let chunks = SIZE / chunk.len();
    let stream = futures_util::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let response = c.post(p.http_url("/echo")).body(reqwest::Body::wrap_stream(stream)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0usize;
    let mut response = response;
    while let Some(piece) = response.chunk().await.unwrap() {
        assert!(piece.iter().all(|&b| b == b'u'));
        received += piece.len();
    }
    assert_eq!(received, SIZE);

    // Down: a streamed response body.
    let mut response = c.get(p.http_url(&format!("/bytes/{SIZE}"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0usize;
    while let Some(piece) = response.chunk().await.unwrap() {
        received += piece.len();
    }
    assert_eq!(received, SIZE);
    p.stop().await;
}
