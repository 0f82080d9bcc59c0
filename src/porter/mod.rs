//! porter's life cycle: [`start()`] binds the listeners a [`Config`](crate::Config) names,
//! builds the first runtime snapshot and spawns the accept loops, the admin
//! listener, the certificate watcher and ACME; [`Porter::reload`] swaps in a new
//! snapshot; [`Porter::shutdown`] stops accepting and drains. It sits on top of
//! every other module and nothing but the binary and the tests calls it.
//! [`start_with`] takes listening sockets handed over instead (systemd socket
//! activation, or the previous process in an upgrade: [`crate::handover`]).
//!
//! - `start`: binding the listeners and spawning what serves them;
//! - `reload`: a new configuration checked and swapped in;
//! - `stop`: the drain, alone or after a hand-over;
//! - `error`: why porter did not start or refused a reload.

mod error;
mod reload;
mod start;
mod stop;

pub use error::{BindAddress, StartError};
pub use reload::validate;
pub use start::{start, start_with};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config;
use crate::runtime::{Runtime, Shared};
use crate::stats::ReloadStats;
use crate::tls::CertResolver;
use crate::{access_log, acme, listener, shutdown};

/// A running porter: its bound addresses and the handles to stop or reload it.
pub struct Porter {
    pub https_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// The UDP address HTTP/3 is served on (`listen.http3`).
    pub http3_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    reloads: Arc<ReloadStats>,
    certs: Arc<CertResolver>,
    /// The certificate folder and the task rescanning it; a reload may point elsewhere.
    cert_watch: std::sync::Mutex<CertWatch>,
    stop: watch::Sender<bool>,
    accept_tasks: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    drain: Arc<shutdown::Drain>,
    /// Outlives the drain (so /healthz can answer 503 during it); aborted last.
    admin_task: Option<JoinHandle<()>>,
    /// Each listener's connection slots (`limits.max_connections` per listener).
    slots: Vec<Arc<listener::Slots>>,
    /// The listener settings of the running configuration (addresses fixed at start).
    listen: std::sync::Mutex<config::Listen>,
    acme: Arc<acme::Acme>,
    /// The access log's writer (stderr or `access_log.path`), kept across reloads.
    access_log: access_log::Sink,
    /// Copies of the listening sockets, for a successor to take over ([`Porter::listening_fds`]).
    listening: Vec<(&'static str, std::os::fd::OwnedFd)>,
    /// Stops the admin listener's accepting at once (a hand-over: the successor answers).
    admin_stop: watch::Sender<bool>,
    /// The HTTP/3 endpoint (`listen.http3`), for a hand-over to let go of its UDP socket.
    http3: Option<listener::h3::Http3>,
}

struct CertWatch {
    dir: std::path::PathBuf,
    /// `None` without an https listener: no certificate is served, none is watched.
    task: Option<JoinHandle<()>>,
}

/// How often the certificate folder is rescanned for new, renewed or removed files.
const CERT_RESCAN: Duration = Duration::from_secs(1);

impl Porter {
    /// SIGUSR1: opens the access log file again at its path (after logrotate moved it).
    pub fn reopen_logs(&self) {
        self.access_log.reopen();
    }

    /// Managed names, their state, and the ACME counters (for /status and metrics).
    pub fn acme_status(&self) -> acme::AcmeStatus {
        self.acme.status()
    }

    /// The snapshot requests currently use (for status and tests).
    pub(crate) fn runtime(&self) -> Arc<Runtime> {
        self.shared.runtime.load_full()
    }

    /// The listening sockets by listener name (`https`, `http`, `admin`), for a new
    /// process to take over ([`crate::handover`]).
    pub fn listening_fds(&self) -> Vec<(&'static str, std::os::fd::BorrowedFd<'_>)> {
        self.listening.iter().map(|(name, fd)| (*name, std::os::fd::AsFd::as_fd(fd))).collect()
    }
}
