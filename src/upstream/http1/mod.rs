//! porter's own HTTP/1.1 client for the keep-alive connections to a server:
//! the request head is written from the prepared request in one buffer, the
//! body streamed after it, and the response head parsed with httparse into
//! the same shared-bytes form as the client side. The response body is read
//! by the request's own task straight into the buffer its frames are split
//! from (no connection task, no channel between tasks, no copy), and the
//! connection goes back to the pool when that body has been read to its end.
//!
//! Upgrades (WebSocket) stay on hyper's client (`connect::connect_http1`).
//!
//! - `send`: writing a request and reading its response head on a connection;
//! - `head`: the request head written, the response head parsed;
//! - `stream`: the response body read from the connection it rides on.

mod head;
mod send;
mod stream;

pub(crate) use head::{end_head, write_field, write_request_line};
pub(crate) use head::{write_request_head, Framing};
pub(crate) use stream::{ReadTimedOut, ResponseStream};

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::header;
use http::Request;
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::body::{ClientFault, RequestBody};

/// A response head larger than this is refused (502), as hyper's client does at 400 KiB.
pub(super) const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Reads of a response body ask for up to this much at once.
const MAX_BODY_READ: usize = 64 * 1024;

/// A connection to a server, plain or TLS.
pub enum ServerIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl ServerIo {
    fn tcp(&self) -> &TcpStream {
        match self {
            ServerIo::Plain(tcp) => tcp,
            ServerIo::Tls(tls) => tls.get_ref().0,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            ServerIo::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            ServerIo::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for ServerIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, data))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// The upstream's time limits for one exchange.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub response_header: Duration,
    pub send: Duration,
    pub read: Duration,
}

/// A keep-alive connection to a server, and the address it went to.
pub struct Conn {
    io: ServerIo,
    /// Read buffer: none while the connection idles in the pool.
    buf: Option<BytesMut>,
    /// The response-header timer, kept from request to request: moving a
    /// registered timer later costs an atomic store, a new one a trip through
    /// the timer wheel and back.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    pub addr: SocketAddr,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("addr", &self.addr).finish()
    }
}

/// Why a request on a connection failed.
#[derive(Debug)]
pub enum SendError {
    /// The connection closed or failed before any byte of a response came;
    /// `body_started`: some of the request body had been taken from the client;
    /// `head_sent`: the whole head was written, so the server may have acted on it.
    Closed { body_started: bool, head_sent: bool },
    /// The request body passed `max_body_bytes`.
    BodyTooLarge,
    /// The client's body failed: its fault, never the server's.
    Client(ClientFault),
    /// The server took none of the request body for `timeouts.send`.
    SendTimedOut,
    /// The server's answer is not HTTP/1.x, or its head is too large.
    BadResponse,
    /// No response head before the deadline.
    TimedOut,
}

/// Bodies up to this size go over porter's own client, which writes the whole
/// body before reading the answer: they fit the socket buffers even when a
/// server answers while it reads (an echo). Larger and unsized ones go over
/// hyper's client, which reads the answer while it still sends.
pub(crate) const MAX_OWN_BODY: u64 = 64 * 1024;

/// Whether a request goes over porter's own client: no upgrade, and no body or
/// a small one of known size.
pub(crate) fn takes(request: &Request<RequestBody>) -> bool {
    !request.headers().contains_key(header::UPGRADE) && takes_body(request.body())
}

/// Whether porter's own client takes a request with this body (see [`takes`]).
pub(crate) fn takes_body(body: &RequestBody) -> bool {
    body.is_end_stream() || body.size_hint().exact().is_some_and(|n| n <= MAX_OWN_BODY)
}
