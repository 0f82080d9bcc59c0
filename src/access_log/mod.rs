//! One access-log line per request (docs/configuration.md, Access log), written when
//! the response body is finished so the byte counts and duration are final.
//!
//! A record is made only when the running configuration has the log on: it
//! keeps cheap clones of what the request already holds, and is formatted
//! (`text`, `json` or `combined`, see `format.rs`) on the worker that finished
//! the response. The line then goes through a bounded queue to a writer
//! thread (`sink.rs`) that owns stderr or the file, so a request never waits
//! for a disk or a terminal: when the writer falls behind, lines are dropped
//! and counted ([`dropped_lines`], `porter_access_log_dropped_total`).

mod format;
mod sink;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{header, HeaderValue, Method, Request, Uri, Version};

use crate::config::AccessLogFormat;
use crate::http1::view::RequestFields;

pub(crate) use sink::{dropped_lines, Sink};

/// What a configuration snapshot gives each record: the format, and the queue to the writer.
#[derive(Debug)]
pub(crate) struct Log {
    format: AccessLogFormat,
    queue: sink::Queue,
}

#[derive(Debug)]
pub(crate) struct AccessRecord {
    pub log: Arc<Log>,
    pub start: Instant,
    pub client: SocketAddr,
    pub method: Method,
    pub host: Option<HeaderValue>,
    pub uri: Uri,
    pub version: Version,
    /// "TLSv1.3" / "TLSv1.2"; `None` on plaintext.
    pub tls_version: Option<&'static str>,
    pub referer: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    pub request_id: Option<HeaderValue>,
    /// The status porter answered with.
    pub status: u16,
    /// The label of the server that answered, or of the last one tried.
    pub upstream: Option<Arc<str>>,
    /// The status the server answered with; `None` when no server answered.
    pub upstream_status: Option<u16>,
    /// Time to get a connection to the server that answered (near zero for a pooled one).
    pub upstream_connect: Option<Duration>,
    /// From the start of the attempt that answered (connect included) to its response head.
    pub upstream_first_byte: Option<Duration>,
    /// Request body bytes read from the client, counted as they pass (`None`: no body).
    pub request_bytes: Option<Arc<AtomicU64>>,
    /// The label of the route that matched (host and path prefix).
    pub route: Option<Arc<str>>,
    /// The policy rule or local action that answered instead of an upstream.
    pub policy: Option<&'static str>,
}

impl AccessRecord {
    /// A record of `request`, to be completed as the request goes on. `host` is the
    /// request's host as the pipeline read it (`:authority` or Host). Boxed: it is
    /// carried from phase to phase, and moving a box moves 8 bytes, not 440.
    pub(crate) fn new<B>(
        log: &Arc<Log>,
        start: Instant,
        client: SocketAddr,
        request: &Request<B>,
        fields: RequestFields<'_>,
        host: Option<HeaderValue>,
    ) -> Box<AccessRecord> {
        Box::new(AccessRecord {
            log: log.clone(),
            start,
            client,
            method: request.method().clone(),
            host,
            uri: request.uri().clone(),
            version: request.version(),
            tls_version: None,
            referer: fields.value(&header::REFERER),
            user_agent: fields.value(&header::USER_AGENT),
            request_id: None,
            status: 0,
            upstream: None,
            upstream_status: None,
            upstream_connect: None,
            upstream_first_byte: None,
            request_bytes: None,
            route: None,
            policy: None,
        })
    }

    /// A counter the request body adds to as it is read (shared with the body).
    pub(crate) fn count_request_body(&mut self) -> Arc<AtomicU64> {
        self.request_bytes.get_or_insert_with(|| Arc::new(AtomicU64::new(0))).clone()
    }

    /// Formats the line (`bytes`: response body bytes sent) and queues it for the writer.
    pub(crate) fn write(&self, bytes: u64) {
        let mut line = Vec::with_capacity(320);
        format::line(self.log.format, self, bytes, SystemTime::now(), &mut line);
        self.log.queue.push(line);
    }

    fn request_body_bytes(&self) -> u64 {
        self.request_bytes.as_ref().map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

/// The protocol as the text and JSON formats name it.
fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "h2",
        Version::HTTP_3 => "h3",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/?",
    }
}
