//! SPEC §3 `http.acme_webroot`, §4: a real ACME issuance end to end. Debian's
//! `pebble` ACME test server (with `pebble-challtestsrv` as its DNS, answering
//! 127.0.0.1 for every name) and Debian's `lego` client in `--http.webroot`
//! mode issue a certificate for `porter-test.example`: pebble validates the
//! HTTP-01 challenge by fetching it from porter's plaintext listener, lego
//! writes the certificate into porter's `certs/` folder (its own
//! `certificates/` layout), and porter serves it for that SNI within 5 s,
//! without a restart.
//!
//! Needs the Debian packages `pebble` and `lego` (`.ci/run` installs them).
//! Without them the test is skipped loudly, except under `CI=true`, where it fails.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::tls_edge::{first_cert_der, served_leaf, wait_for_leaf};

const DOMAIN: &str = "porter-test.example";
const TOOLS: [&str; 3] = ["pebble", "pebble-challtestsrv", "lego"];

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// The tools, or `None` (after a loud message) when the test must be skipped.
/// Under `CI=true` a missing tool is a failure, never a skip.
fn tools_or_skip() -> Option<()> {
    let missing: Vec<&str> = TOOLS.into_iter().filter(|t| find_tool(t).is_none()).collect();
    if missing.is_empty() {
        return Some(());
    }
    let message = format!(
        "the ACME end-to-end test needs {} (Debian packages `pebble` and `lego`: `apt-get install -y pebble lego`, \
         as .ci/run does)",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and missing tools: {message}");
    }
    eprintln!("\n!!!!!!!!!!\nSKIPPED: acme::real_issuance_through_porter: {message}\n!!!!!!!!!!\n");
    None
}

/// A port free on 127.0.0.1 right now (bound, read, released).
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A port free for both UDP and TCP (DNS listens on both).
fn free_dns_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Child processes killed (and reaped) when the test ends, however it ends.
struct Processes {
    children: Vec<(&'static str, Child, PathBuf)>,
}

impl Processes {
    /// Starts `cmd` with its output in `log`, proxies unset (every connection here is local).
    fn spawn(&mut self, name: &'static str, mut cmd: Command, log: PathBuf) {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
            cmd.env_remove(var);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.children.push((name, child, log));
    }

    /// Waits until `addr` accepts TCP connections, failing early if a process died.
    async fn wait_listening(&mut self, addr: SocketAddr) {
        let start = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            for (name, child, log) in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("{name} exited ({status}):\n{}", std::fs::read_to_string(log).unwrap_or_default());
                }
            }
            assert!(start.elapsed() < Duration::from_secs(20), "nothing listening on {addr} after 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        self.children
            .iter()
            .map(|(name, _, log)| format!("--- {name}:\n{}", std::fs::read_to_string(log).unwrap_or_default()))
            .collect()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A throwaway CA and a certificate for localhost/127.0.0.1 signed by it, for
/// pebble's own HTTPS endpoints (Debian's package ships no test certificate).
/// Returns the CA's PEM path, which the ACME client is told to trust.
fn pebble_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "porter test: pebble's TLS CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &*ca).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_issuance_through_porter() {
    if tools_or_skip().is_none() {
        return;
    }
    let test_start = Instant::now();

    // porter: plaintext listener on a known port (pebble's `httpPort` must be
    // it), webroot inside the certs folder (hidden, so never scanned), redirects on.
    let backend = Backend::start("a").await;
    let http_port = free_tcp_port();
    let yaml = format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:{http_port}\"\ntls:\n  certs: certs\n\
         http:\n  redirect: true\n  acme_webroot: certs/.acme\nupstreams:\n{}routes:\n  - upstream: web\n",
        upstream_block("web", &[(&backend, 1)])
    );
    let p = TestPorter::start(&yaml).await;
    let https = p.https.unwrap();
    let certs = p.certs_dir();
    let webroot = certs.join(".acme");
    std::fs::create_dir_all(&webroot).unwrap();
    let before = served_leaf(https, DOMAIN).await; // the generated self-signed fallback

    // pebble and its DNS, on 127.0.0.1 only.
    let work = tempfile::tempdir().unwrap();
    let (ca_pem, cert_pem, key_pem) = pebble_tls(work.path());
    let (acme_port, mgmt_port, tls_port, dns_port, dns_mgmt_port) =
        (free_tcp_port(), free_tcp_port(), free_tcp_port(), free_dns_port(), free_tcp_port());
    let pebble_config = work.path().join("pebble-config.json");
    std::fs::write(
        &pebble_config,
        format!(
            r#"{{"pebble": {{
  "listenAddress": "127.0.0.1:{acme_port}",
  "managementListenAddress": "127.0.0.1:{mgmt_port}",
  "certificate": "{}",
  "privateKey": "{}",
  "httpPort": {http_port},
  "tlsPort": {tls_port},
  "ocspResponderURL": "",
  "externalAccountBindingRequired": false
}}}}"#,
            cert_pem.display(),
            key_pem.display()
        ),
    )
    .unwrap();
    let mut procs = Processes { children: Vec::new() };
    let mut dns = Command::new("pebble-challtestsrv");
    // DNS only: A queries get 127.0.0.1 (the default), no AAAA, no challenge servers of its own.
    dns.args(["-dns01", &format!("127.0.0.1:{dns_port}"), "-management", &format!("127.0.0.1:{dns_mgmt_port}")])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv6", ""]);
    procs.spawn("pebble-challtestsrv", dns, work.path().join("challtestsrv.log"));
    procs.wait_listening(([127, 0, 0, 1], dns_port).into()).await;

    let mut pebble = Command::new("pebble");
    pebble
        .arg("-config")
        .arg(&pebble_config)
        .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        // The challenge must really be fetched from porter.
        .env_remove("PEBBLE_VA_ALWAYS_VALID");
    procs.spawn("pebble", pebble, work.path().join("pebble.log"));
    procs.wait_listening(([127, 0, 0, 1], acme_port).into()).await;
    procs.wait_listening(([127, 0, 0, 1], mgmt_port).into()).await;
    eprintln!("timing: porter, pebble and its DNS up after {:?}", test_start.elapsed());

    // lego, as an operator runs it: webroot = porter's acme_webroot, and its
    // output folder inside porter's certs folder.
    let lego_path = certs.join("lego");
    let mut lego = tokio::process::Command::new("lego");
    lego.args(["--server", &format!("https://127.0.0.1:{acme_port}/dir")])
        .args(["--email", &format!("admin@{DOMAIN}"), "--accept-tos", "--domains", DOMAIN, "--key-type", "ec256"])
        .arg("--http")
        .arg("--http.webroot")
        .arg(&webroot)
        .arg("--path")
        .arg(&lego_path)
        .arg("run")
        .env("LEGO_CA_CERTIFICATES", &ca_pem)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        lego.env_remove(var);
    }
    let issuing = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(180), lego.output())
        .await
        .unwrap_or_else(|_| panic!("lego did not finish within 180 s\n{}", procs.logs()))
        .expect("lego runs");
    let issued_at = Instant::now();
    let lego_log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "lego failed:\n{lego_log}\n{}", procs.logs());
    eprintln!("timing: issuance (lego run, HTTP-01 through porter) took {:?}", issued_at - issuing);
    assert!(lego_log.contains("The server validated our request"), "{lego_log}");

    // The certificate landed in porter's folder in lego's layout ...
    let crt = lego_path.join(format!("certificates/{DOMAIN}.crt"));
    let key = std::fs::read_to_string(lego_path.join(format!("certificates/{DOMAIN}.key"))).unwrap();
    assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----"), "lego writes SEC1 keys: {key}");
    let issued = first_cert_der(&crt);
    assert_ne!(issued, before);
    let (_, parsed) = x509_parser::parse_x509_certificate(&issued).unwrap();
    assert!(parsed.issuer().to_string().contains("Pebble"), "issued by pebble: {}", parsed.issuer());

    // ... and porter serves it for that SNI within 5 s, without a restart.
    wait_for_leaf(https, DOMAIN, &issued, Duration::from_secs(5), "certificate issued by lego").await;
    eprintln!("timing: porter served the issued certificate {:?} after lego exited", issued_at.elapsed());

    // A client that trusts only pebble's root accepts the chain porter serves.
    let management = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca_pem).unwrap()).unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let root = management.get(format!("https://127.0.0.1:{mgmt_port}/roots/0")).send().await.unwrap();
    assert_eq!(root.status(), 200);
    let root = reqwest::Certificate::from_pem(&root.bytes().await.unwrap()).unwrap();
    let strict = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .resolve(DOMAIN, https)
        .no_proxy()
        .build()
        .unwrap();
    let r = strict.get(format!("https://{DOMAIN}:{}/hello", https.port())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with("a GET /hello"));

    // The webroot answered only challenges: everything else on port 80 redirects,
    // and a finished challenge (lego cleans up) is gone.
    let plain = client_for(p.http.unwrap(), &[DOMAIN]);
    let base = format!("http://{DOMAIN}:{http_port}");
    let r = plain.get(format!("{base}/hello")).send().await.unwrap();
    assert_eq!(r.status(), 301);
    let r = plain.get(format!("{base}/.well-known/acme-challenge/gone-token")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    p.stop().await;
    drop(procs);
    eprintln!("timing: whole ACME test {:?}", test_start.elapsed());
}
