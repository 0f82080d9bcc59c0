//! The TLS listener: handshake with the certificate SNI selects, then HTTP/2
//! or HTTP/1.1 by ALPN into the proxy pipeline.
//!
//! Every idle connection's task holds [`serve`]'s future, so it is kept to a few
//! pointers: each phase (handshake, ACME answer, serving) runs in its own boxed
//! future and only the live one exists, never a TLS session inline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::net::io::TlsStream;
use crate::proxy;
use crate::runtime::Shared;
use crate::stats::ListenerStats;

pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    drain: crate::shutdown::DrainWatch,
    stats: Arc<ListenerStats>,
) {
    // Each phase is built in its own statement: a future built in the awaiting
    // statement can keep a slot of its own in this task's state next to the box.
    let handshake = Box::pin(handshake(stream, peer, &shared, &stats));
    let Some((tls, client)) = handshake.await else { return };
    if tls.alpn_protocol() == Some(crate::tls::challenges::ACME_TLS_ALPN) {
        // RFC 8737 §3: a TLS-ALPN-01 validation ends with the handshake.
        let close = Box::pin(close(tls));
        close.await;
        return;
    }
    let serving = serve_tls(tls, client, shared, drain);
    serving.await;
}

/// The PROXY header if configured, then the TLS handshake, bounded like slow headers
/// are (a client that stalls it holds a slot) and counted.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    stats: &ListenerStats,
) -> Option<(Box<TlsStream>, SocketAddr)> {
    let runtime = shared.runtime.load_full();
    let (stream, client) = super::accept_client(stream, peer, &runtime).await?;
    let mut tls = match TlsStream::new(runtime.tls.clone(), stream) {
        Ok(tls) => Box::new(tls),
        Err(e) => {
            stats.tls_handshake_failures_total.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            return None;
        }
    };
    match tokio::time::timeout(runtime.limits.header_read_timeout, tls.handshake()).await {
        Ok(Ok(())) => {
            stats.tls_handshakes_total.fetch_add(1, Ordering::Relaxed);
            Some((tls, client))
        }
        Ok(Err(e)) => {
            stats.tls_handshake_failures_total.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            stats.tls_handshake_failures_total.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%client, "TLS handshake timed out");
            None
        }
    }
}

async fn close(mut tls: Box<TlsStream>) {
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
}

/// The connection's context, and its serving future (boxed by `serve_connection`).
fn serve_tls(
    mut tls: Box<TlsStream>,
    client: SocketAddr,
    shared: Arc<Shared>,
    drain: crate::shutdown::DrainWatch,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let runtime = shared.runtime.load_full();
    let sni_cert = tls.take_sni_cert();
    let tls_version = tls.protocol_version().map(|v| match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "TLS",
    });
    let conn = super::tls_conn_context(client, &runtime, sni_cert, tls_version);
    let protocol = match tls.alpn_protocol() {
        Some(b"h2") => super::Protocol::Http2,
        _ => super::Protocol::Http1,
    };
    let server = super::ConnectionServer::new(protocol, &runtime.limits, runtime.hsts.as_ref());
    drop(runtime);
    super::serve_connection(crate::net::io::ClientIo::Tls(tls), server, drain, move |request, raw| {
        let conn = conn.clone();
        let runtime = shared.runtime.load_full();
        async move { proxy::handle(request, raw, &conn, runtime).await }
    })
}

#[cfg(test)]
mod tests {
    /// The size of an async fn's future, from the fn item alone.
    fn future_size<A, B, C, D, E, F: std::future::Future>(_: fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle TLS connection's task holds this future: a few pointers, never a
    /// TLS session or a phase's state inline (it was 3976 bytes in a debug build).
    #[test]
    fn connection_future_is_small() {
        let size = future_size(super::serve);
        eprintln!("https::serve future: {size} bytes");
        assert!(size <= 256, "https::serve future is {size} bytes");
    }
}
