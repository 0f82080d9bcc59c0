//! docs/security.md, Request framing and Host: hostile request heads: each case is sent as raw
//! bytes over a real socket to a real porter, and checked twice: the status the client gets, and
//! that the backend received nothing (its request count). Ambiguous framing, more than one host, a
//! malformed head or chunked body: 400 and close. Slow headers: 408, then close. The HTTP/2
//! `:authority` case uses a hyper HTTP/2 client, which sends a Host header beside `:authority`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::raw_http::{status_line, to_close};
use crate::tls_client::{tls_config, tls_connect, TLS12_AND_13};

async fn porter(b: &Backend, limits: &str) -> TestPorter {
    let yaml = format!(
        "{}http:\n  redirect: false\nlimits:\n{limits}upstreams:\n{}routes:\n  - upstream: web\n",
        listen_block(),
        upstream_block("web", &[(b, 1)])
    );
    TestPorter::start(&yaml).await
}

const REJECTED: &[(&str, &[u8])] = &[
    (
        "Content-Length then Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "Transfer-Encoding then Content-Length",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    ),
    (
        "the smuggling classic: CL.TE with a request hidden in the body",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
    ),
    (
        "differing duplicate Content-Length",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    ),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"),
    ("two equal Host headers", b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n"),
    ("absolute-form target and another Host", b"GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n"),
    ("absolute-form target and another port", b"GET http://a.test:8080/ HTTP/1.1\r\nHost: a.test\r\n\r\n"),
    ("obs-fold (a header continued on the next line)", b"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\n  2\r\n\r\n"),
    ("a space before the colon", b"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n"),
    ("a control byte in a value", b"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\x01b\r\n\r\n"),
    ("Transfer-Encoding not ending in chunked", b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
    ("a bad chunk size", b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ("a chunk without its CRLF", b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n"),
    ("Transfer-Encoding in HTTP/1.0", b"POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("no Host at all", b"GET / HTTP/1.1\r\n\r\n"),
];

#[tokio::test]
async fn each_hostile_head_is_400_and_closed_and_the_backend_sees_nothing() {
    let b = Backend::start("a").await;
    let p = porter(&b, "  max_header_bytes: 16KiB\n").await;
    let addr = p.http.unwrap();
    for (what, bytes) in REJECTED {
        let answer = to_close(addr, bytes).await;
        assert!(status_line(&answer).starts_with("HTTP/1.1 400"), "{what}: {answer:?}");
        assert_eq!(b.requests(), 0, "{what}: reached the backend");
    }
    // The same on the TLS listener (one case each of framing and host).
    let https = p.https.unwrap();
    for (what, bytes) in [REJECTED[0], REJECTED[4]] {
        let mut tls = tls_connect(https, "localhost", tls_config(&TLS12_AND_13, &[b"http/1.1"])).await.unwrap();
        tls.write_all(bytes).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut got)).await.expect(what);
        assert!(got.starts_with(b"HTTP/1.1 400"), "{what}: {:?}", String::from_utf8_lossy(&got));
    }
    assert_eq!(b.requests(), 0);

    // Controls: the honest forms of the same requests pass.
    let ok: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        b"GET http://A.test:80/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    ];
    for bytes in ok {
        let answer = to_close(addr, bytes).await;
        assert!(status_line(&answer).starts_with("HTTP/1.1 200"), "{answer:?}");
    }
    assert_eq!(b.requests(), 3);
    p.stop().await;
}

#[tokio::test]
async fn a_smuggled_request_behind_a_good_one_is_refused_on_its_own() {
    let b = Backend::start("a").await;
    let p = porter(&b, "  max_header_bytes: 16KiB\n").await;
    // Pipelined: an honest chunked request, then an ambiguous one in the same packet.
    let answer = to_close(
        p.http.unwrap(),
        b"POST /one HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.contains("a POST /one"), "{answer:?}");
    let second = answer.find("HTTP/1.1 400").unwrap_or_else(|| panic!("second answer: {answer:?}"));
    assert!(answer[second..].contains("ambiguous"), "{answer:?}");
    assert_eq!(b.requests(), 1, "only the honest request reached the backend");
    p.stop().await;
}

#[tokio::test]
async fn slow_headers_get_408_then_close_and_idle_keepalive_is_not_cut() {
    let b = Backend::start("a").await;
    let p = porter(&b, "  header_read_timeout: 300ms\n  idle_timeout: 10s\n").await;
    let addr = p.http.unwrap();

    // Half a head, then silence.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: ").await.unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await.unwrap().unwrap();
    let took = start.elapsed();
    let answer = String::from_utf8_lossy(&got);
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer:?}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer:?}");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_millis(2500), "408 after {took:?}");

    // A fresh connection that sends nothing: closed without a word once its time is up.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
    let took = start.elapsed();
    assert!(read.expect("closed in time").is_ok() && got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");

    // A trickle (one byte every 100 ms) does not reset the clock: 408 all the same.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    for byte in b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: 1234567890" {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await {
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.ends_with(b"\n") {
                break;
            }
        }
    }
    let took = start.elapsed();
    assert!(answer.starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&answer));
    assert!(took < Duration::from_millis(2500), "trickled for {took:?}");

    // A keep-alive connection that waits longer than header_read_timeout between
    // requests is governed by idle_timeout, not cut by the head timer.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        stream.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(b.requests(), 2, "the slow heads never reached the backend");
    p.stop().await;
}

#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    let b = Backend::start("a").await;
    let p = porter(&b, "  max_header_bytes: 16KiB\n").await;
    let addr = p.https.unwrap();
    let port = addr.port();
    let tls = tls_connect(addr, "localhost", tls_config(&TLS12_AND_13, &[b"h2"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let mut send = |host: Option<String>| {
        let mut request = hyper::Request::get(format!("https://localhost:{port}/h2"));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        let sent = h2.send_request(request.body(Empty::<Bytes>::new()).unwrap());
        async move {
            let r = sent.await.unwrap();
            let status = r.status().as_u16();
            (status, String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes()).into_owned())
        }
    };
    let (status, body) = send(Some("evil.example".into())).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("more than one host"), "{body}");
    let (status, _) = send(Some(format!("localhost:{port}"))).await;
    assert_eq!(status, 200, "Host equal to :authority");
    let (status, _) = send(None).await;
    assert_eq!(status, 200, ":authority alone");
    assert_eq!(b.requests(), 2, "the mismatch never reached the backend");
    p.stop().await;
}

/// What every HTTP/1.1 client relies on, as raw bytes: pipelined requests are
/// answered in order; HTTP/1.0 closes unless it asks for keep-alive (then an
/// unknown-length body is delimited by the close); `Expect: 100-continue`
/// gets its interim answer; HEAD gets a length and no body; chunked bodies
/// go up and come back chunked; an oversized head is 431.
#[tokio::test]
async fn http1_keep_alive_pipelining_continue_and_head() {
    let b = Backend::start("a").await;
    let p = porter(&b, "  max_header_bytes: 16KiB\n").await;
    let addr = p.http.unwrap();

    let answer = to_close(
        addr,
        b"GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: a.test\r\n\r\n\
          GET /3 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (one, two, three) = (answer.find("a GET /1"), answer.find("a GET /2"), answer.find("a GET /3"));
    assert!(one < two && two < three && one.is_some(), "in order: {answer:?}");
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 3, "{answer:?}");

    let answer = to_close(addr, b"GET /old HTTP/1.0\r\nHost: a.test\r\n\r\n").await;
    // porter answers HTTP/1.1 (RFC 9110 §2.5: its highest version).
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.contains("a GET /old"), "{answer:?}");

    // HTTP/1.0 with keep-alive: the connection stays open for a second request.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        stream.write_all(b"GET /ka HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
        assert!(head.to_ascii_lowercase().contains("connection: keep-alive"), "{head:?}");
        let length: usize = header(&head, "content-length").expect("a sized body").parse().unwrap();
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.unwrap();
    }

    // An HTTP/1.0 client and a body of unknown length: delimited by the close.
    let answer = to_close(addr, b"POST /echo HTTP/1.0\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello").await;
    assert!(answer[8..].starts_with(" 200") && answer.ends_with("\r\n\r\nhello"), "{answer:?}");
    assert!(!answer.to_ascii_lowercase().contains("transfer-encoding"), "{answer:?}");

    // Expect: 100-continue: the interim answer comes before the body is sent.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let interim = read_head(&mut stream).await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim:?}");
    stream.write_all(b"hello").await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");

    // HEAD: the length, no body; the next request on the connection is read right.
    let answer = to_close(
        addr,
        b"HEAD /h HTTP/1.1\r\nHost: a.test\r\n\r\nGET /after HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer:?}");
    assert!(!answer.contains("a HEAD /h"), "no body for HEAD: {answer:?}");
    assert!(answer.contains("a GET /after"), "{answer:?}");

    // Chunked up, chunked back, with the body intact.
    let answer = to_close(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{answer:?}");
    assert!(answer.contains("abcdefg") || answer.contains("abc\r\n4\r\ndefg"), "{answer:?}");

    // A head over max_header_bytes: 431, closed.
    let mut big = b"GET / HTTP/1.1\r\nHost: a.test\r\n".to_vec();
    big.extend_from_slice(format!("X-Big: {}\r\n\r\n", "x".repeat(20 * 1024)).as_bytes());
    let answer = to_close(addr, &big).await;
    assert!(status_line(&answer).starts_with("HTTP/1.1 431"), "{answer:?}");
    let before = b.requests();
    assert_eq!(before, 2 + 3 + 1 + 1 + 1 + 2 + 1, "every honest request reached the backend once");
    p.stop().await;
}

/// Reads one response head (through the blank line) from `stream`.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await.unwrap().unwrap();
        assert!(n == 1, "closed inside a head: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}
