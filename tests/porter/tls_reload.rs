//! docs/configuration.md, Certificates, at the edge, end to end through a real porter:
//! live certificate reload under load (in-place rewrite, certbot's symlink swap, added,
//! removed), with fresh connections getting the new certificate and kept-alive ones
//! carrying on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::tls_client::*;
use crate::tls_edge::{certs_tempdir, porter_with, write, TestCa};

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
