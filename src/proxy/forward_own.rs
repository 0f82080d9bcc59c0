//! A request on porter's own HTTP/1.1 client: its head written once (or
//! already, from the client's bytes), sent on a pooled connection or a new
//! one, and once more on a fresh one when a pooled one turns out closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::Request;

use super::error::ProxyError;
use super::forward::{is_idempotent, sent_back, Failure, Forwarded, OwnHead};
use crate::upstream::connect::{self, ConnectError};
use crate::upstream::server::{InFlight, Server};
use crate::upstream::ServerBody;
use crate::upstream::{Lease, Upstream};

/// HTTP/1.1 on porter's own client: the head is written once into a buffer (or
/// was, from the client's bytes: `own`) and sent as is, also again on a fresh
/// connection when a pooled one turns out closed.
pub(super) async fn send_own(
    upstream: &Upstream,
    server: &Arc<Server>,
    request: super::forward::Outgoing,
    own: Option<OwnHead<'_>>,
) -> Result<Forwarded, Failure> {
    use crate::upstream::http1::SendError;
    let in_flight = InFlight::new(server.clone());
    let (parts, mut body) = (*request).into_parts();
    let mut written = BytesMut::new();
    let (head, framing) = match own {
        Some(own) => (own.head, own.framing),
        None => {
            written = crate::net::io::take_buffer();
            let framing = crate::upstream::http1::write_request_head(&mut written, &parts, &body);
            (&written[..], framing)
        }
    };
    let unsent = |parts, body| Some(Request::from_parts(parts, body));
    // A pooled connection the server closed as the request went out: once more on a fresh
    // one, when nothing of a body was taken and the method may be repeated.
    let mut fresh_only = false;
    loop {
        // A pooled connection took no time to connect (nginx logs 0 too), and no clock read.
        let (conn, reused, connect) = match checkout(server, fresh_only) {
            Some(conn) => (conn, true, Duration::ZERO),
            None => {
                let began = Instant::now();
                match Box::pin(connect::connect_own(server, upstream.connect_timeout)).await {
                    Ok(conn) => (conn, false, began.elapsed()),
                    Err(e) => {
                        tracing::debug!(server = %server.label, error = %e, "upstream connect failed");
                        let error = match e {
                            ConnectError::Timeout => ProxyError::ConnectTimeout,
                            _ => ProxyError::ConnectFailed,
                        };
                        crate::net::io::give_back(written);
                        return Err(Failure::server(error, unsent(parts, body), None));
                    }
                }
            }
        };
        let error = match conn.send(head, &mut body, framing, &parts.method, upstream.timeouts()).await {
            Ok((response, stream)) => {
                crate::net::io::give_back(written);
                let lease = Lease::own(in_flight);
                return Ok(Forwarded::new(response, ServerBody::Http1(stream), lease, upstream.read_timeout, connect));
            }
            Err(SendError::TimedOut) => {
                let sent = sent_back(parts, body);
                return Err(Failure::server(ProxyError::ResponseTimeout, None, sent));
            }
            Err(SendError::SendTimedOut) => return Err(Failure::server(ProxyError::SendTimeout, None, None)),
            Err(e) => e,
        };
        match error {
            SendError::Closed { body_started: false, .. } if reused && !fresh_only && is_idempotent(&parts.method) => {
                fresh_only = true;
            }
            SendError::BodyTooLarge => return Err(Failure::local(ProxyError::BodyTooLarge)),
            SendError::Client(fault) => return Err(Failure::local(fault.into())),
            SendError::BadResponse => {
                tracing::debug!(server = %server.label, "upstream response cannot be framed: 502");
                let sent = sent_back(parts, body);
                return Err(Failure::server(ProxyError::BadResponse, None, sent));
            }
            error => {
                tracing::debug!(server = %server.label, ?error, "upstream request failed");
                // Not processed only if the head could not be written whole (nothing of the body
                // went either): that much may go to another server, whatever the method. A head
                // that went out may have been acted on: only an idempotent request goes again.
                let untouched = matches!(error, SendError::Closed { body_started: false, head_sent: false });
                if untouched && http_body::Body::is_end_stream(&body) {
                    let unsent = unsent(parts, body);
                    return Err(Failure::server(ProxyError::UpstreamFailed, unsent, None));
                }
                let sent = sent_back(parts, body);
                return Err(Failure::server(ProxyError::UpstreamFailed, None, sent));
            }
        }
    }
}

fn checkout(server: &Server, fresh_only: bool) -> Option<crate::upstream::http1::Conn> {
    if fresh_only {
        return None;
    }
    // DNS no longer lists an address: its connections are let go (drain).
    std::iter::from_fn(|| server.pool.checkout()).find(|conn| server.is_current(conn.addr))
}
