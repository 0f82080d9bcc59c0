//! docs/configuration.md, Admin listener, for operators: `/livez` (liveness) answers 200 while
//! `/healthz` (readiness) answers 503 during a drain; `/metrics` carries `porter_build_info`,
//! whether the last reload succeeded and when a configuration was last applied, the standard
//! `process_*` series, and health checks' connections apart from requests'. And a reload that keeps
//! a server's address keeps its live state (in flight, counters, health), changing only its
//! settings (docs/configuration.md, Command line: a reload applies settings, never resets a
//! server).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::admin::{parse_prometheus, value, Sample};
use crate::harness::*;
use crate::lifecycle::{free_port, signal, spawn_porter};

async fn scrape(url: &str) -> Vec<Sample> {
    let response = plain_client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    parse_prometheus(&response.text().await.unwrap())
}

async fn status(url: &str) -> serde_json::Value {
    serde_json::from_str(&plain_client().get(url).send().await.unwrap().text().await.unwrap()).unwrap()
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn binary_yaml(http: u16, admin: u16, backend: &Backend, weight: u32) -> String {
    format!(
        "listen:\n  http: \"127.0.0.1:{http}\"\n  admin: \"127.0.0.1:{admin}\"\nhttp:\n  redirect: false\n\
         shutdown_timeout: 10s\nupstreams:\n{}routes:\n  - upstream: web\n",
        upstream_block("web", &[(backend, weight)])
    )
}

#[tokio::test]
async fn livez_stays_200_while_healthz_turns_503_in_the_drain() {
    let slow =
        Backend::start_with("slow", Behaviour { delay: Some(Duration::from_millis(2000)), ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let (http, admin) = (free_port(), free_port());
    let config = dir.path().join("porter.yaml");
    std::fs::write(&config, binary_yaml(http, admin, &slow, 1)).unwrap();
    let mut porter = spawn_porter(&config);
    let get = |path: &str| {
        let url = format!("http://127.0.0.1:{admin}{path}");
        async move { plain_client().get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!((get("/livez").await, get("/healthz").await), (200, 200));

    let url = format!("http://127.0.0.1:{http}/slow");
    let in_flight = tokio::spawn(async move { plain_client().get(url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&porter.0, "TERM");
    let deadline = Instant::now() + Duration::from_secs(1);
    while get("/healthz").await != 503 {
        assert!(Instant::now() < deadline, "/healthz did not turn 503 after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Draining, not dead: a liveness probe must not have it killed.
    assert!(!in_flight.is_finished(), "the drain should still be waiting for the slow request");
    assert_eq!(get("/livez").await, 200);
    assert_eq!(in_flight.await.unwrap().expect("the request in flight was cut"), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while porter.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "porter did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_say_the_build_the_last_reload_and_the_process() {
    let backend = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let (http, admin) = (free_port(), free_port());
    let config = dir.path().join("porter.yaml");
    let good = binary_yaml(http, admin, &backend, 1);
    std::fs::write(&config, &good).unwrap();
    let before_start = now();
    let porter = spawn_porter(&config);
    let metrics = format!("http://127.0.0.1:{admin}/metrics");

    let samples = scrape(&metrics).await;
    assert_eq!(value(&samples, "porter_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    // Nothing reloaded yet: the configuration at start counts as applied, at start.
    assert_eq!(value(&samples, "porter_config_last_reload_successful", &[]), Some(1.0));
    let applied_at = value(&samples, "porter_config_last_reload_success_timestamp_seconds", &[]).unwrap();
    assert!(applied_at >= before_start - 1.0 && applied_at <= now() + 1.0, "{applied_at} vs {before_start}");

    let process = |name: &str| value(&samples, name, &[]).unwrap_or_else(|| panic!("no {name}"));
    let (open, max) = (process("process_open_fds"), process("process_max_fds"));
    assert!(open >= 5.0 && open < max, "open_fds {open}, max_fds {max}");
    let rss = process("process_resident_memory_bytes");
    assert!(rss > 1e6 && rss < 1e9, "resident memory {rss}");
    assert!(process("process_virtual_memory_bytes") >= rss);
    assert!(process("process_cpu_seconds_total") >= 0.0);
    let started = process("process_start_time_seconds");
    assert!((started - before_start).abs() < 30.0, "start time {started}, spawned at {before_start}");
    // A connection held open is one more descriptor at the next scrape.
    let held = tokio::net::TcpStream::connect(("127.0.0.1", http)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while value(&scrape(&metrics).await, "porter_open_connections", &[("listener", "http")]) != Some(1.0) {
        assert!(Instant::now() < deadline, "the held connection was not accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let with_held = value(&scrape(&metrics).await, "process_open_fds", &[]).unwrap();
    assert!(with_held > open, "open_fds {with_held} with a connection held, {open} before");
    drop(held);

    // A refused reload: the gauge says so, the timestamp stays the last applied one.
    std::fs::write(&config, "upstreams: [this is not valid\n").unwrap();
    signal(&porter.0, "HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let samples = loop {
        let samples = scrape(&metrics).await;
        if value(&samples, "porter_config_last_reload_successful", &[]) == Some(0.0) {
            break samples;
        }
        assert!(Instant::now() < deadline, "the refused reload is not in porter_config_last_reload_successful");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(value(&samples, "porter_config_last_reload_success_timestamp_seconds", &[]), Some(applied_at));

    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::write(&config, &good).unwrap();
    signal(&porter.0, "HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let samples = loop {
        let samples = scrape(&metrics).await;
        if value(&samples, "porter_config_last_reload_successful", &[]) == Some(1.0) {
            break samples;
        }
        assert!(Instant::now() < deadline, "the good reload is not in porter_config_last_reload_successful");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reapplied = value(&samples, "porter_config_last_reload_success_timestamp_seconds", &[]).unwrap();
    assert!(reapplied > applied_at, "{reapplied} not after {applied_at}");
    let status = status(&format!("http://127.0.0.1:{admin}/status")).await;
    let in_status = status["config"]["applied_at"].as_f64().unwrap();
    assert!((in_status - reapplied).abs() < 0.01, "/status says {in_status}, /metrics {reapplied}");
}

#[tokio::test]
async fn health_check_connections_are_counted_apart_from_requests() {
    let backend = Backend::start("a").await;
    let yaml = format!(
        "listen:\n  http: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\nhttp:\n  redirect: false\nupstreams:\n{}\
         \x20   health_check:\n      path: /healthz\n      interval: 100ms\n      timeout: 80ms\nroutes:\n  - upstream: web\n",
        upstream_block("web", &[(&backend, 1)])
    );
    let p = TestPorter::start(&yaml).await;
    let client = plain_client();
    for _ in 0..20 {
        assert_eq!(client.get(p.http_url("/x")).send().await.unwrap().status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.requests_to("/healthz") < 4 {
        assert!(Instant::now() < deadline, "health checks did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let samples = scrape(&p.admin_url("/metrics")).await;
    let url = backend.url();
    let labels = [("upstream", "web"), ("server", url.as_str())];
    let requests = value(&samples, "porter_upstream_server_connects_total", &labels).unwrap();
    let checks = value(&samples, "porter_upstream_health_check_connects_total", &labels).unwrap();
    // Twenty requests on one keep-alive client connection reuse one upstream connection;
    // every check opens its own.
    assert_eq!(requests, 1.0, "request connections: {requests}");
    assert!(checks >= 4.0, "health-check connections: {checks}");
    p.stop().await;
}

#[tokio::test]
async fn a_reload_that_keeps_a_server_keeps_its_live_state() {
    let slow = Backend::start("slow").await;
    let yaml = |weight: u32| {
        format!(
            "listen:\n  http: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\nhttp:\n  redirect: false\nupstreams:\n{}\
             routes:\n  - upstream: web\n",
            upstream_block("web", &[(&slow, weight)])
        )
    };
    let p = TestPorter::start(&yaml(5)).await;
    let client = plain_client();
    for _ in 0..3 {
        assert_eq!(client.get(p.http_url("/done")).send().await.unwrap().status(), 200);
    }
    slow.behaviour.lock().unwrap().delay = Some(Duration::from_millis(1500));
    let url = p.http_url("/slow");
    let in_flight = tokio::spawn(async move { plain_client().get(url).send().await.map(|r| r.status().as_u16()) });
    let server = |status: &serde_json::Value| status["upstreams"][0]["servers"][0].clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server(&status(&p.admin_url("/status")).await)["in_flight"] != 1 {
        assert!(Instant::now() < deadline, "the slow request is not in flight");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let url = slow.url();
    let labels = [("upstream", "web"), ("server", url.as_str())];
    let connects = value(&scrape(&p.admin_url("/metrics")).await, "porter_upstream_server_connects_total", &labels);
    assert!(connects.is_some_and(|n| n >= 1.0), "{connects:?}");

    // Only the weight changes: draining it, as docs/configuration.md, Draining, does.
    p.reload(&yaml(0));
    let s = server(&status(&p.admin_url("/status")).await);
    assert_eq!(s["weight"], 0);
    assert_eq!(s["state"], "drained");
    assert_eq!(s["in_flight"], 1, "the request in flight must still be seen after the reload: {s}");
    assert_eq!(s["requests_total"], 4, "counters must not restart at a reload: {s}");
    let samples = scrape(&p.admin_url("/metrics")).await;
    assert_eq!(value(&samples, "porter_upstream_server_in_flight", &labels), Some(1.0));
    assert_eq!(value(&samples, "porter_upstream_server_requests_total", &labels), Some(4.0));
    assert_eq!(value(&samples, "porter_upstream_server_connects_total", &labels), connects);

    // The operator watches it go idle.
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
    slow.behaviour.lock().unwrap().delay = None;
    let s = server(&status(&p.admin_url("/status")).await);
    assert_eq!((s["in_flight"].as_u64(), s["requests_total"].as_u64()), (Some(0), Some(4)), "{s}");

    // Back to a weight: the kept connections are reused, nothing restarts from zero.
    p.reload(&yaml(2));
    assert_eq!(client.get(p.http_url("/done")).send().await.unwrap().status(), 200);
    let s = server(&status(&p.admin_url("/status")).await);
    assert_eq!((s["weight"].as_u64(), s["requests_total"].as_u64()), (Some(2), Some(5)), "{s}");
    let samples = scrape(&p.admin_url("/metrics")).await;
    // The pooled connections were kept: the request after the reloads opened none.
    assert_eq!(value(&samples, "porter_upstream_server_connects_total", &labels), connects, "pool not kept");
    p.stop().await;
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_into_a_closed_pipe_exits_quietly() {
    // The reader gone before porter writes a byte: every write gets EPIPE, as with
    // `porter check | head -1` once head has its line.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_porter"))
        .args(["check", "-c", &example("quickstart.yaml")])
        .env("RUST_BACKTRACE", "1")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn a_bad_porter_workers_is_reported_under_its_own_name() {
    let run = |args: &[&str], workers: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_porter"));
        command.args(args).args(["check", "-c", &example("quickstart.yaml")]).env_remove("PORTER_WORKERS");
        if let Some(value) = workers {
            command.env("PORTER_WORKERS", value);
        }
        let out = command.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stderr) = run(&[], Some("abc"));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("invalid value 'abc' for the environment variable PORTER_WORKERS"), "{stderr}");
    assert!(!stderr.contains("--workers"), "{stderr}");
    // Typed on the command line, the flag is what is named (and wins over the variable).
    let (code, stderr) = run(&["--workers", "abc"], Some("2"));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("'--workers <N>'"), "{stderr}");
}

#[tokio::test]
async fn x_forwarded_port_is_the_port_the_client_connected_to() {
    let backend = Backend::start("a").await;
    let yaml = |extra: &str| {
        format!(
            "{}http:\n  redirect: false\n{extra}upstreams:\n{}routes:\n  - upstream: web\n",
            listen_block(),
            upstream_block("web", &[(&backend, 1)])
        )
    };
    let p = TestPorter::start(&yaml("")).await;
    let https = client_for(p.https.unwrap(), &["localhost"]);
    let get = |client: &reqwest::Client, url: String, forged: bool| {
        let request = client.get(url);
        let request = if forged { request.header("x-forwarded-port", "1") } else { request };
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let port = |body: &str| echoed_header(body, "x-forwarded-port").join(",");
    // Each listener's own port; a client's own value is replaced (it is not trusted).
    let body = get(&plain_client(), p.http_url("/echo-headers"), true).await;
    assert_eq!(port(&body), p.http.unwrap().port().to_string(), "{body}");
    let body = get(&https, p.https_url("/echo-headers"), true).await;
    assert_eq!(port(&body), p.https.unwrap().port().to_string(), "{body}");

    // Behind a port mapping, redirect_port is the port clients use.
    p.reload(&yaml("").replace("http:\n  redirect: false\n", "http:\n  redirect: false\n  redirect_port: 8443\n"));
    // (New connections: each takes the configuration running when it was accepted.)
    let https = client_for(p.https.unwrap(), &["localhost"]);
    assert_eq!(port(&get(&https, p.https_url("/echo-headers"), false).await), "8443");
    // From a trusted proxy, its X-Forwarded-Port is kept like its other X-Forwarded-*.
    p.reload(&yaml("").replace("tls:", "  trusted_proxies: [\"127.0.0.1\"]\ntls:"));
    assert_eq!(port(&get(&plain_client(), p.http_url("/echo-headers"), true).await), "1");
    p.stop().await;
}

#[tokio::test]
async fn porter_refusing_a_head_with_431_on_https_sends_hsts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = Backend::start("a").await;
    let yaml = format!(
        "{}tls:\n  certs: certs\n  hsts: \"max-age=600\"\nlimits:\n  max_header_bytes: 8KiB\nhttp:\n  redirect: false\n\
         upstreams:\n{}routes:\n  - upstream: web\n",
        listen_block().replace("tls:\n  certs: certs\n", ""),
        upstream_block("web", &[(&backend, 1)])
    );
    let p = TestPorter::start(&yaml).await;
    let head = |extra: usize| {
        format!("GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nx-big: {}\r\n\r\n", "a".repeat(extra))
    };
    let answer = |tls: bool, extra: usize| {
        let request = head(extra);
        let (https, http) = (p.https.unwrap(), p.http.unwrap());
        async move {
            let mut text = Vec::new();
            if tls {
                let config = crate::tls_client::tls_config(&crate::tls_client::TLS12_AND_13, &[b"http/1.1"]);
                let mut stream = crate::tls_client::tls_connect(https, "localhost", config).await.unwrap();
                stream.write_all(request.as_bytes()).await.unwrap();
                let _ = stream.read_to_end(&mut text).await;
            } else {
                let mut stream = tokio::net::TcpStream::connect(http).await.unwrap();
                stream.write_all(request.as_bytes()).await.unwrap();
                let _ = stream.read_to_end(&mut text).await;
            }
            String::from_utf8_lossy(&text).to_lowercase()
        }
    };
    let refused = answer(true, 9000).await;
    assert!(refused.starts_with("http/1.1 431"), "{refused}");
    assert!(refused.contains("strict-transport-security: max-age=600\r\n"), "{refused}");
    // Like porter's other https answers, and never on plaintext.
    let served = answer(true, 10).await;
    assert!(served.starts_with("http/1.1 200") && served.contains("strict-transport-security: max-age=600"));
    let plain = answer(false, 9000).await;
    assert!(plain.starts_with("http/1.1 431") && !plain.contains("strict-transport-security"), "{plain}");
    p.stop().await;
}

#[tokio::test]
async fn without_an_https_listener_no_certificate_is_read_made_or_warned_about() {
    let backend = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The folder named does not exist: with no https listener that is nothing to warn about.
    let config = dir.path().join("porter.yaml");
    std::fs::write(
        &config,
        format!(
            "listen:\n  http: \"127.0.0.1:{port}\"\ntls:\n  certs: missing-folder\nhttp:\n  redirect: false\n\
             upstreams:\n{}routes:\n  - upstream: web\n",
            upstream_block("web", &[(&backend, 1)])
        ),
    )
    .unwrap();
    let check =
        std::process::Command::new(env!("CARGO_BIN_EXE_porter")).args(["check", "-c"]).arg(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("WARNING") && !stdout.contains("self-signed"), "{stdout}");
    assert!(stdout.contains("certificates: none needed (no https listener)"), "{stdout}");

    let porter = spawn_porter(&config);
    let response = plain_client().get(format!("http://127.0.0.1:{port}/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let logged = porter.1.lock().unwrap().join("\n");
    assert!(!logged.contains("SELF-SIGNED") && !logged.contains("certificate"), "{logged}");
}

#[tokio::test]
async fn an_upstream_certificate_refused_is_logged_with_the_server_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, _ca_file) = crate::upstream_tls::private_ca(dir.path(), &[b"http/1.1"]);
    let backend = Backend::start_wire("private", Wire::Tls(tls)).await;
    let port = free_port();
    let config = dir.path().join("porter.yaml");
    let server = format!("https://{}", backend.addr);
    std::fs::write(
        &config,
        format!(
            "listen:\n  http: \"127.0.0.1:{port}\"\nhttp:\n  redirect: false\nupstreams:\n  web:\n    servers:\n\
             \x20     - url: \"{server}\"\nroutes:\n  - upstream: web\n"
        ),
    )
    .unwrap();
    let porter = spawn_porter(&config);
    let client = plain_client();
    for _ in 0..3 {
        let response = client.get(format!("http://127.0.0.1:{port}/")).send().await.unwrap();
        assert_eq!(response.status(), 502);
    }
    let line = porter.wait_for_line("upstream TLS: its certificate was refused", Duration::from_secs(5)).await;
    assert!(line.contains(&server), "{line}");
    assert!(line.contains("UnknownIssuer"), "{line}");
    // Once per episode, not once per request.
    let lines = porter.1.lock().unwrap().iter().filter(|l| l.contains("upstream TLS")).count();
    assert_eq!(lines, 1, "{:?}", porter.1.lock().unwrap());
}
