//! A server connection lent to one request. The request counts as in flight
//! at its server while the lease lives; when the response body has been read
//! to the end, [`Lease::release`] gives the connection back to the server's
//! pool. A lease dropped without release (a body abandoned half-way, an
//! upgraded connection) closes the connection instead: it may be mid-response.

use std::sync::Arc;

use super::connect::UpstreamSender;
use super::server::{InFlight, Server};

#[derive(Debug)]
pub struct Lease {
    sender: UpstreamSender,
    in_flight: InFlight,
}

impl Lease {
    pub fn new(sender: UpstreamSender, in_flight: InFlight) -> Lease {
        Lease { sender, in_flight }
    }

    pub fn server(&self) -> &Arc<Server> {
        self.in_flight.server()
    }

    /// The response was read whole: the connection can carry the next request.
    pub fn release(self) {
        self.in_flight.server().pool.checkin(self.sender);
    }

    /// Keeps the request counted (an upgraded tunnel) and lets the HTTP sender go.
    pub fn into_in_flight(self) -> InFlight {
        self.in_flight
    }
}
