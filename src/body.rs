//! The bodies that flow through porter, streamed frame by frame.
//!
//! [`RequestBody`] carries the client's body to the server and enforces
//! `max_body_bytes` as it goes, so a chunked upload that grows past the limit
//! is stopped mid-stream. [`ResponseBody`] carries the server's body (or a
//! short local one) back; when it is finished it releases the upstream
//! connection's lease (back to the pool) and writes the access-log line.
//!
//! These types sit below the listeners, the proxy pipeline and the upstream
//! client, which all pass them around.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::access_log::AccessRecord;
use crate::upstream::Lease;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body passed the configured limit mid-stream.
#[derive(Debug)]
pub struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body exceeds max_body_bytes")
    }
}
impl std::error::Error for BodyTooLarge {}

/// A request body as the client sends it: read by hyper (HTTP/2, or HTTP/1.1
/// on the hyper engine) or by porter's own HTTP/1.1 layer.
pub enum ClientBody {
    Empty,
    Hyper(Incoming),
    Http1(crate::http1::body::RequestStream),
}

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientBody::Empty => "ClientBody::Empty",
            ClientBody::Hyper(_) => "ClientBody::Hyper",
            ClientBody::Http1(_) => "ClientBody::Http1",
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
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Hyper(body) => body.is_end_stream(),
            ClientBody::Http1(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Hyper(body) => body.size_hint(),
            ClientBody::Http1(body) => body.size_hint(),
        }
    }
}

#[derive(Debug)]
pub struct RequestBody {
    inner: Option<ClientBody>,
    remaining: u64,
    /// The access log's count of body bytes read (only when the log is on).
    counted: Option<Arc<AtomicU64>>,
}

impl RequestBody {
    pub fn new(inner: ClientBody, limit: u64) -> RequestBody {
        RequestBody { inner: Some(inner), remaining: limit, counted: None }
    }
    pub fn empty() -> RequestBody {
        RequestBody { inner: None, remaining: 0, counted: None }
    }
    /// Adds the bytes read to `counter` as they pass.
    pub fn counting(mut self, counter: Arc<AtomicU64>) -> RequestBody {
        self.counted = Some(counter);
        self
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
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.inner = None;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    this.remaining -= len;
                    if let Some(counted) = &this.counted {
                        counted.fetch_add(len, Ordering::Relaxed);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

/// A response body as a server sends it: read by hyper's client (HTTP/2,
/// upgrades) or by porter's own HTTP/1.1 client.
pub enum ServerBody {
    Hyper(Incoming),
    Http1(crate::upstream::http1::ResponseStream),
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
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody::new(Inner::Local(Some(bytes)))
    }

    pub fn empty() -> ResponseBody {
        ResponseBody::new(Inner::Local(None))
    }

    pub fn upstream(body: ServerBody, lease: Lease) -> ResponseBody {
        ResponseBody { inner: Inner::Upstream(body), finished: false, bytes: 0, lease: Some(lease), record: None }
    }

    fn new(inner: Inner) -> ResponseBody {
        ResponseBody { inner, finished: false, bytes: 0, lease: None, record: None }
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
            Inner::Upstream(ServerBody::Hyper(body)) => {
                Pin::new(body).poll_frame(cx).map_err(|e| Box::new(e) as BoxError)
            }
            Inner::Upstream(ServerBody::Http1(body)) => Pin::new(body).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
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
