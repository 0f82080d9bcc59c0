//! docs/configuration.md, Health and Retries: `health_check`, `passive`, `timeouts`, `retries`:
//! traffic moves off servers that stop working and comes back when they recover, retries stay
//! within the budget, timeouts fire on time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use porter::testing::UpstreamServer as Server;

use crate::harness::*;

/// The `i`th server of porter's only upstream, as porter sees it.
fn server(p: &TestPorter, i: usize) -> Arc<Server> {
    porter::testing::upstream_server(p.porter(), 0, i)
}

fn config(servers: &[String], extra: &str) -> String {
    let mut yaml = format!("{}http:\n  redirect: false\nupstreams:\n  web:\n    servers:\n", listen_block());
    for url in servers {
        yaml.push_str(&format!("      - url: \"{url}\"\n"));
    }
    yaml.push_str(extra);
    yaml.push_str("routes:\n  - upstream: web\n");
    yaml
}

/// Polls `cond` every 5 ms until it holds; returns how long that took, or panics after `limit`.
async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// A server that accepts connections and resets them at once (RST, not FIN).
struct ResetServer {
    addr: SocketAddr,
    accepts: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ResetServer {
    async fn start() -> ResetServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicU64::new(0));
        let counter = accepts.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                drop(stream);
            }
        });
        ResetServer { addr, accepts, task }
    }
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn accepts(&self) -> u64 {
        self.accepts.load(Ordering::SeqCst)
    }
}

impl Drop for ResetServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener on 127.0.0.1 whose accept queue is full and never drained: a
/// connect to it never completes (the kernel drops the SYN).
struct BlackHole {
    addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<tokio::net::TcpStream>,
}

impl BlackHole {
    async fn new() -> BlackHole {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        for _ in 0..4 {
            // The first connection or two fill the queue; the rest time out here.
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(100), tokio::net::TcpStream::connect(addr)).await
            {
                queued.push(s);
            }
        }
        assert!(!queued.is_empty(), "the backlog should take at least one connection");
        BlackHole { addr, _listener: listener, _queued: queued }
    }
}

/// Client tasks sending GETs back to back until stopped, tallying who answered.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ok: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    by_backend: Arc<Mutex<std::collections::HashMap<String, u64>>>,
}

impl Load {
    fn start(url: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let by_backend = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (url, stop, ok, errors, by) =
                    (url.clone(), stop.clone(), ok.clone(), errors.clone(), by_backend.clone());
                tokio::spawn(async move {
                    let c = plain_client();
                    while !stop.load(Ordering::Relaxed) {
                        match c.get(&url).send().await {
                            Ok(r) if r.status() == 200 => {
                                let who = r.headers()["x-backend"].to_str().unwrap().to_string();
                                let _ = r.bytes().await;
                                ok.fetch_add(1, Ordering::Relaxed);
                                *by.lock().unwrap().entry(who).or_default() += 1;
                            }
                            Ok(r) => {
                                let status = r.status();
                                let body = r.text().await.unwrap_or_default();
                                errors.lock().unwrap().push(format!("{status}: {}", body.trim()));
                            }
                            Err(e) => errors.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load { stop, tasks, ok, errors, by_backend }
    }

    fn served_by(&self, name: &str) -> u64 {
        self.by_backend.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), errors)
    }
}

const CHECKS: &str =
    "    health_check:\n      path: /healthz\n      interval: 200ms\n      timeout: 150ms\n      unhealthy_after: 3\n      healthy_after: 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resilience_killed_server_under_load_no_client_errors_out_and_back_in_time() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    let p = TestPorter::start(&config(&[a.url(), b.url(), c.url()], CHECKS)).await;
    let b_state = server(&p, 1);
    let load = Load::start(p.http_url("/"), 4);
    wait_until(Duration::from_secs(5), "all three serve", || ["a", "b", "c"].iter().all(|n| load.served_by(n) >= 20))
        .await;

    // Kill b. Out of rotation within interval × unhealthy_after = 600 ms (+ slack).
    let addr = b.stop().await;
    let out = wait_until(Duration::from_secs(3), "b unhealthy", || !b_state.is_healthy()).await;
    eprintln!("killed server marked unhealthy after {out:?} (bound 600ms + slack)");
    assert!(out <= Duration::from_millis(600 + 400), "{out:?}");
    assert!(!b_state.is_available());
    // Out means no more attempts on it.
    let attempts = b_state.live.requests_total.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b_state.live.requests_total.load(Ordering::Relaxed), attempts, "porter still tries the dead server");

    // Restart b. Back within interval × healthy_after = 400 ms (+ slack).
    let served_before = load.served_by("b");
    let b = Backend::start_on("b", addr).await;
    let back = wait_until(Duration::from_secs(3), "b healthy", || b_state.is_healthy()).await;
    let traffic = wait_until(Duration::from_secs(3), "b serves again", || load.served_by("b") > served_before).await;
    eprintln!("restarted server healthy after {back:?}, serving after {traffic:?} (bound 400ms + slack)");
    assert!(back <= Duration::from_millis(400 + 400), "{back:?}");

    let (ok, errors) = load.finish().await;
    assert!(errors.is_empty(), "{} client-visible errors of {ok}: {:?}", errors.len(), &errors[..errors.len().min(5)]);
    eprintln!("{ok} requests, 0 errors");
    drop((a, b, c));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resilience_failing_health_endpoint_is_taken_out_by_active_checks_only() {
    let sick = Backend::start_with("sick", Behaviour { health_status: Some(500), ..Default::default() }).await;
    let well = Backend::start("well").await;
    let checks = "    health_check:\n      interval: 200ms\n      timeout: 150ms\n      unhealthy_after: 2\n";
    let p = TestPorter::start(&config(&[sick.url(), well.url()], checks)).await;
    let sick_state = server(&p, 0);
    let out = wait_until(Duration::from_secs(3), "sick unhealthy", || !sick_state.is_healthy()).await;
    eprintln!("500 on /healthz: out after {out:?} (bound 400ms + slack)");
    assert!(out <= Duration::from_millis(400 + 300), "{out:?}");
    // Requests to it never failed: passive ejection had no part in it.
    assert!(!sick_state.is_ejected());
    assert_eq!(sick_state.live.failures_total.load(Ordering::Relaxed), 0);
    let c = plain_client();
    for _ in 0..30 {
        let r = c.get(p.http_url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-backend"], "well");
    }
    p.stop().await;
}

#[tokio::test]
async fn resilience_resetting_server_is_ejected_after_max_failures_and_retried_after_cooldown() {
    let bad = ResetServer::start().await;
    let good = Backend::start("good").await;
    let passive = "    passive:\n      max_failures: 3\n      cooldown: 500ms\n";
    let p = TestPorter::start(&config(&[bad.url(), good.url()], passive)).await;
    let bad_state = server(&p, 0);
    let c = plain_client();
    let get = || async { c.get(p.http_url("/")).send().await.unwrap() };

    // Round robin sends every other request to the bad server until its third failure.
    let mut ejected_at = None;
    for _ in 0..20 {
        let r = get().await;
        assert_eq!(r.status(), 200, "retried on the good server");
        if ejected_at.is_none() && bad_state.is_ejected() {
            ejected_at = Some(Instant::now());
        }
    }
    let ejected_at = ejected_at.expect("ejected");
    assert_eq!(bad.accepts(), 3, "ejected after max_failures");

    // After the cooldown it gets one more try, fails, and is out again at once.
    let retried_at = loop {
        assert_eq!(get().await.status(), 200);
        if bad.accepts() == 4 {
            break ejected_at.elapsed();
        }
        assert!(ejected_at.elapsed() < Duration::from_secs(3), "never tried again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!("ejected server tried again {retried_at:?} after ejection (cooldown 500ms)");
    // The ejection is seen when its request returns, a little after it happened,
    // hence 450 ms; the upper slack is for a loaded CI machine.
    assert!(
        retried_at >= Duration::from_millis(450) && retried_at <= Duration::from_millis(500 + 750),
        "{retried_at:?}"
    );
    for _ in 0..10 {
        assert_eq!(get().await.status(), 200);
    }
    assert_eq!(bad.accepts(), 4, "ejected again at its first failure");
    assert!(bad_state.is_ejected());
    p.stop().await;
}

#[tokio::test]
async fn resilience_retry_budget_bounds_attempts_when_every_server_fails() {
    let servers = [ResetServer::start().await, ResetServer::start().await, ResetServer::start().await];
    let urls: Vec<String> = servers.iter().map(ResetServer::url).collect();
    let p = TestPorter::start(&config(&urls, "    retries: 2\n    passive:\n      max_failures: 0\n")).await;
    let c = plain_client();
    let n = 300u64;
    for _ in 0..n {
        let r = c.get(p.http_url("/")).send().await.unwrap();
        assert_eq!(r.status(), 502);
    }
    let attempts: u64 = servers.iter().map(ResetServer::accepts).sum();
    // Without a budget: 3 attempts each (900). With it: 20% of 300 = 60 retries
    // (the floor of 30 per window is below that).
    eprintln!("{n} requests to a failing fleet: {attempts} upstream attempts (no budget: {})", n * 3);
    assert!(attempts >= n + 30, "the floor allows some retries: {attempts}");
    assert!(attempts <= n + n / 5 + 5, "budget exceeded: {attempts}");
    p.stop().await;
}

#[tokio::test]
async fn resilience_connect_timeout_fires_on_time_against_a_full_backlog() {
    let hole = BlackHole::new().await;
    let yaml = config(&[format!("http://{}", hole.addr)], "    timeouts:\n      connect: 500ms\n");
    let p = TestPorter::start(&yaml).await;
    let started = Instant::now();
    let r = plain_client().get(p.http_url("/")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 504);
    assert!(r.text().await.unwrap().contains("connecting"));
    eprintln!("connect timeout 500ms: 504 after {took:?}");
    assert!(took >= Duration::from_millis(400) && took <= Duration::from_millis(600), "{took:?}");
    p.stop().await;
}

/// The response-header timer of a pooled connection is kept and moved on from
/// request to request: it must still fire on time for a later request, and not
/// early for requests that together take longer than the timeout.
#[tokio::test]
async fn resilience_response_header_timeout_fires_on_a_reused_connection() {
    let b = Backend::start("b").await;
    let p = TestPorter::start(&config(&[b.url()], "    timeouts:\n      response_header: 500ms\n")).await;
    let c = plain_client();
    // Quick answers spread over 1.2 s (more than two timeouts) on one pooled connection.
    b.behaviour.lock().unwrap().delay = Some(Duration::from_millis(100));
    for _ in 0..8 {
        assert_eq!(c.get(p.http_url("/")).send().await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.accepts(), 1, "one pooled connection served them all");
    // The kept timer fires while its connection waits in the pool: the next request
    // on that connection must get a full timeout again, not an immediate 504.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(c.get(p.http_url("/")).send().await.unwrap().status(), 200);
    assert_eq!(b.accepts(), 1, "the pooled connection was used again");
    // Now the server is slow: 504 after 500 ms, from the timer the connection kept.
    b.behaviour.lock().unwrap().delay = Some(Duration::from_secs(3));
    let started = Instant::now();
    let r = c.get(p.http_url("/")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 504);
    eprintln!("response_header timeout 500ms on a reused connection: 504 after {took:?}");
    assert!(took >= Duration::from_millis(400) && took <= Duration::from_millis(1000), "{took:?}");
    // The timed-out connection is dropped; the next request gets a new one and its own full timeout.
    b.behaviour.lock().unwrap().delay = Some(Duration::from_millis(300));
    assert_eq!(c.get(p.http_url("/")).send().await.unwrap().status(), 200);
    assert_eq!(b.accepts(), 2);
    p.stop().await;
}

#[tokio::test]
async fn resilience_response_header_timeout_is_504_within_20_percent() {
    let slow =
        Backend::start_with("slow", Behaviour { delay: Some(Duration::from_secs(3)), ..Default::default() }).await;
    let p = TestPorter::start(&config(&[slow.url()], "    timeouts:\n      response_header: 500ms\n")).await;
    let started = Instant::now();
    let r = plain_client().get(p.http_url("/")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 504);
    assert!(r.text().await.unwrap().contains("did not answer in time"));
    eprintln!("response_header timeout 500ms: 504 after {took:?}");
    assert!(took >= Duration::from_millis(400) && took <= Duration::from_millis(600), "{took:?}");
    p.stop().await;
}

#[tokio::test]
async fn resilience_server_named_by_host_name_is_resolved() {
    let b = Backend::start("named").await;
    let url = format!("http://localhost:{}", b.addr.port());
    let p = TestPorter::start(&config(&[url], "")).await;
    let c = plain_client();
    for _ in 0..10 {
        let r = c.get(p.http_url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-backend"], "named");
    }
    let state = server(&p, 0);
    assert!(state.needs_resolution());
    assert!(state.addrs().contains(&b.addr), "{:?}", state.addrs());
    p.stop().await;
}
