//! `forward_auth` (docs/configuration.md, Authentication): real porter in front
//! of a real auth server (hyper, on 127.0.0.1) that behaves like an SSO portal:
//! browsers without a session are sent to its login page, API clients get 401,
//! a session cookie passes with `Remote-User`/`Remote-Groups` in the answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::harness::{client_for, echoed_header, listen_block, plain_client, upstream_block, Backend, TestPorter};

/// What the auth server was asked.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: http::HeaderMap,
    body: Bytes,
}

struct AuthServer {
    addr: SocketAddr,
    accepts: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl AuthServer {
    async fn start() -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, s) = (accepts.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(addr, req, &s).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AuthServer { addr, accepts, seen, task }
    }

    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("the auth server was asked")
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(me: SocketAddr, req: Request<Incoming>, seen: &Mutex<Vec<Seen>>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let uri = parts.uri.to_string();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let reply = |status: u16, headers: &[(&str, String)], body: &str| {
        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            r.headers_mut().append(hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        r
    };
    if let Some(rd) = uri.split_once("rd=").map(|(_, rd)| rd.to_string()).filter(|_| uri.starts_with("/login")) {
        // The login form, already filled in: back to where the user was, with a session.
        return reply(302, &[("location", rd), ("set-cookie", "session=good; Path=/".into())], "");
    }
    if parts.uri.path() == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
        return reply(200, &[], "late\n");
    }
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: uri.clone(),
        headers: parts.headers.clone(),
        body,
    });
    if header("cookie").contains("session=good") {
        let headers = [
            ("remote-user", "alice".to_string()),
            ("remote-groups", "admins".to_string()),
            ("remote-groups", "dev".to_string()),
            ("x-auth-internal", "secret".to_string()),
        ];
        return reply(200, &headers, "ok\n");
    }
    if header("accept").contains("text/html") {
        let original =
            format!("{}://{}{}", header("x-forwarded-proto"), header("x-forwarded-host"), header("x-forwarded-uri"));
        let location = format!("http://{me}/login?rd={original}");
        let headers = [("location", location), ("set-cookie", "flow=started; Path=/".to_string())];
        return reply(302, &headers, "login first\n");
    }
    reply(401, &[("www-authenticate", "Bearer realm=\"api\"".to_string())], "no session\n")
}

fn config(backend: &Backend, forward_auth: &str) -> String {
    format!(
        "{}http:\n  redirect: false\nupstreams:\n{}routes:\n\
         \x20 - path: /app/\n    upstream: web\n    strip_prefix: true\n    forward_auth: {forward_auth}\n\
         \x20 - upstream: web\n",
        listen_block(),
        upstream_block("web", &[(backend, 1)])
    )
}

#[tokio::test]
async fn forward_auth_sends_browsers_to_the_login_page_and_passes_sessions_over_http1_and_http2() {
    let b = Backend::start("b").await;
    let auth = AuthServer::start().await;
    let fa =
        format!("{{ url: \"http://{}/verify?from=porter\", copy_headers: [Remote-User, Remote-Groups] }}", auth.addr);
    let p = TestPorter::start(&config(&b, &fa)).await;
    let http = format!("http://localhost:{}", p.http.unwrap().port());
    let plain = client_for(p.http.unwrap(), &["localhost"]);
    let tls = client_for(p.https.unwrap(), &["localhost"]);
    let outside = plain_client();
    let mut asked = 0;
    for (client, base, version, proto) in [
        (&plain, http.clone(), reqwest::Version::HTTP_11, "http"),
        (&tls, p.https_url(""), reqwest::Version::HTTP_2, "https"),
    ] {
        let forwarded_before = b.requests();
        // A browser without a session: the auth server's redirect, as it is.
        let page = format!("{base}/app/page?x=1");
        let r = client.get(&page).header("accept", "text/html,*/*;q=0.8").send().await.unwrap();
        asked += 1;
        assert_eq!(r.version(), version);
        assert_eq!(r.status(), 302);
        let login = r.headers()["location"].to_str().unwrap().to_string();
        assert_eq!(login, format!("http://{}/login?rd={page}", auth.addr));
        assert_eq!(r.headers()["set-cookie"], "flow=started; Path=/");
        assert_eq!(r.text().await.unwrap(), "login first\n");
        assert_eq!(b.requests(), forwarded_before, "nothing reaches the server without a session");
        let seen = auth.last();
        assert_eq!((seen.method.as_str(), seen.uri.as_str()), ("GET", "/verify?from=porter"));
        assert_eq!(seen.headers["x-forwarded-method"], "GET");
        assert_eq!(seen.headers["x-forwarded-proto"], proto);
        assert_eq!(seen.headers["x-forwarded-uri"], "/app/page?x=1");
        assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(seen.headers["host"], auth.addr.to_string().as_str());

        // The login page redirects back with a session cookie; the browser follows.
        let r = outside.get(&login).send().await.unwrap();
        assert_eq!(r.status(), 302);
        let back = r.headers()["location"].to_str().unwrap().to_string();
        let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        assert_eq!(back, page);
        let r = client
            .get(&back)
            .header("cookie", &cookie)
            .header("remote-user", "mallory")
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        asked += 1;
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert!(body.starts_with("b GET /page?x=1"), "{body}");
        assert_eq!(echoed_header(&body, "remote-user"), ["alice"], "the client's own value is gone: {body}");
        assert_eq!(echoed_header(&body, "remote-groups"), ["admins", "dev"], "{body}");
        assert!(echoed_header(&body, "x-auth-internal").is_empty(), "only copy_headers are copied: {body}");
        assert_eq!(echoed_header(&body, "cookie"), [cookie.as_str()]);

        // A body goes to the server, never to the auth server; the method does.
        let r = client.post(format!("{base}/app/echo")).header("cookie", &cookie).body("payload").send().await.unwrap();
        asked += 1;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "payload");
        let seen = auth.last();
        assert_eq!((seen.method.as_str(), seen.headers["x-forwarded-method"].to_str().unwrap()), ("POST", "POST"));
        assert_eq!(seen.headers["x-forwarded-uri"], "/app/echo", "the URI the client asked for, before strip_prefix");
        assert!(seen.body.is_empty());

        // An API client: the auth server's 401 and its challenge.
        let r = client.get(format!("{base}/app/api")).send().await.unwrap();
        asked += 1;
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"api\"");
        assert_eq!(r.text().await.unwrap(), "no session\n");
        // Routes without forward_auth do not ask.
        assert_eq!(client.get(format!("{base}/open")).send().await.unwrap().status(), 200);
    }
    assert_eq!(auth.seen.lock().unwrap().len(), asked);
    // porter's pooled client: the auth requests share kept-alive connections. A 2xx answer's
    // connection is back in the pool before the request goes on, so a run of them needs at
    // most one new connection (when a denial's answer was still being read by its client).
    let before = auth.accepts.load(Ordering::SeqCst);
    for _ in 0..10 {
        let r = plain.get(format!("{http}/app/x")).header("cookie", "session=good").send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let opened = auth.accepts.load(Ordering::SeqCst) - before;
    assert!(opened <= 1, "10 auth requests opened {opened} connections");
    p.stop().await;
}

#[tokio::test]
async fn forward_auth_fails_closed_when_the_auth_server_is_down_or_too_slow() {
    let b = Backend::start("b").await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let p = TestPorter::start(&config(&b, &format!("{{ url: \"http://{closed}/verify\" }}"))).await;
    let c = plain_client();
    let url = format!("http://{}/app/x", p.http.unwrap());
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("authentication server"));

    let auth = AuthServer::start().await;
    p.reload(&config(&b, &format!("{{ url: \"http://{}/slow\", timeout: 300ms }}", auth.addr)));
    let start = Instant::now();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 503);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "the timeout bounds the wait: {took:?}");
    assert_eq!(b.requests(), 0, "fail closed: nothing was forwarded");
    p.stop().await;
}

#[tokio::test]
async fn forward_auth_settings_are_checked_with_their_position() {
    let yaml = |fa: &str| {
        format!(
            "listen:\n  http: \"127.0.0.1:0\"\nupstreams:\n  web:\n    servers:\n      - url: \"http://127.0.0.1:9\"\n\
             routes:\n  - upstream: web\n    forward_auth: {fa}\n"
        )
    };
    let load = |fa: &str| porter::Config::from_yaml(&yaml(fa), std::path::Path::new("p.yaml"));
    let err = load("{ url: \"ftp://auth/verify\" }").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("routes[0].forward_auth.url"), "{err}");
    assert_eq!(err.line, Some(9));
    let err = load("{ url: \"http://a/v\", copy_headers: [\"Bad Name\"] }").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("routes[0].forward_auth.copy_headers[0]"), "{err}");
    let err = load("{ url: \"http://a/v\", timeout: 0s }").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("routes[0].forward_auth.timeout"), "{err}");
    let err = load("{ url: \"http://a/v\", typo: 1 }").unwrap_err();
    assert!(err.to_string().contains("typo"), "{err}");
    let config = load("{ url: \"http://a:9091/api/verify?rd=x\", copy_headers: [Remote-User] }").unwrap();
    let fa = config.routes[0].policy.forward_auth.as_ref().unwrap();
    assert_eq!((fa.path.as_str(), fa.timeout), ("/api/verify?rd=x", Duration::from_secs(5)));
}
