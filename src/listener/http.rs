//! The plaintext listener: ACME challenges first, then redirects to https,
//! or, with `http.redirect: false`, the same routes as the TLS listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use crate::access_log::AccessRecord;
use crate::http1::view::{RawRequest, RequestFields};
use crate::proxy::{self, headers::ClientHeaders, ConnContext};
use crate::runtime::Shared;

pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    drain: crate::shutdown::DrainWatch,
) {
    let runtime = shared.runtime.load_full();
    // The port this listener took the connection on: X-Forwarded-Port.
    let port = stream.local_addr().map_or(80, |a| a.port());
    let Some((stream, client)) = super::accept_client(stream, peer, &runtime).await else { return };
    let server = super::ConnectionServer::new(super::Protocol::Http1, &runtime.limits, None);
    let conn = Arc::new(ConnContext {
        client,
        client_headers: ClientHeaders::new(client.ip(), false, port, runtime.trusts(client.ip())),
        sni_cert: None,
        tls_version: None,
    });
    drop(runtime);
    Box::pin(super::serve_connection(
        crate::net::io::ClientIo::Plain(stream),
        server,
        drain,
        move |request, raw: Option<RawRequest>| {
            let conn = conn.clone();
            let runtime = shared.runtime.load_full();
            async move {
                // Before the redirect too: it is built from the Host.
                let fields = RequestFields::of(request.headers(), raw.as_ref());
                let verdict = proxy::strict::check(&request, fields);
                if let Err(e) = verdict {
                    return proxy::handle_checked(request, raw, &conn, runtime, Err(e)).await;
                }
                let challenge = request.uri().path().starts_with(super::acme::CHALLENGE_PREFIX);
                // Answers of porter's own ACME orders first (memory), then the webroot (certbot, lego).
                let own = if challenge { super::acme::respond_own(&runtime, request.uri().path()) } else { None };
                let local = match &runtime.acme_webroot {
                    _ if own.is_some() => own,
                    Some(webroot) if challenge => Some(super::acme::respond(webroot, request.uri().path()).await),
                    _ if runtime.redirect => Some(super::redirect::respond(&request, fields, &runtime)),
                    _ => None,
                };
                let Some(mut response) = local else {
                    return proxy::handle_checked(request, raw, &conn, runtime, verdict).await;
                };
                runtime.unrouted.record(response.status().as_u16());
                let Some(log) = &runtime.access_log else { return response };
                let fields = RequestFields::of(request.headers(), raw.as_ref());
                let mut record = AccessRecord::new(log, Instant::now(), client, &request, fields, fields.host());
                record.status = response.status().as_u16();
                response.body_mut().set_record(record);
                response
            }
        },
    ))
    .await;
}
