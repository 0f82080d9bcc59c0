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
//!
//! - `head`: waiting for and reading a request head, and refusing a bad one;
//! - `write`: the response head and body written back, bounded by `limits.body_timeout`.

mod head;
mod write;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::{StatusCode, Version};
use http_body::Body;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::body::http1::{Reader, RequestStream, Returned};
use crate::body::{ClientBody, ClientRequest};
use crate::http1::chunked::Chunked;
use crate::http1::request::{BodyKind, Head, HeadError};
use crate::http1::response::{self, Answering};
use crate::http1::view::RawRequest;
use crate::net::boxed::pin_in_place;
use crate::net::io::{give_back, split, take_buffer, unsplit, ClientIo, WriteSide};
use crate::proxy::upgrade::PendingTunnel;
use crate::proxy::Reply;
use crate::shutdown::DrainWatch;
use head::{next_head, refusal, refuse};
use write::{write_response, ClientOut};

/// The limits a connection runs under (from `limits:`).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
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

enum NextHead {
    Head(Head<ClientBody>),
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
pub(crate) fn serve<F, Fut>(
    io: ClientIo,
    settings: Settings,
    mut drain: DrainWatch,
    handler: F,
) -> impl Future<Output = ()>
where
    F: Fn(ClientRequest, Option<RawRequest>) -> Fut,
    Fut: Future<Output = Reply> + Send,
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
        // everything a request needs lives in `exchange`'s boxed future instead.
        while let Some(home) = reader.as_mut() {
            let hsts = settings.hsts.as_ref();
            // The head goes straight into the boxed exchange, in this one statement: a head
            // held in a local across a later await would sit in the task's state for good.
            let exchanging = {
                let next = match next_head(home, &settings, first.then_some(started), &mut drain, &mut wait_timer).await
                {
                    NextHead::Head(head) => Ok(pin_in_place(|| {
                        exchange(head, &mut reader, &mut write, &handler, &drain, settings.body_timeout, hsts)
                    })),
                    NextHead::Closed => break,
                    NextHead::TimedOut => {
                        tracing::debug!("request head not complete within header_read_timeout: 408");
                        Err((StatusCode::REQUEST_TIMEOUT, "408 Request Timeout: request headers took too long\n"))
                    }
                    NextHead::Refused(error) => Err(refusal(error)),
                };
                match next {
                    Ok(exchanging) => exchanging,
                    Err((status, message)) => {
                        // Holds no exchange (that borrows the connection), but its type does.
                        drop(next);
                        Box::pin(refuse(&mut write, reader.take(), status, message, hsts)).await;
                        return;
                    }
                }
            };
            first = false;
            let after = exchanging.await;
            match after {
                After::KeepAlive => {}
                After::Close => break,
                After::Gone => return,
                After::Tunnel(tunnel, Reader { io: read, buf }) => {
                    let Some(client) = unsplit(read, write) else { return };
                    Box::pin(tunnel.run(client, buf.unwrap_or_default())).await;
                    return;
                }
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
    /// A 101 was written: the connection becomes this tunnel.
    Tunnel(PendingTunnel, Reader),
}

/// One request: its body set streaming, the pipeline's answer written back,
/// and the read side home again for the next request.
async fn exchange<F, Fut>(
    head: Head<ClientBody>,
    reader: &mut Option<Reader>,
    write: &mut WriteSide,
    handler: &F,
    drain: &DrainWatch,
    body_timeout: Duration,
    hsts: Option<&http::HeaderValue>,
) -> After
where
    F: Fn(ClientRequest, Option<RawRequest>) -> Fut,
    Fut: Future<Output = Reply> + Send,
{
    let Head { mut request, fields, body: kind, keep_alive, expect_continue, te_trailers } = head;
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
    // One place for the pipeline's future in this future's state, polled where it lies:
    // awaiting it by value in one arm and pinned in the other would hold two slots of its
    // size (kilobytes), each copied when the exchange is boxed.
    let mut response = {
        *request.body_mut() = body;
        let mut handling = std::pin::pin!(handler(request, Some(fields)));
        match wants_body {
            None => handling.as_mut().await,
            Some(mut wanted) => {
                tokio::select! {
                    biased;
                    response = handling.as_mut() => response,
                    Ok(()) = &mut wanted => {
                        if write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() || write.flush().await.is_err() {
                            return After::Gone;
                        }
                        handling.as_mut().await
                    }
                }
            }
        }
    };

    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(tunnel) = response.extensions_mut().remove::<PendingTunnel>() {
            let mut head = take_buffer();
            let mut keep = true;
            let to = Answering { method: &method, http11 };
            let hint = response.body().size_hint();
            response::write_head(&mut head, status, response.headers(), None, &hint, to, &mut keep);
            drop(response);
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
    // The body is written where it lies, in the pipeline's box; the fields are taken out
    // beside it (a map without entries allocates nothing).
    let headers = std::mem::take(response.headers_mut());
    let written = write_response(&mut out, status, &headers, response.body_mut(), to, te_trailers, &mut keep).await;
    // Ends the server's exchange (its connection back to the pool, the access-log line)
    // before waiting on the request body's return.
    drop(response);
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

#[cfg(test)]
mod tests {
    /// The connection's task holds this future for the connection's life, idle
    /// or not: per-request work is boxed so it stays small (idle memory, at most
    /// 2 KiB per idle plain connection: docs/benchmarks.md). Measured in a debug
    /// build with a handler holding two `Arc`s, as the listeners' handlers do.
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
        let serve = super::serve(io, settings, drain.watch(), move |_request, _raw| {
            let _held = (context.clone(), snapshot.clone());
            async { Box::new(http::Response::new(crate::upstream::ResponseBody::empty())) }
        });
        let size = std::mem::size_of_val(&serve);
        eprintln!("serve future: {size} bytes");
        assert!(size <= 576, "serve future is {size} bytes");
    }
}
