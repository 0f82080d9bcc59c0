//! The admin listener (`listen.admin`, docs/configuration.md, Admin listener): `GET /metrics`
//! (Prometheus text), `GET /status` (JSON), `GET /healthz` (readiness: 200 serving, 503 draining),
//! `GET /livez` (liveness: 200 while the process runs, draining included) and `GET /` (an HTML
//! dashboard of the same).
//!
//! It has its own accept loop and its own connections, outside the proxy's
//! drain and connection limits, so an operator can watch porter while it
//! stops and a busy scraper never takes a slot from a client. It only reads:
//! the counters live where the events happen (routes, upstreams, servers,
//! listeners, the reload record) and are walked at scrape time.

mod metrics;
mod process;
mod status;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::runtime::Shared;
use crate::shutdown::Drain;
use crate::stats::{ListenerStats, ReloadStats};

/// Everything the admin endpoints read: the live snapshot and the counters beside it.
#[derive(Debug)]
pub(crate) struct Sources {
    pub shared: Arc<Shared>,
    pub listeners: Vec<Arc<ListenerStats>>,
    pub reloads: Arc<ReloadStats>,
    pub drain: Arc<Drain>,
    pub started: SystemTime,
    /// Managed certificates and the ACME counters (empty without `acme:`).
    pub acme: Arc<crate::acme::Acme>,
    /// The HTTP/3 listener's QUIC counters (`listen.http3`).
    pub quic: Option<Arc<crate::listener::h3::QuicStats>>,
}

/// More admin connections than this at once are closed on accept: scrapers and a few
/// dashboards need a handful, and the admin port must not become a way to use up memory.
const MAX_CONNECTIONS: usize = 256;
/// A client that has not sent its request head by then is closed (slow-header guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DASHBOARD: &str = include_str!("dashboard.html");

/// Serves the admin endpoints on `listener` until the task is aborted; aborting
/// also closes every admin connection (they live in this task's `JoinSet`).
/// `stop` ends the accepting only (the listener closes, connections carry on).
pub(crate) async fn serve(listener: TcpListener, sources: Arc<Sources>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let metrics = Arc::new(metrics::Metrics::new(sources.clone()));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // A hand-over: the new process answers from here on; requests under way finish.
            Ok(_) = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS {
            tracing::debug!(client = %peer, "admin connection refused: too many open");
            continue;
        }
        let (sources, metrics) = (sources.clone(), metrics.clone());
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&request, &sources, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = result {
                tracing::debug!(client = %peer, error = %e, "admin connection ended with an error");
            }
        });
    }
    drop(listener);
    // The connections under way live in `connections` until porter stops (which aborts this task).
    std::future::pending::<()>().await;
}

fn respond(request: &Request<Incoming>, sources: &Sources, metrics: &metrics::Metrics) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => with_type(Response::new(Full::from(metrics.render())), metrics::CONTENT_TYPE),
        "/status" => {
            let body = serde_json::to_vec_pretty(&status::Status::collect(sources)).unwrap_or_default();
            with_type(Response::new(Full::from(body)), "application/json")
        }
        "/healthz" if sources.drain.is_draining() => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        // Liveness: the process answers, draining or not (an orchestrator must not kill
        // a porter that is finishing its requests; readiness is /healthz).
        "/livez" => text(StatusCode::OK, "alive\n"),
        "/" => with_type(Response::new(Full::from(DASHBOARD)), "text/html; charset=utf-8"),
        _ => text(StatusCode::NOT_FOUND, "not found: try /, /metrics, /status, /healthz or /livez\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = with_type(Response::new(Full::from(body)), "text/plain; charset=utf-8");
    *response.status_mut() = status;
    response
}

fn with_type(mut response: Response<Full<Bytes>>, content_type: &'static str) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Every answer describes this instant; a cache in between must not replay it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
