//! porter's HTTP/1.1 server side: the client connections of both listeners.
//! HTTP/2 stays on hyper, and hyper's HTTP/1.1 server is only the reference
//! the differential tests and fuzz target (`differential`) compare against.
//!
//! - `request`: a head parsed with httparse, framed by the rules of docs/security.md, Request framing;
//! - `chunked`: the chunked request body decoder;
//! - `body`: a request body streamed from the connection's read buffer;
//! - `fields`: a server's response fields kept as bytes, written back without a map;
//! - `response`: a response head and its framing;
//! - `io`: the connection's stream, split in two, and the read-buffer pool;
//! - `server`: the connection loop that ties them together.

pub mod body;
pub mod chunked;
#[cfg(any(test, feature = "fuzzing"))]
pub mod differential;
pub mod fields;
pub mod io;
pub mod request;
pub mod response;
pub mod server;
