//! Raw bytes over HTTP/1.1, for the tests that need exact framing on either side:
//! a server answering canned bytes, and a client exchange read to porter's close.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A keep-alive HTTP/1.1 server speaking raw bytes: each request head it reads (up to and
/// including the blank line) goes to `answer`, whose bytes are written back; `None` closes
/// the connection without an answer.
pub async fn raw_server<F>(answer: F) -> SocketAddr
where
    F: Fn(&[u8]) -> Option<&'static [u8]> + Clone + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head: Vec<u8> = pending.drain(..end + 4).collect();
                    let Some(bytes) = answer(&head) else { return };
                    if stream.write_all(bytes).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// [`raw_server`] answering each request with what `answer` gives for its request target
/// ("" when there is none).
pub async fn canned_server(answer: fn(&str) -> &'static [u8]) -> SocketAddr {
    raw_server(move |head| Some(answer(String::from_utf8_lossy(head).split(' ').nth(1).unwrap_or("")))).await
}

/// Sends `bytes`, reads until porter closes (5 s at most); returns everything it answered.
pub async fn to_close(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_to_close(&mut stream, bytes).await
}

/// Reads until porter closes (5 s at most, else the test fails naming `sent`).
pub async fn read_to_close(stream: &mut TcpStream, sent: &[u8]) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "porter kept the connection open after {:?}", String::from_utf8_lossy(sent));
    String::from_utf8_lossy(&got).into_owned()
}

/// The first line of an answer.
pub fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}
