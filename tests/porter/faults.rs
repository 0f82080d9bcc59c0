//! docs/configuration.md, Retries and docs/security.md, Who is blamed: a bad server gets
//! 502/503/504 and the next server.

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

/// A server that reads each request head whole, then closes without an answer: the
/// request went out and may have been processed.
async fn swallowing_server() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    (addr, heads)
}

#[tokio::test]
async fn a_request_the_server_took_and_dropped_is_retried_only_if_idempotent() {
    let (swallower, heads) = swallowing_server().await;
    let good = Backend::start("good").await;
    // The swallower gets nearly every first pick; no passive ejection, so each request meets it.
    let yaml = format!(
        "{}http:\n  redirect: false\nupstreams:\n  web:\n    balance: weighted_round_robin\n    servers:\n      - url: \"http://{swallower}\"\n        weight: 100\n      - url: \"{}\"\n        weight: 1\n    passive:\n      max_failures: 0\nroutes:\n  - upstream: web\n",
        listen_block(),
        good.url()
    );
    let p = TestPorter::start(&yaml).await;
    let c = plain_client();
    for i in 0..3 {
        let r = c.get(p.http_url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {i} went again to the good server");
    }
    assert!(heads.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the swallower saw GETs first");
    assert_eq!(good.requests(), 3);
    // A POST (no body) the server may have processed is not sent again (docs/configuration.md, Retries): each
    // one the swallower took is a 502 that reached no other server.
    let mut swallowed_posts = 0;
    for i in 0..6 {
        let (before, good_before) = (heads.load(std::sync::atomic::Ordering::SeqCst), good.requests());
        let status = c.post(p.http_url("/")).send().await.unwrap().status();
        if heads.load(std::sync::atomic::Ordering::SeqCst) > before {
            swallowed_posts += 1;
            assert_eq!(status, 502, "POST {i}");
            assert_eq!(good.requests(), good_before, "POST {i} went nowhere else");
        } else {
            assert_eq!(status, 200, "POST {i}");
        }
    }
    assert!(swallowed_posts >= 1);
    p.stop().await;
}
