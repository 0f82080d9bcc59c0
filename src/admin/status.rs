//! `GET /status`: the live state as JSON — each upstream with its servers
//! (health, weight, in flight, totals, idle pool), each route's answers by
//! status class, each loaded certificate (names, expiry, files), the
//! listeners, and the configuration generation with the last reload's
//! outcome. The dashboard polls this and plots rates from successive polls.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::Sources;
use crate::stats::STATUS_CLASSES;

#[derive(Debug, Serialize)]
pub(super) struct Status {
    /// Unix time of this answer, in seconds with milliseconds (rates are computed from it).
    pub now: f64,
    pub started: f64,
    pub draining: bool,
    pub config: ConfigStatus,
    pub listeners: Vec<ListenerStatus>,
    pub upstreams: Vec<UpstreamStatus>,
    pub routes: Vec<RouteStatus>,
    pub certificates: Vec<CertStatus>,
    pub acme: AcmeStatus,
}

/// The built-in ACME client: each managed name and the order counters.
#[derive(Debug, Serialize)]
pub(super) struct AcmeStatus {
    pub names: Vec<AcmeNameStatus>,
    pub attempts_total: u64,
    pub issued_total: u64,
    pub failures_total: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct AcmeNameStatus {
    pub domain: String,
    /// "starting", "valid", "ordering", "other_instance" or "failed".
    pub state: &'static str,
    /// The owner of the order lock, while another instance orders.
    pub lock_owner: Option<String>,
    pub not_after: Option<f64>,
    /// When the next order (renewal or retry) is due.
    pub next_attempt: Option<f64>,
    pub last_error: Option<String>,
    pub failures: u32,
}

#[derive(Debug, Serialize)]
pub(super) struct ConfigStatus {
    pub generation: u64,
    pub reloads_total: u64,
    pub reload_failures_total: u64,
    /// `None` until the first reload.
    pub last_reload: Option<ReloadStatus>,
    /// When the running configuration was applied (start, or the last applied reload).
    pub applied_at: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct ReloadStatus {
    pub ok: bool,
    pub error: Option<String>,
    pub at: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct ListenerStatus {
    pub name: &'static str,
    pub open_connections: i64,
    pub accepted_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshakes_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake_failures_total: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(super) struct UpstreamStatus {
    pub name: String,
    pub balance: &'static str,
    /// Requests answered on the routes to this upstream, and how many of them were 5xx.
    pub requests_total: u64,
    pub errors_total: u64,
    pub retries_total: u64,
    pub servers: Vec<ServerStatus>,
}

#[derive(Debug, Serialize)]
pub(super) struct ServerStatus {
    pub url: String,
    /// "up", "drained" (weight 0), "unhealthy" (active checks) or "ejected" (passive).
    pub state: &'static str,
    pub healthy: bool,
    pub weight: u32,
    pub in_flight: u32,
    pub requests_total: u64,
    pub failures_total: u64,
    pub ejections_total: u64,
    pub idle_connections: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct RouteStatus {
    pub route: String,
    pub upstream: String,
    /// Answers by status class ("2xx": n, ...).
    pub responses: std::collections::BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
pub(super) struct CertStatus {
    pub name: String,
    pub names: Vec<String>,
    pub issuer: String,
    pub not_after: f64,
    pub days_left: i64,
    pub cert_file: String,
    pub key_file: String,
    pub self_signed_fallback: bool,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}

const RELAXED: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

impl Status {
    pub(super) fn collect(sources: &Sources) -> Status {
        let runtime = sources.shared.runtime.load_full();
        let reloads = &sources.reloads;
        let upstreams = runtime
            .upstreams
            .iter()
            .map(|upstream| {
                let routes = runtime
                    .router
                    .routes()
                    .filter(|r| r.upstream().is_some_and(|u| std::sync::Arc::ptr_eq(u, upstream)));
                let (requests, errors) = routes.fold((0, 0), |(requests, errors), r| {
                    (requests + r.responses.total(), errors + r.responses.server_errors())
                });
                UpstreamStatus {
                    name: upstream.name.to_string(),
                    balance: upstream.balance().as_str(),
                    requests_total: requests,
                    errors_total: errors,
                    retries_total: upstream.stats.retries_total.load(RELAXED),
                    servers: upstream
                        .servers
                        .iter()
                        .map(|s| ServerStatus {
                            url: s.url.original.clone(),
                            state: s.state().as_str(),
                            healthy: s.is_healthy() && !s.is_ejected(),
                            weight: s.weight,
                            in_flight: s.live.in_flight.load(RELAXED),
                            requests_total: s.live.requests_total.load(RELAXED),
                            failures_total: s.live.failures_total.load(RELAXED),
                            ejections_total: s.live.ejections_total.load(RELAXED),
                            idle_connections: s.pool.idle_count(),
                        })
                        .collect(),
                }
            })
            .collect();
        let mut routes: Vec<RouteStatus> = runtime
            .router
            .routes()
            .map(|r| RouteStatus {
                route: r.label.to_string(),
                upstream: r.upstream_name().to_string(),
                responses: STATUS_CLASSES.into_iter().zip(r.responses.get()).collect(),
            })
            .collect();
        routes.sort_by(|a, b| a.route.cmp(&b.route));
        let certificates = runtime
            .certs
            .store()
            .certs()
            .iter()
            .map(|c| CertStatus {
                name: c.name.clone(),
                names: c.dns_names.iter().cloned().chain(c.ip_addresses.iter().map(|ip| ip.to_string())).collect(),
                issuer: c.issuer.clone(),
                not_after: unix(c.not_after),
                days_left: c.days_left(),
                cert_file: c.cert_path.display().to_string(),
                key_file: c.key_path.display().to_string(),
                self_signed_fallback: c.self_signed_fallback,
            })
            .collect();
        Status {
            now: unix(SystemTime::now()),
            started: unix(sources.started),
            draining: sources.drain.is_draining(),
            config: ConfigStatus {
                generation: reloads.generation(),
                reloads_total: reloads.reloads_total(),
                reload_failures_total: reloads.failures_total(),
                last_reload: reloads.last().map(|last| ReloadStatus {
                    ok: last.error.is_none(),
                    error: last.error,
                    at: unix(last.at),
                }),
                applied_at: unix(reloads.last_success()),
            },
            listeners: sources
                .listeners
                .iter()
                .map(|l| ListenerStatus {
                    name: l.name,
                    open_connections: l.open_connections.load(RELAXED),
                    accepted_total: l.accepted_total.load(RELAXED),
                    tls_handshakes_total: l.tls.then(|| l.tls_handshakes_total.load(RELAXED)),
                    tls_handshake_failures_total: l.tls.then(|| l.tls_handshake_failures_total.load(RELAXED)),
                })
                .collect(),
            upstreams,
            routes,
            certificates,
            acme: acme_status(&sources.acme.status()),
        }
    }
}

fn acme_status(s: &crate::acme::AcmeStatus) -> AcmeStatus {
    AcmeStatus {
        names: s
            .names
            .iter()
            .map(|n| AcmeNameStatus {
                domain: n.domain.clone(),
                state: n.state.as_str(),
                lock_owner: match &n.state {
                    crate::acme::NameState::OtherInstance(owner) => Some(owner.clone()),
                    _ => None,
                },
                not_after: n.expires.map(unix),
                next_attempt: n.next_attempt.map(unix),
                last_error: n.last_error.clone(),
                failures: n.failures,
            })
            .collect(),
        attempts_total: s.attempts,
        issued_total: s.issued,
        failures_total: s.failed,
    }
}
