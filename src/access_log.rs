//! One access-log line per request (SPEC §2), written when the response
//! body is finished so the byte count and duration are final. Fields are
//! kept as cheap clones of what the request already holds and formatted only
//! if the `porter::access` target is enabled at `info`.
//!
//! Lines go to a writer thread through a bounded queue that never blocks a
//! worker: when the writer falls behind (a slow or stuck stderr), lines are
//! dropped and counted, and [`dropped_lines`] reports the count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Uri, Version};

use crate::upstream::server::Server;

pub const TARGET: &str = "porter::access";

#[derive(Debug)]
pub struct AccessRecord {
    pub start: Instant,
    pub client: SocketAddr,
    pub method: Method,
    pub host: Option<HeaderValue>,
    pub uri: Uri,
    pub version: Version,
    /// "TLSv1.3" / "TLSv1.2"; `None` on plaintext.
    pub tls_version: Option<&'static str>,
    pub user_agent: Option<HeaderValue>,
    pub request_id: Option<HeaderValue>,
    pub status: u16,
    pub upstream: Option<Arc<Server>>,
    pub route: Option<Arc<crate::router::Route>>,
}

/// Counts access-log lines dropped because the writer fell behind (installed by the binary).
static DROPPED: std::sync::OnceLock<tracing_appender::non_blocking::ErrorCounter> = std::sync::OnceLock::new();

/// Installs the counter of the lossy writer access lines go through.
pub fn count_drops_with(counter: tracing_appender::non_blocking::ErrorCounter) {
    let _ = DROPPED.set(counter);
}

/// Access-log lines dropped so far because the writer fell behind.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
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
            protocol = version_name(self.version),
            tls = self.tls_version.unwrap_or("-"),
            host,
            path = %self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            status = self.status,
            bytes,
            upstream,
            route,
            user_agent = text(&self.user_agent),
            request_id = text(&self.request_id),
            duration_us = self.start.elapsed().as_micros() as u64,
            "request"
        );
    }
}

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "h2",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/3",
    }
}

fn text(value: &Option<HeaderValue>) -> &str {
    value.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-")
}
