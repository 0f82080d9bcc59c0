//! The TLS listener: handshake with the certificate SNI selects, then HTTP/2
//! or HTTP/1.1 by ALPN into the proxy pipeline.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::proxy::{self, headers::ClientHeaders, ConnContext};
use crate::runtime::Shared;
use crate::stats::ListenerStats;

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    drain: crate::shutdown::DrainWatch,
    stats: Arc<ListenerStats>,
) {
    let runtime = shared.runtime.load_full();
    let Some((stream, client)) = super::accept_client(stream, peer, &runtime).await else { return };
    let acceptor = tokio_rustls::TlsAcceptor::from(runtime.tls.clone());
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
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            stats.tls_handshake_failures_total.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%client, "TLS handshake timed out");
            return;
        }
    };
    if tls.get_ref().1.alpn_protocol() == Some(crate::acme::challenges::ACME_TLS_ALPN) {
        // RFC 8737 §3: a TLS-ALPN-01 validation ends with the handshake.
        let mut tls = tls;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        return;
    }
    let sni_cert =
        tls.get_ref().1.server_name().and_then(|sni| runtime.certs.store().by_sni(&sni.to_ascii_lowercase()).cloned());
    let conn = Arc::new(ConnContext {
        client,
        client_headers: ClientHeaders::new(client.ip(), true, runtime.trusts(client.ip())),
        sni_cert,
        tls_version: tls.get_ref().1.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        }),
        drain: drain.clone(),
        head: Default::default(),
    });
    let builders = runtime.connection_builders.clone();
    let protocol = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => super::Protocol::Http2,
        _ => super::Protocol::Http1,
    };
    drop(runtime);
    Box::pin(super::serve_connection(
        crate::http1::io::ClientIo::Tls(Box::new(tls)),
        protocol,
        &builders,
        drain,
        conn.clone(),
        move |request| {
            let conn = conn.clone();
            let runtime = shared.runtime.load_full();
            async move { proxy::handle(request, &conn, runtime).await }
        },
    ))
    .await;
}
