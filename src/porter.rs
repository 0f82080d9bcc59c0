//! porter's life cycle: [`start`] binds the listeners a [`Config`] names,
//! builds the first runtime snapshot and spawns the accept loops, the admin
//! listener, the certificate watcher and ACME; [`Porter::reload`] swaps in a new
//! snapshot; [`Porter::shutdown`] stops accepting and drains. It sits on top of
//! every other module and nothing but the binary and the tests calls it.
//! [`start_with`] takes listening sockets handed over instead (systemd socket
//! activation, or the previous process in an upgrade: [`crate::handover`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{self, Config};
use crate::runtime::{Runtime, Shared};
use crate::stats::{ListenerStats, ReloadStats};
use crate::tls::{self, CertResolver};
use crate::{access_log, acme, admin, listener, shutdown};

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

/// Why porter did not start, or refused a reload (the running configuration stays).
#[derive(Debug)]
pub enum StartError {
    /// A listener could not take its address: which listener, where, and why.
    Bind { what: &'static str, address: BindAddress, cause: std::io::Error },
    /// The configuration cannot run as written (the message names the setting).
    Config(String),
    /// The process could not set up something it needs (the access log's writer,
    /// a socket copy, the HTTP/3 endpoint).
    Runtime(String),
}

/// Where a listener was to listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindAddress {
    Tcp(SocketAddr),
    Udp(SocketAddr),
    /// A socket handed over (systemd socket activation, or an upgrade).
    Inherited,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind { what, address, cause } => match address {
                BindAddress::Tcp(addr) => write!(f, "cannot listen for {what} on {addr}: {cause}"),
                BindAddress::Udp(addr) => write!(f, "cannot listen for {what} on UDP {addr}: {cause}"),
                BindAddress::Inherited => write!(f, "cannot listen for {what} on the inherited socket: {cause}"),
            },
            StartError::Config(message) | StartError::Runtime(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

/// How often the certificate folder is rescanned for new, renewed or removed files.
const CERT_RESCAN: Duration = Duration::from_secs(1);
/// How often idle upstream connections are checked for expiry.
const POOL_SWEEP: Duration = Duration::from_secs(5);

pub async fn start(config: Config) -> Result<Porter, StartError> {
    start_with(config, &mut listener::inherit::Inherited::none()).await
}

/// [`start`], taking the listening sockets `inherited` holds (systemd socket activation,
/// or an upgrade's hand-over) instead of binding their addresses.
pub async fn start_with(config: Config, inherited: &mut listener::inherit::Inherited) -> Result<Porter, StartError> {
    for warning in validate(&config)? {
        tracing::warn!("{warning}");
    }
    // Without an https listener nothing serves a certificate: the folder is neither read
    // nor watched, and no self-signed fallback is made (nor warned about).
    let serves_tls = config.listen.https.is_some();
    let (store, problems) =
        if serves_tls { tls::load_or_fallback(&config.tls.certs) } else { (tls::CertStore::default(), Vec::new()) };
    for problem in &problems {
        tracing::warn!("certificate skipped: {problem}");
    }
    for cert in store.certs() {
        if cert.days_left() < 14 && !cert.self_signed_fallback {
            tracing::warn!("certificate expires soon: {}", tls::describe(cert));
        } else {
            tracing::info!("certificate: {}", tls::describe(cert));
        }
    }
    let certs = CertResolver::new(store);
    let access_log =
        access_log::Sink::start().map_err(|e| StartError::Runtime(format!("cannot start the access log: {e}")))?;
    let log = access_log.prepare(&config.access_log).map_err(StartError::Config)?;

    let https_listener = bind(config.listen.https, "https", inherited).await?;
    let http_listener = bind(config.listen.http, "http", inherited).await?;
    let admin_listener = bind(config.listen.admin, "admin", inherited).await?;
    // HTTP/3's UDP socket handed over, if any (bound below otherwise).
    let http3_inherited = config.listen.https.filter(|_| config.listen.http3).and_then(|a| inherited.take_udp(a));
    inherited.close_unused();
    let mut listening = Vec::new();
    for (name, listener) in [("https", &https_listener), ("http", &http_listener), ("admin", &admin_listener)] {
        if let Some(listener) = listener {
            listening.push((name, std::os::fd::AsFd::as_fd(listener).try_clone_to_owned().map_err(io_error)?));
        }
    }
    let https_addr = https_listener.as_ref().map(|l| l.local_addr()).transpose().map_err(io_error)?;
    let http_addr = http_listener.as_ref().map(|l| l.local_addr()).transpose().map_err(io_error)?;
    let admin_addr = admin_listener.as_ref().map(|l| l.local_addr()).transpose().map_err(io_error)?;

    // HTTP/3's UDP socket: the https listener's address and port (the port the
    // kernel chose, when port 0 was asked for).
    let http3_socket = match (config.listen.http3, https_addr, http3_inherited) {
        (true, Some(_), Some(socket)) => Some(socket),
        (true, Some(addr), None) => Some(listener::h3::bind(addr).map_err(|cause| StartError::Bind {
            what: "HTTP/3",
            address: BindAddress::Udp(addr),
            cause,
        })?),
        _ => None,
    };
    if let Some(socket) = &http3_socket {
        // Handed to a successor like the TCP listeners ([`Porter::listening_fds`]).
        listening.push(("h3", std::os::fd::AsFd::as_fd(socket).try_clone_to_owned().map_err(io_error)?));
    }
    let mut runtime =
        Runtime::build(&config, certs.clone(), https_addr.map(|a| a.port()), None).map_err(StartError::Config)?;
    runtime.access_log = access_log.apply(log);
    let shared = Arc::new(Shared { runtime: ArcSwap::from_pointee(runtime) });
    let (stop, stop_rx) = watch::channel(false);
    let drain = Arc::new(shutdown::Drain::new());
    let mut accept_tasks = Vec::new();
    let mut listener_stats = Vec::new();
    let mut slots = Vec::new();

    if let Some(listener) = https_listener {
        let shared = shared.clone();
        let drain = drain.clone();
        let stats = Arc::new(ListenerStats::new("https", true));
        listener_stats.push(stats.clone());
        tracing::info!(address = %https_addr.unwrap(), "listening for HTTPS");
        accept_tasks.push(tokio::spawn(listener::accept_loop(
            listener,
            slots_for(&mut slots, config.limits.max_connections),
            stats.clone(),
            stop_rx.clone(),
            move |stream, peer| listener::https::serve(stream, peer, shared.clone(), drain.watch(), stats.clone()),
        )));
    }
    let mut http3 = None;
    let mut http3_addr = None;
    let mut quic_stats = None;
    if let Some(socket) = http3_socket {
        let slots = slots_for(&mut slots, config.limits.max_connections);
        let (endpoint, task) =
            listener::h3::Http3::start(socket, shared.clone(), drain.clone(), slots, stop_rx.clone())
                .map_err(|e| StartError::Runtime(format!("cannot serve HTTP/3: {e}")))?;
        tracing::info!(address = %endpoint.addr, "listening for HTTP/3 (QUIC, UDP)");
        http3_addr = Some(endpoint.addr);
        quic_stats = Some(endpoint.quic.clone());
        listener_stats.push(endpoint.stats.clone());
        accept_tasks.push(task);
        http3 = Some(endpoint);
    }
    if let Some(listener) = http_listener {
        let shared = shared.clone();
        let drain = drain.clone();
        let stats = Arc::new(ListenerStats::new("http", false));
        listener_stats.push(stats.clone());
        tracing::info!(address = %http_addr.unwrap(), redirect = config.http.redirect, "listening for HTTP");
        accept_tasks.push(tokio::spawn(listener::accept_loop(
            listener,
            slots_for(&mut slots, config.limits.max_connections),
            stats,
            stop_rx.clone(),
            move |stream, peer| listener::http::serve(stream, peer, shared.clone(), drain.watch()),
        )));
    }
    let reloads = Arc::new(ReloadStats::started());
    let acme = Arc::new(acme::Acme::new(certs.clone()));
    let (admin_stop, admin_stop_rx) = watch::channel(false);
    let admin_task = admin_listener.map(|listener| {
        tracing::info!(address = %admin_addr.unwrap(), "listening for admin (/metrics, /status, /healthz, /livez, /)");
        let sources = admin::Sources {
            shared: shared.clone(),
            listeners: listener_stats,
            reloads: reloads.clone(),
            drain: drain.clone(),
            started: std::time::SystemTime::now(),
            acme: acme.clone(),
            quic: quic_stats,
        };
        tokio::spawn(admin::serve(listener, Arc::new(sources), admin_stop_rx))
    });

    let cert_watch = CertWatch {
        dir: config.tls.certs.clone(),
        task: serves_tls.then(|| tls::spawn_watcher(config.tls.certs.clone(), certs.clone(), CERT_RESCAN)),
    };
    let background = vec![spawn_pool_sweeper(shared.clone())];
    // After the listeners: the CA validates through them.
    acme.apply(&config);
    Ok(Porter {
        https_addr,
        http_addr,
        admin_addr,
        http3_addr,
        shared,
        reloads,
        certs,
        cert_watch: std::sync::Mutex::new(cert_watch),
        stop,
        accept_tasks,
        background,
        drain,
        admin_task,
        slots,
        listen: std::sync::Mutex::new(config.listen.clone()),
        acme,
        access_log,
        listening,
        admin_stop,
        http3,
    })
}

impl Porter {
    /// Swaps in a new configuration: requests already running finish on the old one,
    /// new connections and requests get everything else the file says (routes,
    /// upstreams, TLS settings, limits, PROXY protocol, trusted proxies). Listener
    /// addresses are fixed at start: a change to one is named in a warning.
    /// The outcome is counted for /metrics and /status.
    pub fn reload(&self, config: &Config) -> Result<(), StartError> {
        let result = self.apply(config);
        match &result {
            Ok(()) => self.reloads.applied(),
            Err(e) => self.reloads.refused(&e.to_string()),
        }
        result
    }

    /// Counts a reload refused before it reached [`Porter::reload`] (the file did not load).
    pub fn reload_refused(&self, error: &str) {
        self.reloads.refused(error);
    }

    fn apply(&self, config: &Config) -> Result<(), StartError> {
        let fixed;
        let mut config = config;
        for warning in validate(config)? {
            tracing::warn!("{warning}");
        }
        // First: a file that cannot be opened refuses the reload before anything changes.
        let log = self.access_log.prepare(&config.access_log).map_err(StartError::Config)?;
        {
            let mut listen = self.listen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for warning in restart_needed(&listen, &config.listen) {
                tracing::warn!("{warning}");
            }
            // Addresses (and HTTP/3's UDP socket) stay what is bound; the rest of the section is applied.
            *listen = config::Listen {
                https: listen.https,
                http: listen.http,
                admin: listen.admin,
                http3: listen.http3,
                ..config.listen.clone()
            };
            if config.listen.http3 != listen.http3 {
                // Alt-Svc must not offer an HTTP/3 that is not there (or hide one that is).
                fixed = config::Config {
                    listen: config::Listen { http3: listen.http3, ..config.listen.clone() },
                    ..config.clone()
                };
                config = &fixed;
            }
        }
        {
            let mut watch = self.cert_watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // The https listener is fixed at start: without it there is no folder to follow.
            let watch = &mut *watch;
            if let Some(task) = &mut watch.task {
                if watch.dir != config.tls.certs {
                    tracing::info!(from = %watch.dir.display(), to = %config.tls.certs.display(), "certificate folder changed");
                    task.abort();
                    watch.dir = config.tls.certs.clone();
                    *task = tls::spawn_watcher(watch.dir.clone(), self.certs.clone(), CERT_RESCAN);
                }
                tls::reload_now(&watch.dir, &self.certs);
            }
        }
        let previous = self.shared.runtime.load_full();
        let mut runtime =
            Runtime::build(config, self.certs.clone(), self.https_addr.map(|a| a.port()), Some(&previous))
                .map_err(StartError::Config)?;
        runtime.access_log = self.access_log.apply(log);
        self.shared.runtime.store(Arc::new(runtime));
        for slots in &self.slots {
            slots.resize(config.limits.max_connections);
        }
        // The old snapshot's health checks and DNS refresh stop now, even while old
        // streams still hold its upstreams.
        previous.cancel.cancel();
        self.acme.apply(config);
        Ok(())
    }

    /// SIGUSR1: opens the access log file again at its path (after logrotate moved it).
    pub fn reopen_logs(&self) {
        self.access_log.reopen();
    }

    /// Managed names, their state, and the ACME counters (for /status and metrics).
    pub fn acme_status(&self) -> acme::AcmeStatus {
        self.acme.status()
    }

    /// The snapshot requests currently use (for status and tests).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.shared.runtime.load_full()
    }

    /// The drain shared by every connection: [`shutdown::Drain::is_draining`] tells
    /// whether a stop has begun.
    pub fn drain(&self) -> Arc<shutdown::Drain> {
        self.drain.clone()
    }

    /// The listening sockets by listener name (`https`, `http`, `admin`), for a new
    /// process to take over ([`crate::handover`]).
    pub fn listening_fds(&self) -> Vec<(&'static str, std::os::fd::BorrowedFd<'_>)> {
        self.listening.iter().map(|(name, fd)| (*name, std::os::fd::AsFd::as_fd(fd))).collect()
    }

    /// [`Porter::shutdown`] after a new process took the listeners over: the admin
    /// listener stops accepting at once too (the new process answers health checks;
    /// this one's would say 503 while it drains).
    pub async fn hand_over(self, timeout: Duration) {
        let _ = self.admin_stop.send(true);
        if let Some(http3) = &self.http3 {
            http3.let_go().await;
        }
        self.shutdown(timeout).await;
    }

    /// Stops accepting, lets open connections finish their requests for up to `timeout`, then returns.
    pub async fn shutdown(mut self, timeout: Duration) {
        // The copies kept for a hand-over would hold the sockets open (connections
        // would wait in the backlog instead of being refused).
        self.listening.clear();
        // /healthz answers 503 from here on, while the admin listener keeps serving.
        self.drain.begin();
        let _ = self.stop.send(true);
        self.acme.shutdown();
        for task in self.accept_tasks {
            let _ = task.await;
        }
        if let Some(task) = &self.cert_watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner).task {
            task.abort();
        }
        for task in self.background {
            task.abort();
        }
        self.shared.runtime.load().cancel.cancel();
        if tokio::time::timeout(timeout, self.drain.drain()).await.is_err() {
            tracing::warn!(?timeout, "shutdown timeout reached with connections still open");
        }
        if let Some(task) = self.admin_task {
            task.abort();
        }
        // The lines of the last requests, written before the process exits.
        self.access_log.close().await;
    }
}

/// The checks start, reload and `porter check` all run on a loaded [`Config`], beyond
/// what loading it checked: an error refuses the file, warnings name settings that are
/// parsed but not implemented (never passed over silently).
pub fn validate(config: &Config) -> Result<Vec<String>, StartError> {
    // What start would fail to open, `porter check` names too (it cannot know permissions).
    if let (true, Some(path)) = (config.access_log.enabled, &config.access_log.path) {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        if path.is_dir() {
            return Err(StartError::Config(format!("access_log.path: {} is a folder, not a file", path.display())));
        }
        if !folder.is_dir() {
            return Err(StartError::Config(format!(
                "access_log.path: {}: the folder {} does not exist",
                path.display(),
                folder.display()
            )));
        }
    }
    Ok(Vec::new())
}

/// Listener addresses a new configuration changes: they need a restart (named in a warning).
pub(crate) fn restart_needed(running: &config::Listen, new: &config::Listen) -> Vec<String> {
    let mut changed = Vec::new();
    if running.http3 != new.http3 && running.https.is_some() {
        let now = if running.http3 { "still serving HTTP/3" } else { "HTTP/3 still off" };
        changed.push(format!("listen.http3 changed to {}: HTTP/3 is switched at start; {now}", new.http3));
    }
    for (name, old, new) in
        [("https", running.https, new.https), ("http", running.http, new.http), ("admin", running.admin, new.admin)]
    {
        if old != new {
            let show = |a: Option<SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
            changed.push(format!(
                "listen.{name} changed from {} to {}: a listener address needs a restart; still {}",
                show(old),
                show(new),
                old.map_or("not listening".to_string(), |a| format!("listening on {a}"))
            ));
        }
    }
    changed
}

async fn bind(
    address: Option<SocketAddr>,
    what: &'static str,
    inherited: &mut listener::inherit::Inherited,
) -> Result<Option<TcpListener>, StartError> {
    let Some(address) = address else { return Ok(None) };
    if let Some(listener) = inherited.take(what, address) {
        return TcpListener::from_std(listener).map(Some).map_err(|cause| StartError::Bind {
            what,
            address: BindAddress::Inherited,
            cause,
        });
    }
    listener::dual_stack::bind(address, what).await.map(Some).map_err(|cause| StartError::Bind {
        what,
        address: BindAddress::Tcp(address),
        cause,
    })
}

fn slots_for(all: &mut Vec<Arc<listener::Slots>>, size: usize) -> Arc<listener::Slots> {
    let slots = listener::Slots::new(size);
    all.push(slots.clone());
    slots
}

fn io_error(e: std::io::Error) -> StartError {
    StartError::Runtime(e.to_string())
}

fn spawn_pool_sweeper(shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POOL_SWEEP);
        loop {
            tick.tick().await;
            for upstream in &shared.runtime.load().upstreams {
                for server in &upstream.servers {
                    server.pool.sweep();
                }
            }
        }
    })
}
