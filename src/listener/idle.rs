//! `limits.idle_timeout` for HTTP/2 client connections: one on which no byte
//! has moved for that long is closed gracefully (GOAWAY, its streams end
//! first), so only keep-alive time is cut, never a request. porter's HTTP/1.1
//! server times its own wait between requests (`listener::http1`).
//!
//! Activity is the time of the last read or write that moved bytes, one
//! relaxed store per I/O call; one timer per connection checks it.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::clock::now_ms;

/// When a connection last moved a byte, in milliseconds since porter's clock epoch.
#[derive(Debug)]
pub(crate) struct Activity(AtomicU64);

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity(AtomicU64::new(now_ms())))
    }

    fn touch(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }

    /// Resolves once the connection has been idle for `timeout`.
    pub(crate) async fn expired(&self, timeout: Duration) {
        let timeout_ms = timeout.as_millis().max(1) as u64;
        loop {
            let deadline = self.0.load(Ordering::Relaxed) + timeout_ms;
            let now = now_ms();
            if now >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(deadline - now)).await;
        }
    }
}

/// A client stream that records its activity.
#[derive(Debug)]
pub(crate) struct IdleIo<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO> IdleIo<IO> {
    pub(crate) fn new(io: IO, activity: Arc<Activity>) -> IdleIo<IO> {
        IdleIo { io, activity }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for IdleIo<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for IdleIo<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
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
