//! HTTP/1.1 Upgrade (WebSocket, socket.io): after the server answers 101,
//! both connections are joined as one bidirectional byte stream.

use std::sync::{Arc, Mutex};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::http1::view::{as_text, RequestFields};
use crate::net::io::ClientIo;
use crate::upstream::server::InFlight;

/// True when the client asks to switch protocols (`Connection: upgrade` + `Upgrade`).
pub(crate) fn is_upgrade_request(fields: RequestFields<'_>) -> bool {
    fields.contains(&http::header::UPGRADE)
        && fields
            .get_all(&http::header::CONNECTION)
            .any(|v| as_text(v).is_some_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))))
}

/// The server's side of an accepted upgrade, riding on the 101 response to
/// porter's own HTTP/1.1 layer, which joins it to the client connection once
/// the 101 is written. (A response extension must be Clone; only one taker.)
#[derive(Clone)]
pub(crate) struct PendingTunnel(Arc<Mutex<Option<(OnUpgrade, InFlight)>>>);

impl PendingTunnel {
    pub(crate) fn new(server: OnUpgrade, in_flight: InFlight) -> PendingTunnel {
        PendingTunnel(Arc::new(Mutex::new(Some((server, in_flight)))))
    }

    /// Joins `client` to the server until either side closes. `leftover`: bytes
    /// the client sent after its upgrade request, which belong to the server.
    /// The connection's task runs it, holding its drain watch for the tunnel's life.
    pub(crate) async fn run(self, mut client: ClientIo, leftover: bytes::BytesMut) {
        let Some((server, in_flight)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let mut server = match server.await {
            Ok(server) => TokioIo::new(server),
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        if !leftover.is_empty() && server.write_all(&leftover).await.is_err() {
            return;
        }
        drop(leftover);
        match tokio::io::copy_bidirectional(&mut client, &mut server).await {
            Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
            Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
        }
        drop(in_flight);
    }
}
