//! docs/configuration.md, Balancers: smooth weighted round robin as nginx defines it, weights
//! honoured, weight 0 drains.

use crate::harness::*;

async fn three(weights: [u32; 3]) -> (TestPorter, Vec<Backend>) {
    let backends = vec![Backend::start("a").await, Backend::start("b").await, Backend::start("c").await];
    let servers: Vec<(&Backend, u32)> = backends.iter().zip(weights).collect();
    let yaml = proxy_yaml(&servers);
    (TestPorter::start(&yaml).await, backends)
}

async fn sequence(p: &TestPorter, n: usize) -> Vec<String> {
    let c = plain_client();
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        let r = c.get(p.http_url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        seen.push(r.headers()["x-backend"].to_str().unwrap().to_string());
    }
    seen
}

#[tokio::test]
async fn weights_5_1_1_give_the_nginx_sequence() {
    let (p, _b) = three([5, 1, 1]).await;
    let seen = sequence(&p, 14).await;
    assert_eq!(seen[..7], ["a", "a", "b", "a", "c", "a", "a"], "never bursts: {seen:?}");
    assert_eq!(seen[7..], seen[..7], "the period repeats");
    p.stop().await;
}

#[tokio::test]
async fn seven_hundred_requests_split_by_weight() {
    let (p, b) = three([5, 1, 1]).await;
    // Concurrent clients, so the split holds under parallel picks too.
    let mut tasks = Vec::new();
    for _ in 0..7 {
        let url = p.http_url("/");
        tasks.push(tokio::spawn(async move {
            let c = plain_client();
            for _ in 0..100 {
                assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counts = [b[0].requests(), b[1].requests(), b[2].requests()];
    assert_eq!(counts.iter().sum::<u64>(), 700);
    assert!((485..=515).contains(&counts[0]), "{counts:?}");
    assert!((85..=115).contains(&counts[1]), "{counts:?}");
    assert!((85..=115).contains(&counts[2]), "{counts:?}");
    p.stop().await;
}

#[tokio::test]
async fn weight_zero_receives_nothing() {
    let (p, b) = three([1, 0, 2]).await;
    let seen = sequence(&p, 60).await;
    assert_eq!(b[1].requests(), 0, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "a").count(), 20);
    assert_eq!(seen.iter().filter(|s| *s == "c").count(), 40);
    p.stop().await;
}

#[tokio::test]
async fn a_wholly_drained_upstream_is_503_until_a_reload_gives_weight_back() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let p = TestPorter::start(&proxy_yaml(&[(&a, 0), (&b, 0)])).await;
    let c = plain_client();
    let r = c.get(p.http_url("/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("drained"));
    assert_eq!(a.requests() + b.requests(), 0, "a drained server gets nothing");

    p.reload(&proxy_yaml(&[(&a, 0), (&b, 1)]));
    let r = c.get(p.http_url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-backend"], "b");
    assert_eq!(a.requests(), 0);
    p.stop().await;
}
