//! A request body read from the client connection, frame by frame, into the
//! connection's read buffer: each frame is split off that buffer and handed
//! on as it is (no copy). The body owns the connection's read side while it
//! streams, possibly from another task (an HTTP/2 upstream's), and sends it
//! home to the connection when it ends, or when it is dropped unfinished (then
//! the connection closes after the response: the rest of the body is unread).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use super::BoxError;
use crate::http1::chunked::{Chunked, Step};
use crate::http1::request::BodyKind;
use crate::net::io::{take_buffer, ReadSide};

/// The connection's read side and its buffer (None while idle).
pub struct Reader {
    pub io: ReadSide,
    pub buf: Option<BytesMut>,
}

/// The read side coming home after a body.
pub struct Returned {
    pub reader: Reader,
    /// The body was read to its end: the next request starts in `reader.buf`.
    pub complete: bool,
}

enum Decode {
    Length(u64),
    Chunked(Box<Chunked>),
}

pub struct RequestStream {
    reader: Option<Reader>,
    decode: Decode,
    home: Option<oneshot::Sender<Returned>>,
    /// `Expect: 100-continue`: fired when the body is first read from the socket,
    /// which happens only once the pipeline accepted the request (its checks, route
    /// and limits passed): the connection then sends the 100.
    wants_body: Option<oneshot::Sender<()>>,
}

/// The client closed the connection before the body was whole.
#[derive(Debug)]
pub(crate) struct IncompleteBody;

impl std::fmt::Display for IncompleteBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("client closed the connection before the request body was complete")
    }
}
impl std::error::Error for IncompleteBody {}

impl RequestStream {
    /// `kind` is not [`BodyKind::Empty`]. `wants_body`: see the field.
    pub fn new(
        reader: Reader,
        kind: BodyKind,
        home: oneshot::Sender<Returned>,
        wants_body: Option<oneshot::Sender<()>>,
    ) -> RequestStream {
        let decode = match kind {
            BodyKind::Length(n) => Decode::Length(n),
            BodyKind::Chunked | BodyKind::Empty => Decode::Chunked(Box::default()),
        };
        RequestStream { reader: Some(reader), decode, home: Some(home), wants_body }
    }

    fn finish(&mut self, complete: bool) {
        if let (Some(reader), Some(home)) = (self.reader.take(), self.home.take()) {
            let _ = home.send(Returned { reader, complete });
        }
    }

    fn fail(&mut self, error: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finish(false);
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for RequestStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(reader) = this.reader.as_mut() else { return Poll::Ready(None) };
            let buf = reader.buf.get_or_insert_with(take_buffer);
            if !buf.is_empty() {
                match &mut this.decode {
                    Decode::Length(remaining) => {
                        let n = (*remaining).min(buf.len() as u64);
                        let data = buf.split_to(n as usize).freeze();
                        *remaining -= n;
                        if *remaining == 0 {
                            this.finish(true);
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Decode::Chunked(chunked) => match chunked.step(buf) {
                        Ok(Step::Data { range }) => {
                            buf.advance(range.start);
                            let data = buf.split_to(range.len()).freeze();
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        Ok(Step::End { consumed }) => {
                            buf.advance(consumed);
                            let trailers = chunked.take_trailers();
                            this.finish(true);
                            return match trailers {
                                Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                                Ok(None) => Poll::Ready(None),
                                Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
                            };
                        }
                        Ok(Step::NeedMore { consumed }) => buf.advance(consumed),
                        Err(e) => return this.fail(Box::new(e)),
                    },
                }
            }
            let buf = reader.buf.as_mut().expect("taken above");
            if let Some(wants_body) = this.wants_body.take() {
                let _ = wants_body.send(());
            }
            match ready!(reader.io.poll_read_into(cx, buf)) {
                Ok(0) => return this.fail(Box::new(IncompleteBody)),
                Ok(_) => {}
                Err(e) => return this.fail(Box::new(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reader.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.decode, &self.reader) {
            (Decode::Length(n), Some(_)) => SizeHint::with_exact(*n),
            (_, None) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        self.finish(false);
    }
}
