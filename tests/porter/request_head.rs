//! The request head on the wire to a server (docs/architecture.md, The life of a request): from
//! porter's HTTP/1.1 server to an HTTP/1.1 server it is written from the client's own bytes, the
//! client's fields in their order and spelling, minus the hop-by-hop ones (and those its
//! `Connection` names) and the forwarding fields porter replaces, then porter's own. A retry to
//! another server sends the same bytes. Servers that record what they read play the upstream.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::harness::*;

/// A keep-alive HTTP/1.1 server that sends every request head it reads (bytes up to and
/// including the blank line) to the channel, then answers `ok`, or, if `close`, closes
/// the connection without an answer.
async fn recording_server(close: bool) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let (heads, received) = mpsc::unbounded_channel();
    let addr = crate::raw_http::raw_server(move |head| {
        let _ = heads.send(String::from_utf8(head.to_vec()).unwrap());
        (!close).then_some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" as &[u8])
    })
    .await;
    (addr, received)
}

async fn porter_for(servers: &[SocketAddr]) -> TestPorter {
    let mut yaml = format!("{}http:\n  redirect: false\nupstreams:\n  raw:\n    servers:\n", listen_block());
    for server in servers {
        yaml.push_str(&format!("      - url: \"http://{server}\"\n"));
    }
    yaml.push_str("    retries: 1\nroutes:\n  - upstream: raw\n");
    TestPorter::start(&yaml).await
}

/// Sends `request` on a new connection and reads the answer to its end (`Connection: close`).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await.unwrap().unwrap();
    String::from_utf8(got).unwrap()
}

/// The id porter made, replaced by `ID` so a head can be compared whole.
fn without_id(head: &str) -> String {
    let start = head.find("x-request-id: ").expect("porter made an id") + "x-request-id: ".len();
    let id = &head[start..start + 32];
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{head}");
    head.replacen(id, "ID", 1)
}

#[tokio::test]
async fn the_head_reaches_the_server_in_the_clients_order_and_spelling() {
    let (server, mut heads) = recording_server(false).await;
    let p = porter_for(&[server]).await;
    let addr = p.http.unwrap();
    let request = b"GET /a?b=1 HTTP/1.1\r\nHost: raw.test\r\nX-Mixed-Case: Yes\r\nAccept: */*\r\n\
        Connection: close, X-Secret\r\nX-Secret: s\r\nx-mixed-case: again\r\nKeep-Alive: timeout=5\r\n\
        TE: trailers\r\nUpgrade: h2c\r\nX-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 203.0.113.9\r\n\
        X-Request-Id: forged\r\nVia: 1.0 edge\r\nCookie: a=1\r\n\r\n";
    let answer = exchange(addr, request).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nok"), "{answer}");
    let head = tokio::time::timeout(Duration::from_secs(5), heads.recv()).await.unwrap().unwrap();
    let expected = format!(
        "GET /a?b=1 HTTP/1.1\r\nHost: raw.test\r\nX-Mixed-Case: Yes\r\nAccept: */*\r\nx-mixed-case: again\r\n\
         Via: 1.0 edge\r\nCookie: a=1\r\nx-request-id: ID\r\nx-forwarded-for: 127.0.0.1\r\n\
         x-forwarded-proto: http\r\nx-forwarded-host: raw.test\r\nx-forwarded-port: {}\r\n\
         x-real-ip: 127.0.0.1\r\nvia: 1.1 porter\r\n\r\n",
        addr.port()
    );
    assert_eq!(without_id(&head), expected);

    // A body's length goes as the client sent it; an absolute-form target goes in origin form.
    let request = b"POST http://raw.test/form HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 3\r\n\
        Connection: close\r\n\r\nabc";
    let answer = exchange(addr, request).await;
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    let head = tokio::time::timeout(Duration::from_secs(5), heads.recv()).await.unwrap().unwrap();
    assert!(head.starts_with("POST /form HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 3\r\nx-request-id: "), "{head}");
    assert_eq!(head.matches("Content-Length").count() + head.matches("content-length").count(), 1, "{head}");
    p.stop().await;
}

#[tokio::test]
async fn a_retry_sends_the_same_head_to_the_next_server() {
    // The first server reads the head and closes without an answer; the GET goes to the other.
    let (closing, mut closing_heads) = recording_server(true).await;
    let (answering, mut answering_heads) = recording_server(false).await;
    let p = porter_for(&[closing, answering]).await;
    let addr = p.http.unwrap();
    let request = b"GET /again HTTP/1.1\r\nHost: raw.test\r\nX-One: 1\r\nConnection: close\r\n\r\n";
    // Round robin may start at either server: a few requests see both orders.
    for _ in 0..4 {
        let answer = exchange(addr, request).await;
        assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    }
    let first = tokio::time::timeout(Duration::from_secs(5), closing_heads.recv()).await.unwrap().unwrap();
    let mut sent_on = Vec::new();
    while let Ok(head) = answering_heads.try_recv() {
        sent_on.push(head);
    }
    assert!(sent_on.contains(&first), "the retry sent another head: {first:?} vs {sent_on:?}");
    p.stop().await;
}
