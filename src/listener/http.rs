//! The plaintext listener: ACME challenges first, then redirects to https,
//! or, with `http.redirect: false`, the same routes as the TLS listener.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use crate::access_log::AccessRecord;
use crate::http1::view::{RawRequest, RequestFields};
use crate::proxy::{self, headers::ClientHeaders, ConnContext};
use crate::runtime::Shared;

/// The connection's task holds this future for the connection's life, so it keeps
/// two boxes and nothing else: the set-up (PROXY header, the connection's context)
/// runs in the first, allocated here, and the connection is then served from the
/// second (`super::serve_connection`).
pub(crate) fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    drain: crate::shutdown::DrainWatch,
) -> impl Future<Output = ()> + Send {
    let setup = Box::pin(setup(stream, peer, shared, drain));
    async move {
        let Some(serving) = setup.await else { return };
        serving.await;
    }
}

/// The connection's context and its serving future, or None when the connection
/// ended before (a missing or bad PROXY header).
async fn setup(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    drain: crate::shutdown::DrainWatch,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
    let runtime = shared.runtime.load_full();
    // The port this listener took the connection on: X-Forwarded-Port.
    let port = stream.local_addr().map_or(80, |a| a.port());
    let (stream, client) = super::accept_client(stream, peer, &runtime).await?;
    let server = super::ConnectionServer::new(super::Protocol::Http1, &runtime.limits, None);
    let conn = Arc::new(ConnContext {
        client,
        client_headers: ClientHeaders::new(client.ip(), false, port, runtime.trusts(client.ip())),
        sni_cert: None,
        tls_version: None,
    });
    drop(runtime);
    Some(super::serve_connection(
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
                // A refused request goes to the pipeline too, through the one call below:
                // each `handle_checked(..).await` written out is a slot of its size
                // (kilobytes) in this future, copied whenever it is boxed.
                let challenge = verdict.is_ok() && request.uri().path().starts_with(super::acme::CHALLENGE_PREFIX);
                // Answers of porter's own ACME orders first (memory), then the webroot (certbot, lego).
                let own = if challenge { super::acme::respond_own(&runtime, request.uri().path()) } else { None };
                let local = match &runtime.acme_webroot {
                    _ if verdict.is_err() => None,
                    _ if own.is_some() => own,
                    Some(webroot) if challenge => Some(super::acme::respond(webroot, request.uri().path()).await),
                    _ if runtime.redirect => Some(super::redirect::respond(&request, fields, &runtime)),
                    _ => None,
                };
                let Some(response) = local else {
                    return proxy::handle_checked(request, raw, &conn, runtime, verdict).await;
                };
                let mut response = Box::new(response);
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
}

#[cfg(test)]
mod tests {
    /// The size of a fn's future, from the fn item alone.
    fn future_size<A, B, C, D, F: std::future::Future>(_: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle plain connection's task holds this future in place: two boxes'
    /// worth, never the set-up's state or a copy of the connection loop's
    /// (it was 344 bytes, boxed, in a debug build).
    #[test]
    fn connection_future_is_two_boxes() {
        let size = future_size(super::serve);
        assert!(size <= 48, "http::serve future is {size} bytes");
    }
}
