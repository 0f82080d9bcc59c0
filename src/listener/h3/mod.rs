//! HTTP/3 (`listen.http3`): QUIC on the https listener's address (UDP), with
//! quinn for QUIC and hyperium's h3 for HTTP/3, on the same rustls certificate
//! resolver as the TCP listener (SNI, certificate reloads and ACME's
//! certificates apply unchanged). Requests go through the same pipeline
//! (`proxy::handle`) as HTTP/1.1 and HTTP/2 (docs/configuration.md, `listen.http3`).
//!
//! - The endpoint (its UDP socket) outlives configuration swaps: each new
//!   connection is accepted with the QUIC settings of the snapshot current then
//!   ([`server_config`], built once per snapshot), open connections keep theirs.
//! - Address validation: while more than [`RETRY_ABOVE_HANDSHAKING`] handshakes are
//!   under way, a client whose address is not yet validated gets a Retry first, so a
//!   flood from spoofed sources costs one small packet each and never a handshake
//!   (QUIC's anti-amplification limit bounds what porter sends to an unvalidated
//!   address in any case).
//! - `limits.max_connections` applies to the QUIC connections of the listener; beyond
//!   it new ones are refused at once (UDP has no backlog to wait in).
//! - The UDP socket asks for larger kernel buffers ([`SOCKET_BUFFER`]), so a burst of
//!   datagrams is not dropped; quinn-udp uses GSO/GRO where the kernel has them.
//! - 0-RTT is off (replayable requests); connection migration is allowed.

mod conn;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::runtime::Shared;
use crate::shutdown::Drain;
use crate::stats::ListenerStats;
use crate::tls::CertResolver;

/// Above this many QUIC handshakes under way, new clients prove their address
/// (a Retry round trip) before porter starts a handshake for them.
pub(crate) const RETRY_ABOVE_HANDSHAKING: usize = 64;

/// Kernel buffer size asked for the UDP socket (each direction); the kernel caps
/// it at `net.core.rmem_max` / `wmem_max` (docs/deploy.md says how to raise them).
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;

/// Bidirectional streams (requests) a client may have open at once, as on HTTP/2.
pub(crate) const MAX_STREAMS: u32 = super::H2_MAX_CONCURRENT_STREAMS;

/// Unidirectional streams a client may open: HTTP/3 needs three (control, QPACK
/// encoder and decoder); a few more for GREASE.
const MAX_UNI_STREAMS: u32 = 8;

/// A QUIC connection with no packet from the client for this long is dead. Porter
/// pings every [`KEEP_ALIVE`] so that a quiet request (a slow upstream) does not
/// count as idle; an HTTP-idle connection is closed after `limits.idle_timeout`.
const QUIC_IDLE: Duration = Duration::from_secs(30);
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// How long a hand-over leaves the old endpoint on the shared socket after closing its
/// connections: enough to send their CONNECTION_CLOSE, short enough that few of the
/// new process's packets are read here meanwhile.
const LET_GO_AFTER: Duration = Duration::from_millis(50);

/// QUIC settings for new connections, made once per configuration snapshot.
pub(crate) fn server_config(certs: Arc<CertResolver>) -> Result<Arc<quinn::ServerConfig>, String> {
    let tls = crate::tls::quic_server_config(certs);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| format!("HTTP/3 TLS: {e}"))?;
    // One Retry-token key for the process: a token issued under one snapshot's
    // settings is still good under the next.
    static BASE: OnceLock<quinn::ServerConfig> = OnceLock::new();
    let crypto: Arc<quinn::crypto::rustls::QuicServerConfig> = Arc::new(crypto);
    let mut config = BASE.get_or_init(|| quinn::ServerConfig::with_crypto(crypto.clone())).clone();
    config.crypto = crypto;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(MAX_STREAMS.into())
        .max_concurrent_uni_streams(MAX_UNI_STREAMS.into())
        .max_idle_timeout(Some(QUIC_IDLE.try_into().expect("30s is a valid QUIC idle timeout")))
        .keep_alive_interval(Some(KEEP_ALIVE));
    config.transport_config(Arc::new(transport));
    Ok(Arc::new(config))
}

/// The HTTP/3 listener's counters beside the connection counts of [`ListenerStats`].
#[derive(Debug, Default)]
pub(crate) struct QuicStats {
    /// Retry packets sent (address validation under a flood of new connections).
    pub retries_total: AtomicU64,
    /// Connection attempts refused (`limits.max_connections` reached).
    pub refused_total: AtomicU64,
}

/// The running endpoint: its address, and the task accepting on it.
pub(crate) struct Http3 {
    pub addr: SocketAddr,
    endpoint: quinn::Endpoint,
    pub stats: Arc<ListenerStats>,
    pub quic: Arc<QuicStats>,
}

impl Http3 {
    /// Serves HTTP/3 on `socket` until `stop` flips; then new connections are refused
    /// and open ones drain with the rest (GOAWAY on the drain signal).
    pub(crate) fn start(
        socket: std::net::UdpSocket,
        shared: Arc<Shared>,
        drain: Arc<Drain>,
        slots: Arc<super::Slots>,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<(Http3, tokio::task::JoinHandle<()>)> {
        let addr = socket.local_addr()?;
        let config = server_config(shared.runtime.load().certs.clone()).map_err(std::io::Error::other)?;
        let runtime = quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime"))?;
        let endpoint =
            quinn::Endpoint::new(quinn::EndpointConfig::default(), Some((*config).clone()), socket, runtime)?;
        let stats = Arc::new(ListenerStats::new("h3", true));
        let quic = Arc::new(QuicStats::default());
        let task = tokio::spawn(accept_loop(endpoint.clone(), shared, drain, slots, stats.clone(), quic.clone(), stop));
        Ok((Http3 { addr, endpoint, stats, quic }, task))
    }

    /// A binary upgrade handed the UDP socket to the new process: this one stops
    /// reading it (two readers would each get some of the other's packets, and
    /// answer them with stateless resets). Its QUIC connections cannot follow (a
    /// client drops packets from another source port, and the new process's reset
    /// tokens are not theirs), so they are closed first: CONNECTION_CLOSE goes out on
    /// the shared socket, then, a moment later, this endpoint moves to a throwaway
    /// socket. docs/deploy.md, Upgrading porter, says what it costs.
    pub(crate) async fn let_go(&self) {
        self.endpoint.close(0x100u32.into(), b"porter upgrade");
        tokio::time::sleep(LET_GO_AFTER).await;
        let placeholder =
            std::net::UdpSocket::bind((self.addr.ip(), 0)).or_else(|_| std::net::UdpSocket::bind(("127.0.0.1", 0)));
        match placeholder {
            Ok(socket) => {
                if let Err(e) = self.endpoint.rebind(socket) {
                    tracing::warn!(error = %e, "HTTP/3: could not let go of the UDP socket");
                }
            }
            Err(e) => tracing::warn!(error = %e, "HTTP/3: could not let go of the UDP socket"),
        }
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    drain: Arc<Drain>,
    slots: Arc<super::Slots>,
    stats: Arc<ListenerStats>,
    quic: Arc<QuicStats>,
    mut stop: watch::Receiver<bool>,
) {
    let handshaking = Arc::new(AtomicUsize::new(0));
    // The QUIC settings of the snapshot they were made for: rebuilt after a reload.
    // Weak: an old snapshot is not kept alive by this loop.
    let mut current: Option<(std::sync::Weak<crate::runtime::Runtime>, Arc<quinn::ServerConfig>)> = None;
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
            _ = stop.changed() => break,
        };
        if should_retry(incoming.remote_address_validated(), handshaking.load(Ordering::Relaxed))
            && incoming.may_retry()
        {
            quic.retries_total.fetch_add(1, Ordering::Relaxed);
            let _ = incoming.retry();
            continue;
        }
        let Ok(permit) = slots.semaphore.clone().try_acquire_owned() else {
            quic.refused_total.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        };
        let runtime = shared.runtime.load_full();
        let config = match &current {
            Some((made_for, config)) if std::ptr::eq(made_for.as_ptr(), Arc::as_ptr(&runtime)) => config.clone(),
            _ => match server_config(runtime.certs.clone()) {
                Ok(config) => {
                    current = Some((Arc::downgrade(&runtime), config.clone()));
                    config
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP/3 connection refused");
                    incoming.refuse();
                    continue;
                }
            },
        };
        let open = crate::stats::OpenConnection::new(stats.clone());
        let connection =
            Box::pin(conn::serve(incoming, config, shared.clone(), drain.watch(), stats.clone(), handshaking.clone()));
        tokio::spawn(async move {
            connection.await;
            drop((permit, open));
        });
    }
    // New connection attempts are refused from now on; open ones drain.
    endpoint.set_server_config(None);
}

/// Whether a new connection attempt must first prove its address (a Retry).
fn should_retry(validated: bool, handshaking: usize) -> bool {
    !validated && handshaking >= RETRY_ABOVE_HANDSHAKING
}

/// A UDP socket for `address` with large buffers; `[::]` dual-stack (IPv4 clients
/// too), falling back to `0.0.0.0` on a host without IPv6, like the TCP listeners.
pub(crate) fn bind(address: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    match bind_exact(address) {
        Err(e) if address.is_ipv6() && address.ip().is_unspecified() && super::dual_stack::no_ipv6(&e) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, address.port()));
            tracing::warn!(requested = %address, listening = %v4, error = %e, "no IPv6 on this host: HTTP/3 on IPv4 only");
            bind_exact(v4)
        }
        other => other,
    }
}

fn bind_exact(address: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::DGRAM, Some(Protocol::UDP))?;
    if address.is_ipv6() && address.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    sized_buffers(&socket);
    socket.bind(&address.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Asks for [`SOCKET_BUFFER`] each way; the kernel may give less (logged once at start).
pub(crate) fn sized_buffers(socket: &socket2::Socket) {
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    let (recv, send) = (socket.recv_buffer_size().unwrap_or(0), socket.send_buffer_size().unwrap_or(0));
    // Linux reports twice the size it was set to (its bookkeeping overhead).
    if recv < SOCKET_BUFFER || send < SOCKET_BUFFER {
        tracing::info!(
            recv,
            send,
            wanted = SOCKET_BUFFER,
            "HTTP/3 UDP socket buffers smaller than asked (net.core.rmem_max / wmem_max cap them)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_only_unvalidated_clients_under_load() {
        assert!(!should_retry(false, 0));
        assert!(!should_retry(false, RETRY_ABOVE_HANDSHAKING - 1));
        assert!(should_retry(false, RETRY_ABOVE_HANDSHAKING));
        // A client that came back with a Retry token is validated: never a second Retry.
        assert!(!should_retry(true, RETRY_ABOVE_HANDSHAKING * 10));
    }
}
