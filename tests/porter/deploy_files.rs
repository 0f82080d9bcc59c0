//! docs/deploy.md: the deployment files in the repository are real and consistent.
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
    assert_eq!(ports, ["80:8080", "443:8443", "443:8443/udp"], "HTTP/3 on UDP too");
    let volumes = porter["volumes"].to_string();
    assert!(volumes.contains("./deploy/compose/porter.yaml:/etc/porter/porter.yaml:ro"), "{volumes}");
    assert!(volumes.contains("./certs:/var/lib/porter/certs"), "{volumes}");
    let backends = ["backend-one", "backend-two", "backend-three"];
    for name in backends {
        assert!(compose["services"][name]["image"].is_string(), "service {name}");
    }
    // Hardened: nothing to write but the certs volume, no capabilities, no privilege gain.
    assert_eq!(porter["read_only"], true);
    assert_eq!(porter["cap_drop"][0], "ALL");
    assert_eq!(porter["security_opt"][0], "no-new-privileges:true");
    assert_eq!(compose["services"]["certbot"]["profiles"][0], "certbot", "certbot is optional");
    assert_eq!(compose["services"]["certbot"]["volumes"][0], porter["volumes"][1], "the same certs folder");

    // The porter config matches: container ports, certs volume, the three backends.
    let config = std::fs::read_to_string(repo("deploy/compose/porter.yaml")).unwrap();
    for needle in
        ["\"0.0.0.0:8443\"", "\"0.0.0.0:8080\"", "redirect_port: 443", "\"/var/lib/porter/certs\"", "http3: true"]
    {
        assert!(config.contains(needle), "deploy/compose/porter.yaml lacks {needle}");
    }
    // Certificates by default from porter's own ACME client.
    let parsed = yaml(&repo("deploy/compose/porter.yaml")).remove(0);
    assert!(parsed["acme"]["email"].is_string(), "an acme: block with a contact");
    assert!(!parsed["acme"]["domains"].as_array().unwrap().is_empty(), "acme: names the domains");
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
    // Without its acme: block: no CA is reachable from a test (the certificate is the
    // self-signed fallback).
    let acme = config.find("\nacme:\n").expect("an acme: block") + 1;
    let acme_end = acme + config[acme..].find("\n\n").unwrap();
    config.replace_range(acme..acme_end, "");
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

/// Every manifest in `dir` (not its porter.yaml, not subfolders), by kind, and the file names.
fn manifests(dir: &Path) -> (HashMap<String, Vec<Value>>, Vec<String>) {
    let mut by_kind: HashMap<String, Vec<Value>> = HashMap::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if path.is_dir() || name == "porter.yaml" {
            continue;
        }
        for doc in yaml(&path) {
            let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("{name}: no kind")).to_string();
            by_kind.entry(kind).or_default().push(doc);
        }
        files.push(name);
    }
    files.sort();
    (by_kind, files)
}

fn strings(list: &Value) -> Vec<&str> {
    let mut v: Vec<&str> = list.as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    v.sort();
    v
}

/// The recommended labels (kubernetes.io/docs/concepts/overview/working-with-objects/common-labels).
fn assert_recommended_labels(what: &str, labels: &Value) {
    for key in ["name", "instance", "version", "component", "part-of", "managed-by"] {
        let key = format!("app.kubernetes.io/{key}");
        assert!(labels[&key].is_string(), "{what} lacks the label {key}: {labels}");
    }
    assert_eq!(labels["app.kubernetes.io/name"], "porter", "{what}");
}

#[test]
fn kubernetes_manifests_parse_and_the_config_checks_out() {
    let dir = repo("deploy/kubernetes");
    let (by_kind, files) = manifests(&dir);
    // kustomization.yaml lists every other file; porter.yaml through the configMapGenerator.
    let kustomization = &by_kind["Kustomization"][0];
    let mut listed = strings(&kustomization["resources"]);
    listed.push("kustomization.yaml");
    listed.sort();
    assert_eq!(listed, files);
    let generator = &kustomization["configMapGenerator"][0];
    assert_eq!(generator["name"], "porter-config");
    assert_eq!(strings(&generator["files"]), ["porter.yaml"], "the config comes from porter.yaml");
    assert!(generator["options"]["disableNameSuffixHash"] != true, "the hash suffix rolls the pods");
    assert!(!by_kind.contains_key("ConfigMap"), "a plain ConfigMap would not roll the pods on a change");

    let deployment = &by_kind["Deployment"][0];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_recommended_labels("the Deployment", &deployment["metadata"]["labels"]);
    let template = &deployment["spec"]["template"];
    assert_recommended_labels("the pod template", &template["metadata"]["labels"]);
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    for (key, value) in selector.as_object().unwrap() {
        assert_eq!(&template["metadata"]["labels"][key], value, "the selector matches the pods");
    }
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9901");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let pod = &template["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false, "porter does not use the API");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    assert!(args.contains(&"--watch"), "config edits apply in place: {args:?}");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez", "a draining pod is alive");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz", "a draining pod is not ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
    assert!(container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap() > 0);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    let mounts = container["volumeMounts"].to_string();
    assert!(mounts.contains("/etc/porter") && mounts.contains("/var/lib/porter/certs"), "{mounts}");
    let volumes = pod["volumes"].as_array().unwrap();
    let config_volume = volumes.iter().find(|v| v["configMap"].is_object()).unwrap();
    assert_eq!(config_volume["configMap"]["name"], "porter-config", "kustomize renames it to the generated one");
    let secret = volumes.iter().find(|v| v["secret"].is_object()).unwrap()["secret"]["secretName"].clone();
    assert_eq!(secret, "porter-tls");

    // A drain leaves one pod serving.
    let pdb = &by_kind["PodDisruptionBudget"][0];
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);

    // The admin port is reachable only from the monitoring namespace; http and https from anywhere.
    let policy = &by_kind["NetworkPolicy"][0];
    assert_eq!(&policy["spec"]["podSelector"]["matchLabels"], selector);
    assert_eq!(strings(&policy["spec"]["policyTypes"]), ["Ingress"]);
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    for rule in rules {
        let ports: Vec<&str> = rule["ports"].as_array().unwrap().iter().map(|p| p["port"].as_str().unwrap()).collect();
        if ports.contains(&"admin") {
            assert_eq!(ports, ["admin"], "the admin port has a rule of its own");
            assert!(rule["from"].as_array().is_some_and(|f| !f.is_empty()), "the admin port is not open to all");
        }
    }
    let admin_rules = rules.iter().filter(|r| r["ports"].to_string().contains("admin")).count();
    assert_eq!(admin_rules, 1, "one rule admits the admin port");

    let services = &by_kind["Service"];
    let public = services.iter().find(|s| s["spec"]["type"] == "LoadBalancer").expect("a LoadBalancer Service");
    assert_eq!(public["spec"]["externalTrafficPolicy"], "Local");
    assert_recommended_labels("the Service", &public["metadata"]["labels"]);
    assert!(!public["spec"]["ports"].to_string().contains("admin"), "the Service does not publish the admin port");
    let udp: Vec<&Value> =
        public["spec"]["ports"].as_array().unwrap().iter().filter(|p| p["protocol"] == "UDP").collect();
    assert_eq!(udp.len(), 1, "HTTP/3: UDP 443 published");
    assert_eq!((udp[0]["port"].as_u64(), udp[0]["targetPort"].as_str()), (Some(443), Some("h3")));
    let container_ports = container["ports"].to_string();
    assert!(container_ports.contains("\"h3\"") && container_ports.contains("UDP"), "{container_ports}");
    let headless: Vec<&str> = services
        .iter()
        .filter(|s| s["spec"]["clusterIP"] == "None")
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();

    let porter_yaml = std::fs::read_to_string(dir.join("porter.yaml")).unwrap();
    for name in &headless {
        assert!(porter_yaml.contains(&format!("http://{name}.")), "upstream by headless Service {name}");
    }
    assert!(porter_yaml.contains("admin: \"0.0.0.0:9901\""), "the probes reach the admin listener");
    let out = porter_check(&dir.join("porter.yaml"));
    assert!(out.status.success(), "{}", text(&out));

    // cert-manager: this folder plus a Certificate writing the Secret the Deployment mounts.
    let (cm_kinds, cm_files) = manifests(&dir.join("cert-manager"));
    let cm_kustomization = &cm_kinds["Kustomization"][0];
    let mut cm_listed = strings(&cm_kustomization["resources"]);
    assert!(cm_listed.contains(&"../"), "the overlay includes the base");
    cm_listed.retain(|r| *r != "../");
    cm_listed.push("kustomization.yaml");
    cm_listed.sort();
    assert_eq!(cm_listed, cm_files);
    let certificate = &cm_kinds["Certificate"][0];
    assert_eq!(certificate["apiVersion"], "cert-manager.io/v1");
    assert_eq!(certificate["spec"]["secretName"], secret, "cert-manager writes the mounted Secret");
    let issuer = &certificate["spec"]["issuerRef"];
    let issuers = &cm_kinds[issuer["kind"].as_str().unwrap()];
    assert!(issuers.iter().any(|i| i["metadata"]["name"] == issuer["name"]), "the issuer is in the example");
    for name in certificate["spec"]["dnsNames"].as_array().unwrap() {
        assert!(porter_yaml.contains(&format!("host: {name}")), "porter routes {name}");
    }
}

/// What the kubelet's atomic writer does to a Secret volume (cert-manager's
/// Secret mounted at certs/): the files go into a new hidden timestamped
/// folder, a `..data_tmp` link to it is renamed over `..data`, the visible
/// names are links through `..data`, and the old folder is removed.
fn secret_volume_update(dir: &Path, stamp: &str, files: &[(&str, &[u8])]) {
    use std::os::unix::fs::symlink;
    let data = format!("..{stamp}");
    std::fs::create_dir_all(dir.join(&data)).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(&data).join(name), bytes).unwrap();
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    symlink(&data, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for (name, _) in files {
        if std::fs::symlink_metadata(dir.join(name)).is_err() {
            symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

/// A certificate and key as a `kubernetes.io/tls` Secret holds them, and the DER served.
fn tls_secret(names: &[&str]) -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

#[tokio::test]
async fn a_renewed_cert_manager_secret_is_served_after_the_kubelets_data_swap() {
    let backend = Backend::start("web").await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, _, _) = tls_secret(&["issuer.example"]);
    let (crt, key, first) = tls_secret(&["example.com", "www.example.com"]);
    // cert-manager's Secret: tls.crt, tls.key and (for some issuers) ca.crt.
    let files = [("tls.crt", crt.as_bytes()), ("tls.key", key.as_bytes()), ("ca.crt", ca.as_bytes())];
    secret_volume_update(&certs, "2026_12_06_05_00_00.000000001", &files);
    let p = TestPorter::start_in(dir, &proxy_yaml(&[(&backend, 1)])).await;

    let https = p.https.unwrap();
    let c = client_for(https, &["example.com"]);
    let served = || async {
        let r = c.get(format!("https://example.com:{}/", https.port())).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.extensions().get::<reqwest::tls::TlsInfo>().unwrap().peer_certificate().unwrap().to_vec()
    };
    assert_eq!(served().await, first, "the Secret's tls.crt + tls.key are served");

    // The renewal: a new key and certificate, swapped in as the kubelet does.
    let (crt, key, second) = tls_secret(&["example.com", "www.example.com"]);
    let files = [("tls.crt", crt.as_bytes()), ("tls.key", key.as_bytes()), ("ca.crt", ca.as_bytes())];
    secret_volume_update(&certs, "2026_12_06_06_00_00.000000002", &files);
    assert_eq!(std::fs::read_dir(&certs).unwrap().count(), 5, "..data, one timestamped folder, three links");
    // A changed certificate is served within 5 s (slack for a loaded machine).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        // A new client per try: a new handshake, not a pooled connection.
        let c = client_for(https, &["example.com"]);
        let r = c.get(format!("https://example.com:{}/", https.port())).send().await.unwrap();
        let der = r.extensions().get::<reqwest::tls::TlsInfo>().unwrap().peer_certificate().unwrap().to_vec();
        if der == second {
            break;
        }
        assert_eq!(der, first, "only the old or the new certificate");
        assert!(std::time::Instant::now() < deadline, "the renewed certificate was never served");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    p.stop().await;
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
