//! Sending a prepared request to an upstream: pick a server, take a pooled
//! connection or open one, send, and on failure try another server within
//! the rules of docs/configuration.md, Retries.
//!
//! - Connection failures (nothing sent) move to another server for any method.
//! - A pooled connection that turns out closed before the request went out is
//!   replaced by a new one to the same server; that is not a server failure.
//! - After bytes were sent, only idempotent requests without a body are
//!   retried, from a copy of their head taken before the first attempt.
//! - No server is tried twice for one request; at most `retries` extra servers.
//! - Every retry is drawn from the upstream's retry budget (`upstream/budget.rs`:
//!   at most 20% of its requests over 10 s, with a floor of 3/s): when the
//!   whole fleet fails, it sees at most 1.2x its load, not (1 + retries)x.
//!
//! - On HTTP/2 upstreams a stream the server refused (REFUSED_STREAM) or
//!   dropped with GOAWAY was not processed (RFC 9113 §8.7): a request without
//!   a body is sent again, once more to the same server on another
//!   connection, then to another server, whatever its method.
//!
//! Passive health rides along: a connect error, reset or timeout counts
//! against the server (ejecting it after `max_failures`), an answer resets it.
//! Every failure is the server's, the client's or porter's own, decided once
//! where it happens: a client body that breaks, stalls or is cut off (400,
//! 408, 499) and a body over `max_body_bytes` (413) never count against the
//! server, are never retried, and `response_header` only runs once the
//! request was sent whole.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, Method, Request, Response};
use http_body::Body;

use super::error::ProxyError;
use crate::body::{BodyProgress, BodyTooLarge, ClientBodyError, RequestBody};
use crate::http1::view::RequestFields;
use crate::net::boxed::boxed;
use crate::net::clock::now_ms;
use crate::upstream::balancer::Tried;
use crate::upstream::connect::{self, ConnectError};
use crate::upstream::http1::Framing;
use crate::upstream::server::{InFlight, Server};
use crate::upstream::{Lease, Upstream};
use crate::upstream::{ResponseBody, ServerBody};

/// A server's answer: its response, whose body streams from the leased connection,
/// made in the box it is answered in ([`super::Reply`]): it rises through four
/// functions and their futures, and each would otherwise copy its 392 bytes.
pub(crate) struct Forwarded {
    pub response: super::Reply,
    /// For the access log: time to get the connection (pooled: near zero), and from the
    /// start of the attempt that answered to its response head (set by [`forward`]).
    pub connect: Duration,
    pub first_byte: Duration,
    /// `sticky:` upstreams: the index of the server that answered, when the request's
    /// cookie did not already name it (the answer then sets the cookie).
    pub repin: Option<usize>,
}

impl Forwarded {
    /// The answer's head and body, with the lease the body gives back when it ends.
    pub(super) fn new(
        head: http::response::Parts,
        body: ServerBody,
        lease: Lease,
        read_timeout: Duration,
        connect: Duration,
    ) -> Forwarded {
        let response = boxed(|| Response::from_parts(head, ResponseBody::upstream(body, lease, read_timeout)));
        Forwarded { response, connect, first_byte: Duration::ZERO, repin: None }
    }
}

/// A request head already written from the client's bytes (`proxy::head`), for
/// porter's own HTTP/1.1 client: sent as is to each server tried. The request
/// it goes with has an empty map; `fields` are the client's, for the balancer.
#[derive(Clone, Copy)]
pub(crate) struct OwnHead<'a> {
    pub head: &'a [u8],
    pub framing: Framing,
    pub fields: RequestFields<'a>,
}

pub(crate) struct ForwardError {
    pub error: ProxyError,
    pub server: Option<Arc<Server>>,
}

/// The request sent upstream, boxed: it passes through four functions and their
/// futures, and each would otherwise copy its 300-odd bytes.
pub(crate) type Outgoing = Box<Request<RequestBody>>;

/// Sends `request` to a server of `upstream`; `client` is the address hashed
/// by `consistent_hash` when the request lacks its header or cookie. `timed`:
/// the wait for the response head is measured (`first_byte`, for the access log).
pub(crate) async fn forward(
    upstream: &Upstream,
    request: Outgoing,
    own: Option<OwnHead<'_>>,
    client: IpAddr,
    timed: bool,
) -> Result<Forwarded, ForwardError> {
    if upstream.drained {
        return Err(ForwardError { error: ProxyError::Drained, server: None });
    }
    upstream.budget.note_request();
    let fields = own.map_or(RequestFields::Map(request.headers()), |own| own.fields);
    let key = upstream.key(fields, client);
    // A pinned client goes to its server first; the balancer picks for the others and for retries.
    let mut pinned = upstream.sticky.as_ref().and_then(|s| s.pinned(fields, &upstream.servers));
    let sticky_cookie = pinned;
    // The head is copied (an allocation) only when a replay could go somewhere.
    let can_retry = upstream.retries > 0 && upstream.servers.len() > 1;
    // After a request was processed, only idempotent ones go elsewhere; an HTTP/2 stream the
    // server did not process may go again whatever the method (it needs the copy too).
    let resend_processed = can_retry && is_idempotent(request.method()) && request.body_is_empty();
    // The head is copied (an allocation) only when a replay could go somewhere and the
    // request may travel over a client that consumes it (HTTP/2, or hyper's for upgrades):
    // porter's own HTTP/1.1 client hands a body-less request back (`Failure::sent`).
    let consumed = upstream.http2 || request.headers().contains_key(header::UPGRADE);
    let replay = if (resend_processed || upstream.http2) && request.body_is_empty() && consumed {
        Some(copy_head(&request))
    } else {
        None
    };
    let mut pending = Some(request);
    let mut tried = Tried::default();
    let mut last: Option<ForwardError> = None;
    for attempt in 0..=upstream.retries {
        let picked = match pinned.take() {
            Some(index) => Some((index, &upstream.servers[index])),
            None => upstream.pick(tried, key),
        };
        let Some((index, server)) = picked else { break };
        if attempt > 0 {
            if !upstream.budget.try_retry() {
                tracing::debug!(upstream = %upstream.name, "retry budget spent: not retrying");
                break;
            }
            upstream.stats.retries_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tried.insert(index);
        let server = server.clone();
        let request = match pending.take() {
            Some(request) => request,
            None => match &replay {
                Some(head) if resend_processed => Box::new(copy_head(head)),
                _ => break,
            },
        };
        // Read only for the access log: a clock read costs more than the rest of this loop.
        let attempt = timed.then(Instant::now);
        match send(upstream, &server, request, own, replay.as_ref()).await {
            Ok(mut forwarded) => {
                forwarded.first_byte = attempt.map_or(Duration::ZERO, |attempt| attempt.elapsed());
                if upstream.sticky.is_some() && sticky_cookie != Some(index) {
                    forwarded.repin = Some(index);
                }
                server.record_success();
                return Ok(forwarded);
            }
            Err(failure) => {
                if failure.counts_against_server {
                    server.record_failure(failure.error.message().trim_end());
                }
                let retry_allowed = failure.unsent.is_some() || resend_processed;
                pending = failure.unsent.or(if resend_processed { failure.sent } else { None });
                last = Some(ForwardError { error: failure.error, server: Some(server) });
                if !retry_allowed || failure.error == ProxyError::BodyTooLarge {
                    break;
                }
            }
        }
    }
    Err(last.unwrap_or(ForwardError { error: ProxyError::NoServer, server: None }))
}

/// Boxed requests: every level of the forwarding path returns a `Result` holding
/// this, and two requests inline made it 616 bytes to copy on every success too.
pub(super) struct Failure {
    pub error: ProxyError,
    /// The request, when it never left porter or the server did not process it
    /// (safe to send elsewhere).
    pub unsent: Option<Box<Request<RequestBody>>>,
    pub counts_against_server: bool,
    /// A body-less request handed back after it went out (porter's own client only
    /// borrows the head): the server may have processed it, so it goes again only if
    /// idempotent. Saves copying every head up front for a replay that rarely comes.
    pub sent: Option<Box<Request<RequestBody>>>,
}

impl Failure {
    /// The server failed the request (counted against it).
    pub(super) fn server(
        error: ProxyError,
        unsent: Option<Request<RequestBody>>,
        sent: Option<Request<RequestBody>>,
    ) -> Failure {
        Failure { error, unsent: unsent.map(Box::new), counts_against_server: true, sent: sent.map(Box::new) }
    }

    /// The request failed on porter's side or the client's: nothing to send again.
    pub(super) fn local(error: ProxyError) -> Failure {
        Failure { error, unsent: None, counts_against_server: false, sent: None }
    }
}

async fn send(
    upstream: &Upstream,
    server: &Arc<Server>,
    request: Outgoing,
    own: Option<OwnHead<'_>>,
    replay: Option<&Request<RequestBody>>,
) -> Result<Forwarded, Failure> {
    // Made only for a server on porter's own HTTP/1.1 client (`proxy::proxy` decides).
    if let Some(own) = own {
        return super::forward_own::send_own(upstream, server, request, Some(own)).await;
    }
    // Upgrades (WebSocket) are HTTP/1.1 on any upstream.
    if server.speaks_http2() && !request.headers().contains_key(header::UPGRADE) {
        return super::forward_h2::send(upstream, server, *request, replay).await;
    }
    send_http1(upstream, server, *request).await
}

pub(super) async fn send_http1(
    upstream: &Upstream,
    server: &Arc<Server>,
    request: Request<RequestBody>,
) -> Result<Forwarded, Failure> {
    let request = super::forward_h2::to_http1(request);
    if crate::upstream::http1::takes(&request) {
        return super::forward_own::send_own(upstream, server, Box::new(request), None).await;
    }
    send_hyper(upstream, server, request).await
}

/// HTTP/1.1 on hyper's client: requests with large or unsized bodies (hyper reads
/// the answer while it still sends), and upgrades, whose connection becomes the tunnel.
async fn send_hyper(
    upstream: &Upstream,
    server: &Arc<Server>,
    request: Request<RequestBody>,
) -> Result<Forwarded, Failure> {
    let in_flight = InFlight::new(server.clone());
    let mut request = request;
    // One pooled connection may have been closed by the server while idle; then a fresh one.
    // An upgrade always opens its own: its connection leaves the pool for good.
    let mut fresh_only = request.headers().contains_key(header::UPGRADE);
    loop {
        let began = Instant::now();
        let (mut sender, reused) = match checkout_hyper(server, fresh_only).await {
            Some(sender) => (sender, true),
            // Boxed: the connect future (TCP + TLS) is large and rare.
            None => match Box::pin(connect::connect_http1(server, upstream.connect_timeout)).await {
                Ok(sender) => (sender, false),
                Err(e) => {
                    tracing::debug!(server = %server.label, error = %e, "upstream connect failed");
                    let error = match e {
                        ConnectError::Timeout => ProxyError::ConnectTimeout,
                        _ => ProxyError::ConnectFailed,
                    };
                    return Err(Failure::server(error, Some(request), None));
                }
            },
        };
        let connect = began.elapsed();
        let progress = (!request.body().is_end_stream()).then(|| request.body_mut().track());
        let sent = answer_within(upstream, progress.as_deref(), sender.try_send_request(request)).await;
        match sent {
            Ok(Ok(response)) => {
                let (head, body) = response.into_parts();
                let lease = Lease::http1(sender, in_flight, progress);
                return Ok(Forwarded::new(head, ServerBody::Hyper(body), lease, upstream.read_timeout, connect));
            }
            Err(timeout) => return Err(Failure::server(timeout, None, None)),
            Ok(Err(mut e)) => {
                let unsent = e.take_message();
                let error = e.into_error();
                if let Some(local) = client_side(&error) {
                    return Err(Failure::local(local));
                }
                match unsent {
                    Some(back) if reused && !fresh_only => {
                        request = back;
                        fresh_only = true;
                    }
                    unsent => {
                        tracing::debug!(server = %server.label, error = %error, "upstream request failed");
                        return Err(Failure::server(ProxyError::UpstreamFailed, unsent, None));
                    }
                }
            }
        }
    }
}

async fn checkout_hyper(server: &Server, fresh_only: bool) -> Option<crate::upstream::connect::UpstreamSender> {
    if fresh_only {
        return None;
    }
    while let Some(mut sender) = server.pool.checkout_hyper() {
        if !server.is_current(sender.addr) {
            continue;
        }
        // A connection whose previous response just ended may need a moment to be ready.
        if sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
    None
}

/// A send that failed because of the client's body (or porter's limit on it),
/// not the server: what the client is answered, and never counted against the server.
pub(super) fn client_side(error: &hyper::Error) -> Option<ProxyError> {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if e.is::<BodyTooLarge>() {
            return Some(ProxyError::BodyTooLarge);
        }
        if let Some(fault) = ClientBodyError::find(e) {
            return Some(fault.into());
        }
        source = e.source();
    }
    None
}

/// Waits for `send` (hyper's client sending a request and reading the answer's
/// head). `response_header` runs from when the body was sent whole; while a
/// body still goes out, a wait on the client is the client's (the body's own
/// `limits.body_timeout`), and a wait on the server to take more is bounded by
/// `timeouts.send`. Without `progress` (no body) it is `response_header` alone.
pub(super) async fn answer_within<F: std::future::Future>(
    upstream: &Upstream,
    progress: Option<&BodyProgress>,
    send: F,
) -> Result<F::Output, ProxyError> {
    let Some(progress) = progress else {
        return tokio::time::timeout(upstream.response_header_timeout, send)
            .await
            .map_err(|_| ProxyError::ResponseTimeout);
    };
    let started = now_ms();
    let (answer_ms, send_ms) = (millis(upstream.response_header_timeout), millis(upstream.send_timeout));
    let mut send = std::pin::pin!(send);
    let timer = tokio::time::sleep(upstream.response_header_timeout.min(upstream.send_timeout));
    let mut timer = std::pin::pin!(timer);
    loop {
        tokio::select! {
            biased;
            output = send.as_mut() => return Ok(output),
            _ = timer.as_mut() => {}
        }
        let now = now_ms();
        let due = match progress.ended_ms() {
            Some(ended) if now >= ended + answer_ms => return Err(ProxyError::ResponseTimeout),
            Some(ended) => ended + answer_ms,
            // The client's time: its body's own timer bounds it.
            None if progress.waiting_on_client() => now + send_ms,
            None => {
                let due = progress.last_frame_ms().max(started) + send_ms;
                if now >= due {
                    return Err(ProxyError::SendTimeout);
                }
                due
            }
        };
        timer.as_mut().reset(tokio::time::Instant::now() + std::time::Duration::from_millis(due - now));
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX / 4)
}

/// A request that went out, back for a replay if it had no body.
pub(super) fn sent_back(parts: http::request::Parts, body: RequestBody) -> Option<Request<RequestBody>> {
    http_body::Body::is_end_stream(&body).then(|| Request::from_parts(parts, body))
}

pub(super) fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

pub(super) fn copy_head(request: &Request<RequestBody>) -> Request<RequestBody> {
    let mut copy = Request::new(RequestBody::empty());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

trait BodyIsEmpty {
    fn body_is_empty(&self) -> bool;
}

impl BodyIsEmpty for Request<RequestBody> {
    fn body_is_empty(&self) -> bool {
        http_body::Body::is_end_stream(self.body())
    }
}
