//! One access-log line per request (SPEC §2), written when the response
//! body is finished so the byte count and duration are final. Fields are
//! kept as cheap clones of what the request already holds and formatted only
//! if the `porter::access` target is enabled at `info`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Uri};

use crate::upstream::server::Server;

pub const TARGET: &str = "porter::access";

#[derive(Debug)]
pub struct AccessRecord {
    pub start: Instant,
    pub client: SocketAddr,
    pub method: Method,
    pub host: Option<HeaderValue>,
    pub uri: Uri,
    pub status: u16,
    pub upstream: Option<Arc<Server>>,
    pub route: Option<Arc<crate::router::Route>>,
}

/// Whether access-log lines are wanted at all (RUST_LOG can turn them off).
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

impl AccessRecord {
    pub fn write(&self, bytes: u64) {
        let host = self.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("-");
        let upstream = self.upstream.as_ref().map(|s| &*s.label).unwrap_or("-");
        let route = self.route.as_ref().map(|r| &*r.label).unwrap_or("-");
        tracing::info!(
            target: TARGET,
            client = %self.client,
            method = %self.method,
            host,
            path = %self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            status = self.status,
            bytes,
            upstream,
            route,
            duration_us = self.start.elapsed().as_micros() as u64,
            "request"
        );
    }
}
