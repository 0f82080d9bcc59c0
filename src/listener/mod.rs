//! Accept loops. Each listener accepts TCP connections up to
//! `max_connections` (beyond it new connections wait in the kernel backlog),
//! and hands each to its own task: a panic or error there ends that
//! connection only. Shutdown stops accepting and lets connections finish.

pub mod acme;
pub mod http;
pub mod https;
pub mod redirect;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::config::Limits;
use crate::proxy::body::ResponseBody;

/// The HTTP/1.1 + HTTP/2 connection builder with the configured limits.
pub fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_bytes = limits.max_header_bytes.clamp(8192, u64::from(u32::MAX)) as usize;
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(None);
    builder
}

/// Runs a hyper connection with `handler` as its service, tracked for graceful shutdown.
pub async fn serve_connection<IO, F, Fut>(
    io: IO,
    builder: &auto::Builder<TokioExecutor>,
    graceful: hyper_util::server::graceful::Watcher,
    handler: F,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(hyper::Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<ResponseBody>> + Send + 'static,
{
    let service = service_fn(move |request| {
        let response = handler(request);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = graceful.watch(connection).await {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// Accepts until `stop` flips, giving each connection to `on_connection` in its own task.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
    on_connection: F,
) where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            _ = stop.changed() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let task = on_connection(stream, peer);
                tokio::spawn(async move {
                    task.await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Tracks every connection of every listener so shutdown can wait for them.
pub fn new_graceful() -> GracefulShutdown {
    GracefulShutdown::new()
}
