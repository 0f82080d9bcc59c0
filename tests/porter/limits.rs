//! docs/configuration.md, Configuration reference, `limits`: idle keep-alive connections are closed
//! after `idle_timeout`, busy ones are not.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// porter in front of `b` with `limits` (YAML lines under `limits:`).
async fn porter_with_limits(b: &Backend, limits: &str) -> TestPorter {
    let yaml = format!(
        "{}http:\n  redirect: false\nlimits:\n{limits}upstreams:\n{}routes:\n  - upstream: web\n",
        listen_block(),
        upstream_block("web", &[(b, 1)])
    );
    TestPorter::start(&yaml).await
}

async fn idle_porter(b: &Backend) -> TestPorter {
    porter_with_limits(b, "  idle_timeout: 400ms\n").await
}

async fn one_request(stream: &mut tokio::net::TcpStream) {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The backend's answer ends with its request echo; the head says keep-alive.
    while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed while answering");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn an_idle_http1_connection_is_closed_a_busy_one_is_not() {
    let b = Backend::start("a").await;
    let p = idle_porter(&b).await;

    // Busy: a request every 150 ms for 1.2 s (three idle timeouts) on one connection.
    let mut busy = tokio::net::TcpStream::connect(p.http.unwrap()).await.unwrap();
    for _ in 0..8 {
        one_request(&mut busy).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // Idle: after one request, porter closes the connection once 400 ms pass without traffic.
    let mut idle = tokio::net::TcpStream::connect(p.http.unwrap()).await.unwrap();
    one_request(&mut idle).await;
    let quiet_since = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await.expect("never closed").unwrap();
    let waited = quiet_since.elapsed();
    assert_eq!(n, 0, "expected the connection to be closed");
    assert!(waited >= Duration::from_millis(350) && waited < Duration::from_millis(2000), "{waited:?}");
    p.stop().await;
}

#[tokio::test]
async fn an_idle_http2_connection_gets_goaway() {
    let b = Backend::start("a").await;
    let p = idle_porter(&b).await;
    let config = crate::tls_client::tls_config(&crate::tls_client::TLS12_AND_13, &[b"h2"]);
    let tls = crate::tls_client::tls_connect(p.https.unwrap(), "localhost", config).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get(p.https_url("/")).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
    let quiet_since = Instant::now();
    // porter ends the idle connection; the client's connection task finishes.
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("idle HTTP/2 connection never closed")
        .unwrap()
        .ok();
    let waited = quiet_since.elapsed();
    assert!(waited >= Duration::from_millis(350) && waited < Duration::from_millis(2000), "{waited:?}");
    p.stop().await;
}

async fn raw_status(addr: std::net::SocketAddr, head: &[u8], body: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    // The server may answer and close before reading all of the body.
    let _ = stream.write_all(body).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap() {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).lines().next().unwrap_or("").to_string()
}

#[tokio::test]
async fn oversized_headers_are_431_and_oversized_bodies_413() {
    // The backend waits before answering, so a body that passes the limit mid-stream
    // is caught before any response exists (afterwards only the stream can be cut).
    let b = Backend::start_with("a", Behaviour { delay: Some(Duration::from_millis(300)), ..Default::default() }).await;
    let p = porter_with_limits(&b, "  max_header_bytes: 16KiB\n  max_body_bytes: 1KiB\n").await;
    let addr = p.http.unwrap();

    let big_header = format!("GET / HTTP/1.1\r\nHost: example.com\r\nX-Big: {}\r\n\r\n", "x".repeat(40 * 1024));
    assert!(raw_status(addr, big_header.as_bytes(), b"").await.starts_with("HTTP/1.1 431"));

    let declared = b"POST /echo HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5000\r\n\r\n";
    assert!(raw_status(addr, declared, &[b'x'; 5000]).await.starts_with("HTTP/1.1 413"));

    // Chunked: no length up front, the limit is enforced as the body streams.
    let mut chunked = Vec::new();
    for _ in 0..4 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'y'; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = b"POST /echo HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n";
    let status = raw_status(addr, head, &chunked).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // Within the limits all is well.
    let small = b"POST /echo HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\n";
    assert!(raw_status(addr, small, b"hello").await.starts_with("HTTP/1.1 200"));
    p.stop().await;
}

/// One timer serves every wait on a connection (the first head's deadline, then
/// each wait between requests) and is moved on rather than made anew. A first
/// deadline that passes while porter is busy answering must not close the
/// connection afterwards, nor make it skip its idle timeout.
#[tokio::test]
async fn a_first_head_deadline_passing_during_a_slow_answer_leaves_keep_alive_alone() {
    let b = Backend::start_with("a", Behaviour { delay: Some(Duration::from_millis(600)), ..Default::default() }).await;
    let p = porter_with_limits(&b, "  header_read_timeout: 300ms\n  idle_timeout: 800ms\n").await;
    let mut conn = tokio::net::TcpStream::connect(p.http.unwrap()).await.unwrap();
    // The first answer takes 600 ms: the 300 ms first-head deadline passes meanwhile.
    one_request(&mut conn).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    one_request(&mut conn).await;
    // Then the idle timeout, counted from the last answer.
    let quiet_since = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await.expect("never closed").unwrap();
    let waited = quiet_since.elapsed();
    assert_eq!(n, 0, "expected the connection to be closed");
    assert!(waited >= Duration::from_millis(600) && waited < Duration::from_millis(2500), "{waited:?}");
    p.stop().await;
}
