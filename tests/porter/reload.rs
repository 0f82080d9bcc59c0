//! docs/configuration.md, Command line (SIGHUP): reloads: a reload applies the new file, and the
//! background work of the configuration it replaces (health checks, DNS refresh) stops with it,
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
    let old_snapshot = porter::testing::hold_snapshot(porter);
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

fn tls_yaml(backend: &Backend, min_version: &str, hsts: &str) -> String {
    format!(
        "listen:\n  https: \"127.0.0.1:0\"\ntls:\n  certs: certs\n  min_version: \"{min_version}\"\n  hsts: \"{hsts}\"\n\
         upstreams:\n{}routes:\n  - upstream: web\n",
        upstream_block("web", &[(backend, 1)])
    )
}

#[tokio::test]
async fn a_reload_applies_min_version_and_hsts() {
    let b = Backend::start("tls").await;
    let dir = tempfile::tempdir().unwrap();
    write_cert(&dir.path().join("certs"), "site", &["site.example.com"]);
    let p = TestPorter::start_in(dir, &tls_yaml(&b, "1.2", "max-age=60")).await;
    let addr = p.https.unwrap();
    let url = format!("https://site.example.com:{}/", addr.port());
    let tls12_client = || {
        http_client()
            .danger_accept_invalid_certs(true)
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .resolve("site.example.com", addr)
            .no_proxy()
            .build()
            .unwrap()
    };
    let response = tls12_client().get(&url).send().await.unwrap();
    assert_eq!(response.headers()["strict-transport-security"], "max-age=60");
    let (ok, text) = crate::tls_edge::s_client(addr, "site.example.com", "-tls1_2").await;
    assert!(ok, "TLS 1.2 accepted before the reload:\n{text}");

    p.reload(&tls_yaml(&b, "1.3", "max-age=120"));
    let err = tls12_client().get(&url).send().await.expect_err("TLS 1.2 refused after the reload");
    assert!(err.is_connect(), "{err:?}");
    let (ok, text) = crate::tls_edge::s_client(addr, "site.example.com", "-tls1_2").await;
    assert!(!ok && text.contains("SSL alert number"), "openssl -tls1_2 after the reload:\n{text}");
    let (ok, text) = crate::tls_edge::s_client(addr, "site.example.com", "-tls1_3").await;
    assert!(ok, "TLS 1.3 still accepted:\n{text}");
    let client = client_for(addr, &["site.example.com"]);
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.headers()["strict-transport-security"], "max-age=120");
    p.stop().await;
}

#[tokio::test]
async fn a_listener_address_change_is_named_and_the_rest_applies() {
    use crate::lifecycle::{free_port, spawn_porter_env, write_config};
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &a, "");
    let porter = spawn_porter_env(&config, &[]);
    let new_port = free_port();
    write_config(dir.path(), new_port, &b, "");
    crate::lifecycle::signal(&porter.0, "HUP");
    let warning = porter.wait_for_line("needs a restart", Duration::from_secs(5)).await;
    assert!(warning.contains("listen.http") && warning.contains(&new_port.to_string()), "{warning}");
    assert!(warning.contains(&format!("still listening on 127.0.0.1:{port}")), "{warning}");
    porter.wait_for_line("configuration reloaded", Duration::from_secs(5)).await;
    // Still on the old address, with the new upstream.
    let response = plain_client().get(format!("http://127.0.0.1:{port}/")).send().await.unwrap();
    assert_eq!(response.headers()["x-backend"], "b");
}

#[tokio::test]
async fn systemd_notify_messages_arrive_in_order() {
    use crate::lifecycle::{free_port, signal, spawn_porter_env, write_config};
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let config = write_config(dir.path(), free_port(), &a, "");
    let porter = spawn_porter_env(&config, &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    assert_eq!(next(&socket).await, "READY=1\n");
    signal(&porter.0, "HUP");
    let reloading = next(&socket).await;
    let lines: Vec<&str> = reloading.lines().collect();
    assert_eq!(lines[0], "RELOADING=1", "{reloading}");
    let usec: u64 = lines[1].strip_prefix("MONOTONIC_USEC=").expect(&reloading).parse().unwrap();
    assert!(usec > 0);
    assert_eq!(next(&socket).await, "READY=1\n");
    signal(&porter.0, "TERM");
    assert_eq!(next(&socket).await, "STOPPING=1\n");
}

async fn next(socket: &tokio::net::UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf)).await.expect("a message").unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
