//! docs/deploy.md, Automatic HTTPS, over time: porter's own ACME client against a real CA
//! (Debian's pebble) renews a short-lived certificate without restart or dropped
//! connection, and a failing CA keeps the old certificate served, is retried with
//! backoff spacing, and recovered from.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use porter::NameState;

use crate::acme_client::{wait_issued, yaml, TOOLS};
use crate::harness::*;
use crate::pebble::{free_tcp_port, tools_or_skip, Pebble, PebbleOptions};
use crate::tls_client::{first_cert_der, peer_leaf, served_leaf, tls_config, tls_connect, wait_for_leaf, TLS12_AND_13};

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
