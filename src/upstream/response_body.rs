//! The response body porter hands the client: a short local one, or the
//! server's, streamed frame by frame. When it is finished it releases the
//! upstream connection's lease (back to the pool, or closed when abandoned
//! half-way) and writes the access-log line. It lives with the upstream
//! client because it ends the life of an upstream exchange; the request's
//! half is `crate::body`, below.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::Lease;
use crate::access_log::AccessRecord;
use crate::body::encode;
use crate::body::BoxError;

/// A response body as a server sends it: read by hyper's client (HTTP/2,
/// upgrades) or by porter's own HTTP/1.1 client.
pub(crate) enum ServerBody {
    Hyper(Incoming),
    Http1(super::http1::ResponseStream),
}

impl ServerBody {
    /// A server's response fields kept as bytes (porter's own HTTP/1.1 client).
    pub(crate) fn take_raw_fields(&mut self) -> Option<Box<crate::http1::fields::RawFields>> {
        match self {
            ServerBody::Http1(stream) => stream.take_raw_fields(),
            ServerBody::Hyper(_) => None,
        }
    }
}

impl std::fmt::Debug for ServerBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerBody::Hyper(_) => "ServerBody::Hyper",
            ServerBody::Http1(_) => "ServerBody::Http1",
        })
    }
}

#[derive(Debug)]
enum Inner {
    Local(Option<Bytes>),
    Upstream(ServerBody),
}

#[derive(Debug)]
pub(crate) struct ResponseBody {
    inner: Inner,
    finished: bool,
    bytes: u64,
    /// The upstream connection, given back to its server's pool once the
    /// response has been read to the end.
    lease: Option<Lease>,
    record: Option<Box<AccessRecord>>,
    /// `timeouts.read` for a body read by hyper's client (porter's own keeps
    /// its timer on the connection); made on the first wait.
    read_timeout: Duration,
    stall_timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    /// Route `compress:`: the body goes through this encoder on its way out.
    encoder: Option<Box<Compressing>>,
}

/// A body being compressed: the encoder and where the stream stands.
#[derive(Debug)]
struct Compressing {
    encoder: encode::Encoder,
    encoding: encode::Encoding,
    /// The encoder was finished: nothing more than `trailers` follows.
    done: bool,
    /// The server's trailers, sent after the encoder's last bytes.
    trailers: Option<Frame<Bytes>>,
}

impl ResponseBody {
    pub(crate) fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody::new(Inner::Local(Some(bytes)))
    }

    pub(crate) fn empty() -> ResponseBody {
        ResponseBody::new(Inner::Local(None))
    }

    pub(crate) fn upstream(body: ServerBody, lease: Lease, read_timeout: Duration) -> ResponseBody {
        let mut response = ResponseBody::new(Inner::Upstream(body));
        response.lease = Some(lease);
        response.read_timeout = read_timeout;
        response
    }

    fn new(inner: Inner) -> ResponseBody {
        ResponseBody {
            inner,
            finished: false,
            bytes: 0,
            lease: None,
            record: None,
            read_timeout: Duration::from_secs(60),
            stall_timer: None,
            waiting: false,
            encoder: None,
        }
    }

    /// Compresses the rest of this body with `encoding` (the caller has set the
    /// response's fields: Content-Encoding, no Content-Length). `length`: the body's
    /// length when known, for a smaller window. An encoder that cannot be made
    /// (zstd out of memory) leaves the body as it is and says so.
    pub(crate) fn compress(&mut self, encoding: encode::Encoding, level: u32, length: Option<u64>) -> bool {
        match encode::Encoder::new(encoding, level, length) {
            Ok(encoder) => {
                self.encoder = Some(Box::new(Compressing { encoder, encoding, done: false, trailers: None }));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, encoding = encoding.token(), "cannot start a response encoder");
                false
            }
        }
    }

    /// The next frame through the encoder; the source's frames go in, what the encoder
    /// produced comes out, flushed whenever the source has nothing ready.
    fn poll_encoded(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let state = self.encoder.as_mut().expect("called with an encoder");
            if state.done {
                return Poll::Ready(state.trailers.take().map(Ok));
            }
            let polled = self.poll_source(cx);
            let state = self.encoder.as_mut().expect("called with an encoder");
            let produced = match polled {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => state.encoder.write(&data),
                    Err(trailers) => {
                        state.trailers = Some(trailers);
                        state.done = true;
                        state.encoder.finish()
                    }
                },
                Poll::Ready(None) => {
                    state.done = true;
                    state.encoder.finish()
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => match state.encoder.flush() {
                    Ok(None) => return Poll::Pending,
                    flushed => flushed,
                },
            };
            match produced {
                Ok(Some(out)) => {
                    self.bytes += out.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Ok(None) => continue,
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
            }
        }
    }

    /// hyper's body has no timer of its own: a wait for the server is bounded here.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<BoxError> {
        let until = tokio::time::Instant::now() + self.read_timeout;
        let timer = self.stall_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if !std::mem::replace(&mut self.waiting, true) {
            timer.as_mut().reset(until);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Box::new(super::http1::ReadTimedOut)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// A server's response fields kept as bytes (porter's own HTTP/1.1 client),
    /// for a writer that passes them on without a map.
    pub(crate) fn take_raw_fields(&mut self) -> Option<Box<crate::http1::fields::RawFields>> {
        match &mut self.inner {
            Inner::Upstream(body) => body.take_raw_fields(),
            Inner::Local(_) => None,
        }
    }

    /// The upstream connection's lease, until the body ends.
    pub(crate) fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// The lease, taken: the connection is then never given back to the pool.
    pub(crate) fn take_lease(&mut self) -> Option<Lease> {
        self.lease.take()
    }

    pub(crate) fn set_record(&mut self, record: Box<AccessRecord>) {
        self.record = Some(record);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.encoder.is_some() {
            return this.poll_encoded(cx);
        }
        let polled = this.poll_source(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        if let Some(state) = &self.encoder {
            return state.done && state.trailers.is_none();
        }
        self.source_ended()
    }

    fn size_hint(&self) -> SizeHint {
        if self.encoder.is_some() {
            return SizeHint::default();
        }
        match &self.inner {
            Inner::Local(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Inner::Local(None) => SizeHint::with_exact(0),
            Inner::Upstream(ServerBody::Hyper(body)) => body.size_hint(),
            Inner::Upstream(ServerBody::Http1(body)) => body.size_hint(),
        }
    }
}

impl ResponseBody {
    /// The body as porter has it (the server's, or its own), before any encoder.
    fn poll_source(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self;
        let polled = match &mut this.inner {
            Inner::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream(ServerBody::Hyper(body)) => match Pin::new(body).poll_frame(cx) {
                Poll::Pending => match this.poll_stall(cx) {
                    Poll::Ready(error) => Poll::Ready(Some(Err(error))),
                    Poll::Pending => Poll::Pending,
                },
                polled => {
                    this.waiting = false;
                    polled.map_err(|e| Box::new(e) as BoxError)
                }
            },
            Inner::Upstream(ServerBody::Http1(body)) => Pin::new(body).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Err(error))) => {
                // Only the server fails a body porter reads from it: a reset, a close
                // mid-body, bytes it cannot frame, or silence for `timeouts.read`.
                // Unless the client's own body broke first and took the exchange down with it.
                if let Some(lease) = this.lease.take() {
                    tracing::debug!(server = %lease.server().label, %error, "upstream response body failed");
                    if !lease.request_body_failed() {
                        lease.server().record_failure("response body failed");
                    }
                }
            }
            Poll::Ready(None) => this.finished = true,
            _ => {}
        }
        polled
    }

    /// The source has nothing more (it may still be in the encoder).
    fn source_ended(&self) -> bool {
        match &self.inner {
            Inner::Local(bytes) => bytes.is_none(),
            Inner::Upstream(ServerBody::Hyper(body)) => body.is_end_stream(),
            Inner::Upstream(ServerBody::Http1(body)) => body.is_end_stream(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let complete = self.finished || self.source_ended();
        // A body abandoned half-way leaves the connection mid-response: never reuse it.
        if let (true, Some(lease)) = (complete, self.lease.take()) {
            match &mut self.inner {
                Inner::Upstream(ServerBody::Http1(body)) => {
                    if let Some(conn) = body.take_reusable() {
                        lease.release_conn(conn);
                    }
                }
                _ => lease.release(),
            }
        }
        if let Some(state) = &self.encoder {
            encode::TOTALS.record(state.encoding, &state.encoder);
        }
        if let Some(record) = &self.record {
            record.write(self.bytes);
        }
    }
}
