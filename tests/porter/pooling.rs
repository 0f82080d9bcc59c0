//! docs/configuration.md, Upstream connection pool: upstream connections are pooled and kept alive.

use crate::harness::*;

#[tokio::test]
async fn a_thousand_sequential_requests_use_a_handful_of_connections() {
    let b = Backend::start("a").await;
    let yaml = proxy_yaml(&[(&b, 1)]);
    let p = TestPorter::start(&yaml).await;
    let c = plain_client();
    for _ in 0..1000 {
        let r = c.get(p.http_url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    assert_eq!(b.requests(), 1000);
    assert!(b.accepts() <= 4, "{} upstream connections for 1000 requests", b.accepts());
    p.stop().await;
}

#[tokio::test]
async fn concurrent_bursts_reuse_connections() {
    let b = Backend::start("a").await;
    let yaml = proxy_yaml(&[(&b, 1)]);
    let p = TestPorter::start(&yaml).await;
    for _round in 0..5 {
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let url = p.http_url("/");
            tasks.push(tokio::spawn(async move {
                let c = plain_client();
                for _ in 0..20 {
                    c.get(&url).send().await.unwrap().bytes().await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    assert_eq!(b.requests(), 1600);
    // At most one connection per concurrent request, kept across rounds.
    assert!(b.accepts() <= 20, "{} upstream connections for 1600 requests from 16 clients", b.accepts());
    p.stop().await;
}

#[tokio::test]
async fn a_reload_keeps_the_pool_of_unchanged_servers() {
    let b = Backend::start("a").await;
    let other = Backend::start("other").await;
    let yaml = format!(
        "{}http:\n  redirect: false\nupstreams:\n{}{}routes:\n  - upstream: web\n",
        listen_block(),
        upstream_block("web", &[(&b, 1)]),
        upstream_block("spare", &[(&other, 1)])
    );
    let p = TestPorter::start(&yaml).await;
    let c = plain_client();
    for _ in 0..20 {
        c.get(p.http_url("/")).send().await.unwrap().bytes().await.unwrap();
    }
    let before = b.accepts();
    // A reload that changes another upstream leaves this server, and its connections, alone.
    let changed = yaml.replace("  spare:\n", "  spare2:\n");
    std::fs::write(p.dir.path().join("porter.yaml"), &changed).unwrap();
    let config = porter::Config::load(&p.dir.path().join("porter.yaml")).unwrap();
    p.porter.as_ref().unwrap().reload(&config).unwrap();
    for _ in 0..20 {
        c.get(p.http_url("/")).send().await.unwrap().bytes().await.unwrap();
    }
    assert_eq!(b.requests(), 40);
    assert_eq!(b.accepts(), before, "the reload opened new upstream connections");
    p.stop().await;
}
