//! A server's response fields on their way back (docs/configuration.md, Forwarding): hop-by-hop
//! fields stop at porter, everything else arrives, whichever way porter carries the head. To an
//! HTTP/1.1 client the fields are written from the server's bytes; to an HTTP/2 client from a map
//! made of them; a Connection header naming other fields goes through the map on every path. A
//! server speaking raw bytes plays each case.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::raw_http::canned_server;

/// Every field the rules touch, in mixed case, with a Date and an HSTS of the server's own.
const EVERYTHING: &[u8] = b"HTTP/1.1 200 OK\r\nServer: Raw\r\nX-Mixed-Case: Yes\r\nContent-Length: 5\r\n\
Content-Length: 5\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTE: trailers\r\n\
Trailer: x-sum\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nStrict-Transport-Security: max-age=1\r\n\
Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello";
/// A Connection header that names another field, which must not pass either.
const NAMED: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nX-Kept: k\r\n\
Content-Length: 2\r\n\r\nok";
/// A length beside chunked framing: a response porter cannot frame (docs/security.md, Who is blamed), 502.
const CHUNKED_WITH_LENGTH: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\nX-After: 1\r\n\r\n5\r\nhello\r\n0\r\n\r\n";

/// A keep-alive HTTP/1.1 server answering each request head with the canned
/// response its path names (`/named`, `/chunked`, anything else: EVERYTHING).
async fn raw_server() -> SocketAddr {
    canned_server(|target| match target {
        "/named" => NAMED,
        "/chunked" => CHUNKED_WITH_LENGTH,
        _ => EVERYTHING,
    })
    .await
}

async fn porter_for(server: SocketAddr) -> TestPorter {
    let yaml = format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\ntls:\n  certs: certs\n  hsts: \"max-age=31536000\"\n\
         http:\n  redirect: false\nupstreams:\n  raw:\n    servers:\n      - url: \"http://{server}\"\n\
         routes:\n  - upstream: raw\n"
    );
    TestPorter::start(&yaml).await
}

/// One request over a plain connection, read to its declared end; the head's lines
/// (lower-cased names) and the body.
async fn over_plain(addr: SocketAddr, method: &str, path: &str) -> (Vec<String>, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await.unwrap().unwrap();
    let text = String::from_utf8(got).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    let lines = head.lines().skip(1).map(|l| {
        let (name, value) = l.split_once(": ").unwrap();
        format!("{}: {value}", name.to_ascii_lowercase())
    });
    (lines.collect(), body.to_string())
}

fn count(lines: &[String], name: &str) -> usize {
    lines.iter().filter(|l| l.starts_with(&format!("{name}: "))).count()
}

const HOP_BY_HOP: [&str; 5] = ["keep-alive", "proxy-connection", "upgrade", "te", "trailer"];

#[tokio::test]
async fn a_servers_fields_reach_an_http1_client_without_hop_by_hop() {
    let server = raw_server().await;
    let p = porter_for(server).await;
    let http = p.http.unwrap();

    let (lines, body) = over_plain(http, "GET", "/").await;
    assert_eq!(body, "hello");
    assert!(lines.contains(&"server: Raw".to_string()), "{lines:?}");
    assert!(lines.contains(&"x-mixed-case: Yes".to_string()), "{lines:?}");
    assert_eq!(count(&lines, "content-length"), 1, "{lines:?}");
    assert!(lines.contains(&"content-length: 5".to_string()));
    assert_eq!(count(&lines, "set-cookie"), 2, "{lines:?}");
    assert!(lines.contains(&"date: Mon, 01 Jan 2024 00:00:00 GMT".to_string()), "the server's Date is kept");
    assert_eq!(count(&lines, "date"), 1);
    for gone in HOP_BY_HOP {
        assert_eq!(count(&lines, gone), 0, "{gone} passed: {lines:?}");
    }
    // HSTS is porter's on https only: plaintext passes the server's.
    assert_eq!(count(&lines, "strict-transport-security"), 1);

    let (lines, _) = over_plain(http, "HEAD", "/").await;
    assert_eq!(count(&lines, "content-length"), 1, "a HEAD answer keeps one length: {lines:?}");

    let (lines, body) = over_plain(http, "GET", "/named").await;
    assert_eq!(body, "ok");
    assert_eq!(count(&lines, "x-secret"), 0, "{lines:?}");
    assert!(lines.contains(&"x-kept: k".to_string()), "{lines:?}");

    let (lines, body) = over_plain(http, "GET", "/chunked").await;
    assert!(body.starts_with("502 Bad Gateway: upstream server sent a response porter cannot frame"), "{body}");
    assert_eq!(count(&lines, "x-after"), 0, "{lines:?}");

    // Over TLS porter's HSTS replaces the server's.
    let c = http_client()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .no_proxy()
        .resolve("localhost", p.https.unwrap())
        .build()
        .unwrap();
    let r = c.get(p.https_url("/")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let hsts: Vec<_> = r.headers().get_all("strict-transport-security").iter().collect();
    assert_eq!(hsts, ["max-age=31536000"]);
    assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
    assert_eq!(r.text().await.unwrap(), "hello");
    p.stop().await;
}

#[tokio::test]
async fn a_servers_fields_reach_an_http2_client_without_hop_by_hop() {
    let server = raw_server().await;
    let p = porter_for(server).await;
    let c = client_for(p.https.unwrap(), &["localhost"]);
    let r = c.get(p.https_url("/")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let h = r.headers().clone();
    assert_eq!(h["server"], "Raw");
    assert_eq!(h["x-mixed-case"], "Yes");
    assert_eq!(h.get_all("content-length").iter().count(), 1);
    assert_eq!(h.get_all("set-cookie").iter().count(), 2);
    assert_eq!(h.get_all("strict-transport-security").iter().collect::<Vec<_>>(), ["max-age=31536000"]);
    for gone in HOP_BY_HOP {
        assert!(!h.contains_key(gone), "{gone} passed: {h:?}");
    }
    assert_eq!(r.text().await.unwrap(), "hello");
    let r = c.get(p.https_url("/named")).send().await.unwrap();
    assert!(!r.headers().contains_key("x-secret") && r.headers()["x-kept"] == "k");
    let r = c.get(p.https_url("/chunked")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(!r.headers().contains_key("x-after"));
    p.stop().await;
}
