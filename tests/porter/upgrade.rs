//! docs/configuration.md, Forwarding: HTTP/1.1 Upgrade (WebSocket, socket.io) is proxied as a
//! bidirectional byte stream.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

async fn read_until(stream: &mut (impl AsyncReadExt + Unpin), needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed early; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[tokio::test]
async fn upgrade_is_tunnelled_both_ways() {
    let b = Backend::start("ws").await;
    let yaml = proxy_yaml(&[(&b, 1)]);
    let p = TestPorter::start(&yaml).await;
    let mut stream = tokio::net::TcpStream::connect(p.http.unwrap()).await.unwrap();
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    // The 101 head, then the backend's greeting through the tunnel.
    let head = read_until(&mut stream, b"\r\n\r\nws:").await;
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for message in [&b"hello"[..], b"second message", &[0u8, 255, 1, 2]] {
        stream.write_all(message).await.unwrap();
        let echoed = read_until(&mut stream, message).await;
        assert!(echoed.ends_with(message));
    }
    // The tunnel stays open across a reload of the configuration.
    let porter = p.porter.as_ref().unwrap();
    let config = porter::Config::load(&p.dir.path().join("porter.yaml")).unwrap();
    porter.reload(&config).unwrap();
    stream.write_all(b"after reload").await.unwrap();
    read_until(&mut stream, b"after reload").await;
    // Shutdown waits for open tunnels; close ours first.
    drop(stream);
    p.stop().await;
}
