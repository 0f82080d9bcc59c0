//! porter's own HTTP/1.1 client for the keep-alive connections to a server:
//! the request head is written from the prepared request in one buffer, the
//! body streamed after it, and the response head parsed with httparse into
//! the same shared-bytes form as the client side. The response body is read
//! by the request's own task straight into the buffer its frames are split
//! from (no connection task, no channel between tasks, no copy), and the
//! connection goes back to the pool when that body has been read to its end.
//!
//! Upgrades (WebSocket) stay on hyper's client (`connect::connect_http1`).

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header;
use http::{Method, Request, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::body::{BodyTooLarge, BoxError, ClientBodyError, ClientFault, RequestBody};
use crate::http1::chunked::{Chunked, Step};
use crate::http1::fields::{self, Kind, RawFields};
use crate::http1::request::{has_token, Span, MAX_FIELDS};
use crate::http1::response::chunk_size_line;
use crate::net::io::{give_back, poll_write_some, take_buffer};

/// A response head larger than this is refused (502), as hyper's client does at 400 KiB.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
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

impl Conn {
    pub fn new(io: ServerIo, addr: SocketAddr) -> Conn {
        Conn { io, buf: None, timer: None, addr }
    }

    /// An idle connection is usable while the server has sent nothing on it:
    /// a close (FIN), a reset or stray bytes all end it.
    pub fn is_usable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.io.tcp().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes `head` and streams `body` after it in `framing`, then reads the
    /// response head. The `response_header` timer starts once the request is
    /// sent whole (else `TimedOut`); while a body is going out, a server that
    /// takes none of it for `timeouts.send` ends it (`SendTimedOut`), and a
    /// client that sends none for `limits.body_timeout` is the body's own
    /// error (`Client`). On success the connection rides inside the body.
    pub async fn send(
        mut self,
        head: &[u8],
        body: &mut RequestBody,
        framing: Framing,
        method: &Method,
        timeouts: Timeouts,
    ) -> Result<(http::response::Parts, ResponseStream), SendError> {
        let mut timer = self.timer.take().unwrap_or_else(|| Box::pin(tokio::time::sleep(timeouts.response_header)));
        let exchanged = if framing == Framing::None {
            // A bodiless request: its head is one write, inside the answer's time.
            timer.as_mut().reset(tokio::time::Instant::now() + timeouts.response_header);
            tokio::select! {
                biased;
                exchanged = self.exchange(head, body, framing, method, None) => exchanged,
                _ = timer.as_mut() => return Err(SendError::TimedOut),
            }
        } else {
            let send = Some((&mut timer, timeouts));
            self.exchange(head, body, framing, method, send).await
        };
        self.timer = Some(timer);
        let Parsed { parts, kind, keep_alive, raw } = exchanged?;
        Ok((parts, ResponseStream::new(self, kind, keep_alive, raw, timeouts.read)))
    }

    /// `send`'s exchange. With `send` (a request with a body), writes to the
    /// server are bounded by `timeouts.send` and then the response head by
    /// `response_header`, both on the connection's kept timer.
    async fn exchange(
        &mut self,
        head: &[u8],
        body: &mut RequestBody,
        framing: Framing,
        method: &Method,
        mut send: Option<(&mut Pin<Box<tokio::time::Sleep>>, Timeouts)>,
    ) -> Result<Parsed, SendError> {
        let mut body_started = false;
        let written = match send.as_mut() {
            None => self.write_request(head, body, framing, &mut body_started, None).await,
            Some((timer, timeouts)) => {
                self.write_request(head, body, framing, &mut body_started, Some((&mut **timer, timeouts.send))).await
            }
        };
        let early_answer = match written {
            Ok(()) => false,
            Err(WriteFailure::Body(e)) => return Err(e),
            // The server may have answered early and closed (413, 401): read what it said.
            Err(WriteFailure::Io) => true,
        };
        let read = match send {
            None => self.read_head(method).await,
            Some((timer, timeouts)) => {
                timer.as_mut().reset(tokio::time::Instant::now() + timeouts.response_header);
                tokio::select! {
                    biased;
                    read = self.read_head(method) => read,
                    _ = timer.as_mut() => return Err(SendError::TimedOut),
                }
            }
        };
        match read {
            // The connection failed under the request: never kept.
            Ok(parsed) if early_answer => Ok(Parsed { keep_alive: false, ..parsed }),
            Ok(parsed) => Ok(parsed),
            Err(SendError::Closed { .. }) if early_answer => {
                Err(SendError::Closed { body_started, head_sent: body_started })
            }
            Err(SendError::Closed { .. }) => Err(SendError::Closed { body_started, head_sent: true }),
            Err(e) => Err(e),
        }
    }

    async fn write_request(
        &mut self,
        head: &[u8],
        body: &mut RequestBody,
        framing: Framing,
        body_started: &mut bool,
        mut send: Option<(&mut Pin<Box<tokio::time::Sleep>>, Duration)>,
    ) -> Result<(), WriteFailure> {
        let mut body = Pin::new(body);
        if framing == Framing::None {
            self.io.write_all(head).await.map_err(|_| WriteFailure::Io)?;
            return self.io.flush().await.map_err(|_| WriteFailure::Io);
        }
        // Every write of a body waits on the server: bounded by `timeouts.send`, moved on
        // at each write that makes progress.
        let io = &mut self.io;
        let mut send_all = async |out: &mut (dyn Buf + Send)| -> Result<(), WriteFailure> {
            write_bounded(io, out, send.as_mut().map(|(timer, limit)| (&mut **timer, *limit))).await
        };
        let mut pending_head = head;
        loop {
            // The head goes out with the first frame when that is ready at once.
            let polled = std::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await;
            let frame = match polled {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    if !pending_head.is_empty() {
                        send_all(&mut pending_head).await?;
                    }
                    std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await
                }
            };
            *body_started = true;
            let frame = match frame {
                None => {
                    let end: &[u8] = if framing == Framing::Chunked { b"0\r\n\r\n" } else { b"" };
                    let mut out = pending_head.chain(end);
                    return send_all(&mut out).await;
                }
                Some(Err(e)) => {
                    let error = match ClientBodyError::find(&*e) {
                        _ if e.is::<BodyTooLarge>() => SendError::BodyTooLarge,
                        Some(fault) => SendError::Client(fault),
                        None => SendError::Client(ClientFault::Gone),
                    };
                    return Err(WriteFailure::Body(error));
                }
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) if framing == Framing::Chunked && !data.is_empty() => {
                    let (line, len) = chunk_size_line(data.len());
                    let mut out = pending_head.chain(&line[..len]).chain(&data[..]).chain(&b"\r\n"[..]);
                    send_all(&mut out).await?;
                }
                Ok(data) => {
                    let mut out = pending_head.chain(&data[..]);
                    send_all(&mut out).await?;
                }
                Err(frame) => {
                    // Trailers end a chunked body; on a sized body they have no place.
                    let Ok(trailers) = frame.into_trailers() else { continue };
                    if framing != Framing::Chunked {
                        continue;
                    }
                    let mut end = BytesMut::with_capacity(64);
                    end.extend_from_slice(pending_head);
                    crate::http1::response::write_last_chunk(&mut end, Some(&trailers));
                    return send_all(&mut &end[..]).await;
                }
            }
            pending_head = b"";
        }
    }

    /// Reads the response head, skipping interim (1xx) answers.
    async fn read_head(&mut self, method: &Method) -> Result<Parsed, SendError> {
        let buf = self.buf.get_or_insert_with(take_buffer);
        let mut received = false;
        loop {
            if !buf.is_empty() {
                received = true;
                match parse_response(buf, method)? {
                    // A switch nobody asked for (upgrades go over hyper's client).
                    Some(parsed) if parsed.parts.status == StatusCode::SWITCHING_PROTOCOLS => {
                        return Err(SendError::BadResponse)
                    }
                    Some(parsed) if parsed.parts.status.is_informational() => continue,
                    Some(parsed) => return Ok(parsed),
                    None if buf.len() >= MAX_RESPONSE_HEAD => return Err(SendError::BadResponse),
                    None => {}
                }
            }
            match read_some(&mut self.io, buf, crate::net::io::BUFFER_SIZE).await {
                Ok(0) | Err(_) if !received => return Err(SendError::Closed { body_started: false, head_sent: true }),
                Ok(0) | Err(_) => return Err(SendError::BadResponse),
                Ok(_) => {}
            }
        }
    }
}

enum WriteFailure {
    Io,
    Body(SendError),
}

/// Writes all of `out` and flushes; with `bound`, each wait for the server to
/// take more is limited to its duration (moved on after every write that made
/// progress), and running out is the server's failure (`SendTimedOut`).
async fn write_bounded(
    io: &mut ServerIo,
    out: &mut (dyn Buf + Send),
    bound: Option<(&mut Pin<Box<tokio::time::Sleep>>, Duration)>,
) -> Result<(), WriteFailure> {
    let Some((timer, limit)) = bound else {
        while out.has_remaining() {
            match std::future::poll_fn(|cx| poll_write_some(io, cx, out)).await {
                Ok(0) | Err(_) => return Err(WriteFailure::Io),
                Ok(_) => {}
            }
        }
        return io.flush().await.map_err(|_| WriteFailure::Io);
    };
    let timed_out = || WriteFailure::Body(SendError::SendTimedOut);
    timer.as_mut().reset(tokio::time::Instant::now() + limit);
    while out.has_remaining() {
        tokio::select! {
            biased;
            written = std::future::poll_fn(|cx| poll_write_some(io, cx, out)) => match written {
                Ok(0) | Err(_) => return Err(WriteFailure::Io),
                Ok(_) => timer.as_mut().reset(tokio::time::Instant::now() + limit),
            },
            _ = timer.as_mut() => return Err(timed_out()),
        }
    }
    tokio::select! {
        biased;
        flushed = io.flush() => flushed.map_err(|_| WriteFailure::Io),
        _ = timer.as_mut() => Err(timed_out()),
    }
}

async fn read_some(io: &mut ServerIo, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(want.max(1024));
    }
    std::future::poll_fn(|cx| poll_read_into(io, cx, buf)).await
}

fn poll_read_into(io: &mut ServerIo, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
    let mut read = ReadBuf::uninit(buf.spare_capacity_mut());
    ready!(Pin::new(io).poll_read(cx, &mut read))?;
    let n = read.filled().len();
    // SAFETY: poll_read initialised and filled the first n spare bytes.
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(n))
}

/// How a request's body is framed on the wire to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length,
    Chunked,
}

/// Writes the request head for `parts` into `dst`, adding the framing header
/// the body needs; returns that framing.
pub(crate) fn write_request_head(dst: &mut BytesMut, parts: &http::request::Parts, body: &RequestBody) -> Framing {
    dst.extend_from_slice(parts.method.as_str().as_bytes());
    dst.extend_from_slice(b" ");
    dst.extend_from_slice(parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_length = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            has_length = true;
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    let framing = if body.is_end_stream() {
        // POST and PUT say they have no body, as hyper does; GET and the like say nothing.
        if !has_length && matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
            dst.extend_from_slice(b"content-length: 0\r\n");
        }
        Framing::None
    } else if has_length {
        Framing::Length
    } else if let Some(n) = body.size_hint().exact() {
        dst.extend_from_slice(b"content-length: ");
        dst.extend_from_slice(n.to_string().as_bytes());
        dst.extend_from_slice(b"\r\n");
        Framing::Length
    } else {
        dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    dst.extend_from_slice(b"\r\n");
    framing
}

/// How a response's body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    /// Read until the server closes.
    Close,
}

/// A response head: its parts, how its body is framed, whether the connection
/// stays open after it, and its fields as bytes when no map was made (then
/// `parts.headers` is empty).
struct Parsed {
    parts: http::response::Parts,
    kind: BodyKind,
    keep_alive: bool,
    raw: Option<Box<RawFields>>,
}

fn parse_response(buf: &mut BytesMut, method: &Method) -> Result<Option<Parsed>, SendError> {
    let mut fields: [MaybeUninit<httparse::Header<'_>>; MAX_FIELDS] = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(SendError::BadResponse),
    };
    let status = StatusCode::from_u16(res.code.unwrap_or(0)).map_err(|_| SendError::BadResponse)?;
    let http11 = res.version == Some(1);
    let base = buf.as_ptr() as usize;
    let count = res.headers.len();
    let mut spans: [MaybeUninit<Span>; MAX_FIELDS] = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut keep_alive = http11;
    let mut closing = false;
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    let mut has_date = false;
    let mut special = 0u32;
    // A Connection header naming other fields: those are stripped from a map.
    let mut names_fields = false;
    for (i, (span, field)) in spans.iter_mut().zip(res.headers.iter()).enumerate() {
        let name = field.name.as_ptr() as usize - base;
        let value = field.value.as_ptr() as usize - base;
        span.write(Span::of(name, field.name.len(), value, field.value.len()));
        let name = field.name.as_bytes();
        let kind = fields::kind(name);
        if matches!(kind, Kind::ContentLength | Kind::HopByHop) && i < fields::MAX_RAW {
            special |= 1 << i;
        }
        match kind {
            Kind::ContentLength => {
                // Digits only: `+2` parses as a u64 but is no length (RFC 9110 §8.6).
                let digits = field.value.trim_ascii();
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(SendError::BadResponse);
                }
                let n = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(SendError::BadResponse)?;
                if length.replace(n).is_some_and(|prev| prev != n) {
                    return Err(SendError::BadResponse);
                }
            }
            Kind::HopByHop if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                // Codings are tokens: a value with bytes outside visible ASCII cannot
                // be read as a list, and hyper reads such a body to close. Refuse it
                // rather than guess at its framing.
                if !field.value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
                    return Err(SendError::BadResponse);
                }
                let last = field.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            Kind::HopByHop if name.eq_ignore_ascii_case(b"connection") => {
                // A close anywhere wins: a later keep-alive must not undo it.
                if has_token(field.value, b"close") {
                    keep_alive = false;
                    closing = true;
                } else if !http11 && !closing && has_token(field.value, b"keep-alive") {
                    keep_alive = true;
                }
                names_fields |= field.value.split(|&b| b == b',').any(|t| {
                    let t = t.trim_ascii();
                    !t.is_empty() && !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive")
                });
            }
            Kind::Date => has_date = true,
            _ => {}
        }
    }
    // SAFETY: the first `count` spans were written above.
    let spans = unsafe { std::slice::from_raw_parts(spans.as_ptr().cast::<Span>(), count) };
    let head = buf.split_to(len).freeze();
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = if http11 { Version::HTTP_11 } else { Version::HTTP_10 };
    if status.is_informational() {
        // 100 Continue and the like: the real answer follows.
        return Ok(Some(Parsed { parts, kind: BodyKind::Empty, keep_alive: true, raw: None }));
    }
    let bodiless = *method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    // A length beside chunked framing is a response porter cannot frame safely
    // (RFC 9112 §6.3 calls it a smuggling sign): 502, the connection closed.
    if chunked.is_some() && length.is_some() {
        return Err(SendError::BadResponse);
    }
    let kind = match (chunked, length) {
        _ if bodiless => BodyKind::Empty,
        (Some(true), _) => BodyKind::Chunked,
        (Some(false), _) => {
            keep_alive = false;
            BodyKind::Close
        }
        (None, Some(0)) => BodyKind::Empty,
        (None, Some(n)) => BodyKind::Length(n),
        (None, None) => {
            keep_alive = false;
            BodyKind::Close
        }
    };
    // HTTP/1.0 with Transfer-Encoding: faulty framing, the connection is not reused (RFC 9112 §6.1).
    keep_alive &= http11 || chunked.is_none();
    if count > fields::MAX_RAW || names_fields {
        parts.headers = fields::to_header_map(&head, spans, false);
        return Ok(Some(Parsed { parts, kind, keep_alive, raw: None }));
    }
    let raw = RawFields::new(head, spans, special, has_date, false);
    Ok(Some(Parsed { parts, kind, keep_alive, raw: Some(raw) }))
}

enum Decode {
    Empty,
    Length(u64),
    Chunked(Box<Chunked>),
    Close,
}

/// A response body read from the server connection it rides on.
pub struct ResponseStream {
    conn: Option<Conn>,
    decode: Decode,
    keep_alive: bool,
    done: bool,
    /// The head's fields, until the head is written or made into a map.
    raw: Option<Box<RawFields>>,
    /// `timeouts.read`, kept on the connection's timer while a read waits.
    read_timeout: Duration,
    waiting: bool,
}

/// The server sent nothing of a response body for `timeouts.read`.
#[derive(Debug)]
pub(crate) struct ReadTimedOut;

impl std::fmt::Display for ReadTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream server sent nothing of the response body for timeouts.read")
    }
}
impl std::error::Error for ReadTimedOut {}

impl ResponseStream {
    fn new(
        conn: Conn,
        kind: BodyKind,
        keep_alive: bool,
        raw: Option<Box<RawFields>>,
        read_timeout: Duration,
    ) -> ResponseStream {
        let decode = match kind {
            BodyKind::Empty => Decode::Empty,
            BodyKind::Length(n) => Decode::Length(n),
            BodyKind::Chunked => Decode::Chunked(Box::default()),
            BodyKind::Close => Decode::Close,
        };
        let done = matches!(decode, Decode::Empty);
        ResponseStream { conn: Some(conn), decode, keep_alive, done, raw, read_timeout, waiting: false }
    }

    /// The response head's fields as bytes, when they were not put in a map.
    pub fn take_raw_fields(&mut self) -> Option<Box<RawFields>> {
        self.raw.take()
    }

    /// The connection, once the body was read to its end and the server keeps it open.
    pub fn take_reusable(&mut self) -> Option<Conn> {
        if !(self.done && self.keep_alive) {
            return None;
        }
        let mut conn = self.conn.take()?;
        match conn.buf.take() {
            // Bytes after the response: the server is out of step; do not reuse.
            Some(buf) if !buf.is_empty() => return None,
            Some(buf) => give_back(buf),
            None => {}
        }
        Some(conn)
    }
}

impl Body for ResponseStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
        loop {
            let buf = conn.buf.get_or_insert_with(take_buffer);
            if !buf.is_empty() {
                match &mut this.decode {
                    Decode::Empty => {
                        this.done = true;
                        return Poll::Ready(None);
                    }
                    Decode::Length(remaining) => {
                        let n = (*remaining).min(buf.len() as u64);
                        let data = buf.split_to(n as usize).freeze();
                        *remaining -= n;
                        this.done = *remaining == 0;
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Decode::Close => return Poll::Ready(Some(Ok(Frame::data(buf.split().freeze())))),
                    Decode::Chunked(chunked) => match chunked.step(buf) {
                        Ok(Step::Data { range }) => {
                            buf.advance(range.start);
                            return Poll::Ready(Some(Ok(Frame::data(buf.split_to(range.len()).freeze()))));
                        }
                        Ok(Step::End { consumed }) => {
                            buf.advance(consumed);
                            this.done = true;
                            return match chunked.take_trailers() {
                                Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                                Ok(None) => Poll::Ready(None),
                                Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
                            };
                        }
                        Ok(Step::NeedMore { consumed }) => buf.advance(consumed),
                        Err(e) => {
                            this.keep_alive = false;
                            return Poll::Ready(Some(Err(Box::new(e))));
                        }
                    },
                }
            }
            let want = match &this.decode {
                Decode::Length(remaining) => (*remaining).min(MAX_BODY_READ as u64) as usize,
                _ => crate::net::io::BUFFER_SIZE,
            };
            if buf.capacity() - buf.len() < 1024.min(want) {
                buf.reserve(want);
            }
            let read = match poll_read_into(&mut conn.io, cx, buf) {
                Poll::Ready(read) => read,
                Poll::Pending => {
                    // The connection's kept timer, armed when a wait begins (not at every poll).
                    let timer = conn.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(this.read_timeout)));
                    if !std::mem::replace(&mut this.waiting, true) {
                        timer.as_mut().reset(tokio::time::Instant::now() + this.read_timeout);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        this.keep_alive = false;
                        return Poll::Ready(Some(Err(Box::new(ReadTimedOut))));
                    }
                    return Poll::Pending;
                }
            };
            this.waiting = false;
            match read {
                Ok(0) if matches!(this.decode, Decode::Close) => {
                    this.done = true;
                    this.keep_alive = false;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.keep_alive = false;
                    return Poll::Ready(Some(Err(Box::new(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection before the response body was complete",
                    )))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.keep_alive = false;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match &self.decode {
            Decode::Empty => SizeHint::with_exact(0),
            Decode::Length(n) => SizeHint::with_exact(*n),
            _ if self.done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Bodies up to this size go over porter's own client, which writes the whole
/// body before reading the answer: they fit the socket buffers even when a
/// server answers while it reads (an echo). Larger and unsized ones go over
/// hyper's client, which reads the answer while it still sends.
pub(crate) const MAX_OWN_BODY: u64 = 64 * 1024;

/// Whether a request goes over porter's own client: no upgrade, and no body or
/// a small one of known size.
pub(crate) fn takes(request: &Request<RequestBody>) -> bool {
    if request.headers().contains_key(header::UPGRADE) {
        return false;
    }
    let body = request.body();
    body.is_end_stream() || body.size_hint().exact().is_some_and(|n| n <= MAX_OWN_BODY)
}
