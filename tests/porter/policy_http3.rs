//! Route policy over HTTP/3 (docs/configuration.md, Traffic policy): the same
//! pipeline as HTTP/1.1 and HTTP/2, so deny, the local actions, header rules
//! and rewrite answer alike on a QUIC connection.

use crate::harness::*;
use crate::http3::H3Client;

#[tokio::test]
async fn policy_answers_alike_over_http3() {
    let b = Backend::start("web").await;
    let dir = tempfile::tempdir().unwrap();
    write_cert(&dir.path().join("certs"), "localhost", &["localhost"]);
    let yaml = format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n  http3: true\ntls:\n  certs: certs\n\
         http:\n  redirect: false\npolicies:\n  secure:\n    response_headers:\n      set: {{ X-Frame-Options: DENY }}\n\
         upstreams:\n{}routes:
  - path: /admin/
    upstream: web
    policies: [secure]
    deny: [\"127.0.0.0/8\"]
  - path: /maintenance
    respond: {{ status: 503, body: \"later\\n\" }}
    policies: [secure]
  - path: /old
    redirect: {{ to: \"https://example.com{{uri}}\", status: 301 }}
  - path: /api/
    upstream: web
    strip_prefix: true
    rewrite: {{ regex: \"^/v1/(.*)$\", replace: \"/v2/$1\" }}
    request_headers: {{ set: {{ X-Seen-Host: \"{{host}}\" }} }}
    policies: [secure]
",
        upstream_block("web", &[(&b, 1)])
    );
    let p = TestPorter::start_in(dir, &yaml).await;
    let addr = p.porter().http3_addr.expect("HTTP/3 is listening");
    let client = H3Client::connect(addr, "localhost").await;
    let url = |path: &str| format!("https://localhost:{}{path}", addr.port());

    let r = client.get(&url("/admin/x")).await;
    assert_eq!((r.version(), r.status().as_u16()), (http::Version::HTTP_3, 403));
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let r = client.get(&url("/maintenance")).await;
    assert_eq!(r.status(), 503);
    assert_eq!(&r.body()[..], b"later\n");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let r = client.get(&url("/old?a=1")).await;
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "https://example.com/old?a=1");
    let r = client.get(&url("/api/v1/users?q=1")).await;
    assert_eq!(r.status(), 200);
    let body = String::from_utf8_lossy(r.body()).into_owned();
    assert!(body.starts_with("web GET /v2/users?q=1\n"), "{body}");
    assert_eq!(echoed_header(&body, "x-seen-host"), ["localhost"], "{body}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(b.requests(), 1, "only the rewritten request reached the server");
    p.stop().await;
}
