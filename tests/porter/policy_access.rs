//! Route `allow` / `deny` (docs/configuration.md, Traffic policy): CIDR lists
//! against the client address after `trusted_proxies` and the PROXY protocol;
//! `deny` wins; 403 without touching the upstream; counted and logged as `deny`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

fn yaml(b: &Backend, listen_extra: &str, routes: &str) -> String {
    format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\n{listen_extra}\
         tls:\n  certs: certs\nhttp:\n  redirect: false\n\
         access_log:\n  format: json\n  path: access.json\n\
         upstreams:\n{}routes:\n{routes}",
        upstream_block("web", &[(b, 1)])
    )
}

const ROUTES: &str = "  - path: /admin/\n    upstream: web\n    allow: [\"10.0.0.0/8\", \"192.168.0.0/16\"]
  - path: /open/\n    upstream: web\n    allow: [\"127.0.0.0/8\"]
  - path: /blocked/\n    upstream: web\n    allow: [\"127.0.0.0/8\"]\n    deny: [\"127.0.0.1\"]
  - upstream: web\n";

/// One HTTP/1.1 request written by hand, read to the end (the request closes the connection).
async fn raw(stream: &mut TcpStream, head: &str) -> String {
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn log_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> =
            text.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "{} lines, expected {n}:\n{text}", lines.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn allow_and_deny_over_http1_and_http2_never_reach_the_upstream() {
    let b = Backend::start("web").await;
    let p = TestPorter::start(&yaml(&b, "", ROUTES)).await;
    let http = plain_client();
    let h2 = client_for(p.https.unwrap(), &["localhost"]);
    let base = format!("http://{}", p.http.unwrap());

    let r = http.get(format!("{base}/admin/x")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(r.text().await.unwrap().starts_with("403 Forbidden"));
    let r = h2.get(p.https_url("/admin/x")).send().await.unwrap();
    assert_eq!((r.version(), r.status().as_u16()), (reqwest::Version::HTTP_2, 403));
    assert_eq!(b.requests_to("/admin/x"), 0, "a refused request never reaches the upstream");

    assert_eq!(http.get(format!("{base}/open/x")).send().await.unwrap().status(), 200);
    let r = h2.get(p.https_url("/open/x")).send().await.unwrap();
    assert_eq!((r.version(), r.status().as_u16()), (reqwest::Version::HTTP_2, 200));

    // 127.0.0.1 is in `allow` and in `deny`: deny wins.
    assert_eq!(http.get(format!("{base}/blocked/x")).send().await.unwrap().status(), 403);
    assert_eq!(h2.get(p.https_url("/blocked/x")).send().await.unwrap().status(), 403);
    // The route without policy is untouched.
    assert_eq!(http.get(format!("{base}/other")).send().await.unwrap().status(), 200);

    // Metrics say which rule answered, per route; the access log too.
    let metrics = plain_client().get(p.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "porter_policy_answers_total{route=\"*/admin/\",rule=\"deny\"} 2",
        "porter_policy_answers_total{route=\"*/blocked/\",rule=\"deny\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert!(!metrics.contains("porter_policy_answers_total{route=\"*/open/\""), "{metrics}");
    let lines = log_lines(&p.dir.path().join("access.json"), 7).await;
    let denied: Vec<_> = lines.iter().filter(|l| l["policy"] == "deny").collect();
    assert_eq!(denied.len(), 4, "{lines:?}");
    assert!(denied.iter().all(|l| l["status"] == 403 && l["upstream"].is_null()), "{denied:?}");
    assert!(lines.iter().filter(|l| l["status"] == 200).all(|l| l["policy"].is_null()), "{lines:?}");
    p.stop().await;
}

#[tokio::test]
async fn the_client_address_is_read_after_trusted_proxies() {
    let b = Backend::start("web").await;
    let routes = "  - path: /admin/\n    upstream: web\n    allow: [\"203.0.113.0/24\"]\n  - upstream: web\n";
    // Trusted: the right-most X-Forwarded-For entry that is not a trusted proxy is the client.
    let p = TestPorter::start(&yaml(&b, "  trusted_proxies: [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n", routes)).await;
    let c = plain_client();
    let url = format!("http://{}/admin/x", p.http.unwrap());
    let with = |xff: &'static str| c.get(&url).header("x-forwarded-for", xff).send();
    assert_eq!(with("203.0.113.5").await.unwrap().status(), 200);
    assert_eq!(with("203.0.113.5, 10.1.2.3").await.unwrap().status(), 200, "trusted hops are skipped");
    assert_eq!(with("203.0.113.5, 198.51.100.1").await.unwrap().status(), 403, "the nearest untrusted hop counts");
    assert_eq!(c.get(&url).send().await.unwrap().status(), 403, "no header: the peer itself");
    p.stop().await;

    // Untrusted: the same header is ignored, a client cannot pick its own address.
    let p = TestPorter::start(&yaml(&b, "", routes)).await;
    let url = format!("http://{}/admin/x", p.http.unwrap());
    let r = c.get(&url).header("x-forwarded-for", "203.0.113.5").send().await.unwrap();
    assert_eq!(r.status(), 403);
    p.stop().await;
}

#[tokio::test]
async fn the_proxy_protocol_source_is_the_client() {
    let b = Backend::start("web").await;
    let routes = "  - path: /admin/\n    upstream: web\n    allow: [\"198.51.100.0/24\"]\n  - upstream: web\n";
    let p = TestPorter::start(&yaml(&b, "  proxy_protocol: true\n", routes)).await;
    let request = "GET /admin/x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n";

    let mut inside = TcpStream::connect(p.http.unwrap()).await.unwrap();
    inside.write_all(b"PROXY TCP4 198.51.100.23 10.0.0.1 40000 80\r\n").await.unwrap();
    let answer = raw(&mut inside, request).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut outside = TcpStream::connect(p.http.unwrap()).await.unwrap();
    outside.write_all(b"PROXY TCP4 192.0.2.9 10.0.0.1 40000 80\r\n").await.unwrap();
    let answer = raw(&mut outside, request).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    p.stop().await;
}

#[tokio::test]
async fn a_reload_applies_new_rules() {
    let b = Backend::start("web").await;
    let open = "  - path: /admin/\n    upstream: web\n  - upstream: web\n";
    let p = TestPorter::start(&yaml(&b, "", open)).await;
    let c = plain_client();
    let url = format!("http://{}/admin/x", p.http.unwrap());
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    let closed = "  - path: /admin/\n    upstream: web\n    deny: [\"0.0.0.0/0\", \"::/0\"]\n  - upstream: web\n";
    p.reload(&yaml(&b, "", closed));
    assert_eq!(c.get(&url).send().await.unwrap().status(), 403);
    p.reload(&yaml(&b, "", open));
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    p.stop().await;
}
