//! Reading a request head (within `header_read_timeout`, with no buffer held
//! while idle) and answering one that is refused.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, Sleep};

use super::{NextHead, Settings, LINGER};
use crate::body::http1::Reader;
use crate::http1::request::{self, HeadError};
use crate::http1::response;
use crate::net::io::{give_back, take_buffer, WriteSide};
use crate::shutdown::DrainWatch;

/// Waits for and reads the next request head. `new_since`: the accept time,
/// for a new connection's first head.
// Not an async fn, like `serve`: its future is held while idle, and an async fn's
// would keep its arguments twice.
#[allow(clippy::manual_async_fn)]
pub(super) fn next_head<'a>(
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
                None => Instant::from_std(crate::net::clock::coarse_now()) + settings.idle_timeout,
            };
            let timer = wait_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wait_until)));
            // Moved only to fire sooner. One left earlier than this wait's end fires early
            // and is moved on then: most waits end with a request long before it, and a
            // move costs a trip through the timer's state per request.
            if timer.deadline() > wait_until {
                timer.as_mut().reset(wait_until);
            }
            loop {
                tokio::select! {
                    biased;
                    ready = reader.io.readable() => {
                        if ready.is_err() {
                            return NextHead::Closed;
                        }
                        break;
                    }
                    _ = timer.as_mut() => {
                        if timer.deadline() >= wait_until {
                            return NextHead::Closed;
                        }
                        timer.as_mut().reset(wait_until);
                    }
                    // A new connection is owed its first answer (its request may be on the way:
                    // accepted just before an upgrade handed the listener over); an idle
                    // keep-alive one closes now, and its client retries on a new connection.
                    _ = drain.signalled(), if new_since.is_none() => return NextHead::Closed,
                }
            }
        }
        // After a wait for readability the bytes are there: most heads are read whole
        // at once, with no timer, no clock read and no future of their own.
        if let Some(next) = read_head_at_once(reader, settings) {
            return next;
        }
        // A head arriving in pieces: every later read is bounded by the deadline, however
        // fast it trickles (timed from its first byte, or the accept).
        let deadline = new_since.unwrap_or_else(Instant::now) + settings.header_read_timeout;
        Box::pin(read_head(reader, settings, deadline)).await
    }
}

/// A head already in the buffer, or in it after one read that does not wait; None
/// when more must be waited for.
fn read_head_at_once(reader: &mut Reader, settings: &Settings) -> Option<NextHead> {
    let buf = reader.buf.get_or_insert_with(take_buffer);
    for first_read in [true, false] {
        if !buf.is_empty() {
            match request::parse_with(buf, settings.max_head, settings.keep_underscores) {
                Ok(Some(head)) => return Some(NextHead::Head(head)),
                Ok(None) => {}
                Err(error) => return Some(NextHead::Refused(error)),
            }
        }
        if !first_read {
            break;
        }
        match reader.io.poll_read_into(&mut Context::from_waker(Waker::noop()), buf) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Some(NextHead::Closed),
            Poll::Ready(Ok(_)) => {}
            Poll::Pending => break,
        }
    }
    None
}

/// Reads until a whole head is in the buffer, or `deadline` ([`read_head_at_once`]
/// has parsed what the buffer holds).
async fn read_head(reader: &mut Reader, settings: &Settings, deadline: Instant) -> NextHead {
    let buf = reader.buf.get_or_insert_with(take_buffer);
    loop {
        let read = tokio::time::timeout_at(deadline, reader.io.read_into(buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return NextHead::Closed,
            Ok(Ok(_)) => {}
            // Leading empty lines alone are not a head begun (hyper skips them too).
            Err(_) if buf.iter().all(|&b| b == b'\r' || b == b'\n') => return NextHead::Closed,
            Err(_) => return NextHead::TimedOut,
        }
        match request::parse_with(buf, settings.max_head, settings.keep_underscores) {
            Ok(Some(head)) => return NextHead::Head(head),
            Ok(None) => {}
            Err(error) => return NextHead::Refused(error),
        }
    }
}

pub(super) fn refusal(error: HeadError) -> (StatusCode, &'static str) {
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
pub(super) async fn refuse(
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
