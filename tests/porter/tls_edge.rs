//! docs/configuration.md, Certificates and Routing (421), at the edge, end to end through a real
//! porter: live certificate reload under load (in-place rewrite, certbot's symlink swap, added,
//! removed), protocol versions (TLS 1.0/1.1 refused with a real OpenSSL client; `min_version:
//! "1.3"`), HSTS, the 421 rule with HTTP/2 connection coalescing, and the certs folder as users
//! fill it (certbot, lego, PKCS#1 and SEC1 keys from OpenSSL, broken files) including `porter
//! check`.
//!
//! The TLS helpers at the top are shared with `acme.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::harness::*;

// ---------------------------------------------------------------------------
// TLS client helpers
// ---------------------------------------------------------------------------

/// Accepts any server certificate (test certificates are self-signed or from
/// a throwaway CA): these tests check *which* certificate porter serves. The
/// handshake signature is still verified, so the key really matches.
#[derive(Debug)]
pub(crate) struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &signature_algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &signature_algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signature_algorithms().supported_schemes()
    }
}

/// The handshake signatures aws-lc-rs (porter's provider) verifies.
fn signature_algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
}

pub(crate) static TLS12_AND_13: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];

/// A rustls client config with the given versions and ALPN, trusting anything,
/// and with session resumption off: every handshake is a full one, so it shows
/// the certificate porter chooses *now* (a resumed session would not).
pub(crate) fn tls_config(versions: &[&'static SupportedProtocolVersion], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// TCP + TLS handshake to `addr` with SNI `sni`.
pub(crate) async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

/// The leaf certificate (DER) of an established TLS connection.
pub(crate) fn peer_leaf(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().expect("server sent certificates")[0].to_vec()
}

/// The leaf certificate porter serves for `sni` right now (a fresh full handshake).
pub(crate) async fn served_leaf(addr: SocketAddr, sni: &str) -> Vec<u8> {
    let tls = tls_connect(addr, sni, tls_config(&TLS12_AND_13, &[b"http/1.1"]))
        .await
        .unwrap_or_else(|e| panic!("TLS handshake for {sni}: {e}"));
    peer_leaf(&tls)
}

/// Polls (fresh handshakes every 50 ms) until porter serves `want` for `sni`,
/// or panics after `within`. Returns how long it took.
pub(crate) async fn wait_for_leaf(addr: SocketAddr, sni: &str, want: &[u8], within: Duration, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        if served_leaf(addr, sni).await == want {
            let took = start.elapsed();
            eprintln!("timing: {what}: served after {took:?}");
            return took;
        }
        assert!(start.elapsed() < within, "{what}: not served for SNI {sni} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The DER of the first certificate in a PEM file.
pub(crate) fn first_cert_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .next()
        .unwrap_or_else(|| panic!("no certificate in {}", path.display()))
        .unwrap()
        .to_vec()
}

/// An HTTP/1.1 keep-alive connection to porter over TLS, held open across changes.
struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    leaf: Vec<u8>,
    host: String,
}

impl KeepAlive {
    async fn open(addr: SocketAddr, sni: &str) -> KeepAlive {
        let tls = tls_connect(addr, sni, tls_config(&TLS12_AND_13, &[b"http/1.1"])).await.unwrap();
        let leaf = peer_leaf(&tls);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        KeepAlive { sender, leaf, host: format!("{sni}:{}", addr.port()) }
    }

    /// One GET on this very connection (hyper's http1 sender never reconnects).
    async fn get(&mut self, path: &str) -> u16 {
        self.sender.ready().await.expect("keep-alive connection still open");
        let request = hyper::Request::get(path).header("host", &self.host).body(Empty::new()).unwrap();
        let response = self.sender.send_request(request).await.expect("request on the kept-alive connection");
        let status = response.status().as_u16();
        response.into_body().collect().await.unwrap();
        status
    }
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A throwaway CA, so chains look like real ones (leaf + intermediate).
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new(cn: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// (fullchain PEM, key PEM, leaf DER) for `names`.
    fn issue(&self, names: &[&str]) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        (cert.pem() + &self.issuer.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// A self-signed certificate for `names` expiring `days` from now (rcgen `not_after`).
fn expiring_cert(dir: &Path, stem: &str, names: &[&str], days: u64) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + (now + Duration::from_secs(days * 86_400));
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    cert.der().to_vec()
}

fn write(path: &Path, text: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Runs `openssl ARGS`, asserting success; returns stdout.
fn openssl(args: &[&str]) -> String {
    let out =
        std::process::Command::new("openssl").args(args).stdin(Stdio::null()).output().expect("openssl installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A self-signed certificate for `name` made by OpenSSL with an existing key file.
fn openssl_cert(key: &Path, cert: &Path, name: &str) -> Vec<u8> {
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        &format!("/CN={name}"),
        "-days",
        "30",
        "-addext",
        &format!("subjectAltName=DNS:{name}"),
        "-out",
        cert.to_str().unwrap(),
    ]);
    first_cert_der(cert)
}

// ---------------------------------------------------------------------------
// Porter set-ups
// ---------------------------------------------------------------------------

fn config(extra: &str, backend: &Backend) -> String {
    format!(
        "{}{extra}upstreams:\n{}routes:\n  - upstream: web\n",
        listen_block(),
        upstream_block("web", &[(backend, 1)])
    )
}

async fn porter_with(dir: tempfile::TempDir, extra: &str) -> (TestPorter, Backend) {
    let backend = Backend::start("a").await;
    let yaml = config(extra, &backend);
    (TestPorter::start_in(dir, &yaml).await, backend)
}

fn certs_tempdir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    (dir, certs)
}

// ---------------------------------------------------------------------------
// 1. Live reload under load
// ---------------------------------------------------------------------------

/// What the client loops saw.
#[derive(Default)]
struct Seen {
    /// Leaf served to each fresh connection, in order, with when the request ended.
    fresh: Vec<(Instant, Vec<u8>)>,
    pooled: usize,
    failures: Vec<String>,
}

/// Two client loops against porter: one opens a new connection (and full
/// handshake) per request, one reuses a pooled HTTP/2 keep-alive connection.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, sni: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let url = format!("https://{sni}:{}/", addr.port());
        let mut tasks = Vec::new();
        {
            let (stop, seen, url, sni) = (stop.clone(), seen.clone(), url.clone(), sni.to_string());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    // A new client: a new connection and a full handshake (own session cache).
                    let client = client_for(addr, &[&sni]);
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            let tls = r.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
                            let leaf = tls.peer_certificate().unwrap().to_vec();
                            match r.bytes().await {
                                Ok(_) => seen.lock().unwrap().fresh.push((Instant::now(), leaf)),
                                Err(e) => seen.lock().unwrap().failures.push(format!("fresh body: {e:?}")),
                            }
                        }
                        Ok(r) => seen.lock().unwrap().failures.push(format!("fresh: status {}", r.status())),
                        Err(e) => seen.lock().unwrap().failures.push(format!("fresh: {e:?}")),
                    }
                }
            }));
        }
        {
            let (stop, seen, sni) = (stop.clone(), seen.clone(), sni.to_string());
            tasks.push(tokio::spawn(async move {
                let client = client_for(addr, &[&sni]);
                while !stop.load(Ordering::SeqCst) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 && r.version() == reqwest::Version::HTTP_2 => {
                            match r.bytes().await {
                                Ok(_) => seen.lock().unwrap().pooled += 1,
                                Err(e) => seen.lock().unwrap().failures.push(format!("pooled body: {e:?}")),
                            }
                        }
                        Ok(r) => {
                            seen.lock().unwrap().failures.push(format!("pooled: {} {:?}", r.status(), r.version()))
                        }
                        Err(e) => seen.lock().unwrap().failures.push(format!("pooled: {e:?}")),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        Load { stop, seen, tasks }
    }

    /// Waits until a fresh connection was served `want`; returns the time since `since`.
    async fn wait_for(&self, want: &[u8], since: Instant, within: Duration) -> Duration {
        loop {
            if let Some((at, _)) = self.seen.lock().unwrap().fresh.iter().find(|(at, leaf)| *at > since && leaf == want)
            {
                return *at - since;
            }
            assert!(since.elapsed() < within, "the new certificate was not served within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(self.seen).ok().unwrap().into_inner().unwrap()
    }
}

/// Runs load against `sni`, applies `swap` (which returns the new leaf DER) and
/// checks: every request succeeded, the new certificate reached new connections
/// within 5 s and never went back, and a keep-alive connection opened before
/// the swap still serves requests after it.
async fn reload_under_load(p: &TestPorter, sni: &str, old: &[u8], swap: impl FnOnce() -> Vec<u8>, what: &str) {
    let addr = p.https.unwrap();
    assert_eq!(served_leaf(addr, sni).await, old, "the old certificate is served before the swap");
    let mut kept = KeepAlive::open(addr, sni).await;
    assert_eq!(kept.get("/before").await, 200);

    let load = Load::start(addr, sni);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let swap_started = Instant::now();
    let new = swap();
    assert_ne!(new, old);
    let took = load.wait_for(&new, swap_started, Duration::from_secs(5)).await;
    eprintln!("timing: {what}: new certificate served to new connections {took:?} after the swap");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let seen = load.finish().await;

    assert!(seen.failures.is_empty(), "requests failed during the swap: {:?}", seen.failures);
    assert!(
        seen.fresh.len() >= 10 && seen.pooled >= 10,
        "too little load: {} fresh, {} pooled",
        seen.fresh.len(),
        seen.pooled
    );
    let first_new = seen.fresh.iter().position(|(_, leaf)| *leaf == new).unwrap();
    assert!(seen.fresh[..first_new].iter().all(|(_, leaf)| leaf == old), "only the old certificate before");
    assert!(seen.fresh[first_new..].iter().all(|(_, leaf)| *leaf == new), "the old certificate came back");
    eprintln!("load: {} fresh connections, {} pooled HTTP/2 requests, 0 failures", seen.fresh.len(), seen.pooled);

    // The connection opened before the swap carries on, with the certificate it was given.
    assert_eq!(kept.get("/after").await, 200);
    assert_eq!(kept.leaf, old);
    assert_eq!(served_leaf(addr, sni).await, new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_in_place_under_load() {
    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "default", &["other.example.com"]);
    let old = write_cert(&certs, "site.example.com", &["site.example.com"]);
    let (p, _b) = porter_with(dir, "").await;
    // Overwritten in place, certificate then key, like `cp` or a hand edit: the
    // scanner may see the new certificate with the old key in between.
    let swap = || write_cert(&certs, "site.example.com", &["site.example.com"]);
    reload_under_load(&p, "site.example.com", &old, swap, "in-place rewrite").await;
    p.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certbot_symlink_swap_under_load() {
    use std::os::unix::fs::symlink;
    let (dir, certs) = certs_tempdir();
    let ca = TestCa::new("porter test certbot CA");
    let le = certs.join("letsencrypt");
    let (archive, live) = (le.join("archive/site.example.com"), le.join("live/site.example.com"));
    let (chain, key, old) = ca.issue(&["site.example.com"]);
    write(&archive.join("fullchain1.pem"), chain);
    write(&archive.join("privkey1.pem"), key);
    std::fs::create_dir_all(&live).unwrap();
    for name in ["fullchain", "privkey"] {
        symlink(format!("../../archive/site.example.com/{name}1.pem"), live.join(format!("{name}.pem"))).unwrap();
    }
    write(&live.join("README"), "certbot's README\n");
    write_cert(&certs, "default", &["other.example.com"]);
    let (p, _b) = porter_with(dir, "").await;

    let swap = || {
        // What `certbot renew` does: new files in archive/, then each live/ link
        // replaced atomically (a new link renamed over the old one).
        let (chain, key, new) = ca.issue(&["site.example.com"]);
        write(&archive.join("fullchain2.pem"), chain);
        write(&archive.join("privkey2.pem"), key);
        for name in ["fullchain", "privkey"] {
            let tmp = live.join(format!("{name}.pem.new"));
            symlink(format!("../../archive/site.example.com/{name}2.pem"), &tmp).unwrap();
            std::fs::rename(&tmp, live.join(format!("{name}.pem"))).unwrap();
        }
        new
    };
    reload_under_load(&p, "site.example.com", &old, swap, "certbot symlink swap").await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_certificate_is_served_and_removed_one_is_not() {
    let (dir, certs) = certs_tempdir();
    let default = write_cert(&certs, "default", &["other.example.com"]);
    let (p, _b) = porter_with(dir, "").await;
    let addr = p.https.unwrap();
    assert_eq!(served_leaf(addr, "new.example.com").await, default);

    let new = write_cert(&certs, "new.example.com", &["new.example.com"]);
    wait_for_leaf(addr, "new.example.com", &new, Duration::from_secs(5), "added certificate").await;
    let mut kept = KeepAlive::open(addr, "new.example.com").await;
    assert_eq!(kept.leaf, new);
    assert_eq!(kept.get("/").await, 200);

    std::fs::remove_file(certs.join("new.example.com.crt")).unwrap();
    std::fs::remove_file(certs.join("new.example.com.key")).unwrap();
    wait_for_leaf(addr, "new.example.com", &default, Duration::from_secs(5), "removed certificate").await;
    // Removing the files does not drop connections made with them.
    assert_eq!(kept.get("/").await, 200);
    p.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Protocol versions
// ---------------------------------------------------------------------------

/// `openssl s_client` against porter with one protocol flag (`-tls1`, ...).
/// Returns (success, stdout + stderr). OpenSSL's security level is lowered to
/// 0 so that OpenSSL itself is willing to offer TLS 1.0/1.1: any refusal is
/// porter's.
pub(crate) async fn s_client(addr: SocketAddr, sni: &str, flag: &str) -> (bool, String) {
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-servername", sni, flag, "-cipher", "DEFAULT@SECLEVEL=0"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("s_client finished")
        .expect("openssl installed");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn tls_1_0_and_1_1_are_refused() {
    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "site.example.com", &["site.example.com"]);
    let (p, _b) = porter_with(dir, "").await;
    let addr = p.https.unwrap();
    for flag in ["-tls1", "-tls1_1"] {
        let (ok, text) = s_client(addr, "site.example.com", flag).await;
        assert!(!ok, "{flag} handshake succeeded:\n{text}");
        // The refusal is porter's: an alert came back from the server (OpenSSL
        // prints "SSL alert number N" only for alerts it received), and no
        // cipher was agreed.
        assert!(text.contains("SSL alert number"), "{flag}: no alert from porter:\n{text}");
        assert!(text.contains("Cipher is (NONE)"), "{flag}:\n{text}");
    }
    // The same client and flags otherwise work: 1.2 and 1.3 are accepted.
    for (flag, proto) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (ok, text) = s_client(addr, "site.example.com", flag).await;
        assert!(ok, "{flag} refused:\n{text}");
        assert!(text.contains(&format!("New, {proto}, Cipher is")), "{flag}:\n{text}");
    }
    p.stop().await;
}

#[tokio::test]
async fn min_version_1_3_refuses_tls_1_2() {
    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "site.example.com", &["site.example.com"]);
    let (p, _b) = porter_with(dir, "").await;
    let url = format!("https://site.example.com:{}/", p.https.unwrap().port());
    // Baseline: the default (1.2) accepts a TLS 1.2-only client.
    let tls12_client = || {
        http_client()
            .danger_accept_invalid_certs(true)
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .resolve("site.example.com", p.https.unwrap())
            .no_proxy()
            .build()
            .unwrap()
    };
    assert_eq!(tls12_client().get(&url).send().await.unwrap().status(), 200);
    p.stop().await;

    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "site.example.com", &["site.example.com"]);
    let (p, _b) = porter_with(dir, "  min_version: \"1.3\"\n").await;
    let addr = p.https.unwrap();
    let url = format!("https://site.example.com:{}/", addr.port());
    let tls12_client = http_client()
        .danger_accept_invalid_certs(true)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .resolve("site.example.com", addr)
        .no_proxy()
        .build()
        .unwrap();
    let err = tls12_client.get(&url).send().await.expect_err("a TLS 1.2-only client must be refused");
    assert!(err.is_connect(), "{err:?}");
    let rustls12 = tls_connect(addr, "site.example.com", tls_config(&[&rustls::version::TLS12], &[b"http/1.1"])).await;
    let err = rustls12.expect_err("TLS 1.2 handshake must fail");
    assert!(err.to_string().contains("ProtocolVersion"), "refused with a protocol_version alert: {err}");
    let (ok, text) = s_client(addr, "site.example.com", "-tls1_2").await;
    assert!(!ok && text.contains("SSL alert number"), "openssl -tls1_2:\n{text}");

    // TLS 1.3 works.
    let tls13 =
        tls_connect(addr, "site.example.com", tls_config(&[&rustls::version::TLS13], &[b"http/1.1"])).await.unwrap();
    assert_eq!(tls13.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    let r = client_for(addr, &["site.example.com"]).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (ok, text) = s_client(addr, "site.example.com", "-tls1_3").await;
    assert!(ok, "openssl -tls1_3:\n{text}");
    p.stop().await;
}

// ---------------------------------------------------------------------------
// 3. HSTS
// ---------------------------------------------------------------------------

#[tokio::test]
async fn hsts_on_https_only_and_only_when_set() {
    const HSTS: &str = "max-age=31536000; includeSubDomains";
    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "site.example.com", &["site.example.com"]);
    let extra = format!("  hsts: \"{HSTS}\"\nhttp:\n  redirect: false\n");
    let (p, _b) = porter_with(dir, &extra).await;
    let c = client_for(p.https.unwrap(), &["site.example.com"]);
    let https = format!("https://site.example.com:{}", p.https.unwrap().port());

    let r = c.get(format!("{https}/page")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.headers()["strict-transport-security"], HSTS);
    let r = c.get(format!("{https}/x")).version(reqwest::Version::HTTP_11).send().await.unwrap();
    assert_eq!(r.headers()["strict-transport-security"], HSTS, "HTTP/1.1 over TLS too");

    // Plaintext answers never carry it (RFC 6797 §7.2), proxied or not.
    let plain = client_for(p.http.unwrap(), &["site.example.com"]);
    let r = plain.get(format!("http://site.example.com:{}/page", p.http.unwrap().port())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("strict-transport-security").is_none(), "{:?}", r.headers());
    p.stop().await;

    // Redirecting plaintext listener: no HSTS on the redirect either.
    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "site.example.com", &["site.example.com"]);
    let (p, _b) = porter_with(dir, &format!("  hsts: \"{HSTS}\"\n")).await;
    let plain = client_for(p.http.unwrap(), &["site.example.com"]);
    let r = plain.get(format!("http://site.example.com:{}/page", p.http.unwrap().port())).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert!(r.headers().get("strict-transport-security").is_none());
    p.stop().await;

    // Not configured: absent on https.
    let (dir, certs) = certs_tempdir();
    write_cert(&certs, "site.example.com", &["site.example.com"]);
    let (p, _b) = porter_with(dir, "").await;
    let c = client_for(p.https.unwrap(), &["site.example.com"]);
    let r = c.get(format!("https://site.example.com:{}/page", p.https.unwrap().port())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("strict-transport-security").is_none());
    p.stop().await;
}

// ---------------------------------------------------------------------------
// 4. The 421 rule with HTTP/2 connection coalescing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn http2_coalescing_is_served_and_other_certificates_get_421() {
    let (dir, certs) = certs_tempdir();
    let ab = write_cert(&certs, "ab", &["a.example.com", "b.example.com"]);
    write_cert(&certs, "c.example.com", &["c.example.com"]);
    write_cert(&certs, "wild", &["*.w.example.com"]);
    let (p, backend) = porter_with(dir, "").await;
    let addr = p.https.unwrap();
    let port = addr.port();

    // One HTTP/2 connection with SNI a.example.com, as a browser opens it ...
    let tls = tls_connect(addr, "a.example.com", tls_config(&TLS12_AND_13, &[b"h2"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(peer_leaf(&tls), ab);
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let mut get = |authority: String| {
        let request = hyper::Request::get(format!("https://{authority}/who")).body(Empty::<Bytes>::new()).unwrap();
        let sent = h2.send_request(request);
        async move {
            let r = sent.await.unwrap();
            let status = r.status().as_u16();
            let body = String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
            (status, body)
        }
    };
    let (status, body) = get(format!("a.example.com:{port}")).await;
    assert_eq!(status, 200, "{body}");
    // ... then reused for b.example.com, which the same certificate covers: served.
    let (status, body) = get(format!("b.example.com:{port}")).await;
    assert_eq!(status, 200, "coalesced request refused: {body}");
    assert_eq!(echoed_header(&body, "host"), [format!("b.example.com:{port}")]);
    // c.example.com has a certificate of its own: 421, so the client reconnects with SNI c.
    let (status, _) = get(format!("c.example.com:{port}")).await;
    assert_eq!(status, 421);
    // The connection survives the 421 and keeps serving its own names.
    let (status, _) = get(format!("a.example.com:{port}")).await;
    assert_eq!(status, 200);
    assert_eq!(backend.requests(), 3, "the 421 never reached a backend");

    // Wildcard: one connection for x.w.example.com serves y.w.example.com.
    let tls = tls_connect(addr, "x.w.example.com", tls_config(&TLS12_AND_13, &[b"h2"])).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    for (host, want) in [("y.w.example.com", 200), ("a.example.com", 421)] {
        let request = hyper::Request::get(format!("https://{host}:{port}/")).body(Empty::<Bytes>::new()).unwrap();
        assert_eq!(h2.send_request(request).await.unwrap().status(), want, "{host} on SNI x.w.example.com");
    }
    p.stop().await;
}

// ---------------------------------------------------------------------------
// 5. The certs folder as users fill it; `porter check`
// ---------------------------------------------------------------------------

#[cfg(unix)]
#[tokio::test]
async fn every_layout_and_key_format_end_to_end() {
    use std::os::unix::fs::symlink;
    let (dir, certs) = certs_tempdir();
    let ca = TestCa::new("porter test CA");

    // certbot: live/DOMAIN/*.pem symlinked into archive/DOMAIN/*N.pem.
    let le = certs.join("letsencrypt");
    let (chain, key, certbot) = ca.issue(&["certbot.example.com"]);
    let archive = le.join("archive/certbot.example.com");
    write(&archive.join("fullchain1.pem"), &chain);
    write(&archive.join("privkey1.pem"), key);
    write(&archive.join("cert1.pem"), chain.split_inclusive("-----END CERTIFICATE-----").next().unwrap());
    write(&archive.join("chain1.pem"), ca.issuer.pem());
    let live = le.join("live/certbot.example.com");
    std::fs::create_dir_all(&live).unwrap();
    for name in ["fullchain", "privkey", "cert", "chain"] {
        symlink(format!("../../archive/certbot.example.com/{name}1.pem"), live.join(format!("{name}.pem"))).unwrap();
    }
    write(&le.join("live/README"), "This directory contains your keys and certificates.\n");

    // lego: certificates/DOMAIN.crt (bundle) + .key + .issuer.crt + .json.
    let lego = certs.join("lego/certificates");
    let (chain, key, lego_der) = ca.issue(&["lego.example.com"]);
    write(&lego.join("lego.example.com.crt"), chain);
    write(&lego.join("lego.example.com.key"), key);
    write(&lego.join("lego.example.com.issuer.crt"), ca.issuer.pem());
    write(&lego.join("lego.example.com.json"), "{\"domain\": \"lego.example.com\"}\n");
    // lego names a wildcard certificate `_.DOMAIN`; exact names still beat it.
    let (chain, key, wildcard) = ca.issue(&["*.example.com"]);
    write(&lego.join("_.example.com.crt"), chain);
    write(&lego.join("_.example.com.key"), key);

    // PKCS#1 RSA key and SEC1 EC key, made by OpenSSL as users make them.
    let rsa_key = certs.join("rsa.example.com.key");
    write(&rsa_key, openssl(&["genrsa", "-traditional", "2048"]));
    assert!(std::fs::read_to_string(&rsa_key).unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let rsa = openssl_cert(&rsa_key, &certs.join("rsa.example.com.crt"), "rsa.example.com");
    let ec_key = certs.join("ec.example.com.key");
    write(&ec_key, openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout"]));
    assert!(std::fs::read_to_string(&ec_key).unwrap().starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let ec = openssl_cert(&ec_key, &certs.join("ec.example.com.crt"), "ec.example.com");

    // Expiring in 3 days, a key that belongs to another certificate, a corrupt file.
    let soon = expiring_cert(&certs, "soon.example.com", &["soon.example.com"], 3);
    let default = write_cert(&certs, "default", &["default.example.com"]);
    let mismatch = write_cert(&certs, "mismatch", &["mismatch.example.net"]);
    write_cert(&certs, "other", &["other.example.com"]);
    std::fs::copy(certs.join("other.key"), certs.join("mismatch.key")).unwrap();
    std::fs::remove_file(certs.join("other.crt")).unwrap();
    std::fs::remove_file(certs.join("other.key")).unwrap();
    write(&certs.join("corrupt.crt"), "-----BEGIN CERTIFICATE-----\nMIIB!!not base64!!\n-----END CERTIFICATE-----\n");
    write(&certs.join("corrupt.key"), "garbage\n");

    let (p, _b) = porter_with(dir, "").await;
    let addr = p.https.unwrap();
    for (sni, want) in [
        ("certbot.example.com", &certbot),
        ("lego.example.com", &lego_der),
        ("anything.example.com", &wildcard),
        ("rsa.example.com", &rsa),
        ("ec.example.com", &ec),
        ("soon.example.com", &soon),
        ("default.example.com", &default),
        ("mismatch.example.net", &default),
        ("unknown.example.org", &default),
    ] {
        assert_eq!(&served_leaf(addr, sni).await, want, "certificate for SNI {sni}");
        let r = client_for(addr, &[sni]).get(format!("https://{sni}:{}/", addr.port())).send().await.unwrap();
        assert_eq!(r.status(), 200, "{sni}");
    }
    assert_ne!(mismatch, default);

    // `porter check`: each certificate with names, issuer, expiry; the mismatch
    // names both files; the corrupt file is named; exit 1.
    let config_path = p.dir.path().join("porter.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_porter"))
        .arg("check")
        .arg("--config")
        .arg(&config_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    let line = |needle: &str| -> &str {
        stdout.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle}:\n{stdout}"))
    };
    let errors: Vec<&str> = stdout.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 2, "{stdout}");
    let mismatch_line = line("does not match");
    assert!(mismatch_line.contains("ERROR"), "{mismatch_line}");
    assert!(mismatch_line.contains("mismatch.key") && mismatch_line.contains("mismatch.crt"), "{mismatch_line}");
    assert!(line("corrupt.").contains("ERROR"), "{stdout}");
    for (name, issuer) in [
        ("certbot.example.com", "CN=porter test CA"),
        ("lego.example.com", "CN=porter test CA"),
        ("*.example.com", "CN=porter test CA"),
        ("rsa.example.com", "CN=rsa.example.com"),
        ("ec.example.com", "CN=ec.example.com"),
        ("soon.example.com", "issuer: "),
        ("default.example.com", "issuer: "),
    ] {
        let l = line(&format!(": {name}"));
        assert!(l.contains(&format!("issuer: {}", issuer.trim_start_matches("issuer: "))), "{l}");
        assert!(l.contains(" | expires "), "{l}");
        if name == "soon.example.com" {
            assert!(l.contains("EXPIRES IN 2 DAYS") || l.contains("EXPIRES IN 3 DAYS"), "{l}");
        } else {
            assert!(!l.contains("EXPIRES IN"), "{l}");
        }
    }
    p.stop().await;
}
