//! docs/configuration.md, Routing: exact host > wildcard > any host; longest segment-boundary
//! prefix; strip_prefix; 404.

use crate::harness::*;

async fn setup() -> (TestPorter, Vec<Backend>) {
    let names = ["exact_root", "exact_api", "wild", "wild_deep", "any", "any_static"];
    let mut backends = Vec::new();
    for n in names {
        backends.push(Backend::start(n).await);
    }
    let mut yaml = format!("{}http:\n  redirect: false\nupstreams:\n", listen_block());
    for b in &backends {
        yaml.push_str(&upstream_block(&b.name, &[(b, 1)]));
    }
    yaml.push_str(
        r#"routes:
  - host: "example.com"
    upstream: exact_root
  - host: "example.com"
    path: "/api/"
    upstream: exact_api
    strip_prefix: true
  - host: "*.example.com"
    upstream: wild
  - host: "*.deep.example.com"
    upstream: wild_deep
  - path: "/"
    upstream: any
  - path: "/static"
    upstream: any_static
"#,
    );
    (TestPorter::start(&yaml).await, backends)
}

async fn who(client: &reqwest::Client, url: String) -> (u16, String, String) {
    let r = client.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let backend = r.headers().get("x-backend").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, backend, r.text().await.unwrap())
}

#[tokio::test]
async fn precedence_and_segment_boundaries() {
    let (p, _backends) = setup().await;
    let port = p.http.unwrap().port();
    let hosts = ["example.com", "a.example.com", "x.deep.example.com", "other.org"];
    let c = client_for(p.http.unwrap(), &hosts);
    let url = |host: &str, path: &str| format!("http://{host}:{port}{path}");

    assert_eq!(who(&c, url("example.com", "/")).await.1, "exact_root");
    let raw = hyper::Request::get("/x")
        .header("host", format!("EXAMPLE.Com:{port}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = raw_http1(p.http.unwrap(), raw).await;
    assert_eq!(response.headers()["x-backend"], "exact_root", "host is case-insensitive, port ignored");
    assert_eq!(who(&c, url("example.com", "/api/users")).await.1, "exact_api");
    assert_eq!(who(&c, url("example.com", "/api")).await.1, "exact_api", "/api/ covers /api");
    assert_eq!(who(&c, url("example.com", "/apix")).await.1, "exact_root", "no match inside a segment");
    assert_eq!(who(&c, url("a.example.com", "/")).await.1, "wild");
    assert_eq!(who(&c, url("x.deep.example.com", "/")).await.1, "wild_deep", "longest wildcard wins");
    assert_eq!(who(&c, url("other.org", "/")).await.1, "any");
    assert_eq!(who(&c, url("other.org", "/static/app.js")).await.1, "any_static");
    assert_eq!(who(&c, url("other.org", "/staticx")).await.1, "any");
    p.stop().await;
}

#[tokio::test]
async fn strip_prefix_rewrites_the_path() {
    let (p, _backends) = setup().await;
    let port = p.http.unwrap().port();
    let c = client_for(p.http.unwrap(), &["example.com"]);
    let (_, backend, body) = who(&c, format!("http://example.com:{port}/api/users?id=7")).await;
    assert_eq!(backend, "exact_api");
    assert!(body.starts_with("exact_api GET /users?id=7\n"), "{body}");
    let (_, _, body) = who(&c, format!("http://example.com:{port}/api")).await;
    assert!(body.starts_with("exact_api GET /\n"), "{body}");
    let (_, backend, body) = who(&c, format!("http://example.com:{port}/other?q=1")).await;
    assert_eq!(backend, "exact_root");
    assert!(body.starts_with("exact_root GET /other?q=1\n"), "path unchanged without strip_prefix: {body}");
    p.stop().await;
}

#[tokio::test]
async fn no_route_is_404_with_a_short_body() {
    let b = Backend::start("only").await;
    let yaml = format!(
        "{}http:\n  redirect: false\nupstreams:\n{}routes:\n  - host: example.com\n    upstream: only\n",
        listen_block(),
        upstream_block("only", &[(&b, 1)])
    );
    let p = TestPorter::start(&yaml).await;
    let port = p.http.unwrap().port();
    let c = client_for(p.http.unwrap(), &["example.com", "nothing.test"]);
    let (status, _, body) = who(&c, format!("http://nothing.test:{port}/")).await;
    assert_eq!(status, 404);
    assert!(body.contains("no route"), "{body}");
    assert!(body.len() < 200);
    assert_eq!(b.requests(), 0);
    let (status, backend, _) = who(&c, format!("http://example.com:{port}/")).await;
    assert_eq!((status, backend.as_str()), (200, "only"));
    p.stop().await;
}
