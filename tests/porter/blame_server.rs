//! docs/security.md, Who is blamed, the server's side: a server that stops reading the
//! body or stalls mid-body is the server's failure, bounded by `timeouts.send` /
//! `timeouts.read`; a client that stops reading is cut off after `limits.body_timeout`;
//! an unasked 101 is a 502 on every path.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::blame::{assert_server_untouched, porter_for, read_answer, server_state, sized_head, status};
use crate::harness::*;

/// A server that accepts and reads the head but never the body.
async fn never_reading_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// A server that reads a request, writes `answer`, then holds the connection
/// silent for `hold`.
async fn answer_then_silence(answer: &'static [u8], hold: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(answer).await;
                tokio::time::sleep(hold).await;
            });
        }
    });
    addr
}

/// A server that answers a head and half its body, then goes silent.
async fn stalling_server() -> SocketAddr {
    answer_then_silence(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf", Duration::from_secs(30)).await
}

#[tokio::test]
async fn a_server_that_stops_reading_the_body_gets_504_after_timeouts_send() {
    let server = never_reading_server().await;
    let p = porter_for(&format!("http://{server}"), "", "      send: 500ms\n").await;
    let started = Instant::now();
    let body = vec![b'x'; 16 << 20];
    let r = plain_client().post(format!("http://{}/up", p.http.unwrap())).body(body).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(r.text().await.unwrap().contains("stopped reading the request body"));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // The server's failure: counted against it.
    assert_eq!(server_state(&p).await.0, 1);
    p.stop().await;
}

#[tokio::test]
async fn a_server_that_stalls_mid_body_is_cut_after_timeouts_read() {
    let server = stalling_server().await;
    let p = porter_for(&format!("http://{server}"), "", "      read: 500ms\n").await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(p.http.unwrap()).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let answer = read_answer(&mut stream, Duration::from_secs(10)).await;
    let took = started.elapsed();
    // The head and the half that came, then a close: never a complete-looking response.
    assert!(answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("half"), "{answer}");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(5), "{took:?}");
    assert_eq!(server_state(&p).await.0, 1, "a stalled body is the server's failure");
    p.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_body_timeout() {
    let b = Backend::start("big").await;
    let p = porter_for(&b.url(), "  body_timeout: 500ms\n", "").await;
    let mut stream = TcpStream::connect(p.http.unwrap()).await.unwrap();
    stream.write_all(b"GET /bytes/67108864 HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    // Read nothing: porter's writes fill the socket buffers and then wait on us.
    let started = Instant::now();
    let mut in_flight = u64::MAX;
    while started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = status(&p).await;
        in_flight = status["upstreams"][0]["servers"][0]["in_flight"].as_u64().unwrap();
        if in_flight == 0 {
            break;
        }
    }
    assert_eq!(in_flight, 0, "the request still holds its server after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_millis(400));
    // What we do read ends early: the connection was closed mid-body.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("the connection was not closed"),
        }
    }
    assert!(got < 67_108_864, "{got}");
    assert_server_untouched(&p).await;
    p.stop().await;
}

/// A server that answers every request with a 101 nobody asked for.
async fn switching_server() -> SocketAddr {
    let switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n";
    answer_then_silence(switching, Duration::from_secs(5)).await
}

/// A 101 to a request that asked for no upgrade is a bad response (502), on every
/// client path: no body and small bodies (porter's own), chunked and large (hyper's).
#[tokio::test]
async fn an_unasked_101_is_502_on_every_path() {
    let server = switching_server().await;
    let mut large = sized_head(100_000);
    large.extend_from_slice(&vec![b'x'; 100_000]);
    let mut small = sized_head(10);
    small.extend_from_slice(b"0123456789");
    let chunked = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for bytes in [&get[..], &small[..], &chunked[..], &large[..]] {
        let p = porter_for(&format!("http://{server}"), "", "").await;
        let mut stream = TcpStream::connect(p.http.unwrap()).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut got = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut got)).await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&got[..n]);
        assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
        p.stop().await;
    }
}
