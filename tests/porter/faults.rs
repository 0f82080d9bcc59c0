//! SPEC §6 and §8: a bad server gets 502/503/504 and the next server.

use std::time::{Duration, Instant};

use crate::harness::*;

/// An address nothing listens on (bound, then released).
async fn dead_address() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn one_server_down_all_gets_succeed_by_retry() {
    let a = Backend::start("a").await;
    let c_ = Backend::start("c").await;
    let dead = dead_address().await;
    let yaml = format!(
        "{}http:\n  redirect: false\nupstreams:\n  web:\n    servers:\n      - url: \"{}\"\n      - url: \"http://{dead}\"\n      - url: \"{}\"\n    passive:\n      max_failures: 0\nroutes:\n  - upstream: web\n",
        listen_block(),
        a.url(),
        c_.url()
    );
    let p = TestPorter::start(&yaml).await;
    let c = plain_client();
    for i in 0..60 {
        let r = c.get(p.http_url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
    }
    assert_eq!(a.requests() + c_.requests(), 60);
    p.stop().await;
}

#[tokio::test]
async fn all_servers_down_is_502() {
    let d1 = dead_address().await;
    let d2 = dead_address().await;
    let yaml = format!(
        "{}http:\n  redirect: false\nupstreams:\n  web:\n    servers:\n      - url: \"http://{d1}\"\n      - url: \"http://{d2}\"\n    passive:\n      max_failures: 0\nroutes:\n  - upstream: web\n",
        listen_block()
    );
    let p = TestPorter::start(&yaml).await;
    let r = plain_client().get(p.http_url("/")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(body.contains("could not connect"), "{body}");
    p.stop().await;
}

#[tokio::test]
async fn slow_response_header_is_504_on_time() {
    let slow =
        Backend::start_with("slow", Behaviour { delay: Some(Duration::from_secs(3)), ..Default::default() }).await;
    let yaml = format!(
        "{}http:\n  redirect: false\nupstreams:\n  web:\n    servers:\n      - url: \"{}\"\n    timeouts:\n      response_header: 500ms\nroutes:\n  - upstream: web\n",
        listen_block(),
        slow.url()
    );
    let p = TestPorter::start(&yaml).await;
    let started = Instant::now();
    let r = plain_client().get(p.http_url("/")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 504);
    assert!(r.text().await.unwrap().contains("did not answer in time"));
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(1500), "{took:?}");
    p.stop().await;
}

#[tokio::test]
async fn no_healthy_server_is_503() {
    // One failure ejects the only server for a minute: the next request has nowhere to go.
    let dead = dead_address().await;
    let yaml = format!(
        "{}http:\n  redirect: false\nupstreams:\n  web:\n    servers:\n      - url: \"http://{dead}\"\n    passive:\n      max_failures: 1\n      cooldown: 60s\nroutes:\n  - upstream: web\n",
        listen_block()
    );
    let p = TestPorter::start(&yaml).await;
    let c = plain_client();
    assert_eq!(c.get(p.http_url("/")).send().await.unwrap().status(), 502);
    let r = c.get(p.http_url("/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("no healthy upstream"));
    p.stop().await;
}
