//! docs/configuration.md, Dashboard: `GET /`: the dashboard, loaded in headless Chromium (Debian's
//! `chromium`) while traffic flows. Its script polls /status and builds the
//! page; the test asserts on the rendered DOM (upstreams, server URLs,
//! certificate names, a plotted rate) and writes a screenshot to
//! `target/dashboard.png` for a person to look at.
//!
//! Needs the Debian package `chromium` (`.ci/run` installs it). Without it the
//! test is skipped loudly, except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

fn chromium_or_skip() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path).map(|dir| dir.join("chromium")).find(|p| p.is_file());
    if found.is_none() {
        let message = "the dashboard test needs chromium (Debian package `chromium`, as .ci/run installs)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and missing tool: {message}");
        }
        eprintln!("\n!!!!!!!!!!\nSKIPPED: admin_dashboard: {message}\n!!!!!!!!!!\n");
    }
    found
}

/// Runs headless Chromium on `url` with `extra` arguments; virtual time lets the page's
/// timers (its /status polls) run for `budget_ms` before the DOM or screenshot is taken.
async fn chromium(binary: &Path, url: &str, budget_ms: u32, extra: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("chromium did not finish in 90 s")
        .expect("chromium runs");
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_upstreams_servers_and_certificates_in_chromium() {
    let Some(binary) = chromium_or_skip() else { return };
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    // c answers 500 on /healthz: requests for /api/healthz through porter are the plotted errors.
    let c = Backend::start_with("c", Behaviour { health_status: Some(500), ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    write_cert(&dir.path().join("certs"), "shop", &["shop.example", "www.shop.example"]);
    let yaml = format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\ntls:\n  certs: certs\n\
         http:\n  redirect: false\nupstreams:\n{}{}routes:\n  - path: /api/\n    upstream: api\n    strip_prefix: true\n\
         \x20 - upstream: web\n",
        upstream_block("web", &[(&a, 2), (&b, 1)]),
        upstream_block("api", &[(&c, 1)]),
    );
    let p = TestPorter::start_in(dir, &yaml).await;

    // Traffic for the plots while Chromium polls: a steady trickle, some of it 5xx.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, base) = (stop.clone(), p.http_url(""));
        tokio::spawn(async move {
            let client = plain_client();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = match n % 6 {
                    0..=2 => "/",
                    3 | 4 => "/api/items",
                    _ => "/api/healthz",
                };
                if let Ok(response) = client.get(format!("{base}{path}")).send().await {
                    let _ = response.bytes().await;
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let url = p.admin_url("/");
    let dom = String::from_utf8(chromium(&binary, &url, 7000, &["--dump-dom"]).await.stdout).unwrap();
    for expected in [
        "data-name=\"web\"",
        "data-name=\"api\"",
        &a.url(),
        &b.url(),
        &c.url(),
        "shop.example, www.shop.example",
        "<td class=\"cert-name\">shop</td>",
        "weighted_round_robin",
        "serving",
    ] {
        assert!(dom.contains(expected), "rendered dashboard lacks {expected:?}:\n{dom}");
    }
    // Each upstream's plot has points once two polls have been compared.
    let plotted = dom.matches("<polyline points=\"").count();
    let empty = dom.matches("<polyline points=\"\"").count();
    assert_eq!(plotted, 4, "two lines per upstream:\n{dom}");
    assert_eq!(empty, 0, "a plot without points:\n{dom}");
    assert!(dom.contains("<span id=\"error\"></span>"), "the page could not poll /status:\n{dom}");
    // The api upstream's summary line counts its 5xx answers.
    let api = &dom[dom.find("data-name=\"api\"").unwrap()..];
    let summary = &api[api.find("class=\"sub\">").unwrap()..api.find("</div>").unwrap()];
    assert!(summary.contains(" 5xx") && !summary.contains(" 0 5xx"), "{summary}");

    // The screenshot, for a person (and docs/dashboard.png, shown in docs/configuration.md).
    let target = Path::new(env!("CARGO_BIN_EXE_porter")).parent().unwrap().parent().unwrap().to_path_buf();
    let shot = target.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    chromium(&binary, &url, 9000, &["--hide-scrollbars", "--window-size=1280,1100", &arg]).await;
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot: {} bytes", png.len());
    eprintln!("dashboard screenshot: {}", shot.display());

    stop.store(true, Ordering::Relaxed);
    let sent = traffic.await.unwrap();
    assert!(sent > 0);
    p.stop().await;
}

/// The ACME section: each managed name with its state, next order and last
/// error. The CA's directory is a port nothing listens on, so the first order
/// fails and the name shows `failed` with the error and a retry date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_acme_state_next_order_and_last_error() {
    let Some(binary) = chromium_or_skip() else { return };
    let a = Backend::start("a").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_ca = format!("https://127.0.0.1:{}/dir", closed.local_addr().unwrap().port());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\ntls:\n  certs: certs\n\
         acme:\n  directory: \"{dead_ca}\"\n  challenge: http-01\nupstreams:\n{}routes:\n  - host: managed.porter-test.example\n    upstream: web\n",
        upstream_block("web", &[(&a, 1)]),
    );
    let p = TestPorter::start_in(dir, &yaml).await;
    // /status carries the state the page renders; wait for the failed order.
    let client = plain_client();
    let start = std::time::Instant::now();
    let name = loop {
        let body = client.get(p.admin_url("/status")).send().await.unwrap().bytes().await.unwrap();
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let name = status["acme"]["names"][0].clone();
        if name["state"] == "failed" {
            break name;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no failed order yet: {status:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(name["domain"], "managed.porter-test.example");
    let error = name["last_error"].as_str().expect("a last error").to_owned();
    assert!(name["next_attempt"].as_f64().is_some(), "{name:#}");

    let dom = String::from_utf8(chromium(&binary, &p.admin_url("/"), 5000, &["--dump-dom"]).await.stdout).unwrap();
    assert!(dom.contains("<section id=\"acme-section\">"), "the ACME section is hidden:\n{dom}");
    let row = &dom[dom.find("data-domain=\"managed.porter-test.example\"").expect("a row for the managed name")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains(">failed</span>"), "state: {row}");
    // The error as /status gives it (HTML-escaped in the DOM dump).
    let escaped = error.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    assert!(row.contains(&format!("<td class=\"acme-error\">{escaped}</td>")), "last error {error:?}: {row}");
    // Next order: a date, not the placeholder; no certificate yet.
    assert_eq!(row.matches(" UTC</td>").count(), 1, "next order date: {row}");
    assert!(dom.contains("1 failed"), "totals:\n{dom}");
    p.stop().await;
}
