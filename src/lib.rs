//! porter: an HTTP/HTTPS edge reverse proxy and load balancer.
//!
//! [`start`] binds the listeners a [`Config`] names and serves until
//! [`Porter::shutdown`]; the binary (`main.rs`) adds the command line and
//! signals, and the tests start porter in-process the same way.
//! [`start_with`] takes listening sockets handed over instead (systemd socket
//! activation, or the previous process in an upgrade: [`Upgrades`]).
//!
//! # Layout
//!
//! The modules, bottom first. Each imports only modules listed above it (or on
//! its own line, never both ways); `tests/layering.rs` reads every `crate::`
//! path in `src/` and fails otherwise.
//!
//! - `sys`: the calls no safe API covers (inherited sockets, a successor's exec, the allocator, the coarse clock); imports nothing of porter
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

// `forbid(unsafe_code)` wherever no unsafe is needed: the unsafe left is in two
// helpers, `sys` (file descriptors) and `http1::unchecked` (values and spans
// httparse validated); `http1` forbids it in its other files.
#[forbid(unsafe_code)]
pub(crate) mod access_log;
#[forbid(unsafe_code)]
pub(crate) mod acme;
#[forbid(unsafe_code)]
pub(crate) mod admin;
#[forbid(unsafe_code)]
pub(crate) mod body;
#[forbid(unsafe_code)]
pub(crate) mod config;
// Also under test: its unit test replays the fuzzers' saved crash inputs (fuzz/regressions/).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
#[forbid(unsafe_code)]
pub mod fuzzing;
#[forbid(unsafe_code)]
pub(crate) mod handover;
pub(crate) mod http1;
#[forbid(unsafe_code)]
pub(crate) mod listener;
#[forbid(unsafe_code)]
pub(crate) mod net;
#[forbid(unsafe_code)]
pub(crate) mod policy;
#[forbid(unsafe_code)]
pub(crate) mod porter;
#[forbid(unsafe_code)]
pub(crate) mod probe;
#[forbid(unsafe_code)]
pub(crate) mod proxy;
#[forbid(unsafe_code)]
pub(crate) mod router;
#[forbid(unsafe_code)]
pub(crate) mod runtime;
#[forbid(unsafe_code)]
pub(crate) mod shutdown;
#[forbid(unsafe_code)]
pub(crate) mod stats;
pub(crate) mod sys;
#[forbid(unsafe_code)]
pub(crate) mod tls;
#[forbid(unsafe_code)]
pub(crate) mod upstream;

// The public surface, all of it: the life cycle and the configuration, and
// what the binary's commands show (`check`, `certs`, `probe`, `upgrade`).
// Every module is crate-private, so the compiler reports what nothing uses.
pub use acme::{describe_from_disk as describe_acme, AcmeStatus, NameState};
pub use config::watch::{ConfigWatch, WATCH_INTERVAL};
pub use config::{Cidr, Config, ConfigError, RouteAction, TemplatePart};
pub use handover::Upgrades;
pub use listener::inherit::Inherited;
pub use porter::{start, start_with, validate, BindAddress, Porter, StartError};
pub use probe::probe;
pub use sys::Allocator;
pub use tls::{describe as describe_certificate, CertStore};

/// What the integration tests (tests/porter) reach beyond that surface.
#[doc(hidden)]
pub mod testing {
    use std::sync::Arc;

    pub use crate::tls::provider as tls_provider;
    pub use crate::upstream::server::Server as UpstreamServer;

    /// Server `server` of upstream `upstream` (in configuration order), as porter sees it.
    pub fn upstream_server(porter: &crate::Porter, upstream: usize, server: usize) -> Arc<UpstreamServer> {
        porter.runtime().upstreams[upstream].servers[server].clone()
    }

    /// Holds the snapshot requests use now, as a slow request would, until dropped.
    pub fn hold_snapshot(porter: &crate::Porter) -> impl Drop {
        porter.runtime()
    }
}
