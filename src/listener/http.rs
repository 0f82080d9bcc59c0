//! The plaintext listener: ACME challenges and redirects to https, or, with
//! `http.redirect: false`, the same routes as the TLS listener.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::server::graceful::Watcher;
use tokio::net::TcpStream;

use crate::proxy::{self, headers::ClientHeaders, ConnContext};
use crate::runtime::Shared;

pub async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, graceful: Watcher) {
    let builder = super::connection_builder(&shared.runtime.load().limits);
    let conn =
        Arc::new(ConnContext { client: peer, client_headers: ClientHeaders::new(peer.ip(), false), sni_cert: None });
    super::serve_connection(stream, &builder, graceful, move |request| {
        let conn = conn.clone();
        let runtime = shared.runtime.load_full();
        async move {
            if runtime.redirect {
                super::redirect::respond(&request, &runtime)
            } else {
                proxy::handle(request, &conn, runtime).await
            }
        }
    })
    .await;
}
