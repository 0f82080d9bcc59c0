//! A route's action besides `upstream` (docs/configuration.md, Traffic
//! policy): `redirect` and `respond` answer without a server; `rewrite`
//! changes the path sent upstream after `strip_prefix`.

use crate::harness::*;

fn yaml(b: &Backend, routes: &str) -> String {
    format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n  admin: \"127.0.0.1:0\"\n\
         tls:\n  certs: certs\nhttp:\n  redirect: false\nupstreams:\n{}routes:\n{routes}",
        upstream_block("web", &[(b, 1)])
    )
}

#[tokio::test]
async fn redirects_keep_path_and_query_and_count_as_redirect() {
    let b = Backend::start("web").await;
    let routes = "  - host: www.example.com
    redirect: { to: \"https://example.com{uri}\", status: 301 }
  - host: example.com
    path: /old/
    redirect: { to: \"{scheme}://{host}/new{path}\" }
  - upstream: web
";
    let p = TestPorter::start(&yaml(&b, routes)).await;
    let http = p.http.unwrap();
    let h1 = client_for(http, &["www.example.com", "example.com"]);
    let h2 = client_for(p.https.unwrap(), &["www.example.com", "example.com"]);
    let https_port = p.https.unwrap().port();
    for (client, url) in [
        (&h1, format!("http://www.example.com:{}/a/b?x=1&y=2", http.port())),
        (&h2, format!("https://www.example.com:{https_port}/a/b?x=1&y=2")),
    ] {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 301, "{url}");
        assert_eq!(r.headers()["location"], "https://example.com/a/b?x=1&y=2");
        assert_eq!(r.text().await.unwrap(), "");
    }
    let r = h2.post(format!("https://example.com:{https_port}/old/page")).body("x").send().await.unwrap();
    assert_eq!(
        (r.version(), r.status().as_u16()),
        (reqwest::Version::HTTP_2, 308),
        "the default status keeps the method"
    );
    assert_eq!(r.headers()["location"], "https://example.com/new/old/page", "{{host}} has no port");
    assert_eq!(b.requests(), 0, "a redirect never reaches a server");

    let metrics = plain_client().get(p.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "porter_policy_answers_total{route=\"www.example.com/\",rule=\"redirect\"} 2",
        "porter_policy_answers_total{route=\"example.com/old/\",rule=\"redirect\"} 1",
        "porter_requests_total{route=\"www.example.com/\",upstream=\"none\",status_class=\"3xx\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    p.stop().await;
}

#[tokio::test]
async fn respond_answers_with_its_status_body_and_headers() {
    let b = Backend::start("web").await;
    let routes = "  - path: /maintenance
    respond: { status: 503, body: \"back soon\\n\", headers: { Retry-After: 600 } }
  - path: /robots.txt
    respond: { body: \"User-agent: *\\nDisallow: /\\n\", headers: { Content-Type: text/plain } }
  - path: /gone
    respond: { status: 410 }
  - upstream: web
";
    let p = TestPorter::start(&yaml(&b, routes)).await;
    let h1 = plain_client();
    let h2 = client_for(p.https.unwrap(), &["localhost"]);
    for (client, base) in [(&h1, format!("http://{}", p.http.unwrap())), (&h2, p.https_url(""))] {
        let r = client.get(format!("{base}/maintenance")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "600");
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(r.text().await.unwrap(), "back soon\n");
        let r = client.get(format!("{base}/robots.txt")).send().await.unwrap();
        assert_eq!((r.status().as_u16(), &r.headers()["content-type"]), (200, &"text/plain".parse().unwrap()));
        assert_eq!(r.text().await.unwrap(), "User-agent: *\nDisallow: /\n");
        let r = client.head(format!("{base}/robots.txt")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = client.get(format!("{base}/gone")).send().await.unwrap();
        assert_eq!(r.status(), 410);
        assert_eq!(r.text().await.unwrap(), "");
    }
    assert_eq!(b.requests(), 0);
    let metrics = plain_client().get(p.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = "porter_policy_answers_total{route=\"*/maintenance\",rule=\"respond\"} 2";
    assert!(metrics.contains(line), "{line} not in\n{metrics}");
    p.stop().await;
}

#[tokio::test]
async fn rewrite_changes_the_path_after_strip_prefix_and_keeps_the_query() {
    let b = Backend::start("web").await;
    let routes = "  - path: /api/
    upstream: web
    strip_prefix: true
    rewrite: { regex: \"^/v1/(.*)$\", replace: \"/v2/$1\" }
  - path: /shop/
    upstream: web
    rewrite: { regex: \"^/shop/item/(?P<id>[0-9]+)$\", replace: \"/item.php/${id}\" }
  - upstream: web
";
    let p = TestPorter::start(&yaml(&b, routes)).await;
    let h1 = plain_client();
    let h2 = client_for(p.https.unwrap(), &["localhost"]);
    for (client, base) in [(&h1, format!("http://{}", p.http.unwrap())), (&h2, p.https_url(""))] {
        let first_line = |body: String| body.lines().next().unwrap_or("").to_string();
        let body = client.get(format!("{base}/api/v1/users?q=/v1/x")).send().await.unwrap().text().await.unwrap();
        assert_eq!(first_line(body), "web GET /v2/users?q=/v1/x", "only the path is rewritten");
        let body = client.get(format!("{base}/api/v3/users")).send().await.unwrap().text().await.unwrap();
        assert_eq!(first_line(body), "web GET /v3/users", "no match: the stripped path as it was");
        let body = client.get(format!("{base}/shop/item/42")).send().await.unwrap().text().await.unwrap();
        assert_eq!(first_line(body), "web GET /item.php/42");
    }
    p.stop().await;
}
