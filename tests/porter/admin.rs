//! docs/configuration.md, Admin listener: the admin listener. /metrics parses as Prometheus text
//! and counts exactly the requests made; a reload refused for a bad file is counted; a killed
//! server shows health 0 in /metrics and in /status; /healthz answers 200, then 503 once SIGTERM
//! starts the drain (the real binary, with a slow request in flight). The dashboard has its own
//! module (headless Chromium).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::lifecycle::{free_port, signal, spawn_porter};

/// One sample line of the Prometheus text format.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format strictly: every line is blank, a `#` comment, or
/// `name{label="value",...} value`; anything else fails the test.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line:?}"));
        let name = &line[..name_end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end = loop {
                let (start, c) = chars.next().unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                if c == '}' {
                    break start;
                }
                if c == ',' {
                    continue;
                }
                let eq = body[start..].find("=\"").unwrap_or_else(|| panic!("bad label in {line:?}")) + start;
                let key = &body[start..eq];
                assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad label name in {line:?}");
                let mut value = String::new();
                while chars.peek().is_some_and(|&(i, _)| i <= eq + 1) {
                    chars.next();
                }
                loop {
                    match chars.next().unwrap_or_else(|| panic!("unclosed label value: {line:?}")).1 {
                        '"' => break,
                        '\\' => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        other => value.push(other),
                    }
                }
                labels.insert(key.to_string(), value);
            };
            rest = &body[end + 1..];
        }
        let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        samples.push(Sample { name: name.to_string(), labels, value });
    }
    samples
}

/// The value of the one sample named `name` whose labels include all of `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)));
    let first = found.next()?;
    assert!(found.next().is_none(), "more than one {name} with {labels:?}");
    Some(first.value)
}

async fn scrape(url: &str) -> Vec<Sample> {
    let response = plain_client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    parse_prometheus(&response.text().await.unwrap())
}

async fn status(url: &str) -> serde_json::Value {
    let text = plain_client().get(url).send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {text}"))
}

fn admin_yaml(servers: &[(&Backend, u32)], extra: &str) -> String {
    format!(
        "listen:\n  http: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\nhttp:\n  redirect: false\nupstreams:\n{}{extra}\
         routes:\n  - path: /api/\n    upstream: web\n  - upstream: web\n",
        upstream_block("web", servers)
    )
}

#[tokio::test]
async fn metrics_count_exactly_the_requests_made() {
    let backend = Backend::start("a").await;
    let p = TestPorter::start(&admin_yaml(&[(&backend, 1)], "")).await;
    let client = plain_client();
    // An invalid Host: 400 from porter itself, before any route, counted apart. (First,
    // on its own connection: porter closes a connection after a 400.)
    let response = plain_client().get(p.http_url("/x")).header("host", "bad host").send().await.unwrap();
    assert_eq!(response.status(), 400);
    for i in 0..7 {
        let response = client.get(p.http_url(&format!("/page/{i}"))).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().starts_with("a GET /page/"));
    }
    for _ in 0..3 {
        let response = client.get(p.http_url("/api/users")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
    }

    let samples = scrape(&p.admin_url("/metrics")).await;
    let requests = |route: &str, class: &str| {
        value(&samples, "porter_requests_total", &[("route", route), ("status_class", class)]).unwrap()
    };
    assert_eq!(requests("*/", "2xx"), 7.0);
    assert_eq!(requests("*/api/", "2xx"), 3.0);
    assert_eq!(requests("*/", "5xx"), 0.0);
    assert_eq!(requests("none", "4xx"), 1.0);
    let total: f64 = samples.iter().filter(|s| s.name == "porter_requests_total").map(|s| s.value).sum();
    assert_eq!(total, 11.0);
    // The latency histogram saw every request routed to the upstream, in cumulative buckets.
    assert_eq!(value(&samples, "porter_request_duration_seconds_count", &[("upstream", "web")]), Some(10.0));
    assert_eq!(
        value(&samples, "porter_request_duration_seconds_bucket", &[("upstream", "web"), ("le", "+Inf")]),
        Some(10.0)
    );
    let url = backend.url();
    let server = [("upstream", "web"), ("server", url.as_str())];
    assert_eq!(value(&samples, "porter_upstream_server_requests_total", &server), Some(10.0));
    assert_eq!(value(&samples, "porter_upstream_server_healthy", &server), Some(1.0));
    assert_eq!(value(&samples, "porter_upstream_server_in_flight", &server), Some(0.0));
    assert_eq!(value(&samples, "porter_upstream_server_idle_connections", &server), Some(1.0));
    assert_eq!(value(&samples, "porter_open_connections", &[("listener", "http")]), Some(1.0));
    assert_eq!(value(&samples, "porter_config_generation", &[]), Some(1.0));
    assert_eq!(backend.requests(), 10);
    p.stop().await;
}

#[tokio::test]
async fn killed_server_shows_health_zero_and_status_lists_every_server() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let checks =
        "    health_check:\n      path: /healthz\n      interval: 100ms\n      timeout: 50ms\n      unhealthy_after: 1\n";
    let p = TestPorter::start(&admin_yaml(&[(&a, 1), (&b, 1)], checks)).await;
    let (a_url, b_url) = (a.url(), b.url());
    let healthy = |samples: &[Sample], url: &str| {
        value(samples, "porter_upstream_server_healthy", &[("upstream", "web"), ("server", url)]).unwrap()
    };
    let samples = scrape(&p.admin_url("/metrics")).await;
    assert_eq!((healthy(&samples, &a_url), healthy(&samples, &b_url)), (1.0, 1.0));

    b.stop().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let samples = scrape(&p.admin_url("/metrics")).await;
        if healthy(&samples, &b_url) == 0.0 {
            assert_eq!(healthy(&samples, &a_url), 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "the killed server still shows healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let status = status(&p.admin_url("/status")).await;
    let upstreams = status["upstreams"].as_array().unwrap();
    assert_eq!(upstreams.len(), 1);
    assert_eq!(upstreams[0]["name"], "web");
    let servers = upstreams[0]["servers"].as_array().unwrap();
    let by_url: BTreeMap<&str, &serde_json::Value> = servers.iter().map(|s| (s["url"].as_str().unwrap(), s)).collect();
    assert_eq!(by_url.len(), 2, "{servers:?}");
    assert_eq!(by_url[a_url.as_str()]["healthy"], true);
    assert_eq!(by_url[a_url.as_str()]["state"], "up");
    assert_eq!(by_url[b_url.as_str()]["healthy"], false);
    assert_eq!(by_url[b_url.as_str()]["state"], "unhealthy");
    for server in servers {
        assert_eq!(server["weight"], 1);
        assert!(
            server["in_flight"].is_u64() && server["requests_total"].is_u64() && server["idle_connections"].is_u64()
        );
    }
    assert_eq!(status["config"]["generation"], 1);
    assert_eq!(status["draining"], false);
    p.stop().await;
}

#[tokio::test]
async fn status_lists_certificates_with_names_expiry_and_files() {
    let backend = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    write_cert(&dir.path().join("certs"), "shop", &["shop.example", "www.shop.example"]);
    let yaml = format!(
        "{}  admin: \"127.0.0.1:0\"\nhttp:\n  redirect: false\nupstreams:\n{}routes:\n  - upstream: web\n",
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n",
        upstream_block("web", &[(&backend, 1)])
    )
    .replace("http:\n  redirect", "tls:\n  certs: certs\nhttp:\n  redirect");
    let p = TestPorter::start_in(dir, &yaml).await;
    let client = client_for(p.https.unwrap(), &["shop.example"]);
    let url = format!("https://shop.example:{}/", p.https.unwrap().port());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    let status = status(&p.admin_url("/status")).await;
    let certs = status["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_eq!(certs[0]["name"], "shop");
    assert_eq!(certs[0]["names"], serde_json::json!(["shop.example", "www.shop.example"]));
    assert!(certs[0]["days_left"].as_i64().unwrap() > 300);
    assert!(certs[0]["cert_file"].as_str().unwrap().ends_with("shop.crt"));
    assert!(certs[0]["key_file"].as_str().unwrap().ends_with("shop.key"));
    let https = status["listeners"].as_array().unwrap().iter().find(|l| l["name"] == "https").unwrap().clone();
    assert_eq!(https["tls_handshakes_total"], 1);

    let samples = scrape(&p.admin_url("/metrics")).await;
    assert_eq!(value(&samples, "porter_tls_handshakes_total", &[("listener", "https")]), Some(1.0));
    assert_eq!(value(&samples, "porter_tls_handshake_failures_total", &[("listener", "https")]), Some(0.0));
    let expiry = value(&samples, "porter_certificate_expiry_timestamp_seconds", &[("certificate", "shop")]).unwrap();
    assert_eq!(expiry, certs[0]["not_after"].as_f64().unwrap().floor());
    p.stop().await;
}

/// The binary with an http and an admin listener on free ports; returns (config path, http port, admin port).
fn binary_config(dir: &std::path::Path, backend: &Backend) -> (std::path::PathBuf, u16, u16) {
    let (http, admin) = (free_port(), free_port());
    let path = dir.join("porter.yaml");
    std::fs::write(
        &path,
        format!(
            "listen:\n  http: \"127.0.0.1:{http}\"\n  admin: \"127.0.0.1:{admin}\"\nhttp:\n  redirect: false\n\
             shutdown_timeout: 10s\nupstreams:\n{}routes:\n  - upstream: web\n",
            upstream_block("web", &[(backend, 1)])
        ),
    )
    .unwrap();
    (path, http, admin)
}

#[tokio::test]
async fn a_reload_refused_for_a_bad_file_is_counted() {
    let backend = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let (config, _, admin) = binary_config(dir.path(), &backend);
    let porter = spawn_porter(&config);
    let metrics = format!("http://127.0.0.1:{admin}/metrics");
    let samples = scrape(&metrics).await;
    assert_eq!(value(&samples, "porter_config_reload_failures_total", &[]), Some(0.0));

    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, "upstreams: [this is not valid\n").unwrap();
    signal(&porter.0, "HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let samples = loop {
        let samples = scrape(&metrics).await;
        if value(&samples, "porter_config_reload_failures_total", &[]) == Some(1.0) {
            break samples;
        }
        assert!(Instant::now() < deadline, "the refused reload was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(value(&samples, "porter_config_reloads_total", &[]), Some(1.0));
    assert_eq!(value(&samples, "porter_config_generation", &[]), Some(1.0));
    let status = status(&format!("http://127.0.0.1:{admin}/status")).await;
    assert_eq!(status["config"]["last_reload"]["ok"], false);
    let error = status["config"]["last_reload"]["error"].as_str().unwrap();
    assert!(error.contains("porter.yaml"), "{error}");

    // A good file afterwards is applied and counted as such.
    std::fs::write(&config, good).unwrap();
    signal(&porter.0, "HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while value(&scrape(&metrics).await, "porter_config_generation", &[]) != Some(2.0) {
        assert!(Instant::now() < deadline, "the good reload was not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let samples = scrape(&metrics).await;
    assert_eq!(value(&samples, "porter_config_reloads_total", &[]), Some(2.0));
    assert_eq!(value(&samples, "porter_config_reload_failures_total", &[]), Some(1.0));
}

#[tokio::test]
async fn healthz_is_200_then_503_once_sigterm_starts_the_drain() {
    let slow =
        Backend::start_with("slow", Behaviour { delay: Some(Duration::from_millis(1500)), ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, http, admin) = binary_config(dir.path(), &slow);
    let mut porter = spawn_porter(&config);
    let healthz = format!("http://127.0.0.1:{admin}/healthz");
    let client = plain_client();
    assert_eq!(client.get(&healthz).send().await.unwrap().status(), 200);

    let url = format!("http://127.0.0.1:{http}/slow");
    let in_flight = tokio::spawn(async move { plain_client().get(url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&porter.0, "TERM");
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        // A new connection each time, as an orchestrator's probe makes.
        let status = plain_client().get(&healthz).send().await.unwrap().status();
        if status == 503 {
            break;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "/healthz did not turn 503 after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!in_flight.is_finished(), "the drain should still be waiting for the slow request");
    assert_eq!(in_flight.await.unwrap().expect("the request in flight was cut"), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while porter.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "porter did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(porter.0.try_wait().unwrap().unwrap().code(), Some(0));
}
