//! `request_headers` / `response_headers` (docs/configuration.md, Traffic
//! policy): set, add, remove, placeholders; `Server` can be removed; the
//! route's response rules apply to porter's own answers for it too.

use std::net::SocketAddr;

use crate::harness::*;
use crate::raw_http::canned_server;

fn head(admin: bool) -> String {
    let admin = if admin { "  admin: \"127.0.0.1:0\"\n" } else { "" };
    format!(
        "listen:\n  https: \"127.0.0.1:0\"\n  http: \"127.0.0.1:0\"\n{admin}tls:\n  certs: certs\nhttp:\n  redirect: false\n"
    )
}

/// A server that answers every request with fields a site usually hides.
async fn chatty_server() -> SocketAddr {
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nX-Powered-By: PHP/8.2\r\n\
        X-Kept: yes\r\nKeep-Alive: timeout=5\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    canned_server(|_| ANSWER).await
}

#[tokio::test]
async fn request_headers_are_set_added_and_removed_with_placeholders() {
    let b = Backend::start("web").await;
    let yaml = format!(
        "{}upstreams:\n{}routes:
  - upstream: web
    request_headers:
      set: {{ X-Env: prod, X-Seen-Uri: \"{{uri}}\", X-Seen: \"{{scheme}}://{{host}}{{path}}?{{query}} from {{client_ip}}\" }}
      add: {{ X-Request: \"id={{request_id}}\", X-Env-Extra: two }}
      remove: [X-Secret, User-Agent]
",
        head(false),
        upstream_block("web", &[(&b, 1)])
    );
    let p = TestPorter::start(&yaml).await;
    let h1 = plain_client();
    let h2 = client_for(p.https.unwrap(), &["localhost"]);
    let http_url = format!("http://localhost:{}/echo-headers?a=1", p.http.unwrap().port());
    for (client, url, scheme) in [(&h1, http_url.clone(), "http"), (&h2, p.https_url("/echo-headers?a=1"), "https")] {
        let r = client
            .get(&url)
            .header("x-env", "dev")
            .header("x-secret", "s3")
            .header("user-agent", "agent")
            .header("x-request-id", "client-made")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert_eq!(echoed_header(&body, "x-env"), ["prod"], "set replaces: {body}");
        assert_eq!(echoed_header(&body, "x-env-extra"), ["two"], "{body}");
        assert_eq!(echoed_header(&body, "x-seen-uri"), ["/echo-headers?a=1"], "{body}");
        // {host} is the name without the port the client wrote.
        let seen = format!("{scheme}://localhost/echo-headers?a=1 from 127.0.0.1");
        assert_eq!(echoed_header(&body, "x-seen"), [seen.as_str()], "{body}");
        assert!(echoed_header(&body, "x-secret").is_empty(), "{body}");
        assert!(echoed_header(&body, "user-agent").is_empty(), "{body}");
        // {request_id} is porter's id for the request (an untrusted client's is replaced).
        let id = echoed_header(&body, "x-request-id")[0];
        assert_ne!(id, "client-made");
        assert_eq!(echoed_header(&body, "x-request"), [format!("id={id}").as_str()], "{body}");
    }
    p.stop().await;
}

#[tokio::test]
async fn response_headers_can_hide_the_server_over_http1_and_http2() {
    let server = chatty_server().await;
    let yaml = format!(
        "{}upstreams:\n  app:\n    servers:\n      - url: \"http://{server}\"\nroutes:
  - upstream: app
    response_headers:
      set: {{ X-Frame-Options: DENY, X-Kept: replaced }}
      add: {{ X-Served-For: \"{{client_ip}}\" }}
      remove: [Server, X-Powered-By]
  - path: /plain
    upstream: app
",
        head(false)
    );
    let p = TestPorter::start(&yaml).await;
    let h1 = plain_client();
    let h2 = client_for(p.https.unwrap(), &["localhost"]);
    for (client, url, version) in [
        (&h1, format!("http://{}/x", p.http.unwrap()), reqwest::Version::HTTP_11),
        (&h2, p.https_url("/x"), reqwest::Version::HTTP_2),
    ] {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!((r.status().as_u16(), r.version()), (200, version));
        let h = r.headers().clone();
        assert!(h.get("server").is_none(), "{h:?}");
        assert!(h.get("x-powered-by").is_none(), "{h:?}");
        assert!(h.get("keep-alive").is_none(), "hop-by-hop fields stay behind: {h:?}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h.get_all("x-kept").iter().collect::<Vec<_>>(), ["replaced"]);
        assert_eq!(h["x-served-for"], "127.0.0.1");
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(r.text().await.unwrap(), "hello");
    }
    // A route without the rules passes the server's fields on untouched.
    let r = h1.get(format!("http://{}/plain", p.http.unwrap())).send().await.unwrap();
    assert_eq!(r.headers()["server"], "nginx/1.22.1");
    assert!(r.headers().get("x-frame-options").is_none());
    p.stop().await;
}

#[tokio::test]
async fn porters_own_answers_for_the_route_get_its_response_headers() {
    let b = Backend::start("web").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let yaml = format!(
        "{}policies:
  secure:
    response_headers:
      set: {{ X-Content-Type-Options: nosniff, X-Frame-Options: DENY }}
upstreams:\n{}  dead:\n    servers:\n      - url: \"http://{dead}\"\n    retries: 0
routes:
  - path: /admin/
    upstream: web
    policies: [secure]
    deny: [\"0.0.0.0/0\", \"::/0\"]
  - path: /dead/
    upstream: dead
    policies: [secure]
  - path: /moved
    redirect: {{ to: \"/new\" }}
    policies: [secure]
  - path: /maintenance
    respond: {{ status: 503, body: \"later\\n\" }}
    policies: [secure]
  - upstream: web
    policies: [secure]
",
        head(false),
        upstream_block("web", &[(&b, 1)])
    );
    let p = TestPorter::start(&yaml).await;
    let h1 = plain_client();
    let h2 = client_for(p.https.unwrap(), &["localhost"]);
    for (path, status) in
        [("/admin/x", 403), ("/dead/x", 502), ("/moved", 308), ("/maintenance", 503), ("/nothing", 200)]
    {
        for (client, url) in [(&h1, format!("http://{}{path}", p.http.unwrap())), (&h2, p.https_url(path))] {
            let r = client.get(&url).send().await.unwrap();
            assert_eq!(r.status(), status, "{url}");
            assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{url}: {:?}", r.headers());
            assert_eq!(r.headers()["x-frame-options"], "DENY", "{url}");
        }
    }
    p.stop().await;
}
