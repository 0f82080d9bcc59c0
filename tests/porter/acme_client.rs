//! docs/deploy.md, Automatic HTTPS: `acme:`, porter's own ACME client against a real CA (Debian's
//! pebble, started by `pebble.rs`; no certbot, no lego). pebble validates
//! through porter itself: HTTP-01 on the http listener, TLS-ALPN-01 on the
//! https listener. Covered: issuance served to a client trusting only pebble's
//! root, lego's file layout, a restart that serves at once and orders nothing,
//! two instances on one folder ordering once per name, a reload adding and
//! removing names, an account the CA forgot. Renewal and a failing CA:
//! `acme_renewal.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use porter::{AcmeStatus, NameState};

use crate::harness::*;
use crate::pebble::{free_tcp_port, tools_or_skip, Pebble, PebbleOptions};
use crate::tls_client::{first_cert_der, served_leaf, tls_config, tls_connect, wait_for_leaf, TLS12_AND_13};

pub(crate) const TOOLS: [&str; 2] = ["pebble", "pebble-challtestsrv"];

/// `listen` block + `acme:` for `hosts` (routed to `backend`) against `pebble`.
pub(crate) fn yaml(
    listen: &str,
    certs: &str,
    pebble: &Pebble,
    challenge: &str,
    hosts: &[&str],
    backend: &Backend,
) -> String {
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
pub(crate) async fn wait_issued(porter: &porter::Porter, n: u64, within: Duration, pebble: &Pebble) -> AcmeStatus {
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
