//! docs/configuration.md, Routing: port 80 redirects to https — 301 for GET/HEAD, 308 otherwise,
//! query and port kept.

use bytes::Bytes;
use http_body_util::Full;

use crate::harness::*;

async fn redirecting() -> (TestPorter, Backend) {
    let b = Backend::start("a").await;
    let yaml =
        format!("{}upstreams:\n{}routes:\n  - upstream: web\n", listen_block(), upstream_block("web", &[(&b, 1)]));
    (TestPorter::start(&yaml).await, b)
}

#[tokio::test]
async fn get_is_301_post_is_308_with_query_and_port() {
    let (p, b) = redirecting().await;
    let https_port = p.https.unwrap().port();
    let c = client_for(p.http.unwrap(), &["shop.example.com"]);
    let base = format!("http://shop.example.com:{}", p.http.unwrap().port());

    let r = c.get(format!("{base}/cart?item=5&q=a%20b")).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], format!("https://shop.example.com:{https_port}/cart?item=5&q=a%20b"));

    let r = c.head(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 301);

    let r = c.post(format!("{base}/checkout?x=1")).body("data").send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], format!("https://shop.example.com:{https_port}/checkout?x=1"));

    let r = c.delete(format!("{base}/item/1")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(b.requests(), 0, "redirects never reach a backend");
    p.stop().await;
}

#[tokio::test]
async fn missing_host_is_400() {
    let (p, _b) = redirecting().await;
    // HTTP/1.0 allows a request without Host.
    let request = hyper::Request::get("/").version(hyper::Version::HTTP_10).body(Full::new(Bytes::new())).unwrap();
    let response = raw_http1(p.http.unwrap(), request).await;
    assert_eq!(response.status(), 400);
    p.stop().await;
}

/// Behind `-p 443:8443` or an L4 balancer the listener's own port is not the one clients use.
#[tokio::test]
async fn redirect_port_is_the_port_clients_use() {
    let b = Backend::start("a").await;
    for (redirect_port, authority) in [(443, "shop.example.com"), (8443, "shop.example.com:8443")] {
        let yaml = format!(
            "{}http:\n  redirect_port: {redirect_port}\nupstreams:\n{}routes:\n  - upstream: web\n",
            listen_block(),
            upstream_block("web", &[(&b, 1)])
        );
        let p = TestPorter::start(&yaml).await;
        assert_ne!(p.https.unwrap().port(), redirect_port, "the listener is on an ephemeral port");
        let c = client_for(p.http.unwrap(), &["shop.example.com"]);
        let base = format!("http://shop.example.com:{}", p.http.unwrap().port());
        let r = c.get(format!("{base}/a?b=1")).send().await.unwrap();
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()["location"], format!("https://{authority}/a?b=1"));
        p.stop().await;
    }
}
