//! The client connection's stream as the connection servers use it:
//!
//! - [`ClientIo`]: plain TCP (after any PROXY header) or TLS, one concrete type;
//! - [`split`]: a read side that a request body may carry into another task
//!   (an HTTP/2 upstream's connection task) while the write side answers;
//! - waiting for readability without holding a buffer, and a small per-thread
//!   pool of read buffers, so an idle keep-alive connection holds no buffer.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::proxy_protocol::ClientStream;

pub(crate) use super::tls_stream::TlsServerStream as TlsStream;

/// A client connection, plain or TLS.
pub(crate) enum ClientIo {
    Plain(ClientStream),
    Tls(Box<TlsStream>),
}

impl ClientIo {
    /// Ready when a read would return data or the end, without reading.
    fn poll_wait_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ClientIo::Plain(stream) => stream.poll_wait_readable(cx),
            // Plaintext already decrypted (a pipelined request) or the peer's
            // close_notify is ready without the socket.
            ClientIo::Tls(tls) => tls.poll_wait_readable(cx),
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write(cx, data),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Plain(s) => s.is_write_vectored(),
            ClientIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Splits the stream. Each poll takes an uncontended lock: the two sides are
/// used from different tasks only while a request body is streaming upstream.
pub(crate) fn split(io: ClientIo) -> (ReadSide, WriteSide) {
    let shared = Arc::new(Mutex::new(io));
    (ReadSide(shared.clone()), WriteSide(shared))
}

/// Puts the two sides back together (for an upgraded connection's tunnel).
pub(crate) fn unsplit(read: ReadSide, write: WriteSide) -> Option<ClientIo> {
    drop(write);
    Arc::try_unwrap(read.0).ok().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
}

fn lock(shared: &Mutex<ClientIo>) -> MutexGuard<'_, ClientIo> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct ReadSide(Arc<Mutex<ClientIo>>);
pub(crate) struct WriteSide(Arc<Mutex<ClientIo>>);

impl ReadSide {
    pub fn poll_wait_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(&self.0).poll_wait_readable(cx)
    }

    /// Waits until a read would make progress, holding no buffer.
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_wait_readable(cx)).await
    }

    /// Reads into the spare capacity of `buf`; `Ok(0)` is the end of input.
    pub fn poll_read_into(&self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        if buf.capacity() - buf.len() < MIN_READ {
            buf.reserve(BUFFER_SIZE);
        }
        let mut io = lock(&self.0);
        // The reserve above leaves room, so this reads straight into the spare capacity.
        tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf)
    }

    pub async fn read_into(&self, buf: &mut BytesMut) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_into(cx, buf)).await
    }
}

impl AsyncWrite for WriteSide {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *lock(&self.0)).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *lock(&self.0)).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        lock(&self.0).is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_shutdown(cx)
    }
}

/// Read buffers: a head fits in one; a body streams through it.
pub(crate) const BUFFER_SIZE: usize = 8 * 1024;
/// Below this much free room a read first makes more.
const MIN_READ: usize = 1024;
/// Buffers kept per thread for the next busy connection.
const POOL_PER_THREAD: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A read buffer from this thread's pool, or a new one.
/// One vectored write of as much of `out` as `io` takes now (at most four of
/// its pieces), which is then advanced past what went.
pub(crate) fn poll_write_some<W: AsyncWrite + Unpin + ?Sized>(
    io: &mut W,
    cx: &mut Context<'_>,
    out: &mut (dyn bytes::Buf + Send),
) -> Poll<io::Result<usize>> {
    let mut slices = [IoSlice::new(&[]); 4];
    let count = out.chunks_vectored(&mut slices);
    let written = std::task::ready!(Pin::new(io).poll_write_vectored(cx, &slices[..count]))?;
    out.advance(written);
    Poll::Ready(Ok(written))
}

pub(crate) fn take_buffer() -> BytesMut {
    POOL.with(|pool| pool.borrow_mut().pop()).unwrap_or_else(|| BytesMut::with_capacity(BUFFER_SIZE))
}

/// Gives a buffer back for reuse (its contents are dropped). One whose memory is still shared
/// (a body chunk or header value not yet dropped) cannot be reused whole and
/// is let go; so is one that grew for a large head.
pub(crate) fn give_back(mut buf: BytesMut) {
    buf.clear();
    if !buf.try_reclaim(BUFFER_SIZE) || buf.capacity() > 2 * BUFFER_SIZE {
        return;
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_PER_THREAD {
            pool.push(buf);
        }
    });
}
