//! porter: an HTTP/HTTPS edge reverse proxy and load balancer.
//!
//! [`start`] binds the listeners a [`Config`] names and serves until
//! [`Porter::shutdown`]; the binary (`main.rs`) adds the command line and
//! signals, and the tests start porter in-process the same way.
//! [`start_with`] takes listening sockets handed over instead (systemd socket
//! activation, or the previous process in an upgrade: [`handover`]).
//!
//! # Layout
//!
//! The modules, bottom first. Each imports only modules listed above it (or on
//! its own line, never both ways); `tests/layering.rs` reads every `crate::`
//! path in `src/` and fails otherwise.
//!
//! - `http1`: HTTP/1.1 parse and serialise, requests and responses; imports nothing of porter
//! - `config`: what the user wrote (raw) checked into what porter runs (schema)
//! - `stats`, `shutdown`, `probe`: counters, the drain, the container health probe
//! - `tls`: certificates, folder layouts, the SNI resolver and its ACME challenge answers
//! - `net`: byte streams: the client's TCP (PROXY protocol) and TLS streams, buffers, clock
//! - `access_log`: the access-log line and its writer
//! - `body`: the client's request body as it streams to a server
//! - `upstream`: servers, pools, balancers, health, DNS, the upstream client and the response body
//! - `policy`: route policy (allow/deny, rate limits, basic and forward auth, header rules, rewrite, redirect, respond), compiled per route
//! - `router`: host and path to a route
//! - `runtime`: the snapshot a reload swaps whole
//! - `proxy`: the request pipeline
//! - `listener`: the listeners and connection servers (HTTP/1.1 loop, HTTP/2, HTTP/3)
//! - `acme`: certificates ordered from an ACME CA
//! - `admin`: the admin listener (metrics, status, health)
//! - `handover`: a binary upgrade handing the listening sockets to the new process
//! - `porter`: the life cycle: start, reload, drain, stop
//! - `fuzzing`: entry points for the fuzz targets (test and fuzz builds only)

// `forbid(unsafe_code)` wherever no unsafe is needed: the unsafe left is in
// http1 and net (buffers filled by a read, spans already validated), upstream's
// client (the same), handover and listener (file descriptors).
#[forbid(unsafe_code)]
pub mod access_log;
#[forbid(unsafe_code)]
pub mod acme;
#[forbid(unsafe_code)]
pub(crate) mod admin;
#[forbid(unsafe_code)]
pub(crate) mod body;
#[forbid(unsafe_code)]
pub mod config;
// Also under test: its unit test replays the fuzzers' saved crash inputs (fuzz/regressions/).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod handover;
pub(crate) mod http1;
pub mod listener;
pub(crate) mod net;
#[forbid(unsafe_code)]
pub mod policy;
#[forbid(unsafe_code)]
pub mod porter;
#[forbid(unsafe_code)]
pub mod probe;
#[forbid(unsafe_code)]
pub mod proxy;
#[forbid(unsafe_code)]
pub mod router;
#[forbid(unsafe_code)]
pub mod runtime;
#[forbid(unsafe_code)]
pub mod shutdown;
#[forbid(unsafe_code)]
pub mod stats;
#[forbid(unsafe_code)]
pub mod tls;
pub mod upstream;

pub use config::Config;
pub use porter::{restart_needed, start, start_with, validate, BindAddress, Porter, StartError};
