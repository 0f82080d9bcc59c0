//! Active health checks (docs/configuration.md, Health): every `interval`, a GET of
//! `path` on its own new connection to each server, bounded by `timeout`. A
//! 2xx or 3xx answer is a success. `unhealthy_after` consecutive failures take
//! the server out, `healthy_after` consecutive successes bring it back. Each
//! server has its own task, so one slow server never delays another's checks,
//! and at most one check per server is in flight.

use std::sync::Arc;
use std::time::Duration;

use http::{header, Request};

use super::connect;
use super::server::Server;
use crate::body::RequestBody;
use crate::config::HealthCheckConfig;

/// Checks `server` every `interval` until aborted (the upstream owns the task).
pub(crate) async fn check_loop(server: Arc<Server>, config: HealthCheckConfig, connect_timeout: Duration) {
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        tick.tick().await;
        match tokio::time::timeout(config.timeout, check_once(&server, &config.path, connect_timeout)).await {
            Ok(Ok(())) => {
                successes += 1;
                failures = 0;
                if successes >= config.healthy_after && !server.is_healthy() && server.set_healthy(true) {
                    tracing::info!(
                        server = %server.label,
                        successes,
                        reason = "active health checks pass",
                        "server healthy again: back in rotation"
                    );
                }
            }
            Ok(Err(reason)) => note_failure(&server, &config, &mut successes, &mut failures, &reason),
            Err(_) => note_failure(&server, &config, &mut successes, &mut failures, "health check timed out"),
        }
    }
}

fn note_failure(server: &Server, config: &HealthCheckConfig, successes: &mut u32, failures: &mut u32, reason: &str) {
    *successes = 0;
    *failures += 1;
    if *failures >= config.unhealthy_after && server.is_healthy() && server.set_healthy(false) {
        tracing::warn!(server = %server.label, failures = *failures, reason, "server unhealthy: out of rotation");
    }
}

async fn check_once(server: &Server, path: &str, connect_timeout: Duration) -> Result<(), String> {
    // The protocol requests use: an h2c-only server would not answer an HTTP/1.1 check.
    let want = if server.speaks_http2() { connect::Want::Http2 } else { connect::Want::Http1 };
    let connection = connect::connect_for(server, connect_timeout, want, connect::Purpose::HealthCheck)
        .await
        .map_err(|e| e.to_string())?;
    let response = match connection {
        connect::Connection::Http1(mut sender) => {
            let request = Request::get(path).header(header::HOST, &*server.label).header(header::CONNECTION, "close");
            sender.send_request(check_request(request)?).await
        }
        connect::Connection::Http2(mut h2) => {
            let uri = format!("{}://{}{path}", server.url.scheme, server.label);
            h2.sender.send_request(check_request(Request::get(uri).version(http::Version::HTTP_2))?).await
        }
    };
    let status = response.map_err(|e| format!("health check failed: {e}"))?.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("health check answered {status}"))
    }
}

fn check_request(builder: http::request::Builder) -> Result<Request<RequestBody>, String> {
    builder.header(header::USER_AGENT, "porter-health-check").body(RequestBody::empty()).map_err(|e| e.to_string())
}
