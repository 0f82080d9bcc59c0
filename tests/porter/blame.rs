//! docs/security.md, Who is blamed: one bad client never takes a server out. A client's broken
//! upload (cut off, malformed, stalled) is the client's failure: it gets 400/408 or a close, is
//! logged as such (499 when it went away), and the server it was going to stays in rotation with no
//! failure counted against it; another client's requests meanwhile all succeed. A server that
//! stalls is the server's failure, bounded by `timeouts.send` / `timeouts.read`, and a client that
//! stops reading is cut off after `limits.body_timeout`.
//!
//! The server's failures (a server that stops reading, stalls, or answers an unasked 101)
//! and a client that stops reading are in `blame_server.rs`.
//!
//! Every porter here runs one server with `max_failures: 1` and a long
//! cooldown, so a single failure wrongly counted against it would turn the
//! next request into a 503.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::admin::parse_prometheus;
use crate::harness::*;
use crate::tls_client::{tls_config, tls_connect, TLS12_AND_13};

pub(crate) async fn porter_for(server: &str, limits: &str, timeouts: &str) -> TestPorter {
    let default_answer = if timeouts.contains("response_header") { "" } else { "      response_header: 30s\n" };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    write_cert(&dir.path().join("certs"), "localhost", &["localhost"]);
    let yaml = format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\ntls:\n  certs: certs\n\
         http:\n  redirect: false\nlimits:\n  header_read_timeout: 10s\n{limits}upstreams:\n  web:\n    servers:\n\
         \x20     - url: \"{server}\"\n    passive:\n      max_failures: 1\n      cooldown: 60s\n    timeouts:\n\
         {default_answer}{timeouts}routes:\n  - upstream: web\n"
    );
    TestPorter::start_in(dir, &yaml).await
}

pub(crate) async fn metrics(p: &TestPorter) -> Vec<crate::admin::Sample> {
    parse_prometheus(&plain_client().get(p.admin_url("/metrics")).send().await.unwrap().text().await.unwrap())
}

pub(crate) async fn status(p: &TestPorter) -> serde_json::Value {
    let text = plain_client().get(p.admin_url("/status")).send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Requests answered with `class` ("5xx"...), over every route.
pub(crate) fn answered(samples: &[crate::admin::Sample], class: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == "porter_requests_total" && s.labels.get("status_class").is_some_and(|c| c == class))
        .map(|s| s.value)
        .sum()
}

/// The one server's failures as porter counts them, and its state in /status.
pub(crate) async fn server_state(p: &TestPorter) -> (u64, String) {
    let status = status(p).await;
    let server = &status["upstreams"][0]["servers"][0];
    (server["failures_total"].as_u64().unwrap(), server["state"].as_str().unwrap().to_string())
}

pub(crate) async fn assert_server_untouched(p: &TestPorter) {
    let (failures, state) = server_state(p).await;
    assert_eq!((failures, state.as_str()), (0, "up"), "the server was blamed for a client's failure");
    let samples = metrics(p).await;
    let failures = samples.iter().filter(|s| s.name == "porter_upstream_server_failures_total").map(|s| s.value);
    assert_eq!(failures.sum::<f64>(), 0.0);
    let r = plain_client().get(format!("http://{}/after", p.http.unwrap())).send().await.unwrap();
    assert_eq!(r.status(), 200, "the server left rotation");
}

/// An upload endpoint as most are: it reads the whole body, then answers.
async fn collecting_backend() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: hyper::Request<hyper::body::Incoming>| async move {
                    let body = request.into_body().collect().await?.to_bytes();
                    let answer = http_body_util::Full::new(Bytes::from(format!("got {}", body.len())));
                    Ok::<_, hyper::Error>(hyper::Response::new(answer))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    format!("http://{addr}")
}

/// Sends `bytes` on a new connection, then closes it (the client gives up).
async fn send_and_close(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    // Long enough for porter to have forwarded the start of the body.
    tokio::time::sleep(Duration::from_millis(150)).await;
    drop(stream);
}

/// Sends `first`, waits, sends `then`, and returns what porter answered (up to its close).
async fn send_in_two(addr: SocketAddr, first: &[u8], then: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(then).await.unwrap();
    read_answer(&mut stream, Duration::from_secs(10)).await
}

pub(crate) async fn read_answer(stream: &mut TcpStream, within: Duration) -> String {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

const CHUNKED_CUT: &[u8] = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";

pub(crate) fn sized_head(length: usize) -> Vec<u8> {
    format!("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: {length}\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn cancelled_uploads_never_take_the_server_out() {
    cancelled_uploads_leave(&collecting_backend().await, "").await;
    // A server that answers before it has read the body (its answer is then cut
    // short by the client's failure, which is still not the server's).
    let b = Backend::start("early").await;
    cancelled_uploads_leave(&b.url(), "").await;
}

/// The same over an HTTP/2 upstream (`http2: true`): the client's failure resets
/// the stream, and that is still not the server's failure.
#[tokio::test]
async fn cancelled_uploads_never_take_an_http2_server_out() {
    let b = Backend::start_wire("h2", Wire::H2c).await;
    cancelled_uploads_leave(&b.url(), "      response_header: 30s\n    http2: true\n").await;
}

async fn cancelled_uploads_leave(server: &str, upstream: &str) {
    let p = porter_for(server, "", upstream).await;
    let addr = p.http.unwrap();
    // Chunked (hyper's client path), and sized bodies on both paths: over 64 KiB
    // (hyper's) and under (porter's own), each cut off after part of the body.
    let mut large = sized_head(100_000);
    large.extend_from_slice(&[b'x'; 1000]);
    let mut small = sized_head(10_000);
    small.extend_from_slice(&[b'x'; 100]);
    for bytes in [CHUNKED_CUT, &large[..], &small[..]] {
        for _ in 0..3 {
            send_and_close(addr, bytes).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_server_untouched(&p).await;
    // Abandoned requests are counted apart from 5xx.
    let samples = metrics(&p).await;
    let fives = answered(&samples, "5xx");
    assert_eq!(fives, 0.0, "cancelled uploads counted as 5xx");
    p.stop().await;
}

#[tokio::test]
async fn a_malformed_chunk_mid_body_is_400_and_the_clients_fault() {
    let p = porter_for(&collecting_backend().await, "", "").await;
    let addr = p.http.unwrap();
    for _ in 0..2 {
        let head = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
        let answer = send_in_two(addr, head, b"zz\r\nmore\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.contains("malformed request body"), "{answer}");
    }
    assert_server_untouched(&p).await;
    p.stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_408_after_body_timeout_and_the_clients_fault() {
    // response_header (30 s) is far away: the body's own timeout must end it.
    let p = porter_for(&collecting_backend().await, "  body_timeout: 500ms\n", "").await;
    let addr = p.http.unwrap();
    let mut large = sized_head(100_000);
    large.extend_from_slice(&[b'x'; 1000]);
    let mut small = sized_head(1000);
    small.extend_from_slice(&[b'x'; 10]);
    for bytes in [CHUNKED_CUT, &large[..], &small[..]] {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let answer = read_answer(&mut stream, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(5), "{took:?}");
    }
    assert_server_untouched(&p).await;
    p.stop().await;
}

/// The response-header timer starts once the body is sent: a slow upload whose
/// whole length is longer than `response_header` is still answered.
#[tokio::test]
async fn response_header_counts_only_time_spent_waiting_on_the_server() {
    let p = porter_for(&collecting_backend().await, "", "      response_header: 400ms\n").await;
    let addr = p.http.unwrap();
    let chunked = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let sized = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\n";
    for (head, pieces) in [
        (&chunked[..], vec![&b"1\r\na\r\n"[..], b"1\r\nb\r\n", b"1\r\nc\r\n", b"1\r\nd\r\n", b"0\r\n\r\n"]),
        (&sized[..], vec![&b"a"[..], b"b", b"c", b"d", b"e"]),
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(head).await.unwrap();
        for piece in pieces {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stream.write_all(piece).await.unwrap();
        }
        let answer = read_answer(&mut stream, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    }
    assert_server_untouched(&p).await;
    p.stop().await;
}

/// The measurement of docs/security.md, Who is blamed: a legitimate client
/// at about 40 requests a second while three clients at a time keep cancelling uploads; every one of its
/// requests must succeed.
#[tokio::test]
async fn another_clients_requests_all_succeed_during_cancelled_uploads() {
    let p = porter_for(&collecting_backend().await, "", "").await;
    let addr = p.http.unwrap();
    let attack = tokio::spawn(async move {
        for _ in 0..4 {
            let waves = (0..3).map(|_| tokio::spawn(send_and_close(addr, CHUNKED_CUT)));
            for wave in waves.collect::<Vec<_>>() {
                wave.await.unwrap();
            }
        }
    });
    let c = plain_client();
    let (mut ok, mut total) = (0, 0);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        total += 1;
        if let Ok(r) = c.get(format!("http://{addr}/legit")).send().await {
            ok += u32::from(r.status() == 200);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    attack.await.unwrap();
    assert_eq!(ok, total, "{ok} of {total} legitimate requests succeeded");
    assert!(total >= 20, "{total}");
    assert_server_untouched(&p).await;
    p.stop().await;
}

/// HTTP/2: a client that resets its upload stream is the client's failure (499,
/// not 502, not counted against the server).
#[tokio::test]
async fn an_http2_client_cancelling_its_upload_is_not_the_servers_failure() {
    let p = porter_for(&collecting_backend().await, "", "").await;
    let config = tls_config(&TLS12_AND_13, &[b"h2"]);
    for size in [1_000usize, 200_000] {
        let tls = tls_connect(p.https.unwrap(), "localhost", config.clone()).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let body = StreamBody::new(tokio_stream_from(rx));
        let request =
            hyper::Request::post("https://localhost/up").header("content-length", size.to_string()).body(body).unwrap();
        let send = tokio::spawn(async move { sender.send_request(request).await.map(|r| r.status()) });
        tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; 500])))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        // An error from the body: hyper resets the stream.
        tx.send(Err(std::io::Error::other("cancelled"))).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), send).await.expect("the stream ended");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_server_untouched(&p).await;
    let samples = metrics(&p).await;
    let fives = answered(&samples, "5xx");
    assert_eq!(fives, 0.0);
    p.stop().await;
}

fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// An HTTP/2 request whose client resets the stream before the answer is
/// logged as 499 and counted apart from 5xx, and is never the server's failure.
#[tokio::test]
async fn an_http2_request_the_client_abandons_is_logged_as_499() {
    let b = Backend::start_with("slow", Behaviour { delay: Some(Duration::from_secs(2)), ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    write_cert(&dir.path().join("certs"), "localhost", &["localhost"]);
    let log = dir.path().join("access.log");
    let yaml = format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\ntls:\n  certs: certs\n\
         access_log:\n  format: text\n  path: \"{}\"\nupstreams:\n{}    passive:\n      max_failures: 1\n\
         \x20     cooldown: 60s\nroutes:\n  - upstream: web\n",
        log.display(),
        upstream_block("web", &[(&b, 1)])
    );
    let p = TestPorter::start_in(dir, &yaml).await;
    let tls = tls_connect(p.https.unwrap(), "localhost", tls_config(&TLS12_AND_13, &[b"h2"])).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get("https://localhost/slow").body(http_body_util::Empty::<Bytes>::new()).unwrap();
    let waiting = tokio::spawn(async move { sender.send_request(request).await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Dropping the response future resets the stream (RST_STREAM CANCEL).
    waiting.abort();
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("path=/slow")) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no access-log line for the abandoned request: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.contains(" status=499 "), "{line}");
    let samples = metrics(&p).await;
    assert_eq!((answered(&samples, "4xx"), answered(&samples, "5xx")), (1.0, 0.0));
    assert_eq!(server_state(&p).await, (0, "up".to_string()));
    p.stop().await;
}
