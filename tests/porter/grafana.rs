//! docs/deploy.md, Grafana dashboard: deploy/grafana/porter-dashboard.json is a Grafana dashboard
//! (schemaVersion 39, a Prometheus data source variable, `job`/`instance`
//! variables) whose every query names only series a running porter exports:
//! a real porter with traffic on both listeners, a dead server (retries,
//! failures, an ejection), active health checks and a failed TLS handshake
//! is scraped, and each `porter_*`/`process_*` name in each panel's
//! expression must have samples in that scrape.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::admin::parse_prometheus;
use crate::deploy_files::repo;
use crate::harness::*;

fn dashboard() -> Value {
    let path = repo("deploy/grafana/porter-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

/// The `porter_*` and `process_*` identifiers in a PromQL expression.
fn series_names(expr: &str) -> Vec<String> {
    let pattern = regex::Regex::new(r"\b(?:porter|process)_[a-z_]+").unwrap();
    pattern.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn dashboard_is_a_grafana_dashboard_with_datasource_job_and_instance_variables() {
    let dashboard = dashboard();
    assert_eq!(dashboard["schemaVersion"], 39);
    let inputs = dashboard["__inputs"].as_array().unwrap();
    assert!(inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"), "{inputs:?}");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no ${name}"));
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    for name in ["job", "instance"] {
        assert_eq!(variable(name)["type"], "query");
        assert_eq!(variable(name)["datasource"]["uid"], "${datasource}");
    }

    let mut ids = HashSet::new();
    let mut queries = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "panel id repeated: {title}");
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{title}: a target without expr"));
            // Each query follows the variables, so one dashboard serves every porter scraped.
            for selector in expr.match_indices('{').map(|(i, _)| &expr[i..]) {
                if selector.starts_with("{{") {
                    continue;
                }
                assert!(selector.starts_with("{job=~\"$job\",instance=~\"$instance\""), "{title}: {expr}");
            }
            assert!(!series_names(expr).is_empty(), "{title}: {expr} names no porter series");
            queries += 1;
        }
    }
    assert!(queries >= 30, "{queries} queries");
}

#[tokio::test]
async fn every_series_the_dashboard_queries_is_in_porters_metrics() {
    let live = Backend::start("live").await;
    let dead = Backend::start("dead").await;
    let dead_addr = dead.stop().await;
    let yaml = format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\ntls:\n  certs: certs\n\
         http:\n  redirect: false\nupstreams:\n  web:\n    servers:\n      - url: \"{}\"\n\
         \x20     - url: \"http://{dead_addr}\"\n    health_check:\n      interval: 200ms\n      timeout: 100ms\n\
         \x20   passive:\n      max_failures: 1\n      cooldown: 60s\nroutes:\n  - upstream: web\n",
        live.url(),
    );
    let porter = TestPorter::start(&yaml).await;

    let http = plain_client();
    for _ in 0..10 {
        assert_eq!(http.get(porter.http_url("/")).send().await.unwrap().status(), 200);
    }
    let https = client_for(porter.https.unwrap(), &["localhost"]);
    for _ in 0..3 {
        assert_eq!(https.get(porter.https_url("/")).send().await.unwrap().status(), 200);
    }
    // Not TLS: one failed handshake.
    let mut garbage = tokio::net::TcpStream::connect(porter.https.unwrap()).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    drop(garbage);

    let dashboard = dashboard();
    let mut wanted = BTreeSet::new();
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            wanted.extend(series_names(target["expr"].as_str().unwrap()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            wanted.extend(series_names(query));
        }
    }
    assert!(wanted.len() >= 30, "{wanted:?}");

    // Health checks and the failed handshake land a moment later: wait for every name.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = plain_client().get(porter.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
        let exported: HashSet<String> = parse_prometheus(&body).into_iter().map(|s| s.name).collect();
        // A histogram's base name stands for its _bucket/_sum/_count series.
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|name| !exported.contains(*name) && !exported.contains(&format!("{name}_bucket")))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the dashboard queries series porter does not export: {missing:?}\n{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    porter.stop().await;
}
