//! The HTTP/1.1 client stream as hyper reads it, watched on the way in:
//! every byte goes through a [`Framing`] follower first, which gives
//! - the requests with both Content-Length and Transfer-Encoding, or a chunked
//!   body malformed in bytes that came with the head, for the pipeline to
//!   answer 400 and close ([`HeadVerdict`]) before routing;
//! - where each request head starts and ends, for `limits.header_read_timeout`:
//!   a head not complete in time gets `408 Request Timeout` written here, then
//!   the stream reports end of input and hyper closes the connection. (hyper's
//!   own header timer closes without a word, and also runs while a keep-alive
//!   connection waits for its next request, cutting idle connections long
//!   before `idle_timeout`; it is off.)
//!
//! The timer is armed only when a head is split across reads, so a request
//! whose head arrives whole costs no timer work. A fresh connection is timed
//! from its start: one that sends nothing is closed silently, like nginx.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::framing::Framing;

const TIMEOUT_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n\
content-length: 51\r\nconnection: close\r\n\r\n408 Request Timeout: request headers took too long\n";

/// What the guard learnt about a connection's requests, for the pipeline.
#[derive(Debug)]
pub struct HeadVerdict {
    /// Index of the first request with ambiguous or malformed framing.
    ambiguous_from: AtomicU64,
    /// Requests the pipeline has taken so far on this connection.
    taken: AtomicU64,
    /// Set once the connection is a tunnel (101): its bytes are no longer HTTP.
    tunnel: AtomicBool,
}

impl Default for HeadVerdict {
    fn default() -> Self {
        HeadVerdict {
            ambiguous_from: AtomicU64::new(u64::MAX),
            taken: AtomicU64::new(0),
            tunnel: AtomicBool::new(false),
        }
    }
}

impl HeadVerdict {
    /// Called once per HTTP/1.x request, in order: whether its head had
    /// ambiguous or malformed framing. hyper parses a head only after the guard saw it.
    pub fn take_next_is_ambiguous(&self) -> bool {
        let index = self.taken.fetch_add(1, Ordering::Relaxed);
        index >= self.ambiguous_from.load(Ordering::Relaxed)
    }

    /// The connection is about to become a tunnel.
    pub fn tunnel(&self) {
        self.tunnel.store(true, Ordering::Relaxed);
    }
}

/// Something that holds a connection's [`HeadVerdict`].
pub trait HasVerdict: Send + Sync + 'static {
    fn verdict(&self) -> &HeadVerdict;
}

/// An HTTP/1.1 client stream with the framing follower and the head timer.
pub struct H1Guard<IO, C> {
    io: IO,
    framing: Framing,
    conn: Arc<C>,
    timeout: Duration,
    /// When the current head's time started: the connection's start for the
    /// first request, else the head's first byte; None between requests.
    head_since: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Bytes of the 408 written so far, once it is due.
    reply: Option<usize>,
}

impl<IO, C: HasVerdict> H1Guard<IO, C> {
    pub fn new(io: IO, conn: Arc<C>, timeout: Duration) -> H1Guard<IO, C> {
        H1Guard {
            io,
            framing: Framing::new(),
            conn,
            timeout,
            head_since: Some(Instant::now()),
            sleep: None,
            reply: None,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: HasVerdict> H1Guard<IO, C> {
    /// Writes the 408 in full, then reports end of input.
    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some(done) = self.reply.filter(|&n| n < TIMEOUT_408.len()) {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &TIMEOUT_408[done..]))?;
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            self.reply = Some(done + n);
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    /// After a read returned Pending: is the head out of time?
    fn head_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(since) = self.head_since else { return false };
        let deadline = since + self.timeout;
        match &mut self.sleep {
            Some(sleep) if sleep.deadline() == deadline => {}
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.sleep.as_mut().is_some_and(|s| s.as_mut().poll(cx).is_ready())
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: HasVerdict> AsyncRead for H1Guard<IO, C> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.reply.is_some() {
            return this.poll_reply(cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if !this.framing.following() {
                    return Poll::Ready(Ok(()));
                }
                if this.conn.verdict().tunnel.load(Ordering::Relaxed) {
                    this.framing.stop();
                    this.head_since = None;
                    return Poll::Ready(Ok(()));
                }
                this.framing.feed(&buf.filled()[before..]);
                if let Some(index) = this.framing.rejected() {
                    this.conn.verdict().ambiguous_from.fetch_min(index, Ordering::Relaxed);
                }
                // Between requests nothing is timed (idle_timeout is); a head is
                // timed from its first byte (or the connection's start).
                if !this.framing.head_in_progress() {
                    this.head_since = None;
                } else if this.head_since.is_none() {
                    this.head_since = Some(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.framing.following() && this.head_expired(cx) {
                    this.head_since = None;
                    if !this.framing.head_in_progress() {
                        // A fresh connection that never sent a byte: close quietly.
                        return Poll::Ready(Ok(()));
                    }
                    tracing::debug!("request head not complete within header_read_timeout: 408");
                    this.reply = Some(0);
                    return this.poll_reply(cx);
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin, C> AsyncWrite for H1Guard<IO, C> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Default)]
    struct Conn(HeadVerdict);
    impl HasVerdict for Conn {
        fn verdict(&self) -> &HeadVerdict {
            &self.0
        }
    }

    #[tokio::test]
    async fn a_slow_head_gets_408_and_end_of_input() {
        let (client, server) = tokio::io::duplex(4096);
        let mut guard = H1Guard::new(server, Arc::new(Conn::default()), Duration::from_millis(200));
        let (mut client_read, mut client_write) = tokio::io::split(client);
        client_write.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = guard.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\nHost: x\r\n");
        let start = Instant::now();
        assert_eq!(guard.read(&mut buf).await.unwrap(), 0, "end of input after the 408");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(150) && took < Duration::from_secs(2), "{took:?}");
        let mut reply = vec![0u8; TIMEOUT_408.len()];
        client_read.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply, TIMEOUT_408);
    }

    #[tokio::test]
    async fn a_silent_fresh_connection_closes_quietly_and_idle_keepalive_is_not_timed() {
        let (_client, server) = tokio::io::duplex(4096);
        let mut guard = H1Guard::new(server, Arc::new(Conn::default()), Duration::from_millis(100));
        let mut buf = [0u8; 64];
        assert_eq!(guard.read(&mut buf).await.unwrap(), 0);
        assert_eq!(guard.reply, None);

        let (mut client, server) = tokio::io::duplex(4096);
        let mut guard = H1Guard::new(server, Arc::new(Conn::default()), Duration::from_millis(100));
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(guard.read(&mut buf).await.unwrap() > 0);
        // A whole head, then keep-alive silence well past the head timeout: the guard waits on.
        let read = tokio::time::timeout(Duration::from_millis(400), guard.read(&mut buf)).await;
        assert!(read.is_err(), "an idle keep-alive connection is not the head timer's business");
    }

    #[tokio::test]
    async fn the_408_body_length_is_right() {
        assert_eq!(TIMEOUT_408.len() - TIMEOUT_408.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4, 51);
    }
}
