//! One exchange on a connection: the request head and body written (bounded
//! by `timeouts.send`), then the response head read (by `response_header`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{Method, StatusCode};
use http_body::Body;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::head::{parse_response, Framing, Parsed};
use super::stream::ResponseStream;
use super::{Conn, SendError, ServerIo, Timeouts, MAX_RESPONSE_HEAD};
use crate::body::{BodyTooLarge, ClientBodyError, ClientFault, RequestBody};
use crate::http1::response::chunk_size_line;
use crate::net::clock::coarse_now;
use crate::net::io::{poll_write_some, take_buffer};

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
            timer.as_mut().reset(Instant::from_std(coarse_now()) + timeouts.response_header);
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
                timer.as_mut().reset(Instant::from_std(coarse_now()) + timeouts.response_header);
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

pub(super) fn poll_read_into(io: &mut ServerIo, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
    // Callers reserve room first, so this reads straight into the spare capacity.
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}
