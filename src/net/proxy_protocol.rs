//! PROXY protocol v1 (text) and v2 (binary) from an L4 balancer in front
//! (`listen.proxy_protocol: true`), parsed with the `ppp` crate.
//!
//! The header is read before anything else on the connection (before TLS on
//! the https listener). Its source address becomes the client address for
//! everything after: forwarding headers, trust, balancing and the access log.
//! A connection that does not open with a valid header is closed, and so is
//! one whose header has not arrived whole within `header_read_timeout`. A v2
//! `LOCAL` header (the balancer's own health check) and v1 `UNKNOWN` keep the
//! TCP peer as the client. Bytes read past the header (a client's TLS hello
//! often arrives in the same segment) are handed on through [`ClientStream`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Longest header accepted: v1 is at most 107 bytes; v2 is 16 plus addresses and
/// TLVs, which balancers keep to a few hundred bytes.
const MAX_HEADER: usize = 1024;

/// Reads the PROXY header from `stream` within `timeout`. Returns the client address
/// it names (`None`: keep the TCP peer) and the stream with any bytes read past it.
pub(crate) async fn read_header(
    mut stream: TcpStream,
    timeout: Duration,
) -> Result<(Option<SocketAddr>, ClientStream), String> {
    let mut buf = Vec::with_capacity(256);
    let read = async {
        loop {
            if buf.len() >= MAX_HEADER {
                return Err(format!("no complete PROXY header in the first {MAX_HEADER} bytes"));
            }
            let mut chunk = [0u8; 256];
            let want = chunk.len().min(MAX_HEADER - buf.len());
            let n = stream.read(&mut chunk[..want]).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed before a complete PROXY header".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            let parsed = HeaderResult::parse(&buf);
            if parsed.is_incomplete() {
                continue;
            }
            return source(parsed);
        }
    };
    let (source, used) = match tokio::time::timeout(timeout, read).await {
        Ok(result) => result?,
        Err(_) => return Err("PROXY header not received within header_read_timeout".into()),
    };
    let mut rest = Bytes::from(buf);
    rest.advance(used);
    Ok((source, ClientStream { prefix: rest, inner: stream }))
}

/// The source address a complete header names, and the header's length in bytes.
fn source(parsed: HeaderResult<'_>) -> Result<(Option<SocketAddr>, usize), String> {
    match parsed {
        HeaderResult::V1(Ok(header)) => {
            let addr = match header.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Ok((addr, header.header.len()))
        }
        HeaderResult::V2(Ok(header)) => {
            let addr = match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => None,
            };
            Ok((addr, header.header.len()))
        }
        HeaderResult::V1(Err(e)) => Err(format!("invalid PROXY header: {e}")),
        HeaderResult::V2(Err(e)) => Err(format!("invalid PROXY header: {e}")),
    }
}

/// A client's TCP stream, replaying first any bytes read ahead of the PROXY header.
#[derive(Debug)]
pub(crate) struct ClientStream {
    prefix: Bytes,
    inner: TcpStream,
}

impl ClientStream {
    pub(crate) fn new(inner: TcpStream) -> ClientStream {
        ClientStream { prefix: Bytes::new(), inner }
    }

    /// Ready when a read would return data or the end, without reading.
    pub(crate) fn poll_wait_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_read_ready(cx)
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        (client, listener.accept().await.unwrap().0)
    }

    #[tokio::test]
    async fn v1_header_then_payload_in_one_segment() {
        let (mut client, server) = pair().await;
        client.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n").await.unwrap();
        let (addr, mut stream) = read_header(server, Duration::from_secs(2)).await.unwrap();
        assert_eq!(addr, Some("203.0.113.7:51234".parse().unwrap()));
        let mut rest = [0u8; 16];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn v2_local_keeps_the_peer_and_garbage_is_refused() {
        let (mut client, server) = pair().await;
        let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        client.write_all(&local).await.unwrap();
        let (addr, _) = read_header(server, Duration::from_secs(2)).await.unwrap();
        assert_eq!(addr, None);

        let (mut client, server) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(read_header(server, Duration::from_secs(2)).await.is_err());
    }
}
