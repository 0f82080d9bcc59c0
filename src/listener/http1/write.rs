//! Writing a response to the client: the head (raw server fields or a map)
//! and the body in its framing, every wait bounded by `limits.body_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::StatusCode;
use http_body::Body;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use crate::http1::response::{self, Answering, BodyFraming};
use crate::net::io::{give_back, poll_write_some, take_buffer, WriteSide};
use crate::upstream::ResponseBody;

/// Writes the head and body. Returns false when the response could not be
/// written whole (the connection must close).
pub(super) async fn write_response(
    write: &mut ClientOut<'_>,
    status: StatusCode,
    headers: &http::HeaderMap,
    body: &mut ResponseBody,
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
    body: &mut ResponseBody,
    framing: BodyFraming,
    te_trailers: bool,
) -> bool {
    let mut body = Pin::new(body);
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
pub(super) struct ClientOut<'a> {
    pub(super) write: &'a mut WriteSide,
    pub(super) limit: Duration,
    pub(super) timer: Option<Pin<Box<Sleep>>>,
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
        // Most flushes (all on plain TCP) complete at once: tried first with no timer.
        if let Poll::Ready(flushed) = Pin::new(&mut *self.write).poll_flush(&mut Context::from_waker(Waker::noop())) {
            return flushed.is_ok();
        }
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
