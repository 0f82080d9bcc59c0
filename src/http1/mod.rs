//! HTTP/1.1 as bytes: heads parsed and written, bodies framed, in both
//! directions (the client's requests, the servers' responses). It imports
//! nothing of porter; the connection loop that drives it for clients is
//! `listener::http1`, the upstream client `upstream::http1`. HTTP/2 stays on
//! hyper, and hyper's HTTP/1.1 server is only the reference the differential
//! tests and fuzz target (`differential`) compare against.
//!
//! - `request`: a head parsed with httparse, framed by the rules of docs/security.md, Request framing;
//! - `chunked`: the chunked request body decoder;
//! - `fields`: a server's response fields kept as bytes, written back without a map;
//! - `view`: a client's request fields kept as bytes, read by every phase through one interface;
//! - `response`: a response head and its framing;
//! - `unchecked`: the two unchecked steps (values and spans httparse validated), the only unsafe here;
//!
//! The request body streamed from a client connection is `body::http1`; the
//! connection's stream and the read-buffer pool are `net::io`.

#[forbid(unsafe_code)]
pub(crate) mod chunked;
#[cfg(any(test, feature = "fuzzing"))]
#[forbid(unsafe_code)]
pub(crate) mod differential;
#[forbid(unsafe_code)]
pub(crate) mod fields;
#[forbid(unsafe_code)]
pub(crate) mod request;
#[forbid(unsafe_code)]
pub(crate) mod response;
pub(crate) mod unchecked;
#[forbid(unsafe_code)]
pub(crate) mod view;
