//! docs/configuration.md, PROXY protocol; Forwarding: `listen.proxy_protocol`,
//! `listen.trusted_proxies`, forwarding headers: PROXY v1 and v2 headers written by hand over raw
//! sockets make their source the client; a connection without one is closed; a slow one is closed
//! after `header_read_timeout`; forged forwarding headers are replaced unless the client is a
//! trusted proxy.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

fn yaml(backend: &Backend, listen_extra: &str) -> String {
    format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n{listen_extra}tls:\n  certs: certs\n\
         http:\n  redirect: false\nlimits:\n  header_read_timeout: 400ms\nupstreams:\n{}routes:\n  - upstream: web\n",
        upstream_block("web", &[(backend, 1)])
    )
}

/// A v2 PROXY header (command PROXY, TCP over IPv4) from `src` to `dst`, byte by byte.
fn v2_header(src: [u8; 4], src_port: u16, dst: [u8; 4], dst_port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, command PROXY
    h.push(0x11); // AF_INET, STREAM
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&src_port.to_be_bytes());
    h.extend_from_slice(&dst_port.to_be_bytes());
    h
}

/// Sends one `Connection: close` request for /echo-headers and reads the answer to EOF.
async fn echo_over<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, extra_headers: &str) -> String {
    let request =
        format!("GET /echo-headers HTTP/1.1\r\nHost: example.com\r\n{extra_headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads until the peer closes; returns the bytes and how long it took.
async fn until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
        .await
        .expect("porter did not close the connection");
    (got, start.elapsed())
}

#[tokio::test]
async fn proxy_v1_and_v2_source_becomes_the_client() {
    let b = Backend::start("pp").await;
    let p = TestPorter::start(&yaml(&b, "  proxy_protocol: true\n")).await;

    let mut v1 = TcpStream::connect(p.http.unwrap()).await.unwrap();
    v1.write_all(b"PROXY TCP4 198.51.100.23 10.0.0.1 40000 80\r\n").await.unwrap();
    let body = echo_over(&mut v1, "").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert_eq!(echoed_header(&body, "x-real-ip"), ["198.51.100.23"], "{body}");
    assert_eq!(echoed_header(&body, "x-forwarded-for"), ["198.51.100.23"], "{body}");

    // v2 header and request in one write, as a balancer's first segment often is.
    let mut v2 = TcpStream::connect(p.http.unwrap()).await.unwrap();
    let mut first = v2_header([203, 0, 113, 77], 51000, [10, 0, 0, 1], 80);
    first.extend_from_slice(b"GET /echo-headers HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
    v2.write_all(&first).await.unwrap();
    let mut answer = Vec::new();
    v2.read_to_end(&mut answer).await.unwrap();
    let body = String::from_utf8_lossy(&answer);
    assert_eq!(echoed_header(&body, "x-real-ip"), ["203.0.113.77"], "{body}");
    assert_eq!(echoed_header(&body, "x-forwarded-for"), ["203.0.113.77"], "{body}");

    // On the TLS listener the header comes before the handshake.
    let mut tcp = TcpStream::connect(p.https.unwrap()).await.unwrap();
    tcp.write_all(&v2_header([192, 0, 2, 200], 1234, [10, 0, 0, 1], 443)).await.unwrap();
    let config = crate::tls_client::tls_config(&crate::tls_client::TLS12_AND_13, &[b"http/1.1"]);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let body = echo_over(&mut tls, "").await;
    assert_eq!(echoed_header(&body, "x-real-ip"), ["192.0.2.200"], "{body}");
    assert_eq!(echoed_header(&body, "x-forwarded-proto"), ["https"], "{body}");
    p.stop().await;
}

#[tokio::test]
async fn proxy_protocol_without_a_header_or_too_slow_is_closed() {
    let b = Backend::start("pp").await;
    let p = TestPorter::start(&yaml(&b, "  proxy_protocol: true\n")).await;

    // A plain request where the header should be: closed without an answer.
    let mut plain = TcpStream::connect(p.http.unwrap()).await.unwrap();
    plain.write_all(b"GET /echo-headers HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
    let (got, _) = until_closed(&mut plain).await;
    assert!(got.is_empty(), "answered without a PROXY header: {:?}", String::from_utf8_lossy(&got));

    // Half a header, then nothing: closed once header_read_timeout (400ms) has passed.
    let mut slow = TcpStream::connect(p.https.unwrap()).await.unwrap();
    slow.write_all(b"PROXY TCP4 198.51.100.").await.unwrap();
    let (got, took) = until_closed(&mut slow).await;
    assert!(got.is_empty());
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(3), "closed after {took:?}");
    assert_eq!(b.requests(), 0);
    p.stop().await;
}

#[tokio::test]
async fn forged_forwarding_headers_are_replaced_unless_trusted() {
    let b = Backend::start("fwd").await;
    let forged =
        "X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Request-Id: forged-1\r\n";

    let untrusted = TestPorter::start(&yaml(&b, "  trusted_proxies: [\"10.0.0.0/8\"]\n")).await;
    let mut stream = TcpStream::connect(untrusted.http.unwrap()).await.unwrap();
    let body = echo_over(&mut stream, forged).await;
    assert_eq!(echoed_header(&body, "x-forwarded-for"), ["127.0.0.1"], "{body}");
    assert_eq!(echoed_header(&body, "x-real-ip"), ["127.0.0.1"], "{body}");
    assert_eq!(echoed_header(&body, "x-forwarded-proto"), ["http"], "{body}");
    let id = echoed_header(&body, "x-request-id");
    assert!(id.len() == 1 && id[0] != "forged-1" && id[0].len() >= 16, "a new request id: {body}");
    untrusted.stop().await;

    let trusted = TestPorter::start(&yaml(&b, "  trusted_proxies: [\"10.0.0.0/8\", \"127.0.0.0/8\"]\n")).await;
    let mut stream = TcpStream::connect(trusted.http.unwrap()).await.unwrap();
    let body = echo_over(&mut stream, forged).await;
    assert_eq!(echoed_header(&body, "x-forwarded-for"), ["6.6.6.6, 127.0.0.1"], "{body}");
    assert_eq!(echoed_header(&body, "x-real-ip"), ["6.6.6.6"], "{body}");
    assert_eq!(echoed_header(&body, "x-forwarded-proto"), ["https"], "{body}");
    assert_eq!(echoed_header(&body, "x-request-id"), ["forged-1"], "{body}");
    trusted.stop().await;
}

#[tokio::test]
async fn trust_is_decided_on_the_proxy_protocol_source() {
    // The L4 balancer (127.0.0.1 here) is not what is trusted: the hop its header names is.
    let b = Backend::start("fwd").await;
    let p = TestPorter::start(&yaml(&b, "  proxy_protocol: true\n  trusted_proxies: [\"192.0.2.0/24\"]\n")).await;
    let via_trusted = async {
        let mut s = TcpStream::connect(p.http.unwrap()).await.unwrap();
        s.write_all(&v2_header([192, 0, 2, 9], 1000, [10, 0, 0, 1], 80)).await.unwrap();
        echo_over(&mut s, "X-Forwarded-For: 198.51.100.1\r\n").await
    };
    let body = via_trusted.await;
    assert_eq!(echoed_header(&body, "x-forwarded-for"), ["198.51.100.1, 192.0.2.9"], "{body}");
    let mut s = TcpStream::connect(p.http.unwrap()).await.unwrap();
    s.write_all(&v2_header([203, 0, 113, 5], 1000, [10, 0, 0, 1], 80)).await.unwrap();
    let body = echo_over(&mut s, "X-Forwarded-For: 198.51.100.1\r\n").await;
    assert_eq!(echoed_header(&body, "x-forwarded-for"), ["203.0.113.5"], "{body}");

    // raw_http1 (no PROXY header) is refused outright on this listener.
    let stream = TcpStream::connect(p.http.unwrap()).await.unwrap();
    let handshake = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(stream)).await;
    if let Ok((mut sender, conn)) = handshake {
        tokio::spawn(conn);
        let request = hyper::Request::get("/").header("host", "x").body(Full::new(Bytes::new())).unwrap();
        assert!(sender.send_request(request).await.is_err(), "a request without a PROXY header was answered");
    }
    p.stop().await;
}
