//! Issue 13: the deployment files in the repository are real and consistent.
//! The compose file validates with Debian's `docker-compose` and its porter
//! config runs (end to end, against three local backends: weighted split,
//! redirect port, and the image's health check command on its admin listener); the systemd unit passes `systemd-analyze verify`; the
//! Kubernetes manifests parse and their ConfigMap's porter.yaml passes
//! `porter check`; `rust-version` covers every locked dependency.
//!
//! Outside tools (`docker-compose`, `systemd-analyze`; `.ci/run` installs
//! them) are skipped loudly when missing, except under `CI=true`, where a
//! missing tool fails the test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::*;

pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The tool on PATH, or `None` after a loud message; under `CI=true` a missing tool panics.
pub fn tool_or_skip(tool: &str, package: &str, test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file()) {
        return Some(found);
    }
    let message = format!("{test} needs `{tool}` ({package}; .ci/run installs it)");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and a missing tool: {message}");
    }
    eprintln!("\n!!!!!!!!!!\nSKIPPED: {message}\n!!!!!!!!!!\n");
    None
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn porter_check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_porter")).arg("check").arg("-c").arg(path).output().unwrap()
}

fn yaml(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn compose_file_validates_and_its_porter_config_checks_out() {
    let compose = yaml(&repo("docker-compose.yml")).remove(0);
    let porter = &compose["services"]["porter"];
    assert_eq!(porter["build"], ".", "porter is built from the repository's Dockerfile");
    let ports: Vec<&str> = porter["ports"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(ports, ["80:8080", "443:8443"]);
    let volumes = porter["volumes"].to_string();
    assert!(volumes.contains("./deploy/compose/porter.yaml:/etc/porter/porter.yaml:ro"), "{volumes}");
    assert!(volumes.contains("./certs:/var/lib/porter/certs"), "{volumes}");
    let backends = ["backend-one", "backend-two", "backend-three"];
    for name in backends {
        assert!(compose["services"][name]["image"].is_string(), "service {name}");
    }
    assert_eq!(compose["services"]["certbot"]["profiles"][0], "certbot", "certbot is optional");
    assert_eq!(compose["services"]["certbot"]["volumes"][0], porter["volumes"][1], "the same certs folder");

    // The porter config matches: container ports, certs volume, the three backends.
    let config = std::fs::read_to_string(repo("deploy/compose/porter.yaml")).unwrap();
    for needle in ["\"0.0.0.0:8443\"", "\"0.0.0.0:8080\"", "redirect_port: 443", "\"/var/lib/porter/certs\""] {
        assert!(config.contains(needle), "deploy/compose/porter.yaml lacks {needle}");
    }
    for name in backends {
        assert!(config.contains(&format!("http://{name}:8080")), "deploy/compose/porter.yaml lacks {name}");
    }
    let out = porter_check(&repo("deploy/compose/porter.yaml"));
    assert!(out.status.success(), "{}", text(&out));

    let Some(tool) = tool_or_skip("docker-compose", "Debian package docker-compose", "compose validation") else {
        return;
    };
    let out = Command::new(tool)
        .args(["--file", "docker-compose.yml", "config", "--quiet"])
        .current_dir(repo("."))
        .output()
        .unwrap();
    assert!(out.status.success(), "docker-compose config: {}", text(&out));
    assert!(text(&out).trim().is_empty(), "docker-compose config warns: {}", text(&out));
}

/// The compose file's porter config, ports rewritten to free ones and servers to local
/// backends: the 3:2:1 split and redirects to the published port 443.
#[tokio::test]
async fn compose_config_end_to_end_weighted_split_and_redirect_port() {
    let backends = [Backend::start("one").await, Backend::start("two").await, Backend::start("three").await];
    let mut config = std::fs::read_to_string(repo("deploy/compose/porter.yaml")).unwrap();
    for (from, to) in [
        ("0.0.0.0:8443", "127.0.0.1:0".to_string()),
        ("0.0.0.0:8080", "127.0.0.1:0".to_string()),
        ("127.0.0.1:9901", "127.0.0.1:0".to_string()),
        ("/var/lib/porter/certs", "certs".to_string()),
        ("http://backend-one:8080", backends[0].url()),
        ("http://backend-two:8080", backends[1].url()),
        ("http://backend-three:8080", backends[2].url()),
    ] {
        assert!(config.contains(from), "{from}");
        config = config.replace(from, &to);
    }
    let p = TestPorter::start(&config).await;

    let c = client_for(p.https.unwrap(), &["app.example"]);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..60 {
        let r = c.get(format!("https://app.example:{}/", p.https.unwrap().port())).send().await.unwrap();
        assert_eq!(r.status(), 200);
        *counts.entry(r.headers()["x-backend"].to_str().unwrap().to_string()).or_default() += 1;
    }
    let split = (counts["one"], counts["two"], counts["three"]);
    assert_eq!(split, (30, 20, 10), "weights 3:2:1 over 60 requests");

    let c = client_for(p.http.unwrap(), &["app.example"]);
    let r = c.get(format!("http://app.example:{}/cart?x=1", p.http.unwrap().port())).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "https://app.example/cart?x=1", "port 443 is left out");

    // The image's HEALTHCHECK command against this config's admin listener.
    let healthz = p.admin_url("/healthz");
    let probe = move || Command::new(env!("CARGO_BIN_EXE_porter")).args(["probe", &healthz]).output().unwrap();
    let out = tokio::task::spawn_blocking(probe).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    p.stop().await;
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(repo("deploy/systemd/porter.service")).unwrap();
    for needle in [
        "Type=notify\n",
        "ExecStartPre=/usr/local/bin/porter check --config /etc/porter/porter.yaml",
        "ExecStart=/usr/local/bin/porter --config /etc/porter/porter.yaml",
        "ExecReload=",
        // Sockets from porter.socket: no capability is needed for ports 80 and 443.
        "Requires=porter.socket",
        "Sockets=porter.socket",
        "CapabilityBoundingSet=\n",
        "systemctl kill --signal=SIGUSR2 --kill-whom=main porter",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "PrivateTmp=true",
        "User=porter",
    ] {
        assert!(unit.contains(needle), "porter.service lacks {needle}");
    }
    assert!(!unit.contains("AmbientCapabilities"), "porter.service grants a capability it no longer needs");
    let socket = std::fs::read_to_string(repo("deploy/systemd/porter.socket")).unwrap();
    assert!(socket.contains("[Socket]") && socket.contains("WantedBy=sockets.target"), "{socket}");

    // Every socket of the unit has its listener in the example configuration (else its
    // connections would wait for nobody): 443 and 80 on every address.
    let listens: Vec<&str> = socket.lines().filter_map(|l| l.strip_prefix("ListenStream=")).collect();
    assert_eq!(listens, ["443", "80"]);
    let example = std::fs::read_to_string(repo("examples/porter.yaml")).unwrap();
    for needle in ["https: \"0.0.0.0:443\"", "http: \"0.0.0.0:80\""] {
        assert!(example.contains(needle), "examples/porter.yaml lacks {needle}");
    }

    let Some(tool) = tool_or_skip("systemd-analyze", "Debian package systemd", "the unit check") else { return };
    // verify insists that ExecStart's binary exists: copies pointing at the built one,
    // side by side so that the service finds its socket unit.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("porter.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/porter", env!("CARGO_BIN_EXE_porter"))).unwrap();
    std::fs::write(dir.path().join("porter.socket"), &socket).unwrap();
    let out = Command::new(tool).arg("verify").arg(dir.path().join("porter.socket")).arg(&copy).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // Unknown settings and values are warnings with exit 0: any line naming a unit fails.
    let complaints: Vec<&str> =
        std::str::from_utf8(&out.stderr).unwrap().lines().filter(|l| l.contains("porter.s")).collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
}

#[test]
fn kubernetes_manifests_parse_and_the_configmap_checks_out() {
    let dir = repo("deploy/kubernetes");
    let mut by_kind: HashMap<String, Vec<Value>> = HashMap::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        for doc in yaml(&path) {
            let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("{name}: no kind")).to_string();
            by_kind.entry(kind).or_default().push(doc);
        }
        files.push(name);
    }
    // kustomization.yaml lists every other file.
    let kustomization = &by_kind["Kustomization"][0];
    let mut resources: Vec<&str> =
        kustomization["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    resources.push("kustomization.yaml");
    resources.sort();
    files.sort();
    assert_eq!(resources, files);

    let deployment = &by_kind["Deployment"][0];
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap() > 0);
    let mounts = container["volumeMounts"].to_string();
    assert!(mounts.contains("/etc/porter") && mounts.contains("/var/lib/porter/certs"), "{mounts}");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(volumes.contains("porter-config") && volumes.contains("porter-tls"), "{volumes}");

    let services = &by_kind["Service"];
    let public = services.iter().find(|s| s["spec"]["type"] == "LoadBalancer").expect("a LoadBalancer Service");
    assert_eq!(public["spec"]["externalTrafficPolicy"], "Local");
    let headless: Vec<&str> = services
        .iter()
        .filter(|s| s["spec"]["clusterIP"] == "None")
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();

    let configmap = by_kind["ConfigMap"].iter().find(|c| c["metadata"]["name"] == "porter-config").unwrap();
    let porter_yaml = configmap["data"]["porter.yaml"].as_str().unwrap();
    for name in &headless {
        assert!(porter_yaml.contains(&format!("http://{name}.")), "upstream by headless Service {name}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("porter.yaml");
    std::fs::write(&path, porter_yaml).unwrap();
    let out = porter_check(&path);
    assert!(out.status.success(), "{}", text(&out));
}

/// `rust-version` in Cargo.toml is at least every locked dependency's own
/// `rust-version` (CI also builds with exactly that toolchain, see .ci/run).
#[test]
fn rust_version_covers_every_locked_dependency() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(repo("."))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let version = |v: &str| -> (u32, u32, u32) {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    };
    let mut needed = ((0, 0, 0), String::new());
    let mut ours = None;
    for package in metadata["packages"].as_array().unwrap() {
        let Some(rust_version) = package["rust_version"].as_str() else { continue };
        if package["name"] == "porter" {
            ours = Some(version(rust_version));
        } else if version(rust_version) > needed.0 {
            needed = (version(rust_version), format!("{} {}", package["name"], package["version"]));
        }
    }
    let ours = ours.expect("Cargo.toml sets rust-version");
    assert!(ours >= needed.0, "rust-version {ours:?} is below {:?}, which {} needs", needed.0, needed.1);
}
