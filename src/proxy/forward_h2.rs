//! Sending a request over HTTP/2 to a server of an `http2: true` upstream:
//! take a stream on a shared connection (`upstream/h2.rs`), send, and sort
//! the failures into "not processed, send again" and the rest.
//!
//! HTTP/2 carries the target as `:scheme` + `:authority` + `:path`, so the
//! request is put in absolute form, its authority taken from the client's
//! Host (which the router already checked), and the Host header dropped
//! (`:authority` replaces it, RFC 9113 §8.3.1). [`to_http1`] undoes that when
//! a request that was meant for HTTP/2 ends up on HTTP/1.1.

use std::sync::Arc;

use http::uri::{Authority, Scheme, Uri};
use http::{header, HeaderValue, Request, Version};
use http_body::Body;

use super::error::ProxyError;
use super::forward::{answer_within, client_side, copy_head, send_http1, Failure, Forwarded};
use crate::body::RequestBody;
use crate::upstream::h2::{self, Acquired, ConnectFailure};
use crate::upstream::server::{InFlight, Server};
use crate::upstream::Lease;
use crate::upstream::Upstream;

pub(super) async fn send(
    upstream: &Upstream,
    server: &Arc<Server>,
    request: Request<RequestBody>,
    replay: Option<&Request<RequestBody>>,
) -> Result<Forwarded, Failure> {
    let in_flight = InFlight::new(server.clone());
    let mut request = request;
    // One more go on this server, for a stream it refused or a connection that closed under us.
    let mut again = true;
    loop {
        let began = std::time::Instant::now();
        let stream = match h2::acquire(server, upstream.connect_timeout).await {
            Ok(Acquired::Stream(stream)) => stream,
            Ok(Acquired::Http1) => {
                drop(in_flight);
                return Box::pin(send_http1(upstream, server, request)).await;
            }
            Err(failure) => {
                let error = match failure {
                    ConnectFailure::Timeout => ProxyError::ConnectTimeout,
                    ConnectFailure::Failed => ProxyError::ConnectFailed,
                };
                return Err(Failure::server(error, Some(request), None));
            }
        };
        let Some(h2_request) = to_http2(request, server) else {
            return Err(Failure::local(ProxyError::InvalidHost));
        };
        let mut h2_request = h2_request;
        let progress = (!h2_request.body().is_end_stream()).then(|| h2_request.body_mut().track());
        let connect = began.elapsed();
        let mut sender = stream.sender();
        let sent = answer_within(upstream, progress.as_deref(), sender.try_send_request(h2_request)).await;
        let (unsent, error) = match sent {
            Ok(Ok(response)) => {
                let (head, body) = response.into_parts();
                let lease = Lease::http2(stream, in_flight, progress);
                let body = crate::upstream::ServerBody::Hyper(body);
                return Ok(Forwarded::new(head, body, lease, upstream.read_timeout, connect));
            }
            Err(timeout) => return Err(Failure::server(timeout, None, None)),
            Ok(Err(mut e)) => (e.take_message(), e.into_error()),
        };
        if let Some(local) = client_side(&error) {
            return Err(Failure::local(local));
        }
        // Handed back: the connection closed before the stream opened. Else, if the server
        // said it did not process the stream, a copy of a bodiless request is as good.
        let unsent = unsent.or_else(|| not_processed(&error).then(|| replay.map(copy_head)).flatten());
        tracing::debug!(server = %server.label, error = %error, resend = unsent.is_some(), "upstream HTTP/2 request failed");
        match unsent {
            Some(back) if again => {
                again = false;
                request = back;
            }
            // Not processed, so not the server's failure: a server shutting down says GOAWAY.
            Some(back) => {
                return Err(Failure {
                    error: ProxyError::UpstreamFailed,
                    unsent: Some(Box::new(back)),
                    counts_against_server: false,
                    sent: None,
                })
            }
            None => return Err(Failure::server(ProxyError::UpstreamFailed, None, None)),
        }
    }
}

/// REFUSED_STREAM, or a GOAWAY whose last stream id is below this stream's:
/// the server guarantees it did nothing with the request (RFC 9113 §8.7).
fn not_processed(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<::h2::Error>() {
            return h2.is_remote()
                && (h2.reason() == Some(::h2::Reason::REFUSED_STREAM) || (h2.is_go_away() && !h2.is_io()));
        }
        source = e.source();
    }
    false
}

/// Absolute form with `:authority` from the Host header; HTTP/2 version.
fn to_http2(mut request: Request<RequestBody>, server: &Server) -> Option<Request<RequestBody>> {
    *request.version_mut() = Version::HTTP_2;
    if request.uri().authority().is_some() {
        return Some(request); // already converted (a resend)
    }
    let host = request.headers_mut().remove(header::HOST)?;
    let authority = Authority::try_from(host.as_bytes()).ok()?;
    let scheme = match server.url.scheme {
        crate::config::Scheme::Http => Scheme::HTTP,
        crate::config::Scheme::Https => Scheme::HTTPS,
    };
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    *request.uri_mut() = Uri::from_parts(parts).ok()?;
    Some(request)
}

/// Back to origin form with a Host header, for a request that was put in HTTP/2 form.
pub(super) fn to_http1(mut request: Request<RequestBody>) -> Request<RequestBody> {
    if request.version() != Version::HTTP_2 {
        return request;
    }
    *request.version_mut() = Version::HTTP_11;
    let uri = std::mem::take(request.uri_mut());
    if let Some(authority) = uri.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            request.headers_mut().insert(header::HOST, host);
        }
    }
    *request.uri_mut() = match uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    };
    request
}
