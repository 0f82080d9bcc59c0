//! SPEC §10 HTTP/3, end to end: a real QUIC + HTTP/3 client (quinn and h3, the
//! client side of the crates porter serves with) against porter's UDP listener and
//! real backends: GET, large request and response bodies, many concurrent
//! streams on one connection, a reload under an open connection, SNI, the
//! `:authority` rules, limits, the drain on shutdown, `Alt-Svc` on TCP, the access
//! log and metrics, and `porter check` refusing HTTP/3 without an https listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};

use crate::harness::*;

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// One HTTP/3 connection to porter.
pub(crate) struct H3Client {
    pub send: SendRequest,
    pub connection: quinn::Connection,
    _endpoint: quinn::Endpoint,
    driver: tokio::task::JoinHandle<h3::error::ConnectionError>,
}

/// A client endpoint on 127.0.0.1 trusting any certificate, offering ALPN `h3`.
pub(crate) fn client_endpoint() -> quinn::Endpoint {
    let tls = crate::tls_client::tls_config(&[&rustls::version::TLS13], &[b"h3"]);
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from((*tls).clone()).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

impl H3Client {
    /// QUIC handshake with SNI `sni`, then the HTTP/3 session.
    pub(crate) async fn connect(addr: SocketAddr, sni: &str) -> H3Client {
        let endpoint = client_endpoint();
        let connection = tokio::time::timeout(Duration::from_secs(10), endpoint.connect(addr, sni).unwrap())
            .await
            .expect("QUIC handshake in time")
            .expect("QUIC handshake");
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection.clone())).await.unwrap();
        let driver = tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
        H3Client { send, connection, _endpoint: endpoint, driver }
    }

    /// The leaf certificate porter presented.
    pub(crate) fn peer_leaf(&self) -> Vec<u8> {
        let identity = self.connection.peer_identity().expect("server certificates");
        let chain = identity.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().unwrap();
        chain[0].to_vec()
    }

    pub(crate) async fn get(&self, url: &str) -> Response<Bytes> {
        self.request(Request::get(url).body(Bytes::new()).unwrap()).await.expect("HTTP/3 request")
    }

    /// Sends `request` (its body in 64 KiB DATA frames) and reads the whole answer.
    pub(crate) async fn request(&self, request: Request<Bytes>) -> Result<Response<Bytes>, String> {
        let mut send = self.send.clone();
        let (parts, body) = request.into_parts();
        let mut stream = send.send_request(Request::from_parts(parts, ())).await.map_err(|e| e.to_string())?;
        let mut rest = body;
        // Porter may answer before it took the whole body (413) and stop the upload:
        // the answer is read all the same.
        let mut sent = Ok(());
        while !rest.is_empty() && sent.is_ok() {
            let chunk = rest.split_to(rest.len().min(64 * 1024));
            sent = stream.send_data(chunk).await;
        }
        if sent.is_ok() {
            let _ = stream.finish().await;
        }
        let response = stream.recv_response().await.map_err(|e| e.to_string())?;
        let mut body = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(|e| e.to_string())? {
            let n = chunk.remaining();
            body.extend_from_slice(&chunk.copy_to_bytes(n));
        }
        let (parts, ()) = response.into_parts();
        Ok(Response::from_parts(parts, body.freeze()))
    }

    /// Resolves when porter closed the connection (after its GOAWAY and drain).
    pub(crate) async fn closed(self) -> h3::error::ConnectionError {
        self.driver.await.unwrap()
    }
}

pub(crate) fn h3_yaml(servers: &[(&Backend, u32)], extra: &str) -> String {
    format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n  http3: true\ntls:\n  certs: certs\n{extra}http:\n  redirect: false\nupstreams:\n{}routes:\n  - upstream: web\n",
        upstream_block("web", servers)
    )
}

fn h3_addr(porter: &TestPorter) -> SocketAddr {
    porter.porter().http3_addr.expect("HTTP/3 is listening")
}

async fn started(backend: &Backend, extra: &str) -> TestPorter {
    let dir = tempfile::tempdir().unwrap();
    write_cert(&dir.path().join("certs"), "localhost", &["localhost"]);
    TestPorter::start_in(dir, &h3_yaml(&[(backend, 1)], extra)).await
}

fn text(response: &Response<Bytes>) -> String {
    String::from_utf8_lossy(response.body()).into_owned()
}

#[tokio::test]
async fn h3_get_goes_through_the_pipeline_with_log_and_metrics() {
    let backend = Backend::start("web").await;
    let log = tempfile::tempdir().unwrap();
    let log_path = log.path().join("access.log");
    let extra = format!("access_log:\n  format: json\n  path: \"{}\"\n", log_path.display());
    let dir = tempfile::tempdir().unwrap();
    write_cert(&dir.path().join("certs"), "localhost", &["localhost"]);
    let yaml =
        h3_yaml(&[(&backend, 1)], &extra).replace("  http3: true\n", "  http3: true\n  admin: \"127.0.0.1:0\"\n");
    let porter = TestPorter::start_in(dir, &yaml).await;
    let addr = h3_addr(&porter);
    assert_eq!(addr, porter.https.unwrap(), "HTTP/3 on the https listener's address");

    let client = H3Client::connect(addr, "localhost").await;
    let response = client.get(&format!("https://localhost:{}/echo-headers?x=1", addr.port())).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_3);
    let body = text(&response);
    assert!(body.starts_with("web GET /echo-headers?x=1\n"), "{body}");
    assert_eq!(echoed_header(&body, "x-forwarded-proto"), ["https"]);
    assert_eq!(echoed_header(&body, "host"), [format!("localhost:{}", addr.port())]);
    assert_eq!(echoed_header(&body, "via"), ["3 porter"]);
    assert_eq!(response.headers()["x-version"], "HTTP/1.1", "upstreams stay HTTP/1.1");
    assert!(response.headers().get("alt-svc").is_none(), "no Alt-Svc over HTTP/3 itself");

    // The access log names the protocol; metrics count the connection on the h3 listener.
    let line = wait_for(|| std::fs::read_to_string(&log_path).ok().filter(|s| s.contains("echo-headers"))).await;
    assert!(line.contains("\"protocol\":\"h3\""), "{line}");
    assert!(line.contains("\"tls\":\"TLSv1.3\""), "{line}");
    let metrics = plain_client().get(porter.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("porter_open_connections{listener=\"h3\"} 1"), "{metrics}");
    assert!(metrics.contains("porter_tls_handshakes_total{listener=\"h3\"} 1"), "{metrics}");
    assert!(metrics.contains("porter_requests_by_protocol_total{protocol=\"h3\"} 1"), "{metrics}");
    assert!(metrics.contains("porter_quic_retries_total 0"), "{metrics}");
    assert!(metrics.contains("porter_quic_refused_total 0"), "{metrics}");
    porter.stop().await;
}

async fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(found) = probe() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not met within 5s");
}

#[tokio::test]
async fn h3_streams_large_request_and_response_bodies() {
    let backend = Backend::start("web").await;
    let porter = started(&backend, "").await;
    let addr = h3_addr(&porter);
    let client = H3Client::connect(addr, "localhost").await;

    let upload: Bytes = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let request = Request::post(format!("https://localhost:{}/echo", addr.port()))
        .header("content-length", upload.len())
        .body(upload.clone())
        .unwrap();
    let echoed = client.request(request).await.unwrap();
    assert_eq!(echoed.status(), 200);
    assert!(echoed.body() == &upload, "5 MiB POST echoed back intact ({} bytes)", echoed.body().len());

    // A body without Content-Length (streamed, chunked to the HTTP/1.1 server).
    let request =
        Request::post(format!("https://localhost:{}/echo", addr.port())).body(upload.slice(..300_000)).unwrap();
    let echoed = client.request(request).await.unwrap();
    assert!(echoed.body() == &upload.slice(..300_000));

    let big = client.get(&format!("https://localhost:{}/bytes/{}", addr.port(), 12 << 20)).await;
    assert_eq!(big.status(), 200);
    assert_eq!(big.body().len(), 12 << 20);
    assert!(big.body().iter().all(|&b| b == b'x'));
    porter.stop().await;
}

#[tokio::test]
async fn h3_many_concurrent_streams_on_one_connection() {
    let backend =
        Backend::start_with("web", Behaviour { delay: Some(Duration::from_millis(50)), ..Default::default() }).await;
    let porter = started(&backend, "").await;
    let addr = h3_addr(&porter);
    let client = Arc::new(H3Client::connect(addr, "localhost").await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = client.clone();
        let url = format!("https://localhost:{}/stream/{i}", addr.port());
        tasks.spawn(async move { (i, client.get(&url).await) });
    }
    let mut done = 0;
    while let Some(result) = tasks.join_next().await {
        let (i, response) = result.unwrap();
        assert_eq!(response.status(), 200);
        assert!(text(&response).starts_with(&format!("web GET /stream/{i}\n")));
        done += 1;
    }
    assert_eq!(done, 200);
    assert_eq!(backend.requests_to("/stream/7"), 1);
    porter.stop().await;
}

#[tokio::test]
async fn h3_connection_stays_open_across_a_reload() {
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let porter = started(&one, "").await;
    let addr = h3_addr(&porter);
    let client = H3Client::connect(addr, "localhost").await;
    let url = format!("https://localhost:{}/who", addr.port());
    assert!(text(&client.get(&url).await).starts_with("one GET"));

    // A request in flight across the reload, on the same connection.
    one.behaviour.lock().unwrap().delay = Some(Duration::from_millis(300));
    let slow = {
        let send = client.send.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let probe = H3Probe { send };
            probe.get(&url).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    porter.reload(&h3_yaml(&[(&two, 1)], ""));
    assert!(text(&client.get(&url).await).starts_with("two GET"), "new requests use the new configuration");
    let slow = slow.await.unwrap();
    assert_eq!(slow.status(), 200);
    assert!(text(&slow).starts_with("one GET"), "the request in flight finished on the old one");
    assert!(client.connection.close_reason().is_none(), "the QUIC connection is still open");
    porter.stop().await;
}

/// A second handle on a connection's request sender.
struct H3Probe {
    send: SendRequest,
}

impl H3Probe {
    async fn get(&self, url: &str) -> Response<Bytes> {
        let mut send = self.send.clone();
        let mut stream = send.send_request(Request::get(url).body(()).unwrap()).await.unwrap();
        stream.finish().await.unwrap();
        let response = stream.recv_response().await.unwrap();
        let mut body = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await.unwrap() {
            let n = chunk.remaining();
            body.extend_from_slice(&chunk.copy_to_bytes(n));
        }
        let (parts, ()) = response.into_parts();
        Response::from_parts(parts, body.freeze())
    }
}

#[tokio::test]
async fn alt_svc_is_offered_on_tcp_responses() {
    let backend = Backend::start("web").await;
    let porter = started(&backend, "").await;
    let https = porter.https.unwrap();
    let client = client_for(https, &["localhost"]);
    for version_http2 in [false, true] {
        let request = client.get(porter.https_url("/"));
        let request = if version_http2 { request.version(reqwest::Version::HTTP_2) } else { request };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["alt-svc"], format!("h3=\":{}\"; ma=86400", https.port()));
    }
    // Plaintext responses do not offer it.
    let plain = plain_client().get(porter.http_url("/")).send().await.unwrap();
    assert!(plain.headers().get("alt-svc").is_none());
    porter.stop().await;

    // http.redirect_port is the port clients use (port mapping): Alt-Svc names it.
    let dir = tempfile::tempdir().unwrap();
    write_cert(&dir.path().join("certs"), "localhost", &["localhost"]);
    let yaml =
        h3_yaml(&[(&backend, 1)], "").replace("  redirect: false\n", "  redirect: false\n  redirect_port: 8443\n");
    let porter = TestPorter::start_in(dir, &yaml).await;
    let response = client_for(porter.https.unwrap(), &["localhost"]).get(porter.https_url("/")).send().await.unwrap();
    assert_eq!(response.headers()["alt-svc"], "h3=\":8443\"; ma=86400");
    porter.stop().await;

    // Without listen.http3 there is nothing to offer.
    let porter = TestPorter::start_in(
        {
            let dir = tempfile::tempdir().unwrap();
            write_cert(&dir.path().join("certs"), "localhost", &["localhost"]);
            dir
        },
        &proxy_yaml(&[(&backend, 1)]),
    )
    .await;
    assert!(porter.porter().http3_addr.is_none());
    let response = client_for(porter.https.unwrap(), &["localhost"]).get(porter.https_url("/")).send().await.unwrap();
    assert!(response.headers().get("alt-svc").is_none());
    porter.stop().await;
}

#[tokio::test]
async fn h3_sni_picks_the_certificate_and_authority_rules_hold() {
    let backend = Backend::start("web").await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let a = write_cert(&certs, "a.test", &["a.test"]);
    let b = write_cert(&certs, "b.test", &["b.test"]);
    let porter = TestPorter::start_in(dir, &h3_yaml(&[(&backend, 1)], "")).await;
    let addr = h3_addr(&porter);

    let to_a = H3Client::connect(addr, "a.test").await;
    assert_eq!(to_a.peer_leaf(), a, "SNI a.test gets a.test's certificate");
    let to_b = H3Client::connect(addr, "b.test").await;
    assert_eq!(to_b.peer_leaf(), b, "SNI b.test gets b.test's certificate");

    assert_eq!(to_a.get("https://a.test/").await.status(), 200);
    // b.test on a connection whose certificate covers only a.test: 421, as on HTTP/2.
    assert_eq!(to_a.get("https://b.test/").await.status(), 421);
    // A second Host header that disagrees with :authority: 400 (h3 itself refuses a
    // first one that differs), and the server never sees it.
    let before = backend.requests();
    let conflicting =
        Request::get("https://a.test/").header("host", "a.test").header("host", "b.test").body(Bytes::new()).unwrap();
    assert_eq!(to_a.request(conflicting).await.unwrap().status(), 400);
    assert_eq!(backend.requests(), before);
    // CONNECT is refused (porter is not a forward proxy).
    let connect = Request::connect("https://a.test/").body(Bytes::new()).unwrap();
    if let Ok(response) = to_a.request(connect).await {
        assert_eq!(response.status(), 405);
    }
    porter.stop().await;
}

#[tokio::test]
async fn h3_limits_apply_like_http2() {
    let backend = Backend::start("web").await;
    let porter = started(&backend, "limits:\n  max_body_bytes: 1MB\n  max_header_bytes: 8KiB\n").await;
    let addr = h3_addr(&porter);
    let client = H3Client::connect(addr, "localhost").await;
    let url = format!("https://localhost:{}/echo", addr.port());

    let declared =
        Request::post(&url).header("content-length", 2_000_000).body(Bytes::from(vec![b'a'; 2_000_000])).unwrap();
    assert_eq!(client.request(declared).await.unwrap().status(), 413);
    // A body without a length that grows past the limit is cut off: 413, never a 200.
    let streamed = Request::post(&url).body(Bytes::from(vec![b'a'; 2_000_000])).unwrap();
    let status = client.request(streamed).await.map(|r| r.status());
    assert!(matches!(status, Ok(http::StatusCode::PAYLOAD_TOO_LARGE) | Err(_)), "{status:?}");
    // A Content-Length the DATA frames contradict is malformed, never forwarded as is.
    let lying = Request::post(&url).header("content-length", 10).body(Bytes::from_static(b"0123456789abcdef")).unwrap();
    let status = client.request(lying).await.map(|r| r.status());
    assert!(matches!(status, Ok(http::StatusCode::BAD_REQUEST) | Err(_)), "{status:?}");
    let before = backend.requests();
    // max_header_bytes is announced in SETTINGS (SETTINGS_MAX_FIELD_SECTION_SIZE): a
    // conforming client does not even send a larger head (porter would answer 431).
    let huge = Request::get(&url).header("x-big", "a".repeat(16 * 1024)).body(Bytes::new()).unwrap();
    let refused = client.request(huge).await.unwrap_err();
    assert!(refused.contains("max size: 8192"), "{refused}");
    assert_eq!(backend.requests(), before, "nothing oversized reached the server");
    porter.stop().await;
}

#[tokio::test]
async fn h3_shutdown_sends_goaway_and_drains() {
    let backend =
        Backend::start_with("web", Behaviour { delay: Some(Duration::from_millis(400)), ..Default::default() }).await;
    let mut porter = started(&backend, "").await;
    let addr = h3_addr(&porter);
    let client = H3Client::connect(addr, "localhost").await;
    let url = format!("https://localhost:{}/slow", addr.port());
    let in_flight = {
        let probe = H3Probe { send: client.send.clone() };
        tokio::spawn(async move { probe.get(&url).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let running = porter.porter.take().unwrap();
    let stopped = tokio::spawn(running.shutdown(Duration::from_secs(5)));
    let response = in_flight.await.unwrap();
    assert_eq!(response.status(), 200, "the request in flight finished during the drain");
    let ended =
        tokio::time::timeout(Duration::from_secs(5), client.closed()).await.expect("porter closed the connection");
    assert!(ended.is_h3_no_error(), "closed cleanly after GOAWAY: {ended:?}");
    tokio::time::timeout(Duration::from_secs(5), stopped).await.expect("drained in time").unwrap();
    // New connections are not served any more.
    let endpoint = client_endpoint();
    let refused = tokio::time::timeout(Duration::from_secs(3), endpoint.connect(addr, "localhost").unwrap()).await;
    assert!(!matches!(refused, Ok(Ok(_))), "a new connection after shutdown was served");
}

#[test]
fn http3_without_an_https_listener_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("porter.yaml");
    std::fs::write(&path, "listen:\n  http: \"127.0.0.1:0\"\n  http3: true\nupstreams:\n  web:\n    servers:\n      - url: \"http://127.0.0.1:9\"\nroutes:\n  - upstream: web\n")
        .unwrap();
    let error = porter::Config::load(&path).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("listen.http3"), "{error}");
    assert_eq!((error.line, error.column), (Some(3), Some(10)), "{error}");
    assert!(error.to_string().contains("listen.https"), "{error}");
}

#[tokio::test]
async fn h3_connections_beyond_max_connections_are_refused() {
    let backend = Backend::start("web").await;
    let porter = started(&backend, "limits:\n  max_connections: 1\n").await;
    let addr = h3_addr(&porter);
    let first = H3Client::connect(addr, "localhost").await;
    assert_eq!(first.get(&format!("https://localhost:{}/", addr.port())).await.status(), 200);
    let endpoint = client_endpoint();
    let second = tokio::time::timeout(Duration::from_secs(5), endpoint.connect(addr, "localhost").unwrap()).await;
    assert!(matches!(second, Ok(Err(_))), "a second QUIC connection was served beyond max_connections");
    drop(first);
    porter.stop().await;
}
