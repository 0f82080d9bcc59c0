//! Active health checks (SPEC §3 `health_check`): every `interval`, a GET of
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
pub async fn check_loop(server: Arc<Server>, config: HealthCheckConfig, connect_timeout: Duration) {
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
    let mut sender = connect::connect(server, connect_timeout).await.map_err(|e| e.to_string())?;
    let request = Request::get(path)
        .header(header::HOST, &*server.label)
        .header(header::USER_AGENT, "porter-health-check")
        .header(header::CONNECTION, "close")
        .body(RequestBody::empty())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| format!("health check failed: {e}"))?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("health check answered {status}"))
    }
}
