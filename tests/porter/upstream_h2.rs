//! docs/configuration.md, HTTP/2 to servers (`http2: true`): HTTP/2 to servers — h2c with prior
//! knowledge to a server that speaks nothing else, many requests multiplexed over few connections
//! (h2load, from Debian's nghttp2-client, drives porter), refused streams sent again, and
//! connections the server closed leaving the pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use crate::harness::*;

fn h2_yaml(backend: &Backend) -> String {
    proxy_yaml(&[(backend, 1)]).replace("    servers:\n", "    http2: true\n    servers:\n")
}

#[tokio::test]
async fn an_h2c_only_server_answers_http1_and_http2_clients() {
    let backend = Backend::start_wire("h2c", Wire::H2c).await;
    let p = TestPorter::start(&h2_yaml(&backend)).await;

    // HTTP/1.1 client on the plaintext listener.
    let r = plain_client().get(p.http_url("/hello?x=1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-version"], "HTTP/2.0", "porter spoke HTTP/2 to the server");
    let body = r.text().await.unwrap();
    assert!(body.starts_with(&format!("h2c GET http://localhost:{}/hello?x=1\n", p.http.unwrap().port())), "{body}");
    assert_eq!(echoed_header(&body, "x-forwarded-proto"), ["http"]);

    // HTTP/2 client over TLS; a body streamed both ways.
    let c = client_for(p.https.unwrap(), &["localhost"]);
    let r = c.post(p.https_url("/echo")).body("ping over h2 twice").send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, http::Version::HTTP_2));
    assert_eq!(r.text().await.unwrap(), "ping over h2 twice");

    // A burst of concurrent requests shares the connection.
    let requests = (0..64).map(|i| {
        let (c, url) = (c.clone(), p.https_url(&format!("/n/{i}")));
        tokio::spawn(async move { c.get(url).send().await.unwrap().status().as_u16() })
    });
    for r in futures_util::future::join_all(requests).await {
        assert_eq!(r.unwrap(), 200);
    }
    assert_eq!(backend.requests(), 66);
    assert_eq!(backend.accepts(), 1, "66 requests, one HTTP/2 connection");
    p.stop().await;
}

/// A tool from nghttp2's Debian packages (or `None`, loudly, outside CI).
fn tool_or_skip(tool: &str, package: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file()));
    if found.is_none() {
        let message = format!("{tool} is missing (Debian package {package}, installed by .ci/run)");
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and {message}");
        }
        eprintln!("\n!!!!!!!!!!\nSKIPPED: a test in upstream_h2: {message}\n!!!!!!!!!!\n");
    }
    found
}

/// nghttpd, nghttp2's own server, serving a folder over h2c only (an HTTP/1.1
/// request without an Upgrade is refused), behind porter.
#[tokio::test]
async fn nghttpd_behind_porter() {
    let Some(nghttpd) = tool_or_skip("nghttpd", "nghttp2-server") else { return };
    let docs = tempfile::tempdir().unwrap();
    std::fs::write(docs.path().join("index.html"), "served by nghttpd\n").unwrap();
    // nghttpd takes a port number: a free one, bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = tokio::process::Command::new(nghttpd)
        .args(["--no-tls", "-a", "127.0.0.1", "-d"])
        .arg(docs.path())
        .arg(port.to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "nghttpd did not start");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let yaml = format!(
        "{}http:\n  redirect: false\nupstreams:\n  web:\n    http2: true\n    servers:\n      - url: \"http://127.0.0.1:{port}\"\nroutes:\n  - upstream: web\n",
        listen_block()
    );
    let p = TestPorter::start(&yaml).await;
    let r = plain_client().get(p.http_url("/index.html")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "served by nghttpd\n");
    let c = client_for(p.https.unwrap(), &["localhost"]);
    let r = c.get(p.https_url("/index.html")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, http::Version::HTTP_2));
    assert_eq!(r.text().await.unwrap(), "served by nghttpd\n");
    assert_eq!(plain_client().get(p.http_url("/missing")).send().await.unwrap().status(), 404);
    p.stop().await;
    let _ = server.kill().await;
}

#[tokio::test]
async fn h2load_many_streams_through_porter_zero_errors_few_connections() {
    let Some(h2load) = tool_or_skip("h2load", "nghttp2-client") else { return };
    let backend = Backend::start_wire("h2c", Wire::H2c).await;
    let p = TestPorter::start(&h2_yaml(&backend)).await;
    let url = format!("https://127.0.0.1:{}/small", p.https.unwrap().port());
    // 4 client connections x 32 streams: up to 128 requests in flight at once.
    let out =
        tokio::process::Command::new(h2load).args(["-n", "2000", "-c", "4", "-m", "32", &url]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "h2load failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("requests:")).unwrap_or_else(|| panic!("{stdout}"));
    eprintln!("h2load: {line}; backend connections: {}", backend.accepts());
    assert!(line.contains("2000 succeeded, 0 failed, 0 errored, 0 timeout"), "{stdout}");
    assert!(stdout.contains("status codes: 2000 2xx"), "{stdout}");
    assert_eq!(backend.requests(), 2000);
    // 128 concurrent streams need two connections of 100; the pool opens one at a time.
    assert!(backend.accepts() <= 3, "{} connections for 2000 requests", backend.accepts());
    p.stop().await;
}

#[tokio::test]
async fn a_server_that_closed_its_connections_is_reached_on_a_new_one() {
    let backend = Backend::start_wire("first", Wire::H2c).await;
    let p = TestPorter::start(&h2_yaml(&backend)).await;
    let c = plain_client();
    assert_eq!(c.get(p.http_url("/")).send().await.unwrap().headers()["x-backend"], "first");
    // The server goes away (its connections close) and comes back on the same address.
    let addr = backend.stop().await;
    let again = Backend::start_wire_on("again", addr, Wire::H2c).await;
    let r = c.get(p.http_url("/")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["x-backend"].to_str().unwrap()), (200, "again"));
    assert_eq!(again.accepts(), 1);
    p.stop().await;
}

/// An h2 server (the `h2` crate directly) that refuses the first stream of each
/// connection with REFUSED_STREAM and answers the rest; counts what it saw.
async fn refusing_server() -> (std::net::SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (refused, answered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (r, a) = (refused.clone(), answered.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (r, a) = (r.clone(), a.clone());
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(socket).await else { return };
                let mut first = true;
                while let Some(Ok((_request, mut respond))) = conn.accept().await {
                    if std::mem::take(&mut first) {
                        r.fetch_add(1, Ordering::SeqCst);
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    a.fetch_add(1, Ordering::SeqCst);
                    let response = http::Response::builder().header("x-backend", "refuser").body(()).unwrap();
                    if let Ok(mut body) = respond.send_response(response, false) {
                        let _ = body.send_data(Bytes::from_static(b"answered\n"), true);
                    }
                }
            });
        }
    });
    (addr, refused, answered)
}

#[tokio::test]
async fn a_refused_stream_is_sent_again_even_for_post() {
    let (addr, refused, answered) = refusing_server().await;
    let yaml = format!(
        "{}http:\n  redirect: false\nupstreams:\n  web:\n    http2: true\n    servers:\n      - url: \"http://{addr}\"\nroutes:\n  - upstream: web\n",
        listen_block()
    );
    let p = TestPorter::start(&yaml).await;
    // POST without a body: not idempotent, but the server said it did not process it.
    let request = Request::post("/submit").header("host", "example.com").body(Full::new(Bytes::new())).unwrap();
    let r = raw_http1(p.http.unwrap(), request).await;
    assert_eq!(r.status(), 200, "{:?}", r.body());
    assert_eq!(r.body(), &Bytes::from_static(b"answered\n"));
    assert_eq!((refused.load(Ordering::SeqCst), answered.load(Ordering::SeqCst)), (1, 1));

    // A POST with a body cannot be sent again: the body is gone. A new connection's
    // first stream is refused again, so force one by asking through a reload.
    p.reload(&yaml.replace("http2: true", "http2: true\n    pool: {idle_timeout: 89s}"));
    let request =
        Request::post("/submit").header("host", "example.com").body(Full::new(Bytes::from_static(b"payload"))).unwrap();
    let r = raw_http1(p.http.unwrap(), request).await;
    assert_eq!(r.status(), 502, "{:?}", r.body());
    assert_eq!(refused.load(Ordering::SeqCst), 2);
    p.stop().await;
}

#[tokio::test]
async fn upgrades_still_go_over_http1_on_an_http2_upstream() {
    // A server that speaks both (TLS is not needed: it is told which by the first bytes).
    let backend = Backend::start("both").await;
    let p = TestPorter::start(&h2_yaml(&backend)).await;
    let request = Request::get("/ws")
        .header("host", "example.com")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = raw_http1(p.http.unwrap(), request).await;
    assert_eq!(r.status(), 101);
    assert_eq!(r.headers()["upgrade"], "websocket");
    p.stop().await;
}
