//! Sticky sessions (docs/configuration.md, Sticky sessions): porter's own cookie
//! pins a client to the server that first answered it, over HTTP/1.1 and HTTP/2,
//! across a reload, and moves it (with a new cookie) when that server goes away.

use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::harness::*;

/// An application server: says its name in `x-backend`; `/login` sets the
/// application's own session cookie, as a real login does.
struct App {
    name: &'static str,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    async fn start(name: &'static str) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                conns.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| async move {
                        let mut response = Response::new(Full::new(bytes::Bytes::from(format!("{name}\n"))));
                        response.headers_mut().insert("x-backend", name.parse().unwrap());
                        if req.uri().path() == "/login" {
                            let cookie = format!("SESSIONID={name}-secret; Path=/; HttpOnly");
                            response.headers_mut().insert("set-cookie", cookie.parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        App { name, addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listener and every connection go: the server is down.
    fn stop(&self) {
        self.task.abort();
    }
}

fn yaml(apps: &[&App], extra: &str) -> String {
    let mut servers = String::new();
    for app in apps {
        servers.push_str(&format!("      - url: \"{}\"\n", app.url()));
    }
    format!(
        "{}http:\n  redirect: false\nupstreams:\n  web:\n    sticky: {{ cookie: porter_srv{extra} }}\n    \
         passive: {{ max_failures: 1, cooldown: 60s }}\n    servers:\n{servers}routes:\n  - upstream: web\n",
        listen_block()
    )
}

/// Every `Set-Cookie` of a response.
fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

/// The value porter set for `porter_srv`, if it set one.
fn porter_cookie(r: &reqwest::Response) -> Option<String> {
    set_cookies(r).iter().find_map(|c| c.strip_prefix("porter_srv=").map(|v| v.split(';').next().unwrap().to_string()))
}

fn backend(r: &reqwest::Response) -> String {
    r.headers()["x-backend"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn login_stays_on_one_server_across_reload_until_it_goes_down() {
    let apps = [App::start("a").await, App::start("b").await, App::start("c").await];
    let p = TestPorter::start(&yaml(&[&apps[0], &apps[1], &apps[2]], "")).await;
    let c = plain_client();

    // First visit: no cookie. porter sets its own beside the application's.
    let r = c.get(p.http_url("/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let first = backend(&r);
    let cookies = set_cookies(&r);
    assert!(cookies.iter().any(|c| c.starts_with(&format!("SESSIONID={first}-secret"))), "{cookies:?}");
    let pin = porter_cookie(&r).expect("porter_srv set");
    let full = cookies.iter().find(|c| c.starts_with("porter_srv=")).unwrap();
    assert_eq!(full, &format!("porter_srv={pin}; Path=/; HttpOnly; SameSite=Lax"), "no Secure on plain http");
    for app in &apps {
        assert!(!pin.contains(&app.addr.port().to_string()), "opaque, not the address: {pin}");
    }
    let session = format!("porter_srv={pin}; SESSIONID={first}-secret");

    // Round robin would spread these over three servers: the cookie keeps them on one.
    for _ in 0..12 {
        let r = c.get(p.http_url("/account")).header("cookie", &session).send().await.unwrap();
        assert_eq!(backend(&r), first);
        assert_eq!(porter_cookie(&r), None, "a pinned client gets no new cookie");
    }

    // A reload that reorders the servers and adds one keeps the pin.
    let d = App::start("d").await;
    p.reload(&yaml(&[&d, &apps[2], &apps[1], &apps[0]], ""));
    for _ in 0..8 {
        let r = c.get(p.http_url("/account")).header("cookie", &session).send().await.unwrap();
        assert_eq!(backend(&r), first, "pinned across the reload");
        assert_eq!(porter_cookie(&r), None);
    }

    // The pinned server goes down: the request is retried elsewhere and re-pinned there.
    let pinned_app = apps.iter().find(|a| a.name == first).unwrap();
    pinned_app.stop();
    let r = c.get(p.http_url("/account")).header("cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let second = backend(&r);
    assert_ne!(second, first);
    let repin = porter_cookie(&r).expect("a new cookie for the new server");
    assert_ne!(repin, pin);
    let session = format!("porter_srv={repin}; SESSIONID={first}-secret");
    for _ in 0..6 {
        let r = c.get(p.http_url("/account")).header("cookie", &session).send().await.unwrap();
        assert_eq!(backend(&r), second);
        assert_eq!(porter_cookie(&r), None);
    }

    // A cookie naming no server of the upstream: the balancer picks, and the cookie is replaced.
    let r = c.get(p.http_url("/")).header("cookie", "porter_srv=0123456789abcdef").send().await.unwrap();
    assert!(porter_cookie(&r).is_some());
    p.stop().await;
}

#[tokio::test]
async fn http2_over_tls_pins_with_a_secure_cookie_with_max_age() {
    let apps = [App::start("a").await, App::start("b").await];
    let yaml = yaml(&[&apps[0], &apps[1]], ", max_age: 1h, same_site: strict");
    let dir = tempfile::tempdir().unwrap();
    write_cert(&dir.path().join("certs"), "localhost", &["localhost"]);
    let p = TestPorter::start_in(dir, &yaml).await;
    let c = client_for(p.https.unwrap(), &["localhost"]);

    let r = c.get(p.https_url("/login")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let first = backend(&r);
    let pin = porter_cookie(&r).expect("porter_srv set");
    let cookies = set_cookies(&r);
    let full = cookies.iter().find(|c| c.starts_with("porter_srv=")).unwrap();
    assert_eq!(full, &format!("porter_srv={pin}; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure"));
    assert!(cookies.iter().any(|c| c.starts_with("SESSIONID=")), "the application's cookie too: {cookies:?}");

    // The same value over plaintext HTTP/1.1 reaches the same server: the value names the server.
    let session = format!("SESSIONID={first}-secret; porter_srv={pin}");
    for _ in 0..10 {
        let r = c.get(p.https_url("/account")).header("cookie", &session).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(backend(&r), first);
        assert_eq!(porter_cookie(&r), None);
    }
    let plain = plain_client();
    for _ in 0..4 {
        let r = plain.get(p.http_url("/account")).header("cookie", &session).send().await.unwrap();
        assert_eq!(backend(&r), first);
    }
    p.stop().await;
}

#[tokio::test]
async fn a_bad_sticky_setting_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("porter.yaml");
    let bad =
        "upstreams:\n  web:\n    sticky: { cookie: \"bad name\" }\n    servers:\n      - url: \"http://127.0.0.1:9\"\n\
               routes:\n  - upstream: web\n";
    std::fs::write(&path, bad).unwrap();
    let error = porter::Config::load(&path).unwrap_err().to_string();
    assert!(error.contains("upstreams.web.sticky.cookie") && error.contains(":3:"), "{error}");
    let bad =
        "upstreams:\n  web:\n    sticky: { same_site: sometimes }\n    servers:\n      - url: \"http://127.0.0.1:9\"\n\
               routes:\n  - upstream: web\n";
    std::fs::write(&path, bad).unwrap();
    let error = porter::Config::load(&path).unwrap_err().to_string();
    assert!(error.contains("sometimes") && error.contains(":3:"), "{error}");
}
