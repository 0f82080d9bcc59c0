//! docs/configuration.md, Balancers: least_connections, power_of_two and consistent_hash end to end
//! (their statistical properties over many picks are unit-tested beside
//! each algorithm in src/upstream/balancer/).

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::*;

fn config(balance: &str, servers: &[(&Backend, u32)]) -> String {
    let mut yaml =
        format!("{}http:\n  redirect: false\nupstreams:\n  web:\n    {balance}\n    servers:\n", listen_block());
    for (b, w) in servers {
        yaml.push_str(&format!("      - url: \"{}\"\n        weight: {w}\n", b.url()));
    }
    yaml.push_str("routes:\n  - upstream: web\n");
    yaml
}

async fn who(c: &reqwest::Client, url: &str, header: Option<(&str, &str)>) -> String {
    let mut req = c.get(url);
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-backend"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancers_least_connections_sends_new_requests_away_from_a_slow_server() {
    let slow =
        Backend::start_with("slow", Behaviour { delay: Some(Duration::from_millis(500)), ..Default::default() }).await;
    let f1 = Backend::start("f1").await;
    let f2 = Backend::start("f2").await;
    let p = TestPorter::start(&config("balance: least_connections", &[(&slow, 1), (&f1, 1), (&f2, 1)])).await;
    // Three clients for 1.5 s: while one waits on the slow server, the fast
    // ones have fewer in flight, so it gets a request only when it is idle.
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let url = p.http_url("/");
        tasks.push(tokio::spawn(async move {
            let c = plain_client();
            let mut seen = Vec::new();
            while std::time::Instant::now() < until {
                seen.push(who(&c, &url, None).await);
            }
            seen
        }));
    }
    let mut counts: HashMap<String, u32> = HashMap::new();
    for t in tasks {
        for name in t.await.unwrap() {
            *counts.entry(name).or_default() += 1;
        }
    }
    let to_slow = counts.get("slow").copied().unwrap_or(0);
    let total: u32 = counts.values().sum();
    eprintln!("least_connections, 3 clients for 1.5 s: {counts:?} (round robin would give slow a third)");
    // At most one request on the slow server at a time, each 500 ms: about 3-4, never a third.
    assert!(to_slow <= 8, "{counts:?}");
    assert!(total >= 30, "{counts:?}");
    let (f1, f2) = (f64::from(counts["f1"]), f64::from(counts["f2"]));
    assert!((f1 - f2).abs() / (f1 + f2) < 0.2, "equal fast servers share: {counts:?}");
    p.stop().await;
}

#[tokio::test]
async fn balancers_power_of_two_follows_weights() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let p = TestPorter::start(&config("balance: power_of_two", &[(&a, 3), (&b, 1)])).await;
    let c = plain_client();
    let n = 1000;
    let mut to_a = 0;
    for _ in 0..n {
        if who(&c, &p.http_url("/"), None).await == "a" {
            to_a += 1;
        }
    }
    let share = f64::from(to_a) / f64::from(n);
    eprintln!("power_of_two weights 3:1 over {n} requests: a got {share:.3} (due 0.75)");
    assert!((0.70..=0.80).contains(&share), "{share}");
    p.stop().await;
}

/// Which backend each of `keys` lands on, sending the key in `x-user`.
async fn owners(c: &reqwest::Client, url: &str, keys: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        out.push(who(c, url, Some(("x-user", k))).await);
    }
    out
}

#[tokio::test]
async fn balancers_consistent_hash_keeps_keys_and_remaps_about_one_nth_on_removal() {
    let backends = [
        Backend::start("b0").await,
        Backend::start("b1").await,
        Backend::start("b2").await,
        Backend::start("b3").await,
    ];
    let all: Vec<(&Backend, u32)> = backends.iter().map(|b| (b, 1)).collect();
    let balance = "balance: consistent_hash\n    hash_on: \"header:x-user\"";
    let p = TestPorter::start(&config(balance, &all)).await;
    let c = plain_client();
    let url = p.http_url("/");
    let keys: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();
    let first = owners(&c, &url, &keys).await;
    assert_eq!(owners(&c, &url, &keys).await, first, "same key, same server");
    for b in &backends {
        let n = first.iter().filter(|o| **o == b.name).count();
        assert!(n >= 40, "{} got only {n} of 400 keys", b.name);
    }

    // Remove b3 from the configuration: only its keys move.
    let yaml = config(balance, &all[..3]);
    let path = p.dir.path().join("porter.yaml");
    std::fs::write(&path, &yaml).unwrap();
    p.porter.as_ref().unwrap().reload(&porter::Config::load(&path).unwrap()).unwrap();
    let after = owners(&c, &url, &keys).await;
    let mut moved = 0;
    for (before, now) in first.iter().zip(&after) {
        if before != now {
            moved += 1;
            assert_eq!(before, "b3", "a key of a server that stayed moved");
        }
    }
    let fraction = f64::from(moved) / keys.len() as f64;
    eprintln!("consistent_hash: removing 1 of 4 servers moved {fraction:.3} of keys (ideal 0.25)");
    assert!(fraction > 0.5 / 4.0 && fraction < 1.5 / 4.0, "{fraction}");
    p.stop().await;
}

#[tokio::test]
async fn balancers_consistent_hash_sends_a_down_servers_keys_on_and_no_others() {
    let backends = [Backend::start("b0").await, Backend::start("b1").await, Backend::start("b2").await];
    let all: Vec<(&Backend, u32)> = backends.iter().map(|b| (b, 1)).collect();
    let p = TestPorter::start(&config("balance: consistent_hash\n    hash_on: \"header:x-user\"", &all)).await;
    let c = plain_client();
    let url = p.http_url("/");
    let keys: Vec<String> = (0..150).map(|i| format!("k{i}")).collect();
    let first = owners(&c, &url, &keys).await;
    let [b0, b1, b2] = backends;
    b1.stop().await;
    // Every request still succeeds (the retry goes on along the ring), and only b1's keys move.
    let during = owners(&c, &url, &keys).await;
    for (before, now) in first.iter().zip(&during) {
        if before == "b1" {
            assert_ne!(now, "b1");
        } else {
            assert_eq!(before, now);
        }
    }
    drop((b0, b2));
    p.stop().await;
}

#[tokio::test]
async fn balancers_consistent_hash_on_a_cookie_falls_back_to_the_client_ip() {
    let backends = [Backend::start("b0").await, Backend::start("b1").await, Backend::start("b2").await];
    let all: Vec<(&Backend, u32)> = backends.iter().map(|b| (b, 1)).collect();
    let p = TestPorter::start(&config("balance: consistent_hash\n    hash_on: \"cookie:sid\"", &all)).await;
    let c = plain_client();
    let url = p.http_url("/");
    let mut seen = HashMap::new();
    for i in 0..60 {
        let cookie = format!("theme=dark; sid=s{i}");
        let owner = who(&c, &url, Some(("cookie", &cookie))).await;
        assert_eq!(who(&c, &url, Some(("cookie", &cookie))).await, owner, "sticky");
        *seen.entry(owner).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "sessions spread: {seen:?}");
    // No cookie: every request from 127.0.0.1 goes to one server.
    let by_ip = who(&c, &url, None).await;
    for _ in 0..20 {
        assert_eq!(who(&c, &url, Some(("cookie", "theme=dark"))).await, by_ip);
    }
    p.stop().await;
}
