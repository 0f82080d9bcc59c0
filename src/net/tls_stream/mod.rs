//! A TLS server connection over TCP that holds no buffer while idle.
//!
//! Built on rustls' unbuffered API: porter owns the ciphertext buffers. The
//! incoming and outgoing record buffers come from a small per-thread pool only
//! while they hold bytes and go back as soon as they are empty; waiting for the
//! client's next request needs none (readiness, not a read). What an idle
//! connection keeps is the rustls session (keys, AEAD contexts) and the socket.
//!
//! rustls 0.23 hands decrypted records over as owned chunks: a record the
//! caller's buffer cannot take whole keeps its rest in `plain` until read.
//!
//! - `buffers`: the per-thread pool of record buffers;
//! - `records`: records encoded and encrypted into a buffer;
//! - `state_machine`: rustls' state machine driven for a read, a write, the
//!   handshake or the close.

mod buffers;
mod records;
mod state_machine;
#[cfg(test)]
mod tests;

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::proxy_protocol::ClientStream;
use crate::tls::LoadedCert;
use buffers::{release_if_empty, Buf, BUF_SIZE, MAX_RECORD};
use state_machine::{Outcome, Want};

pub(crate) struct TlsServerStream {
    io: ClientStream,
    conn: UnbufferedServerConnection,
    incoming: Option<Buf>,
    outgoing: Option<Buf>,
    /// Decrypted bytes not yet read, from `plain_pos`.
    plain: Vec<u8>,
    plain_pos: usize,
    peer_closed: bool,
    close_queued: bool,
    failed: bool,
    sni_cert: Option<Arc<LoadedCert>>,
}

impl TlsServerStream {
    pub(crate) fn new(config: Arc<ServerConfig>, io: ClientStream) -> Result<TlsServerStream, rustls::Error> {
        Ok(TlsServerStream {
            io,
            conn: UnbufferedServerConnection::new(config)?,
            incoming: None,
            outgoing: None,
            plain: Vec::new(),
            plain_pos: 0,
            peer_closed: false,
            close_queued: false,
            failed: false,
            sni_cert: None,
        })
    }

    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    pub(crate) fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The loaded certificate the client's SNI names exactly, if any (once, after the handshake).
    pub(crate) fn take_sni_cert(&mut self) -> Option<Arc<LoadedCert>> {
        self.sni_cert.take()
    }

    /// Runs the handshake to its end (the client's Finished received, session
    /// tickets and the server's last flight written).
    pub(crate) async fn handshake(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_handshake(cx)).await
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.step(Want::Handshake)? {
                Outcome::Done(_) => return self.poll_flush_out(cx),
                Outcome::Eof => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Outcome::NeedInput => {
                    if !ready!(self.poll_fill(cx))? {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed during the TLS handshake",
                        )));
                    }
                }
            }
        }
    }

    /// Ready when a read would return data or the end, without holding a buffer to wait.
    pub(crate) fn poll_wait_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.plain_pos < self.plain.len() || self.peer_closed || self.failed {
            return Poll::Ready(Ok(()));
        }
        loop {
            match self.step(Want::Peek) {
                Err(_) | Ok(Outcome::Done(_)) | Ok(Outcome::Eof) => return Poll::Ready(Ok(())),
                // A read reports the end (clean or not) and any error.
                Ok(Outcome::NeedInput) => match ready!(self.poll_fill(cx)) {
                    Ok(true) => continue,
                    Ok(false) | Err(_) => return Poll::Ready(Ok(())),
                },
            }
        }
    }
    /// Reads more ciphertext, first writing what is owed (a handshake flight, tickets,
    /// a key update). `false` is the end of the stream. Waits holding no buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if let Poll::Ready(Err(e)) = self.poll_flush_out(cx) {
            return Poll::Ready(Err(e));
        }
        if self.incoming.is_none() {
            ready!(self.io.poll_wait_readable(cx))?;
        }
        let buf = self.incoming.get_or_insert_with(Buf::take);
        if buf.start > 0 && buf.data.len() - buf.end < MAX_RECORD {
            buf.data.copy_within(buf.start..buf.end, 0);
            buf.end -= buf.start;
            buf.start = 0;
        }
        if buf.end == buf.data.len() {
            // A handshake message spanning more records than the buffer holds.
            buf.data.resize(buf.data.len() + BUF_SIZE, 0);
        }
        let mut read = ReadBuf::new(&mut buf.data[buf.end..]);
        let polled = Pin::new(&mut self.io).poll_read(cx, &mut read);
        let n = read.filled().len();
        buf.end += n;
        let result = match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(n > 0)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        };
        release_if_empty(&mut self.incoming);
        result
    }

    /// Writes `outgoing` to the socket; ready once it is empty (and given back).
    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(out) = &mut self.outgoing {
            if out.start == out.end {
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &out.data[out.start..out.end]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            out.start += n;
        }
        release_if_empty(&mut self.outgoing);
        Poll::Ready(Ok(()))
    }

    fn poll_write_slices(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        // Written bytes wait in `outgoing`; beyond one record's worth, wait for the socket.
        if self.poll_flush_out(cx)?.is_pending() {
            let out = self.outgoing.as_mut().expect("pending bytes");
            if out.data.len() - out.end < MAX_RECORD {
                if out.start > 0 {
                    out.data.copy_within(out.start..out.end, 0);
                    out.end -= out.start;
                    out.start = 0;
                }
                if out.data.len() - out.end < MAX_RECORD {
                    return Poll::Pending;
                }
            }
        }
        let n = match self.step(Want::Write(bufs))? {
            Outcome::Done(n) => n,
            // Still in the handshake (not reachable after `handshake`).
            _ => return Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        };
        // Send now; what the socket does not take is written by the next call or flush.
        if let Poll::Ready(Err(e)) = self.poll_flush_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for TlsServerStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, dst: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.plain_pos < this.plain.len() {
            let n = (this.plain.len() - this.plain_pos).min(dst.remaining());
            dst.put_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
            this.plain_pos += n;
            if this.plain_pos == this.plain.len() {
                // Let the memory go: an idle connection keeps no plaintext buffer.
                this.plain = Vec::new();
                this.plain_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if this.peer_closed || dst.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.step(Want::Read(dst))? {
                Outcome::Done(_) | Outcome::Eof => return Poll::Ready(Ok(())),
                Outcome::NeedInput => {
                    if !ready!(this.poll_fill(cx))? {
                        // The TCP end without close_notify: the end of input at a record
                        // boundary, a truncation inside one.
                        if this.incoming.is_some() {
                            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                        }
                        this.peer_closed = true;
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}

impl AsyncWrite for TlsServerStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued && !this.failed {
            this.close_queued = true;
            this.step(Want::Close)?;
        }
        ready!(this.poll_flush_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
