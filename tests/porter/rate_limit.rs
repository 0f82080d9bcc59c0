//! docs/configuration.md, Rate limits: a route's `rate_limit` (token bucket
//! per key, 429 with `Retry-After`) over HTTP/1.1 and HTTP/2; keys by client
//! address (after the PROXY protocol and `trusted_proxies`; a client's forged
//! X-Forwarded-For changes nothing), by header and by route; `porter check` errors with positions; and
//! `rate_limit_store.redis` with a real `redis-server` (Debian package
//! `redis-server`, installed by .ci/run): two porter instances share one
//! budget, and with Redis gone `on_error` answers at once.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::deploy_files::tool_or_skip;
use crate::harness::*;

/// Backend `web` and a catch-all route carrying `rate_limit`; `listen` and `top` add
/// lines to the listen section and to the top level.
fn yaml(backend: &Backend, rate_limit: &str, listen: &str, top: &str) -> String {
    format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n{listen}tls:\n  certs: certs\n{top}\
         http:\n  redirect: false\nupstreams:\n{}routes:\n  - upstream: web\n    rate_limit: {rate_limit}\n",
        upstream_block("web", &[(backend, 1)])
    )
}

const PROXY_PROTOCOL: &str = "  proxy_protocol: true\n";

/// One HTTP/1.1 request on a fresh connection, optionally behind a PROXY v1
/// header naming `source` as the client; the status and the raw head.
async fn raw_get(addr: SocketAddr, source: Option<&str>, headers: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = String::new();
    if let Some(source) = source {
        request.push_str(&format!("PROXY TCP4 {source} 127.0.0.1 40000 {}\r\n", addr.port()));
    }
    request.push_str(&format!("GET / HTTP/1.1\r\nHost: example.com\r\n{headers}Connection: close\r\n\r\n"));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {answer:?}"));
    (status, answer)
}

fn retry_after(head: &str) -> Option<u64> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after").then(|| value.trim().parse().ok())?
    })
}

#[tokio::test]
async fn burst_then_429_with_retry_after_over_http1_and_http2() {
    let b = Backend::start("rl").await;
    let dir = tempfile::tempdir().unwrap();
    write_cert(&dir.path().join("certs"), "example", &["example.com"]);
    // One token a minute, three at once: the fourth request is refused for about a minute.
    let p = TestPorter::start_in(dir, &yaml(&b, "{ rate: 1/m, burst: 3 }", "", "")).await;
    let http1 = plain_client();
    for i in 0..2 {
        let r = http1.get(p.http_url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i} is within the burst");
    }
    // The same client over HTTP/2 (TLS, ALPN h2) spends the same bucket: the address is the key.
    let h2 = client_for(p.https.unwrap(), &["example.com"]);
    let url = format!("https://example.com:{}/", p.https.unwrap().port());
    let r = h2.get(&url).send().await.unwrap();
    assert_eq!((r.version(), r.status().as_u16()), (reqwest::Version::HTTP_2, 200));
    let r = h2.get(&url).send().await.unwrap();
    assert_eq!((r.version(), r.status().as_u16()), (reqwest::Version::HTTP_2, 429));
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((50..=60).contains(&wait), "Retry-After {wait}: the next token is about a minute away");
    let r = http1.get(p.http_url("/")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(b.requests(), 3, "refused requests never reach the server");

    // A reload that leaves the limit as it was keeps the buckets: still refused.
    p.reload(&yaml(&b, "{ rate: 1/m, burst: 3 }", "", ""));
    assert_eq!(http1.get(p.http_url("/")).send().await.unwrap().status(), 429);
    // A changed limit starts afresh.
    p.reload(&yaml(&b, "{ rate: 2/m, burst: 3 }", "", ""));
    assert_eq!(http1.get(p.http_url("/")).send().await.unwrap().status(), 200);
    p.stop().await;
}

#[tokio::test]
async fn each_client_address_has_its_own_bucket_and_a_forged_forwarded_for_changes_nothing() {
    let b = Backend::start("rl").await;
    let p = TestPorter::start(&yaml(&b, "{ rate: 1/h, burst: 2, key: client_ip }", "", "")).await;
    let addr = p.http.unwrap();
    // A client that forges a new X-Forwarded-For on every request is still one client.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let forged = format!("X-Forwarded-For: 198.51.100.{i}\r\nX-Real-IP: 198.51.100.{i}\r\n");
        statuses.push(raw_get(addr, None, &forged).await.0);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    p.stop().await;

    // From a trusted proxy, its X-Forwarded-For names the client: one bucket per client behind it.
    let p = TestPorter::start(&yaml(&b, "{ rate: 1/h, burst: 1 }", "  trusted_proxies: [\"127.0.0.1\"]\n", "")).await;
    let addr = p.http.unwrap();
    let via = |client: &str| format!("X-Forwarded-For: 198.51.100.9, {client}\r\n");
    assert_eq!(raw_get(addr, None, &via("203.0.113.1")).await.0, 200);
    assert_eq!(raw_get(addr, None, &via("203.0.113.1")).await.0, 429);
    assert_eq!(raw_get(addr, None, &via("203.0.113.2")).await.0, 200, "another client behind the proxy");
    p.stop().await;

    // Behind an L4 balancer (PROXY protocol) the source it names is the client: two
    // sources, two buckets; neither spends the other's.
    let p = TestPorter::start(&yaml(&b, "{ rate: 1/h, burst: 2 }", PROXY_PROTOCOL, "")).await;
    let addr = p.http.unwrap();
    let (a, c) = (Some("203.0.113.7"), Some("203.0.113.8"));
    assert_eq!(raw_get(addr, a, "").await.0, 200);
    assert_eq!(raw_get(addr, a, "").await.0, 200);
    let (status, head) = raw_get(addr, a, "").await;
    assert_eq!(status, 429, "{head}");
    let wait = retry_after(&head).expect("Retry-After on a 429");
    assert!((3000..=3600).contains(&wait), "one token an hour: Retry-After {wait}");
    assert_eq!(raw_get(addr, c, "").await.0, 200, "another client is not limited");
    assert_eq!(raw_get(addr, c, "").await.0, 200);
    assert_eq!(raw_get(addr, c, "").await.0, 429);
    p.stop().await;
}

#[tokio::test]
async fn keyed_by_header_and_by_route() {
    let b = Backend::start("rl").await;
    let p = TestPorter::start(&yaml(&b, "{ rate: 1/h, burst: 1, key: \"header:X-Api-Key\" }", "", "")).await;
    let addr = p.http.unwrap();
    assert_eq!(raw_get(addr, None, "X-Api-Key: alpha\r\n").await.0, 200);
    assert_eq!(raw_get(addr, None, "X-Api-Key: alpha\r\n").await.0, 429);
    assert_eq!(raw_get(addr, None, "X-Api-Key: beta\r\n").await.0, 200, "another key, same address");
    // Leaving the header out is no way around the limit: the address's own bucket.
    assert_eq!(raw_get(addr, None, "").await.0, 200);
    assert_eq!(raw_get(addr, None, "").await.0, 429);
    p.stop().await;

    // `key: route`: every client shares one bucket.
    let p = TestPorter::start(&yaml(&b, "{ rate: 1/h, burst: 2, key: route }", PROXY_PROTOCOL, "")).await;
    let addr = p.http.unwrap();
    assert_eq!(raw_get(addr, Some("192.0.2.1"), "").await.0, 200);
    assert_eq!(raw_get(addr, Some("192.0.2.2"), "").await.0, 200);
    assert_eq!(raw_get(addr, Some("192.0.2.3"), "").await.0, 429);
    p.stop().await;
}

#[test]
fn bad_rate_limits_are_config_errors_with_positions() {
    let check = |rate_limit: &str| {
        let text = format!(
            "listen:\n  http: \"127.0.0.1:0\"\nupstreams:\n  web:\n    servers:\n      - url: \"http://127.0.0.1:1\"\n\
             routes:\n  - upstream: web\n    rate_limit: {rate_limit}\n"
        );
        porter::Config::from_yaml(&text, Path::new("porter.yaml")).unwrap_err().to_string()
    };
    let e = check("{ rate: 100/sec }");
    assert!(e.starts_with("porter.yaml:9:25: routes[0].rate_limit.rate: "), "{e}");
    assert!(e.contains("unknown period \"sec\""), "{e}");
    let e = check("{ rate: lots }");
    assert!(e.starts_with("porter.yaml:9:25: routes[0].rate_limit.rate: ") && e.contains("no period"), "{e}");
    let e = check("{ rate: 10/s, burst: 0 }");
    assert!(e.starts_with("porter.yaml:9:38: routes[0].rate_limit.burst: "), "{e}");
    let e = check("{ rate: 10/s, key: cookie }");
    assert!(e.starts_with("porter.yaml:9:36: routes[0].rate_limit.key: ") && e.contains("client_ip"), "{e}");
    let e = check("{ burst: 5 }");
    assert!(e.starts_with("porter.yaml:9:") && e.contains("missing required field `rate`"), "{e}");

    let store = |body: &str| {
        let text = format!(
            "rate_limit_store:\n{body}upstreams:\n  web:\n    servers:\n      - url: \"http://127.0.0.1:1\"\n\
             routes:\n  - upstream: web\n"
        );
        porter::Config::from_yaml(&text, Path::new("porter.yaml")).unwrap_err().to_string()
    };
    let e = store("  redis: \"http://127.0.0.1:6379\"\n");
    assert!(e.starts_with("porter.yaml:2:10: rate_limit_store.redis: "), "{e}");
    let e = store("  redis: \"redis://127.0.0.1:6379\"\n  on_error: maybe\n");
    assert!(e.starts_with("porter.yaml:3:13: rate_limit_store.on_error: ") && e.contains("allow"), "{e}");
    let e = store("  redis: \"redis://127.0.0.1:6379\"\n  timeout: 0ms\n");
    assert!(e.starts_with("porter.yaml:3:12: rate_limit_store.timeout: "), "{e}");
}

/// A `redis-server` of its own on an ephemeral port; killed on drop.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// `None` (after a loud message) when redis-server is missing outside CI.
    async fn start(test: &str) -> Option<Redis> {
        let tool = tool_or_skip("redis-server", "Debian package redis-server", test)?;
        let dir = tempfile::tempdir().unwrap();
        // Ask the kernel for a free port, then hand it to redis (it has no port 0 of its own).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(tool)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let redis = Redis { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
                let mut pong = [0u8; 7];
                if s.write_all(b"PING\r\n").await.is_ok()
                    && s.read_exact(&mut pong).await.is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    return Some(redis);
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal}");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// porter with an admin listener, the store at `redis_url`, and a limited route.
fn store_yaml(backend: &Backend, redis_url: &str, store_extra: &str, rate_limit: &str) -> String {
    let store = format!("rate_limit_store:\n  redis: \"{redis_url}\"\n{store_extra}");
    yaml(backend, rate_limit, "  admin: \"127.0.0.1:0\"\n", &store)
}

async fn metric(p: &TestPorter, name: &str) -> Option<f64> {
    let text = plain_client().get(p.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until porter reports its Redis connection up.
async fn until_connected(p: &TestPorter) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(p, "porter_rate_limit_store_up").await != Some(1.0) {
        assert!(Instant::now() < deadline, "porter never connected to Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_instances_share_one_budget_through_redis() {
    let Some(redis) = Redis::start("the shared rate-limit test").await else { return };
    let b = Backend::start("rl").await;
    // A generous timeout here: this test counts exact answers on a loaded machine,
    // where the default's few milliseconds could now and then let a request through.
    let config = store_yaml(&b, &redis.url(), "  timeout: 2s\n", "{ rate: 1/h, burst: 5 }");
    let one = TestPorter::start(&config).await;
    let two = TestPorter::start(&config).await;
    until_connected(&one).await;
    until_connected(&two).await;
    let mut allowed = 0;
    let mut last_head = String::new();
    for i in 0..12 {
        let p = if i % 2 == 0 { &one } else { &two };
        let (status, head) = raw_get(p.http.unwrap(), None, "").await;
        match status {
            200 => allowed += 1,
            429 => last_head = head,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(allowed, 5, "two instances let through the one budget of 5, not 5 each");
    let wait = retry_after(&last_head).expect("Retry-After from the shared bucket");
    assert!((3000..=3600).contains(&wait), "Retry-After {wait}");
    assert_eq!(b.requests(), 5);
    assert_eq!(metric(&one, "porter_rate_limit_store_errors_total").await, Some(0.0));
    // Each instance counts the 429s it gave, as the rule that answered.
    let series = "porter_policy_answers_total{route=\"*/\",rule=\"rate_limit\"}";
    let refused = metric(&one, series).await.unwrap_or(0.0) + metric(&two, series).await.unwrap_or(0.0);
    assert_eq!(refused, 7.0);
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn redis_down_or_stalled_on_error_decides_and_requests_stay_fast() {
    let Some(redis) = Redis::start("the rate-limit store outage test").await else { return };
    let b = Backend::start("rl").await;
    let limit = "{ rate: 1/h, burst: 1 }";
    // 100ms rather than the default 10ms: the first answers below are counted exactly,
    // and a loaded machine can hold a working Redis's answer past 10ms.
    let timeout = "  timeout: 100ms\n";
    let allow = TestPorter::start(&store_yaml(&b, &redis.url(), timeout, limit)).await;
    let deny = TestPorter::start(&store_yaml(&b, &redis.url(), &format!("{timeout}  on_error: deny\n"), limit)).await;
    until_connected(&allow).await;
    until_connected(&deny).await;
    // Working Redis: the limit holds (the two instances share the bucket too).
    assert_eq!(raw_get(allow.http.unwrap(), None, "").await.0, 200);
    assert_eq!(raw_get(allow.http.unwrap(), None, "").await.0, 429);
    assert_eq!(raw_get(deny.http.unwrap(), None, "").await.0, 429);

    // Stalled Redis (stopped, its socket still open): requests wait at most the timeout
    // and on_error answers; after three in a row porter stops asking until it reconnects.
    redis.signal("-STOP");
    let slowest = |times: &[Duration]| times.iter().max().copied().unwrap();
    let mut times = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        assert_eq!(raw_get(allow.http.unwrap(), None, "").await.0, 200, "on_error: allow");
        times.push(start.elapsed());
    }
    // Generous for a loaded machine; a request waiting for Redis itself would hang for good.
    assert!(slowest(&times) < Duration::from_millis(500), "{times:?}");
    for _ in 0..5 {
        let (status, head) = raw_get(deny.http.unwrap(), None, "").await;
        assert_eq!(status, 429, "on_error: deny");
        assert!(retry_after(&head).is_some());
    }
    // Each instance counts the requests its on_error answered.
    assert_eq!(metric(&allow, "porter_rate_limit_store_errors_total").await, Some(10.0));
    assert_eq!(metric(&deny, "porter_rate_limit_store_errors_total").await, Some(5.0));

    // Redis gone (the process killed): answered at once, no connection attempt per request.
    redis.signal("-CONT");
    drop(redis);
    let mut times = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(raw_get(allow.http.unwrap(), None, "").await.0, 200);
        times.push(start.elapsed());
        assert_eq!(raw_get(deny.http.unwrap(), None, "").await.0, 429);
    }
    assert!(slowest(&times) < Duration::from_millis(500), "{times:?}");
    assert_eq!(metric(&allow, "porter_rate_limit_store_up").await, Some(0.0));
    allow.stop().await;
    deny.stop().await;
}
