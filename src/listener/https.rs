//! The TLS listener: handshake with the certificate SNI selects, then HTTP/2
//! or HTTP/1.1 by ALPN into the proxy pipeline.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::proxy::{self, headers::ClientHeaders, ConnContext};
use crate::runtime::Shared;
use crate::stats::ListenerStats;

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    drain: crate::shutdown::DrainWatch,
    stats: Arc<ListenerStats>,
) {
    let runtime = shared.runtime.load_full();
    // The handshake is bounded like slow headers are: a client that stalls it holds a slot.
    // Each phase is boxed so the task holds only the live one, not both side by side:
    // that is kilobytes per idle connection.
    let handshake = tokio::time::timeout(runtime.limits.header_read_timeout, Box::pin(acceptor.accept(stream))).await;
    let tls = match handshake {
        Ok(Ok(tls)) => {
            stats.tls_handshakes_total.fetch_add(1, Ordering::Relaxed);
            tls
        }
        Ok(Err(e)) => {
            stats.tls_handshake_failures_total.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            stats.tls_handshake_failures_total.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %peer, "TLS handshake timed out");
            return;
        }
    };
    let sni_cert =
        tls.get_ref().1.server_name().and_then(|sni| runtime.certs.store().by_sni(&sni.to_ascii_lowercase()).cloned());
    let conn = Arc::new(ConnContext {
        client: peer,
        client_headers: ClientHeaders::new(peer.ip(), true),
        sni_cert,
        drain: drain.clone(),
    });
    let builders = runtime.connection_builders.clone();
    let protocol = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => super::Protocol::Http2,
        _ => super::Protocol::Http1,
    };
    drop(runtime);
    Box::pin(super::serve_connection(tls, protocol, &builders, drain, move |request| {
        let conn = conn.clone();
        let runtime = shared.runtime.load_full();
        async move { proxy::handle(request, &conn, runtime).await }
    }))
    .await;
}
