//! One HTTP/1.1 client connection, top to bottom: wait for a request with no
//! buffer held, read and parse its head, hand the request to the pipeline,
//! write the response, and go round again while keep-alive allows.
//!
//! Time limits (docs/security.md, Request framing): a new connection's first head must be complete
//! within `header_read_timeout` of the accept (silence is closed quietly, a
//! partial head gets 408); later heads are timed from their first byte; the
//! wait between requests is bounded by `idle_timeout`. A drain (shutdown)
//! closes idle connections at once and busy ones after their response; a new
//! connection still gets its first request served (within `header_read_timeout`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{Request, Response, StatusCode, Version};
use http_body::Body;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::body::http1::{Reader, RequestStream, Returned};
use crate::body::ClientBody;
use crate::http1::chunked::Chunked;
use crate::http1::request::{self, BodyKind, Head, HeadError};
use crate::http1::response::{self, Answering, BodyFraming};
use crate::net::io::{give_back, poll_write_some, split, take_buffer, unsplit, ClientIo, WriteSide};
use crate::proxy::upgrade::PendingTunnel;
use crate::shutdown::DrainWatch;
use crate::upstream::ResponseBody;

/// The limits a connection runs under (from `limits:`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_head: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// The longest wait for the client to take more of a response (nginx `send_timeout`).
    pub body_timeout: Duration,
    /// `limits.underscores_in_headers`: keep field names with `_`.
    pub keep_underscores: bool,
    /// `tls.hsts` on TLS connections: porter's own refusals of a head (400, 408, 414,
    /// 431, 501, 505) carry it like every other https answer.
    pub hsts: Option<http::HeaderValue>,
}

/// How long a body still travelling upstream may take to come home after
/// its response was written, before the connection is closed instead.
const BODY_HOME_GRACE: Duration = Duration::from_secs(1);
/// After a refusal, input still arriving is read and dropped this long, so
/// the close does not reset the connection under the refusal.
const LINGER: Duration = Duration::from_millis(500);

#[allow(clippy::large_enum_variant)] // returned by value once per request, never stored
enum NextHead {
    Head(Head),
    /// End of input, idle timeout, drain, or a new connection that stayed silent.
    Closed,
    /// A head begun but not complete within `header_read_timeout`.
    TimedOut,
    Refused(HeadError),
}

/// The connection's future. A plain fn around an async block rather than an async
/// fn, which would keep its arguments twice for the connection's life (as passed and
/// as moved into its body); the stream is split before, so the unsplit one is not
/// kept either.
pub fn serve<F, Fut>(io: ClientIo, settings: Settings, mut drain: DrainWatch, handler: F) -> impl Future<Output = ()>
where
    F: Fn(Request<ClientBody>) -> Fut,
    Fut: Future<Output = Response<ResponseBody>> + Send,
{
    let started = Instant::now();
    let (read, mut write) = split(io);
    async move {
        let mut reader = Some(Reader { io: read, buf: None });
        let mut first = true;
        // One timer for every wait between requests, moved on rather than made anew:
        // moving a registered timer later costs an atomic store, making one a trip
        // through the timer wheel (boxed: the task holds it idle too).
        let mut wait_timer: Option<Pin<Box<Sleep>>> = None;
        // The task holds this loop's state for the connection's life, idle or not:
        // everything a request needs lives in `exchange`'s boxed future instead. Every
        // other await is after the loop, where the head's enum no longer is.
        let end = loop {
            let Some(home) = reader.as_mut() else { break After::Close };
            let head = match next_head(home, &settings, first.then_some(started), &mut drain, &mut wait_timer).await {
                NextHead::Head(head) => head,
                NextHead::Closed => break After::Close,
                NextHead::TimedOut => {
                    tracing::debug!("request head not complete within header_read_timeout: 408");
                    let message = "408 Request Timeout: request headers took too long\n";
                    break After::Refuse(StatusCode::REQUEST_TIMEOUT, message);
                }
                NextHead::Refused(error) => {
                    let (status, message) = refusal(error);
                    break After::Refuse(status, message);
                }
            };
            first = false;
            let hsts = settings.hsts.as_ref();
            match Box::pin(exchange(head, &mut reader, &mut write, &handler, &drain, settings.body_timeout, hsts)).await
            {
                After::KeepAlive => {}
                end => break end,
            }
        };
        match end {
            After::KeepAlive | After::Close => {}
            After::Gone => return,
            After::Refuse(status, message) => {
                Box::pin(refuse(&mut write, reader.take(), status, message, settings.hsts.as_ref())).await;
                return;
            }
            After::Tunnel(tunnel, Reader { io: read, buf }) => {
                let Some(client) = unsplit(read, write) else { return };
                Box::pin(tunnel.run(client, buf.unwrap_or_default())).await;
                return;
            }
        }
        let _ = write.shutdown().await;
    }
}

/// What the connection does after an exchange.
enum After {
    /// Read the next request.
    KeepAlive,
    /// Shut the connection down.
    Close,
    /// The connection was answered and closed.
    Gone,
    /// The head was refused: answer this and close.
    Refuse(StatusCode, &'static str),
    /// A 101 was written: the connection becomes this tunnel.
    Tunnel(PendingTunnel, Reader),
}

/// One request: its body set streaming, the pipeline's answer written back,
/// and the read side home again for the next request.
async fn exchange<F, Fut>(
    head: Head,
    reader: &mut Option<Reader>,
    write: &mut WriteSide,
    handler: &F,
    drain: &DrainWatch,
    body_timeout: Duration,
    hsts: Option<&http::HeaderValue>,
) -> After
where
    F: Fn(Request<ClientBody>) -> Fut,
    Fut: Future<Output = Response<ResponseBody>> + Send,
{
    let Head { request, body: kind, keep_alive, expect_continue, te_trailers } = head;
    let buffered = reader.as_ref().and_then(|r| r.buf.as_ref()).expect("a head was read into it");
    if kind == BodyKind::Chunked && Chunked::new().check(buffered).is_err() {
        let message = crate::proxy::error::ProxyError::AmbiguousFraming.message();
        refuse(write, reader.take(), StatusCode::BAD_REQUEST, message, hsts).await;
        return After::Gone;
    }
    let method = request.method().clone();
    let http11 = request.version() == Version::HTTP_11;
    // `Expect: 100-continue` (HTTP/1.1 only): the 100 goes when the pipeline first
    // reads the body, after every check that could refuse the request (Host, strict
    // rules, route, body size); a refusal is then the only answer the client gets.
    let mut wants_body = None;
    let (body, mut away) = match kind {
        BodyKind::Empty => (ClientBody::Empty, None),
        kind => {
            let (send, receive) = oneshot::channel();
            let signal = expect_continue.then(|| {
                let (signal, wanted) = oneshot::channel();
                wants_body = Some(wanted);
                signal
            });
            let stream = RequestStream::new(reader.take().expect("home"), kind, send, signal);
            (ClientBody::Http1(stream), Some(receive))
        }
    };
    let response = match wants_body {
        None => handler(request.map(|()| body)).await,
        Some(mut wanted) => {
            let mut handling = std::pin::pin!(handler(request.map(|()| body)));
            tokio::select! {
                biased;
                response = handling.as_mut() => response,
                Ok(()) = &mut wanted => {
                    if write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() || write.flush().await.is_err() {
                        return After::Gone;
                    }
                    handling.await
                }
            }
        }
    };

    let (mut parts, body) = response.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(tunnel) = parts.extensions.remove::<PendingTunnel>() {
            let mut head = take_buffer();
            let mut keep = true;
            let to = Answering { method: &method, http11 };
            response::write_head(&mut head, parts.status, &parts.headers, None, &body.size_hint(), to, &mut keep);
            drop(body);
            if write.write_all(&head).await.is_err() || write.flush().await.is_err() {
                return After::Gone;
            }
            give_back(head);
            if let Some(receive) = away.take() {
                *reader = come_home(receive).await.map(|r| r.reader);
            }
            return match reader.take() {
                Some(reader) => After::Tunnel(tunnel, reader),
                None => After::Gone,
            };
        }
    }
    let mut keep = keep_alive && !drain.is_signalled();
    let to = Answering { method: &method, http11 };
    let mut out = ClientOut { write, limit: body_timeout, timer: None };
    let written = write_response(&mut out, parts.status, &parts.headers, body, to, te_trailers, &mut keep).await;
    if let Some(receive) = away.take() {
        match come_home(receive).await {
            Some(Returned { reader: back, complete }) => {
                keep &= complete;
                *reader = Some(back);
            }
            None => keep = false,
        }
    }
    if !written || !keep || drain.is_signalled() {
        return After::Close;
    }
    After::KeepAlive
}

/// The body's read side back from wherever the body went, or None if it
/// does not come back promptly (the connection then closes).
async fn come_home(receive: oneshot::Receiver<Returned>) -> Option<Returned> {
    match tokio::time::timeout(BODY_HOME_GRACE, receive).await {
        Ok(Ok(returned)) => Some(returned),
        _ => None,
    }
}

/// Waits for and reads the next request head. `new_since`: the accept time,
/// for a new connection's first head.
// Not an async fn, like `serve`: its future is held while idle, and an async fn's
// would keep its arguments twice.
#[allow(clippy::manual_async_fn)]
fn next_head<'a>(
    reader: &'a mut Reader,
    settings: &'a Settings,
    new_since: Option<Instant>,
    drain: &'a mut DrainWatch,
    wait_timer: &'a mut Option<Pin<Box<Sleep>>>,
) -> impl Future<Output = NextHead> + Send + 'a {
    async move {
        let pipelined = reader.buf.as_ref().is_some_and(|b| !b.is_empty());
        if !pipelined {
            // Idle: hold no buffer while waiting.
            if let Some(buf) = reader.buf.take() {
                give_back(buf);
            }
            let wait_until = match new_since {
                Some(since) => since + settings.header_read_timeout,
                None => Instant::now() + settings.idle_timeout,
            };
            let timer = wait_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wait_until)));
            timer.as_mut().reset(wait_until);
            tokio::select! {
                biased;
                ready = reader.io.readable() => {
                    if ready.is_err() {
                        return NextHead::Closed;
                    }
                }
                _ = timer.as_mut() => return NextHead::Closed,
                // A new connection is owed its first answer (its request may be on the way:
                // accepted just before an upgrade handed the listener over); an idle
                // keep-alive one closes now, and its client retries on a new connection.
                _ = drain.signalled(), if new_since.is_none() => return NextHead::Closed,
            }
        }
        let deadline = new_since.unwrap_or_else(Instant::now) + settings.header_read_timeout;
        Box::pin(read_head(reader, settings, deadline)).await
    }
}

/// Reads until a whole head is in the buffer, or `deadline`.
async fn read_head(reader: &mut Reader, settings: &Settings, deadline: Instant) -> NextHead {
    let buf = reader.buf.get_or_insert_with(take_buffer);
    let mut first_read = true;
    loop {
        if !buf.is_empty() {
            match request::parse(buf, settings.max_head, settings.keep_underscores) {
                Ok(Some(head)) => return NextHead::Head(head),
                Ok(None) => {}
                Err(error) => return NextHead::Refused(error),
            }
        }
        // After a wait for readability the bytes are there: the first read goes
        // without setting up a timeout. Every later read for the same head (one
        // arriving in pieces) is bounded by the deadline, however fast it trickles.
        let at_once = match std::mem::take(&mut first_read) {
            true => reader.io.poll_read_into(&mut Context::from_waker(Waker::noop()), buf),
            false => Poll::Pending,
        };
        let read = match at_once {
            Poll::Ready(result) => Ok(result),
            Poll::Pending => tokio::time::timeout_at(deadline, reader.io.read_into(buf)).await,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return NextHead::Closed,
            Ok(Ok(_)) => {}
            // Leading empty lines alone are not a head begun (hyper skips them too).
            Err(_) if buf.iter().all(|&b| b == b'\r' || b == b'\n') => return NextHead::Closed,
            Err(_) => return NextHead::TimedOut,
        }
    }
}

fn refusal(error: HeadError) -> (StatusCode, &'static str) {
    match error {
        HeadError::Malformed => (StatusCode::BAD_REQUEST, "400 Bad Request: malformed request head\n"),
        HeadError::Ambiguous => (StatusCode::BAD_REQUEST, crate::proxy::error::ProxyError::AmbiguousFraming.message()),
        HeadError::TooLarge => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "431 Request Header Fields Too Large\n"),
        HeadError::UriTooLong => (StatusCode::URI_TOO_LONG, "414 URI Too Long\n"),
        HeadError::Version => (StatusCode::HTTP_VERSION_NOT_SUPPORTED, "505 HTTP Version Not Supported\n"),
        HeadError::UnknownCoding => {
            (StatusCode::NOT_IMPLEMENTED, "501 Not Implemented: transfer codings other than chunked\n")
        }
    }
}

/// Answers a refused head and closes, reading (and dropping) what the client
/// still sends for a moment, so the refusal is not lost to a reset.
async fn refuse(
    write: &mut WriteSide,
    reader: Option<Reader>,
    status: StatusCode,
    message: &str,
    hsts: Option<&http::HeaderValue>,
) {
    let mut out = BytesMut::with_capacity(256);
    response::write_refusal(&mut out, status, message, hsts);
    if write.write_all(&out).await.is_err() || write.flush().await.is_err() {
        return;
    }
    let _ = write.shutdown().await;
    let Some(Reader { io, buf }) = reader else { return };
    let mut sink = buf.unwrap_or_default();
    let _ = tokio::time::timeout(LINGER, async {
        let mut total = 0usize;
        while total < 1 << 20 {
            sink.clear();
            match io.read_into(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// Writes the head and body. Returns false when the response could not be
/// written whole (the connection must close).
async fn write_response(
    write: &mut ClientOut<'_>,
    status: StatusCode,
    headers: &http::HeaderMap,
    mut body: ResponseBody,
    to: Answering<'_>,
    te_trailers: bool,
    keep: &mut bool,
) -> bool {
    let mut head = take_buffer();
    let raw = body.take_raw_fields();
    let framing = response::write_head(&mut head, status, headers, raw.as_deref(), &body.size_hint(), to, keep);
    // The server's head goes now: its buffer may then be reused (`give_back`).
    drop(raw);
    let written = write_body(write, &mut head, body, framing, te_trailers).await;
    head.clear();
    give_back(head);
    written
}

async fn write_body(
    write: &mut ClientOut<'_>,
    head: &mut BytesMut,
    body: ResponseBody,
    framing: BodyFraming,
    te_trailers: bool,
) -> bool {
    let mut body = std::pin::pin!(body);
    if framing == BodyFraming::None {
        // HEAD, 204, 304: whatever the body holds is not sent (it is empty from a server).
        return write.send(&mut &head[..]).await && write.flush().await;
    }
    let mut sent: u64 = 0;
    let mut head_pending = true;
    loop {
        // The head goes out with the first frame when that is ready at once (one write).
        let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(body.as_mut().poll_frame(cx))).await;
        let frame = match polled {
            std::task::Poll::Ready(frame) => frame,
            std::task::Poll::Pending => {
                if head_pending {
                    head_pending = false;
                    if !(write.send(&mut &head[..]).await && write.flush().await) {
                        return false;
                    }
                } else if !write.flush().await {
                    return false;
                }
                std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await
            }
        };
        let prefix: &[u8] = if head_pending { head } else { b"" };
        match frame {
            None => {
                let end: &[u8] = if framing == BodyFraming::Chunked { b"0\r\n\r\n" } else { b"" };
                let mut out = prefix.chain(end);
                let complete = match framing {
                    BodyFraming::Length(n) => sent == n,
                    _ => true,
                };
                return write.send(&mut out).await && write.flush().await && complete;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "upstream response body failed: closing the client connection");
                if head_pending {
                    let _ = write.send(&mut &head[..]).await;
                }
                return false;
            }
            Some(Ok(frame)) => {
                head_pending = false;
                let frame = match frame.into_data() {
                    Ok(data) => data,
                    Err(frame) => {
                        let Ok(trailers) = frame.into_trailers() else { continue };
                        if framing != BodyFraming::Chunked {
                            continue;
                        }
                        let mut end = BytesMut::with_capacity(64);
                        response::write_last_chunk(&mut end, te_trailers.then_some(&trailers));
                        let mut out = prefix.chain(&end[..]);
                        return write.send(&mut out).await && write.flush().await;
                    }
                };
                if frame.is_empty() {
                    if !prefix.is_empty() && !write.send(&mut &prefix[..]).await {
                        return false;
                    }
                    continue;
                }
                let result = match framing {
                    BodyFraming::Chunked => {
                        let (line, len) = response::chunk_size_line(frame.len());
                        let mut out = prefix.chain(&line[..len]).chain(&frame[..]).chain(&b"\r\n"[..]);
                        write.send(&mut out).await
                    }
                    BodyFraming::Length(n) => {
                        let room = n.saturating_sub(sent).min(frame.len() as u64) as usize;
                        let mut out = prefix.chain(&frame[..room]);
                        write.send(&mut out).await
                    }
                    BodyFraming::Close | BodyFraming::None => {
                        let mut out = prefix.chain(&frame[..]);
                        write.send(&mut out).await
                    }
                };
                sent += frame.len() as u64;
                if !result {
                    return false;
                }
                if let BodyFraming::Length(n) = framing {
                    if sent > n {
                        return false;
                    }
                }
            }
        }
    }
}

/// The client's side of a response being written. Every write that has to
/// wait is bounded by `limits.body_timeout`, moved on at each write that makes
/// progress (nginx `send_timeout`); a client that takes nothing for that long
/// is cut off. The timer is made only when a write has to wait.
struct ClientOut<'a> {
    write: &'a mut WriteSide,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl ClientOut<'_> {
    /// Writes all of `out`; false when the client failed or stalled.
    async fn send(&mut self, out: &mut (dyn Buf + Send)) -> bool {
        while out.has_remaining() {
            // Most writes complete at once: tried first with no timer.
            match poll_write_some(self.write, &mut Context::from_waker(Waker::noop()), out) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return false,
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => {}
            }
            let write = &mut *self.write;
            let written =
                Self::bounded(&mut self.timer, self.limit, std::future::poll_fn(|cx| poll_write_some(write, cx, out)));
            if !matches!(written.await, Some(Ok(n)) if n > 0) {
                return false;
            }
        }
        true
    }

    async fn flush(&mut self) -> bool {
        let write = &mut *self.write;
        matches!(Self::bounded(&mut self.timer, self.limit, write.flush()).await, Some(Ok(())))
    }

    async fn bounded<T>(
        timer: &mut Option<Pin<Box<Sleep>>>,
        limit: Duration,
        wait: impl Future<Output = T>,
    ) -> Option<T> {
        let until = Instant::now() + limit;
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        timer.as_mut().reset(until);
        tokio::select! {
            biased;
            done = wait => Some(done),
            _ = timer.as_mut() => {
                tracing::debug!("client took none of the response for limits.body_timeout: closing");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The connection's task holds this future for the connection's life, idle
    /// or not: per-request work is boxed so it stays small (idle memory, an aim of
    /// at most 2 KiB per idle plain connection: docs/benchmarks.md). 544 bytes in a
    /// debug build, with a handler holding two `Arc`s like the listeners' do.
    #[tokio::test]
    async fn the_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let io = super::ClientIo::Plain(crate::net::proxy_protocol::ClientStream::new(stream));
        let drain = crate::shutdown::Drain::new();
        let settings = super::Settings {
            max_head: 8192,
            header_read_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            body_timeout: std::time::Duration::from_secs(1),
            keep_underscores: false,
            hsts: None,
        };
        let (context, snapshot) = (std::sync::Arc::new(1u64), std::sync::Arc::new(2u64));
        let serve = super::serve(io, settings, drain.watch(), move |_request| {
            let _held = (context.clone(), snapshot.clone());
            async { http::Response::new(crate::upstream::ResponseBody::empty()) }
        });
        let size = std::mem::size_of_val(&serve);
        assert!(size <= 576, "serve future is {size} bytes");
    }
}
