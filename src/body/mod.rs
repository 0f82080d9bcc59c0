//! The client's request body on its way to a server, streamed frame by frame.
//!
//! [`RequestBody`] carries the client's body to the server and enforces
//! `max_body_bytes` as it goes, so a chunked upload that grows past the limit
//! is stopped mid-stream. `http1` reads such a body from a client's HTTP/1.1
//! connection.
//!
//! These types sit below the upstream client, the proxy pipeline and the
//! listeners, which all pass them around. The response's half, which ends an
//! upstream exchange, is `upstream::ResponseBody`.

pub(crate) mod encode;
pub(crate) mod http1;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::net::clock::now_ms;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body passed the configured limit mid-stream.
#[derive(Debug)]
pub(crate) struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body exceeds max_body_bytes")
    }
}
impl std::error::Error for BodyTooLarge {}

/// A client's request as the connection servers hand it to the pipeline, boxed where it
/// is made (by the HTTP/1.1 parser: its `Default` body), not copied through each layer.
pub(crate) type ClientRequest = Box<http::Request<ClientBody>>;

/// A request body as the client sends it: read by hyper (HTTP/2) or by porter's own HTTP/1.1 layer.
#[derive(Default)]
pub enum ClientBody {
    #[default]
    Empty,
    Hyper(Incoming),
    Http1(http1::RequestStream),
    /// An HTTP/3 request stream's receiving half (the listener's `h3` server); boxed,
    /// so the other variants (every HTTP/1.1 and HTTP/2 request) stay small.
    H3(Box<H3Body>),
}

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientBody::Empty => "ClientBody::Empty",
            ClientBody::Hyper(_) => "ClientBody::Hyper",
            ClientBody::Http1(_) => "ClientBody::Http1",
            ClientBody::H3(_) => "ClientBody::H3",
        })
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(|e| Box::new(e) as BoxError),
            ClientBody::Http1(body) => Pin::new(body).poll_frame(cx),
            ClientBody::H3(body) => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Hyper(body) => body.is_end_stream(),
            ClientBody::Http1(body) => body.is_end_stream(),
            ClientBody::H3(body) => body.done && body.ahead.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Hyper(body) => body.size_hint(),
            ClientBody::Http1(body) => body.size_hint(),
            ClientBody::H3(body) => body.size_hint(),
        }
    }
}

type H3RecvStream = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// An HTTP/3 request body: the DATA frames of the request stream, then its trailers.
/// HTTP/3 frames carry no length of the whole, so a `Content-Length` is checked here
/// against the bytes that come (RFC 9114 §4.1.2): a mismatch is a malformed request,
/// never passed on to an HTTP/1.1 server whose framing it would break.
pub struct H3Body {
    stream: H3RecvStream,
    /// What [`H3Body::new`] found already there: a first chunk, or the stream's failure.
    ahead: Option<Result<Frame<Bytes>, BoxError>>,
    data_done: bool,
    done: bool,
    length: Option<u64>,
    received: u64,
}

/// An HTTP/3 request body whose DATA disagrees with its `Content-Length`.
#[derive(Debug)]
pub(crate) struct LengthMismatch;

impl std::fmt::Display for LengthMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body length differs from its content-length")
    }
}
impl std::error::Error for LengthMismatch {}

impl H3Body {
    /// Looks once, without waiting, at what already arrived after the head: a request
    /// whose stream already ended (most GETs: HEADERS and FIN in one packet) is known to
    /// have no body, so it is forwarded without one (and may be retried elsewhere).
    pub fn new(stream: H3RecvStream, length: Option<u64>) -> H3Body {
        let mut body = H3Body { stream, ahead: None, data_done: false, done: false, length, received: 0 };
        // A no-op waker: the first real poll registers the task's own.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(frame) = body.poll_data(&mut cx) {
            match frame {
                Some(frame) => body.ahead = Some(frame),
                None => {
                    if let Poll::Ready(Ok(None)) = body.stream.poll_recv_trailers(&mut cx) {
                        body.done = true;
                    }
                }
            }
        }
        body
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match std::task::ready!(self.stream.poll_recv_data(cx)) {
            Ok(Some(mut data)) => {
                let len = bytes::Buf::remaining(&data);
                let data = bytes::Buf::copy_to_bytes(&mut data, len);
                self.received += data.len() as u64;
                if self.length.is_some_and(|n| self.received > n) {
                    self.done = true;
                    return Poll::Ready(Some(Err(Box::new(LengthMismatch))));
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Ok(None) => {
                self.data_done = true;
                if self.length.is_some_and(|n| self.received != n) {
                    self.done = true;
                    return Poll::Ready(Some(Err(Box::new(LengthMismatch))));
                }
                Poll::Ready(None)
            }
            Err(e) => {
                self.done = true;
                Poll::Ready(Some(Err(Box::new(e))))
            }
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.ahead.take() {
            return Poll::Ready(Some(frame));
        }
        if self.done {
            return Poll::Ready(None);
        }
        if !self.data_done {
            match std::task::ready!(self.poll_data(cx)) {
                Some(frame) => return Poll::Ready(Some(frame)),
                None if self.done => return Poll::Ready(None),
                None => {}
            }
        }
        let trailers = std::task::ready!(self.stream.poll_recv_trailers(cx));
        self.done = true;
        match trailers {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (self.done, self.length) {
            (true, _) if self.ahead.is_none() => SizeHint::with_exact(0),
            (_, Some(n)) => SizeHint::with_exact(n.saturating_sub(self.received) + self.ahead_len()),
            _ => SizeHint::default(),
        }
    }

    fn ahead_len(&self) -> u64 {
        match &self.ahead {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        }
    }
}

/// Whose fault a client's failed request body is; every failure of the
/// client's body on the forwarding path is classified here, once. None of
/// them counts against the server the body was going to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The body broke its framing (a bad chunk): 400.
    Malformed,
    /// The client closed or reset the connection (or its stream) before the
    /// body was whole: logged as 499, nobody is left to answer.
    Gone,
    /// The client sent nothing for `limits.body_timeout`: 408.
    Stalled,
}

/// A client body's failure, as the forwarding path sees it.
#[derive(Debug)]
pub(crate) struct ClientBodyError {
    pub fault: ClientFault,
    source: Option<BoxError>,
}

impl ClientBodyError {
    fn classify(error: BoxError) -> ClientBodyError {
        let fault = if error.is::<crate::http1::chunked::ChunkError>()
            || error.is::<LengthMismatch>()
            || is_parse_error(&*error)
        {
            ClientFault::Malformed
        } else {
            ClientFault::Gone
        };
        ClientBodyError { fault, source: Some(error) }
    }

    /// The client fault in `error`'s chain, if the failure was the client's body.
    pub(crate) fn find(error: &(dyn std::error::Error + 'static)) -> Option<ClientFault> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<ClientBodyError>() {
                return Some(found.fault);
            }
            next = e.source();
        }
        None
    }
}

fn is_parse_error(error: &(dyn std::error::Error + 'static)) -> bool {
    error.downcast_ref::<hyper::Error>().is_some_and(|e| e.is_parse())
}

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.source, self.fault) {
            (_, ClientFault::Stalled) => f.write_str("client sent no request body bytes for limits.body_timeout"),
            (Some(source), _) => write!(f, "client request body: {source}"),
            (None, _) => f.write_str("client request body failed"),
        }
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// How far a request body has gone, shared with the code that waits for the
/// server's answer (hyper's clients poll the body on their own): the
/// `response_header` timer starts when the body has been sent whole, a wait
/// on the client is the client's (`limits.body_timeout`), and any other wait
/// while the body is unfinished is the server not taking it (`timeouts.send`).
#[derive(Debug, Default)]
pub struct BodyProgress {
    /// `now_ms()` when the body ended (sent whole or failed); 0 while it streams.
    ended_ms: AtomicU64,
    /// `now_ms()` of the last frame taken from the client.
    last_frame_ms: AtomicU64,
    waiting_on_client: AtomicBool,
    /// The body failed on the client's side (or passed `max_body_bytes`).
    failed: AtomicBool,
}

impl BodyProgress {
    pub fn ended_ms(&self) -> Option<u64> {
        Some(self.ended_ms.load(Ordering::Relaxed)).filter(|&ms| ms != 0)
    }
    pub fn last_frame_ms(&self) -> u64 {
        self.last_frame_ms.load(Ordering::Relaxed)
    }
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
    pub fn waiting_on_client(&self) -> bool {
        self.waiting_on_client.load(Ordering::Relaxed)
    }
    fn end(&self) {
        self.waiting_on_client.store(false, Ordering::Relaxed);
        self.ended_ms.store(now_ms().max(1), Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct RequestBody {
    inner: Option<ClientBody>,
    remaining: u64,
    /// `limits.body_timeout`: the longest wait for the client's next bytes.
    stall_timeout: Duration,
    /// Made on the first wait for the client (most bodies arrive with their
    /// head and never wait), then moved on: one timer per body at most.
    stall_timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    progress: Option<Arc<BodyProgress>>,
    /// The access log's count of body bytes read (only when the log is on).
    counted: Option<Arc<AtomicU64>>,
}

impl RequestBody {
    pub fn new(inner: ClientBody, limit: u64, stall_timeout: Duration) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            remaining: limit,
            stall_timeout,
            stall_timer: None,
            waiting: false,
            progress: None,
            counted: None,
        }
    }
    pub fn empty() -> RequestBody {
        RequestBody {
            inner: None,
            remaining: 0,
            stall_timeout: Duration::from_secs(60),
            stall_timer: None,
            waiting: false,
            progress: None,
            counted: None,
        }
    }

    /// Adds the bytes read to `counter` as they pass.
    pub fn counting(mut self, counter: Arc<AtomicU64>) -> RequestBody {
        self.counted = Some(counter);
        self
    }

    /// Shares this body's progress with whoever waits on the server's answer.
    pub fn track(&mut self) -> Arc<BodyProgress> {
        let progress = self.progress.get_or_insert_with(Arc::default).clone();
        if self.is_end_stream() {
            progress.end();
        }
        progress
    }

    fn failed(&mut self, error: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.inner = None;
        if let Some(progress) = &self.progress {
            progress.failed.store(true, Ordering::Relaxed);
            progress.end();
        }
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        return this.failed(Box::new(BodyTooLarge));
                    }
                    this.remaining -= len;
                    if let Some(counted) = &this.counted {
                        counted.fetch_add(len, Ordering::Relaxed);
                    }
                }
                if let Some(progress) = &this.progress {
                    progress.waiting_on_client.store(false, Ordering::Relaxed);
                    progress.last_frame_ms.store(now_ms(), Ordering::Relaxed);
                    if this.inner.as_ref().is_some_and(|b| b.is_end_stream()) {
                        progress.end();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let error = ClientBodyError::classify(e);
                this.failed(Box::new(error))
            }
            Poll::Ready(None) => {
                this.inner = None;
                if let Some(progress) = &this.progress {
                    progress.end();
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let until = tokio::time::Instant::now() + this.stall_timeout;
                    match &mut this.stall_timer {
                        Some(timer) => timer.as_mut().reset(until),
                        None => this.stall_timer = Some(Box::pin(tokio::time::sleep_until(until))),
                    }
                    if let Some(progress) = &this.progress {
                        progress.waiting_on_client.store(true, Ordering::Relaxed);
                    }
                }
                let timer = this.stall_timer.as_mut().expect("armed above");
                if timer.as_mut().poll(cx).is_ready() {
                    let error = ClientBodyError { fault: ClientFault::Stalled, source: None };
                    return this.failed(Box::new(error));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_else(|| SizeHint::with_exact(0))
    }
}
