//! The response body, read by the request's own task from the connection it
//! rides on; the connection goes back to the pool once the body has ended.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};

use super::head::BodyKind;
use super::send::poll_read_into;
use super::{Conn, MAX_BODY_READ};
use crate::body::BoxError;
use crate::http1::chunked::{Chunked, Step};
use crate::http1::fields::RawFields;
use crate::net::io::{give_back, take_buffer};

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
    pub(super) fn new(
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
