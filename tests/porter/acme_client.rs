//! docs/deploy.md, Automatic HTTPS: `acme:`, porter's own ACME client against a real CA (Debian's
//! pebble, started by `pebble.rs`; no certbot, no lego). pebble validates
//! through porter itself: HTTP-01 on the http listener, TLS-ALPN-01 on the
//! https listener. Covered: issuance served to a client trusting only pebble's
//! root, lego's file layout, a restart that serves at once and orders nothing,
//! renewal of a short-lived certificate without restart or dropped connection,
//! a failing CA (old certificate kept, backoff spacing, recovery), and two
//! instances on one folder ordering once per name.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use porter::{AcmeStatus, NameState};

use crate::harness::*;
use crate::pebble::{free_tcp_port, tools_or_skip, Pebble, PebbleOptions};
use crate::tls_client::{first_cert_der, peer_leaf, served_leaf, tls_config, tls_connect, wait_for_leaf, TLS12_AND_13};

const TOOLS: [&str; 2] = ["pebble", "pebble-challtestsrv"];

/// `listen` block + `acme:` for `hosts` (routed to `backend`) against `pebble`.
fn yaml(listen: &str, certs: &str, pebble: &Pebble, challenge: &str, hosts: &[&str], backend: &Backend) -> String {
    let mut routes = String::new();
    for host in hosts {
        routes.push_str(&format!("  - host: {host}\n    upstream: web\n"));
    }
    format!(
        "listen:\n{listen}tls:\n  certs: {certs}\nacme:\n  email: ops@porter-test.example\n  directory: {}\n  \
         ca_file: {}\n  challenge: {challenge}\nupstreams:\n{}routes:\n{routes}",
        pebble.directory(),
        pebble.ca_pem.display(),
        upstream_block("web", &[(backend, 1)])
    )
}

/// Waits until porter has written `n` certificates; panics with the state and pebble's log otherwise.
async fn wait_issued(porter: &porter::Porter, n: u64, within: Duration, pebble: &Pebble) -> AcmeStatus {
    let start = Instant::now();
    loop {
        let status = porter.acme_status();
        if status.issued >= n {
            eprintln!("timing: {n} certificate(s) issued after {:?}", start.elapsed());
            return status;
        }
        if start.elapsed() > within {
            panic!("not {n} certificate(s) within {within:?}: {status:#?}\n{}", pebble.logs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that trusts only pebble's issuing root, sending `domain` to `https`.
async fn strict_client(pebble: &Pebble, domain: &str, https: SocketAddr) -> reqwest::Client {
    http_client()
        .tls_built_in_root_certs(false)
        .add_root_certificate(pebble.issuing_root().await)
        .resolve(domain, https)
        .no_proxy()
        .build()
        .unwrap()
}

fn assert_lego_layout(certs: &Path, domain: &str) {
    for ext in ["crt", "key", "issuer.crt", "json"] {
        let file = certs.join(format!("certificates/{domain}.{ext}"));
        assert!(file.is_file(), "{} missing", file.display());
    }
    let key = std::fs::read_to_string(certs.join(format!("certificates/{domain}.key"))).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    let chain = std::fs::read_to_string(certs.join(format!("certificates/{domain}.crt"))).unwrap();
    assert!(chain.matches("BEGIN CERTIFICATE").count() >= 2, "full chain expected: {chain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issuance_is_served_and_survives_a_restart() {
    if tools_or_skip("acme_client::http01_issuance_is_served_and_survives_a_restart", &TOOLS).is_none() {
        return;
    }
    const DOMAIN: &str = "http01.porter-test.example";
    let backend = Backend::start("a").await;
    let http_port = free_tcp_port();
    let pebble = Pebble::start(PebbleOptions { http_port, ..Default::default() }).await;
    let listen = format!("  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:{http_port}\"\n  admin: \"127.0.0.1:0\"\n");
    let config = yaml(&listen, "certs", &pebble, "http-01", &[DOMAIN], &backend);
    let p = TestPorter::start(&config).await;
    let https = p.https.unwrap();

    let status = wait_issued(p.porter(), 1, Duration::from_secs(60), &pebble).await;
    assert_eq!((status.attempts, status.failed), (1, 0), "{status:#?}");
    let certs = p.certs_dir();
    assert_lego_layout(&certs, DOMAIN);
    let account = certs.join(format!("accounts/127.0.0.1_{}/ops@porter-test.example/account.json", pebble.acme_port));
    assert!(account.is_file(), "account key kept in {}", account.display());
    let issued = first_cert_der(&certs.join(format!("certificates/{DOMAIN}.crt")));
    wait_for_leaf(https, DOMAIN, &issued, Duration::from_secs(5), "HTTP-01 certificate").await;
    // pebble fetched the challenge from porter's port 80 (nothing else listens there).
    assert!(pebble.pebble_log().contains("VALID by completed challenge"), "{}", pebble.pebble_log());

    // A client that trusts only pebble's root gets through to the backend.
    let strict = strict_client(&pebble, DOMAIN, https).await;
    let r = strict.get(format!("https://{DOMAIN}:{}/hello", https.port())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with("a GET /hello"));
    // Everything else on port 80 still redirects; a finished challenge is gone.
    let plain = client_for(p.http.unwrap(), &[DOMAIN]);
    let base = format!("http://{DOMAIN}:{http_port}");
    assert_eq!(plain.get(format!("{base}/hello")).send().await.unwrap().status(), 301);

    // The admin listener shows the managed name and counts the order.
    let admin = p.porter().admin_addr.unwrap();
    let text = plain_client().get(format!("http://{admin}/status")).send().await.unwrap().text().await.unwrap();
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    let acme = &status["acme"];
    assert_eq!((acme["attempts_total"].as_u64(), acme["issued_total"].as_u64()), (Some(1), Some(1)), "{acme}");
    assert_eq!(acme["names"][0]["domain"], DOMAIN, "{acme}");
    let metrics = plain_client().get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("porter_acme_orders_issued_total 1"), "{metrics}");
    assert!(metrics.contains(&format!("porter_acme_consecutive_failures{{domain=\"{DOMAIN}\"}} 0")), "{metrics}");

    // Restart on the same folder: the certificate is served by the first handshake, no new order.
    let dir = p.stop_keep_dir().await;
    let p = TestPorter::start_in(dir, &config).await;
    assert_eq!(served_leaf(p.https.unwrap(), DOMAIN).await, issued, "served at once after a restart");
    let start = Instant::now();
    loop {
        let status = p.porter().acme_status();
        if let Some(name) = status.names.iter().find(|n| n.state == NameState::Valid) {
            assert_eq!(name.domain, DOMAIN);
            let next = name.next_attempt.expect("a renewal date");
            // pebble issues for 5 years: renewal 30 days before the end.
            assert!(next > SystemTime::now() + Duration::from_secs(3 * 365 * 86_400), "{name:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{status:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = p.porter().acme_status();
    assert_eq!((status.attempts, status.issued), (0, 0), "a restart must not order again: {status:#?}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issuance_on_the_https_listener() {
    if tools_or_skip("acme_client::tls_alpn01_issuance_on_the_https_listener", &TOOLS).is_none() {
        return;
    }
    const DOMAIN: &str = "alpn.porter-test.example";
    let backend = Backend::start("a").await;
    let https_port = free_tcp_port();
    // No plaintext listener at all: only TLS-ALPN-01 can work.
    let pebble = Pebble::start(PebbleOptions { tls_port: https_port, ..Default::default() }).await;
    let listen = format!("  https: \"127.0.0.1:{https_port}\"\n");
    let p = TestPorter::start(&yaml(&listen, "certs", &pebble, "tls-alpn-01", &[DOMAIN], &backend)).await;
    let https = p.https.unwrap();
    assert!(p.http.is_none());

    let status = wait_issued(p.porter(), 1, Duration::from_secs(60), &pebble).await;
    assert_eq!(status.failed, 0, "{status:#?}");
    // pebble validated by a TLS-ALPN-01 handshake with porter (there is no port 80 to use).
    assert!(pebble.pebble_log().contains("VALID by completed challenge"), "{}", pebble.pebble_log());
    assert_lego_layout(&p.certs_dir(), DOMAIN);
    let issued = first_cert_der(&p.certs_dir().join(format!("certificates/{DOMAIN}.crt")));
    wait_for_leaf(https, DOMAIN, &issued, Duration::from_secs(5), "TLS-ALPN-01 certificate").await;
    let strict = strict_client(&pebble, DOMAIN, https).await;
    let r = strict.get(format!("https://{DOMAIN}:{https_port}/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Ordinary clients never get `acme-tls/1`.
    let tls = tls_connect(https, DOMAIN, tls_config(&TLS12_AND_13, &[b"h2", b"http/1.1"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    p.stop().await;
}

/// An HTTP/1.1 keep-alive connection over TLS, to show it survives a renewal.
struct KeptConnection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    leaf: Vec<u8>,
}

impl KeptConnection {
    async fn open(https: SocketAddr, domain: &str) -> KeptConnection {
        let tls = tls_connect(https, domain, tls_config(&TLS12_AND_13, &[b"http/1.1"])).await.unwrap();
        let leaf = peer_leaf(&tls);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        KeptConnection { sender, leaf }
    }

    async fn get(&mut self, domain: &str) -> u16 {
        let req = http::Request::get("/kept").header("host", domain).body(Empty::new()).unwrap();
        let response = self.sender.send_request(req).await.expect("the kept connection still works");
        let status = response.status().as_u16();
        response.into_body().collect().await.unwrap();
        status
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificate_is_renewed_without_restart_or_dropped_connection() {
    if tools_or_skip("acme_client::short_lived_certificate_is_renewed", &TOOLS).is_none() {
        return;
    }
    const DOMAIN: &str = "renew.porter-test.example";
    let backend = Backend::start("a").await;
    let http_port = free_tcp_port();
    // 9 s certificates: renewed a third of the lifetime before expiry, about 6 s after issue.
    let pebble = Pebble::start(PebbleOptions { http_port, validity_secs: Some(9), ..Default::default() }).await;
    let listen = format!("  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:{http_port}\"\n");
    let p = TestPorter::start(&yaml(&listen, "certs", &pebble, "http-01", &[DOMAIN], &backend)).await;
    let https = p.https.unwrap();
    let crt = p.certs_dir().join(format!("certificates/{DOMAIN}.crt"));

    wait_issued(p.porter(), 1, Duration::from_secs(60), &pebble).await;
    let first = first_cert_der(&crt);
    wait_for_leaf(https, DOMAIN, &first, Duration::from_secs(5), "first certificate").await;
    let mut kept = KeptConnection::open(https, DOMAIN).await;
    assert_eq!(kept.leaf, first);
    assert_eq!(kept.get(DOMAIN).await, 200);

    let issued_at = Instant::now();
    wait_issued(p.porter(), 2, Duration::from_secs(30), &pebble).await;
    let renewed_after = issued_at.elapsed();
    let second = first_cert_der(&crt);
    assert_ne!(second, first);
    wait_for_leaf(https, DOMAIN, &second, Duration::from_secs(5), "renewed certificate").await;
    assert!(renewed_after > Duration::from_secs(3), "renewed too early: {renewed_after:?}");
    // The connection opened before the renewal carries on, on its old certificate.
    assert_eq!(kept.get(DOMAIN).await, 200);
    let status = p.porter().acme_status();
    assert_eq!(status.failed, 0, "{status:#?}");
    p.stop().await;
}

/// A TCP gate in front of the CA: open, it forwards; closed, it hangs up at once.
struct Gate {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn start(to: SocketAddr) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let is_open = open.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !is_open.load(Ordering::SeqCst) {
                    continue; // dropped: connection closed before any TLS
                }
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Gate { addr, open, task }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_ca_keeps_the_old_certificate_backs_off_and_recovers() {
    if tools_or_skip("acme_client::failing_ca_keeps_the_old_certificate", &TOOLS).is_none() {
        return;
    }
    const DOMAIN: &str = "backoff.porter-test.example";
    let backend = Backend::start("a").await;
    let http_port = free_tcp_port();
    let pebble = Pebble::start(PebbleOptions { http_port, validity_secs: Some(15), ..Default::default() }).await;
    let gate = Gate::start(([127, 0, 0, 1], pebble.acme_port).into()).await;
    let listen = format!("  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:{http_port}\"\n");
    // The CA is reached through the gate (pebble builds its URLs from the Host it is asked for).
    let config = yaml(&listen, "certs", &pebble, "http-01", &[DOMAIN], &backend)
        .replace(&pebble.directory(), &format!("https://127.0.0.1:{}/dir", gate.addr.port()));
    let retry_min = Duration::from_millis(400);
    let dir = tempfile::tempdir().unwrap();
    let p = TestPorter::start_tweaked(dir, &config, |c| c.acme.as_mut().unwrap().retry_min = retry_min).await;
    let https = p.https.unwrap();
    let crt = p.certs_dir().join(format!("certificates/{DOMAIN}.crt"));
    wait_issued(p.porter(), 1, Duration::from_secs(60), &pebble).await;
    let old = first_cert_der(&crt);
    wait_for_leaf(https, DOMAIN, &old, Duration::from_secs(5), "first certificate").await;

    // The CA goes away before the renewal (due 10 s after issue).
    gate.open.store(false, Ordering::SeqCst);
    let mut attempts_at = Vec::new();
    let mut seen = 1;
    let start = Instant::now();
    while attempts_at.len() < 4 {
        let status = p.porter().acme_status();
        if status.attempts > seen {
            seen = status.attempts;
            attempts_at.push(Instant::now());
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{status:#?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = p.porter().acme_status();
    assert_eq!(status.issued, 1);
    assert!(status.failed >= 3, "{status:#?}");
    let name = &status.names[0];
    assert!(name.failures >= 3 && name.last_error.is_some(), "{name:?}");
    // The old certificate stays in service meanwhile.
    assert_eq!(served_leaf(https, DOMAIN).await, old);
    // Spacing: retry_min, then doubling, each ±20 % jitter (plus the attempt itself).
    // The slack beyond that is for a loaded CI machine: an attempt, or this loop's
    // look at the status, can run late by a fraction of a second there.
    let gaps: Vec<Duration> = attempts_at.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("timing: attempts against the failing CA spaced {gaps:?}");
    for (i, gap) in gaps.iter().enumerate() {
        let expected = retry_min * (1 << i);
        assert!(
            *gap >= expected.mul_f64(0.8) - Duration::from_millis(100)
                && *gap <= expected.mul_f64(1.2) + Duration::from_millis(1000),
            "gap {i}: {gap:?}, expected {expected:?} ±20 %: {gaps:?}"
        );
    }
    let record = std::fs::read_to_string(p.certs_dir().join(format!(".porter-acme/{DOMAIN}.state"))).unwrap();
    assert!(record.contains("failures=") && record.contains("last_error="), "{record}");

    // The CA is back: the next attempt (after at most 3.2 s × 1.2) succeeds.
    gate.open.store(true, Ordering::SeqCst);
    let status = wait_issued(p.porter(), 2, Duration::from_secs(15), &pebble).await;
    let new = first_cert_der(&crt);
    assert_ne!(new, old);
    wait_for_leaf(https, DOMAIN, &new, Duration::from_secs(5), "certificate after recovery").await;
    assert!(status.names.iter().all(|n| n.failures == 0 || n.state == NameState::Ordering), "{status:#?}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_folder_order_once_per_name() {
    if tools_or_skip("acme_client::two_instances_on_one_folder_order_once_per_name", &TOOLS).is_none() {
        return;
    }
    const DOMAINS: [&str; 2] = ["one.porter-test.example", "two.porter-test.example"];
    let backend = Backend::start("a").await;
    // Two instances cannot share one port 80 here (no L4 balancer in front), so
    // pebble skips validation: this test is about the lock, the others about validation.
    let pebble = Pebble::start(PebbleOptions { always_valid: true, ..Default::default() }).await;
    let shared = tempfile::tempdir().unwrap();
    let certs = shared.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let listen = "  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n";
    let config = yaml(listen, &certs.display().to_string(), &pebble, "http-01", &DOMAINS, &backend);
    let (a, b) = tokio::join!(TestPorter::start(&config), TestPorter::start(&config));

    let start = Instant::now();
    loop {
        let (sa, sb) = (a.porter().acme_status(), b.porter().acme_status());
        let valid = |s: &AcmeStatus| s.names.len() == 2 && s.names.iter().all(|n| n.state == NameState::Valid);
        if valid(&sa) && valid(&sb) {
            assert_eq!(sa.issued + sb.issued, 2, "one order per name: {sa:#?} {sb:#?}");
            assert_eq!(sa.attempts + sb.attempts, 2, "one order per name: {sa:#?} {sb:#?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{sa:#?}\n{sb:#?}\n{}", pebble.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One account for the folder, and both instances serve the same certificates.
    let accounts = certs.join(format!("accounts/127.0.0.1_{}", pebble.acme_port));
    assert_eq!(std::fs::read_dir(&accounts).unwrap().count(), 1);
    for domain in DOMAINS {
        let issued = first_cert_der(&certs.join(format!("certificates/{domain}.crt")));
        wait_for_leaf(a.https.unwrap(), domain, &issued, Duration::from_secs(5), "instance a").await;
        wait_for_leaf(b.https.unwrap(), domain, &issued, Duration::from_secs(5), "instance b").await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_orders_an_added_domain_and_stops_renewing_a_removed_one() {
    if tools_or_skip("acme_client::reload_orders_an_added_domain", &TOOLS).is_none() {
        return;
    }
    const A: &str = "first.porter-test.example";
    const B: &str = "added.porter-test.example";
    let backend = Backend::start("a").await;
    let http_port = free_tcp_port();
    let pebble = Pebble::start(PebbleOptions { http_port, ..Default::default() }).await;
    let listen = format!("  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:{http_port}\"\n");
    let p = TestPorter::start(&yaml(&listen, "certs", &pebble, "http-01", &[A], &backend)).await;
    wait_issued(p.porter(), 1, Duration::from_secs(60), &pebble).await;
    let reload = |hosts: &[&str]| {
        let text = yaml(&listen, "certs", &pebble, "http-01", hosts, &backend);
        let config = porter::Config::from_yaml(&text, &p.dir.path().join("porter.yaml")).unwrap();
        p.porter().reload(&config).unwrap();
    };

    reload(&[A, B]);
    let status = wait_issued(p.porter(), 2, Duration::from_secs(60), &pebble).await;
    assert_eq!(status.attempts, 2, "only the added name is ordered: {status:#?}");
    let b_cert = first_cert_der(&p.certs_dir().join(format!("certificates/{B}.crt")));
    wait_for_leaf(p.https.unwrap(), B, &b_cert, Duration::from_secs(5), "added domain").await;

    reload(&[B]);
    let status = p.porter().acme_status();
    let names: Vec<&str> = status.names.iter().map(|n| n.domain.as_str()).collect();
    assert_eq!(names, [B], "{status:#?}");
    // A's files stay, and porter still serves them; it only stops renewing.
    let a_cert = first_cert_der(&p.certs_dir().join(format!("certificates/{A}.crt")));
    assert_eq!(served_leaf(p.https.unwrap(), A).await, a_cert);
    p.stop().await;
}

/// A stored account the CA no longer knows (here: its URL points at an account
/// pebble never created, as after a CA reset) is recreated once and the order
/// goes through, with no failure counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_unknown_to_the_ca_is_recreated_and_the_order_retried() {
    if tools_or_skip("acme_client::account_unknown_to_the_ca_is_recreated", &TOOLS).is_none() {
        return;
    }
    const DOMAIN: &str = "lost-account.porter-test.example";
    let backend = Backend::start("a").await;
    let http_port = free_tcp_port();
    let pebble = Pebble::start(PebbleOptions { http_port, ..Default::default() }).await;
    let listen = format!("  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:{http_port}\"\n");
    let config = yaml(&listen, "certs", &pebble, "http-01", &[DOMAIN], &backend);
    let account_file = format!("certs/accounts/127.0.0.1_{}/ops@porter-test.example/account.json", pebble.acme_port);

    // A first run creates an account; its file, pointed at an unknown account URL, seeds a second folder.
    let first = TestPorter::start(&config).await;
    wait_issued(first.porter(), 1, Duration::from_secs(60), &pebble).await;
    let stored = std::fs::read_to_string(first.certs_dir().parent().unwrap().join(&account_file)).unwrap();
    first.stop().await;
    let mut json: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let old_id = json["id"].as_str().unwrap().to_owned();
    let lost_id = format!("{}/999999", old_id.rsplit_once('/').unwrap().0);
    json["id"] = lost_id.clone().into();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(&account_file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();

    let second = TestPorter::start_in(dir, &config).await;
    let status = wait_issued(second.porter(), 1, Duration::from_secs(60), &pebble).await;
    assert_eq!((status.attempts, status.failed), (1, 0), "{status:#?}");
    let renewed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(second.certs_dir().parent().unwrap().join(&account_file)).unwrap())
            .unwrap();
    let new_id = renewed["id"].as_str().unwrap();
    assert!(new_id != lost_id && new_id != old_id, "a new account was stored: {new_id}");
    assert!(pebble.pebble_log().contains("There are now 2 accounts"), "{}", pebble.pebble_log());
    second.stop().await;
}
