//! SPEC §7 reloads: a reload applies the new file, and the background work of
//! the configuration it replaces (health checks, DNS refresh) stops with it,
//! even while streams from before the reload are still open.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

fn checked_yaml(backend: &Backend, probe_path: &str) -> String {
    format!(
        "{}http:\n  redirect: false\nupstreams:\n{}    health_check:\n      path: {probe_path}\n      interval: 100ms\n      \
         timeout: 80ms\nroutes:\n  - upstream: web\n",
        listen_block(),
        upstream_block("web", &[(backend, 1)])
    )
}

async fn open_websocket(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ws:") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "tunnel closed early");
        got.extend_from_slice(&buf[..n]);
    }
    stream
}

#[tokio::test]
async fn after_a_reload_only_the_new_health_checker_probes() {
    let b = Backend::start("ws").await;
    let p = TestPorter::start(&checked_yaml(&b, "/old-probe")).await;
    let porter = p.porter.as_ref().unwrap();
    // A tunnel from before the reload holds the old snapshot's upstream for its life.
    let mut tunnel = open_websocket(p.http.unwrap()).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(b.requests_to("/old-probe") >= 2, "the first checker never probed");

    // Whatever still holds the old snapshot (a slow request, a status read; here the test)
    // must not keep its checker alive.
    let old_snapshot = porter.runtime();
    let path = p.dir.path().join("porter.yaml");
    std::fs::write(&path, checked_yaml(&b, "/new-probe")).unwrap();
    porter.reload(&porter::Config::load(&path).unwrap()).unwrap();
    // A probe already on the wire at the swap may still land; none after it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let old_after_swap = b.requests_to("/old-probe");
    let new_before = b.requests_to("/new-probe");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(b.requests_to("/old-probe"), old_after_swap, "the replaced checker still probes");
    let new_probes = b.requests_to("/new-probe") - new_before;
    assert!((4..=8).contains(&new_probes), "one checker at 100ms for 600ms, got {new_probes} probes");

    // The tunnel from before the reload still works.
    tunnel.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(5), tunnel.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"still here");
    drop((tunnel, old_snapshot));
    p.stop().await;
}
