//! `GET /metrics`: every series of docs/configuration.md, Metrics, in the Prometheus text format,
//! encoded by `prometheus-client`. A [`Collector`] walks the runtime snapshot
//! at scrape time and reads the atomics the routes, upstreams, servers and
//! listeners keep, so nothing is registered per label and the request path
//! never touches the registry. docs/configuration.md, Metrics, lists every series.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::Sources;
use crate::stats::STATUS_CLASSES;

pub(super) use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The registry, holding one collector over the live state.
pub(super) struct Metrics(Registry);

impl Metrics {
    pub(super) fn new(sources: Arc<Sources>) -> Metrics {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Snapshot(sources)));
        Metrics(registry)
    }

    pub(super) fn render(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; an error here would be a bug in an encoder.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.0) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        text
    }
}

#[derive(Debug)]
struct Snapshot(Arc<Sources>);

type Result = std::result::Result<(), std::fmt::Error>;

fn counter(m: &mut MetricEncoder, labels: &impl EncodeLabelSet, value: u64) -> Result {
    ConstCounter::new(value).encode(m.encode_family(labels)?)
}

fn gauge(m: &mut MetricEncoder, labels: &impl EncodeLabelSet, value: i64) -> Result {
    ConstGauge::new(value).encode(m.encode_family(labels)?)
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result {
        let sources = &*self.0;
        let runtime = sources.shared.runtime.load_full();
        let counter_type = MetricType::Counter;

        let mut m = e.encode_descriptor(
            "porter_requests",
            "Requests answered, by route, upstream and status class (route and upstream \"none\": no route matched)",
            None,
            counter_type,
        )?;
        for route in runtime.router.routes() {
            for (class, n) in STATUS_CLASSES.iter().zip(route.responses.get()) {
                counter(
                    &mut m,
                    &[("route", &*route.label), ("upstream", route.upstream_name()), ("status_class", class)],
                    n,
                )?;
            }
        }
        for (class, n) in STATUS_CLASSES.iter().zip(runtime.unrouted.get()) {
            counter(&mut m, &[("route", "none"), ("upstream", "none"), ("status_class", class)], n)?;
        }

        let mut m = e.encode_descriptor(
            "porter_requests_by_protocol",
            "Requests by the HTTP version the client spoke (http1, h2, h3)",
            None,
            counter_type,
        )?;
        for (protocol, n) in crate::stats::PROTOCOLS.iter().zip(runtime.by_protocol.get()) {
            counter(&mut m, &[("protocol", *protocol)], n)?;
        }

        let mut m = e.encode_descriptor(
            "porter_policy_answers",
            "Requests a route answered itself, by the rule that answered: deny, rate_limit, basic_auth, forward_auth, redirect, respond",
            None,
            counter_type,
        )?;
        for route in runtime.router.routes() {
            // Only rules that answered: a route without policy adds no series.
            for (rule, n) in route.answers.get().filter(|(_, n)| *n > 0) {
                counter(&mut m, &[("route", &*route.label), ("rule", rule.as_str())], n)?;
            }
        }

        let mut m = e.encode_descriptor(
            "porter_request_duration_seconds",
            "Time from a request's arrival to its response head, by upstream",
            None,
            MetricType::Histogram,
        )?;
        for upstream in &runtime.upstreams {
            let latency = upstream.stats.latency.snapshot();
            m.encode_family(&[("upstream", &*upstream.name)])?.encode_histogram::<NoLabelSet>(
                latency.sum_seconds,
                latency.count,
                &latency.buckets,
                None,
            )?;
        }

        let mut m = e.encode_descriptor(
            "porter_upstream_retries",
            "Requests sent to another server after a failure",
            None,
            counter_type,
        )?;
        for upstream in &runtime.upstreams {
            counter(&mut m, &[("upstream", &*upstream.name)], upstream.stats.retries_total.load(RELAXED))?;
        }

        self.encode_servers(&mut e, &runtime)?;
        self.encode_listeners(&mut e)?;
        self.encode_acme(&mut e)?;

        let reloads = &sources.reloads;
        let attempts =
            e.encode_descriptor("porter_config_reloads", "Configuration reloads attempted", None, counter_type)?;
        ConstCounter::new(reloads.reloads_total()).encode(attempts)?;
        let refused = e.encode_descriptor(
            "porter_config_reload_failures",
            "Configuration reloads refused (the running configuration was kept)",
            None,
            counter_type,
        )?;
        ConstCounter::new(reloads.failures_total()).encode(refused)?;
        let generation = e.encode_descriptor(
            "porter_config_generation",
            "Configuration generation: 1 at start, +1 per applied reload",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(reloads.generation() as i64).encode(generation)?;
        let successful = e.encode_descriptor(
            "porter_config_last_reload_successful",
            "1 if the last reload was applied (or none was tried since start), 0 if it was refused",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(reloads.last_successful())).encode(successful)?;
        let applied = e.encode_descriptor(
            "porter_config_last_reload_success_timestamp_seconds",
            "When the running configuration was applied (Unix time): at start, then at each applied reload",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(unix_seconds(reloads.last_success())).encode(applied)?;
        let dropped = e.encode_descriptor(
            "porter_access_log_dropped",
            "Access-log lines dropped because the log writer fell behind (workers never wait for it)",
            None,
            counter_type,
        )?;
        ConstCounter::new(crate::access_log::dropped_lines()).encode(dropped)?;

        if let Some(store) = &runtime.rate_limit_store {
            let errors = e.encode_descriptor(
                "porter_rate_limit_store_errors",
                "Requests whose rate limit Redis (rate_limit_store) did not decide in time; on_error answered them",
                None,
                counter_type,
            )?;
            ConstCounter::new(store.errors()).encode(errors)?;
            let up = e.encode_descriptor(
                "porter_rate_limit_store_up",
                "1 while porter holds a connection to the rate_limit_store Redis, 0 while it reconnects",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::from(store.connected())).encode(up)?;
        }

        let mut m = e.encode_descriptor(
            "porter_certificate_expiry_timestamp_seconds",
            "When each loaded certificate expires (Unix time)",
            None,
            MetricType::Gauge,
        )?;
        for cert in runtime.certs.store().certs() {
            let expiry = cert.not_after.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            gauge(&mut m, &[("certificate", cert.name.as_str())], expiry)?;
        }

        let mut build = e.encode_descriptor(
            "porter_build_info",
            "Always 1; the labels say which porter runs",
            None,
            MetricType::Gauge,
        )?;
        gauge_f(build.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?, 1.0)?;
        if let Some(process) = super::process::Process::read() {
            encode_process(&mut e, &process)?;
        }

        let draining = e.encode_descriptor(
            "porter_draining",
            "1 once a graceful stop has begun (also /healthz answers 503)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(sources.drain.is_draining())).encode(draining)
    }
}

fn gauge_f(m: MetricEncoder, value: f64) -> Result {
    ConstGauge::new(value).encode(m)
}

fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The `process_*` series under the names Prometheus' client libraries give them.
fn encode_process(e: &mut DescriptorEncoder, p: &super::process::Process) -> Result {
    let cpu = e.encode_descriptor(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(p.cpu_seconds).encode(cpu)?;
    let gauges = [
        ("process_resident_memory_bytes", "Resident memory size in bytes", Some(p.resident_memory_bytes as f64)),
        ("process_virtual_memory_bytes", "Virtual memory size in bytes", Some(p.virtual_memory_bytes as f64)),
        ("process_open_fds", "Number of open file descriptors", Some(p.open_fds as f64)),
        ("process_max_fds", "Maximum number of open file descriptors (soft limit)", p.max_fds.map(|n| n as f64)),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            Some(p.start_time_seconds),
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            gauge_f(e.encode_descriptor(name, help, None, MetricType::Gauge)?, value)?;
        }
    }
    Ok(())
}

const RELAXED: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

impl Snapshot {
    fn encode_servers(&self, e: &mut DescriptorEncoder, runtime: &crate::runtime::Runtime) -> Result {
        type Read = fn(&crate::upstream::server::Server) -> i64;
        let series: [(&str, &str, MetricType, Read); 9] = [
            (
                "porter_upstream_server_healthy",
                "1 if the server may take requests (active checks pass, not passively ejected), else 0",
                MetricType::Gauge,
                |s| i64::from(s.is_healthy() && !s.is_ejected()),
            ),
            ("porter_upstream_server_weight", "Configured weight (0 = drained)", MetricType::Gauge, |s| {
                i64::from(s.weight)
            }),
            ("porter_upstream_server_in_flight", "Requests in flight on the server", MetricType::Gauge, |s| {
                i64::from(s.live.in_flight.load(RELAXED))
            }),
            (
                "porter_upstream_server_idle_connections",
                "Idle keep-alive connections in the server's pool",
                MetricType::Gauge,
                |s| s.pool.idle_count() as i64,
            ),
            ("porter_upstream_server_requests", "Requests sent to the server", MetricType::Counter, |s| {
                s.live.requests_total.load(RELAXED) as i64
            }),
            (
                "porter_upstream_server_failures",
                "Connect errors, resets and timeouts of the server",
                MetricType::Counter,
                |s| s.live.failures_total.load(RELAXED) as i64,
            ),
            (
                "porter_upstream_server_ejections",
                "Times passive health checks took the server out",
                MetricType::Counter,
                |s| s.live.ejections_total.load(RELAXED) as i64,
            ),
            (
                "porter_upstream_server_connects",
                "New connections opened to the server for requests (health checks' are counted apart)",
                MetricType::Counter,
                |s| s.live.connects_total.load(RELAXED) as i64,
            ),
            (
                "porter_upstream_health_check_connects",
                "New connections opened to the server by active health checks (one per check)",
                MetricType::Counter,
                |s| s.live.check_connects_total.load(RELAXED) as i64,
            ),
        ];
        for (name, help, kind, read) in series {
            let mut m = e.encode_descriptor(name, help, None, kind)?;
            for upstream in &runtime.upstreams {
                for server in &upstream.servers {
                    let labels = [("upstream", &*upstream.name), ("server", server.url.original.as_str())];
                    let value = read(server);
                    match kind {
                        MetricType::Counter => counter(&mut m, &labels, value as u64)?,
                        _ => gauge(&mut m, &labels, value)?,
                    }
                }
            }
        }
        Ok(())
    }

    fn encode_listeners(&self, e: &mut DescriptorEncoder) -> Result {
        let listeners = &self.0.listeners;
        let mut m = e.encode_descriptor(
            "porter_open_connections",
            "Client connections open, by listener",
            None,
            MetricType::Gauge,
        )?;
        for l in listeners {
            gauge(&mut m, &[("listener", l.name)], l.open_connections.load(RELAXED))?;
        }
        let mut m = e.encode_descriptor(
            "porter_connections_accepted",
            "Client connections accepted, by listener",
            None,
            MetricType::Counter,
        )?;
        for l in listeners {
            counter(&mut m, &[("listener", l.name)], l.accepted_total.load(RELAXED))?;
        }
        if let Some(quic) = &self.0.quic {
            let series = [
                (
                    "porter_quic_retries",
                    "QUIC Retry packets sent (address validation under a handshake flood)",
                    &quic.retries_total,
                ),
                (
                    "porter_quic_refused",
                    "QUIC connection attempts refused: max_connections reached",
                    &quic.refused_total,
                ),
            ];
            for (name, help, value) in series {
                ConstCounter::new(value.load(RELAXED)).encode(e.encode_descriptor(
                    name,
                    help,
                    None,
                    MetricType::Counter,
                )?)?;
            }
        }
        let tls: Vec<_> = listeners.iter().filter(|l| l.tls).collect();
        let mut m =
            e.encode_descriptor("porter_tls_handshakes", "TLS handshakes completed", None, MetricType::Counter)?;
        for l in &tls {
            counter(&mut m, &[("listener", l.name)], l.tls_handshakes_total.load(RELAXED))?;
        }
        let mut m = e.encode_descriptor(
            "porter_tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            None,
            MetricType::Counter,
        )?;
        for l in &tls {
            counter(&mut m, &[("listener", l.name)], l.tls_handshake_failures_total.load(RELAXED))?;
        }
        Ok(())
    }

    fn encode_acme(&self, e: &mut DescriptorEncoder) -> Result {
        let acme = self.0.acme.status();
        let series = [
            ("porter_acme_order_attempts", "ACME certificate orders started", acme.attempts),
            ("porter_acme_orders_issued", "ACME orders that ended with a certificate written", acme.issued),
            ("porter_acme_order_failures", "ACME orders that failed (each followed by a backoff)", acme.failed),
        ];
        for (name, help, value) in series {
            ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        let mut m = e.encode_descriptor(
            "porter_acme_consecutive_failures",
            "Failed ACME orders in a row, by managed domain (0 once a certificate is issued)",
            None,
            MetricType::Gauge,
        )?;
        for name in &acme.names {
            gauge(&mut m, &[("domain", name.domain.as_str())], i64::from(name.failures))?;
        }
        Ok(())
    }
}
