//! HTTP/1.1 Upgrade (WebSocket, socket.io): after the server answers 101,
//! both connections are joined as one bidirectional byte stream.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::shutdown::DrainWatch;
use crate::upstream::server::InFlight;

/// True when the client asks to switch protocols (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade_request(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::UPGRADE)
        && headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))))
}

/// Joins the two upgraded connections until either side closes. The server
/// stays counted as in flight, and shutdown waits for the tunnel (the drain
/// watch), for the tunnel's life.
pub fn spawn_tunnel(client: OnUpgrade, server: OnUpgrade, in_flight: InFlight, drain: DrainWatch) {
    tokio::spawn(async move {
        let (client, server) = match tokio::try_join!(client, server) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut server = TokioIo::new(server);
        match tokio::io::copy_bidirectional(&mut client, &mut server).await {
            Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
            Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
        }
        drop(in_flight);
        drop(drain);
    });
}
