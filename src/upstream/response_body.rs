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
use crate::body::BoxError;

/// A response body as a server sends it: read by hyper's client (HTTP/2,
/// upgrades) or by porter's own HTTP/1.1 client.
pub enum ServerBody {
    Hyper(Incoming),
    Http1(super::http1::ResponseStream),
}

impl ServerBody {
    /// A server's response fields kept as bytes (porter's own HTTP/1.1 client).
    pub fn take_raw_fields(&mut self) -> Option<Box<crate::http1::fields::RawFields>> {
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
pub struct ResponseBody {
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
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody::new(Inner::Local(Some(bytes)))
    }

    pub fn empty() -> ResponseBody {
        ResponseBody::new(Inner::Local(None))
    }

    pub fn upstream(body: ServerBody, lease: Lease, read_timeout: Duration) -> ResponseBody {
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
    pub fn take_raw_fields(&mut self) -> Option<Box<crate::http1::fields::RawFields>> {
        match &mut self.inner {
            Inner::Upstream(body) => body.take_raw_fields(),
            Inner::Local(_) => None,
        }
    }

    pub fn set_record(&mut self, record: AccessRecord) {
        self.record = Some(Box::new(record));
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
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
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
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

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Local(bytes) => bytes.is_none(),
            Inner::Upstream(ServerBody::Hyper(body)) => body.is_end_stream(),
            Inner::Upstream(ServerBody::Http1(body)) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Local(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Inner::Local(None) => SizeHint::with_exact(0),
            Inner::Upstream(ServerBody::Hyper(body)) => body.size_hint(),
            Inner::Upstream(ServerBody::Http1(body)) => body.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let complete = self.finished || self.is_end_stream();
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
        if let Some(record) = &self.record {
            record.write(self.bytes);
        }
    }
}
