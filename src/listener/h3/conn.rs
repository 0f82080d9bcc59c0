//! One QUIC connection: the handshake, then HTTP/3 requests, each in its own task,
//! through `proxy::handle`; a drain signal or `limits.idle_timeout` without a
//! request sends GOAWAY, lets the requests in flight finish, and closes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header;
use http_body_util::BodyExt;
use tokio::sync::Notify;

use crate::body::{ClientBody, H3Body};
use crate::proxy::{self, ConnContext};
use crate::runtime::Shared;
use crate::shutdown::DrainWatch;
use crate::stats::ListenerStats;
use crate::upstream::ResponseBody;

type H3Conn = h3::server::Connection<h3_quinn::Connection, Bytes>;
type Resolver = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;

/// HTTP/3's "no error" code (RFC 9114 §8.1), for closing a drained connection.
const H3_NO_ERROR: u32 = 0x100;

pub(super) async fn serve(
    incoming: quinn::Incoming,
    config: Arc<quinn::ServerConfig>,
    shared: Arc<Shared>,
    drain: DrainWatch,
    stats: Arc<ListenerStats>,
    handshaking: Arc<AtomicUsize>,
) {
    handshaking.fetch_add(1, Ordering::Relaxed);
    let runtime = shared.runtime.load_full();
    let handshake = async {
        let connecting = incoming.accept_with(config).ok()?;
        tokio::time::timeout(runtime.limits.header_read_timeout, connecting).await.ok()?.ok()
    };
    let connection = handshake.await;
    handshaking.fetch_sub(1, Ordering::Relaxed);
    let Some(connection) = connection else {
        stats.tls_handshake_failures_total.fetch_add(1, Ordering::Relaxed);
        return;
    };
    stats.tls_handshakes_total.fetch_add(1, Ordering::Relaxed);
    let client = connection.remote_address();
    let sni = connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.server_name);
    // The certificate the SNI names exactly: the 421 rule as on TCP.
    let sni_cert = sni.and_then(|sni| runtime.certs.store().by_sni(&sni).cloned());
    let conn = crate::listener::tls_conn_context(client, &runtime, sni_cert, Some("TLSv1.3"));
    let header_bytes = runtime.limits.max_header_bytes.max(8192);
    let idle_timeout = runtime.limits.idle_timeout;
    drop(runtime);
    let h3 = h3::server::builder()
        .max_field_section_size(header_bytes)
        .build::<_, Bytes>(h3_quinn::Connection::new(connection.clone()))
        .await;
    let Ok(h3) = h3 else { return };
    let active = Arc::new(Active::default());
    Box::pin(requests(h3, &connection, conn, shared, drain, active, idle_timeout)).await;
}

/// Accepts requests until the client closes, or until a drain or the idle timeout
/// (GOAWAY, then the requests in flight finish and the connection is closed).
async fn requests(
    mut h3: H3Conn,
    connection: &quinn::Connection,
    conn: Arc<ConnContext>,
    shared: Arc<Shared>,
    mut drain: DrainWatch,
    active: Arc<Active>,
    idle_timeout: std::time::Duration,
) {
    let mut closing = false;
    loop {
        let accepted = tokio::select! {
            accepted = h3.accept() => accepted,
            _ = drain.signalled(), if !closing => {
                closing = true;
                let _ = h3.shutdown(0).await;
                continue;
            }
            _ = active.idle_for(idle_timeout), if !closing => {
                closing = true;
                let _ = h3.shutdown(0).await;
                continue;
            }
            _ = active.none(), if closing => break,
        };
        match accepted {
            Ok(Some(resolver)) => {
                let guard = active.start();
                let request = Box::pin(serve_request(resolver, conn.clone(), shared.clone()));
                let drain = drain.clone();
                tokio::spawn(async move {
                    request.await;
                    drop((guard, drain));
                });
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(client = %conn.client, error = %e, "HTTP/3 connection ended");
                return;
            }
        }
    }
    connection.close(H3_NO_ERROR.into(), b"");
}

async fn serve_request(resolver: Resolver, conn: Arc<ConnContext>, shared: Arc<Shared>) {
    let (request, stream) = match resolver.resolve_request().await {
        Ok(resolved) => resolved,
        Err(e) => {
            // Header sections over max_header_bytes were answered 431 by h3 itself.
            tracing::debug!(client = %conn.client, error = %e, "HTTP/3 request refused");
            return;
        }
    };
    let (mut send, recv) = stream.split();
    let length = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let request = request.map(|()| ClientBody::H3(Box::new(H3Body::new(recv, length))));
    let runtime = shared.runtime.load_full();
    let body_timeout = runtime.limits.body_timeout;
    let response = proxy::handle(Box::new(request), None, &conn, runtime).await;
    let (mut parts, body) = (*response).into_parts();
    // Connection-specific fields have no place in HTTP/3 (RFC 9114 §4.2).
    for name in [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE] {
        parts.headers.remove(name);
    }
    parts.headers.remove("keep-alive");
    parts.headers.remove("proxy-connection");
    if send.send_response(http::Response::from_parts(parts, ())).await.is_err() {
        return;
    }
    send_body(&mut send, body, body_timeout).await;
}

/// Streams the response body; a failure (server gone mid-body, client not reading
/// for `limits.body_timeout`) resets the stream, so the client never takes a cut
/// body for a whole one.
async fn send_body(
    send: &mut h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>,
    body: ResponseBody,
    body_timeout: std::time::Duration,
) {
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP/3 response body failed: stream reset");
                send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                return;
            }
        };
        let sent = match frame.into_data() {
            Ok(data) => tokio::time::timeout(body_timeout, send.send_data(data)).await,
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => tokio::time::timeout(body_timeout, send.send_trailers(trailers)).await,
                Err(_) => continue,
            },
        };
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!("HTTP/3 client read nothing for limits.body_timeout: stream reset");
                send.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
                return;
            }
        }
    }
    let _ = send.finish().await;
}

/// Requests in flight on one connection, and a wake-up on every change.
#[derive(Default)]
struct Active {
    count: AtomicUsize,
    changed: Notify,
}

struct ActiveGuard(Arc<Active>);

impl Active {
    fn start(self: &Arc<Self>) -> ActiveGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
        ActiveGuard(self.clone())
    }

    /// Resolves once no request is in flight.
    async fn none(&self) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.count.load(Ordering::Relaxed) == 0 {
                return;
            }
            changed.await;
        }
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: std::time::Duration) {
        loop {
            self.none().await;
            let changed = self.changed.notified();
            if tokio::time::timeout(timeout, changed).await.is_err() && self.count.load(Ordering::Relaxed) == 0 {
                return;
            }
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
        self.0.changed.notify_waiters();
    }
}
