//! A server connection lent to one request: a whole HTTP/1.1 connection, or
//! one stream of a shared HTTP/2 connection (`h2.rs`). The request counts as
//! in flight at its server while the lease lives; when the response body has
//! been read to the end, [`Lease::release`] gives an HTTP/1.1 connection back
//! to the server's pool. A lease dropped without release (a body abandoned
//! half-way, an upgraded connection) closes an HTTP/1.1 connection instead:
//! it may be mid-response. An HTTP/2 stream is freed either way (an
//! unfinished one is reset; the connection carries on).

use std::sync::Arc;

use super::connect::UpstreamSender;
use super::h2::Stream;
use super::http1::Conn;
use super::server::{InFlight, Server};
use crate::body::BodyProgress;

#[derive(Debug)]
enum Held {
    /// porter's own HTTP/1.1 client: the connection rides in the response body
    /// and comes back through [`Lease::release_conn`].
    Own,
    /// hyper's HTTP/1.1 client: requests with large or unsized bodies, and upgrades.
    Http1(UpstreamSender),
    /// Held for its Drop, which frees the stream's slot on the connection.
    Http2(#[allow(dead_code)] Stream),
}

#[derive(Debug)]
pub(crate) struct Lease {
    /// Held for what its drop does (frees an HTTP/2 stream, closes an upgrade's sender).
    #[allow(dead_code)]
    held: Held,
    in_flight: InFlight,
    /// The request body, when hyper's client streams it while the answer comes:
    /// a response cut off because the client's body failed is not the server's fault.
    request_body: Option<Arc<BodyProgress>>,
}

impl Lease {
    pub(crate) fn own(in_flight: InFlight) -> Lease {
        Lease { held: Held::Own, in_flight, request_body: None }
    }

    pub(crate) fn http1(sender: UpstreamSender, in_flight: InFlight, request_body: Option<Arc<BodyProgress>>) -> Lease {
        Lease { held: Held::Http1(sender), in_flight, request_body }
    }

    pub(crate) fn http2(stream: Stream, in_flight: InFlight, request_body: Option<Arc<BodyProgress>>) -> Lease {
        Lease { held: Held::Http2(stream), in_flight, request_body }
    }

    /// The client's request body failed (or passed porter's limit) while this
    /// response was coming: whatever broke the response is not the server's doing.
    pub(crate) fn request_body_failed(&self) -> bool {
        self.request_body.as_ref().is_some_and(|body| body.failed())
    }

    pub(crate) fn server(&self) -> &Arc<Server> {
        self.in_flight.server()
    }

    /// The response was read whole and its connection can carry the next request.
    pub(crate) fn release_conn(self, conn: Conn) {
        self.in_flight.server().pool.checkin(conn);
    }

    /// The response (hyper's client) was read whole: its connection can carry the next request.
    pub(crate) fn release(self) {
        if let Held::Http1(sender) = self.held {
            self.in_flight.server().pool.checkin_hyper(sender);
        }
    }

    /// Keeps the request counted (an upgraded tunnel) and lets the HTTP sender go.
    pub(crate) fn into_in_flight(self) -> InFlight {
        self.in_flight
    }
}
