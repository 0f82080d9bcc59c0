//! docs/security.md, Requests porter refuses: the smaller hostile-input findings, pinned with raw
//! bytes over real sockets to a real porter (nginx's answer in brackets where the rule follows it):
//! CONNECT is 405 [400], never forwarded; request-target forms a method may not use are 400;
//! `Transfer-Encoding` codings other than a lone `chunked` are 501; `Expect: 100-continue` is
//! answered only once the request passed every check, and never for HTTP/1.0; header names with `_`
//! are dropped unless `limits.underscores_in_headers` [nginx drops them too]; an HTTP/1.0 response
//! with `Transfer-Encoding` closes its upstream connection; request ids are random throughout.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;
use crate::raw_http::{status_line, to_close};
use crate::tls_client::{tls_config, tls_connect, TLS12_AND_13};

/// porter on plaintext (routes served, no redirect) and TLS, one catch-all
/// route to `b`, with `limits` (indented YAML lines) and `routes` given.
async fn porter_with(b: &Backend, limits: &str, routes: &str) -> TestPorter {
    let yaml = format!(
        "{}http:\n  redirect: false\nlimits:\n  max_header_bytes: 16KiB\n{limits}upstreams:\n{}routes:\n{routes}",
        listen_block(),
        upstream_block("web", &[(b, 1)])
    );
    TestPorter::start(&yaml).await
}

async fn porter(b: &Backend) -> TestPorter {
    porter_with(b, "", "  - upstream: web\n").await
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = &answer[..answer.find("\r\n\r\n").unwrap_or(answer.len())];
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn connect_is_405_with_allow_and_never_reaches_the_backend() {
    let b = Backend::start("a").await;
    let p = porter(&b).await;
    for bytes in [
        &b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"[..],
        b"CONNECT a:443 HTTP/1.1\r\n\r\n",
        b"CONNECT a.test:80 HTTP/1.0\r\n\r\n",
    ] {
        let answer = to_close(p.http.unwrap(), bytes).await;
        assert!(status_line(&answer).starts_with("HTTP/1.1 405"), "{answer:?}");
        let allow = header(&answer, "allow").unwrap_or_else(|| panic!("405 without Allow: {answer:?}"));
        assert!(allow.contains("GET") && !allow.contains("CONNECT"), "{allow}");
        assert_eq!(header(&answer, "content-type"), Some("text/plain; charset=utf-8"), "{answer:?}");
        assert!(answer.contains("CONNECT"), "the body says why: {answer:?}");
    }
    // The same on the TLS listener.
    let mut tls = tls_connect(p.https.unwrap(), "localhost", tls_config(&TLS12_AND_13, &[b"http/1.1"])).await.unwrap();
    tls.write_all(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut got)).await.unwrap();
    assert!(got.starts_with(b"HTTP/1.1 405"), "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(b.requests(), 0, "a CONNECT reached the backend");
    p.stop().await;
}

#[tokio::test]
async fn connect_over_http2_is_405() {
    let b = Backend::start("a").await;
    let p = porter(&b).await;
    let addr = p.https.unwrap();
    let tls = tls_connect(addr, "localhost", tls_config(&TLS12_AND_13, &[b"h2"])).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::connect(format!("localhost:{}", addr.port())).body(Empty::<Bytes>::new()).unwrap();
    let response = h2.send_request(request).await.unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.headers().contains_key("allow"));
    assert_eq!(b.requests(), 0);
    p.stop().await;
}

#[tokio::test]
async fn request_targets_a_method_may_not_use_are_400() {
    let b = Backend::start("a").await;
    let p = porter(&b).await;
    let addr = p.http.unwrap();
    let refused: &[(&str, &[u8])] = &[
        ("authority-form on GET", b"GET a.test:80 HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        ("authority-form on POST", b"POST a.test:80 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n"),
        ("asterisk-form on GET", b"GET * HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        ("asterisk-form on POST", b"POST * HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n"),
        ("absolute-form and no Host", b"GET http://a.test/ HTTP/1.1\r\n\r\n"),
        ("absolute-form and no Host, HTTP/1.0", b"GET http://a.test/x HTTP/1.0\r\n\r\n"),
    ];
    for (what, bytes) in refused {
        let answer = to_close(addr, bytes).await;
        assert!(status_line(&answer).starts_with("HTTP/1.1 400"), "{what}: {answer:?}");
        assert_eq!(header(&answer, "connection"), Some("close"), "{what}: {answer:?}");
        assert_eq!(b.requests(), 0, "{what}: reached the backend");
    }
    // The forms that are allowed still pass.
    let answer = to_close(addr, b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n").await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "OPTIONS *: {answer:?}");
    let answer = to_close(addr, b"GET http://a.test/abs HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n").await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.contains("a GET /abs\n"), "forwarded in origin-form: {answer:?}");
    assert_eq!(b.requests(), 2);
    p.stop().await;
}

#[tokio::test]
async fn transfer_codings_other_than_a_lone_chunked_are_501_and_closed() {
    let b = Backend::start("a").await;
    let p = porter(&b).await;
    let addr = p.http.unwrap();
    let cases: &[(&str, &[u8])] = &[
        (
            "gzip, chunked",
            b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "gzip then chunked on two lines",
            b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "deflate, chunked",
            b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: deflate,chunked\r\n\r\n0\r\n\r\n",
        ),
    ];
    for (what, bytes) in cases {
        let answer = to_close(addr, bytes).await;
        assert!(status_line(&answer).starts_with("HTTP/1.1 501"), "{what}: {answer:?}");
        assert_eq!(header(&answer, "connection"), Some("close"), "{what}: {answer:?}");
    }
    // A coding that does not end in chunked leaves no way to find the body's end: 400.
    let answer = to_close(addr, b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\n").await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(b.requests(), 0, "a body with codings porter cannot undo reached the backend");
    let answer = to_close(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 200") && answer.contains("hello"), "{answer:?}");
    p.stop().await;
}

#[tokio::test]
async fn continue_comes_only_after_every_check_and_never_to_http10() {
    let b = Backend::start("a").await;
    let routes = "  - host: a.test\n    upstream: web\n";
    let p = porter_with(&b, "  max_body_bytes: 100\n", routes).await;
    let addr = p.http.unwrap();

    // Refused before the body is wanted: the refusal is the only answer.
    let refused: &[(&str, &[u8], &str)] = &[
        (
            "an invalid Host",
            b"POST /echo HTTP/1.1\r\nHost: a@b\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            "400",
        ),
        (
            "two Hosts",
            b"POST /echo HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            "400",
        ),
        (
            "no route",
            b"POST /echo HTTP/1.1\r\nHost: other.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            "404",
        ),
        (
            "a body over the limit",
            b"POST /echo HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n",
            "413",
        ),
        (
            "a bad target",
            b"POST * HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            "400",
        ),
    ];
    for (what, bytes, status) in refused {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        // The client waits for the 100 (or the refusal) before it sends the body.
        let answer = read_until_blank_line(&mut stream).await;
        assert!(!answer.contains(" 100 "), "{what}: a 100 before the refusal: {answer:?}");
        assert!(status_line(&answer).starts_with(&format!("HTTP/1.1 {status}")), "{what}: {answer:?}");
    }
    assert_eq!(b.requests(), 0);

    // HTTP/1.0: Expect is ignored (RFC 9110 §10.1.1), so no interim answer at all.
    let answer = to_close(
        addr,
        b"POST /echo HTTP/1.0\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert!(!answer.contains("100 Continue"), "{answer:?}");
    assert!(status_line(&answer).ends_with("200 OK") && answer.ends_with("hello"), "{answer:?}");

    // A request that passes every check gets its 100, then its answer.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    let interim = read_until_blank_line(&mut stream).await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.unwrap();
    let head = read_until_blank_line(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    assert_eq!(b.requests(), 2);
    p.stop().await;
}

/// Reads one head, byte by byte, through its blank line (or to the close).
async fn read_until_blank_line(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            Ok(_) => break,
            Err(_) => panic!("no answer within 5 s, got {:?}", String::from_utf8_lossy(&head)),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

const UNDERSCORED: &[u8] = b"GET /echo-headers HTTP/1.1\r\nHost: a.test\r\nX_Forwarded_For: 6.6.6.6\r\n\
    X_Real_IP: 6.6.6.6\r\nX-Kept: a_b\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn underscored_header_names_are_dropped_by_default() {
    let b = Backend::start("a").await;
    let p = porter(&b).await;
    let answer = to_close(p.http.unwrap(), UNDERSCORED).await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(!answer.contains("x_forwarded_for") && !answer.contains("x_real_ip"), "{answer:?}");
    assert!(!answer.contains("6.6.6.6"), "{answer:?}");
    assert!(answer.contains("\nx-kept: a_b\n"), "underscores in values stay: {answer:?}");
    assert!(answer.contains("\nx-real-ip: 127.0.0.1\n"), "{answer:?}");

    // HTTP/2 (hyper's server): dropped the same way.
    let addr = p.https.unwrap();
    let tls = tls_connect(addr, "localhost", tls_config(&TLS12_AND_13, &[b"h2"])).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get(format!("https://localhost:{}/echo-headers", addr.port()))
        .header("x_real_ip", "6.6.6.6")
        .header("x-kept", "1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = h2.send_request(request).await.unwrap();
    let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(!body.contains("x_real_ip") && !body.contains("6.6.6.6"), "{body}");
    assert!(body.contains("\nx-kept: 1\n"), "{body}");
    p.stop().await;
}

#[tokio::test]
async fn underscored_header_names_pass_when_the_setting_keeps_them() {
    let b = Backend::start("a").await;
    let p = porter_with(&b, "  underscores_in_headers: true\n", "  - upstream: web\n").await;
    let answer = to_close(p.http.unwrap(), UNDERSCORED).await;
    assert!(answer.contains("\nx_forwarded_for: 6.6.6.6\n"), "{answer:?}");
    assert!(answer.contains("\nx_real_ip: 6.6.6.6\n"), "{answer:?}");
    p.stop().await;
}

#[tokio::test]
async fn request_ids_are_random_and_unique() {
    let b = Backend::start("a").await;
    let p = porter(&b).await;
    let addr = p.http.unwrap();
    // One keep-alive connection: its requests run on one worker thread, where a
    // counter would show.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..200 {
        stream.write_all(b"GET /echo-headers HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
        let head = read_until_blank_line(&mut stream).await;
        let length: usize = header(&head, "content-length").expect("a sized body").parse().unwrap();
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.unwrap();
        let body = String::from_utf8(body).unwrap();
        let id = body.lines().find_map(|l| l.strip_prefix("x-request-id: ")).expect("an id").to_owned();
        ids.push(id);
    }
    for id in &ids {
        assert!(id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert!(!id.ends_with("00000000"), "{id}");
    }
    let whole: HashSet<_> = ids.iter().collect();
    let highs: HashSet<_> = ids.iter().map(|id| &id[..16]).collect();
    let lows: HashSet<_> = ids.iter().map(|id| &id[16..]).collect();
    assert_eq!((whole.len(), highs.len(), lows.len()), (ids.len(), ids.len(), ids.len()), "{ids:?}");
    // No half steps by a small constant from one id to the next (a counter).
    let half = |id: &str, r: std::ops::Range<usize>| u64::from_str_radix(&id[r], 16).unwrap();
    for r in [0..16, 16..32] {
        let small_steps =
            ids.windows(2).filter(|w| half(&w[1], r.clone()).wrapping_sub(half(&w[0], r.clone())) < 1 << 20).count();
        assert_eq!(small_steps, 0, "a counter in {r:?}: {ids:?}");
    }
    p.stop().await;
}

/// A backend that answers every request with an HTTP/1.0 head and a chunked
/// body, asks to keep the connection, and keeps it open; counts connections.
async fn http10_chunked_backend() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicU64::new(0));
    let counted = accepts.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n\
                                       5\r\nhello\r\n0\r\n\r\n";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepts)
}

#[tokio::test]
async fn an_http10_response_with_transfer_encoding_closes_its_upstream_connection() {
    let (backend, accepts) = http10_chunked_backend().await;
    let yaml = format!(
        "{}http:\n  redirect: false\nupstreams:\n  web:\n    servers:\n      - url: \"http://{backend}\"\nroutes:\n  - upstream: web\n",
        listen_block()
    );
    let p = TestPorter::start(&yaml).await;
    let client = plain_client();
    for _ in 0..3 {
        let response = client.get(p.http_url("/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "hello");
    }
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        3,
        "an upstream connection was reused after HTTP/1.0 + Transfer-Encoding"
    );
    p.stop().await;
}
