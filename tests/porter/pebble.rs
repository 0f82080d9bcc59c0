//! Debian's `pebble` ACME test server, with `pebble-challtestsrv` as its DNS
//! (answering 127.0.0.1 for every name), started per test on ephemeral
//! 127.0.0.1 ports and killed when the test ends. Shared by `acme.rs` (lego
//! through porter's webroot) and `acme_client.rs` (porter's own ACME client).
//!
//! The tools are Debian packages (`.ci/run` installs them): without them a
//! test is skipped loudly, except under `CI=true`, where it fails.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// The tools, or `None` (after a loud message) when the test must be skipped.
/// Under `CI=true` a missing tool is a failure, never a skip.
pub fn tools_or_skip(test: &str, tools: &[&str]) -> Option<()> {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| find_tool(t).is_none()).collect();
    if missing.is_empty() {
        return Some(());
    }
    let message = format!(
        "{test} needs {} (Debian packages `pebble` and `lego`: `apt-get install -y pebble lego`, as .ci/run does)",
        missing.join(", ")
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and missing tools: {message}");
    }
    eprintln!("\n!!!!!!!!!!\nSKIPPED: {test}: {message}\n!!!!!!!!!!\n");
    None
}

/// A port free on 127.0.0.1 right now (bound, read, released).
pub fn free_tcp_port() -> u16 {
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
pub struct Processes {
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

/// How to run pebble.
#[derive(Default)]
pub struct PebbleOptions {
    /// Where pebble fetches HTTP-01 challenges (porter's http listener).
    pub http_port: u16,
    /// Where pebble makes TLS-ALPN-01 handshakes (porter's https listener).
    pub tls_port: u16,
    /// Lifetime of issued certificates (pebble's default: 5 years).
    pub validity_secs: Option<u64>,
    /// PEBBLE_VA_ALWAYS_VALID: skip validation (only where it cannot reach the client).
    pub always_valid: bool,
}

/// A running pebble and its DNS.
pub struct Pebble {
    pub dir: tempfile::TempDir,
    pub acme_port: u16,
    pub mgmt_port: u16,
    /// The CA of pebble's HTTPS endpoints (for `acme.ca_file`).
    pub ca_pem: PathBuf,
    procs: Processes,
}

impl Pebble {
    pub async fn start(options: PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, cert_pem, key_pem) = pebble_tls(dir.path());
        let (acme_port, mgmt_port, dns_port, dns_mgmt_port) =
            (free_tcp_port(), free_tcp_port(), free_dns_port(), free_tcp_port());
        let http_port = if options.http_port == 0 { free_tcp_port() } else { options.http_port };
        let tls_port = if options.tls_port == 0 { free_tcp_port() } else { options.tls_port };
        let validity =
            options.validity_secs.map(|s| format!(",\n  \"certificateValidityPeriod\": {s}")).unwrap_or_default();
        let config = dir.path().join("pebble-config.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"pebble": {{
  "listenAddress": "127.0.0.1:{acme_port}",
  "managementListenAddress": "127.0.0.1:{mgmt_port}",
  "certificate": "{}",
  "privateKey": "{}",
  "httpPort": {http_port},
  "tlsPort": {tls_port},
  "ocspResponderURL": "",
  "externalAccountBindingRequired": false{validity}
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
        procs.spawn("pebble-challtestsrv", dns, dir.path().join("challtestsrv.log"));
        procs.wait_listening(([127, 0, 0, 1], dns_port).into()).await;

        let mut pebble = Command::new("pebble");
        pebble
            .arg("-config")
            .arg(&config)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0");
        if options.always_valid {
            pebble.env("PEBBLE_VA_ALWAYS_VALID", "1");
        } else {
            // The challenge must really be fetched from porter.
            pebble.env_remove("PEBBLE_VA_ALWAYS_VALID");
        }
        procs.spawn("pebble", pebble, dir.path().join("pebble.log"));
        procs.wait_listening(([127, 0, 0, 1], acme_port).into()).await;
        procs.wait_listening(([127, 0, 0, 1], mgmt_port).into()).await;
        Pebble { dir, acme_port, mgmt_port, ca_pem, procs }
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The root that signs what pebble issues (it makes a new one per run).
    pub async fn issuing_root(&self) -> reqwest::Certificate {
        let management = crate::harness::http_client()
            .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&self.ca_pem).unwrap()).unwrap())
            .no_proxy()
            .build()
            .unwrap();
        let root = management.get(format!("https://127.0.0.1:{}/roots/0", self.mgmt_port)).send().await.unwrap();
        assert_eq!(root.status(), 200);
        reqwest::Certificate::from_pem(&root.bytes().await.unwrap()).unwrap()
    }

    /// Every line of pebble's and its DNS's output, for failure messages.
    pub fn logs(&self) -> String {
        self.procs.logs()
    }

    /// pebble's own log: counts orders, validations, issuances.
    pub fn pebble_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}
