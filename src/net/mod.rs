//! Byte streams: what the connection servers and the upstream client read
//! and write, below any HTTP.
//!
//! - `proxy_protocol`: the client's TCP stream, after any PROXY protocol header;
//! - `tls_stream`: the client's TLS on rustls' unbuffered API, no buffer held while idle;
//! - `io`: a client connection plain or TLS as one type, split in two, and the
//!   per-thread pool of read buffers both directions share;
//! - `clock`: the millisecond clock the atomics' timestamps count in;
//! - `boxed`: boxing a future without copying it.

pub(crate) mod boxed;
pub(crate) mod clock;
pub(crate) mod io;
pub(crate) mod proxy_protocol;
pub(crate) mod tls_stream;
