//! porter's own HTTP/1.1 server side: the client connections of both
//! listeners, unless `PORTER_HTTP1_ENGINE=hyper` picks hyper's server (kept
//! as the reference the framing tests and the differential fuzz target
//! compare against). HTTP/2 stays on hyper.
//!
//! - `request`: a head parsed with httparse, framed by SPEC §8's rules;
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

/// Which implementation serves HTTP/1.1 client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// porter's own (this module).
    #[default]
    Porter,
    /// hyper's server, with the framing follower and head guard of `listener`.
    Hyper,
}

impl Engine {
    /// From `PORTER_HTTP1_ENGINE` (`porter`, the default, or `hyper`).
    pub fn from_env() -> Result<Engine, String> {
        match std::env::var("PORTER_HTTP1_ENGINE").as_deref() {
            Err(_) | Ok("") | Ok("porter") => Ok(Engine::Porter),
            Ok("hyper") => Ok(Engine::Hyper),
            Ok(other) => Err(format!("PORTER_HTTP1_ENGINE must be `porter` or `hyper`, not `{other}`")),
        }
    }
}
