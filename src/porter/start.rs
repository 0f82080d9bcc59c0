//! [`start()`]: the certificates loaded, the listeners bound (or taken over), the
//! first snapshot built, and the accept loops, HTTP/3, the admin listener, the
//! certificate watcher, the pool sweeper, the memory release and ACME spawned.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{validate, BindAddress, CertWatch, Porter, StartError, CERT_RESCAN};
use crate::config::Config;
use crate::runtime::{Runtime, Shared};
use crate::stats::{ListenerStats, ReloadStats};
use crate::tls::{self, CertResolver};
use crate::{access_log, acme, admin, listener, shutdown};

/// How often idle upstream connections are checked for expiry.
const POOL_SWEEP: Duration = Duration::from_secs(5);
const MEMORY_RELEASE: Duration = Duration::from_millis(500);

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
    let background = vec![spawn_pool_sweeper(shared.clone()), spawn_memory_release(shared.clone())];
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

/// Hands back to the kernel the memory a burst of requests freed, once the burst is
/// over: after a `MEMORY_RELEASE` without a request served, all of it
/// (`sys::release_all_freed_memory`). Otherwise an idle porter that nothing wakes
/// keeps it until its next request. Not while requests are served: a collection then
/// costs more than it gives back (3% more user CPU, measured at 10 a second).
fn spawn_memory_release(shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(MEMORY_RELEASE);
        // Requests served at the last tick, and whether the memory was released since.
        let (mut served_before, mut released) = (u64::MAX, false);
        loop {
            tick.tick().await;
            let served: u64 = shared.runtime.load().by_protocol.get().iter().sum();
            if served != served_before {
                (served_before, released) = (served, false);
            } else if !released {
                crate::sys::release_all_freed_memory();
                released = true;
            }
        }
    })
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
